//! `isoscope capture`: stream from a device into a WAV file and/or statistics, headless.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use isoscope::capture::{
    Backend, Capture, CaptureConfig, CaptureError, CaptureInfo, Sink, StatsSnapshot, StreamConfig,
};
use isoscope::dma::TransferPath;
use isoscope::record::{WavRecorder, WavSamples};
use isoscope::sim::Verifier;
use ringbuf::traits::{Consumer, Observer, Split};
use ringbuf::{HeapCons, HeapRb};

use super::device;
use super::CaptureArgs;
use isoscope::source::Source;

/// What `--stats-json` holds: one object, every figure once; the engine's counters
/// ([`StatsSnapshot`]) at the top level under their own names.
#[derive(serde::Serialize)]
struct Report<'a> {
    device: &'a str,
    simulated: bool,
    format: String,
    mode_used: TransferPath,
    fallback: Option<&'a str>,
    /// How many times slower the mapped pool read than heap memory (zero-copy pools).
    mapping_read_slowdown: Option<f64>,
    #[serde(flatten)]
    stats: &'a StatsSnapshot,
    pool_bytes: u64,
    usbfs_bytes: u64,
    cap_bytes: u64,
    usbfs_memory_mb: Option<u32>,
    urbs_in_flight: usize,
    packets_per_urb: usize,
    wav_frames: Option<u64>,
    frames_verified: Option<u64>,
    frames_mismatched: Option<u64>,
    /// Packets with data that the device sent and the capture never saw, with no status
    /// saying so (found on the device's own sequence by the verifier).
    packets_lost_in_transit: Option<u64>,
    frames_lost_in_transit: Option<u64>,
    /// Capture frame index and device stream frame of the first mismatch.
    first_mismatch: Option<(u64, u64)>,
    error: Option<String>,
}

/// What the consumer thread did with the ring's bytes.
pub(super) struct Drained {
    pub(super) wav_frames: Option<u64>,
    pub(super) verifier: Option<Verifier>,
    pub(super) wav_error: Option<anyhow::Error>,
}

pub fn run(args: &CaptureArgs) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal ends the process at once, in case a stop ever hangs.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
            .context("cannot install the signal handler")?;
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install the signal handler")?;
    }
    let cfg = CaptureConfig {
        mode: args.mode.into(),
        urb_ms: args.urb_ms,
        queue_ms: args.queue_ms,
        packets_per_urb: args.packets,
        urbs: args.urbs,
        app_cap_bytes: args.pool_cap_mb << 20,
        prefill: None,
        no_data_timeout: args.device.no_data_timeout()?,
    };
    if let Some(s) = args.seconds {
        anyhow::ensure!(s.is_finite() && s > 0.0, "--seconds must be a positive number, not {s}");
    }
    match device::open(&args.device)? {
        (Source::Sim(device), verifier) => {
            session(device.backend(), device.stream(), &cfg, args, verifier, &stop)
        }
        (Source::Usb(capture), verifier) => {
            let capture = *capture;
            session(capture.backend, capture.stream, &cfg, args, verifier, &stop)
        }
    }
}

