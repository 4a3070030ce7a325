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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use isoscope::capture::{Capture, CaptureConfig, ModeRequest, Sink};
use isoscope::dsp::{PcmFormat, SampleFormat};
use isoscope::sim::{SimConfig, SimDevice};
use ringbuf::traits::{Consumer, Split};
use ringbuf::HeapRb;

/// 750 stereo S16 frames per microframe (6 MHz): 3000-byte packets, 3004 B requested.
const FORMAT: PcmFormat = PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 6_000_000 };
const PACKETS_PER_URB: usize = 128;
const URBS_PER_ITER: u64 = 64;

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

/// Times `iters` iterations, keeping only runs in which the consumer kept up: a run with
/// ring drops did less work than it should and is run again (a descheduled drain thread
/// on a busy machine), so no figure includes skipped pushes.
fn time_engine(dev: &SimDevice, mode: ModeRequest, with_bytes: bool, iters: u64) -> Duration {
    for _ in 0..20 {
        let (elapsed, drops) = run_engine(dev, mode, with_bytes, iters);
        if drops == 0 {
            return elapsed;
        }
    }
    panic!("the drain thread fell behind in 20 runs in a row; the machine is too busy to measure");
}

/// Runs the engine for `URBS_PER_ITER` URBs per iteration with a draining consumer thread.
/// Returns the time and the frames dropped.
fn run_engine(dev: &SimDevice, mode: ModeRequest, with_bytes: bool, iters: u64) -> (Duration, u64) {
    let cfg = CaptureConfig {
        mode,
        packets_per_urb: Some(PACKETS_PER_URB),
        urbs: Some(8),
        app_cap_bytes: 64 << 20,
        ..CaptureConfig::default()
    };
    // Rings of about 20 URBs each.
    let (bytes_p, mut bytes_c) = HeapRb::<u8>::new(16 << 20).split();
    let (frames_p, mut frames_c) = HeapRb::<f32>::new(8 << 20).split();
    let mut sinks = vec![Sink::Frames(frames_p)];
    if with_bytes {
        sinks.push(Sink::Bytes(bytes_p));
    }
    let done = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(std::sync::Barrier::new(2));
    let drain = {
        let done = Arc::clone(&done);
        let ready = Arc::clone(&ready);
        std::thread::spawn(move || {
            pin_to_cpu(1);
            ready.wait();
            // A consumer on its own core, as the UI and the recorder are.
            let mut b = vec![0u8; 4 << 20];
            let mut f = vec![0f32; 2 << 20];
            while !done.load(Ordering::Relaxed) {
                if bytes_c.pop_slice(&mut b) + frames_c.pop_slice(&mut f) == 0 {
                    std::hint::spin_loop();
                }
            }
        })
    };
    pin_to_cpu(0);
    ready.wait();
    let start = Instant::now();
    let (_, stats) = Capture::run_blocking(dev.backend(), dev.stream(), &cfg, sinks, URBS_PER_ITER * iters)
        .expect("bench capture");
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    drain.join().expect("drain thread");
    assert_eq!(stats.urbs, URBS_PER_ITER * iters);
    (elapsed, stats.ring_drops)
}

/// Keeps the engine and the drain thread off each other's core (best effort).
fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn payload_per_iter() -> u64 {
    let per_packet = (FORMAT.rate as u64 / 8000) * FORMAT.frame_bytes() as u64;
    per_packet * PACKETS_PER_URB as u64 * URBS_PER_ITER
}

fn engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_hot_path");
    g.throughput(Throughput::Bytes(payload_per_iter()));
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    let dev = device();
    for (sinks, with_bytes) in [("scope", false), ("scope+wav", true)] {
        for (name, mode) in [("zerocopy", ModeRequest::ZeroCopy), ("copy", ModeRequest::Copy)] {
            g.bench_function(BenchmarkId::new(sinks, name), |b| {
                b.iter_custom(|iters| time_engine(&dev, mode, with_bytes, iters))
            });
        }
    }
    // The same payload, one URB's worth at a time (the engine's working set is one URB too).
    let urb = (payload_per_iter() / URBS_PER_ITER) as usize;
    let src = vec![0x5Au8; urb];
    let mut dst = vec![0u8; urb];
    g.bench_function(BenchmarkId::new("baseline", "memcpy"), |b| {
        b.iter(|| {
            for _ in 0..URBS_PER_ITER {
                dst.copy_from_slice(std::hint::black_box(&src));
                std::hint::black_box(&mut dst);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
