//! A min/max pyramid over one channel's history, so a plot of any range at any zoom asks
//! for at most a few values per pixel column in bounded time (DESIGN invariant 6).
//!
//! Level 0 is the samples; level k holds the (min, max) of each complete block of 16^k
//! samples (16x per level, as PulseView's analog segments do). Appending costs amortised
//! O(1) per sample; a query of B buckets over any range costs O(B x 16 x levels).
//!
//! NaN rule: NaN samples are ignored; a bucket with no other value is (NaN, NaN).

/// Reduction per level.
pub const FANOUT: usize = 16;

/// (min, max) of a set of samples; `EMPTY` for none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinMax {
    pub min: f32,
    pub max: f32,
}

impl MinMax {
    /// The value of an empty set: (NaN, NaN).
    pub const EMPTY: MinMax = MinMax { min: f32::NAN, max: f32::NAN };

    fn of(x: f32) -> MinMax {
        MinMax { min: x, max: x }
    }

    /// Merges two summaries; NaN only where both are empty.
    fn merge(self, o: MinMax) -> MinMax {
        MinMax { min: self.min.min(o.min), max: self.max.max(o.max) }
    }

    pub fn is_empty(&self) -> bool {
        self.min.is_nan()
    }
}

/// The pyramid of one channel.
#[derive(Clone, Debug, Default)]
pub struct MinMaxPyramid {
    samples: Vec<f32>,
    /// `levels[k]` summarises blocks of 16^(k+1) samples.
    levels: Vec<Vec<MinMax>>,
}

impl MinMaxPyramid {
    pub fn new() -> MinMaxPyramid {
        MinMaxPyramid::default()
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.samples.clear();
        self.levels.clear();
    }

    /// Appends samples, completing blocks at every level as they fill.
    pub fn push_slice(&mut self, xs: &[f32]) {
        self.samples.extend_from_slice(xs);
        let mut lower_len = self.samples.len();
        let mut k = 0;
        loop {
            let complete = lower_len / FANOUT;
            let have = self.levels.get(k).map_or(0, Vec::len);
            if complete == have {
                break;
            }
            if self.levels.len() == k {
                self.levels.push(Vec::new());
            }
            for block in have..complete {
                let m = (block * FANOUT..(block + 1) * FANOUT)
                    .map(|i| self.entry(k, i))
                    .fold(MinMax::EMPTY, MinMax::merge);
                self.levels[k].push(m);
            }
            lower_len = complete;
            k += 1;
        }
    }

    /// Entry `i` of the level below `levels[k]` (k = 0: the samples).
    fn entry(&self, k: usize, i: usize) -> MinMax {
        if k == 0 {
            MinMax::of(self.samples[i])
        } else {
            self.levels[k - 1][i]
        }
    }

    /// (min, max) over samples `[a, b)`, clamped to what is held.
    pub fn range(&self, a: usize, b: usize) -> MinMax {
        let (mut lo, mut hi) = (a.min(self.len()), b.min(self.len()));
        let mut acc = MinMax::EMPTY;
        let mut k = 0; // entries of `entry(k, _)`: level k-1 summaries (k = 0: samples)
        while lo < hi {
            if hi - lo < FANOUT || self.levels.len() <= k {
                for i in lo..hi {
                    acc = acc.merge(self.entry(k, i));
                }
                break;
            }
            while lo % FANOUT != 0 {
                acc = acc.merge(self.entry(k, lo));
                lo += 1;
            }
            while hi % FANOUT != 0 {
                hi -= 1;
                acc = acc.merge(self.entry(k, hi));
            }
            lo /= FANOUT;
            hi /= FANOUT;
            k += 1;
        }
        acc
    }

