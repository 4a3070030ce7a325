//! The simulated device's packet schedule: how many frames each packet carries and which
//! packets are short or fail. It is a pure function of a seed, so the verifier can replay
//! exactly what the device sent.

use nix::libc;

use crate::dsp::PcmFormat;

/// A small, fast, seedable PRNG (SplitMix64). Deterministic across platforms.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Faults the simulated device injects.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Faults {
    /// Share of packets that carry fewer frames than scheduled (the rest follow later;
    /// nothing is lost). Their unused space is a gap of stale bytes.
    pub short_ratio: f64,
    /// Share of packets that fail (EXDEV, EPROTO, EILSEQ, EOVERFLOW): their frames are lost.
    pub error_ratio: f64,
    /// Unplug after this many seconds of bus time.
    pub disconnect_after_s: Option<f64>,
}

/// What one packet carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketPlan {
    /// Frames of the stream this packet consumes.
    pub frames: u32,
    /// 0, or the positive errno the packet fails with (its frames are then lost).
    pub errno: i32,
    /// The actual_length the device reports (for failed packets: a plausible garbage length).
    pub reported_bytes: u32,
}

/// The deterministic packet schedule of a simulated device.
#[derive(Clone, Debug)]
pub struct Schedule {
    rng: SplitMix64,
    faults: Faults,
    rate: u64,
    frame_bytes: u32,
    interval_us: u64,
    capacity_frames: u32,
    /// Fractional frames, in frames x 1e6 / us.
    acc: u64,
    /// Frames due but not yet sent (short packets push frames later).
    owed: u64,
    /// Packets planned so far.
    pub packets: u64,
}

const ERRNOS: [i32; 4] = [libc::EXDEV, libc::EPROTO, libc::EILSEQ, libc::EOVERFLOW];

impl Schedule {
    /// A schedule for `format` with one packet every `interval_us` of at most `packet_bytes`.
    pub fn new(format: PcmFormat, interval_us: u32, packet_bytes: u32, faults: Faults, seed: u64) -> Self {
        let frame_bytes = format.frame_bytes().max(1) as u32;
        Schedule {
            rng: SplitMix64::new(seed),
            faults,
            rate: u64::from(format.rate),
            frame_bytes,
            interval_us: u64::from(interval_us.max(1)),
            capacity_frames: packet_bytes / frame_bytes,
            acc: 0,
            owed: 0,
            packets: 0,
        }
    }

    /// Plans the next packet.
    pub fn next_packet(&mut self) -> PacketPlan {
        self.packets += 1;
        self.acc += self.rate * self.interval_us;
        self.owed += self.acc / 1_000_000;
        self.acc %= 1_000_000;
        // Always draw the same number of values, so every branch keeps the stream aligned.
        let (r_err, r_short, r_len) = (self.rng.next_f64(), self.rng.next_f64(), self.rng.next_u64());
        let full = self.owed.min(u64::from(self.capacity_frames)) as u32;
        if r_err < self.faults.error_ratio {
            self.owed -= u64::from(full);
            let errno = ERRNOS[(r_len % ERRNOS.len() as u64) as usize];
            let reported = (r_len >> 8) as u32 % (self.capacity_frames * self.frame_bytes + 1);
            return PacketPlan { frames: full, errno, reported_bytes: reported };
        }
        let frames = if r_short < self.faults.short_ratio && full > 0 {
            (r_len % u64::from(full)) as u32
        } else {
            full
        };
        self.owed -= u64::from(frames);
        PacketPlan { frames, errno: 0, reported_bytes: frames * self.frame_bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::SampleFormat;

    const FMT: PcmFormat = PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 44_100 };

    #[test]
    fn nominal_packets_average_the_rate() {
        let mut s = Schedule::new(FMT, 1000, 45 * 4 + 4, Faults::default(), 1);
        let frames: u64 = (0..1000).map(|_| u64::from(s.next_packet().frames)).sum();
        assert_eq!(frames, 44_100);
    }

    #[test]
    fn replay_with_the_same_seed_is_identical() {
        let f = Faults { short_ratio: 0.3, error_ratio: 0.05, disconnect_after_s: None };
        let mut a = Schedule::new(FMT, 125, 200, f, 42);
        let mut b = a.clone();
        for _ in 0..10_000 {
            assert_eq!(a.next_packet(), b.next_packet());
        }
    }

    #[test]
    fn faults_happen_at_about_their_ratio_and_short_packets_lose_nothing() {
        let f = Faults { short_ratio: 0.3, error_ratio: 0.0, disconnect_after_s: None };
        let mut s = Schedule::new(FMT, 1000, 46 * 4, f, 7);
        let plans: Vec<_> = (0..20_000).map(|_| s.next_packet()).collect();
        let short = plans.iter().filter(|p| p.frames < 44).count() as f64 / plans.len() as f64;
        assert!((0.2..0.4).contains(&short), "{short}");
        let sent: u64 = plans.iter().map(|p| u64::from(p.frames)).sum();
        assert_eq!(sent + s.owed, 20 * 44_100);

        let f = Faults { short_ratio: 0.0, error_ratio: 0.1, disconnect_after_s: None };
        let mut s = Schedule::new(FMT, 1000, 46 * 4, f, 7);
        let errs = (0..20_000).filter(|_| s.next_packet().errno != 0).count();
        assert!((1500..2500).contains(&errs), "{errs}");
    }
}
