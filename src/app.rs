//! The eframe application: a thin shell. Each frame it applies the session's events to its
//! view, drains the capture's frames into the history, draws the panels (one shape, see
//! [`Panel`]) and applies the commands they returned: most go to the [`Session`] thread,
//! which owns the capture, monitor, recordings and the A/B run; the window keeps its own
//! (screenshots, pause, CSV, the bug report).

use eframe::egui;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::dma::TransferPath;
use crate::dsp::trigger::TriggerMode;
use crate::session::{RecordRequest, Session, SessionCommand, SessionConfig, SessionView};
use crate::ui::audio::AudioPanel;
use crate::ui::compare::ComparePanel;
use crate::ui::devices::DevicesPanel;
use crate::ui::notices::NoticesPanel;
use crate::ui::pool::PoolPanel;
use crate::ui::scope::ScopePanel;
use crate::ui::spectrum::{Analysis, SpectrumPanel};
use crate::ui::status::StatusBar;
pub use crate::ui::window::{icon, run, save_png};
use crate::ui::{Command, History, Panel, PanelCx};
pub use crate::ui::{Settings, Tab};

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
    /// The session's setup (tests give the simulated device delays or a fake sysfs).
    pub session: Option<SessionConfig>,
}

/// Where a headless screenshot run stands.
#[derive(Clone, Debug, Default)]
pub struct ScreenshotOutcome(pub Arc<Mutex<Option<Result<PathBuf, String>>>>);

/// Every panel of the window.
#[derive(Default)]
pub struct Panels {
    pub devices: DevicesPanel,
    pub notices: NoticesPanel,
    pub status: StatusBar,
    pub audio: AudioPanel,
    pub scope: ScopePanel,
    pub spectrum: SpectrumPanel,
    pub pool: PoolPanel,
    pub compare: ComparePanel,
}

/// The application.
pub struct IsoscopeApp {
    pub settings: Settings,
    pub session: Session,
    /// The session as its events describe it.
    pub view: SessionView,
    pub history: History,
    pub analysis: Analysis,
    pub panels: Panels,
    pub single_armed: bool,
    /// Where screenshots, bug reports, recordings and CSV exports go.
    pub out_dir: PathBuf,
    pub screenshot_pending: bool,
    pub last_saved: Option<PathBuf>,
    pub last_report: Option<String>,
    /// Frames drawn, and the longest a frame took to build (tests, the frame-time check).
    pub frames: u64,
    pub outcome: ScreenshotOutcome,
    cmds: Vec<Command>,
    opts: GuiOptions,
    created: Instant,
    screenshot_requested_at: Option<Instant>,
}

impl IsoscopeApp {
    /// A new app; starts capturing at once. `ctx` (when there is a window) is woken by the
    /// session's events.
    pub fn new(settings: Settings, opts: GuiOptions, ctx: Option<egui::Context>) -> IsoscopeApp {
        let mut settings = settings;
        if let Some(d) = &opts.device {
            settings.device = d.clone();
        }
        if let Some(t) = opts.tab {
            settings.tab = t;
        }
        let cfg = opts.session.clone().unwrap_or_default();
        let session = Session::spawn(cfg, move || {
            if let Some(c) = &ctx {
                c.request_repaint();
            }
        })
        .expect("the session thread starts");
        let mut app = IsoscopeApp {
            settings,
            session,
            view: SessionView::default(),
            history: History::empty(),
            analysis: Analysis::default(),
            panels: Panels::default(),
            single_armed: false,
            out_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            screenshot_pending: false,
            last_saved: None,
            last_report: None,
            frames: 0,
            outcome: ScreenshotOutcome::default(),
            cmds: Vec::with_capacity(8),
            opts,
            created: Instant::now(),
            screenshot_requested_at: None,
        };
        if app.settings.audio.monitor {
            app.session.send(SessionCommand::Listen(Some(app.settings.audio.listen_request())));
        }
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
        IsoscopeApp::new(settings, opts, Some(cc.egui_ctx.clone()))
    }

    pub fn running(&self) -> bool {
        self.view.running()
    }

    /// The transfer path of the running capture.
    pub fn path(&self) -> Option<TransferPath> {
        self.view.live.as_ref().map(|l| l.info.path)
    }