    /// Splits `[a, b)` into `buckets` equal parts and summarises each (a plot asks for one
    /// or two per pixel column). Writes into `out`, reusing its allocation.
    pub fn buckets(&self, a: usize, b: usize, buckets: usize, out: &mut Vec<MinMax>) {
        out.clear();
        if buckets == 0 || b <= a {
            return;
        }
        let span = (b - a) as f64 / buckets as f64;
        for i in 0..buckets {
            let s = a + (i as f64 * span) as usize;
            let e = (a + ((i + 1) as f64 * span) as usize).max(s + 1);
            out.push(self.range(s, e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(xs: &[f32], a: usize, b: usize) -> MinMax {
        xs[a.min(xs.len())..b.min(xs.len())].iter().map(|&x| MinMax::of(x)).fold(MinMax::EMPTY, MinMax::merge)
    }

    fn same(x: MinMax, y: MinMax) -> bool {
        (x.min == y.min || (x.min.is_nan() && y.min.is_nan()))
            && (x.max == y.max || (x.max.is_nan() && y.max.is_nan()))
    }

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = crate::sim::schedule::SplitMix64::new(seed);
        (0..n).map(|_| s.next_f64() as f32 * 2.0 - 1.0).collect()
    }

    #[test]
    fn every_range_equals_brute_force_across_levels() {
        let xs = noise(16 * 16 * 16 * 3 + 77, 1); // three full level-3 blocks and change
        let mut p = MinMaxPyramid::new();
        // Append in odd-sized pieces, as rings deliver them.
        for chunk in xs.chunks(333) {
            p.push_slice(chunk);
        }
        assert_eq!(p.len(), xs.len());
        assert_eq!(p.levels.len(), 3);
        let mut s = crate::sim::schedule::SplitMix64::new(9);
        for _ in 0..3000 {
            let a = (s.next_u64() % xs.len() as u64) as usize;
            let b = a + (s.next_u64() % (xs.len() - a + 1) as u64) as usize;
            assert!(same(p.range(a, b), brute(&xs, a, b)), "[{a}, {b})");
        }
        // Block edges at every level exactly.
        for k in [1, 16, 256, 4096] {
            for a in [0, k, 2 * k] {
                assert!(same(p.range(a, a + k), brute(&xs, a, a + k)), "[{a}, +{k})");
            }
        }
        assert!(same(p.range(0, xs.len() + 100), brute(&xs, 0, xs.len())));
    }

    #[test]
    fn levels_hold_exactly_the_complete_blocks() {
        let xs = noise(5000, 2);
        let mut p = MinMaxPyramid::new();
        p.push_slice(&xs);
        for (k, level) in p.levels.iter().enumerate() {
            let block = FANOUT.pow(k as u32 + 1);
            assert_eq!(level.len(), xs.len() / block, "level {k}");
            for (i, m) in level.iter().enumerate() {
                assert!(same(*m, brute(&xs, i * block, (i + 1) * block)), "level {k} block {i}");
            }
        }
    }

    #[test]
    fn nan_is_ignored_unless_a_bucket_has_nothing_else() {
        let mut p = MinMaxPyramid::new();
        let mut xs = vec![f32::NAN; 40];
        xs[5] = 0.5;
        xs[20] = -0.25;
        p.push_slice(&xs);
        assert_eq!(p.range(0, 40), MinMax { min: -0.25, max: 0.5 });
        assert!(p.range(30, 40).is_empty());
        assert!(p.range(10, 10).is_empty());
    }

    #[test]
    fn buckets_cover_the_range_and_reuse_the_output() {
        let xs: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let mut p = MinMaxPyramid::new();
        p.push_slice(&xs);
        let mut out = Vec::with_capacity(100);
        p.buckets(1000, 9000, 100, &mut out);
        assert_eq!(out.len(), 100);
        assert_eq!(out[0].min, 1000.0);
        assert_eq!(out[99].max, 8999.0);
        for w in out.windows(2) {
            assert_eq!(w[0].max + 1.0, w[1].min, "buckets are contiguous");
        }
        // More buckets than samples: each bucket still holds one sample.
        p.buckets(0, 10, 40, &mut out);
        assert!(out.iter().all(|m| !m.is_empty()));
    }
}
