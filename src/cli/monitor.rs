//! `isoscope monitor`: play a device live on a sound card, headless, and report latency,
//! underruns, overruns and the resampling ratio.
//!
//! Without a usable sound card: with `--wav` the capture and the recording go on (a warning
//! says why there is no sound) and the exit status is 0; without `--wav` the user asked only
//! to listen, so it is an error (exit 1) and nothing is captured.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use isoscope::audio::{self, ChannelMap, Monitor, MonitorConfig, MonitorInfo, MonitorStats, Pacing};
use isoscope::capture::{Backend, Capture, CaptureConfig, CaptureError, Sink, StatsSnapshot, StreamConfig};
use isoscope::record::{RecordError, Recording, WavSamples};

use super::capture::print_banner;
use super::device;
use super::MonitorArgs;
use isoscope::source::Source;

/// What `--stats-json` holds: the headline figures at the top, then everything.
#[derive(serde::Serialize)]
struct Report<'a> {
    device: &'a str,
    simulated: bool,
    format: String,
    /// Null when no sound card could be used.
    output: Option<&'a MonitorInfo>,
    output_error: Option<String>,
    latency_ms_median: Option<f64>,
    latency_ms_p99: Option<f64>,
    /// The latency the monitor held: the target, or the lowest the output allows.
    holding_ms: Option<f64>,
    underruns: u64,
    resyncs: u64,
    /// Set when the output was not a clock (the monitor stopped playing to it).
    output_fault: Option<audio::OutputFault>,
    overruns: u64,
    /// Frames the capture could not put in the monitor's ring (or the recording's).
    capture_ring_drops: u64,
    ratio: f64,
    correction_ppm: f64,
    resampler_cpu_percent: f64,
    wav_frames: Option<u64>,
    error: Option<String>,
    monitor: Option<&'a MonitorStats>,
    capture: &'a StatsSnapshot,
}

pub fn run(args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    if args.list_outputs {
        return list_outputs(args);
    }
    if let Some(s) = args.seconds {
        anyhow::ensure!(s.is_finite() && s > 0.0, "--seconds must be a positive number, not {s}");
    }
    anyhow::ensure!(
        args.volume.is_finite() && (0.0..=8.0).contains(&args.volume),
        "--volume must lie in 0..8, not {}",
        args.volume
    );
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
            .context("cannot install the signal handler")?;
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install the signal handler")?;
    }
    let cfg = CaptureConfig {
        mode: args.mode.into(),
        no_data_timeout: args.device.no_data_timeout()?,
        ..CaptureConfig::default()
    };
    match device::open(&args.device)?.0 {
        Source::Sim(device) => session(device.backend(), device.stream(), &cfg, args, &stop),
        Source::Usb(capture) => {
            let capture = *capture;
            session(capture.backend, capture.stream, &cfg, args, &stop)
        }
    }
}

