//! The eframe application: persisted settings (kept apart from runtime handles), the
//! running capture and its history, the panels, and the commands they return, applied at
//! the end of each frame. Also the audio monitor and recordings that come and go beside
//! a capture, screenshots and the bug report.

use eframe::egui;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringbuf::traits::Split;
use ringbuf::{HeapCons, HeapRb};

use crate::audio::{ChannelMap, Monitor, MonitorConfig, OutputInfo};
use crate::capture::{
    Capture, CaptureConfig, CaptureInfo, Event, ModeRequest, RawSnapshot, Sink, StatsSnapshot,
};
use crate::dma::{human_bytes, TransferPath};
use crate::dsp::SampleFormat;
use crate::record::{Recording, WavSamples};
use crate::ui::audio::{AudioSettings, AudioView};
use crate::ui::compare::{AbResult, AbSettings, AbState, ComparePanel};
use crate::ui::devices::{DeviceBar, DevicesPanel};
use crate::ui::scope::{ScopePanel, ScopeSettings};
use crate::ui::spectrum::{Analysis, SpectrumPanel, SpectrumSettings};
use crate::ui::{pool, status, Command, History};
use crate::usb::uac::StreamRequest;

/// The panel shown in the middle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    #[default]
    Scope,
    Spectrum,
    Pool,
    Compare,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Scope, Tab::Spectrum, Tab::Pool, Tab::Compare];

    pub fn name(self) -> &'static str {
        match self {
            Tab::Scope => "Scope",
            Tab::Spectrum => "Spectrum",
            Tab::Pool => "Buffer pool",
            Tab::Compare => "Copy vs zero-copy",
        }
    }
}

/// Everything that persists between runs (eframe storage).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    pub device: String,
    pub rate: Option<u32>,
    pub channels: Option<u16>,
    /// Sample format name (`SampleFormat::name`).
    pub sample: Option<String>,
    pub mode: ModeRequest,
    pub pool_cap_mb: u64,
    /// Seconds of history kept per channel (fewer if `history_mb` says so).
    pub history_s: f64,
    /// The most memory the history may take, MiB.
    pub history_mb: u64,
    pub tab: Tab,
    pub scope: ScopeSettings,
    pub spectrum: SpectrumSettings,
    pub ab: AbSettings,
    pub audio: AudioSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            device: "auto".into(),
            rate: None,
            channels: None,
            sample: None,
            mode: ModeRequest::Auto,
            pool_cap_mb: 8,
            history_s: 600.0,
            history_mb: 1024,
            tab: Tab::Scope,
            scope: ScopeSettings::default(),
            spectrum: SpectrumSettings::default(),
            ab: AbSettings::default(),
            audio: AudioSettings::default(),
        }
    }
}

/// How the GUI is started.
#[derive(Clone, Debug, Default)]
pub struct GuiOptions {
    /// Overrides the persisted device.
    pub device: Option<String>,
    /// Headless screenshot: after this long, save the window to this PNG and exit.
    pub screenshot: Option<(Duration, PathBuf)>,
    /// Force a theme (screenshots): Some(true) dark, Some(false) light.
    pub dark: Option<bool>,
    /// Start on this tab (screenshots).
    pub tab: Option<Tab>,
    /// Ignore persisted settings.
    pub fresh: bool,
}

/// An error shown in the UI, with what to do about it.
#[derive(Clone, Debug, PartialEq)]
pub struct UiError {
    pub message: String,
    pub fix: Option<String>,
}

/// A running capture and the handles to it.
pub struct Live {
    pub capture: Capture,
    ring: HeapCons<f32>,
    pub info: CaptureInfo,
    pub started: Instant,
    pub summary: String,
    last_rate: (Instant, u64, f64),
}

/// The monitor and the recording: each runs beside the capture on its own ring, attached
/// while the capture runs ([`Capture::attach`]).
#[derive(Default)]
pub struct AudioState {
    pub monitor: Option<Monitor>,
    /// Why monitoring is not playing (no sound card, busy, ...), with the fix in the text.
    pub monitor_error: Option<String>,
    pub outputs: Vec<OutputInfo>,
    /// The last monitor's final statistics and output, shown frozen after Listen is off.
    pub last_monitor: Option<(crate::audio::MonitorStats, String)>,
    pub recording: Option<Recording>,
    /// What the last recording wrote, or why it failed.
    pub last_recording: Option<String>,
}

