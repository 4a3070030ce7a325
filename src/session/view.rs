//! The client's picture of the session: built from its events, read by the UI every frame
//! (live figures come straight from the probes, lock-free). No egui here either, so the
//! whole state machine is tested without a window.

use std::time::Instant;

use ringbuf::HeapCons;

use super::ab::AbState;
use super::devices::{builtin_entries, DeviceEntry};
use super::{CaptureProbe, Problem, SessionEvent, StartRequest};
use crate::audio::{MonitorInfo, MonitorProbe, MonitorStats, OutputInfo};
use crate::capture::{CaptureInfo, RawSnapshot, StatsSnapshot};
use crate::record::RecordingProbe;

/// The running capture as the client sees it.
pub struct LiveView {
    pub info: CaptureInfo,
    pub summary: String,
    pub probe: CaptureProbe,
    pub request: StartRequest,
    pub started: Instant,
}

/// The running monitor as the client sees it.
#[derive(Clone, Debug)]
pub struct MonitorView {
    pub probe: MonitorProbe,
    /// "host: output at rate Hz".
    pub name: String,
    pub info: MonitorInfo,
}

/// Everything the UI draws about the session.
pub struct SessionView {
    pub live: Option<LiveView>,
    /// The newest capture's frames; kept after it stops until the next starts, so the tail
    /// is drained too.
    pub frames: Option<HeapCons<f32>>,
    /// This frame's counters (the running capture's, else the last one's final ones).
    pub stats: Option<StatsSnapshot>,
    /// The device being opened.
    pub opening: Option<String>,
    pub error: Option<Problem>,
    /// Why the device is the simulated one.
    pub note: Option<String>,
    /// The last capture ended because the device was unplugged.
    pub unplugged: bool,
    pub monitor: Option<MonitorView>,
    /// The last monitor's final statistics and output, shown frozen after Listen is off.
    pub last_monitor: Option<(MonitorStats, String)>,
    /// Why monitoring is not playing (no sound card, busy, ...), with the fix in the text.
    pub monitor_error: Option<Problem>,
    pub outputs: Vec<OutputInfo>,
    pub recording: Option<RecordingProbe>,
    /// What the last recording wrote, or why it failed.
    pub last_recording: Option<String>,
    pub ab: AbState,
    /// The picker's entries.
    pub devices: Vec<DeviceEntry>,
    /// The last hotplug change, for the screen.
    pub hotplug: Option<String>,
    /// The last raw URB copied for the compare tab.
    pub raw: Option<RawSnapshot>,
    /// Bytes per second, measured over half a second: (when, bytes then, rate).
    rate: (Instant, u64, f64),
}

impl Default for SessionView {
    fn default() -> Self {
        SessionView {
            live: None,
            frames: None,
            stats: None,
            opening: None,
            error: None,
            note: None,
            unplugged: false,
            monitor: None,
            last_monitor: None,
            monitor_error: None,
            outputs: Vec::new(),
            recording: None,
            last_recording: None,
            ab: AbState::default(),
            devices: builtin_entries(),
            hotplug: None,
            raw: None,
            rate: (Instant::now(), 0, 0.0),
        }
    }
}

/// What applying an event changed that the client must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Nothing,
    /// A capture started: its format may differ from the last one's.
    Started,
}

impl SessionView {
    pub fn running(&self) -> bool {
        self.live.is_some()
    }

    /// Whether the running capture is the simulated device.
    pub fn simulated(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.info.device.simulated)
    }

    /// Bytes per second the capture delivers (0 when stopped).
    pub fn bytes_per_s(&self) -> f64 {
        if self.running() {
            self.rate.2
        } else {
            0.0
        }
    }

    pub fn apply(&mut self, ev: SessionEvent) -> Applied {
        match ev {
            SessionEvent::Opening(device) => self.opening = Some(device),
            SessionEvent::Started(s) => {
                let s = *s;
                self.opening = None;
                self.error = None;
                self.unplugged = false;
                self.note = s.note;
                // A URB of the last stream has another layout: not shown against this one.
                self.raw = None;
                self.frames = Some(s.frames);
                self.stats = Some(s.probe.counters.snapshot());
                self.rate = (Instant::now(), 0, 0.0);
                self.live = Some(LiveView {
                    info: s.info,
                    summary: s.summary,
                    probe: s.probe,
                    request: s.request,
                    started: Instant::now(),
                });
                return Applied::Started;
            }
            SessionEvent::OpenCancelled(_) => self.opening = None,
            SessionEvent::OpenFailed(p) => {
                self.opening = None;
                self.error = Some(p);
            }
            SessionEvent::Stopped(st) => {
                self.live = None;
                self.stats = Some(st.stats);
                self.unplugged = st.unplugged;
                if let Some(p) = st.failure {
                    self.error = Some(p);
                }
            }
            SessionEvent::MonitorStarted(m) => {
                self.monitor = Some(m);
                self.monitor_error = None;
            }
            SessionEvent::MonitorStopped(stats, name) => {
                self.monitor = None;
                self.last_monitor = Some((stats, name));
            }
            SessionEvent::MonitorFailed(e) => self.monitor_error = Some(e),
            SessionEvent::Outputs(Ok(o)) => self.outputs = o,
            SessionEvent::Outputs(Err(e)) => self.monitor_error = Some(e),
            SessionEvent::RecordingStarted(r) => self.recording = Some(r),
            SessionEvent::RecordingEnded(said) => {
                self.recording = None;
                self.last_recording = Some(said);
            }
            SessionEvent::Ab(ab) => self.ab = ab,
            SessionEvent::Devices(entries, change) => {
                self.devices = entries;
                if change.is_some() {
                    self.hotplug = change;
                }
            }
        }
        Applied::Nothing
    }

    /// Once per frame: the counters, the byte rate, a raw URB that arrived.
    pub fn refresh(&mut self) {
        let Some(live) = &self.live else { return };
        let st = live.probe.counters.snapshot();
        let (t, bytes, _) = self.rate;
        let dt = t.elapsed().as_secs_f64();
        if dt >= 0.5 {
            self.rate = (Instant::now(), st.bytes, st.bytes.saturating_sub(bytes) as f64 / dt);
        }
        self.stats = Some(st);
        if let Some(raw) = live.probe.raw.try_take() {
            if let Some(old) = self.raw.replace(raw) {
                live.probe.raw.recycle(old);
            }
        }
    }

    /// Asks the running capture for a copy of its next URB.
    pub fn request_raw(&self) {
        if let Some(l) = &self.live {
            l.probe.raw.request();
        }
    }

    /// The running monitor's statistics (or, frozen, the last one's), its output name, and
    /// whether it still plays. Read once per frame: the name is borrowed, not copied.
    pub fn monitor_stats(&self) -> Option<(MonitorStats, &str, bool)> {
        match &self.monitor {
            Some(m) => Some((m.probe.stats(), &m.name, true)),
            None => self.last_monitor.as_ref().map(|(st, name)| (st.clone(), name.as_str(), false)),
        }
    }
}
