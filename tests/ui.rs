//! UI tests of the whole app with egui_kittest against the simulated device: start and
//! stop, the trigger, pause, a mode switch, the screenshot path and the bug report,
//! monitoring through an ALSA file PCM, recording, CSV export, and hotplug on a fake sysfs.
//! Clicks go by label through the accessibility tree; assertions are on app state.

use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use isoscope::app::{GuiOptions, IsoscopeApp, Settings, Tab};
use isoscope::capture::ModeRequest;
use isoscope::dma::TransferPath;

mod support;

/// An ALSA configuration with a `file` PCM (`iso_ui`, slave `null`, raw float to a file),
/// in a child process of its own (see [`support::in_alsa_child`]). `None` in the parent.
fn alsa_file_pcm(test: &str) -> Option<std::path::PathBuf> {
    support::in_alsa_child(test, || {
        let dir = tempfile::tempdir().unwrap().keep();
        let conf = format!(
            "pcm.iso_ui {{\n  type file\n  slave.pcm \"null\"\n  file \"{}\"\n  format \"raw\"\n}}\n",
            dir.join("iso_ui.raw").display()
        );
        std::fs::write(dir.join("asoundrc"), conf).unwrap();
        let conf = dir.join("asoundrc");
        (dir, conf)
    })
}

fn app(device: &str) -> IsoscopeApp {
    let opts = GuiOptions { device: Some(device.into()), fresh: true, ..GuiOptions::default() };
    IsoscopeApp::new(Settings { history_s: 10.0, ..Settings::default() }, opts, None)
}

fn harness(device: &str) -> Harness<'static, IsoscopeApp> {
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_state(|ctx, app: &mut IsoscopeApp| app.ui(ctx), app(device))
}

/// Steps frames (with real time passing, for the paced simulated device) until `done`.
fn step_until(h: &mut Harness<'_, IsoscopeApp>, what: &str, done: impl Fn(&IsoscopeApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
        h.step();
    }
}

#[test]
fn starts_at_once_shows_a_live_signal_and_stops_and_starts_from_the_buttons() {
    let mut h = harness("sim:sine:1000");
    step_until(&mut h, "frames", |a| a.history.total() > 4800);
    let a = h.state();
    assert!(a.running() && a.view.error.is_none());
    assert_eq!(a.history.channels.len(), 2);
    assert!(a.view.live.as_ref().unwrap().info.device.simulated);
    // The meters see the 0.5-amplitude sine: -6 dBFS peak, 1 kHz dominant.
    step_until(&mut h, "meters", |a| a.analysis.dominant.first().copied().flatten().is_some());
    let a = h.state();
    assert!((a.analysis.levels[0].peak_db + 6.02).abs() < 0.2, "{:?}", a.analysis.levels[0]);
    let f = a.analysis.dominant[0].unwrap();
    assert!((f - 1000.0).abs() < 5.0, "dominant {f}");
    h.get_by_label("⏹ Stop").click();
    step_until(&mut h, "the stop", |a| !a.running());
    let frames = h.state().history.total();
    h.get_by_label("▶ Run").click();
    step_until(&mut h, "the start", |a| a.running());
    step_until(&mut h, "more frames", |a| a.history.total() > frames + 4800);
    // Space toggles run/stop.
    h.key_press(egui::Key::Space);
    step_until(&mut h, "the stop", |a| !a.running());
}

#[test]
fn the_trigger_locks_the_sine_at_the_chosen_position_and_single_stops_at_one() {
    let mut h = harness("sim:sine:1000");
    step_until(&mut h, "a trigger", |a| a.panels.scope.triggers_seen > 3);
    // The shown window puts the trigger at `position` of the screen.
    let a = h.state();
    let (start, end, at) = a.panels.scope.shown.unwrap();
    let pos = a.settings.scope.trigger.position as f64;
    assert!(((at - start) as f64 / (end - start) as f64 - pos).abs() < 0.01);
    // The sample at the trigger is at or just above the level, the one before below it.
    let ch = &a.history.channels[0];
    let level = a.settings.scope.trigger.trigger.level;
    assert!(ch.get(at).unwrap() >= level && ch.get(at - 1).unwrap() < level);
    // Single: arms, fires once, stops the capture and pauses the view.
    h.get_by_label("Single").click();
    step_until(&mut h, "single to fire", |a| !a.running());
    assert!(h.state().panels.scope.is_paused() && !h.state().single_armed);
}