/// Where a headless screenshot run stands.
#[derive(Clone, Debug, Default)]
pub struct ScreenshotOutcome(pub Arc<Mutex<Option<Result<PathBuf, String>>>>);

/// The application.
pub struct IsoscopeApp {
    pub settings: Settings,
    pub live: Option<Live>,
    pub history: History,
    pub scope: ScopePanel,
    pub spectrum: SpectrumPanel,
    pub analysis: Analysis,
    pub devices: DevicesPanel,
    pub error: Option<UiError>,
    /// Why the device is the simulated one, or other notices.
    pub note: Option<String>,
    pub single_armed: bool,
    pub ab: AbState,
    ab_restore: Option<ModeRequest>,
    pub raw: Option<RawSnapshot>,
    pub last_stats: Option<StatsSnapshot>,
    /// The last capture ended because the device was unplugged.
    pub unplugged: bool,
    pub audio: AudioState,
    /// Where screenshots, bug reports, recordings and CSV exports go.
    pub out_dir: PathBuf,
    pub screenshot_pending: bool,
    pub last_saved: Option<PathBuf>,
    pub last_report: Option<String>,
    cmds: Vec<Command>,
    opts: GuiOptions,
    created: Instant,
    screenshot_requested_at: Option<Instant>,
    pub outcome: ScreenshotOutcome,
    /// Frames drawn (for tests and the frame-time benchmark).
    pub frames: u64,
}

impl IsoscopeApp {
    /// A new app; starts capturing at once.
    pub fn new(settings: Settings, opts: GuiOptions) -> IsoscopeApp {
        let mut settings = settings;
        if let Some(d) = &opts.device {
            settings.device = d.clone();
        }
        if let Some(t) = opts.tab {
            settings.tab = t;
        }
        let mut app = IsoscopeApp {
            settings,
            live: None,
            history: History::empty(),
            scope: ScopePanel::default(),
            spectrum: SpectrumPanel::default(),
            analysis: Analysis::default(),
            devices: DevicesPanel::default(),
            error: None,
            note: None,
            single_armed: false,
            ab: AbState::default(),
            ab_restore: None,
            raw: None,
            last_stats: None,
            unplugged: false,
            audio: AudioState::default(),
            out_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            screenshot_pending: false,
            last_saved: None,
            last_report: None,
            cmds: Vec::with_capacity(8),
            opts,
            created: Instant::now(),
            screenshot_requested_at: None,
            outcome: ScreenshotOutcome::default(),
            frames: 0,
        };
        app.cmds.push(Command::Start);
        app
    }

    /// From eframe's creation context: persisted settings unless told to start fresh.
    pub fn from_creation(cc: &eframe::CreationContext<'_>, opts: GuiOptions) -> IsoscopeApp {
        let settings = match cc.storage {
            Some(s) if !opts.fresh => eframe::get_value(s, eframe::APP_KEY).unwrap_or_default(),
            _ => Settings::default(),
        };
        if let Some(dark) = opts.dark {
            cc.egui_ctx.set_theme(if dark { egui::Theme::Dark } else { egui::Theme::Light });
        }
        IsoscopeApp::new(settings, opts)
    }

    pub fn running(&self) -> bool {
        self.live.is_some()
    }

    fn request(&self) -> StreamRequest {
        StreamRequest {
            rate: self.settings.rate,
            channels: self.settings.channels,
            sample: self.settings.sample.as_deref().and_then(SampleFormat::parse),
        }
    }

    /// Opens the device and starts a capture in `mode`.
    fn start(&mut self, mode: ModeRequest) {
        self.stop();
        let sim = crate::sim::SimConfig::default();
        let crate::source::Opened { source: opened, fallback: why } =
            match crate::source::open(&self.settings.device, &self.request(), &sim) {
                Ok(x) => x,
                Err(e) => {
                    self.error = Some(UiError { fix: e.fix().map(str::to_string), message: e.to_string() });
                    return;
                }
            };
        self.note = why;
        let summary = opened.summary();
        let cfg = CaptureConfig {
            mode,
            app_cap_bytes: self.settings.pool_cap_mb << 20,
            ..CaptureConfig::default()
        };
        // The frames ring: two seconds, so a slow frame or two loses nothing.
        let f = opened.stream().format;
        let ring_len = (f.rate as usize * usize::from(f.channels) * 2).max(1 << 16);
        let (prod, cons) = HeapRb::<f32>::new(ring_len).split();
        match opened.start(&cfg, vec![Sink::Frames(prod)]) {
            Ok(capture) => {
                let info = capture.info().clone();
                if self.history.rate != f.rate || self.history.channels.len() != usize::from(f.channels) {
                    self.history = History::within(
                        f.rate,
                        usize::from(f.channels),
                        self.settings.history_s,
                        self.settings.history_mb.max(16) << 20,
                    );
                    self.scope = ScopePanel::default();
                }
                self.error = None;
                self.unplugged = false;
                self.live = Some(Live {
                    capture,
                    ring: cons,
                    info,
                    started: Instant::now(),
                    summary,
                    last_rate: (Instant::now(), 0, 0.0),
                });
                if self.settings.audio.monitor {
                    self.start_monitor();
                }
            }
            Err(e) => self.error = Some(UiError { message: e.to_string(), fix: None }),
        }
    }

