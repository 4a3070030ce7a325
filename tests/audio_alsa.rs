//! Live monitoring through ALSA without hardware: the test writes an ALSA configuration
//! defining `file` PCMs (slave `null`, raw output to a file) and points alsa-lib at it with
//! `ALSA_CONFIG_PATH` (the system's alsa.conf, then ours). The simulated device plays
//! through cpal and alsa-lib into those files, which are then checked.
//!
//! ALSA's `null` PCM takes frames as fast as they come (3 s of audio in about 6 ms here),
//! so these tests use `Pacing::HostClock`: the monitor's callback waits until each period
//! is due on the host clock, as a card with a two-period buffer would. Everything else
//! (cpal's ALSA worker, the stream setup, sample format negotiation, the file plugin) is
//! the real path.
//!
//! They run in real time, one at a time. A stall of the whole machine longer than the
//! latency headroom (seen here for a minute or two after a big build, and for long spells
//! on a busy virtual machine) empties any 20 ms output; a probe thread tells such stalls
//! apart, and a run passes when each underrun beyond the rules is matched by a stall of the
//! machine itself in that run; one that fails even so while the machine stalled is run again
//! ([`support::checked_runs`]).
//!
//! Needs `libasound2-dev` to build and `libasound2-data` (alsa.conf) to run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use isoscope::audio::{Monitor, MonitorConfig, MonitorStats, Pacing};
use isoscope::capture::{Capture, CaptureConfig, Sink};
use isoscope::dsp::{PcmFormat, SampleFormat};
use isoscope::sim::{Signal, SimConfig, SimDevice};

const PCMS: [&str; 3] = ["iso_equal48", "iso_equal44", "iso_drift"];

mod support;

/// The folder holding the ALSA configuration and the files the PCMs write, in a child
/// process of its own (see [`support::in_alsa_child`]); `None` in the parent, once the
/// child passed.
fn alsa_dir(test: &str) -> Option<PathBuf> {
    support::in_alsa_child(test, || {
        // The PCMs write to memory (tmpfs) where there is one, and the disk's dirty pages
        // are flushed first: right after a big build, writeback can block the ALSA
        // thread's write() for longer than the latency headroom, which no probe of the
        // CPU sees, and that is a test of the disk, not of the monitor.
        nix::unistd::sync();
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
        let dir = dir.unwrap().keep();
        let mut conf = String::new();
        for name in PCMS {
            conf += &format!(
                "pcm.{name} {{\n  type file\n  slave.pcm \"null\"\n  file \"{}\"\n  format \"raw\"\n  \
                 hint {{ show on description \"isoscope test sink {name}\" }}\n}}\n",
                dir.join(format!("{name}.raw")).display()
            );
        }
        let path = dir.join("asoundrc");
        std::fs::write(&path, conf).unwrap();
        (dir, path)
    })
}

/// What one real-time run gave: the monitor's statistics, the capture's ring drops and the
/// samples the PCM received.
struct Played {
    stats: MonitorStats,
    drops: u64,
    samples: Vec<f32>,
}

/// A stall of the whole machine longer than this (the 20 ms target minus the card's two
/// periods) empties the output whatever the monitor does.
const STALL_LIMIT_MS: f64 = 12.0;

/// Runs `play` and `check`s it, five runs at most, as [`support::checked_runs`] says: a
/// glitch is excused only by, and a failed check is run again only after, a probe seeing
/// the machine itself stall for longer than
/// [`STALL_LIMIT_MS`] (seen here after big builds and on a busy virtual machine: 15-54 ms
/// stalls of every process, with the monitor's underruns in the same runs).
fn play_checked(
    what: &str,
    run: impl Fn() -> (Played, support::Stalls),
    check: impl Fn(&Played, u64) -> Result<(), String>,
) -> (Played, u64) {
    support::checked_runs(what, 5, run, check)
}

