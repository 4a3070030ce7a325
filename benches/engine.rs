//! The capture engine's hot path on the simulated device, as fast as it goes, in zero-copy
//! and copy mode, next to a plain memcpy of the same payload in the same run.
//!
//! The stream is S16 stereo in high-bandwidth high-speed packets (3 x 1024 B per 125 us
//! microframe), so per-packet costs are those of a real fast device. The controller's DMA
//! is free for the CPU, as on hardware (`SimConfig::free_dma`). Every URB the engine reaps,
//! resubmits, walks the 128 packets, copies the valid bytes out, decodes them to f32 and
//! pushes them into a ring that a second thread drains (`scope`), and in `scope+wav` also
//! pushes the raw bytes into a second ring. Copy mode adds what the kernel does on the
//! reaping thread: zero a bounce buffer at submit, copy the whole buffer at reap.
//!
//! Two figures per case, from separate criterion runs of the same engine code:
//! - `engine_hot_path`: wall-clock time of the whole capture while a drain thread on the
//!   other core empties the rings (when it falls behind, the engine drops and counts, it
//!   never waits). No run is retried: every run's ring drops are counted per case and
//!   printed at the end (and written as JSON to `$ISOSCOPE_BENCH_DROPS` when set, with the
//!   wall time of all runs, so the rate at which the consumer received frames follows), and
//!   every run checks that each frame reached the drain thread or was counted as dropped.
//! - `engine_thread_cpu`: the engine thread's own CPU time (CLOCK_THREAD_CPUTIME_ID, the
//!   engine's `cpu_ns` counter) with no drain thread at all: runs of [`URBS_PER_ITER`] URBs
//!   into rings that hold a whole run (emptied between runs, untimed), so nothing can drop
//!   and no timing decides how much work is done; every run checks that the rings hold
//!   every frame.
//!
//! `ISOSCOPE_BENCH_CALLGRIND=<case>:<urbs>` runs one fixed workload instead, with no drain
//! thread (rings large enough for the whole run) and nothing paced, for
//! `valgrind --tool=callgrind --toggle-collect='*callgrind_measured*'`: `<case>` is
//! `scope/zerocopy`, `scope/copy`, `scope+wav/zerocopy`, `scope+wav/copy` or `memcpy`.
//! `scripts/bench-report` runs it at two lengths and takes the difference, so the fixed
//! cost of starting and stopping a capture drops out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use isoscope::capture::{Capture, CaptureConfig, ModeRequest, Sink, StatsSnapshot};
use isoscope::dsp::{PcmFormat, SampleFormat};
use isoscope::sim::{SimConfig, SimDevice};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::wrap::Wrap;
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// 750 stereo S16 frames per microframe (6 MHz): 3000-byte packets, 3004 B requested.
const FORMAT: PcmFormat = PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 6_000_000 };
const PACKETS_PER_URB: usize = 128;
const URBS_PER_ITER: u64 = 64;
/// Payload bytes per packet and per URB.
const PACKET_BYTES: u64 = (FORMAT.rate as u64 / 8000) * FORMAT.frame_bytes() as u64;
const URB_BYTES: u64 = PACKET_BYTES * PACKETS_PER_URB as u64;
const URB_FRAMES: u64 = URB_BYTES / FORMAT.frame_bytes() as u64;

const CASES: [(&str, bool, &str, ModeRequest); 4] = [
    ("scope", false, "zerocopy", ModeRequest::ZeroCopy),
    ("scope", false, "copy", ModeRequest::Copy),
    ("scope+wav", true, "zerocopy", ModeRequest::ZeroCopy),
    ("scope+wav", true, "copy", ModeRequest::Copy),
];

fn device() -> SimDevice {
    SimDevice::new(SimConfig {
        format: FORMAT,
        realtime: false,
        usbfs_memory_mb: 0,
        free_dma: true,
        ..SimConfig::default()
    })
    .expect("bench device")
}

fn config(mode: ModeRequest) -> CaptureConfig {
    CaptureConfig {
        mode,
        packets_per_urb: Some(PACKETS_PER_URB),
        urbs: Some(8),
        app_cap_bytes: 64 << 20,
        ..CaptureConfig::default()
    }
}