    fn stop(&mut self) {
        if let Some(mut live) = self.live.take() {
            self.history.drain_from(&mut live.ring);
            let (stats, failure) = live.capture.stop();
            self.last_stats = Some(stats);
            if let Some(e) = failure {
                self.error = Some(UiError { message: e.to_string(), fix: None });
            }
        }
        // The capture has ended, so its producers are gone: the recording writes what is
        // left in its ring and closes the file.
        self.stop_recording();
        self.stop_monitor();
    }

    /// Starts monitoring the running capture (a no-op without one).
    fn start_monitor(&mut self) {
        self.stop_monitor();
        let Some(live) = &self.live else { return };
        let format = live.info.stream.format;
        let a = &self.settings.audio;
        // A saved map that does not fit this device falls back to the default.
        let channel_map = a.channel_map.as_deref().and_then(|m| ChannelMap::parse(m, format.channels).ok());
        let cfg = MonitorConfig {
            host: a.host,
            output: a.output.clone(),
            latency_ms: a.latency_ms.clamp(5.0, 500.0),
            volume: a.volume,
            muted: a.muted,
            channel_map,
            pacing: a.pacing,
            ..MonitorConfig::default()
        };
        let (prod, cons) = Monitor::input_ring(format);
        match Monitor::start(cons, format, &cfg) {
            Ok(m) => match live.capture.attach(Sink::Frames(prod)) {
                Ok(()) => {
                    self.audio.monitor = Some(m);
                    self.audio.monitor_error = None;
                }
                Err(e) => self.audio.monitor_error = Some(e.to_string()),
            },
            Err(e) => self.audio.monitor_error = Some(e.to_string()),
        }
    }

    fn stop_monitor(&mut self) {
        if let Some(m) = self.audio.monitor.take() {
            let name = monitor_name(m.info());
            self.audio.last_monitor = Some((m.stop(), name));
        }
    }

    /// Starts recording the running capture to a new WAV file in `out_dir`.
    fn start_recording(&mut self) {
        self.stop_recording();
        let Some(live) = &self.live else {
            self.audio.last_recording = Some("Start the capture first (Space), then record.".into());
            return;
        };
        let format = live.info.stream.format;
        let path = self.out_dir.join(format!("isoscope-{}.wav", unix_millis()));
        let samples = if self.settings.audio.record_float { WavSamples::Float } else { WavSamples::Native };
        // Two seconds of slack for the disk.
        let (prod, cons) = Recording::ring(format, 2.0);
        match Recording::start(cons, &path, format, samples) {
            Ok(rec) => match live.capture.attach(Sink::Bytes(prod)) {
                Ok(()) => self.audio.recording = Some(rec),
                Err(e) => self.audio.last_recording = Some(e.to_string()),
            },
            Err(e) => self.audio.last_recording = Some(e.to_string()),
        }
    }

    /// Stops the recording: everything already captured is written, then the file closed.
    fn stop_recording(&mut self) {
        if let Some(rec) = self.audio.recording.take() {
            self.audio.last_recording = Some(match rec.stop() {
                Ok(s) => format!("saved {} ({} frames, {:.1} s)", s.path.display(), s.frames, s.seconds),
                Err(e) => e.to_string(),
            });
        }
    }