    /// Applies the session's events; a capture with another format gets a new history.
    fn poll_session(&mut self) {
        while let Ok(ev) = self.session.events().try_recv() {
            // What the last capture left in its ring goes into the history before a new
            // capture's ring replaces it.
            if let (crate::session::SessionEvent::Started(_), Some(ring)) = (&ev, &mut self.view.frames) {
                self.history.drain_from(ring);
            }
            if self.view.apply(ev) == crate::session::Applied::Started {
                let f = self.view.live.as_ref().map(|l| l.info.stream.format);
                if let Some(f) = f.filter(|f| {
                    self.history.rate != f.rate || self.history.channels.len() != usize::from(f.channels)
                }) {
                    // Another format: a new history, view and analysis (no peak held
                    // from the last one).
                    self.history = History::within(
                        f.rate,
                        usize::from(f.channels),
                        self.settings.history_s,
                        self.settings.history_mb.max(16) << 20,
                    );
                    self.panels.scope = ScopePanel::default();
                    self.analysis = Analysis::default();
                }
            }
        }
        self.view.refresh();
        if let Some(ring) = &mut self.view.frames {
            self.history.drain_from(ring);
        }
    }

    /// Applies the commands of this frame.
    fn apply(&mut self, ctx: &egui::Context) {
        let cmds = std::mem::take(&mut self.cmds);
        for cmd in &cmds {
            let to_session = match cmd {
                Command::Start => {
                    self.single_armed = false;
                    self.panels.scope.resume();
                    Some(SessionCommand::Start(self.settings.start_request(self.settings.mode)))
                }
                Command::Restart => {
                    Some(SessionCommand::Start(self.settings.start_request(self.settings.mode)))
                }
                Command::Stop => Some(SessionCommand::Stop),
                Command::Single => {
                    self.single_armed = true;
                    self.panels.scope.resume();
                    (!self.running())
                        .then(|| SessionCommand::Start(self.settings.start_request(self.settings.mode)))
                }
                Command::SingleFired => {
                    let single = self.settings.scope.trigger.mode == TriggerMode::Single;
                    (self.single_armed || single).then(|| {
                        self.single_armed = false;
                        self.panels.scope.pause();
                        SessionCommand::Stop
                    })
                }
                Command::TogglePause => {
                    if self.panels.scope.is_paused() {
                        self.panels.scope.resume();
                    } else {
                        self.panels.scope.pause();
                    }
                    None
                }
                Command::Screenshot => {
                    self.screenshot_pending = true;
                    self.screenshot_requested_at = Some(Instant::now());
                    ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(egui::UserData::default()));
                    None
                }
                Command::CopyBugReport => {
                    self.copy_bug_report(ctx);
                    None
                }
                Command::StartAb => Some(SessionCommand::StartAb {
                    start: self.settings.start_request(self.settings.mode),
                    seconds: self.settings.ab.seconds,
                    rounds: self.settings.ab.rounds,
                }),
                Command::CancelAb => Some(SessionCommand::CancelAb),
                Command::RawSnapshot => {
                    self.view.request_raw();
                    None
                }
                Command::ToggleMonitor => {
                    let a = &mut self.settings.audio;
                    a.monitor = !a.monitor;
                    if !a.monitor {
                        self.view.monitor_error = None;
                    }
                    Some(SessionCommand::Listen(a.monitor.then(|| a.listen_request())))
                }
                Command::RestartMonitor => {
                    Some(SessionCommand::Listen(Some(self.settings.audio.listen_request())))
                }
                Command::SetVolume(v) => Some(SessionCommand::SetVolume(*v)),
                Command::SetMuted(m) => Some(SessionCommand::SetMuted(*m)),
                Command::SetChannelMap(m) => Some(SessionCommand::SetChannelMap(m.clone())),
                Command::ListOutputs => Some(SessionCommand::ListOutputs),
                Command::RescanDevices => Some(SessionCommand::RescanDevices),
                Command::ToggleRecord => {
                    Some(SessionCommand::Record(self.view.recording.is_none().then(|| RecordRequest {
                        dir: self.out_dir.clone(),
                        samples: self.settings.audio.wav_samples(),
                    })))
                }
                Command::ExportCsv => {
                    if let Some((a, b, _)) = self.panels.scope.shown {
                        match crate::ui::scope::export_csv(&self.history, (a, b), &self.out_dir) {
                            Ok(p) => self.last_saved = Some(p),
                            Err(e) => self.show_error(e, "Check the folder's permissions and free space."),
                        }
                    }
                    None
                }
                Command::ResetPeaks => {
                    self.analysis.reset_peaks();
                    None
                }
                Command::DismissError => {
                    self.view.error = None;
                    None
                }
            };
            if let Some(c) = to_session {
                self.session.send(c);
            }
        }
        self.cmds = cmds;
        self.cmds.clear();
    }

    fn show_error(&mut self, message: String, fix: &str) {
        self.view.error = Some(crate::session::Problem { message, fix: Some(fix.into()) });
    }

    /// The bug report to the clipboard and a file in `out_dir`.
    fn copy_bug_report(&mut self, ctx: &egui::Context) {
        let settings = serde_json::to_string(&self.settings).unwrap_or_default();
        let text = crate::session::report::bug_report(&self.view, &settings);
        ctx.copy_text(text.clone());
        let path = self.out_dir.join(format!("isoscope-bug-report-{}.txt", unix_secs()));
        match std::fs::write(&path, &text) {
            Ok(()) => self.last_saved = Some(path),
            Err(e) => self.show_error(
                format!("cannot write {}: {e}", path.display()),
                "The report is on the clipboard; check the folder's permissions.",
            ),
        }
        self.last_report = Some(text);
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        if ctx.wants_keyboard_input() {
            return;
        }
        let running = self.running();
        ctx.input_mut(|i| {
            for (key, cmd) in [
                (egui::Key::Space, if running { Command::Stop } else { Command::Start }),
                (egui::Key::S, Command::Single),
                (egui::Key::P, Command::TogglePause),
                (egui::Key::F12, Command::Screenshot),
                (egui::Key::M, Command::ToggleMonitor),
                (egui::Key::R, Command::ToggleRecord),
            ] {
                if i.consume_key(egui::Modifiers::NONE, key) {
                    self.cmds.push(cmd);
                }
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
            Err(e) => self.view.error = Some(crate::session::Problem { message: e.clone(), fix: None }),
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
        self.poll_session();
        self.shortcuts(ctx);
        if let Some((after, _)) = &self.opts.screenshot {
            if self.screenshot_requested_at.is_none()
                && !self.screenshot_pending
                && self.created.elapsed() >= *after
            {
                self.cmds.push(Command::Screenshot);
            }
        }
        let tab = self.settings.tab;
        self.analysis.update(&self.settings.spectrum, &self.history, tab == Tab::Spectrum);
        let (settings, p) = (&mut self.settings, &mut self.panels);
        let mut cx = PanelCx {
            session: &self.view,
            history: &self.history,
            analysis: &self.analysis,
            single_armed: self.single_armed,
            commands: &mut self.cmds,
        };
        egui::TopBottomPanel::top("device_bar").show(ctx, |ui| p.devices.ui(ui, settings, &mut cx));
        egui::TopBottomPanel::top("tabs").show(ctx, |ui| {
            ui.horizontal(|ui| {
                for t in Tab::ALL {
                    ui.selectable_value(&mut settings.tab, t, t.name());
                }
                if let Some(p) = &self.last_saved {
                    ui.separator();
                    ui.weak(format!("saved {}", p.display()));
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    egui::widgets::global_theme_preference_buttons(ui);
                });
            });
            p.notices.ui(ui, settings, &mut cx);
        });
        egui::TopBottomPanel::bottom("status").show(ctx, |ui| p.status.ui(ui, settings, &mut cx));
        // A fixed width: starting to listen adds longer lines, and controls must not move.
        egui::SidePanel::right("meters")
            .resizable(false)
            .exact_width(240.0)
            .show(ctx, |ui| p.audio.ui(ui, settings, &mut cx));
        egui::CentralPanel::default().show(ctx, |ui| {
            let panel: &mut dyn Panel = match tab {
                Tab::Scope => &mut p.scope,
                Tab::Spectrum => &mut p.spectrum,
                Tab::Pool => &mut p.pool,
                Tab::Compare => &mut p.compare,
            };
            panel.ui(ui, settings, &mut cx);
        });
        self.apply(ctx);
        if self.running() || self.view.opening.is_some() || self.opts.screenshot.is_some() {
            ctx.request_repaint();
        }
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

    /// The device is released (and a detached kernel driver given back) before exit.
    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.session.shutdown();
    }
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
