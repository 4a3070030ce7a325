//! Monitor statistics: atomics the audio callback and the resampling worker bump without
//! allocating or locking (a fixed-size latency histogram among them), and the serde
//! snapshot the CLI and the UI read.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

/// Width of one latency histogram bin, ns (0.1 ms).
pub const LATENCY_BIN_NS: u64 = 100_000;
/// Bins: 0 to 500 ms; anything longer lands in the last bin.
pub const LATENCY_BINS: usize = 5000;

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

    /// The `q` quantile (0..=1) in ms, at the middle of its bin; None before any sample.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.bins.iter().map(|b| u64::from(b.load(Relaxed))).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
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
    /// Times frames were dropped: the output ring was full, or the latency was far over
    /// the target after a stall and the worker dropped device frames to resync.
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
    /// The sound card's own delay ahead of the latest callback (what ALSA reports), ns.
    pub device_delay_ns: AtomicU64,
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
    /// The sound card's delay ahead of the latest callback, ms.
    pub device_delay_ms: f64,
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
        assert_eq!(h.quantile_ms(1.0), Some(499.95));
        assert_eq!(h.max_ms(), Some(10_000.0));
        h.reset();
        assert_eq!(h.count(), 0);
    }
}