    /// Saves the frames in the scope's view as CSV in `out_dir`.
    fn export_csv(&mut self) {
        let Some((a, b, _)) = self.scope.shown else { return };
        let n = self.history.channels.len();
        let (a, b) =
            (a.max(self.history.channels.first().map_or(0, |p| p.oldest())), b.min(self.history.total()));
        if n == 0 || b <= a {
            return;
        }
        let mut lanes = vec![Vec::new(); n];
        for (c, lane) in lanes.iter_mut().enumerate() {
            self.history.channels[c].copy_range(a, b, lane);
        }
        let frames = lanes.iter().map(Vec::len).min().unwrap_or(0);
        let mut interleaved = Vec::with_capacity(frames * n);
        for i in 0..frames {
            interleaved.extend(lanes.iter().map(|l| l[i]));
        }
        let path = self.out_dir.join(format!("isoscope-{}.csv", unix_millis()));
        let result = std::fs::File::create(&path).and_then(|f| {
            crate::record::write_csv(std::io::BufWriter::new(f), &interleaved, n, self.history.rate, a as u64)
        });
        match result {
            Ok(()) => self.last_saved = Some(path),
            Err(e) => {
                self.error = Some(UiError {
                    message: format!("cannot write {}: {e}", path.display()),
                    fix: Some("Check the folder's permissions and free space.".into()),
                })
            }
        }
    }

    /// Once per frame: drain the ring, notice a capture that ended, tick the A/B run.
    fn poll(&mut self) {
        let mut failed = None;
        if let Some(live) = &mut self.live {
            self.history.drain_from(&mut live.ring);
            let st = live.capture.stats();
            let (t, bytes, _) = live.last_rate;
            let dt = t.elapsed().as_secs_f64();
            if dt >= 0.5 {
                live.last_rate = (Instant::now(), st.bytes, (st.bytes - bytes) as f64 / dt);
            }
            if let Ok(Event::Failed(e)) = live.capture.events().try_recv() {
                failed = Some(e);
            }
            if let Some(raw) = live.capture.raw_tap().try_take() {
                if let Some(old) = self.raw.replace(raw) {
                    live.capture.raw_tap().recycle(old);
                }
            }
            self.last_stats = Some(st);
        }
        if let Some(e) = failed {
            self.unplugged = matches!(e, crate::capture::CaptureError::Disconnected { .. });
            self.stop();
            self.ab.running = false;
            self.error = Some(UiError { message: e.to_string(), fix: None });
        }
        // A recording whose thread ended by itself (a write error) is closed and said.
        if self.audio.recording.as_ref().is_some_and(Recording::is_finished) {
            self.stop_recording();
        }
        self.ab_tick();
    }

    fn ab_tick(&mut self) {
        if !self.ab.running {
            return;
        }
        let secs = self.settings.ab.seconds.max(0.5);
        let Some(live) = &self.live else {
            self.ab.running = false;
            return;
        };
        if live.started.elapsed().as_secs_f64() < secs {
            return;
        }
        let path = live.info.path;
        // The final figures: the engine publishes its clocks every few URBs while running
        // and once more when it stops.
        self.stop();
        if let Some(stats) = &self.last_stats {
            self.ab.results.push(AbResult::from_stats(self.ab.round, path, stats));
        }
        let next = match self.ab.phase {
            Some(ModeRequest::ZeroCopy) => Some(ModeRequest::Copy),
            _ if self.ab.round + 1 < self.settings.ab.rounds => {
                self.ab.round += 1;
                Some(ModeRequest::ZeroCopy)
            }
            _ => None,
        };
        match next {
            Some(m) => {
                self.ab.phase = Some(m);
                self.start(m);
                if self.live.is_none() {
                    self.ab.error = self.error.as_ref().map(|e| e.message.clone());
                    self.ab.running = false;
                }
            }
            None => self.finish_ab(),
        }
    }

    fn finish_ab(&mut self) {
        self.ab.running = false;
        self.ab.phase = None;
        let mode = self.ab_restore.take().unwrap_or(self.settings.mode);
        self.start(mode);
    }

