//! `isoscope bench`: zero-copy against copy mode on one device, in alternating runs, with
//! the engine thread's CPU time per MiB, the whole machine's (from /proc/stat, so the
//! kernel's URB completion and copy work counts too) and the system calls per second.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use isoscope::capture::{Backend, Capture, CaptureConfig, ModeRequest, Sink, StatsSnapshot, StreamConfig};
use ringbuf::traits::{Consumer, Split};
use ringbuf::HeapRb;

use super::device;
use super::BenchArgs;
use isoscope::source::Source;

/// One run's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct RunFigures {
    mode: &'static str,
    round: usize,
    seconds: f64,
    mib: f64,
    cpu_us_per_mib: f64,
    /// Busy CPU time of the whole machine (all CPUs, user + system + interrupts) per MiB.
    system_cpu_us_per_mib: f64,
    syscalls_per_s: f64,
    kernel_copied_mib: f64,
    ring_drops: u64,
}

#[derive(serde::Serialize)]
struct Summary {
    device: String,
    runs: Vec<RunFigures>,
    zerocopy_cpu_us_per_mib_median: f64,
    copy_cpu_us_per_mib_median: f64,
    copy_over_zerocopy_cpu: f64,
    zerocopy_system_cpu_us_per_mib_median: f64,
    copy_system_cpu_us_per_mib_median: f64,
    zerocopy_syscalls_per_s_median: f64,
    copy_syscalls_per_s_median: f64,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.seconds > 0.0 && args.seconds.is_finite(), "--seconds must be positive");
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let mut runs = Vec::new();
    let mut name = String::new();
    for round in 1..=args.rounds {
        // A/B alternation, so drift in the machine's load hits both modes alike.
        for (mode, label) in [(ModeRequest::ZeroCopy, "zerocopy"), (ModeRequest::Copy, "copy")] {
            let cfg = CaptureConfig {
                mode,
                urbs: args.urbs,
                packets_per_urb: args.packets,
                no_data_timeout: args.device.no_data_timeout()?,
                ..CaptureConfig::default()
            };
            let busy_before = system_busy_us();
            let (dev_name, stats) = match device::open(&args.device)?.0 {
                Source::Sim(device) => one_run(device.backend(), device.stream(), &cfg, args.seconds)?,
                Source::Usb(capture) => {
                    let capture = *capture;
                    one_run(capture.backend, capture.stream, &cfg, args.seconds)?
                }
            };
            let system_us = busy_before.zip(system_busy_us()).map_or(0, |(a, b)| b.saturating_sub(a));
            name = dev_name;
            let mib = stats.bytes as f64 / f64::from(1 << 20);
            let secs = stats.elapsed_ns as f64 / 1e9;
            let figures = RunFigures {
                mode: label,
                round,
                seconds: secs,
                mib,
                cpu_us_per_mib: stats.cpu_us_per_mib(),
                system_cpu_us_per_mib: system_us as f64 / mib.max(1e-9),
                syscalls_per_s: stats.syscalls as f64 / secs.max(1e-9),
                kernel_copied_mib: stats.kernel_copied_bytes as f64 / f64::from(1 << 20),
                ring_drops: stats.ring_drops,
            };
            eprintln!(
                "isoscope: round {round} {label:>8}: {:.2} MiB in {:.2} s, {:.0} us CPU/MiB (machine {:.0}), {:.0} syscalls/s, kernel copied {:.2} MiB",
                figures.mib,
                figures.seconds,
                figures.cpu_us_per_mib,
                figures.system_cpu_us_per_mib,
                figures.syscalls_per_s,
                figures.kernel_copied_mib
            );
            runs.push(figures);
        }
    }
    let median = |mode: &str, f: fn(&RunFigures) -> f64| {
        let mut v: Vec<f64> = runs.iter().filter(|r| r.mode == mode).map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let zc = median("zerocopy", |r| r.cpu_us_per_mib);
    let cp = median("copy", |r| r.cpu_us_per_mib);
    let summary = Summary {
        device: name,
        zerocopy_cpu_us_per_mib_median: zc,
        copy_cpu_us_per_mib_median: cp,
        copy_over_zerocopy_cpu: if zc > 0.0 { cp / zc } else { 0.0 },
        zerocopy_system_cpu_us_per_mib_median: median("zerocopy", |r| r.system_cpu_us_per_mib),
        copy_system_cpu_us_per_mib_median: median("copy", |r| r.system_cpu_us_per_mib),
        zerocopy_syscalls_per_s_median: median("zerocopy", |r| r.syscalls_per_s),
        copy_syscalls_per_s_median: median("copy", |r| r.syscalls_per_s),
        runs,
    };
    eprintln!(
        "isoscope: median CPU per MiB: zero-copy {:.0} us, copy {:.0} us (copy costs {:.2}x); whole machine: zero-copy {:.0} us, copy {:.0} us",
        summary.zerocopy_cpu_us_per_mib_median,
        summary.copy_cpu_us_per_mib_median,
        summary.copy_over_zerocopy_cpu,
        summary.zerocopy_system_cpu_us_per_mib_median,
        summary.copy_system_cpu_us_per_mib_median
    );
    let json = serde_json::to_string_pretty(&summary)?;
    match &args.json {
        Some(path) => {
            std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))?
        }
        None => println!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Busy time of all CPUs so far in microseconds, from the first line of /proc/stat (user,
/// nice, system, irq, softirq and steal; not idle or iowait). None where it cannot be read.
fn system_busy_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    busy_us_from_proc_stat(&stat, nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??)
}

fn busy_us_from_proc_stat(stat: &str, ticks_per_s: i64) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).map_while(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    let tps = u64::try_from(ticks_per_s).ok().filter(|&t| t > 0)?;
    Some(busy * 1_000_000 / tps)
}

/// Captures for `seconds` while a second thread drains the ring, then stops.
fn one_run<B: Backend>(
    backend: B,
    stream: StreamConfig,
    cfg: &CaptureConfig,
    seconds: f64,
) -> anyhow::Result<(String, StatsSnapshot)> {
    let (prod, mut cons) = HeapRb::<f32>::new(1 << 22).split();
    let cap = Capture::start(backend, stream, cfg, vec![Sink::Frames(prod)])?;
    let name = cap.info().device.name.clone();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut scratch = vec![0f32; 1 << 16];
    while Instant::now() < end && !cap.is_finished() {
        if cons.pop_slice(&mut scratch) == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let (stats, failure) = cap.stop();
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok((name, stats))
}

#[cfg(test)]
mod tests {
    use super::busy_us_from_proc_stat;

    #[test]
    fn busy_time_leaves_idle_and_iowait_out() {
        let stat = "cpu  100 5 40 9000 30 7 3 2 0 0\ncpu0 50 2 20 4500 15 3 1 1 0 0\n";
        assert_eq!(busy_us_from_proc_stat(stat, 100), Some((100 + 5 + 40 + 7 + 3 + 2) * 10_000));
        assert_eq!(busy_us_from_proc_stat("intr 1 2\n", 100), None);
        assert_eq!(busy_us_from_proc_stat(stat, 0), None);
    }
}