/// Plays a 1 kHz sine from the simulated device at `rate` to `pcm` for `seconds`.
fn play(
    dir: &Path,
    pcm: &str,
    rate: u32,
    clock_ppm: f64,
    seconds: f64,
    output_rate: Option<u32>,
) -> (Played, support::Stalls) {
    // One real-time run at a time: on a 2-core machine three of them at once (each a
    // capture thread, a resampling worker and an ALSA thread, in a debug build) starve
    // each other, which is a test of the machine, not of the monitor.
    static REALTIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = REALTIME.lock().unwrap_or_else(|e| e.into_inner());
    let format = PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate };
    let device = SimDevice::new(SimConfig {
        signal: Signal::Sine { freq: 1000.0, amplitude: 0.5 },
        format,
        clock_ppm,
        ..SimConfig::default()
    })
    .unwrap();
    let (prod, cons) = Monitor::input_ring(format);
    let cfg = MonitorConfig {
        output: Some(pcm.into()),
        output_rate,
        pacing: Pacing::HostClock,
        ..MonitorConfig::default()
    };
    let probe = support::StallProbe::start(STALL_LIMIT_MS);
    let monitor = Monitor::start(cons, format, &cfg).expect("the test PCM opens");
    assert_eq!(monitor.info().sample_format, "f32", "the file PCM takes float");
    let capture = Capture::start(
        device.backend(),
        device.stream(),
        &CaptureConfig::default(),
        vec![Sink::Frames(prod)],
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (cap, failure) = capture.stop();
    assert!(failure.is_none(), "{failure:?}");
    let stats = monitor.stop();
    let stalls = probe.finish();
    let bytes = std::fs::read(dir.join(format!("{pcm}.raw"))).unwrap();
    let samples = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    (Played { stats, drops: cap.ring_drops, samples }, stalls)
}

/// Fits `a sin(wt) + b cos(wt) + c` to `x` at angular frequency `w` (rad/sample); returns
/// the RMS residual.
#[allow(clippy::needless_range_loop)] // a 3x3 solve reads best with indices
fn residual(x: &[f64], w: f64) -> f64 {
    let mut m = [[0.0f64; 3]; 3];
    let mut v = [0.0f64; 3];
    for (n, &y) in x.iter().enumerate() {
        let b = [(w * n as f64).sin(), (w * n as f64).cos(), 1.0];
        for i in 0..3 {
            v[i] += b[i] * y;
            for j in 0..3 {
                m[i][j] += b[i] * b[j];
            }
        }
    }
    // Gaussian elimination, 3x3.
    for i in 0..3 {
        for k in i + 1..3 {
            let f = m[k][i] / m[i][i];
            for j in 0..3 {
                m[k][j] -= f * m[i][j];
            }
            v[k] -= f * v[i];
        }
    }
    let mut p = [0.0f64; 3];
    for i in (0..3).rev() {
        p[i] = (v[i] - (i + 1..3).map(|j| m[i][j] * p[j]).sum::<f64>()) / m[i][i];
    }
    let e: f64 = x
        .iter()
        .enumerate()
        .map(|(n, &y)| {
            let f = p[0] * (w * n as f64).sin() + p[1] * (w * n as f64).cos() + p[2];
            (y - f).powi(2)
        })
        .sum();
    (e / x.len() as f64).sqrt()
}

/// The worst RMS error (dBFS) of 10 ms windows of the left channel against the best-fitting
/// 1 kHz sine (frequency searched within ±2000 ppm, as the drift correction may shift it),
/// over the played part (leading and trailing silence skipped), the windows checked, and
/// how many were worse than [`GLITCH_DB`].
fn worst_window_error_db(samples: &[f32], channels: usize, rate: f64) -> (f64, usize, usize) {
    let left: Vec<f64> = samples.chunks_exact(channels).map(|f| f64::from(f[0])).collect();
    let first = left.iter().position(|v| v.abs() > 0.01).expect("some sound was played");
    let last = left.iter().rposition(|v| v.abs() > 0.01).unwrap();
    // Past the start (the resampler's and the ring's first frames) and short of the end.
    let body = &left[first + rate as usize / 10..last.saturating_sub(rate as usize / 10)];
    let win = (rate / 100.0) as usize;
    let mut worst = f64::MIN;
    let mut windows = 0;
    let mut glitched = 0;
    for w in body.chunks_exact(win) {
        let best = (-40..=40)
            .map(|k| residual(w, 2.0 * std::f64::consts::PI * 1000.0 * (1.0 + k as f64 * 50e-6) / rate))
            .fold(f64::MAX, f64::min);
        let db = 20.0 * best.max(1e-12).log10();
        worst = worst.max(db);
        glitched += usize::from(db >= GLITCH_DB);
        windows += 1;
    }
    (worst, windows, glitched)
}

