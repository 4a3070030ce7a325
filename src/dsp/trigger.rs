//! Edge trigger with hysteresis: finds where a channel crosses a level in a given
//! direction, ignoring noise smaller than the hysteresis band around the level; and the
//! scope's trigger settings (mode and horizontal position).

/// Which crossing fires the trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Edge {
    Rising,
    Falling,
}

/// When the scope redraws.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TriggerMode {
    /// Redraw at each trigger; free-run when none came for a while (a flat line still shows).
    #[default]
    Auto,
    /// Redraw only at a trigger; the last triggered trace stays until the next one.
    Normal,
    /// Wait for one trigger, show it, and stop.
    Single,
}

/// Where the trigger point sits on screen and which edge fires it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TriggerSettings {
    pub enabled: bool,
    pub mode: TriggerMode,
    pub trigger: EdgeTrigger,
    pub channel: usize,
    /// Horizontal position of the trigger point as a fraction of the screen (0 = left edge).
    pub position: f32,
}

impl Default for TriggerSettings {
    fn default() -> Self {
        TriggerSettings {
            enabled: true,
            mode: TriggerMode::Auto,
            trigger: EdgeTrigger { edge: Edge::Rising, level: 0.0, hysteresis: 0.02 },
            channel: 0,
            position: 0.5,
        }
    }
}

impl TriggerSettings {
    /// The frames window `[start, start + width)` to show for a trigger at frame `t`.
    pub fn window_for(&self, t: usize, width: usize) -> (usize, usize) {
        let pre = (self.position.clamp(0.0, 1.0) * width as f32) as usize;
        let start = t.saturating_sub(pre);
        (start, start + width)
    }
}

/// An edge trigger on one channel of interleaved frames.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EdgeTrigger {
    pub edge: Edge,
    /// The level the signal must cross.
    pub level: f32,
    /// The signal must first be this far on the other side of the level (re-arm band).
    pub hysteresis: f32,
}

impl EdgeTrigger {
    /// The first frame index at or after `from` where `channel` of the interleaved
    /// `samples` (`channels` per frame) crosses the level: a rising edge fires at the first
    /// sample >= level after one <= level - hysteresis (falling: mirrored). NaN neither
    /// arms nor fires.
    pub fn find(&self, samples: &[f32], channels: usize, channel: usize, from: usize) -> Option<usize> {
        let channels = channels.max(1);
        if channel >= channels {
            return None;
        }
        let h = self.hysteresis.abs();
        let mut armed = false;
        let frames = samples.len() / channels;
        for i in from..frames {
            let x = samples[i * channels + channel];
            let (arm, fire) = match self.edge {
                Edge::Rising => (x <= self.level - h, x >= self.level),
                Edge::Falling => (x >= self.level + h, x <= self.level),
            };
            if armed && fire {
                return Some(i);
            }
            armed |= arm;
        }
        None
    }

    /// The last trigger point in the frames (each fire needs a fresh arm, as in `find`).
    pub fn find_last(&self, samples: &[f32], channels: usize, channel: usize) -> Option<usize> {
        let mut last = None;
        let mut from = 0;
        while let Some(i) = self.find(samples, channels, channel, from) {
            last = Some(i);
            from = i + 1;
        }
        last
    }