#[test]
fn pause_freezes_the_view_while_the_history_keeps_growing() {
    let mut h = harness("sim:sine:440");
    step_until(&mut h, "frames", |a| a.history.total() > 4800);
    h.key_press(egui::Key::P);
    h.step();
    h.step();
    assert!(h.state().panels.scope.is_paused());
    let shown = h.state().panels.scope.shown;
    let total = h.state().history.total();
    step_until(&mut h, "more frames", |a| a.history.total() > total + 4800);
    assert_eq!(h.state().panels.scope.shown, shown, "the paused view does not move");
    h.get_by_label("⏸ Pause").click();
    h.step();
    assert!(!h.state().panels.scope.is_paused());
}

#[test]
fn switching_the_mode_restarts_in_copy_then_zero_copy() {
    let mut h = harness("sim");
    step_until(&mut h, "running", |a| a.history.total() > 1000);
    assert_eq!(h.state().path(), Some(TransferPath::ZeroCopy));
    h.state_mut().settings.mode = ModeRequest::Copy;
    h.get_by_label("⏹ Stop").click();
    step_until(&mut h, "the stop", |a| !a.running());
    h.get_by_label("▶ Run").click();
    step_until(&mut h, "copy mode", |a| a.path() == Some(TransferPath::Copy));
    step_until(&mut h, "copy-mode bytes", |a| {
        a.view.stats.as_ref().is_some_and(|s| s.kernel_copied_bytes > 0)
    });
    // The pool and compare tabs draw with a live capture.
    for tab in [Tab::Pool, Tab::Compare, Tab::Spectrum] {
        h.state_mut().settings.tab = tab;
        h.step();
    }
    // A raw URB on request, gaps zero in copy mode.
    h.state_mut().settings.tab = Tab::Compare;
    h.step();
    h.get_by_label("Capture one URB").click();
    step_until(&mut h, "a raw URB", |a| a.view.raw.is_some());
    let raw = h.state().view.raw.clone().unwrap();
    assert_eq!(raw.path, Some(TransferPath::Copy));
    assert!(raw.gap_bytes() > 0);
}

#[test]
fn the_screenshot_key_asks_for_one_and_the_image_is_saved_as_png() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness("sim");
    h.state_mut().out_dir = dir.path().to_path_buf();
    h.step();
    h.key_press(egui::Key::F12);
    h.step();
    assert!(h.state().screenshot_pending);
    // The window system answers with the image (kittest has no renderer here): feed one.
    let image = egui::ColorImage::new([64, 48], vec![egui::Color32::from_rgb(10, 200, 30); 64 * 48]);
    h.input_mut().events.push(egui::Event::Screenshot {
        viewport_id: egui::ViewportId::ROOT,
        user_data: egui::UserData::default(),
        image: std::sync::Arc::new(image),
    });
    h.step();
    let a = h.state();
    assert!(!a.screenshot_pending);
    let path = a.last_saved.clone().unwrap();
    let png = image::open(&path).unwrap().into_rgba8();
    assert_eq!(png.dimensions(), (64, 48));
    assert_eq!(png.get_pixel(5, 5).0, [10, 200, 30, 255]);
}