/// Every run of one benchmark case: how many, and how many frames the consumer missed.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
struct Tally {
    runs: u64,
    runs_with_drops: u64,
    /// Frames the engine pushed or tried to push (each sink counts its own).
    frames_offered: u64,
    frames_dropped: u64,
    /// Sinks per run, and the wall-clock time of all runs: what the consumer received per
    /// second is `(frames_offered - frames_dropped) / sinks` frames over `wall_ns`.
    sinks: u64,
    wall_ns: u64,
}

static TALLIES: Mutex<BTreeMap<String, Tally>> = Mutex::new(BTreeMap::new());

fn tally(case: &str, run: &Run) {
    let mut t = TALLIES.lock().unwrap_or_else(|e| e.into_inner());
    let e = t.entry(case.to_string()).or_default();
    e.runs += 1;
    e.runs_with_drops += u64::from(run.stats.ring_drops > 0);
    e.frames_offered += run.frames_offered;
    e.frames_dropped += run.stats.ring_drops;
    e.sinks = run.sinks;
    e.wall_ns += run.wall.as_nanos() as u64;
}

/// One capture run with a draining consumer thread.
struct Run {
    wall: Duration,
    stats: StatsSnapshot,
    frames_offered: u64,
    sinks: u64,
}

/// Runs the engine for `urbs` URBs with a draining consumer thread on the other core, and
/// checks that nothing was lost uncounted: every frame the engine produced reached the
/// drain thread, once per sink, or is in the engine's `ring_drops`.
fn run_engine(dev: &SimDevice, mode: ModeRequest, with_bytes: bool, urbs: u64) -> Run {
    // Rings of about 43 URBs each (16 MiB of bytes, 32 MiB of f32).
    let (bytes_p, mut bytes_c) = HeapRb::<u8>::new(16 << 20).split();
    let (frames_p, mut frames_c) = HeapRb::<f32>::new(8 << 20).split();
    let mut sinks = vec![Sink::Frames(frames_p)];
    if with_bytes {
        sinks.push(Sink::Bytes(bytes_p));
    }
    let n_sinks = sinks.len() as u64;
    let done = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(std::sync::Barrier::new(2));
    let drain = {
        let done = Arc::clone(&done);
        let ready = Arc::clone(&ready);
        std::thread::Builder::new()
            .name("bench-drain".into())
            .spawn(move || {
                pin_to_cpu(1);
                ready.wait();
                // A consumer on its own core, as the UI and the recorder are.
                let mut b = vec![0u8; 4 << 20];
                let mut f = vec![0f32; 2 << 20];
                let (mut nb, mut nf) = (0u64, 0u64);
                loop {
                    // Read `done` before the rings: once set, the engine has pushed its last.
                    let last = done.load(Ordering::Acquire);
                    let (pb, pf) = (bytes_c.pop_slice(&mut b), frames_c.pop_slice(&mut f));
                    nb += pb as u64;
                    nf += pf as u64;
                    if pb + pf == 0 {
                        if last {
                            break (nb, nf);
                        }
                        std::hint::spin_loop();
                    }
                }
            })
            .expect("drain thread")
    };
    pin_to_cpu(0);
    ready.wait();
    let start = Instant::now();
    let (_, stats) = Capture::run_blocking(dev.backend(), dev.stream(), &config(mode), sinks, urbs)
        .expect("bench capture");
    let wall = start.elapsed();
    done.store(true, Ordering::Release);
    let (bytes_seen, samples_seen) = drain.join().expect("drain thread");
    assert_eq!(stats.urbs, urbs, "the engine stopped early");
    assert_eq!(stats.bytes, urbs * URB_BYTES, "short of payload: the stream is not the benchmark's");
    let received = bytes_seen / FORMAT.frame_bytes() as u64 + samples_seen / u64::from(FORMAT.channels);
    let frames_offered = stats.frames * n_sinks;
    assert_eq!(
        received + stats.ring_drops,
        frames_offered,
        "frames neither received by the drain thread nor counted as dropped"
    );
    Run { wall, stats, frames_offered, sinks: n_sinks }
}

/// Keeps the engine and the drain thread off each other's core (best effort).
fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// The same payload as `urbs` URBs, one URB's worth at a time (the engine's working set is
/// one URB too).
fn memcpy_urbs(src: &[u8], dst: &mut [u8], urbs: u64) {
    for _ in 0..urbs {
        dst.copy_from_slice(std::hint::black_box(src));
        std::hint::black_box(&mut *dst);
    }
}