    /// Applies the commands of this frame.
    fn apply(&mut self, ctx: &egui::Context) {
        let cmds = std::mem::take(&mut self.cmds);
        for cmd in &cmds {
            match cmd {
                Command::Start => {
                    self.single_armed = false;
                    self.scope.resume();
                    self.start(self.settings.mode);
                }
                Command::Restart => self.start(self.settings.mode),
                Command::Stop => self.stop(),
                Command::Single => {
                    self.single_armed = true;
                    self.scope.resume();
                    if self.live.is_none() {
                        self.start(self.settings.mode);
                    }
                }
                Command::SingleFired => {
                    if self.single_armed
                        || self.settings.scope.trigger.mode == crate::dsp::trigger::TriggerMode::Single
                    {
                        self.single_armed = false;
                        self.scope.pause();
                        self.stop();
                    }
                }
                Command::TogglePause => {
                    if self.scope.is_paused() {
                        self.scope.resume();
                    } else {
                        self.scope.pause();
                    }
                }
                Command::Screenshot => {
                    self.screenshot_pending = true;
                    self.screenshot_requested_at = Some(Instant::now());
                    ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(egui::UserData::default()));
                }
                Command::CopyBugReport => {
                    let text = self.bug_report();
                    ctx.copy_text(text.clone());
                    let path = self.out_dir.join(format!("isoscope-bug-report-{}.txt", unix_secs()));
                    match std::fs::write(&path, &text) {
                        Ok(()) => self.last_saved = Some(path),
                        Err(e) => {
                            self.error = Some(UiError {
                                message: format!("cannot write {}: {e}", path.display()),
                                fix: Some(
                                    "The report is on the clipboard; check the folder's permissions.".into(),
                                ),
                            })
                        }
                    }
                    self.last_report = Some(text);
                }
                Command::StartAb => {
                    self.ab = AbState {
                        running: true,
                        round: 0,
                        phase: Some(ModeRequest::ZeroCopy),
                        ..AbState::default()
                    };
                    self.ab_restore = Some(self.settings.mode);
                    self.start(ModeRequest::ZeroCopy);
                    if self.live.is_none() {
                        self.ab.running = false;
                        self.ab.error = self.error.as_ref().map(|e| e.message.clone());
                    }
                }
                Command::CancelAb => self.finish_ab(),
                Command::RawSnapshot => {
                    if let Some(live) = &self.live {
                        live.capture.raw_tap().request();
                    }
                }
                Command::ToggleMonitor => {
                    self.settings.audio.monitor = !self.settings.audio.monitor;
                    if self.settings.audio.monitor {
                        self.start_monitor();
                    } else {
                        self.stop_monitor();
                        self.audio.monitor_error = None;
                    }
                }
                Command::RestartMonitor => self.start_monitor(),
                Command::ListOutputs => match crate::audio::list_outputs() {
                    Ok(o) => self.audio.outputs = o,
                    Err(e) => self.audio.monitor_error = Some(e.to_string()),
                },
                Command::ToggleRecord => {
                    if self.audio.recording.is_some() {
                        self.stop_recording();
                    } else {
                        self.start_recording();
                    }
                }
                Command::ExportCsv => self.export_csv(),
            }
        }
        self.cmds = cmds;
        self.cmds.clear();
    }

    /// Everything a bug report needs, as text.
    pub fn bug_report(&self) -> String {
        let mut s = String::new();
        let kernel =
            std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_else(|_| "unknown".into());
        s.push_str(&format!("isoscope {}\nkernel: {}\n", env!("CARGO_PKG_VERSION"), kernel.trim()));
        let mb = crate::dma::MemoryLimit::from_sysfs(0).usbfs_memory_mb;
        s.push_str(&format!("usbfs_memory_mb: {}\n", mb.map_or("unreadable".into(), |m| m.to_string())));
        match &self.live {
            Some(l) => {
                let i = &l.info;
                s.push_str(&format!(
                    "device: {}\nsimulated: {}\nusbfs caps: mmap {}\nstream: endpoint 0x{:02x}, {}, {:?} speed, interval {}, packet {} bytes\n{}\n",
                    i.device.name,
                    i.device.simulated,
                    if i.device.can_mmap { "yes" } else { "no" },
                    i.stream.endpoint,
                    i.stream.format,
                    i.stream.speed,
                    i.stream.interval,
                    i.stream.packet_len,
                    l.summary
                ));
                s.push_str(&format!(
                    "path: {}{}\nplan: {} URBs in flight + {} spare, {} packets each\nmemory: {} accounted, cap {}\n",
                    i.path,
                    i.fallback.as_deref().map_or(String::new(), |f| format!(" (fallback: {f})")),
                    i.plan.urbs_in_flight,
                    i.plan.spare_urbs,
                    i.plan.packets_per_urb,
                    human_bytes(i.memory.accounted_bytes()),
                    human_bytes(i.limit.effective_bytes())
                ));
            }
            None => s.push_str("device: (not running)\n"),
        }
        s.push_str(&format!("settings: {}\n", serde_json::to_string(&self.settings).unwrap_or_default()));
        if let Some(st) = &self.last_stats {
            s.push_str(&format!("stats: {}\n", serde_json::to_string(st).unwrap_or_default()));
        }
        if let Some(m) = &self.audio.monitor {
            s.push_str(&format!(
                "monitor: {}\nmonitor stats: {}\n",
                serde_json::to_string(m.info()).unwrap_or_default(),
                serde_json::to_string(&m.stats()).unwrap_or_default()
            ));
        }
        if let Some(e) = &self.audio.monitor_error {
            s.push_str(&format!("monitor error: {e}\n"));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("error: {}\n", e.message));
        }
        s
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        if ctx.wants_keyboard_input() {
            return;
        }
        let running = self.running();
        ctx.input_mut(|i| {
            if i.consume_key(egui::Modifiers::NONE, egui::Key::Space) {
                self.cmds.push(if running { Command::Stop } else { Command::Start });
            }
            if i.consume_key(egui::Modifiers::NONE, egui::Key::S) {
                self.cmds.push(Command::Single);
            }
            if i.consume_key(egui::Modifiers::NONE, egui::Key::P) {
                self.cmds.push(Command::TogglePause);
            }
            if i.consume_key(egui::Modifiers::NONE, egui::Key::F12) {
                self.cmds.push(Command::Screenshot);
            }
            if i.consume_key(egui::Modifiers::NONE, egui::Key::M) {
                self.cmds.push(Command::ToggleMonitor);
            }
            if i.consume_key(egui::Modifiers::NONE, egui::Key::R) {
                self.cmds.push(Command::ToggleRecord);
            }
        });
    }

    /// Saves a screenshot that arrived this frame.
    fn take_screenshot_events(&mut self, ctx: &egui::Context) {
        let image = ctx.input(|i| {
            i.raw.events.iter().find_map(|e| match e {
                egui::Event::Screenshot { image, .. } => Some(Arc::clone(image)),
                _ => None,
            })
        });
        let Some(image) = image else {
            if let (Some(t), Some(_)) = (self.screenshot_requested_at, &self.opts.screenshot) {
                if t.elapsed() > Duration::from_secs(10) {
                    *self.outcome.0.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Err("the window system never delivered the screenshot".into()));
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
            }
            return;
        };
        self.screenshot_pending = false;
        self.screenshot_requested_at = None;
        let path = match &self.opts.screenshot {
            Some((_, p)) => p.clone(),
            None => self.out_dir.join(format!("isoscope-{}.png", unix_secs())),
        };
        let result = save_png(&image, &path);
        match &result {
            Ok(()) => self.last_saved = Some(path.clone()),
            Err(e) => self.error = Some(UiError { message: e.clone(), fix: None }),
        }
        if self.opts.screenshot.is_some() {
            *self.outcome.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(result.map(|()| path));
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    /// One frame of the whole UI (eframe's `update` calls this; so do the UI tests).
    pub fn ui(&mut self, ctx: &egui::Context) {
        self.frames += 1;
        self.take_screenshot_events(ctx);
        self.poll();
        self.shortcuts(ctx);
        if let Some((after, _)) = &self.opts.screenshot {
            if self.screenshot_requested_at.is_none()
                && !self.screenshot_pending
                && self.created.elapsed() >= *after
            {
                self.cmds.push(Command::Screenshot);
            }
        }
        self.analysis.update(&self.settings.spectrum, &self.history);
        let running = self.running();

        egui::TopBottomPanel::top("device_bar").show(ctx, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.strong("isoscope");
                ui.separator();
                let s = &mut self.settings;
                let bar = DeviceBar {
                    device: &mut s.device,
                    rate: &mut s.rate,
                    channels: &mut s.channels,
                    sample: &mut s.sample,
                    mode: &mut s.mode,
                    running,
                    simulated: self.live.as_ref().is_some_and(|l| l.info.device.simulated),
                    unplugged: self.unplugged,
                };
                self.devices.ui(ui, bar, &mut self.cmds);
                ui.separator();
                if ui.button("📷 Screenshot").on_hover_text("Save a PNG of the window (F12)").clicked() {
                    self.cmds.push(Command::Screenshot);
                }
                if ui
                    .button("Copy bug report")
                    .on_hover_text(
                        "Version, kernel, usbfs caps, device, settings, stats: to the clipboard and a file",
                    )
                    .clicked()
                {
                    self.cmds.push(Command::CopyBugReport);
                }
            });
        });
        egui::TopBottomPanel::top("tabs").show(ctx, |ui| {
            ui.horizontal(|ui| {
                for t in Tab::ALL {
                    ui.selectable_value(&mut self.settings.tab, t, t.name());
                }
                if let Some(p) = &self.last_saved {
                    ui.separator();
                    ui.weak(format!("saved {}", p.display()));
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    egui::widgets::global_theme_preference_buttons(ui);
                });
            });
            if let Some(n) = &self.note {
                ui.colored_label(egui::Color32::from_rgb(220, 140, 0), n);
            }
            if let Some(h) = &self.devices.hotplug {
                ui.colored_label(egui::Color32::from_rgb(60, 160, 220), format!("USB {h}"));
            }
            let mut dismiss = false;
            if let Some(e) = &self.error {
                egui::Frame::new()
                    .fill(egui::Color32::from_rgb(150, 30, 30))
                    .inner_margin(6)
                    .corner_radius(4)
                    .show(ui, |ui| {
                        ui.colored_label(egui::Color32::WHITE, format!("Error: {}", e.message));
                        if let Some(f) = &e.fix {
                            ui.colored_label(egui::Color32::WHITE, format!("Fix: {f}"));
                        }
                        dismiss = ui.button("Dismiss").clicked();
                    });
            }
            if dismiss {
                self.error = None;
            }
        });
        let bps = self.live.as_ref().map_or(0.0, |l| l.last_rate.2);
        egui::TopBottomPanel::bottom("status").show(ctx, |ui| {
            status::ui(
                ui,
                status::Status {
                    info: self.live.as_ref().map(|l| &l.info),
                    stats: self.last_stats.as_ref(),
                    bytes_per_s: bps,
                    running,
                    note: self
                        .live
                        .as_ref()
                        .filter(|l| l.info.device.simulated)
                        .map(|_| "built-in simulated device"),
                    history: (self.history.held_seconds(), self.history.seconds(), self.history.heap_bytes()),
                },
            );
        });
        // A fixed width: starting to listen adds longer lines, and controls must not move.
        egui::SidePanel::right("meters").resizable(false).exact_width(240.0).show(ctx, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                crate::ui::spectrum::meters_ui(ui, &self.analysis);
                ui.separator();
                let view = AudioView {
                    settings: &mut self.settings.audio,
                    channels: self.live.as_ref().map_or(0, |l| l.info.stream.format.channels),
                    outputs: &self.audio.outputs,
                    monitor: match &self.audio.monitor {
                        Some(m) => Some((m.stats(), monitor_name(m.info()), true)),
                        None => self.audio.last_monitor.clone().map(|(st, name)| (st, name, false)),
                    },
                    monitor_error: self.audio.monitor_error.as_deref(),
                    recording: self
                        .audio
                        .recording
                        .as_ref()
                        .map(|r| (r.path().display().to_string(), r.seconds())),
                    last_recording: self.audio.last_recording.as_deref(),
                };
                let changes = crate::ui::audio::ui(ui, view, &mut self.cmds);
                if let Some(m) = &self.audio.monitor {
                    let a = &self.settings.audio;
                    if changes.volume {
                        m.set_volume(a.volume);
                    }
                    if changes.muted {
                        m.set_muted(a.muted);
                    }
                    if changes.channel_map {
                        let channels = self.live.as_ref().map_or(1, |l| l.info.stream.format.channels);
                        let map = match &a.channel_map {
                            Some(t) => ChannelMap::parse(t, channels),
                            None => Ok(ChannelMap::default_for(channels, m.info().output_channels)),
                        };
                        if let Err(e) = map.and_then(|map| m.set_channel_map(map)) {
                            self.audio.monitor_error = Some(e.to_string());
                        }
                    }
                }
            });
        });
        egui::CentralPanel::default().show(ctx, |ui| match self.settings.tab {
            Tab::Scope => {
                self.scope.ui(ui, &mut self.settings.scope, &self.history, self.single_armed, &mut self.cmds)
            }
            Tab::Spectrum => {
                self.spectrum.ui(ui, &mut self.settings.spectrum, &mut self.analysis, &self.history)
            }
            Tab::Pool => pool::ui(
                ui,
                self.live.as_ref().map(|l| &l.info),
                self.live.as_ref().map(|l| l.capture.slot_states()),
            ),
            Tab::Compare => {
                let live = self.live.as_ref();
                // The raw view shows a URB as soon as the tab opens.
                if let (None, Some(l)) = (&self.raw, live) {
                    l.capture.raw_tap().request();
                }
                ComparePanel {
                    stats: self.last_stats.as_ref().filter(|_| live.is_some()),
                    path: live.map(|l| l.info.path),
                    simulated: live.is_some_and(|l| l.info.device.simulated),
                    ab: &self.ab,
                    settings: &mut self.settings.ab,
                    raw: self.raw.as_ref(),
                }
                .ui(ui, &mut self.cmds);
            }
        });
        self.apply(ctx);
        if self.running() || self.opts.screenshot.is_some() {
            ctx.request_repaint();
        }
    }

    /// The transfer path of the running capture.
    pub fn path(&self) -> Option<TransferPath> {
        self.live.as_ref().map(|l| l.info.path)
    }
}

