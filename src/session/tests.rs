//! The session driven as the GUI drives it, on the simulated device: start and stop, a stop
//! that overtakes queued commands and a slow open, a slow teardown that never blocks the
//! client, recording, the A/B run, and hotplug on a fake sysfs.

use std::time::{Duration, Instant};

use super::*;
use crate::dma::TransferPath;

fn request(device: &str) -> StartRequest {
    StartRequest {
        device: device.into(),
        stream: StreamRequest::default(),
        mode: ModeRequest::Auto,
        app_cap_bytes: 8 << 20,
    }
}

fn session(sim: SimConfig) -> Session {
    Session::spawn(SessionConfig { sim, hotplug: None }, || {}).unwrap()
}

/// Applies events to `view` until `done` holds, returning how long it took.
fn until(s: &Session, view: &mut SessionView, what: &str, done: impl Fn(&SessionView) -> bool) -> Duration {
    let t = Instant::now();
    while !done(view) {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        if let Ok(ev) = s.events().recv_timeout(Duration::from_millis(5)) {
            view.apply(ev);
        }
        view.refresh();
    }
    t.elapsed()
}

#[test]
fn a_capture_starts_publishes_live_counters_and_stops() {
    let s = session(SimConfig::default());
    let mut v = SessionView::default();
    s.send(SessionCommand::Start(request("sim:sine:1000")));
    until(&s, &mut v, "the capture", |v| v.running());
    assert!(v.simulated() && v.frames.is_some());
    until(&s, &mut v, "bytes", |v| v.stats.as_ref().is_some_and(|st| st.bytes > 10_000));
    s.send(SessionCommand::Stop);
    until(&s, &mut v, "the stop", |v| !v.running());
    assert!(v.error.is_none(), "{:?}", v.error);
    assert!(v.stats.as_ref().unwrap().urbs > 0);
}

#[test]
fn a_device_that_cannot_open_is_an_error_with_a_fix() {
    let s = session(SimConfig::default());
    let mut v = SessionView::default();
    s.send(SessionCommand::Start(request("0d8c:9999")));
    until(&s, &mut v, "the error", |v| v.error.is_some());
    let e = v.error.clone().unwrap();
    assert!(e.message.contains("0d8c:9999") && e.fix.is_some(), "{e:?}");
    assert!(!v.running() && v.opening.is_none());
}

#[test]
fn a_stop_overtakes_queued_starts_and_a_slow_open() {
    // Opening takes a second; while it runs, more starts queue up behind it, then a stop.
    let s = session(SimConfig { open_delay: Duration::from_secs(1), ..SimConfig::default() });
    let mut v = SessionView::default();
    s.send(SessionCommand::Start(request("sim")));
    until(&s, &mut v, "the open to begin", |v| v.opening.is_some());
    for _ in 0..5 {
        s.send(SessionCommand::Start(request("sim:noise")));
        s.send(SessionCommand::SetVolume(0.5));
    }
    let sent = Instant::now();
    s.send(SessionCommand::Stop);
    let mut cancelled = None;
    while sent.elapsed() < Duration::from_millis(1500) {
        if let Ok(ev) = s.events().recv_timeout(Duration::from_millis(5)) {
            if matches!(ev, SessionEvent::OpenCancelled(_)) {
                cancelled.get_or_insert(sent.elapsed());
            }
            assert!(!matches!(ev, SessionEvent::Started(_) | SessionEvent::Opening(_)), "a stale start ran");
            v.apply(ev);
        }
    }
    let took = cancelled.expect("the open was cancelled");
    eprintln!("a stop during a 1 s open behind 10 queued commands took {took:?}");
    assert!(took < Duration::from_millis(50), "the stop took {took:?}");
    assert!(!v.running() && v.opening.is_none());
}

#[test]
fn a_stop_of_a_running_capture_is_honoured_at_once_behind_queued_commands() {
    let s = session(SimConfig::default());
    let mut v = SessionView::default();
    s.send(SessionCommand::Start(request("sim")));
    until(&s, &mut v, "the capture", |v| v.running());
    for i in 0..50 {
        s.send(SessionCommand::SetVolume(i as f32 / 50.0));
        s.send(SessionCommand::Start(request("sim:noise")));
    }
    s.send(SessionCommand::Stop);
    let took = until(&s, &mut v, "the stop", |v| !v.running() && s.events().is_empty());
    eprintln!("a stop behind 100 queued commands took {took:?}");
    // The first start may already run when the rest arrive; the others are skipped.
    assert!(took < Duration::from_millis(500), "{took:?}");
    std::thread::sleep(Duration::from_millis(100));
    while let Ok(ev) = s.events().try_recv() {
        v.apply(ev);
    }
    assert!(!v.running(), "a start queued before the stop ran after it");
}