/// `urbs_per_iter` is [`URBS_PER_ITER`] when measuring; fewer in criterion's test mode
/// (`cargo test`), which runs each case once and in a debug build.
fn engine(c: &mut Criterion, urbs_per_iter: u64) {
    let dev = device();
    let mut g = c.benchmark_group("engine_hot_path");
    g.throughput(Throughput::Bytes(URB_BYTES * urbs_per_iter));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for (sinks, with_bytes, name, mode) in CASES {
        let id = format!("engine_hot_path/{sinks}/{name}");
        g.bench_function(BenchmarkId::new(sinks, name), |b| {
            b.iter_custom(|iters| {
                let run = run_engine(&dev, mode, with_bytes, urbs_per_iter * iters);
                tally(&id, &run);
                run.wall
            })
        });
    }
    let src = vec![0x5Au8; URB_BYTES as usize];
    let mut dst = vec![0u8; URB_BYTES as usize];
    g.bench_function(BenchmarkId::new("baseline", "memcpy"), |b| {
        b.iter(|| memcpy_urbs(&src, &mut dst, urbs_per_iter))
    });
    g.finish();

    let mut g = c.benchmark_group("engine_thread_cpu");
    g.throughput(Throughput::Bytes(URB_BYTES * urbs_per_iter));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for (sinks, with_bytes, name, mode) in CASES {
        let mut rings = FixedRings::new(urbs_per_iter, with_bytes);
        g.bench_function(BenchmarkId::new(sinks, name), |b| {
            b.iter_custom(|iters| {
                let mut cpu = Duration::ZERO;
                for _ in 0..iters {
                    let sinks = rings.sinks();
                    let (_, stats) = Capture::run_blocking(
                        dev.backend(),
                        dev.stream(),
                        &config(mode),
                        sinks,
                        urbs_per_iter,
                    )
                    .expect("bench capture");
                    rings.check(&stats).unwrap_or_else(|e| panic!("{e}"));
                    cpu += Duration::from_nanos(stats.cpu_ns);
                }
                cpu
            })
        });
    }
    g.finish();
}

/// Prints every case's ring drops (and writes them to `$ISOSCOPE_BENCH_DROPS`).
fn report_tallies() {
    let t = TALLIES.lock().unwrap_or_else(|e| e.into_inner());
    for (case, t) in t.iter() {
        if t.runs_with_drops > 0 {
            eprintln!(
                "{case}: the drain thread fell behind in {} of {} runs: {} of {} frames dropped ({:.3} %)",
                t.runs_with_drops,
                t.runs,
                t.frames_dropped,
                t.frames_offered,
                t.frames_dropped as f64 * 100.0 / t.frames_offered.max(1) as f64
            );
        } else {
            eprintln!("{case}: {} runs, no drops", t.runs);
        }
    }
    if let Some(path) = std::env::var_os("ISOSCOPE_BENCH_DROPS") {
        let json = serde_json::to_string_pretty(&*t).expect("tallies as JSON");
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("cannot write {}: {e}", std::path::Path::new(&path).display());
            std::process::exit(1);
        }
    }
}

/// Rings that hold every frame of `urbs` URBs for each sink, read by no one while the
/// engine runs; emptied and handed to the engine again (new producers on the same rings)
/// for each run, so they are allocated and faulted in once.
struct FixedRings {
    urbs: u64,
    frames: HeapCons<f32>,
    bytes: Option<HeapCons<u8>>,
}

impl FixedRings {
    fn new(urbs: u64, with_bytes: bool) -> FixedRings {
        let frames = (urbs * URB_FRAMES) as usize;
        let (mut fp, fc) = HeapRb::<f32>::new(frames * usize::from(FORMAT.channels)).split();
        let (mut bp, bc) = HeapRb::<u8>::new(frames * FORMAT.frame_bytes()).split();
        // Fault the pages in now, not in the first measured run.
        while fp.push_slice(&[0.0; 4096]) > 0 {}
        while with_bytes && bp.push_slice(&[0; 4096]) > 0 {}
        FixedRings { urbs, frames: fc, bytes: with_bytes.then_some(bc) }
    }

