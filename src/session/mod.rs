//! The session: one capture at a time, with the monitor, the recording and the A/B run that
//! come and go beside it, owned by one thread and driven by typed commands
//! ([`SessionCommand`]). It answers with events ([`SessionEvent`]) and hands out probes the
//! UI reads lock-free every frame. Opening a device (control transfers with 1 s timeouts)
//! and tearing one down (seconds, on some kernels) happen here, never on the UI thread.
//! No egui in here: the GUI is one client, tests are another.

pub mod ab;
pub mod devices;
pub mod report;
mod view;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ringbuf::traits::Split;
use ringbuf::{HeapCons, HeapRb};

use crate::audio::{ChannelMap, Monitor, MonitorConfig, MonitorInfo, MonitorStats, OutputInfo};
use crate::capture::{
    Capture, CaptureConfig, CaptureCounters, CaptureError, CaptureInfo, Event, ModeRequest, RawTap, Sink,
    SlotStates, StatsSnapshot,
};
use crate::record::{Recording, RecordingProbe, WavSamples};
use crate::sim::SimConfig;
use crate::usb::discovery::SYSFS_USB_DEVICES;
use crate::usb::hotplug::HotplugWatcher;
use crate::usb::uac::StreamRequest;

use ab::AbState;
use devices::{CaptureState, DeviceEntry, HotplugAction};
pub use view::{Applied, LiveView, MonitorView, SessionView};

/// How often the session looks at what runs when no command comes (a capture that failed,
/// a recording that ended, the A/B clock, hotplug).
const TICK: Duration = Duration::from_millis(20);

/// What to capture.
#[derive(Clone, Debug, PartialEq)]
pub struct StartRequest {
    /// A device selector (`auto`, `sim:...`, `VID:PID`, ...; see [`crate::source::open`]).
    pub device: String,
    pub stream: StreamRequest,
    pub mode: ModeRequest,
    /// isoscope's own cap on its buffer memory.
    pub app_cap_bytes: u64,
}

/// How to listen: the monitor's settings, with the channel map as text (it is checked
/// against each capture's channel count when the monitor starts).
#[derive(Clone, Debug)]
pub struct ListenRequest {
    pub config: MonitorConfig,
    pub channel_map: Option<String>,
}

/// Where and how to record.
#[derive(Clone, Debug)]
pub struct RecordRequest {
    /// The folder; the file is named by the time it starts.
    pub dir: PathBuf,
    pub samples: WavSamples,
}

/// What the session is asked to do.
#[derive(Clone, Debug)]
pub enum SessionCommand {
    /// Start capturing (stopping what runs first). Skipped if a stop was sent after it.
    Start(StartRequest),
    /// Stop the capture (and with it the recording and the monitor's playback).
    Stop,
    /// Listen with these settings (now if a capture runs, and with every capture that
    /// starts), or stop listening.
    Listen(Option<ListenRequest>),
    SetVolume(f32),
    SetMuted(bool),
    /// A new channel map for the running monitor (`None`: the default for its outputs).
    SetChannelMap(Option<String>),
    /// List the sound outputs (answered with [`SessionEvent::Outputs`]).
    ListOutputs,
    /// Read the USB device list again now (answered with [`SessionEvent::Devices`]).
    RescanDevices,
    /// Start recording the capture to a new WAV file, or stop.
    Record(Option<RecordRequest>),
    /// Run the A/B comparison on `start`'s device, then return to `start.mode`.
    StartAb {
        start: StartRequest,
        seconds: f64,
        rounds: usize,
    },
    CancelAb,
}

/// An error for the screen: what happened, and what to do about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub message: String,
    pub fix: Option<String>,
}