fn session<B: Backend>(
    backend: B,
    stream: StreamConfig,
    cfg: &CaptureConfig,
    args: &MonitorArgs,
    stop: &AtomicBool,
) -> anyhow::Result<ExitCode> {
    let format = stream.format;
    let channel_map = match &args.channel_map {
        Some(s) => Some(ChannelMap::parse(s, format.channels)?),
        None => None,
    };
    let mon_cfg = MonitorConfig {
        host: args.host,
        output: args.output.clone(),
        latency_ms: args.latency_ms,
        volume: args.volume,
        muted: args.mute,
        channel_map,
        output_rate: args.output_rate,
        pacing: if args.pace_host_clock { Pacing::HostClock } else { Pacing::Device },
        ..MonitorConfig::default()
    };
    let (frames_prod, frames_cons) = Monitor::input_ring(format);
    let (monitor, output_error) = match Monitor::start(frames_cons, format, &mon_cfg) {
        Ok(m) => (Some(m), None),
        Err(e) if args.wav.is_some() => {
            eprintln!("isoscope: warning: {e}. Recording without monitoring");
            (None, Some(e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let mut sinks = Vec::new();
    if monitor.is_some() {
        sinks.push(Sink::Frames(frames_prod));
    }
    let recording = match &args.wav {
        Some(path) => {
            let (prod, cons) = Recording::ring(format, 2.0);
            sinks.push(Sink::Bytes(prod));
            Some(Recording::start(cons, path, format, WavSamples::Native)?)
        }
        None => None,
    };
    let capture = Capture::start(backend, stream, cfg, sinks)?;
    let info = capture.info().clone();
    print_banner(&info);
    if let Some(m) = &monitor {
        let i = m.info();
        eprintln!(
            "isoscope: playing on {} '{}' ({}): {} ch {} Hz {} (period {}), target latency {} ms, map {:?}{}",
            i.host,
            i.output,
            i.output_description,
            i.output_channels,
            i.output_rate,
            i.sample_format,
            i.period_frames.map_or("default".to_string(), |p| format!("{p} frames")),
            i.target_latency_ms,
            i.channel_map,
            if i.pacing == Pacing::HostClock { ", paced by the host clock" } else { "" }
        );
    }

    let mut fault_said = false;
    super::wait_for_end(&capture, stop, args.seconds, args.quiet, || {
        let m = monitor.as_ref()?;
        let st = m.stats();
        if let (Some(f), false) = (st.output_fault, fault_said) {
            fault_said = true;
            eprintln!("\nisoscope: {} '{}': {f}", m.info().host, m.info().output);
        }
        Some(status_line(&st))
    });
    let (cap_stats, failure) = capture.stop();
    let mon_stats = monitor.as_ref().map(Monitor::stats);
    let mon_info = monitor.as_ref().map(|m| m.info().clone());
    let mon_stats = match monitor {
        Some(m) => Some(m.stop()),
        None => mon_stats,
    };
    // The capture has stopped: the recording writes what is left in its ring and closes.
    let recorded = recording.map(Recording::stop);
    let m = mon_stats.clone().unwrap_or_default();
    let report = Report {
        device: &info.device.name,
        simulated: info.device.simulated,
        format: format.to_string(),
        output: mon_info.as_ref(),
        output_error,
        latency_ms_median: m.latency_ms_median,
        latency_ms_p99: m.latency_ms_p99,
        holding_ms: mon_stats.as_ref().map(|m| m.holding_ms),
        underruns: m.underruns,
        resyncs: m.resyncs,
        output_fault: m.output_fault,
        overruns: m.overruns,
        capture_ring_drops: cap_stats.ring_drops,
        ratio: m.ratio,
        correction_ppm: m.correction_ppm,
        resampler_cpu_percent: m.resampler_cpu_percent,
        wav_frames: recorded
            .as_ref()
            .and_then(|r| r.as_ref().map_or_else(RecordError::frames_kept, |r| Some(r.frames))),
        error: failure.as_ref().map(CaptureError::to_string),
        monitor: mon_stats.as_ref(),
        capture: &cap_stats,
    };
    if let Some(path) = &args.stats_json {
        super::write_json(path, &report)?;
    }
    if mon_stats.is_some() {
        eprintln!(
            "isoscope: latency median {} ms, p99 {} ms (holding {:.1} ms, output delay {:.1} ms, bursts {:.1} ms); \
             {} underruns, {} overruns, {} resyncs, {} capture ring drops; ratio {:.6} ({:+.0} ppm); resampler CPU {:.1} %",
            fmt_ms(m.latency_ms_median),
            fmt_ms(m.latency_ms_p99),
            m.holding_ms,
            m.device_delay_ms,
            m.burst_ms,
            m.underruns,
            m.overruns,
            m.resyncs,
            cap_stats.ring_drops,
            m.ratio,
            m.correction_ppm,
            m.resampler_cpu_percent
        );
    }
    if let (Some(path), Some(frames)) = (&args.wav, report.wav_frames) {
        eprintln!("isoscope: wrote {frames} frames to {}", path.display());
    }
    if let Some(Err(e)) = recorded {
        return Err(e.into());
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    match (m.output_fault, &args.wav) {
        // An output without a clock plays nothing anyone hears, whatever it took.
        (Some(f @ audio::OutputFault::TooFast { .. }), None) => anyhow::bail!("nothing was heard: {f}"),
        (Some(f), None) if m.frames_played == 0 => anyhow::bail!("nothing was heard: {f}"),
        (Some(f), None) => anyhow::bail!("the monitor stopped: {f}"),
        (Some(f), Some(_)) if !fault_said => eprintln!("isoscope: warning: {f}"),
        _ => {}
    }
    if m.output_lost && args.wav.is_none() {
        anyhow::bail!("the audio output went away during playback ({} output errors)", m.output_errors);
    }
    Ok(ExitCode::SUCCESS)
}

/// A latency in ms; "> 2000.0" when it lies past the end of the histogram.
fn fmt_ms(v: Option<f64>) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if v >= audio::stats::LATENCY_RANGE_MS => format!("> {v:.1}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// `--list-outputs`: every output of every running sound system (or of `--host`), by host.
fn list_outputs(args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    let hosts = match args.host {
        Some(h) => vec![h],
        None => audio::AudioHost::ALL.to_vec(),
    };
    let default = audio::default_host();
    for host in hosts {
        let state = if !host.compiled() {
            "not in this build (cargo feature)".to_string()
        } else if !host.running() {
            "not running".to_string()
        } else if host == default {
            "running; the default".to_string()
        } else {
            "running".to_string()
        };
        println!("{} ({}): {state}", host.label(), host.name());
        if !(host.compiled() && host.running()) {
            continue;
        }
        match audio::list_host_outputs(host) {
            Ok(list) => {
                for o in list {
                    println!("  {:<40} {}", o.id, o.description);
                }
            }
            Err(e) => println!("  cannot list: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status_line(s: &MonitorStats) -> String {
    format!(
        "{:6.1} s  latency {} ms (median {}, p99 {})  buffered {:.1} ms  ratio {:.6} ({:+.0} ppm)  \
         underruns {}  overruns {}  resyncs {}",
        s.elapsed_ns as f64 / 1e9,
        fmt_ms(s.latency_ms_last),
        fmt_ms(s.latency_ms_median),
        fmt_ms(s.latency_ms_p99),
        s.buffered_ms,
        s.ratio,
        s.correction_ppm,
        s.underruns,
        s.overruns,
        s.resyncs
    )
}
