//! Level meters of one block of interleaved frames: peak and RMS in dBFS per channel,
//! clipping, and the dominant frequency of a spectrum.

use super::spectrum::{amplitude_db, DB_FLOOR};

/// A sample at or above this magnitude counts as clipped (one LSB of 16-bit below full scale).
pub const CLIP_LEVEL: f32 = 32_766.0 / 32_768.0;

/// One channel's levels over a block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Levels {
    /// 20 log10(max |x|): 0 dBFS is full scale.
    pub peak_db: f32,
    /// 20 log10(RMS), not sine-referenced: a full-scale sine reads -3.01 dBFS.
    pub rms_db: f32,
    /// Samples at or beyond [`CLIP_LEVEL`].
    pub clipped: usize,
}

impl Default for Levels {
    fn default() -> Self {
        Levels { peak_db: DB_FLOOR, rms_db: DB_FLOOR, clipped: 0 }
    }
}

/// Levels of `channel` in interleaved `frames` (`channels` per frame). NaN is skipped.
pub fn levels(frames: &[f32], channels: usize, channel: usize) -> Levels {
    let channels = channels.max(1);
    if channel >= channels {
        return Levels::default();
    }
    let (mut peak, mut sum, mut n, mut clipped) = (0.0f32, 0.0f64, 0usize, 0usize);
    for &x in frames.iter().skip(channel).step_by(channels) {
        if x.is_nan() {
            continue;
        }
        let a = x.abs();
        peak = peak.max(a);
        sum += f64::from(x) * f64::from(x);
        n += 1;
        clipped += usize::from(a >= CLIP_LEVEL);
    }
    if n == 0 {
        return Levels::default();
    }
    Levels { peak_db: amplitude_db(peak), rms_db: amplitude_db((sum / n as f64).sqrt() as f32), clipped }
}

/// The frequency of the strongest bin of a dB spectrum (DC excluded), refined by a
/// parabola through it and its neighbours; `None` if nothing stands above the floor.
/// `bin_hz` is the width of one bin.
pub fn dominant_frequency(db: &[f32], bin_hz: f64) -> Option<f64> {
    let (k, &top) = db.iter().enumerate().skip(1).max_by(|a, b| a.1.total_cmp(b.1))?;
    if top <= DB_FLOOR + 1.0 {
        return None;
    }
    let offset = if k + 1 < db.len() {
        let (a, b, c) = (f64::from(db[k - 1]), f64::from(top), f64::from(db[k + 1]));
        let d = a - 2.0 * b + c;
        if d.abs() > 1e-12 {
            (0.5 * (a - c) / d).clamp(-0.5, 0.5)
        } else {
            0.0
        }
    } else {
        0.0
    };
    Some((k as f64 + offset) * bin_hz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::spectrum::{Spectrum, Window};

    #[test]
    fn a_full_scale_sine_peaks_at_0_and_averages_at_minus_3() {
        let n = 48_000;
        let stereo: Vec<f32> = (0..n)
            .flat_map(|i| {
                let s = (std::f64::consts::TAU * 1000.0 * i as f64 / 48_000.0).sin() as f32;
                [s, 0.1 * s]
            })
            .collect();
        let l = levels(&stereo, 2, 0);
        assert!(l.peak_db.abs() < 0.01 && (l.rms_db + 3.01).abs() < 0.01, "{l:?}");
        assert!(l.clipped > 0, "full-scale peaks count as clipped");
        let r = levels(&stereo, 2, 1);
        assert!(
            (r.peak_db + 20.0).abs() < 0.01 && (r.rms_db + 23.01).abs() < 0.01 && r.clipped == 0,
            "{r:?}"
        );
        assert_eq!(levels(&stereo, 2, 2), Levels::default());
        assert_eq!(levels(&[], 2, 0), Levels::default());
        assert_eq!(levels(&[f32::NAN, 0.5], 1, 0).peak_db, amplitude_db(0.5));
    }

    #[test]
    fn dominant_frequency_lands_within_a_tenth_of_a_bin() {
        let (n, rate) = (4096, 48_000.0);
        let mut s = Spectrum::new(n, Window::Hann);
        for hz in [440.0, 1234.5, 997.0, 15_000.3] {
            let x: Vec<f32> =
                (0..n).map(|i| 0.3 * (std::f64::consts::TAU * hz * i as f64 / rate).sin() as f32).collect();
            s.process(&x);
            let bin = rate / n as f64;
            let f = dominant_frequency(s.db(), bin).unwrap();
            assert!((f - hz).abs() < bin / 10.0, "{hz} Hz read as {f}");
        }
        s.process(&[0.0; 4096]);
        assert_eq!(dominant_frequency(s.db(), 1.0), None);
        assert_eq!(dominant_frequency(&[], 1.0), None);
    }
}
