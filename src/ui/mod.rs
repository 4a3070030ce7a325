//! The GUI's panels, one file each, and what they share: the commands they return (applied
//! by the app at the end of the frame) and the per-channel history they draw from.

pub mod audio;
pub mod compare;
pub mod devices;
pub mod notices;
pub mod pool;
pub mod scope;
pub mod settings;
pub mod spectrum;
pub mod status;
pub mod window;

use eframe::egui;
use ringbuf::traits::Consumer;
use ringbuf::HeapCons;

use crate::dsp::decimate::MinMaxPyramid;
use crate::session::SessionView;

pub use settings::{Settings, Tab};
use spectrum::Analysis;

/// What a panel asks for; applied by the app at the end of the frame, never mid-draw.
/// Most become [`crate::session::SessionCommand`]s; the rest are the window's own
/// (screenshots, pause, CSV, the bug report).
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub enum Command {
    Start,
    Stop,
    Restart,
    Single,
    /// The trigger fired while single was armed.
    SingleFired,
    TogglePause,
    Screenshot,
    CopyBugReport,
    StartAb,
    CancelAb,
    RawSnapshot,
    /// Monitoring on or off.
    ToggleMonitor,
    /// The output or the target latency changed: start the monitor again.
    RestartMonitor,
    /// Live monitor changes (no restart).
    SetVolume(f32),
    SetMuted(bool),
    SetChannelMap(Option<String>),
    /// Read the list of audio outputs (when the menu opens, not per frame).
    ListOutputs,
    /// Read the device list again (hotplug follows changes by itself).
    RescanDevices,
    /// Start or stop recording to WAV.
    ToggleRecord,
    /// Save the frames the scope shows as CSV.
    ExportCsv,
    /// Forget the spectrum's peak hold.
    ResetPeaks,
    /// Hide the error banner.
    DismissError,
}

/// What every panel reads, and where its commands go.
pub struct PanelCx<'a> {
    pub session: &'a SessionView,
    pub history: &'a History,
    pub analysis: &'a Analysis,
    /// Single capture is armed (the scope triggers once, then stops).
    pub single_armed: bool,
    pub commands: &'a mut Vec<Command>,
}

impl PanelCx<'_> {
    pub fn send(&mut self, cmd: Command) {
        self.commands.push(cmd);
    }
}

/// One shape for every panel: draw into `ui`, edit the panel's part of `settings` in place,
/// ask for anything else with a command.
pub trait Panel {
    fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings, cx: &mut PanelCx<'_>);
}

/// The colour of channel `c` (readable on dark and light backgrounds).
pub fn channel_color(c: usize) -> egui::Color32 {
    const C: [egui::Color32; 8] = [
        egui::Color32::from_rgb(240, 190, 20),
        egui::Color32::from_rgb(30, 170, 230),
        egui::Color32::from_rgb(220, 60, 150),
        egui::Color32::from_rgb(60, 190, 90),
        egui::Color32::from_rgb(240, 120, 40),
        egui::Color32::from_rgb(150, 110, 240),
        egui::Color32::from_rgb(120, 200, 200),
        egui::Color32::from_rgb(200, 200, 120),
    ];
    C[c % C.len()]
}

/// Every channel's bounded history, filled from the capture's frames ring.
pub struct History {
    pub rate: u32,
    pub channels: Vec<MinMaxPyramid>,
    drain: Vec<f32>,
    lane: Vec<f32>,
}

/// Heap bytes one sample costs in the history: the f32 itself and its share of the min/max
/// levels above it (8 bytes per 16 samples, per 256, ...).
pub const HISTORY_BYTES_PER_SAMPLE: f64 = 4.0 + 8.0 / 15.0;

impl History {
    /// `seconds` of `channels` at `rate`.
    pub fn new(rate: u32, channels: usize, seconds: f64) -> History {
        History::within(rate, channels, seconds, u64::MAX)
    }

    /// `seconds` of `channels` at `rate`, or fewer so that it stays within `budget_bytes`
    /// (10 minutes of 192 kHz stereo is 1 GiB; 8 channels would be 4).
    pub fn within(rate: u32, channels: usize, seconds: f64, budget_bytes: u64) -> History {
        let per_second = f64::from(rate) * channels.max(1) as f64 * HISTORY_BYTES_PER_SAMPLE;
        let seconds = seconds.min(budget_bytes as f64 / per_second);
        let cap = (f64::from(rate) * seconds.clamp(1.0, 3600.0)) as usize;
        History {
            rate,
            channels: (0..channels).map(|_| MinMaxPyramid::new(cap)).collect(),
            drain: vec![0.0; (rate as usize / 10).max(1024) * channels.max(1)],
            lane: Vec::with_capacity((rate as usize / 10).max(1024)),
        }
    }

    /// An empty history (no capture yet).
    pub fn empty() -> History {
        History::new(48_000, 0, 1.0)
    }

    /// Frames held per channel (absolute index of the next one).
    pub fn total(&self) -> usize {
        self.channels.first().map_or(0, MinMaxPyramid::total)
    }

    /// Drains the ring of interleaved frames into the pyramids, in slices. Returns frames.
    pub fn drain_from(&mut self, ring: &mut HeapCons<f32>) -> usize {
        let n = self.channels.len();
        if n == 0 {
            return 0;
        }
        let mut frames = 0;
        loop {
            let got = ring.pop_slice(&mut self.drain) / n * n;
            if got == 0 {
                break;
            }
            self.push_interleaved_inner(got);
            frames += got / n;
        }
        frames
    }

    /// Appends interleaved frames (tests, benchmarks).
    pub fn push_interleaved(&mut self, frames: &[f32]) {
        let n = self.channels.len().max(1);
        for chunk in frames.chunks(self.drain.len() / n * n) {
            self.drain[..chunk.len()].copy_from_slice(chunk);
            self.push_interleaved_inner(chunk.len() / n * n);
        }
    }

    fn push_interleaved_inner(&mut self, len: usize) {
        let n = self.channels.len();
        for (c, pyr) in self.channels.iter_mut().enumerate() {
            self.lane.clear();
            self.lane.extend(self.drain[..len].iter().skip(c).step_by(n));
            pyr.push_slice(&self.lane);
        }
    }

    /// Seconds of signal it holds now.
    pub fn held_seconds(&self) -> f64 {
        self.channels.first().map_or(0.0, |p| p.len() as f64 / f64::from(self.rate.max(1)))
    }

    /// Seconds of signal it keeps at most.
    pub fn seconds(&self) -> f64 {
        self.channels.first().map_or(0.0, |p| p.capacity() as f64 / f64::from(self.rate.max(1)))
    }

    /// Bytes the history holds now.
    pub fn heap_bytes(&self) -> usize {
        self.channels.iter().map(MinMaxPyramid::heap_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_stays_within_its_memory_budget() {
        // 10 minutes of 192 kHz stereo fit 1 GiB; 8 channels get a quarter of the time.
        let h = History::within(192_000, 2, 600.0, 1 << 30);
        assert!((h.seconds() - 600.0).abs() < 1.0, "{}", h.seconds());
        assert!(h.heap_bytes() <= 1 << 30, "{}", h.heap_bytes());
        let h = History::within(192_000, 8, 600.0, 1 << 30);
        assert!(h.seconds() < 160.0 && h.seconds() > 140.0, "{}", h.seconds());
        assert!(h.heap_bytes() <= 1 << 30, "{}", h.heap_bytes());
    }
}
