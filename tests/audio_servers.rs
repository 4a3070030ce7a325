//! Live monitoring through real sound servers: each test starts its own PulseAudio daemon,
//! or its own PipeWire (pipewire, wireplumber on a private D-Bus session bus, and
//! pipewire-pulse), with a null sink, in a private `XDG_RUNTIME_DIR` (no system service is
//! used). `isoscope monitor` plays the simulated 1 kHz sine (amplitude 0.5) into the sink
//! through each host (PipeWire native, PulseAudio native, ALSA's default device through the
//! server's ALSA plugin) while `parec` records the sink's monitor, and the recording and
//! the monitor's statistics are checked:
//! - no gap longer than 5 ms from one second after the tone starts to 0.2 s before it
//!   stops (the end is the capture stopping first). On PipeWire, one quantum of silence
//!   (5.3 ms) now and then is the server's own: `pacat`, PulseAudio's C client, through
//!   the same null sink had one in 12 s at 20 ms latency here. So there, at most one per
//!   10 s, none longer than a quantum;
//! - over the whole cycles of the run's second half (a cycle through a gap or a resync is
//!   left out), the tone at 1000 Hz within 3000 ppm (the server's graph
//!   clock is its own: PipeWire's timer-driven null sink ran from -600 to -7700 ppm of the
//!   host's here, varying with load and quantum); the RMS level within 0.5 dB of the sine's
//!   -9.03 dBFS over the whole run;
//! - at most 2 underruns and 2 overruns, and at most 3 resyncs (cpal's PulseAudio client
//!   starts with a burst that overfills the ring: one or two resyncs catch up);
//! - the latency median at least the 20 ms target less 2 ms, and at most what the monitor
//!   says it holds (the target, or the server's reported delay plus its bursts when that is
//!   more) plus 20 ms (one quantum of cpal's PulseAudio client); what it holds below 150 ms.
//!
//! The device clock runs at 0 and at +-500 ppm. One run at a time (real time, 2 cores). A
//! probe thread that sleeps 1 ms at a time watches the machine itself: a run passes when
//! each gap, underrun, overrun or resync beyond the above is matched by one of the stalls
//! longer than a quantum it saw in the same run, and a run that fails even so while the
//! machine stalled is run again (three runs at most). (The CI run that failed had 10, 50
//! and 431 stalls in its three runs, the third heard 26 gaps and 8 resyncs.)
//! (On an earlier CI run, a PipeWire run heard a 10.7 ms gap with the monitor
//! reporting no underrun; with isoscope's threads at SCHED_FIFO the single-quantum gaps
//! stayed, so they are the server's scheduling, not the client's. Here, in a spell when the
//! probe saw 95 stalls over 5 ms a minute, up to 55 ms, runs heard 23-26 gaps and resynced
//! up to 7 times; outside such spells, 0-3 gaps in 30 s.)
//! The servers, `parec` and the ALSA plugins come from Debian's pulseaudio, pulseaudio-utils,
//! pipewire, pipewire-bin, pipewire-pulse, pipewire-alsa, wireplumber, dbus and
//! libasound2-plugins (`scripts/deps servers`). Without them these tests say so and pass,
//! unless `ISOSCOPE_REQUIRE_SOUND_SERVERS=1` (CI sets it), when they fail.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

const SINK: &str = "iso_null";
const RATE: u32 = 48_000;

fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the programs a server needs are here; panics when CI requires them.
fn servers_here(bins: &[&str]) -> bool {
    let missing: Vec<&str> = bins.iter().copied().filter(|b| !have(b)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("sound server tests need {missing:?}: run `scripts/deps servers`");
    if std::env::var("ISOSCOPE_REQUIRE_SOUND_SERVERS").is_ok_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("skipped: {msg}");
    false
}

/// Keeps a desktop's own sound server out of the test: these point clients at it before
/// `XDG_RUNTIME_DIR` is looked at.
fn clear_server_env(c: &mut Command) {
    for var in ["PULSE_SERVER", "PULSE_RUNTIME_PATH", "PIPEWIRE_REMOTE", "PIPEWIRE_RUNTIME_DIR"] {
        c.env_remove(var);
    }
}

/// A running sound server in its own runtime dir; killed on drop.
struct Server {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    env: Vec<(String, String)>,
    kind: &'static str,
}

impl Drop for Server {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Server {
    fn spawn(&mut self, cmd: &mut Command) {
        let log = std::fs::File::create(self.dir.path().join(format!("log{}", self.children.len()))).unwrap();
        clear_server_env(cmd);
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        self.children.push(child);
    }

    fn command(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        clear_server_env(&mut c);
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    fn logs(&self) -> String {
        (0..self.children.len())
            .map(|i| std::fs::read_to_string(self.dir.path().join(format!("log{i}"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    /// Waits until `pactl` reaches the server and the null sink exists.
    fn wait_for_sink(&self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            let out = self.command("pactl").args(["list", "short", "sinks"]).output().unwrap();
            if String::from_utf8_lossy(&out.stdout).contains(SINK) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{}: the null sink did not appear in 20 s; logs:\n{}", self.kind, self.logs());
    }

    fn base(kind: &'static str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("run");
        std::fs::create_dir(&runtime).unwrap();
        // ALSA's default device goes to this server (through pulse's plugin, or PipeWire's).
        let alsa_type = if kind == "pipewire" { "pipewire" } else { "pulse" };
        let device = if kind == "pipewire" {
            format!("playback_node \"{SINK}\"")
        } else {
            format!("device \"{SINK}\"")
        };
        let asoundrc = dir.path().join("asoundrc");
        std::fs::write(
            &asoundrc,
            format!(
                "pcm.!default {{\n  type {alsa_type}\n  {device}\n}}\nctl.!default {{ type {alsa_type} }}\n"
            ),
        )
        .unwrap();
        let env = vec![
            ("XDG_RUNTIME_DIR".to_string(), runtime.display().to_string()),
            ("HOME".to_string(), dir.path().display().to_string()),
            ("ALSA_CONFIG_PATH".to_string(), format!("/usr/share/alsa/alsa.conf:{}", asoundrc.display())),
            ("PIPEWIRE_DEBUG".to_string(), "1".to_string()),
        ];
        Server { dir, children: Vec::new(), env, kind }
    }

    fn pulseaudio() -> Server {
        let mut s = Server::base("pulseaudio");
        let mut cmd = Command::new("pulseaudio");
        cmd.args([
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "-n",
            &format!("--load=module-null-sink sink_name={SINK} rate={RATE}"),
            "--load=module-native-protocol-unix",
        ]);
        s.spawn(&mut cmd);
        s.wait_for_sink();
        s
    }

    fn pipewire() -> Server {
        let mut s = Server::base("pipewire");
        let bus = s.dir.path().join("bus");
        let addr = format!("unix:path={}", bus.display());
        s.spawn(Command::new("dbus-daemon").args([
            "--session",
            "--nofork",
            "--nopidfile",
            &format!("--address={addr}"),
        ]));
        s.env.push(("DBUS_SESSION_BUS_ADDRESS".into(), addr));
        let t0 = Instant::now();
        while !bus.exists() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        s.spawn(&mut Command::new("pipewire"));
        std::thread::sleep(Duration::from_millis(500));
        s.spawn(&mut Command::new("wireplumber"));
        s.spawn(&mut Command::new("pipewire-pulse"));
        let t0 = Instant::now();
        loop {
            let ok = s.command("pactl").arg("info").output().is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "pipewire-pulse did not answer; logs:\n{}",
                s.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = s
            .command("pactl")
            .args([
                "load-module",
                "module-null-sink",
                &format!("sink_name={SINK}"),
                &format!("rate={RATE}"),
                "channels=2",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "cannot make the null sink: {}", String::from_utf8_lossy(&out.stderr));
        s.wait_for_sink();
        s
    }
}

/// What the monitor's `--stats-json` says (the fields checked).
#[derive(Debug, serde::Deserialize)]
struct Report {
    latency_ms_median: Option<f64>,
    latency_ms_p99: Option<f64>,
    holding_ms: Option<f64>,
    underruns: u64,
    overruns: u64,
    resyncs: u64,
    output_fault: Option<serde_json::Value>,
    correction_ppm: f64,
    device_delay_ms: f64,
    burst_ms: f64,
    output_clock_ppm: f64,
    ratio_mean: f64,
}

/// What the sink heard.
#[derive(Debug)]
struct Heard {
    /// Gaps longer than 5 ms after the first second of the tone: (start s, length ms).
    gaps: Vec<(f64, f64)>,
    freq_hz: f64,
    rms_dbfs: f64,
    tone_s: f64,
}

/// Finds the tone in interleaved s16 stereo at [`RATE`] (left channel), and its gaps.
fn analyse(raw: &[u8]) -> Heard {
    let left: Vec<f64> =
        raw.chunks_exact(4).map(|f| f64::from(i16::from_le_bytes([f[0], f[1]])) / 32768.0).collect();
    let loud = |x: &f64| x.abs() > 0.05;
    let start = left.iter().position(loud).expect("the sink heard no tone at all");
    let end = left.len() - left.iter().rev().position(loud).unwrap();
    let from = start + RATE as usize; // after the first second
    let end = end - RATE as usize / 5; // and before the teardown
    assert!(
        end > from + RATE as usize,
        "the tone lasted only {:.2} s",
        (end - start) as f64 / f64::from(RATE)
    );
    let span = &left[from..end];
    // A gap: a run of near-silence longer than 5 ms (a 1 kHz sine at 0.5 is near zero
    // only for microseconds around each crossing).
    let mut gaps = Vec::new();
    let mut run = 0usize;
    for (i, x) in span.iter().enumerate() {
        if x.abs() < 0.005 {
            run += 1;
        } else {
            if run > (RATE as usize * 5) / 1000 {
                gaps.push(((from + i - run) as f64 / f64::from(RATE), run as f64 * 1000.0 / f64::from(RATE)));
            }
            run = 0;
        }
    }
    // Frequency from upward zero crossings (interpolated), over the second half, counting
    // only whole cycles: a period more than a tenth of a cycle off the tone's (the servers'
    // clocks were at most 7700 ppm off) spans a gap or a resync (samples the sink never
    // heard), which says nothing of the clock.
    let mut crossings = Vec::new();
    let half = span.len() / 2;
    for (i, w) in span[half..].windows(2).enumerate() {
        if w[0] < 0.0 && w[1] >= 0.0 {
            crossings.push(i as f64 + w[0] / (w[0] - w[1]));
        }
    }
    let cycle = f64::from(RATE) / 1000.0;
    let whole: Vec<f64> =
        crossings.windows(2).map(|c| c[1] - c[0]).filter(|p| (p - cycle).abs() < cycle / 10.0).collect();
    assert!(whole.len() > 1000, "the second half of the tone had only {} whole cycles", whole.len());
    let freq_hz = whole.len() as f64 / (whole.iter().sum::<f64>() / f64::from(RATE));
    let rms = (span.iter().map(|x| x * x).sum::<f64>() / span.len() as f64).sqrt();
    Heard { gaps, freq_hz, rms_dbfs: 20.0 * rms.log10(), tone_s: (end - start) as f64 / f64::from(RATE) }
}

/// What one run gave: the monitor's statistics, what the sink heard, and both in words.
struct Run {
    report: Report,
    heard: Heard,
    summary: String,
    pipewire: bool,
    seconds: f64,
}

/// A stall of the whole machine longer than this (about one quantum of the server's graph,
/// 256 frames at 48 kHz) can leave the sink a quantum of silence whatever a client does.
const STALL_LIMIT_MS: f64 = 5.0;

/// Plays the sine through `host` for `seconds` at a device clock of `ppm`, records the sink,
/// and checks it all; a run that fails while the machine itself stalled is run again, three
/// runs at most ([`support::checked_runs`]).
fn play_and_check(server: &Server, host: &str, ppm: f64, seconds: f64) {
    let what = format!("{} server, {host} host, device clock {ppm:+} ppm", server.kind);
    support::checked_runs(&what, 3, || play(server, host, ppm, seconds), check);
}

/// One run, and how the machine behaved during it.
fn play(server: &Server, host: &str, ppm: f64, seconds: f64) -> (Run, support::Stalls) {
    let what = format!("{} server, {host} host, device clock {ppm:+} ppm", server.kind);
    let rec_path = server.dir.path().join(format!("{host}{ppm}.raw"));
    let json = server.dir.path().join(format!("{host}{ppm}.json"));
    let mut parec = server
        .command("parec")
        .args([
            "-d",
            &format!("{SINK}.monitor"),
            "--raw",
            "--format=s16le",
            &format!("--rate={RATE}"),
            "--channels=2",
            "--latency-msec=20",
        ])
        .arg(&rec_path)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parec");
    std::thread::sleep(Duration::from_millis(500));
    let probe = support::StallProbe::start(STALL_LIMIT_MS);
    let out = server
        .command(env!("CARGO_BIN_EXE_isoscope"))
        .args(["monitor", "--device", "sim:sine:1000", "--rate", "48000", "--host", host])
        .args(if host == "alsa" { vec![] } else { vec!["--output", SINK] })
        .args([
            "--sim-clock-ppm",
            &ppm.to_string(),
            "--seconds",
            &seconds.to_string(),
            "--quiet",
            "--stats-json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stalls = probe.finish();
    std::thread::sleep(Duration::from_millis(500));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(parec.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = parec.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what}: isoscope monitor failed: {stderr}\nserver logs:\n{}",
        server.logs()
    );
    let report: Report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let raw = std::fs::read(&rec_path).unwrap();
    let heard = analyse(&raw);
    let summary = format!(
        "{what}: heard {:.1} s, {} gaps > 5 ms {:?}, {:.3} Hz, {:.2} dBFS; latency median {:?} p99 {:?} ms, \
         holding {:?} ms, {} underruns, {} overruns, {} resyncs, correction {:+.0} ppm; output delay {} ms, bursts {} ms, output clock {} ppm, mean ratio {}",
        heard.tone_s,
        heard.gaps.len(),
        &heard.gaps[..heard.gaps.len().min(5)],
        heard.freq_hz,
        heard.rms_dbfs,
        report.latency_ms_median,
        report.latency_ms_p99,
        report.holding_ms,
        report.underruns,
        report.overruns,
        report.resyncs,
        report.correction_ppm,
        report.device_delay_ms,
        report.burst_ms,
        report.output_clock_ppm,
        report.ratio_mean,
    );
    eprintln!("{summary}; {stalls}");
    (Run { report, heard, summary, pipewire: server.kind == "pipewire", seconds }, stalls)
}

/// The checks of one run; `excused` machine stalls may each account for one more gap (of
/// any length), underrun, overrun or resync.
fn check(run: &Run, excused: u64) -> Result<(), String> {
    let Run { report, heard, summary, .. } = run;
    let fail = |why: &str| Err(format!("{summary}: {why}"));
    if let Some(fault) = &report.output_fault {
        return fail(&format!("the output was judged not a clock: {fault:?}"));
    }
    let allowed = if run.pipewire { (run.seconds / 10.0) as u64 } else { 0 } + excused;
    let long = heard.gaps.iter().filter(|g| g.1 >= 5.5).count() as u64;
    if heard.gaps.len() as u64 > allowed || long > excused {
        return fail(&format!(
            "at most {allowed} gaps, none longer than a quantum but for the {excused} the machine's stalls excuse"
        ));
    }
    // The server's graph clock is its own (a timer-driven null sink runs slow of the host's
    // by hundreds to thousands of ppm here, varying with load), so the tone is checked within
    // 3000 ppm; that the drift loop follows the device's +-500 ppm is shown by the latency
    // held for the whole run with no underrun, overrun or more than 3 resyncs (untracked,
    // 500 ppm moves the fill 30 ms a minute).
    if (heard.freq_hz - 1000.0).abs() >= 3.0 {
        return fail("the tone should be 1000 Hz within 3000 ppm");
    }
    if (heard.rms_dbfs - (-9.03)).abs() >= 0.5 {
        return fail("the level should be -9.03 dBFS");
    }
    // A stall of the machine longer than the latency held moves the fill past what the drift
    // loop can follow, and the monitor resyncs: each stall may excuse one of those too.
    if report.underruns > 2 + excused || report.overruns > 2 + excused || report.resyncs > 3 + excused {
        return fail("at most 2 underruns, 2 overruns and 3 resyncs");
    }
    let (median, holding) = (report.latency_ms_median.unwrap(), report.holding_ms.unwrap());
    if !(median > 18.0 && median < holding + 20.0) {
        return fail("the median should lie between the target and 20 ms over what the monitor holds");
    }
    if !(19.0..150.0).contains(&holding) {
        return fail("the latency held should be the 20 ms target or the server's delay");
    }
    Ok(())
}

/// Plays at 0 and +-500 ppm through `host`.
fn three_clocks(server: &Server, host: &str) {
    for ppm in [0.0, 500.0, -500.0] {
        play_and_check(server, host, ppm, seconds());
    }
}

/// Seconds per run: 60, or ISOSCOPE_SERVER_TEST_SECONDS (at least 25: the drift loop
/// settles in the first half).
fn seconds() -> f64 {
    let s = std::env::var("ISOSCOPE_SERVER_TEST_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    assert!(s >= 25.0, "ISOSCOPE_SERVER_TEST_SECONDS must be at least 25, not {s}");
    s
}

/// One server's tests at a time (they run in real time on 2 cores).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn pulseaudio_server_through_the_pulseaudio_and_alsa_hosts() {
    let _one = one_at_a_time();
    if !servers_here(&["pulseaudio", "pactl", "parec"]) {
        return;
    }
    let server = Server::pulseaudio();
    three_clocks(&server, "pulseaudio");
    play_and_check(&server, "alsa", 0.0, seconds());
}

#[test]
fn pipewire_server_through_the_pipewire_pulseaudio_and_alsa_hosts() {
    let _one = one_at_a_time();
    if !servers_here(&["pipewire", "wireplumber", "pipewire-pulse", "dbus-daemon", "pactl", "parec"]) {
        return;
    }
    let server = Server::pipewire();
    let native = cfg!(feature = "pipewire");
    if !native {
        eprintln!("PipeWire's native host is not in this build (cargo feature `pipewire`): tested through pulseaudio and alsa");
    }
    three_clocks(&server, if native { "pipewire" } else { "pulseaudio" });
    if native {
        play_and_check(&server, "pulseaudio", 0.0, seconds());
    }
    play_and_check(&server, "alsa", 0.0, seconds());
}

/// The analysis itself, on a made-up recording: a 1000 Hz sine with a 30 ms silence and a
/// resync's jump (10.3 ms of samples the sink never heard) in its second half.
#[test]
fn the_tone_is_measured_over_whole_cycles_gaps_and_jumps_left_out() {
    let rate = f64::from(RATE);
    let mut left = Vec::new();
    let mut t = 0usize;
    for i in 0..(4 * RATE as usize) {
        if (3 * RATE as usize..3 * RATE as usize + RATE as usize * 30 / 1000).contains(&i) {
            left.push(0.0);
        } else {
            left.push(0.5 * (2.0 * std::f64::consts::PI * 1000.0 * t as f64 / rate).sin());
        }
        t += if i == 3 * RATE as usize + RATE as usize / 2 { 1 + RATE as usize * 103 / 10_000 } else { 1 };
    }
    let raw: Vec<u8> = left
        .iter()
        .flat_map(|x| {
            let s = ((x * 32768.0) as i16).to_le_bytes();
            [s[0], s[1], s[0], s[1]]
        })
        .collect();
    let heard = analyse(&raw);
    assert_eq!(heard.gaps.len(), 1, "{heard:?}");
    assert!((heard.gaps[0].1 - 30.0).abs() < 1.0, "{heard:?}");
    // Over all the crossings, the 30 ms and the 10.3 ms would be 40 000 ppm off.
    assert!((heard.freq_hz - 1000.0).abs() < 0.05, "{heard:?}");
}
