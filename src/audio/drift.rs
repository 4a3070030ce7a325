//! Drift compensation: a PI controller that turns the output ring's fill level into a small
//! correction of the resampling ratio, so a USB device and a sound card whose clocks differ
//! hold a steady latency without dropping or repeating frames.
//!
//! The plant is an integrator: when the device delivers `d` (relative) more frames than the
//! card plays, the buffered audio grows by `d` seconds per second, and a ratio correction `c`
//! adds `c` seconds per second. The controller measures the buffered audio (smoothed, so the
//! saw-tooth of URB bursts and card periods does not reach the ratio), and sets
//! `c = -(kp * e + ki * ∫e)` where `e` is the buffered audio minus the target, in seconds.
//! With `ki = kp² / 4` the loop is critically damped (no overshoot ringing); `c` is bounded
//! to `±max_ppm` and the integral stops growing while `c` is at a bound (no wind-up).
//! Pure: no clocks, no threads; the caller passes the time step.

/// Tuning of a [`DriftController`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct DriftConfig {
    /// Proportional gain, per second: 0.3 turns 1 ms of excess buffer into -300 ppm.
    pub kp: f64,
    /// Integral gain, per second squared.
    pub ki: f64,
    /// The largest correction, in ppm either way (real crystals are within ±100 ppm;
    /// cheap USB devices within a few hundred).
    pub max_ppm: f64,
    /// Time constant of the fill level's exponential smoothing, seconds.
    pub smoothing_s: f64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig { kp: 0.3, ki: 0.3 * 0.3 / 4.0, max_ppm: 1000.0, smoothing_s: 0.3 }
    }
}

/// The controller: feed it the buffered audio every few milliseconds, apply the ratio it returns.
#[derive(Clone, Debug)]
pub struct DriftController {
    cfg: DriftConfig,
    /// The buffered audio to hold, seconds.
    target_s: f64,
    /// Smoothed buffered audio, seconds (None until the first update).
    smoothed_s: Option<f64>,
    /// ∫ e dt, seconds².
    integral: f64,
    /// The current correction, relative (1e-6 = 1 ppm).
    correction: f64,
}

impl DriftController {
    /// A controller that holds `target_s` seconds of buffered audio.
    pub fn new(target_s: f64, cfg: DriftConfig) -> DriftController {
        DriftController { cfg, target_s, smoothed_s: None, integral: 0.0, correction: 0.0 }
    }

    /// Takes one measurement of the buffered audio (`buffered_s`, seconds) taken `dt` seconds
    /// after the previous one, and returns the relative ratio to apply (output frames per
    /// input frame, relative to nominal): `1.0 + correction`.
    pub fn update(&mut self, buffered_s: f64, dt: f64) -> f64 {
        if !buffered_s.is_finite() || !dt.is_finite() || dt <= 0.0 {
            return self.ratio_relative();
        }
        let smoothed = match self.smoothed_s {
            None => buffered_s,
            Some(s) => s + (buffered_s - s) * (dt / (self.cfg.smoothing_s + dt)),
        };
        self.smoothed_s = Some(smoothed);
        let e = smoothed - self.target_s;
        let bound = self.cfg.max_ppm * 1e-6;
        let unclamped = -(self.cfg.kp * e + self.cfg.ki * (self.integral + e * dt));
        // Integrate only while that does not push further into a bound (anti-wind-up).
        if unclamped.abs() < bound || unclamped.signum() == e.signum() {
            self.integral += e * dt;
        }
        self.correction = (-(self.cfg.kp * e + self.cfg.ki * self.integral)).clamp(-bound, bound);
        self.ratio_relative()
    }

    /// Forgets the measurement history but keeps the learned clock offset (the integral):
    /// after a resync the fill jumps, the clocks have not changed.
    pub fn reset_measurement(&mut self) {
        self.smoothed_s = None;
    }

    /// Forgets the learned clock offset too (when it pinned the correction at its bound).
    pub fn reset_integral(&mut self) {
        self.integral = 0.0;
        self.correction = 0.0;
    }

    /// Doubles the correction's bound, up to `limit_ppm`, for two clocks further apart than
    /// it (a sound server's graph clock can be a few thousand ppm off the host's); returns
    /// false when it is at the limit already. The learned offset is kept: it was right so far.
    pub fn widen_bound(&mut self, limit_ppm: f64) -> bool {
        if self.cfg.max_ppm >= limit_ppm {
            return false;
        }
        self.cfg.max_ppm = (self.cfg.max_ppm * 2.0).min(limit_ppm);
        true
    }

    /// Smooths the fill over at least `seconds` (an output that takes 20 ms at a time needs
    /// longer than one that takes 3 ms, or its saw-tooth reaches the ratio).
    pub fn set_min_smoothing(&mut self, seconds: f64, base: f64) {
        if seconds.is_finite() {
            self.cfg.smoothing_s = seconds.max(base);
        }
    }

    /// The bound of the correction, ppm.
    pub fn max_ppm(&self) -> f64 {
        self.cfg.max_ppm
    }

    /// Changes the buffered audio to hold (e.g. when the card's measured delay changes).
    pub fn set_target(&mut self, target_s: f64) {
        if target_s.is_finite() {
            self.target_s = target_s;
        }
    }