#[test]
fn the_bug_report_names_version_kernel_device_settings_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness("sim");
    h.state_mut().out_dir = dir.path().to_path_buf();
    step_until(&mut h, "frames", |a| a.history.total() > 1000);
    h.get_by_label("Copy bug report").click();
    h.step();
    h.step();
    let a = h.state();
    let text = a.last_report.clone().unwrap();
    for needle in [
        "isoscope 0.",
        "kernel:",
        "usbfs_memory_mb:",
        "device: sim",
        "simulated: true",
        "settings:",
        "stats:",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let saved = std::fs::read_to_string(a.last_saved.as_ref().unwrap()).unwrap();
    assert_eq!(saved, text);
}

#[test]
fn a_device_that_cannot_open_shows_an_error_with_a_fix_and_no_crash() {
    let mut h = harness("0d8c:9999");
    step_until(&mut h, "the error", |a| a.view.error.is_some());
    let a = h.state();
    assert!(!a.running());
    let e = a.view.error.clone().unwrap();
    assert!(e.message.contains("0d8c:9999"), "{e:?}");
    assert!(e.fix.is_some());
    h.get_by_label("Dismiss").click();
    h.step();
    assert!(h.state().view.error.is_none());
}

#[test]
fn the_monitor_plays_the_capture_through_alsa_and_goes_off_again() {
    let Some(dir) = alsa_file_pcm("the_monitor_plays_the_capture_through_alsa_and_goes_off_again") else {
        return;
    };
    let mut h = harness("sim:sine:1000");
    {
        let a = h.state_mut();
        a.settings.audio.host = Some(isoscope::audio::AudioHost::Alsa);
        a.settings.audio.output = Some("iso_ui".into());
        a.settings.audio.pacing = isoscope::audio::Pacing::HostClock;
    }
    step_until(&mut h, "the capture", |a| a.running());
    let volume_before = h.get_by_label("mute").rect();
    h.key_press(egui::Key::M);
    step_until(&mut h, "half a second played", |a| {
        a.view.monitor.as_ref().is_some_and(|m| m.probe.stats().frames_played > 24_000)
    });
    let a = h.state();
    assert!(a.view.monitor_error.is_none(), "{:?}", a.view.monitor_error);
    let st = a.view.monitor.as_ref().unwrap().probe.stats();
    assert!(st.latency_ms_median.is_some(), "{st:?}");
    // The sound went on to the card, and the capture kept its own data: no drops.
    assert_eq!(a.view.stats.as_ref().unwrap().ring_drops, 0);
    // Listening added its statistics to the side panel, and no control moved.
    h.get_by_label("median / p99");
    assert_eq!(h.get_by_label("mute").rect(), volume_before, "the mute box moved when listening began");
    h.get_by_label("🔊 Listening").click();
    step_until(&mut h, "the monitor to stop", |a| a.view.monitor.is_none() && a.view.last_monitor.is_some());
    assert!(!h.state().settings.audio.monitor);
    // The last figures stay on screen, frozen, and say so.
    h.get_by_label("Last listen (stopped):");
    h.get_by_label("median / p99");
    let raw = std::fs::read(dir.join("iso_ui.raw")).unwrap();
    let peak =
        raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs()).fold(0.0, f32::max);
    assert!((peak - 0.5).abs() < 0.02, "the 0.5 sine played at volume 1 peaks at {peak}");
}

#[test]
fn without_that_sound_card_the_monitor_says_so_and_the_capture_goes_on() {
    if alsa_file_pcm("without_that_sound_card_the_monitor_says_so_and_the_capture_goes_on").is_none() {
        return;
    }
    let mut h = harness("sim:sine:1000");
    h.state_mut().settings.audio.host = Some(isoscope::audio::AudioHost::Alsa);
    h.state_mut().settings.audio.output = Some("no-such-output".into());
    step_until(&mut h, "the capture", |a| a.running());
    h.key_press(egui::Key::M);
    step_until(&mut h, "the monitor error", |a| a.view.monitor_error.is_some());
    let frames = h.state().history.total();
    step_until(&mut h, "more frames", |a| a.history.total() > frames + 4800);
    let a = h.state();
    assert!(a.running() && a.view.monitor.is_none());
    let e = a.view.monitor_error.clone().unwrap();
    assert!(e.message.contains("no-such-output") && !e.message.contains("--"), "{e}");
    assert_eq!(e.fix.as_deref(), Some("Pick another output in the Audio panel."), "the window's words: {e}");
}