/// A 10 ms window further than this from a clean sine is a glitch.
const GLITCH_DB: f64 = -60.0;

/// Every 10 ms window of the left channel within -60 dBFS RMS of a clean 1 kHz sine (S16
/// input quantisation alone is about -101 dBFS; the sinc resampler adds little more), at
/// least 200 windows, and no underrun, overrun or capture drop; with `excused` machine
/// stalls, at most that many underruns and overruns and three glitched windows for each
/// (the gap, and the jump back), never a capture drop.
fn clean_sine(p: &Played, excused: u64) -> Result<(f64, usize), String> {
    let (worst, windows, glitched) = worst_window_error_db(&p.samples, 2, 48_000.0);
    let st = &p.stats;
    if windows <= 200 {
        return Err(format!("only {windows} windows played"));
    }
    if glitched as u64 > 3 * excused {
        return Err(format!("{glitched} glitched windows, worst error {worst:.1} dBFS; {st:?}"));
    }
    glitches_within(p, excused)?;
    Ok((worst, windows))
}

/// At most `excused` underruns and overruns, and no capture drop.
fn glitches_within(p: &Played, excused: u64) -> Result<(), String> {
    let st = &p.stats;
    if st.underruns > excused || st.overruns > excused || p.drops > 0 {
        return Err(format!("underruns, overruns, drops {:?}: {st:?}", (st.underruns, st.overruns, p.drops)));
    }
    Ok(())
}

#[test]
fn a_48k_sine_comes_out_of_alsa_as_it_went_in() {
    let Some(dir) = alsa_dir("a_48k_sine_comes_out_of_alsa_as_it_went_in") else { return };
    let (p, excused) = play_checked(
        "48k -> 48k",
        || play(&dir, "iso_equal48", 48_000, 0.0, 3.0, None),
        |p, excused| clean_sine(p, excused).map(drop),
    );
    let (worst, windows) = clean_sine(&p, excused).unwrap();
    eprintln!("48k -> 48k: worst window error {worst:.1} dBFS over {windows} windows; {:?}", p.stats);
}

#[test]
fn a_44k1_device_is_resampled_to_a_48k_output() {
    let Some(dir) = alsa_dir("a_44k1_device_is_resampled_to_a_48k_output") else { return };
    let check = |p: &Played, excused| {
        clean_sine(p, excused)?;
        let ratio = p.stats.ratio;
        if (ratio / (48_000.0 / 44_100.0) - 1.0).abs() >= 0.0011 {
            return Err(format!("ratio {ratio}"));
        }
        Ok(())
    };
    let (p, excused) =
        play_checked("44.1k -> 48k", || play(&dir, "iso_equal44", 44_100, 0.0, 3.0, Some(48_000)), check);
    let (worst, windows) = clean_sine(&p, excused).unwrap();
    eprintln!("44.1k -> 48k: worst window error {worst:.1} dBFS over {windows} windows; {:?}", p.stats);
}

