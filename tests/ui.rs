//! UI tests of the whole app with egui_kittest against the simulated device: start and
//! stop, the trigger, pause, a mode switch, the screenshot path and the bug report.
//! Clicks go by label through the accessibility tree; assertions are on app state.

use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use isoscope::app::{GuiOptions, IsoscopeApp, Settings, Tab};
use isoscope::capture::ModeRequest;
use isoscope::dma::TransferPath;

fn app(device: &str) -> IsoscopeApp {
    let opts = GuiOptions { device: Some(device.into()), fresh: true, ..GuiOptions::default() };
    IsoscopeApp::new(Settings { history_s: 10.0, ..Settings::default() }, opts)
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
    assert!(a.running() && a.error.is_none());
    assert_eq!(a.history.channels.len(), 2);
    assert!(a.live.as_ref().unwrap().info.device.simulated);
    // The meters see the 0.5-amplitude sine: -6 dBFS peak, 1 kHz dominant.
    step_until(&mut h, "meters", |a| a.analysis.dominant.first().copied().flatten().is_some());
    let a = h.state();
    assert!((a.analysis.levels[0].peak_db + 6.02).abs() < 0.2, "{:?}", a.analysis.levels[0]);
    let f = a.analysis.dominant[0].unwrap();
    assert!((f - 1000.0).abs() < 5.0, "dominant {f}");
    h.get_by_label("⏹ Stop").click();
    h.step();
    h.step();
    assert!(!h.state().running());
    let frames = h.state().history.total();
    h.get_by_label("▶ Run").click();
    h.step();
    h.step();
    assert!(h.state().running());
    step_until(&mut h, "more frames", |a| a.history.total() > frames + 4800);
    // Space toggles run/stop.
    h.key_press(egui::Key::Space);
    h.step();
    h.step();
    assert!(!h.state().running());
}

#[test]
fn the_trigger_locks_the_sine_at_the_chosen_position_and_single_stops_at_one() {
    let mut h = harness("sim:sine:1000");
    step_until(&mut h, "a trigger", |a| a.scope.triggers_seen > 3);
    // The shown window puts the trigger at `position` of the screen.
    let a = h.state();
    let (start, end, at) = a.scope.shown.unwrap();
    let pos = a.settings.scope.trigger.position as f64;
    assert!(((at - start) as f64 / (end - start) as f64 - pos).abs() < 0.01);
    // The sample at the trigger is at or just above the level, the one before below it.
    let ch = &a.history.channels[0];
    let level = a.settings.scope.trigger.trigger.level;
    assert!(ch.get(at).unwrap() >= level && ch.get(at - 1).unwrap() < level);
    // Single: arms, fires once, stops the capture and pauses the view.
    h.get_by_label("Single").click();
    step_until(&mut h, "single to fire", |a| !a.running());
    assert!(h.state().scope.is_paused() && !h.state().single_armed);
}

#[test]
fn pause_freezes_the_view_while_the_history_keeps_growing() {
    let mut h = harness("sim:sine:440");
    step_until(&mut h, "frames", |a| a.history.total() > 4800);
    h.key_press(egui::Key::P);
    h.step();
    h.step();
    assert!(h.state().scope.is_paused());
    let shown = h.state().scope.shown;
    let total = h.state().history.total();
    step_until(&mut h, "more frames", |a| a.history.total() > total + 4800);
    assert_eq!(h.state().scope.shown, shown, "the paused view does not move");
    h.get_by_label("⏸ Pause").click();
    h.step();
    assert!(!h.state().scope.is_paused());
}

#[test]
fn switching_the_mode_restarts_in_copy_then_zero_copy() {
    let mut h = harness("sim");
    step_until(&mut h, "running", |a| a.history.total() > 1000);
    assert_eq!(h.state().path(), Some(TransferPath::ZeroCopy));
    h.state_mut().settings.mode = ModeRequest::Copy;
    h.get_by_label("⏹ Stop").click();
    h.step();
    h.step();
    h.get_by_label("▶ Run").click();
    h.step();
    h.step();
    assert_eq!(h.state().path(), Some(TransferPath::Copy));
    step_until(&mut h, "copy-mode bytes", |a| {
        a.last_stats.as_ref().is_some_and(|s| s.kernel_copied_bytes > 0)
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
    step_until(&mut h, "a raw URB", |a| a.raw.is_some());
    let raw = h.state().raw.clone().unwrap();
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
    h.step();
    h.step();
    let a = h.state();
    assert!(!a.running());
    let e = a.error.clone().unwrap();
    assert!(e.message.contains("0d8c:9999"), "{e:?}");
    assert!(e.fix.is_some());
    h.get_by_label("Dismiss").click();
    h.step();
    assert!(h.state().error.is_none());
}