#[test]
fn a_slow_teardown_never_blocks_the_client() {
    let s = session(SimConfig { release_delay: Duration::from_secs(3), ..SimConfig::default() });
    let mut v = SessionView::default();
    s.send(SessionCommand::Start(request("sim")));
    until(&s, &mut v, "the capture", |v| v.running());
    let t = Instant::now();
    s.send(SessionCommand::Stop);
    s.send(SessionCommand::SetMuted(true));
    assert!(t.elapsed() < Duration::from_millis(5), "send blocked for {:?}", t.elapsed());
    let took = until(&s, &mut v, "the stop", |v| !v.running());
    assert!(took >= Duration::from_millis(2900), "the teardown took {took:?}: the delay is not modelled");
}

#[test]
fn a_recording_writes_a_wav_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let s = session(SimConfig::default());
    let mut v = SessionView::default();
    s.send(SessionCommand::Start(request("sim:sine:1000")));
    until(&s, &mut v, "the capture", |v| v.running());
    s.send(SessionCommand::Record(Some(RecordRequest {
        dir: dir.path().into(),
        samples: WavSamples::Native,
    })));
    until(&s, &mut v, "half a second recorded", |v| v.recording.as_ref().is_some_and(|r| r.seconds() > 0.5));
    s.send(SessionCommand::Record(None));
    until(&s, &mut v, "the file", |v| v.recording.is_none() && v.last_recording.is_some());
    let said = v.last_recording.clone().unwrap();
    assert!(said.starts_with("saved ") && said.contains(".wav"), "{said}");
    // Without a capture, recording says what to do first.
    s.send(SessionCommand::Stop);
    s.send(SessionCommand::Record(Some(RecordRequest {
        dir: dir.path().into(),
        samples: WavSamples::Native,
    })));
    until(&s, &mut v, "the hint", |v| v.last_recording.as_deref().is_some_and(|t| t.starts_with("Start")));
}

#[test]
fn the_ab_run_alternates_modes_and_returns_to_the_chosen_one() {
    let s = session(SimConfig::default());
    let mut v = SessionView::default();
    s.send(SessionCommand::StartAb { start: request("sim"), seconds: 0.5, rounds: 1 });
    until(&s, &mut v, "the run", |v| v.ab.running);
    until(&s, &mut v, "the end of the run", |v| !v.ab.running && v.ab.results.len() == 2);
    let paths: Vec<TransferPath> = v.ab.results.iter().map(|r| r.path).collect();
    assert_eq!(paths, vec![TransferPath::ZeroCopy, TransferPath::Copy]);
    assert!(v.ab.error.is_none(), "{:?}", v.ab.error);
    until(&s, &mut v, "the capture again", |v| v.running());
    assert_eq!(v.live.as_ref().unwrap().request.mode, ModeRequest::Auto);
}

#[test]
fn hotplug_is_said_and_a_replugged_device_is_tried_again() {
    let sys = tempfile::tempdir().unwrap();
    let cfg = SessionConfig {
        sim: SimConfig::default(),
        hotplug: Some((sys.path().into(), Duration::from_millis(20))),
    };
    let s = Session::spawn(cfg, || {}).unwrap();
    let mut v = SessionView::default();
    s.send(SessionCommand::Start(request("auto")));
    until(&s, &mut v, "the simulated device", |v| v.running() && v.simulated());
    let dev = crate::sim::VirtualDevice::new(Default::default()).unwrap();
    let d = dev.write_sysfs(sys.path(), 7).unwrap();
    // The list shows it, the change is said, and auto on the simulated device tries the new
    // device (its node is not there, so auto falls back to the simulated one and runs).
    let t = Instant::now();
    let mut starts = 0;
    while starts == 0 || !v.running() {
        assert!(t.elapsed() < Duration::from_secs(20), "no restart after the plug");
        if let Ok(ev) = s.events().recv_timeout(Duration::from_millis(5)) {
            starts += usize::from(matches!(ev, SessionEvent::Started(_)));
            v.apply(ev);
        }
    }
    assert!(v.devices.iter().any(|e| e.selector == "1209:0001"));
    assert!(v.hotplug.as_deref().is_some_and(|h| h.starts_with("plugged in")), "{:?}", v.hotplug);
    std::fs::remove_dir_all(&d).unwrap();
    until(&s, &mut v, "the unplug", |v| v.hotplug.as_deref().is_some_and(|h| h.starts_with("unplugged")));
}
