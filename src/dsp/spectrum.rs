//! Magnitude spectrum of one channel: a window, a real FFT (realfft), dBFS with the
//! window's coherent gain corrected (a full-scale sine on a bin reads 0 dBFS with every
//! window), and peak hold. All buffers are allocated when the size changes, never per call.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};

/// The analysis window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Window {
    /// Good frequency resolution, moderate leakage (-31 dB side lobes).
    #[default]
    Hann,
    /// Low leakage (-92 dB side lobes), wider peaks.
    BlackmanHarris,
    /// Accurate amplitude wherever the tone falls between bins (< 0.02 dB scalloping).
    FlatTop,
    /// No window: best resolution, worst leakage.
    Rectangular,
}

impl Window {
    pub const ALL: [Window; 4] = [Window::Hann, Window::BlackmanHarris, Window::FlatTop, Window::Rectangular];

    pub fn name(self) -> &'static str {
        match self {
            Window::Hann => "Hann",
            Window::BlackmanHarris => "Blackman-Harris",
            Window::FlatTop => "Flat top",
            Window::Rectangular => "Rectangular",
        }
    }

    /// Cosine-sum coefficients a0, a1, ... (w[n] = sum (-1)^k a_k cos(2 pi k n / N)).
    fn coefficients(self) -> &'static [f64] {
        match self {
            Window::Hann => &[0.5, 0.5],
            Window::BlackmanHarris => &[0.35875, 0.48829, 0.14128, 0.01168],
            Window::FlatTop => &[0.215_578_95, 0.416_631_58, 0.277_263_158, 0.083_578_947, 0.006_947_368],
            Window::Rectangular => &[1.0],
        }
    }

    /// Fills `out` with the periodic window of its length.
    pub fn fill(self, out: &mut [f32]) {
        let n = out.len() as f64;
        for (i, w) in out.iter_mut().enumerate() {
            let x = std::f64::consts::TAU * i as f64 / n;
            let v: f64 = self
                .coefficients()
                .iter()
                .enumerate()
                .map(|(k, &a)| if k % 2 == 0 { a } else { -a } * (k as f64 * x).cos())
                .sum();
            *w = v as f32;
        }
    }
}

/// The floor of every dB figure (silence is not -inf).
pub const DB_FLOOR: f32 = -200.0;

/// 20 log10(x), floored at [`DB_FLOOR`].
pub fn amplitude_db(x: f32) -> f32 {
    if x > 0.0 {
        (20.0 * x.log10()).max(DB_FLOOR)
    } else {
        DB_FLOOR
    }
}

/// A spectrum analyser for blocks of `size` samples.
pub struct Spectrum {
    size: usize,
    window_kind: Window,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    /// 1 / (sum of the window / 2): turns |X[k]| into the amplitude of a sine.
    scale: f32,
    input: Vec<f32>,
    output: Vec<Complex32>,
    scratch: Vec<Complex32>,
    db: Vec<f32>,
    peak: Vec<f32>,
}

impl std::fmt::Debug for Spectrum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spectrum").field("size", &self.size).field("window", &self.window_kind).finish()
    }
}

