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

/// What `--stats-json` holds, every figure once: the monitor's ([`MonitorStats`]: latency,
/// underruns, overruns, resyncs, ratio, `output_fault`...) at the top level under their own
/// names (absent when no sound card could be used), the capture's under `capture` (its
/// `ring_drops`: frames the capture could not put in the monitor's ring or the recording's).
#[derive(serde::Serialize)]
struct Report<'a> {
    device: &'a str,
    simulated: bool,
    format: String,
    /// Null when no sound card could be used.
    output: Option<&'a MonitorInfo>,
    output_error: Option<String>,
    #[serde(flatten)]
    monitor: Option<&'a MonitorStats>,
    wav_frames: Option<u64>,
    error: Option<String>,
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
        monitor: mon_stats.as_ref(),
        wav_frames: recorded
            .as_ref()
            .and_then(|r| r.as_ref().map_or_else(RecordError::frames_kept, |r| Some(r.frames))),
        error: failure.as_ref().map(CaptureError::to_string),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_json_carries_every_counter_once() {
        let (monitor, capture) = (MonitorStats::default(), StatsSnapshot::default());
        let report = Report {
            device: "sim",
            simulated: true,
            format: "S16_LE 2 ch 48000 Hz".into(),
            output: None,
            output_error: None,
            monitor: Some(&monitor),
            wav_frames: None,
            error: None,
            capture: &capture,
        };
        // Counted in the text: a parser keeps one of two equal keys in an object.
        let text = serde_json::to_string(&report).unwrap();
        for key in
            ["latency_ms_median", "holding_ms", "underruns", "overruns", "resyncs", "ratio", "ring_drops"]
        {
            assert_eq!(text.matches(&format!("\"{key}\":")).count(), 1, "{key} in {text}");
        }
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["underruns"].is_u64() && v["capture"]["ring_drops"].is_u64(), "{v}");
    }
}