#[test]
fn a_recording_started_and_stopped_from_the_ui_is_the_unbroken_signal() {
    let out = tempfile::tempdir().unwrap();
    let mut h = harness("sim:sine:1000");
    h.state_mut().out_dir = out.path().to_path_buf();
    step_until(&mut h, "the capture", |a| a.running());
    h.get_by_label("⏺ Record WAV").click();
    step_until(&mut h, "a second recorded", |a| a.view.recording.as_ref().is_some_and(|r| r.seconds() > 1.0));
    h.key_press(egui::Key::R);
    step_until(&mut h, "the recording to close", |a| {
        a.view.recording.is_none() && a.view.last_recording.is_some()
    });
    let a = h.state();
    assert!(a.running());
    let said = a.view.last_recording.clone().unwrap();
    assert!(said.starts_with("saved "), "{said}");
    let path = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wav"))
        .unwrap();
    let bytes: Vec<u8> = hound::WavReader::open(&path)
        .unwrap()
        .into_samples::<i16>()
        .flat_map(|s| s.unwrap().to_le_bytes())
        .collect();
    assert!(bytes.len() >= 48_000 * 4, "{} bytes", bytes.len());
    let dev = isoscope::sim::SimDevice::new(isoscope::sim::SimConfig {
        signal: "sine:1000".parse().unwrap(),
        ..Default::default()
    })
    .unwrap();
    let al = isoscope::sim::check_contiguous(&dev.table(), &bytes).expect("the sine");
    assert_eq!(al.mismatched, 0, "{al:?}");
}