impl Spectrum {
    /// An analyser of `size` samples (at least 16; any size works, powers of two are fastest).
    pub fn new(size: usize, window: Window) -> Spectrum {
        let size = size.max(16);
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(size);
        let mut w = vec![0.0; size];
        window.fill(&mut w);
        let sum: f32 = w.iter().sum();
        let bins = size / 2 + 1;
        Spectrum {
            size,
            window_kind: window,
            input: fft.make_input_vec(),
            output: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            fft,
            window: w,
            scale: 2.0 / sum,
            db: vec![DB_FLOOR; bins],
            peak: vec![DB_FLOOR; bins],
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn window(&self) -> Window {
        self.window_kind
    }

    /// Bins: `size / 2 + 1`, from 0 Hz to Nyquist.
    pub fn bins(&self) -> usize {
        self.db.len()
    }

    /// The frequency of bin `k` at `rate`.
    pub fn bin_hz(&self, k: usize, rate: f64) -> f64 {
        k as f64 * rate / self.size as f64
    }

    /// Analyses the last `size` samples of `samples` (zero-padded at the front if fewer),
    /// and raises the peak hold where the new spectrum is higher.
    pub fn process(&mut self, samples: &[f32]) {
        let n = samples.len().min(self.size);
        let pad = self.size - n;
        self.input[..pad].fill(0.0);
        for ((dst, &x), &w) in
            self.input[pad..].iter_mut().zip(&samples[samples.len() - n..]).zip(&self.window[pad..])
        {
            *dst = if x.is_finite() { x * w } else { 0.0 };
        }
        if self.fft.process_with_scratch(&mut self.input, &mut self.output, &mut self.scratch).is_err() {
            return; // the buffers are made by the plan itself; cannot happen
        }
        let last = self.output.len() - 1;
        for (k, (c, (db, peak))) in self.output.iter().zip(self.db.iter_mut().zip(&mut self.peak)).enumerate()
        {
            // DC and Nyquist have no mirror image: half the scale.
            let s = if k == 0 || (k == last && self.size % 2 == 0) { self.scale / 2.0 } else { self.scale };
            *db = amplitude_db(c.norm() * s);
            *peak = peak.max(*db);
        }
    }

    /// The last spectrum in dBFS (0 dBFS: a full-scale sine).
    pub fn db(&self) -> &[f32] {
        &self.db
    }

    /// The highest value each bin reached since the last reset.
    pub fn peak_hold(&self) -> &[f32] {
        &self.peak
    }

    pub fn reset_peak(&mut self) {
        self.peak.fill(DB_FLOOR);
    }

    /// Lets the peak hold fall by `db` toward the current spectrum (a slow decay).
    pub fn decay_peak(&mut self, db: f32) {
        for (p, &d) in self.peak.iter_mut().zip(&self.db) {
            *p = (*p - db).max(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, rate: f64, hz: f64, amp: f32) -> Vec<f32> {
        (0..n).map(|i| amp * (std::f64::consts::TAU * hz * i as f64 / rate).sin() as f32).collect()
    }

    fn peak_bin(db: &[f32]) -> usize {
        db.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(k, _)| k)
    }

    #[test]
    fn a_full_scale_sine_on_a_bin_reads_0_dbfs_with_every_window() {
        let (n, rate) = (4096, 48_000.0);
        let hz = 100.0 * rate / n as f64; // bin 100
        for w in Window::ALL {
            let mut s = Spectrum::new(n, w);
            s.process(&tone(n, rate, hz, 1.0));
            assert_eq!(peak_bin(s.db()), 100, "{w:?}");
            assert!(s.db()[100].abs() < 0.01, "{w:?}: {} dBFS", s.db()[100]);
            s.process(&tone(n, rate, hz, 0.5));
            assert!((s.db()[100] + 6.02).abs() < 0.01, "{w:?}: half scale {} dBFS", s.db()[100]);
            assert!(s.peak_hold()[100].abs() < 0.01, "{w:?}: the peak hold keeps the louder one");
        }
    }

    #[test]
    fn flat_top_is_accurate_between_bins_and_hann_is_not() {
        let (n, rate) = (4096, 48_000.0);
        let hz = 100.5 * rate / n as f64; // halfway between bins: worst case
        let mut flat = Spectrum::new(n, Window::FlatTop);
        flat.process(&tone(n, rate, hz, 1.0));
        let top = flat.db().iter().cloned().fold(f32::MIN, f32::max);
        assert!(top.abs() < 0.05, "flat top: {top} dBFS");
        let mut hann = Spectrum::new(n, Window::Hann);
        hann.process(&tone(n, rate, hz, 1.0));
        let top = hann.db().iter().cloned().fold(f32::MIN, f32::max);
        assert!((top + 1.42).abs() < 0.05, "Hann scalloping is 1.42 dB: {top}");
    }

    #[test]
    fn leakage_far_from_the_tone_ranks_the_windows() {
        let (n, rate) = (4096, 48_000.0);
        let hz = 100.5 * rate / n as f64;
        let far = |w| {
            let mut s = Spectrum::new(n, w);
            s.process(&tone(n, rate, hz, 1.0));
            s.db()[400]
        };
        let (rect, hann, bh) = (far(Window::Rectangular), far(Window::Hann), far(Window::BlackmanHarris));
        assert!(rect > -80.0 && hann < -100.0 && bh < -100.0, "rect {rect}, hann {hann}, bh {bh}");
    }

    #[test]
    fn silence_short_input_nan_and_peak_decay() {
        let mut s = Spectrum::new(1024, Window::Hann);
        s.process(&[0.0; 1024]);
        assert!(s.db().iter().all(|&d| d == DB_FLOOR));
        s.process(&[f32::NAN; 10]); // short and NaN: zero-padded, NaN as 0
        assert!(s.db().iter().all(|&d| d == DB_FLOOR));
        s.process(&tone(1024, 48_000.0, 4687.5, 1.0)); // bin 100
        s.process(&[0.0; 1024]);
        assert!(s.peak_hold()[100] > -0.1);
        s.decay_peak(10.0);
        assert!((s.peak_hold()[100] + 10.0).abs() < 0.1);
        s.reset_peak();
        assert!(s.peak_hold().iter().all(|&d| d == DB_FLOOR));
        assert_eq!((s.bins(), s.bin_hz(512, 48_000.0)), (513, 24_000.0));
    }
}