    /// Empties the rings and gives the engine its sinks on them.
    fn sinks(&mut self) -> Vec<Sink> {
        self.frames.clear();
        let mut sinks = vec![Sink::Frames(HeapProd::new(Arc::clone(self.frames.rb_ref())))];
        if let Some(b) = &mut self.bytes {
            b.clear();
            sinks.push(Sink::Bytes(HeapProd::new(Arc::clone(b.rb_ref()))));
        }
        sinks
    }

    /// Checks that a run of `self.urbs` URBs put every frame into every ring.
    fn check(&self, stats: &StatsSnapshot) -> Result<(), String> {
        let want = self.urbs * URB_FRAMES;
        let got_frames = (self.frames.occupied_len() / usize::from(FORMAT.channels)) as u64;
        let got_bytes = self.bytes.as_ref().map(|b| (b.occupied_len() / FORMAT.frame_bytes()) as u64);
        if stats.urbs != self.urbs
            || stats.ring_drops != 0
            || got_frames != want
            || got_bytes.is_some_and(|b| b != want)
        {
            return Err(format!(
                "the fixed workload did not do its work: {} of {} URBs, {} drops, {got_frames} frames \
                 and {got_bytes:?} byte frames of {want} in the rings",
                stats.urbs, self.urbs, stats.ring_drops
            ));
        }
        Ok(())
    }
}

/// The engine's work for `urbs` URBs, the function callgrind collects in.
#[inline(never)]
fn callgrind_measured_engine(
    dev: &SimDevice,
    cfg: &CaptureConfig,
    sinks: Vec<Sink>,
    urbs: u64,
) -> StatsSnapshot {
    Capture::run_blocking(dev.backend(), dev.stream(), cfg, sinks, urbs).expect("bench capture").1
}

/// A memcpy of the same payload, the function callgrind collects in.
#[inline(never)]
fn callgrind_measured_memcpy(src: &[u8], dst: &mut [u8], urbs: u64) {
    memcpy_urbs(src, dst, urbs);
}

/// One fixed, unpaced workload on the calling thread: `urbs` URBs of `case` with rings that
/// hold the whole run (no consumer thread, so nothing depends on timing), or a memcpy of
/// the same payload. Checks that the engine delivered every frame into every sink.
fn fixed_workload(case: &str, urbs: u64) -> Result<(), String> {
    if case == "memcpy" {
        let src = vec![0x5Au8; URB_BYTES as usize];
        let mut dst = vec![0u8; URB_BYTES as usize];
        callgrind_measured_memcpy(&src, &mut dst, urbs);
        return Ok(());
    }
    let (sinks_name, mode_name) = case.split_once('/').ok_or_else(|| format!("no such case: {case}"))?;
    let &(_, with_bytes, _, mode) = CASES
        .iter()
        .find(|(s, _, m, _)| *s == sinks_name && *m == mode_name)
        .ok_or_else(|| format!("no such case: {case}"))?;
    let mut rings = FixedRings::new(urbs, with_bytes);
    let stats = callgrind_measured_engine(&device(), &config(mode), rings.sinks(), urbs);
    rings.check(&stats)
}

fn main() {
    if let Ok(spec) = std::env::var("ISOSCOPE_BENCH_CALLGRIND") {
        let run = spec
            .rsplit_once(':')
            .and_then(|(case, n)| Some((case, n.parse::<u64>().ok()?)))
            .ok_or_else(|| format!("ISOSCOPE_BENCH_CALLGRIND={spec}: want <case>:<urbs>"))
            .and_then(|(case, urbs)| fixed_workload(case, urbs));
        if let Err(e) = run {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    // The callgrind workload must do real work too: check it once, briefly, every run
    // (`cargo test --all-targets` runs this binary once in criterion's test mode).
    for (sinks, _, mode, _) in CASES {
        fixed_workload(&format!("{sinks}/{mode}"), 2).unwrap_or_else(|e| panic!("{e}"));
    }
    // Criterion measures only when cargo passes `--bench`; otherwise it is its test mode.
    let measuring = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    engine(&mut c, if measuring { URBS_PER_ITER } else { 4 });
    c.final_summary();
    report_tallies();
}