    /// `1.0 + correction`.
    pub fn ratio_relative(&self) -> f64 {
        1.0 + self.correction
    }

    /// The current correction in ppm (negative: fewer output frames per input frame, as
    /// when the device's clock runs fast).
    pub fn correction_ppm(&self) -> f64 {
        self.correction * 1e6
    }

    /// Smoothed buffered audio minus the target, seconds.
    pub fn error_s(&self) -> f64 {
        self.smoothed_s.map_or(0.0, |s| s - self.target_s)
    }

    /// The target, seconds.
    pub fn target_s(&self) -> f64 {
        self.target_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated monitor: a device at `rate * (1 + ppm)` pushing 4 ms URBs, a resampler at
    /// the controller's ratio, a card popping 5 ms periods, the controller updated every 1 ms.
    /// Returns (worst |error| after `settle_s`, min fill, final correction ppm, final error).
    fn simulate(ppm: impl Fn(f64) -> f64, seconds: f64, settle_s: f64) -> (f64, f64, f64, f64) {
        simulate_with(DriftConfig::default(), ppm, seconds, settle_s)
    }

    fn simulate_with(
        cfg: DriftConfig,
        ppm: impl Fn(f64) -> f64,
        seconds: f64,
        settle_s: f64,
    ) -> (f64, f64, f64, f64) {
        let rate = 48_000.0;
        let target = 0.015;
        let mut c = DriftController::new(target, cfg);
        let mut fill = target * rate; // frames in the output ring
        let mut pending_in = 0.0; // device frames not yet delivered (URB in progress)
        let (mut worst, mut min_fill) = (0.0f64, f64::MAX);
        let dt = 0.001;
        let mut t = 0.0;
        let mut ratio = 1.0;
        let mut step = 0u64;
        while t < seconds {
            pending_in += rate * (1.0 + ppm(t) * 1e-6) * dt;
            if step % 4 == 3 {
                fill += pending_in * ratio; // one URB arrives and is resampled
                pending_in = 0.0;
            }
            if step % 5 == 4 {
                fill -= 240.0; // the card takes a period
            }
            min_fill = min_fill.min(fill);
            ratio = c.update(fill / rate, dt);
            if t > settle_s {
                worst = worst.max(c.error_s().abs());
            }
            t += dt;
            step += 1;
        }
        (worst, min_fill, c.correction_ppm(), c.error_s())
    }

    #[test]
    fn a_500_ppm_fast_device_is_tracked_and_latency_holds() {
        let (worst, min_fill, ppm, err) = simulate(|_| 500.0, 120.0, 0.0);
        assert!(worst < 0.002, "worst error {worst} s");
        assert!(min_fill > 0.0, "the ring ran dry: {min_fill}");
        assert!((ppm + 500.0).abs() < 10.0, "correction {ppm} ppm");
        assert!(err.abs() < 0.0002, "final error {err} s");
        // ... and a slow one the other way.
        let (worst, _, ppm, _) = simulate(|_| -500.0, 120.0, 0.0);
        assert!(worst < 0.002 && (ppm - 500.0).abs() < 10.0, "{worst} {ppm}");
    }

    #[test]
    fn the_correction_stays_within_bounds_and_recovers_without_wind_up() {
        // 3000 ppm is beyond the bound: the correction saturates at -1000 ppm...
        let (_, _, ppm, err) = simulate(|_| 3000.0, 20.0, 0.0);
        assert!((ppm + 1000.0).abs() < 1e-6, "{ppm}");
        assert!(err > 0.0, "{err}");
        // ... and once the drift is back in range the loop settles quickly (no wound-up integral).
        let (worst, _, ppm, _) = simulate(|t| if t < 20.0 { 3000.0 } else { 200.0 }, 120.0, 90.0);
        assert!(worst < 0.0005 && (ppm + 200.0).abs() < 10.0, "{worst} {ppm}");
    }

    #[test]
    fn a_widened_bound_tracks_clocks_further_apart() {
        let mut c = DriftController::new(0.015, DriftConfig::default());
        assert!(c.widen_bound(8000.0) && c.max_ppm() == 2000.0);
        for _ in 0..3 {
            c.widen_bound(8000.0);
        }
        assert_eq!(c.max_ppm(), 8000.0);
        assert!(!c.widen_bound(8000.0), "at the limit");
        // 3000 ppm apart: held, where the default bound saturates.
        let (worst, _, ppm, _) = {
            let cfg = DriftConfig { max_ppm: 4000.0, ..DriftConfig::default() };
            simulate_with(cfg, |_| 3000.0, 120.0, 90.0)
        };
        assert!(worst < 0.0005 && (ppm + 3000.0).abs() < 10.0, "{worst} {ppm}");
    }

    #[test]
    fn bad_measurements_change_nothing() {
        let mut c = DriftController::new(0.02, DriftConfig::default());
        assert_eq!(c.update(f64::NAN, 0.001), 1.0);
        assert_eq!(c.update(0.03, 0.0), 1.0);
        assert!(c.update(0.03, 0.001) < 1.0);
    }
}
