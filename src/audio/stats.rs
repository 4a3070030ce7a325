//! Monitor statistics: atomics the audio callback and the resampling worker bump without
//! allocating or locking (a fixed-size latency histogram among them), and the serde
//! snapshot the CLI and the UI read.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

/// Width of one latency histogram bin, ns (0.1 ms).
pub const LATENCY_BIN_NS: u64 = 100_000;
/// Bins: 0 to 2 s (a sound server's buffer can hold over a second); anything longer lands in
/// the last bin.
pub const LATENCY_BINS: usize = 20_000;
/// The end of the histogram, ms: a quantile of exactly this much means "this or more".
pub const LATENCY_RANGE_MS: f64 = (LATENCY_BINS as u64 * LATENCY_BIN_NS) as f64 / 1e6;

/// A fixed-size histogram of latencies, safe to update from the audio callback.
#[derive(Debug)]
pub struct LatencyHistogram {
    bins: Box<[AtomicU32]>,
    count: AtomicU64,
    /// The most recent sample, ns.
    last_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            bins: (0..LATENCY_BINS).map(|_| AtomicU32::new(0)).collect(),
            count: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    /// Counts one latency. No allocation, no lock: two relaxed atomic adds and two stores.
    pub fn record(&self, ns: u64) {
        let bin = ((ns / LATENCY_BIN_NS) as usize).min(LATENCY_BINS - 1);
        self.bins[bin].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.last_ns.store(ns, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
    }

    /// Latencies recorded so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The `q` quantile (0..=1) in ms, at the middle of its bin, or [`LATENCY_RANGE_MS`] when
    /// it lies in the overflow bin; None before any sample.
    /// No allocation: the UI reads two quantiles every frame.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.bins.iter().map(|b| u64::from(b.load(Relaxed))).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, b) in self.bins.iter().enumerate() {
            seen += u64::from(b.load(Relaxed));
            if seen >= rank {
                if i == LATENCY_BINS - 1 {
                    return Some(LATENCY_RANGE_MS);
                }
                return Some((i as f64 + 0.5) * LATENCY_BIN_NS as f64 / 1e6);
            }
        }
        None
    }

    /// Forgets every sample (e.g. after the user changed the target latency).
    pub fn reset(&self) {
        for b in self.bins.iter() {
            b.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
        self.max_ns.store(0, Relaxed);
    }

    /// The most recent sample, ns (0 before any).
    pub fn last_ns(&self) -> u64 {
        self.last_ns.load(Relaxed)
    }

    fn last_ms(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.last_ns.load(Relaxed) as f64 / 1e6)
    }

    fn max_ms(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.max_ns.load(Relaxed) as f64 / 1e6)
    }
}