#[test]
fn csv_export_writes_the_frames_in_view() {
    let out = tempfile::tempdir().unwrap();
    let mut h = harness("sim:sine:1000");
    h.state_mut().out_dir = out.path().to_path_buf();
    step_until(&mut h, "a view", |a| a.panels.scope.shown.is_some() && a.history.total() > 4800);
    h.key_press(egui::Key::P);
    h.step();
    h.get_by_label("CSV").click();
    h.step();
    h.step();
    let a = h.state();
    let (start, end, _) = a.panels.scope.shown.unwrap();
    let path = a.last_saved.clone().unwrap();
    assert_eq!(path.extension().unwrap(), "csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("time_s,ch0,ch1"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), end - start);
    let first: Vec<f64> = rows[0].split(',').map(|v| v.parse().unwrap()).collect();
    assert!((first[0] - start as f64 / 48_000.0).abs() < 1e-6);
    assert_eq!(first[1] as f32, a.history.channels[0].get(start).unwrap());
}

#[test]
fn the_ab_run_alternates_zero_copy_and_copy_and_returns_to_the_chosen_mode() {
    let mut h = harness("sim:sine:1000");
    {
        let a = h.state_mut();
        a.settings.tab = Tab::Compare;
        a.settings.ab.seconds = 0.5;
        a.settings.ab.rounds = 2;
    }
    step_until(&mut h, "the capture", |a| a.running());
    h.step();
    h.get_by_label("Run A/B").click();
    step_until(&mut h, "the A/B run", |a| !a.view.ab.running && a.view.ab.results.len() == 4);
    let a = h.state();
    assert!(a.view.ab.error.is_none(), "{:?}", a.view.ab.error);
    let paths: Vec<TransferPath> = a.view.ab.results.iter().map(|r| r.path).collect();
    use TransferPath::{Copy, ZeroCopy};
    assert_eq!(paths, vec![ZeroCopy, Copy, ZeroCopy, Copy]);
    for r in &a.view.ab.results {
        assert!(r.seconds > 0.4 && r.cpu_us_per_mib > 0.0, "{r:?}");
        // The kernel copies in copy mode only (the simulator models that).
        assert_eq!(r.copied_bytes > 0, r.path == Copy, "{r:?}");
    }
    // The tab says it in words, read from the UI: the medians' ratio for each figure, and
    // the one clear difference, bytes the kernel copied, as none against some.
    h.step();
    let cpu = h.get_by_label_contains("engine CPU per MiB: copy / zero-copy").value().unwrap_or_default();
    assert!(
        cpu.contains("x,") && (cpu.contains("no clear difference") || cpu.contains("in every round")),
        "{cpu}"
    );
    let copied =
        h.get_by_label_contains("bytes the kernel copied: zero-copy 0 B, copy").value().unwrap_or_default();
    assert!(copied.ends_with("copy higher in every round"), "{copied}");
    // Back on the mode the user had (auto: zero-copy here), still running.
    step_until(&mut h, "the capture again", |a| a.running());
    assert_eq!(h.state().path(), Some(ZeroCopy));
}

#[test]
fn cursors_measure_dt_and_xy_mode_draws_one_channel_against_the_other() {
    let mut h = harness("sim:sine:1000");
    step_until(&mut h, "frames", |a| a.history.total() > 9600);
    h.key_press(egui::Key::P);
    h.step();
    h.get_by_label("Cursors").click();
    h.step();
    h.step();
    // Left click: cursor A; right click: cursor B (on the plot, in the middle of the window).
    for (x, button) in [(300.0, egui::PointerButton::Primary), (700.0, egui::PointerButton::Secondary)] {
        let pos = egui::pos2(x, 400.0);
        h.input_mut().events.push(egui::Event::PointerMoved(pos));
        h.step();
        for pressed in [true, false] {
            h.input_mut().events.push(egui::Event::PointerButton {
                pos,
                button,
                pressed,
                modifiers: egui::Modifiers::NONE,
            });
        }
        h.step();
        h.step();
    }
    let [Some(a), Some(b)] = h.state().panels.scope.cursors else {
        panic!("two cursors: {:?}", h.state().panels.scope.cursors)
    };
    assert!(b.x > a.x, "B is right of A: {a:?} {b:?}");
    h.get_by_label_contains("1/dt");
    // XY: the two channels of the sine, plotted against each other, without a crash.
    h.get_by_label("XY").click();
    h.step();
    h.step();
    assert!(h.state().settings.scope.xy);
    assert!(!h.state().panels.scope.points[0].is_empty(), "XY points were made");
}

fn harness_with(device: &str, session: isoscope::session::SessionConfig) -> Harness<'static, IsoscopeApp> {
    let opts = GuiOptions {
        device: Some(device.into()),
        fresh: true,
        session: Some(session),
        ..GuiOptions::default()
    };
    let app = IsoscopeApp::new(Settings { history_s: 10.0, ..Settings::default() }, opts, None);
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_state(|ctx, app: &mut IsoscopeApp| app.ui(ctx), app)
}

/// Steps frames until `done`, timing each one; returns the frame times.
fn frame_times(
    h: &mut Harness<'_, IsoscopeApp>,
    what: &str,
    done: impl Fn(&IsoscopeApp) -> bool,
) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut times = Vec::new();
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        let t = Instant::now();
        h.step();
        times.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    times
}