impl Problem {
    /// `e`, with its remedy (if a library error in it has one) in the window's words.
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Problem {
        Problem { message: e.to_string(), fix: crate::fix::find(e).map(crate::fix::Fix::for_gui) }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fix {
            Some(fix) => write!(f, "{} ({fix})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Lock-free readers of a running capture: its counters, its URB slots, its raw tap.
#[derive(Clone, Debug)]
pub struct CaptureProbe {
    pub counters: Arc<CaptureCounters>,
    pub slots: SlotStates,
    pub raw: RawTap,
}

/// A capture that started.
pub struct Started {
    pub info: CaptureInfo,
    /// A few lines about the device for a bug report.
    pub summary: String,
    /// With `auto`: why it is the simulated device.
    pub note: Option<String>,
    /// Its decoded frames (two seconds of them), for the scope's history.
    pub frames: HeapCons<f32>,
    pub probe: CaptureProbe,
    pub request: StartRequest,
}

/// A capture that ended.
#[derive(Clone, Debug)]
pub struct Stopped {
    pub stats: StatsSnapshot,
    /// Why it ended on its own, if it did.
    pub failure: Option<Problem>,
    /// It ended because the device was unplugged.
    pub unplugged: bool,
}

/// What the session tells its client, in the order things happened.
pub enum SessionEvent {
    /// A device is being opened.
    Opening(String),
    Started(Box<Started>),
    OpenFailed(Problem),
    /// A stop came while the device was opening: nothing started.
    OpenCancelled(String),
    Stopped(Stopped),
    MonitorStarted(MonitorView),
    /// Playback ended; its last statistics and output name.
    MonitorStopped(MonitorStats, String),
    /// Why the monitor does not play (or a live change it refused).
    MonitorFailed(Problem),
    Outputs(Result<Vec<OutputInfo>, Problem>),
    RecordingStarted(RecordingProbe),
    /// What the last recording wrote, or why it failed or could not start.
    RecordingEnded(String),
    Ab(AbState),
    /// The picker's list changed: every entry, and what changed, for the screen.
    Devices(Vec<DeviceEntry>, Option<String>),
}

/// How a session is set up.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The simulated device's settings (signal, format and rate come from each request).
    pub sim: SimConfig,
    /// The sysfs folder watched for hotplug and how often it is rescanned; `None`: no
    /// watcher. Uevents are heard only on the real sysfs.
    pub hotplug: Option<(PathBuf, Duration)>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            sim: SimConfig::default(),
            hotplug: Some((SYSFS_USB_DEVICES.into(), Duration::from_secs(1))),
        }
    }
}

/// The client's end of a session thread. Dropping it stops the session (and what runs).
pub struct Session {
    commands: Option<Sender<(u64, SessionCommand)>>,
    events: Receiver<SessionEvent>,
    /// Stops sent so far: a start sent before the latest stop is stale.
    stops: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Session {
    /// Starts the session thread. `notify` is called after each event (a GUI asks for a
    /// repaint there, so an idle window wakes up to show it).
    pub fn spawn(cfg: SessionConfig, notify: impl Fn() + Send + 'static) -> std::io::Result<Session> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (ev_tx, events) = crossbeam_channel::unbounded();
        let stops = Arc::new(AtomicU64::new(0));
        let worker = Worker::new(cfg, rx, ev_tx, Arc::clone(&stops), Box::new(notify));
        let thread =
            std::thread::Builder::new().name("isoscope-session".into()).spawn(move || worker.run())?;
        Ok(Session { commands: Some(tx), events, stops, thread: Some(thread) })
    }

    /// Queues a command; never blocks. A stop also marks every start queued before it as
    /// stale, so it takes effect as soon as the session is free, however much is queued.
    pub fn send(&self, cmd: SessionCommand) {
        let epoch = if matches!(cmd, SessionCommand::Stop) {
            self.stops.fetch_add(1, SeqCst) + 1
        } else {
            self.stops.load(SeqCst)
        };
        if let Some(tx) = &self.commands {
            let _ = tx.send((epoch, cmd));
        }
    }

    /// The events so far (drain with `try_iter` once per frame).
    pub fn events(&self) -> &Receiver<SessionEvent> {
        &self.events
    }

    /// Stops everything and waits for the session thread (the device is released and a
    /// detached kernel driver reattached when this returns).
    pub fn shutdown(&mut self) {
        self.commands = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The running capture, on the session thread.
struct Live {
    capture: Capture,
    request: StartRequest,
    started: Instant,
}

/// The A/B run, on the session thread.
struct AbRun {
    state: AbState,
    seconds: f64,
    rounds: usize,
    start: StartRequest,
}

/// Everything the session thread owns.
struct Worker {
    cfg: SessionConfig,
    commands: Receiver<(u64, SessionCommand)>,
    events: Sender<SessionEvent>,
    stops: Arc<AtomicU64>,
    notify: Box<dyn Fn() + Send>,
    live: Option<Live>,
    /// The last start asked for (hotplug starts it again).
    wanted: Option<StartRequest>,
    unplugged: bool,
    listen: Option<ListenRequest>,
    monitor: Option<Monitor>,
    recording: Option<Recording>,
    ab: Option<AbRun>,
    watcher: Option<HotplugWatcher>,
    usb: Option<Vec<DeviceEntry>>,
}

impl Worker {
    fn new(
        cfg: SessionConfig,
        commands: Receiver<(u64, SessionCommand)>,
        events: Sender<SessionEvent>,
        stops: Arc<AtomicU64>,
        notify: Box<dyn Fn() + Send>,
    ) -> Worker {
        Worker {
            cfg,
            commands,
            events,
            stops,
            notify,
            live: None,
            wanted: None,
            unplugged: false,
            listen: None,
            monitor: None,
            recording: None,
            ab: None,
            watcher: None,
            usb: None,
        }
    }

    fn emit(&self, ev: SessionEvent) {
        let _ = self.events.send(ev);
        (self.notify)();
    }

    fn run(mut self) {
        if let Some((root, every)) = self.cfg.hotplug.clone() {
            let uevents = root.as_os_str() == SYSFS_USB_DEVICES;
            self.watcher = HotplugWatcher::start(root, every, uevents).ok();
        }
        self.emit(SessionEvent::Devices(devices::builtin_entries(), None));
        loop {
            match self.commands.recv_timeout(TICK) {
                Ok((epoch, cmd)) => {
                    self.apply(epoch, cmd);
                    // Whatever else is queued, in order, before looking at the capture.
                    while let Ok((epoch, cmd)) = self.commands.try_recv() {
                        self.apply(epoch, cmd);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.tick();
        }
        self.ab = None;
        self.stop_capture(None, false);
    }

    /// Whether a stop was sent after a command sent at `epoch`.
    fn stale(&self, epoch: u64) -> bool {
        self.stops.load(SeqCst) > epoch
    }

    fn apply(&mut self, epoch: u64, cmd: SessionCommand) {
        match cmd {
            SessionCommand::Start(req) => {
                if !self.stale(epoch) {
                    self.cancel_ab("cancelled: a capture was started");
                    let _ = self.start(req, epoch);
                }
            }
            SessionCommand::Stop => {
                self.cancel_ab("cancelled: the capture was stopped");
                self.stop_capture(None, false);
            }
            SessionCommand::Listen(Some(l)) => {
                self.listen = Some(l);
                self.start_monitor();
            }
            SessionCommand::Listen(None) => {
                self.listen = None;
                self.stop_monitor();
            }
            SessionCommand::SetVolume(v) => {
                if let Some(l) = &mut self.listen {
                    l.config.volume = v;
                }
                if let Some(m) = &self.monitor {
                    m.set_volume(v);
                }
            }
            SessionCommand::SetMuted(muted) => {
                if let Some(l) = &mut self.listen {
                    l.config.muted = muted;
                }
                if let Some(m) = &self.monitor {
                    m.set_muted(muted);
                }
            }
            SessionCommand::SetChannelMap(text) => {
                if let Some(l) = &mut self.listen {
                    l.channel_map = text.clone();
                }
                self.set_channel_map(text);
            }
            SessionCommand::ListOutputs => {
                let outputs = crate::audio::list_outputs().map_err(|e| Problem::of(&e));
                self.emit(SessionEvent::Outputs(outputs));
            }
            SessionCommand::RescanDevices => {
                let root =
                    self.cfg.hotplug.as_ref().map_or(PathBuf::from(SYSFS_USB_DEVICES), |(r, _)| r.clone());
                let list = crate::usb::discovery::list_devices(&root).unwrap_or_default();
                self.emit(SessionEvent::Devices(devices::picker_entries(&devices::usb_entries(&list)), None));
            }
            SessionCommand::Record(Some(req)) => self.start_recording(&req),
            SessionCommand::Record(None) => self.stop_recording(),
            SessionCommand::StartAb { start, seconds, rounds } => {
                if self.stale(epoch) {
                    return;
                }
                let mut run = AbRun { state: AbState::begin(), seconds: seconds.max(0.5), rounds, start };
                let first = StartRequest { mode: ModeRequest::ZeroCopy, ..run.start.clone() };
                if let Err(p) = self.start(first, epoch) {
                    run.state.fail(p.message);
                }
                self.emit(SessionEvent::Ab(run.state.clone()));
                if run.state.running {
                    self.ab = Some(run);
                }
            }
            SessionCommand::CancelAb => {
                if let Some(run) = self.ab.take() {
                    let mut state = run.state;
                    state.running = false;
                    state.phase = None;
                    self.emit(SessionEvent::Ab(state));
                    let _ = self.start(run.start, epoch);
                }
            }
        }
    }

    /// Ends an A/B run that a user's start or stop overrode.
    fn cancel_ab(&mut self, why: &str) {
        if let Some(mut run) = self.ab.take() {
            run.state.fail(why.to_string());
            self.emit(SessionEvent::Ab(run.state));
        }
    }

    /// Opens the device and starts capturing (after stopping what runs).
    fn start(&mut self, req: StartRequest, epoch: u64) -> Result<(), Problem> {
        self.stop_capture(None, false);
        self.wanted = Some(req.clone());
        self.emit(SessionEvent::Opening(req.device.clone()));
        let cancelled = || self.stale(epoch);
        let opened =
            match crate::source::open_cancellable(&req.device, &req.stream, &self.cfg.sim, &cancelled) {
                Ok(o) => o,
                Err(crate::source::SourceError::Cancelled(device)) => {
                    self.emit(SessionEvent::OpenCancelled(device));
                    return Err(Problem { message: "stopped while opening".into(), fix: None });
                }
                Err(e) => {
                    let p = Problem::of(&e);
                    self.emit(SessionEvent::OpenFailed(p.clone()));
                    return Err(p);
                }
            };
        if self.stale(epoch) {
            // A stop came as the device opened: let it go unstarted.
            self.emit(SessionEvent::OpenCancelled(req.device));
            return Err(Problem { message: "stopped while opening".into(), fix: None });
        }
        let crate::source::Opened { source, fallback } = opened;
        let summary = source.summary();
        let cfg =
            CaptureConfig { mode: req.mode, app_cap_bytes: req.app_cap_bytes, ..CaptureConfig::default() };
        // The frames ring: two seconds, so a slow UI frame or two loses nothing.
        let f = source.stream().format;
        let ring_len = (f.rate as usize * usize::from(f.channels) * 2).max(1 << 16);
        let (prod, frames) = HeapRb::<f32>::new(ring_len).split();
        match source.start(&cfg, vec![Sink::Frames(prod)]) {
            Ok(capture) => {
                let probe = CaptureProbe {
                    counters: Arc::clone(capture.counters()),
                    slots: capture.slot_states().clone(),
                    raw: capture.raw_tap().clone(),
                };
                let info = capture.info().clone();
                self.unplugged = false;
                self.live = Some(Live { capture, request: req.clone(), started: Instant::now() });
                self.emit(SessionEvent::Started(Box::new(Started {
                    info,
                    summary,
                    note: fallback,
                    frames,
                    probe,
                    request: req,
                })));
                if self.listen.is_some() {
                    self.start_monitor();
                }
                Ok(())
            }
            Err(e) => {
                let p = Problem::of(&e);
                self.emit(SessionEvent::OpenFailed(p.clone()));
                Err(p)
            }
        }
    }

    /// Stops the capture, then the recording (which writes what is left) and playback.
    /// `failure` is why it ended on its own; returns the final stats and path.
    fn stop_capture(
        &mut self,
        failure: Option<CaptureError>,
        unplugged: bool,
    ) -> Option<(StatsSnapshot, crate::dma::TransferPath)> {
        let live = self.live.take()?;
        let path = live.capture.info().path;
        let (stats, late) = live.capture.stop();
        let failure = failure.or(late).map(|e| Problem::of(&e));
        self.emit(SessionEvent::Stopped(Stopped { stats: stats.clone(), failure, unplugged }));
        self.stop_recording();
        self.stop_monitor();
        Some((stats, path))
    }

    /// Starts (or restarts) the monitor on the running capture, as [`Worker::listen`] says.
    fn start_monitor(&mut self) {
        self.stop_monitor();
        let (Some(live), Some(listen)) = (&self.live, &self.listen) else { return };
        let format = live.capture.info().stream.format;
        // A saved map that does not fit this device falls back to the default.
        let channel_map =
            listen.channel_map.as_deref().and_then(|m| ChannelMap::parse(m, format.channels).ok());
        let cfg = MonitorConfig {
            latency_ms: listen.config.latency_ms.clamp(5.0, 500.0),
            channel_map,
            ..listen.config.clone()
        };
        let (prod, cons) = Monitor::input_ring(format);
        let started = Monitor::start(cons, format, &cfg)
            .map_err(|e| Problem::of(&e))
            .and_then(|m| live.capture.attach(Sink::Frames(prod)).map(|()| m).map_err(|e| Problem::of(&e)));
        match started {
            Ok(m) => {
                let view =
                    MonitorView { probe: m.probe(), name: monitor_name(m.info()), info: m.info().clone() };
                self.monitor = Some(m);
                self.emit(SessionEvent::MonitorStarted(view));
            }
            Err(e) => self.emit(SessionEvent::MonitorFailed(e)),
        }
    }

    fn stop_monitor(&mut self) {
        if let Some(m) = self.monitor.take() {
            let name = monitor_name(m.info());
            self.emit(SessionEvent::MonitorStopped(m.stop(), name));
        }
    }

    fn set_channel_map(&mut self, text: Option<String>) {
        let (Some(m), Some(live)) = (&self.monitor, &self.live) else { return };
        let channels = live.capture.info().stream.format.channels;
        let map = match &text {
            Some(t) => ChannelMap::parse(t, channels),
            None => Ok(ChannelMap::default_for(channels, m.info().output_channels)),
        };
        if let Err(e) = map.map_err(crate::audio::MonitorError::from).and_then(|map| m.set_channel_map(map)) {
            self.emit(SessionEvent::MonitorFailed(Problem::of(&e)));
        }
    }

    /// Starts recording the running capture to a new WAV file in `req.dir`.
    fn start_recording(&mut self, req: &RecordRequest) {
        self.stop_recording();
        let Some(live) = &self.live else {
            self.emit(SessionEvent::RecordingEnded("Start the capture first, then record.".into()));
            return;
        };
        let format = live.capture.info().stream.format;
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let path = req.dir.join(format!("isoscope-{millis}.wav"));
        // Two seconds of slack for the disk.
        let (prod, cons) = Recording::ring(format, 2.0);
        let started = Recording::start(cons, &path, format, req.samples)
            .map_err(|e| e.to_string())
            .and_then(|rec| live.capture.attach(Sink::Bytes(prod)).map(|()| rec).map_err(|e| e.to_string()));
        match started {
            Ok(rec) => {
                self.emit(SessionEvent::RecordingStarted(rec.probe()));
                self.recording = Some(rec);
            }
            Err(e) => self.emit(SessionEvent::RecordingEnded(e)),
        }
    }

    /// Stops the recording: everything already captured is written, then the file closed.
    fn stop_recording(&mut self) {
        if let Some(rec) = self.recording.take() {
            let said = match rec.stop() {
                Ok(s) => format!("saved {} ({} frames, {:.1} s)", s.path.display(), s.frames, s.seconds),
                Err(e) => e.to_string(),
            };
            self.emit(SessionEvent::RecordingEnded(said));
        }
    }

    /// Between commands: a capture that ended by itself, a recording whose writer ended
    /// (a write error), the A/B clock, hotplug.
    fn tick(&mut self) {
        let failed = self.live.as_ref().and_then(|l| match l.capture.events().try_recv() {
            Ok(Event::Failed(e)) => Some(e),
            _ => None,
        });
        if let Some(e) = failed {
            let unplugged = matches!(e, CaptureError::Disconnected { .. });
            let why = e.to_string();
            self.stop_capture(Some(e), unplugged);
            self.unplugged = unplugged;
            if let Some(mut run) = self.ab.take() {
                run.state.fail(why);
                self.emit(SessionEvent::Ab(run.state));
            }
        }
        if self.recording.as_ref().is_some_and(Recording::is_finished) {
            self.stop_recording();
        }
        self.ab_tick();
        self.hotplug();
    }

    fn ab_tick(&mut self) {
        let Some(run) = &self.ab else { return };
        let Some(live) = &self.live else { return };
        if live.started.elapsed().as_secs_f64() < run.seconds {
            return;
        }
        let Some(mut run) = self.ab.take() else { return };
        // The final figures: the engine publishes its clocks once more when it stops.
        let Some((stats, path)) = self.stop_capture(None, false) else { return };
        let epoch = self.stops.load(SeqCst);
        match run.state.advance(path, &stats, run.rounds) {
            Some(mode) => {
                if let Err(p) = self.start(StartRequest { mode, ..run.start.clone() }, epoch) {
                    run.state.fail(p.message);
                }
                self.emit(SessionEvent::Ab(run.state.clone()));
                if run.state.running {
                    self.ab = Some(run);
                }
            }
            None => {
                self.emit(SessionEvent::Ab(run.state.clone()));
                let _ = self.start(run.start, epoch);
            }
        }
    }

    /// A new USB list: said, and acted on (see [`devices::hotplug_action`]).
    fn hotplug(&mut self) {
        let Some(list) = self.watcher.as_ref().and_then(HotplugWatcher::poll) else { return };
        let new = devices::usb_entries(&list);
        let entries = devices::picker_entries(&new);
        let (change, action) = match (&self.usb, &self.wanted) {
            (Some(old), wanted) => {
                let st = CaptureState {
                    device: wanted.as_ref().map_or("", |w| w.device.as_str()),
                    running: self.live.is_some(),
                    simulated: self.live.as_ref().is_some_and(|l| l.capture.info().device.simulated),
                    unplugged: self.unplugged,
                };
                (devices::describe_changes(old, &new), devices::hotplug_action(old, &new, st))
            }
            (None, _) => (None, None),
        };
        self.usb = Some(new);
        self.emit(SessionEvent::Devices(entries, change));
        if let (Some(HotplugAction::Restart | HotplugAction::Start), None) = (action, &self.ab) {
            if let Some(req) = self.live.as_ref().map(|l| l.request.clone()).or(self.wanted.clone()) {
                let epoch = self.stops.load(SeqCst);
                let _ = self.start(req, epoch);
            }
        }
    }
}

/// The monitor's output as the panel names it.
pub fn monitor_name(i: &MonitorInfo) -> String {
    format!("{}: {} at {} Hz", i.host, i.output_description, i.output_rate)
}

#[cfg(test)]
mod tests;