/// 60 s in real time (the longest test; about a minute of CI).
#[test]
fn a_500_ppm_fast_device_holds_the_latency_for_60_s_without_underrun() {
    let Some(dir) = alsa_dir("a_500_ppm_fast_device_holds_the_latency_for_60_s_without_underrun") else {
        return;
    };
    let seconds = std::env::var("ISOSCOPE_DRIFT_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let check = |p: &Played, excused| {
        glitches_within(p, excused)?;
        let st = &p.stats;
        let median = st.latency_ms_median.ok_or("no latency measured")?;
        let p99 = st.latency_ms_p99.ok_or("no latency measured")?;
        if (median - 20.0).abs() > 2.0 {
            return Err(format!("median latency {median} ms, target 20"));
        }
        if p99 > 26.0 {
            return Err(format!("p99 latency {p99} ms"));
        }
        if (st.correction_ppm + 500.0).abs() >= 100.0 {
            return Err(format!("correction {} ppm", st.correction_ppm));
        }
        Ok(())
    };
    let (p, _) =
        play_checked("drift 500 ppm", || play(&dir, "iso_drift", 48_000, 500.0, seconds, None), check);
    eprintln!("drift 500 ppm for {seconds} s: {:?}", p.stats);
}

/// `isoscope monitor` with ALSA configured to a sound card that does not exist.
fn monitor_without_sound_card(extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nocard.conf");
    std::fs::write(&conf, "pcm.!default { type plug slave.pcm \"hw:99,0\" }\n").unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_isoscope"))
        .args(["monitor", "--device", "sim", "--host", "alsa", "--seconds", "0.3", "--quiet"])
        .args(extra)
        .env("ALSA_CONFIG_PATH", &conf)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn without_a_sound_card_monitoring_fails_clearly_but_recording_goes_on() {
    let out = monitor_without_sound_card(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no sound output") && err.contains("recording work without one"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("r.wav");
    let out = monitor_without_sound_card(&["--wav", wav.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: no sound output") && err.contains("Recording without monitoring"),
        "{err}"
    );
    assert!(hound::WavReader::open(&wav).unwrap().duration() > 0);
}

/// An ALSA file PCM without a clock takes audio as fast as it is given (4.7 GB of zeros in
/// 10 s before the monitor checked). The monitor must notice within a second, stop feeding
/// it, say so, and let the capture and the recording go on.
#[test]
fn an_output_without_a_clock_is_stopped_within_a_second_and_the_recording_goes_on() {
    let dir = tempfile::tempdir_in(if Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" }).unwrap();
    let raw = dir.path().join("fast.raw");
    let conf = dir.path().join("fast.conf");
    std::fs::write(
        &conf,
        format!(
            "pcm.iso_fast {{\n  type file\n  slave.pcm \"null\"\n  file \"{}\"\n  format \"raw\"\n}}\n",
            raw.display()
        ),
    )
    .unwrap();
    let wav = dir.path().join("take.wav");
    let json = dir.path().join("stats.json");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_isoscope"))
            .args(["monitor", "--device", "sim", "--rate", "48000", "--host", "alsa", "--output", "iso_fast"])
            .args(["--seconds", "3", "--quiet", "--stats-json"])
            .arg(&json)
            .args(extra)
            .env("ALSA_CONFIG_PATH", format!("/usr/share/alsa/alsa.conf:{}", conf.display()))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["--wav", wav.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "with a recording, the capture goes on: {err}");
    assert!(err.contains("faster than real time") && err.contains("stopped playing"), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["output_fault"]["kind"], "too_fast", "{report}");
    assert!(report["output_fault"]["ratio"].as_f64().unwrap() > 1.5, "{report}");
    // Stopped within a second: it took at most a second's worth of real time at the ratio
    // it ran at, i.e. far less than the runaway (f32 stereo at 48 kHz: 384 kB per second).
    let written = std::fs::metadata(&raw).unwrap().len();
    let ratio = report["output_fault"]["ratio"].as_f64().unwrap();
    assert!(
        (written as f64) < 384_000.0 * ratio.max(1.0) * 1.2 + 384_000.0,
        "{written} bytes at {ratio:.1}x"
    );
    // The recording holds the whole 3 s, and the capture lost nothing to the stopped monitor.
    let frames = hound::WavReader::open(&wav).unwrap().duration();
    assert!(frames as f64 > 2.5 * 48_000.0, "{frames} frames recorded");
    assert_eq!(report["capture"]["ring_drops"], 0, "{report}");

    // Without a recording, listening was the whole point: exit 1, with the reason.
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nothing was heard") && err.contains("faster than real time"),
        "{err}"
    );
}