impl eframe::App for IsoscopeApp {
    fn update(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.ui(ctx);
    }

    /// A headless screenshot shows the window as it is, not a hover label wherever the
    /// virtual display left its pointer.
    fn raw_input_hook(&mut self, _ctx: &egui::Context, raw_input: &mut egui::RawInput) {
        if self.opts.screenshot.is_some() {
            raw_input.events.retain(|e| !matches!(e, egui::Event::PointerMoved(_)));
            raw_input.events.push(egui::Event::PointerGone);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if !self.opts.fresh {
            eframe::set_value(storage, eframe::APP_KEY, &self.settings);
        }
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.stop();
    }
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the epoch: file names that do not collide within a second.
fn unix_millis() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// Writes an egui screenshot as PNG.
pub fn save_png(image: &egui::ColorImage, path: &Path) -> Result<(), String> {
    let [w, h] = image.size;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    image::save_buffer(path, &bytes, w as u32, h as u32, image::ExtendedColorType::Rgba8)
        .map_err(|e| format!("cannot save the screenshot to {}: {e}", path.display()))
}

/// The window icon (assets/icon.png).
pub fn icon() -> Option<egui::IconData> {
    let img = image::load_from_memory(include_bytes!("../assets/icon.png")).ok()?.into_rgba8();
    let (w, h) = img.dimensions();
    Some(egui::IconData { rgba: img.into_raw(), width: w, height: h })
}

/// Opens the window and runs until it closes. With a screenshot plan, returns where the
/// PNG was saved.
pub fn run(opts: GuiOptions) -> Result<Option<PathBuf>, String> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("isoscope")
        .with_app_id("isoscope")
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([800.0, 500.0]);
    if let Some(i) = icon() {
        viewport = viewport.with_icon(i);
    }
    let native = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Glow,
        persist_window: opts.screenshot.is_none(),
        ..Default::default()
    };
    let outcome = ScreenshotOutcome::default();
    let shared = outcome.clone();
    let shot = opts.screenshot.is_some();
    eframe::run_native(
        "isoscope",
        native,
        Box::new(move |cc| {
            let mut app = IsoscopeApp::from_creation(cc, opts);
            app.outcome = shared;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| {
        format!(
            "cannot open the window: {}. Run it in a desktop session (DISPLAY or WAYLAND_DISPLAY set), \
             or use the headless commands: isoscope capture, isoscope monitor (see isoscope --help)",
            e.to_string().trim_end_matches('.')
        )
    })?;
    if !shot {
        return Ok(None);
    }
    let r = outcome.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    match r {
        Some(Ok(p)) => Ok(Some(p)),
        Some(Err(e)) => Err(e),
        None => Err("the window closed before the screenshot was taken".into()),
    }
}

/// The monitor's output as the audio panel names it.
fn monitor_name(i: &crate::audio::MonitorInfo) -> String {
    format!("{}: {} at {} Hz", i.host, i.output_description, i.output_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_a_restart_and_old_files_fill_in_defaults() {
        let mut s =
            Settings { device: "1:4".into(), rate: Some(96_000), history_mb: 256, ..Settings::default() };
        s.audio.monitor = true;
        s.audio.channel_map = Some("2,3".into());
        s.scope.xy = true;
        s.tab = Tab::Compare;
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), s);
        // A settings file from an older version (fields missing) still loads.
        let old: Settings = serde_json::from_str(r#"{"device":"sim","rate":48000}"#).unwrap();
        assert_eq!((old.device.as_str(), old.rate), ("sim", Some(48_000)));
        assert_eq!(old.audio, AudioSettings::default());
        assert_eq!(old.history_mb, Settings::default().history_mb);
    }
}