#[test]
fn the_window_keeps_drawing_while_a_device_opens_and_while_a_slow_teardown_runs() {
    use isoscope::session::SessionConfig;
    use isoscope::sim::SimConfig;
    // Opening takes a second (a real device's control transfers), releasing it three.
    let sim = SimConfig {
        open_delay: Duration::from_secs(1),
        release_delay: Duration::from_secs(3),
        ..SimConfig::default()
    };
    let mut h = harness_with("sim:sine:1000", SessionConfig { sim, hotplug: None });
    let opening = frame_times(&mut h, "the capture", |a| a.running());
    assert!(opening.len() > 20, "only {} frames drawn while the device opened", opening.len());
    h.get_by_label("⏹ Stop").click();
    let t = Instant::now();
    h.step();
    let stopping = frame_times(&mut h, "the stop", |a| !a.running());
    assert!(t.elapsed() > Duration::from_millis(2900), "the teardown was not slow: {:?}", t.elapsed());
    for (phase, times) in [("opening", &opening), ("stopping", &stopping)] {
        let mut sorted = times.clone();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        let max = *sorted.last().unwrap();
        eprintln!("{phase}: {} frames, median {median:?}, max {max:?}", times.len());
        // The UI thread never waits for the session: every frame is short. (A machine that
        // stalls a test thread now and then may make one frame long, never seconds.)
        assert!(
            median < Duration::from_millis(20),
            "{phase}: median frame {median:?} ({} frames)",
            times.len()
        );
        assert!(max < Duration::from_millis(250), "{phase}: a frame took {max:?}: the UI thread blocked");
    }
}

#[test]
fn hidden_spectra_are_not_computed_every_frame() {
    let mut h = harness("sim:sine:1000");
    step_until(&mut h, "a full block", |a| a.history.total() > 16_384);
    let count = |h: &mut Harness<'_, IsoscopeApp>| {
        let before = h.state().analysis.transforms;
        for _ in 0..30 {
            h.step();
        }
        h.state().analysis.transforms - before
    };
    let hidden = count(&mut h);
    h.state_mut().settings.tab = Tab::Spectrum;
    h.step();
    let shown = count(&mut h);
    // Two channels: 60 transforms for 30 frames shown; a few a second while hidden.
    assert_eq!(shown, 60, "shown");
    assert!(hidden <= 10, "{hidden} transforms in 30 frames with the spectrum hidden");
}

#[test]
fn hotplug_is_shown_and_the_new_device_is_in_the_menu() {
    let sys = tempfile::tempdir().unwrap();
    let cfg = isoscope::session::SessionConfig {
        hotplug: Some((sys.path().to_path_buf(), Duration::from_millis(20))),
        ..Default::default()
    };
    let mut h = harness_with("sim", cfg);
    step_until(&mut h, "the capture", |a| a.running());
    let dev = isoscope::sim::VirtualDevice::new(Default::default()).unwrap();
    dev.write_sysfs(sys.path(), 7).unwrap();
    step_until(&mut h, "the hotplug notice", |a| a.view.hotplug.is_some());
    h.get_by_label_contains("USB plugged in: 001:007 1209:0001");
    assert!(h.state().view.devices.iter().any(|e| e.selector == "1209:0001"));
    // Not auto: the running capture is left alone.
    assert!(h.state().running());
}

/// One panel alone, on a view built by hand, as egui's own panel tests do.
struct PanelState<P> {
    panel: P,
    settings: Settings,
    view: isoscope::session::SessionView,
    history: isoscope::ui::History,
    analysis: isoscope::ui::spectrum::Analysis,
    commands: Vec<isoscope::ui::Command>,
}

fn panel_harness<P: isoscope::ui::Panel + 'static>(
    panel: P,
    view: isoscope::session::SessionView,
) -> Harness<'static, PanelState<P>> {
    let state = PanelState {
        panel,
        settings: Settings::default(),
        view,
        history: isoscope::ui::History::empty(),
        analysis: Default::default(),
        commands: Vec::new(),
    };
    Harness::new_ui_state(
        |ui, s: &mut PanelState<P>| {
            let mut cx = isoscope::ui::PanelCx {
                session: &s.view,
                history: &s.history,
                analysis: &s.analysis,
                single_armed: false,
                commands: &mut s.commands,
            };
            s.panel.ui(ui, &mut s.settings, &mut cx);
        },
        state,
    )
}