/// Counters shared by the audio callback, the worker and readers. Each is a running total
/// (or a latest value) with Relaxed ordering: readers want recent values, not a consistent cut.
#[derive(Debug, Default)]
pub struct MonitorCounters {
    /// Callbacks that found fewer frames than they needed after playback had started
    /// (the rest was filled with silence).
    pub underruns: AtomicU64,
    /// Frames of silence those underruns played.
    pub underrun_frames: AtomicU64,
    /// Times frames were lost because the output ring was full (frames dropped to put the
    /// latency back on target count under `resyncs`).
    pub overruns: AtomicU64,
    pub overrun_frames: AtomicU64,
    /// Device frames taken from the capture ring.
    pub frames_in: AtomicU64,
    /// Output frames the callback played from the ring (silence excluded).
    pub frames_played: AtomicU64,
    /// Output callbacks.
    pub callbacks: AtomicU64,
    /// Errors the output stream reported (xruns of the sound card itself, ...).
    pub output_errors: AtomicU64,
    /// The output device went away; the monitor plays no more (capture goes on).
    pub output_lost: AtomicBool,
    /// The output's own delay ahead of the callbacks (what ALSA or the sound server
    /// reports), averaged by the worker over about a second, ns.
    pub device_delay_ns: AtomicU64,
    /// Count and sum of the delays the callbacks saw since the worker last read them, packed
    /// in one word (see the monitor's `DelaySum`).
    pub delays: AtomicU64,
    /// Frames the output asked for, silence included (its clock, as the monitor sees it).
    pub frames_asked: AtomicU64,
    /// The largest callback since the worker last read it, frames.
    pub callback_frames_max: AtomicU64,
    /// Times the worker put the latency back on target at once (dropped device frames, or
    /// added silence) because it was too far off for the drift loop.
    pub resyncs: AtomicU64,
    /// The latency the monitor holds, ns: the target, or the lowest the output allows when
    /// its own delay and bursts exceed the target.
    pub holding_ns: AtomicU64,
    /// The output's largest burst (callback) lately, ns.
    pub burst_ns: AtomicU64,
    /// Over the last 20 s (f64 bits): the resampling ratio's mean, and the output's clock
    /// against the host's, ppm (the frames it asked for per second of host time).
    pub ratio_mean_bits: AtomicU64,
    pub output_clock_ppm_bits: AtomicU64,
    /// The output stopped behaving like a clock ([`OutputFault`] code, 0: none), and the
    /// fault's figure (f64 bits: how many times real time, or how many seconds silent).
    pub fault_code: AtomicU8,
    pub fault_value_bits: AtomicU64,
    /// The resampling ratio in use (output/input frames), f64 bits.
    pub ratio_bits: AtomicU64,
    /// The drift correction in use, ppm, f64 bits.
    pub correction_ppm_bits: AtomicU64,
    /// Smoothed audio buffered in the output ring, ns.
    pub buffered_ns: AtomicU64,
    /// CPU time of the worker thread (resampling, channel mapping), ns.
    pub worker_cpu_ns: AtomicU64,
    /// Wall time since the monitor started, ns.
    pub elapsed_ns: AtomicU64,
    /// Packet-completion-to-playback latency (see [`crate::audio::monitor`]).
    pub latency: LatencyHistogram,
}

impl MonitorCounters {
    /// The output's fault, if it stopped behaving like a clock.
    pub fn fault(&self) -> Option<OutputFault> {
        OutputFault::from_code(
            self.fault_code.load(Relaxed),
            f64::from_bits(self.fault_value_bits.load(Relaxed)),
        )
    }

    /// A copy of every counter, with the latency quantiles worked out.
    pub fn snapshot(&self) -> MonitorStats {
        let elapsed_ns = self.elapsed_ns.load(Relaxed);
        let cpu = self.worker_cpu_ns.load(Relaxed);
        MonitorStats {
            latency_ms_median: self.latency.quantile_ms(0.5),
            latency_ms_p99: self.latency.quantile_ms(0.99),
            latency_ms_max: self.latency.max_ms(),
            latency_ms_last: self.latency.last_ms(),
            latency_samples: self.latency.count(),
            underruns: self.underruns.load(Relaxed),
            underrun_frames: self.underrun_frames.load(Relaxed),
            overruns: self.overruns.load(Relaxed),
            overrun_frames: self.overrun_frames.load(Relaxed),
            frames_in: self.frames_in.load(Relaxed),
            frames_played: self.frames_played.load(Relaxed),
            callbacks: self.callbacks.load(Relaxed),
            output_errors: self.output_errors.load(Relaxed),
            output_lost: self.output_lost.load(Relaxed),
            device_delay_ms: self.device_delay_ns.load(Relaxed) as f64 / 1e6,
            frames_asked: self.frames_asked.load(Relaxed),
            resyncs: self.resyncs.load(Relaxed),
            holding_ms: self.holding_ns.load(Relaxed) as f64 / 1e6,
            burst_ms: self.burst_ns.load(Relaxed) as f64 / 1e6,
            ratio_mean: f64::from_bits(self.ratio_mean_bits.load(Relaxed)),
            output_clock_ppm: f64::from_bits(self.output_clock_ppm_bits.load(Relaxed)),
            output_fault: self.fault(),
            ratio: f64::from_bits(self.ratio_bits.load(Relaxed)),
            correction_ppm: f64::from_bits(self.correction_ppm_bits.load(Relaxed)),
            buffered_ms: self.buffered_ns.load(Relaxed) as f64 / 1e6,
            resampler_cpu_ns: cpu,
            resampler_cpu_percent: if elapsed_ns > 0 { cpu as f64 * 100.0 / elapsed_ns as f64 } else { 0.0 },
            elapsed_ns,
        }
    }
}

