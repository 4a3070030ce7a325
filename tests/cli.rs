//! The `isoscope` binary as a user runs it: capture with WAV and statistics, stop by
//! signal with the recording intact, a disconnect that keeps what was captured, and clear
//! errors for bad arguments.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn isoscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isoscope"))
}

fn run(args: &[&str]) -> Output {
    isoscope().args(args).stdin(Stdio::null()).output().expect("isoscope runs")
}

fn stats(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("stats written")).expect("stats are JSON")
}

fn wav_frames(path: &Path) -> u32 {
    let r = hound::WavReader::open(path).expect("a valid WAV file");
    r.duration()
}

#[test]
fn capture_writes_verified_wav_and_the_documented_stats() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, json) = (dir.path().join("a.wav"), dir.path().join("a.json"));
    let out = run(&[
        "capture",
        "--device",
        "sim:square:500",
        "--seconds",
        "0.5",
        "--sim-short-ratio",
        "0.3",
        "--sim-error-ratio",
        "0.02",
        "--wav",
        wav.to_str().unwrap(),
        "--stats-json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = stats(&json);
    for key in [
        "mode_used",
        "urbs",
        "packets",
        "bytes",
        "short_packets",
        "packet_errors",
        "ring_drops",
        "urbs_zerocopy",
        "urbs_copy",
        "cpu_ns",
        "pool_bytes",
        "cap_bytes",
        "frames_verified",
        "frames_mismatched",
    ] {
        assert!(s.get(key).is_some(), "{key} missing from {s}");
    }
    assert_eq!(s["mode_used"], "zerocopy");
    assert_eq!(s["frames_mismatched"], 0);
    assert!(s["packet_errors"].as_u64().unwrap() > 0);
    assert_eq!(s["frames_verified"], s["frames"]);
    assert_eq!(u64::from(wav_frames(&wav)), s["frames"].as_u64().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("simulated device"), "{stderr}");
}

#[test]
fn an_uncached_mapping_makes_auto_take_copy_mode_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("s.json");
    let capture = |extra: &[&str]| {
        let mut args =
            vec!["capture", "--device", "sim", "--seconds", "0.2", "--stats-json", json.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (stats(&json), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The simulator's mapped pages read like the heap: auto uses them, and says how fast.
    let (s, _) = capture(&[]);
    assert_eq!(s["mode_used"], "zerocopy");
    let x = s["mapping_read_slowdown"].as_f64().unwrap();
    assert!(x > 0.0 && x < 4.0, "{s}");
    // Reads 40 times slower (an uncached mapping, as on a Raspberry Pi): auto takes copy mode.
    let (s, stderr) = capture(&["--sim-slow-mapping", "40"]);
    assert_eq!(s["mode_used"], "copy");
    assert_eq!(s["urbs_zerocopy"], 0);
    assert!(
        stderr.contains("times slower than reading heap memory") && stderr.contains("copy mode"),
        "{stderr}"
    );
    // --mode zerocopy keeps the mapping, with the same warning.
    let (s, stderr) = capture(&["--sim-slow-mapping", "40", "--mode", "zerocopy"]);
    assert_eq!(s["mode_used"], "zerocopy");
    assert!(stderr.contains("zero-copy as asked, but reading the usbfs mapping"), "{stderr}");
}

#[test]
fn copy_mode_and_the_auto_fallback_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let out = run(&[
        "capture",
        "--device",
        "sim",
        "--mode",
        "copy",
        "--seconds",
        "0.2",
        "--stats-json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let s = stats(&json);
    assert_eq!(s["mode_used"], "copy");
    assert_eq!(s["urbs_zerocopy"], 0);

    // 8 ch x 32-bit x 192 kHz (800-byte packets), 19 URBs of 64 packets: the zero-copy pool
    // (20 slots mapped) is over a 1 MiB cap, copy mode's 19 bounce buffers are not.
    let big = [
        "--device",
        "sim",
        "--channels",
        "8",
        "--format",
        "s32",
        "--rate",
        "192000",
        "--packets",
        "64",
        "--urbs",
        "19",
        "--sim-usbfs-mb",
        "1",
        "--seconds",
        "0.2",
    ];
    let out = run(&[&["capture", "--mode", "zerocopy"][..], &big[..]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("usbfs_memory_mb is 1 MiB") && err.contains("usbcore.usbfs_memory_mb="), "{err}");
    let out =
        run(&[&["capture", "--mode", "auto", "--stats-json", json.to_str().unwrap()][..], &big[..]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: zero-copy unavailable, capturing in copy mode"), "{err}");
    assert_eq!(stats(&json)["mode_used"], "copy");
}

#[test]
fn sigint_and_sigterm_stop_cleanly_with_the_wav_intact() {
    for sig in [nix::sys::signal::Signal::SIGINT, nix::sys::signal::Signal::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let (wav, json) = (dir.path().join("s.wav"), dir.path().join("s.json"));
        let child = isoscope()
            .args([
                "capture",
                "--device",
                "sim",
                "--quiet",
                "--wav",
                wav.to_str().unwrap(),
                "--stats-json",
                json.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{sig}: {}", String::from_utf8_lossy(&out.stderr));
        let s = stats(&json);
        assert!(s["frames"].as_u64().unwrap() > 10_000, "{sig}: {s}");
        assert_eq!(
            u64::from(wav_frames(&wav)),
            s["frames"].as_u64().unwrap(),
            "{sig}: every captured frame is in the WAV"
        );
    }
}

#[test]
fn a_disconnect_keeps_the_wav_and_stats_and_says_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, json) = (dir.path().join("d.wav"), dir.path().join("d.json"));
    let out = run(&[
        "capture",
        "--device",
        "sim",
        "--sim-disconnect-after",
        "0.3",
        "--seconds",
        "5",
        "--wav",
        wav.to_str().unwrap(),
        "--stats-json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("device disconnected"), "{err}");
    let s = stats(&json);
    assert!(s["error"].as_str().unwrap().contains("disconnected"));
    assert!(s["frames"].as_u64().unwrap() > 10_000);
    assert_eq!(s["frames_mismatched"], 0);
    assert_eq!(u64::from(wav_frames(&wav)), s["frames"].as_u64().unwrap());
}

#[test]
fn bad_arguments_get_errors_that_say_what_to_do() {
    let cases: &[(&[&str], &str)] = &[
        (&["capture", "--device", "sim:beep"], "use sine"),
        (&["capture", "--device", "sim:sine:-5"], "positive numbers"),
        (&["capture", "--device", "sim", "--mode", "fast"], "possible values"),
        (&["capture", "--device", "sim", "--format", "s12"], "use u8, s8, s16"),
        (&["capture", "--device", "sim", "--seconds", "0"], "positive"),
        (&["capture", "--device", "sim", "--sim-short-ratio", "2"], "outside 0..1"),
        (&["capture", "--device", "sim", "--seconds", "1", "--wav", "/nonexistent/x.wav"], "folder exists"),
        (&["capture", "--device", "sim:wav:/nonexistent.wav"], "cannot read WAV"),
        (&["capture", "--device", "sim", "--rate", "5"], "1000 to 768000"),
        (&["capture", "--device", "zz"], "VID:PID"),
        (&["describe", "--file", "/nonexistent/descriptors"], "cannot read"),
    ];
    for (args, needle) in cases {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: '{needle}' not in: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one error line: {err}");
        if let Some(first_clause) =
            lines[0].strip_prefix("isoscope: error: ").and_then(|l| l.split(": ").next())
        {
            assert_eq!(lines[0].matches(first_clause).count(), 1, "{args:?}: said twice: {err}");
        }
    }
}

#[test]
fn verify_wav_accepts_a_true_recording_and_rejects_a_wrong_or_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("v.wav");
    let out = run(&[
        "capture",
        "--device",
        "sim:chirp",
        "--seconds",
        "0.3",
        "--quiet",
        "--wav",
        wav.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let ok = run(&["verify-wav", "--signal", "chirp", wav.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\"mismatched\":0"));
    let wrong = run(&["verify-wav", "--signal", "sine", wav.to_str().unwrap()]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong signal"));
    // Flip one sample in the middle: one frame differs.
    let mut bytes = std::fs::read(&wav).unwrap();
    let mid = bytes.len() / 2 / 4 * 4;
    bytes[mid] ^= 0x55;
    std::fs::write(&wav, bytes).unwrap();
    let damaged = run(&["verify-wav", "--signal", "chirp", wav.to_str().unwrap()]);
    assert!(!damaged.status.success());
    assert!(String::from_utf8_lossy(&damaged.stdout).contains("\"mismatched\":1"));
}

#[test]
fn bench_alternates_modes_and_reports_both() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let out = run(&[
        "bench",
        "--device",
        "sim",
        "--seconds",
        "0.2",
        "--rounds",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = stats(&json);
    let modes: Vec<&str> =
        s["runs"].as_array().unwrap().iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["zerocopy", "copy", "zerocopy", "copy"]);
    assert!(s["copy_cpu_us_per_mib_median"].as_f64().unwrap() > 0.0);
    let copied: Vec<f64> =
        s["runs"].as_array().unwrap().iter().map(|r| r["kernel_copied_mib"].as_f64().unwrap()).collect();
    assert!(copied[0] == 0.0 && copied[1] > 0.0, "{copied:?}");
}

#[test]
fn a_usb_selector_that_matches_nothing_says_where_to_look() {
    let out = run(&["capture", "--device", "200:200", "--seconds", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Without sysfs (a container) the listing itself fails; with it, nothing matches.
    assert!(err.contains("Is sysfs mounted") || err.contains("no USB device matches '200:200'"), "{err}");
    // The fix is said once, on its own line.
    assert!(err.matches("isoscope list").count() <= 1, "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("isoscope: fix: ")).count(), 1, "{err}");
}

#[test]
fn describe_renders_a_descriptor_file_and_list_always_shows_the_simulated_device() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("descriptors");
    let mut server = isoscope()
        .args([
            "virtual-device",
            "--listen",
            "127.0.0.1:0",
            "--uac",
            "1",
            "--write-descriptors",
            file.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if file.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = server.kill();
    let _ = server.wait();
    let out = run(&["describe", "--file", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("idVendor         0x1209")
            && text.contains("interface 1 alt 2: EP 0x81 IN iso async, S24_3LE 2 ch, 48000/96000 Hz"),
        "{text}"
    );
    let json = run(&["describe", "--file", file.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["audio_streams"].as_array().unwrap().len(), 2);
    std::fs::write(&file, [9, 2, 200, 0, 1]).unwrap();
    let bad = run(&["describe", "--file", file.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("needs at least 9"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let list = run(&["list", "--json"]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["devices"][0]["selector"], "sim");
    let text = run(&["list"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("sim"));
}

#[test]
fn without_a_display_the_gui_says_what_to_run_instead() {
    let out = isoscope()
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .env("XDG_CONFIG_HOME", std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the window") && err.contains("isoscope capture"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn describe_of_a_descriptor_with_zero_blength_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("descriptors");
    std::fs::write(&file, [0x00, 0x01, 0x00, 0x08, 0x00, 0x2c, 0x02]).unwrap();
    let out = run(&["describe", "--file", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("not a valid USB descriptor set") && err.contains("byte 0") && err.contains("bLength 0"),
        "{err}"
    );
}

#[test]
fn a_device_whose_every_packet_fails_stops_with_an_error_that_names_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, json) = (dir.path().join("x.wav"), dir.path().join("x.json"));
    let started = std::time::Instant::now();
    let out = run(&[
        "capture",
        "--device",
        "sim",
        "--sim-error-ratio",
        "1",
        "--no-data-timeout",
        "0.5",
        "--seconds",
        "20",
        "--wav",
        wav.to_str().unwrap(),
        "--stats-json",
        json.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "it stopped at the timeout, not at --seconds");
    assert!(err.contains("no valid data for 0.5 s") && err.contains("packets failed, most with -E"), "{err}");
    let s = stats(&json);
    assert!(s["error"].as_str().unwrap().contains("no valid data"), "{s}");
    assert_eq!(s["packet_errors"], s["packets"]);
    assert_eq!(wav_frames(&wav), 0, "the recording is a valid, empty WAV");
}

#[test]
fn failed_packets_are_counted_by_errno_with_what_each_means() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("e.json");
    let out = run(&[
        "capture",
        "--device",
        "sim",
        "--seconds",
        "0.5",
        "--sim-error-ratio",
        "0.1",
        "--quiet",
        "--stats-json",
        json.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let by = &stats(&json)["packet_errors_by_errno"];
    for (name, meaning) in
        [("EXDEV", "did not transfer the packet"), ("EOVERFLOW", "babble"), ("EPROTO", "protocol error")]
    {
        let n = by[name].as_u64().unwrap_or(0);
        assert!(n > 0, "{name} counted: {by}");
        assert!(
            err.contains(&format!("{n} packets failed with -{name}: ")) && err.contains(meaning),
            "{err}"
        );
    }
}

/// Every key anywhere in `v`.
fn keys(v: &serde_json::Value, into: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| {
            into.insert(k.clone());
            keys(v, into)
        }),
        serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, into)),
        _ => {}
    }
}

#[test]
fn the_capture_stats_json_carries_every_counter_once() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("s.json");
    let out = run(&[
        "capture",
        "--device",
        "sim",
        "--seconds",
        "0.3",
        "--quiet",
        "--stats-json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Counted in the text: a parser keeps one of two equal keys in an object.
    let text = std::fs::read_to_string(&json).unwrap();
    let mut all = Default::default();
    keys(&stats(&json), &mut all);
    let twice: Vec<_> = all.iter().filter(|k| text.matches(&format!("\"{k}\":")).count() != 1).collect();
    assert!(twice.is_empty(), "keys written more than once: {twice:?} in {text}");
    let s = stats(&json);
    for key in ["urbs", "packets", "bytes", "frames", "cpu_ns", "syscalls", "pool_bytes"] {
        assert!(s[key].as_u64().is_some_and(|n| n > 0), "{key} at the top level: {s}");
    }
    assert!(s["packet_errors"].is_u64() && s["ring_drops"].is_u64(), "{s}");
}