#[test]
fn the_device_bar_alone_lists_the_sessions_devices_and_returns_commands() {
    use isoscope::session::devices::{DeviceEntry, Offers};
    use isoscope::ui::Command;
    let mut view = isoscope::session::SessionView::default();
    view.devices.push(DeviceEntry {
        selector: "1209:0001".into(),
        label: "test mic".into(),
        offers: Offers::any(),
    });
    let mut h = panel_harness(isoscope::ui::devices::DevicesPanel, view);
    h.run();
    h.get_by_label("▶ Run").click();
    h.run();
    assert_eq!(h.state().commands, vec![Command::Start]);
    h.state_mut().commands.clear();
    h.get_by_label("Copy bug report").click();
    h.run();
    assert_eq!(h.state().commands, vec![Command::CopyBugReport]);
    // Nothing changed state mid-draw: the settings are as they were.
    assert_eq!(h.state().settings, Settings::default());
}

#[test]
fn the_notices_alone_show_an_error_once_with_its_fix_and_dismiss_is_a_command() {
    let mut view = isoscope::session::SessionView::default();
    view.error = Some(isoscope::session::Problem { message: "it broke".into(), fix: Some("do this".into()) });
    let mut h = panel_harness(isoscope::ui::notices::NoticesPanel, view);
    h.run();
    h.get_by_label("Error: it broke");
    assert_eq!(h.get_all_by_label_contains("do this").count(), 1);
    h.get_by_label("Dismiss").click();
    h.run();
    assert_eq!(h.state().commands, vec![isoscope::ui::Command::DismissError]);
}

/// The gap census the raw view's caption shows (zero, non-zero), read from the UI.
fn shown_gap_census(h: &Harness<'_, IsoscopeApp>) -> (u64, u64) {
    let text = h.get_by_label_contains("gap bytes: ").value().unwrap_or_default();
    let nums: Vec<u64> = text
        .split("gap bytes: ")
        .nth(1)
        .unwrap_or_default()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .take(2)
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "{text}");
    (nums[0], nums[1])
}

#[test]
fn the_raw_view_shows_zeroed_gaps_in_copy_mode_and_stale_bytes_in_zero_copy() {
    let faults = isoscope::sim::Faults { short_ratio: 0.5, ..isoscope::sim::Faults::default() };
    let session = isoscope::session::SessionConfig {
        sim: isoscope::sim::SimConfig { faults, ..isoscope::sim::SimConfig::default() },
        ..isoscope::session::SessionConfig::default()
    };
    let mut seen = Vec::new();
    for mode in [ModeRequest::Copy, ModeRequest::ZeroCopy] {
        let opts = GuiOptions {
            device: Some("sim:sine:1000".into()),
            fresh: true,
            session: Some(session.clone()),
            ..GuiOptions::default()
        };
        let settings = Settings { history_s: 10.0, mode, tab: Tab::Compare, ..Settings::default() };
        let mut h = Harness::builder()
            .with_size(egui::vec2(1280.0, 800.0))
            .build_state(|ctx, app: &mut IsoscopeApp| app.ui(ctx), IsoscopeApp::new(settings, opts, None));
        step_until(&mut h, "the capture", |a| a.running());
        // After a second every URB slot has been used several times: in zero-copy mode the
        // pages then hold earlier transfers' bytes.
        step_until(&mut h, "a second of frames", |a| a.history.total() > 48_000);
        // Drop the URB the tab took when it opened; the button asks for the next one.
        h.state_mut().view.raw = None;
        h.get_by_label("Capture one URB").click_accesskit();
        step_until(&mut h, "a new raw URB", |a| a.view.raw.is_some());
        h.step();
        let (zero, stale) = shown_gap_census(&h);
        let raw = h.state().view.raw.clone().unwrap();
        assert_eq!((zero, stale), (raw.gap_census().0 as u64, raw.gap_census().1 as u64));
        assert!(zero + stale > 0, "{mode:?}: short packets leave gaps");
        seen.push((mode, zero, stale));
    }
    // Copy mode: every gap byte is 0. Zero-copy: the sine's stale bytes show through.
    assert_eq!(seen[0].2, 0, "{seen:?}");
    assert!(seen[1].2 > 0, "{seen:?}");
}