/// A point-in-time copy of [`MonitorCounters`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct MonitorStats {
    /// Median packet-completion-to-playback latency, ms (0.1 ms bins).
    pub latency_ms_median: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_max: Option<f64>,
    /// The latest measurement (for a live display).
    pub latency_ms_last: Option<f64>,
    pub latency_samples: u64,
    pub underruns: u64,
    pub underrun_frames: u64,
    pub overruns: u64,
    pub overrun_frames: u64,
    pub frames_in: u64,
    pub frames_played: u64,
    pub callbacks: u64,
    pub output_errors: u64,
    pub output_lost: bool,
    /// The output's own delay (card, or sound server and card), averaged, ms.
    pub device_delay_ms: f64,
    /// Frames the output asked for, silence included.
    pub frames_asked: u64,
    /// Times the latency was put back on target at once (see [`MonitorCounters::resyncs`]).
    pub resyncs: u64,
    /// The latency the monitor holds: the target, or the lowest the output allows, ms.
    pub holding_ms: f64,
    /// The output's largest callback lately (a sound server's quantum), ms.
    pub burst_ms: f64,
    /// The resampling ratio's mean over the last 20 s (0 before the first 20 s).
    pub ratio_mean: f64,
    /// The output's clock against the host's over the last 20 s, ppm, from the frames it
    /// asked for (less the change of its reported delay): a card's crystal is within about
    /// 100; a sound server's timer-driven null sink can be thousands slow. Exact where an
    /// output plays what it asks for (a card, PipeWire's native host); through the PulseAudio
    /// protocol it also holds what the server's buffer took in or gave back.
    pub output_clock_ppm: f64,
    /// Set when the output stopped behaving like a clock; the monitor then plays no more.
    pub output_fault: Option<OutputFault>,
    /// Output frames per device frame, drift correction included.
    pub ratio: f64,
    /// The drift correction, ppm.
    pub correction_ppm: f64,
    /// Smoothed audio waiting in the output ring, ms.
    pub buffered_ms: f64,
    /// CPU time of the resampling worker, ns, and as a share of one core.
    pub resampler_cpu_ns: u64,
    pub resampler_cpu_percent: f64,
    pub elapsed_ns: u64,
}

/// An output that does not behave like a sound card's clock. The monitor stops playing to
/// it; the capture goes on.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutputFault {
    /// It took audio `ratio` times faster than real time (an ALSA file or null PCM has no clock).
    TooFast { ratio: f64 },
    /// It took no audio for `seconds` (a suspended or stuck server, a card that stopped).
    Silent { seconds: f64 },
}

impl OutputFault {
    /// The code [`MonitorCounters::fault_code`] holds.
    pub fn code(&self) -> (u8, f64) {
        match *self {
            OutputFault::TooFast { ratio } => (1, ratio),
            OutputFault::Silent { seconds } => (2, seconds),
        }
    }

    fn from_code(code: u8, value: f64) -> Option<OutputFault> {
        match code {
            1 => Some(OutputFault::TooFast { ratio: value }),
            2 => Some(OutputFault::Silent { seconds: value }),
            _ => None,
        }
    }
}

impl std::fmt::Display for OutputFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            OutputFault::TooFast { ratio } => write!(
                f,
                "the output takes audio {ratio:.1}x faster than real time, so it has no sound card's \
                 clock behind it (an ALSA file or null PCM?); the monitor stopped playing to it. \
                 Capture and recording go on. Pick a real output, or have the host clock pace this one"
            ),
            OutputFault::Silent { seconds } => write!(
                f,
                "the output has taken no audio for {seconds:.1} s (a suspended or stuck sound server, \
                 or a card that stopped); the monitor stopped playing to it. Capture and recording go \
                 on. Listen again, or pick another output"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_histogram_and_overflow_lands_in_the_last_bin() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for i in 0..100u64 {
            h.record(10_000_000 + i * 100_000); // 10.0 .. 19.9 ms
        }
        assert_eq!(h.quantile_ms(0.5), Some(14.95));
        assert_eq!(h.quantile_ms(0.99), Some(19.85));
        h.record(10_000_000_000);
        assert_eq!(h.quantile_ms(1.0), Some(LATENCY_RANGE_MS), "the overflow bin says 'this or more'");
        assert_eq!(LATENCY_RANGE_MS, 2000.0);
        assert_eq!(h.max_ms(), Some(10_000.0));
        h.reset();
        assert_eq!(h.count(), 0);
    }
}