    /// Every trigger point in the frames, each at least `holdoff` frames after the last.
    pub fn find_all(
        &self,
        samples: &[f32],
        channels: usize,
        channel: usize,
        holdoff: usize,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        let mut from = 0;
        while let Some(i) = self.find(samples, channels, channel, from) {
            out.push(i);
            from = i + holdoff.max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(n: usize, period: f32, phase: f32) -> Vec<f32> {
        (0..n).map(|i| (std::f32::consts::TAU * (i as f32 / period) + phase).sin()).collect()
    }

    #[test]
    fn rising_and_falling_edges_of_a_sine_are_found_once_per_period() {
        let x = sine(1000, 100.0, 0.0);
        let t = EdgeTrigger { edge: Edge::Rising, level: 0.0, hysteresis: 0.1 };
        let mut hits = Vec::new();
        t.find_all(&x, 1, 0, 1, &mut hits);
        // sin starts at 0 going up, unarmed; the next rising zero crossings are at 100, 200, ...
        assert_eq!(hits, (1..10).map(|k| k * 100).collect::<Vec<_>>());
        let f = EdgeTrigger { edge: Edge::Falling, ..t };
        f.find_all(&x, 1, 0, 1, &mut hits);
        assert_eq!(hits, (0..10).map(|k| k * 100 + 50).collect::<Vec<_>>());
        // A level of 0.5: sin(0) = 0 is below 0.5 - 0.1, so it arms at once and fires where
        // sin first reaches 0.5, 1/12 of a period in (8.3 -> frame 9).
        let half = EdgeTrigger { level: 0.5, ..t };
        assert_eq!(half.find(&x, 1, 0, 0), Some(9));
        assert_eq!(half.find(&x, 1, 0, 10), Some(109), "from 10 it must re-arm below 0.4 first");
    }

    #[test]
    fn the_last_edge_and_the_window_around_it() {
        let x = sine(1050, 100.0, 0.0);
        let t = EdgeTrigger { edge: Edge::Rising, level: 0.0, hysteresis: 0.1 };
        assert_eq!(t.find_last(&x, 1, 0), Some(1000));
        assert_eq!(t.find_last(&x[..999], 1, 0), Some(900));
        let f = EdgeTrigger { edge: Edge::Falling, ..t };
        assert_eq!(f.find_last(&x, 1, 0), Some(950));
        assert_eq!(t.find_last(&[0.5; 10], 1, 0), None, "a flat line never fires");
        let s = TriggerSettings { trigger: t, position: 0.25, ..TriggerSettings::default() };
        assert_eq!(s.window_for(1000, 400), (900, 1300));
        assert_eq!(s.window_for(50, 400), (0, 400), "clamped at the start of the history");
        let left = TriggerSettings { position: 0.0, ..s };
        assert_eq!(left.window_for(1000, 400), (1000, 1400));
    }

    #[test]
    fn a_square_wave_triggers_on_each_edge_with_any_level_inside_its_swing() {
        // 0.8 high for 30 frames, -0.8 low for 30 frames, starting low.
        let x: Vec<f32> = (0..600).map(|i| if (i / 30) % 2 == 1 { 0.8 } else { -0.8 }).collect();
        for level in [-0.5f32, 0.0, 0.5] {
            let t = EdgeTrigger { edge: Edge::Rising, level, hysteresis: 0.1 };
            let mut hits = Vec::new();
            t.find_all(&x, 1, 0, 1, &mut hits);
            assert_eq!(hits, (0..10).map(|k| 30 + 60 * k).collect::<Vec<_>>(), "rising at {level}");
            let f = EdgeTrigger { edge: Edge::Falling, ..t };
            f.find_all(&x, 1, 0, 1, &mut hits);
            assert_eq!(hits, (1..10).map(|k| 60 * k).collect::<Vec<_>>(), "falling at {level}");
        }
        // A level outside the swing never fires.
        let t = EdgeTrigger { edge: Edge::Rising, level: 0.9, hysteresis: 0.1 };
        assert_eq!(t.find(&x, 1, 0, 0), None);
        // Holdoff skips edges closer than it.
        let mut hits = Vec::new();
        EdgeTrigger { level: 0.0, ..t }.find_all(&x, 1, 0, 100, &mut hits);
        assert_eq!(hits, vec![30, 150, 270, 390, 510]);
    }

    #[test]
    fn hysteresis_ignores_noise_around_the_level() {
        // Chatter of +-0.05 around 0 must not fire with 0.1 hysteresis; a real edge must.
        let mut x: Vec<f32> = (0..200).map(|i| if i % 2 == 0 { 0.05 } else { -0.05 }).collect();
        x.extend((0..50).map(|i| -1.0 + i as f32 * 0.04));
        let t = EdgeTrigger { edge: Edge::Rising, level: 0.0, hysteresis: 0.1 };
        let hit = t.find(&x, 1, 0, 0).unwrap();
        assert!(x[hit] >= 0.0 && hit > 200, "fired at {hit}");
        let no_hyst = EdgeTrigger { hysteresis: 0.0, ..t };
        assert_eq!(no_hyst.find(&x, 1, 0, 0), Some(2), "without hysteresis the chatter fires");
    }

    #[test]
    fn the_channel_is_picked_from_interleaved_frames_and_nan_is_inert() {
        let left = sine(400, 100.0, 0.0);
        let right = sine(400, 100.0, std::f32::consts::PI); // inverted
        let stereo: Vec<f32> = left.iter().zip(&right).flat_map(|(l, r)| [*l, *r]).collect();
        let t = EdgeTrigger { edge: Edge::Rising, level: 0.0, hysteresis: 0.1 };
        assert_eq!(t.find(&stereo, 2, 0, 0), Some(100));
        assert_eq!(t.find(&stereo, 2, 1, 0), Some(50));
        assert_eq!(t.find(&stereo, 2, 2, 0), None);
        let nan = vec![f32::NAN; 100];
        assert_eq!(t.find(&nan, 1, 0, 0), None);
    }
}
