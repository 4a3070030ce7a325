//! The GUI's panels, one file each, and what they share: the commands they return (applied
//! by the app at the end of the frame) and the per-channel history they draw from.

pub mod audio;
pub mod compare;
pub mod devices;
pub mod pool;
pub mod scope;
pub mod spectrum;
pub mod status;

use eframe::egui;
use ringbuf::traits::Consumer;
use ringbuf::HeapCons;

use crate::dsp::decimate::MinMaxPyramid;

/// What a panel asks the app to do; applied at the end of the frame, never mid-draw.
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
    /// Read the list of audio outputs (when the menu opens, not per frame).
    ListOutputs,
    /// Start or stop recording to WAV.
    ToggleRecord,
    /// Save the frames the scope shows as CSV.
    ExportCsv,
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

impl History {
    /// `seconds` of `channels` at `rate`.
    pub fn new(rate: u32, channels: usize, seconds: f64) -> History {
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

    /// Bytes the history holds now.
    pub fn heap_bytes(&self) -> usize {
        self.channels.iter().map(MinMaxPyramid::heap_bytes).sum()
    }
}