fn session<B: Backend>(
    backend: B,
    stream: StreamConfig,
    cfg: &CaptureConfig,
    args: &CaptureArgs,
    verifier: Option<Verifier>,
    stop: &AtomicBool,
) -> anyhow::Result<ExitCode> {
    let format = stream.format;
    let wav = match &args.wav {
        Some(path) => {
            let samples = if args.wav_float { WavSamples::Float } else { WavSamples::Native };
            Some(WavRecorder::create_as(path, format, samples)?)
        }
        None => None,
    };
    // Two seconds of audio: the consumer only has to keep up on average.
    let ring_bytes = (format.bytes_per_second() as usize * 2).max(1 << 20);
    let (prod, cons) = HeapRb::<u8>::new(ring_bytes).split();
    let capture = Capture::start(backend, stream, cfg, vec![Sink::Bytes(prod)])?;
    let info = capture.info().clone();
    print_banner(&info);

    let done = Arc::new(AtomicBool::new(false));
    let consumer = spawn_consumer(cons, wav, verifier, format.frame_bytes(), Arc::clone(&done))?;

    super::wait_for_end(&capture, stop, args.seconds, args.quiet, || {
        Some(status_line(&capture.stats(), &info))
    });
    let (stats, failure) = capture.stop();
    done.store(true, Ordering::Release);
    let drained = consumer.join().map_err(|_| anyhow::anyhow!("the recording thread panicked"))?;

    let report = Report {
        device: &info.device.name,
        simulated: info.device.simulated,
        format: format.to_string(),
        mode_used: info.path,
        fallback: info.fallback.as_deref(),
        mapping_read_slowdown: info.mapping_read.map(|s| s.slowdown()),
        stats: &stats,
        pool_bytes: info.memory.pool_bytes(),
        usbfs_bytes: info.memory.usbfs_bytes(),
        cap_bytes: info.limit.effective_bytes(),
        usbfs_memory_mb: info.limit.usbfs_memory_mb,
        urbs_in_flight: info.plan.urbs_in_flight,
        packets_per_urb: info.plan.packets_per_urb,
        wav_frames: drained.wav_frames,
        frames_verified: drained.verifier.as_ref().map(Verifier::verified),
        frames_mismatched: drained.verifier.as_ref().map(Verifier::mismatched),
        packets_lost_in_transit: drained.verifier.as_ref().map(Verifier::lost_packets),
        frames_lost_in_transit: drained.verifier.as_ref().map(Verifier::lost_frames),
        first_mismatch: drained.verifier.as_ref().and_then(Verifier::first_mismatch),
        error: failure.as_ref().map(CaptureError::to_string),
    };
    if let Some(path) = &args.stats_json {
        super::write_json(path, &report)?;
    }
    print_summary(&report, args);
    if let Some(e) = drained.wav_error {
        return Err(e);
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    if report.frames_mismatched.is_some_and(|m| m > 0) {
        let (at, stream_frame) = report.first_mismatch.unwrap_or_default();
        anyhow::bail!(
            "{} captured frames differ from what the device sent (the first is captured frame {at}, \
             where the device sent its frame {stream_frame})",
            report.frames_mismatched.unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn spawn_consumer(
    mut cons: HeapCons<u8>,
    mut wav: Option<WavRecorder>,
    mut verifier: Option<Verifier>,
    frame_bytes: usize,
    done: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<Drained>> {
    std::thread::Builder::new()
        .name("isoscope-record".into())
        .spawn(move || {
            // Whole frames per pop, so every consumer sees frame-aligned chunks.
            let mut buf = vec![0u8; (256 << 10) / frame_bytes * frame_bytes];
            let mut wav_error = None;
            loop {
                // Read `done` before draining: once set, the engine has pushed its last bytes.
                let finished = done.load(Ordering::Acquire);
                let n = cons.pop_slice(&mut buf);
                if n > 0 {
                    if let Some(v) = &mut verifier {
                        v.feed(&buf[..n]);
                    }
                    if let (Some(w), None) = (&mut wav, &wav_error) {
                        if let Err(e) = w.write_bytes(&buf[..n]) {
                            wav_error = Some(anyhow::Error::from(e));
                        }
                    }
                } else if finished && cons.is_empty() {
                    break;
                } else {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let wav_frames = match wav.map(WavRecorder::finish) {
                Some(Ok(frames)) => Some(frames),
                Some(Err(e)) => {
                    wav_error.get_or_insert(e.into());
                    None
                }
                None => None,
            };
            Drained { wav_frames, verifier, wav_error }
        })
        .context("cannot start the recording thread")
}

pub(super) fn print_banner(info: &CaptureInfo) {
    eprintln!(
        "isoscope: capturing {} from {}{}",
        info.stream.format,
        info.device.name,
        if info.device.simulated { " [simulated device]" } else { "" }
    );
    eprintln!(
        "isoscope: {} mode, {} URBs x {} packets, pool {} (usbfs counts {}, cap {})",
        info.path,
        info.plan.urbs_in_flight,
        info.plan.packets_per_urb,
        isoscope::dma::human_bytes(info.memory.pool_bytes()),
        isoscope::dma::human_bytes(info.memory.usbfs_bytes()),
        isoscope::dma::human_bytes(info.limit.effective_bytes()),
    );
    if let Some(why) = &info.fallback {
        eprintln!("isoscope: warning: zero-copy unavailable, capturing in copy mode instead: {why}");
    }
    if let Some(why) = info.mapping_read.and_then(|s| s.too_slow()).filter(|_| info.fallback.is_none()) {
        eprintln!("isoscope: warning: zero-copy as asked, but {why}");
    }
}

fn status_line(s: &StatsSnapshot, info: &CaptureInfo) -> String {
    let secs = s.elapsed_ns as f64 / 1e9;
    format!(
        "{:6.1} s  {:7.1} kB/s  {} URBs ({})  short {}  errors {}  drops {}  CPU {:.0} us/MiB",
        secs,
        if secs > 0.0 { s.bytes as f64 / secs / 1000.0 } else { 0.0 },
        s.urbs,
        info.path,
        s.short_packets,
        s.packet_errors,
        s.ring_drops,
        s.cpu_us_per_mib()
    )
}

fn print_summary(r: &Report<'_>, args: &CaptureArgs) {
    let s = r.stats;
    eprintln!(
        "isoscope: {} URBs ({} zero-copy, {} copy), {} packets ({} short, {} failed), {} frames, {} ring drops",
        s.urbs, s.urbs_zerocopy, s.urbs_copy, s.packets, s.short_packets, s.packet_errors, s.frames, s.ring_drops
    );
    // Failed packets by errno, each with what it means on this kind of transfer.
    for line in r.stats.packet_error_lines() {
        eprintln!("isoscope:   {line}");
    }
    if let (Some(ok), Some(bad)) = (r.frames_verified, r.frames_mismatched) {
        eprintln!("isoscope: verified against the simulated device: {ok} frames match, {bad} differ");
    }
    if let (Some(n), Some(frames)) = (r.packets_lost_in_transit, r.frames_lost_in_transit) {
        if n > 0 {
            eprintln!(
                "isoscope: warning: {n} packets ({frames} frames) the device sent never arrived, with no error \
                 status (the host controller skipped their intervals; QEMU's xHCI does when the host is busy); \
                 the frames around them verify"
            );
        }
    }
    if let Some(note) = r.stats.all_zero_note() {
        eprintln!("isoscope: warning: {note}");
    }
    if let (Some(path), Some(frames)) = (&args.wav, r.wav_frames) {
        eprintln!("isoscope: wrote {frames} frames to {}", path.display());
    }
}
