//! A min/max pyramid over one channel's bounded history, so a plot of any range at any
//! zoom asks for at most a few values per pixel column in bounded time (DESIGN
//! invariant 6).
//!
//! Level 0 is the samples; level k holds the (min, max) of each complete, aligned block of
//! 16^k samples (16x per level, as PulseView's analog segments do). Every level is a ring:
//! the pyramid keeps the newest `capacity` samples (rounded up to a whole top-level block)
//! and the summaries of every block that lies wholly inside them, so a live capture can
//! append forever in bounded memory. Sample indices are absolute (counted since the first
//! sample ever pushed); [`MinMaxPyramid::oldest`] is the first one still held.
//!
//! Costs: appending is amortised O(1) per sample; [`MinMaxPyramid::range`] costs
//! O(16 x levels + 512) whatever the range; a plot of B buckets costs B times that.
//!
//! Rules (as in rerun's aggregation, written down once):
//! - NaN samples are ignored by every summary; a bucket with no other value is
//!   [`MinMax::EMPTY`] (NaN, NaN), which a plot draws as a hole.
//! - Buckets are exact: the first bucket starts at the first index asked for and the last
//!   ends at the last, so the edges of a plot never drift as the pyramid level changes.
//! - Ranges are clamped to what is held; a range wholly outside is empty.

/// Reduction per level.
pub const FANOUT: usize = 16;

/// The top level keeps at least this many entries, so a query at the top scans at most
/// `32 x 16` of them.
const MIN_TOP_ENTRIES: usize = 32;

/// (min, max) of a set of samples; `EMPTY` for none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinMax {
    pub min: f32,
    pub max: f32,
}

impl MinMax {
    /// The value of an empty set: (NaN, NaN).
    pub const EMPTY: MinMax = MinMax { min: f32::NAN, max: f32::NAN };

    /// The summary of one sample (EMPTY for NaN).
    pub fn of(x: f32) -> MinMax {
        MinMax { min: x, max: x }
    }

    /// Merges two summaries; NaN only where both are empty (`f32::min` ignores NaN).
    pub fn merge(self, o: MinMax) -> MinMax {
        MinMax { min: self.min.min(o.min), max: self.max.max(o.max) }
    }

    pub fn is_empty(&self) -> bool {
        self.min.is_nan()
    }
}

/// The bounded pyramid of one channel.
#[derive(Clone, Debug)]
pub struct MinMaxPyramid {
    /// Samples kept (a whole number of top-level blocks).
    cap: usize,
    /// Samples ever pushed: the absolute index of the next one.
    total: usize,
    /// Ring of the newest `cap` samples; sample `i` lives at `i % cap`.
    samples: Vec<f32>,
    /// `levels[k]` is a ring of `cap / 16^(k+1)` summaries of blocks of 16^(k+1) samples.
    levels: Vec<Vec<MinMax>>,
}

impl Default for MinMaxPyramid {
    fn default() -> Self {
        MinMaxPyramid::new(1 << 20)
    }
}

impl MinMaxPyramid {
    /// A pyramid keeping at least the newest `capacity` samples. Memory grows as samples
    /// arrive, up to about `capacity x 4 x 16/15` bytes.
    pub fn new(capacity: usize) -> MinMaxPyramid {
        let want = capacity.max(1);
        let mut levels = 0;
        while FANOUT.pow(levels + 1).saturating_mul(MIN_TOP_ENTRIES) <= want {
            levels += 1;
        }
        let top = FANOUT.pow(levels);
        let cap = want.div_ceil(top) * top;
        MinMaxPyramid { cap, total: 0, samples: Vec::new(), levels: vec![Vec::new(); levels as usize] }
    }

    /// Samples the pyramid keeps at most.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Samples ever pushed (the absolute index of the next sample).
    pub fn total(&self) -> usize {
        self.total
    }

    /// The absolute index of the oldest sample still held.
    pub fn oldest(&self) -> usize {
        self.total - self.samples.len()
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Levels above the samples.
    pub fn levels(&self) -> usize {
        self.levels.len()
    }

    /// Bytes allocated now.
    pub fn heap_bytes(&self) -> usize {
        self.samples.capacity() * 4 + self.levels.iter().map(|l| l.capacity() * 8).sum::<usize>()
    }

    /// Forgets everything (keeps the allocations).
    pub fn clear(&mut self) {
        self.total = 0;
        self.samples.clear();
        self.levels.iter_mut().for_each(Vec::clear);
    }

    /// Appends samples, completing blocks at every level as they fill, and forgets the
    /// oldest beyond the capacity.
    pub fn push_slice(&mut self, xs: &[f32]) {
        // Half the capacity at a time keeps every entry a new block needs still in its ring.
        for chunk in xs.chunks((self.cap / 2).max(1)) {
            let before = self.total;
            for &x in chunk {
                if self.samples.len() < self.cap {
                    self.samples.push(x);
                } else {
                    self.samples[self.total % self.cap] = x;
                }
                self.total += 1;
            }
            let mut block = 1;
            for k in 0..self.levels.len() {
                block *= FANOUT;
                let ring = self.cap / block;
                for b in before / block..self.total / block {
                    let m = (b * FANOUT..(b + 1) * FANOUT)
                        .map(|i| self.entry(k, i))
                        .fold(MinMax::EMPTY, MinMax::merge);
                    let level = &mut self.levels[k];
                    if level.len() < ring {
                        level.push(m);
                    } else {
                        level[b % ring] = m;
                    }
                }
            }
        }
    }

    /// Entry `i` (absolute) of the level below `levels[k]` (k = 0: the samples).
    fn entry(&self, k: usize, i: usize) -> MinMax {
        if k == 0 {
            MinMax::of(self.samples[i % self.cap])
        } else {
            let ring = self.cap / FANOUT.pow(k as u32);
            self.levels[k - 1][i % ring]
        }
    }

    /// The sample at absolute index `i`, if still held.
    pub fn get(&self, i: usize) -> Option<f32> {
        (i >= self.oldest() && i < self.total).then(|| self.samples[i % self.cap])
    }

    /// (min, max) over absolute samples `[a, b)`, clamped to what is held.
    pub fn range(&self, a: usize, b: usize) -> MinMax {
        let (mut lo, mut hi) = (a.max(self.oldest()), b.min(self.total));
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

    /// Splits absolute `[a, b)` into `buckets` equal parts and summarises each (a plot asks
    /// for one per pixel column). Writes into `out`, reusing its allocation. The first
    /// bucket starts exactly at `a` and the last ends exactly at `b`; every bucket holds at
    /// least one index.
    pub fn buckets(&self, a: usize, b: usize, buckets: usize, out: &mut Vec<MinMax>) {
        out.clear();
        if buckets == 0 || b <= a {
            return;
        }
        let span = (b - a) as f64 / buckets as f64;
        for i in 0..buckets {
            let s = a + (i as f64 * span) as usize;
            let e = if i + 1 == buckets { b } else { a + ((i + 1) as f64 * span) as usize };
            out.push(self.range(s, e.max(s + 1)));
        }
    }

    /// Copies absolute samples `[a, b)` (clamped to what is held) into `out`, reusing its
    /// allocation; returns the absolute index of `out[0]`.
    pub fn copy_range(&self, a: usize, b: usize, out: &mut Vec<f32>) -> usize {
        out.clear();
        let (lo, hi) = (a.max(self.oldest()), b.min(self.total));
        if lo >= hi {
            return lo;
        }
        let (s, e) = (lo % self.cap, (hi - 1) % self.cap + 1);
        if s < e {
            out.extend_from_slice(&self.samples[s..e]);
        } else {
            out.extend_from_slice(&self.samples[s..]);
            out.extend_from_slice(&self.samples[..e]);
        }
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(xs: &[f32], a: usize, b: usize) -> MinMax {
        xs[a.min(xs.len())..b.min(xs.len()).max(a.min(xs.len()))]
            .iter()
            .map(|&x| MinMax::of(x))
            .fold(MinMax::EMPTY, MinMax::merge)
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
        let xs = noise(16 * 16 * 16 * 40 + 77, 1);
        let mut p = MinMaxPyramid::new(xs.len() + 10_000); // holds everything
                                                           // Append in odd-sized pieces, as rings deliver them.
        for chunk in xs.chunks(333) {
            p.push_slice(chunk);
        }
        assert_eq!((p.len(), p.oldest()), (xs.len(), 0));
        assert_eq!(p.levels(), 3);
        let mut s = crate::sim::schedule::SplitMix64::new(9);
        for _ in 0..3000 {
            let a = (s.next_u64() % xs.len() as u64) as usize;
            let b = a + (s.next_u64() % (xs.len() - a + 1) as u64) as usize;
            assert!(same(p.range(a, b), brute(&xs, a, b)), "[{a}, {b})");
        }
        // Block edges at every level exactly.
        for k in [1, 16, 256, 4096, 65536] {
            for a in [0, k, 2 * k, k - 1, k + 1] {
                assert!(same(p.range(a, a + k), brute(&xs, a, a + k)), "[{a}, +{k})");
            }
        }
        assert!(same(p.range(0, xs.len() + 100), brute(&xs, 0, xs.len())));
    }

    #[test]
    fn every_level_holds_exactly_the_brute_force_block_summaries() {
        let xs = noise(200_000, 2);
        let mut p = MinMaxPyramid::new(xs.len());
        p.push_slice(&xs);
        assert!(p.levels() >= 3);
        for (k, level) in p.levels.iter().enumerate() {
            let block = FANOUT.pow(k as u32 + 1);
            assert_eq!(level.len(), xs.len() / block, "level {k}");
            for (i, m) in level.iter().enumerate() {
                assert!(same(*m, brute(&xs, i * block, (i + 1) * block)), "level {k} block {i}");
            }
        }
    }

    #[test]
    fn a_bounded_history_forgets_the_oldest_and_stays_exact() {
        let xs = noise(300_000, 3);
        let mut p = MinMaxPyramid::new(50_000);
        let cap = p.capacity();
        assert!(cap >= 50_000 && cap % FANOUT.pow(p.levels() as u32) == 0);
        let mut s = crate::sim::schedule::SplitMix64::new(4);
        let mut pushed = 0;
        while pushed < xs.len() {
            let n = 1 + (s.next_u64() % 7000) as usize;
            let end = (pushed + n).min(xs.len());
            p.push_slice(&xs[pushed..end]);
            pushed = end;
            assert_eq!(p.total(), pushed);
            assert_eq!(p.oldest(), pushed.saturating_sub(cap));
            for _ in 0..20 {
                let a = (s.next_u64() % pushed as u64) as usize;
                let b = a + (s.next_u64() % (pushed - a + 1) as u64) as usize;
                let want = brute(&xs, a.max(p.oldest()), b);
                assert!(same(p.range(a, b), want), "[{a}, {b}) at {pushed}");
            }
        }
        // Every level's ring holds exactly the newest blocks wholly inside the history.
        for (k, level) in p.levels.iter().enumerate() {
            let block = FANOUT.pow(k as u32 + 1);
            let ring = cap / block;
            for b in (p.total() - cap) / block..p.total() / block {
                assert!(same(level[b % ring], brute(&xs, b * block, (b + 1) * block)), "level {k} block {b}");
            }
        }
        // One push larger than the whole capacity keeps only the newest samples.
        let big = noise(3 * cap + 5, 5);
        p.push_slice(&big);
        let t = p.total();
        let tail = &big[big.len() - cap..];
        assert!(same(p.range(0, t), brute(tail, 0, cap)));
        let mut out = Vec::new();
        let first = p.copy_range(0, t, &mut out);
        assert_eq!((first, out.as_slice()), (t - cap, tail));
    }

    #[test]
    fn nan_is_ignored_unless_a_bucket_has_nothing_else() {
        let mut p = MinMaxPyramid::new(1000);
        let mut xs = vec![f32::NAN; 600];
        xs[5] = 0.5;
        xs[20] = -0.25;
        p.push_slice(&xs);
        assert_eq!(p.range(0, 600), MinMax { min: -0.25, max: 0.5 });
        assert!(p.range(30, 600).is_empty());
        assert!(p.range(10, 10).is_empty());
        assert!(p.range(700, 900).is_empty(), "outside what is held");
    }

    #[test]
    fn buckets_cover_the_range_exactly_and_reuse_the_output() {
        let xs: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let mut p = MinMaxPyramid::new(20_000);
        p.push_slice(&xs);
        let mut out = Vec::with_capacity(100);
        p.buckets(1000, 9000, 100, &mut out);
        assert_eq!(out.len(), 100);
        assert_eq!(out[0].min, 1000.0, "the first bucket starts at a");
        assert_eq!(out[99].max, 8999.0, "the last bucket ends at b");
        for w in out.windows(2) {
            assert_eq!(w[0].max + 1.0, w[1].min, "buckets are contiguous");
        }
        // Uneven split: still exact at both ends.
        p.buckets(3, 1000, 7, &mut out);
        assert_eq!((out[0].min, out[6].max), (3.0, 999.0));
        // More buckets than samples: each bucket still holds one sample.
        p.buckets(0, 10, 40, &mut out);
        assert!(out.iter().all(|m| !m.is_empty()));
    }

    #[test]
    fn copy_range_unwraps_the_ring() {
        let mut p = MinMaxPyramid::new(100);
        let xs: Vec<f32> = (0..1234).map(|i| i as f32).collect();
        p.push_slice(&xs);
        let mut out = Vec::new();
        let first = p.copy_range(1200, 1234, &mut out);
        assert_eq!(first, 1200);
        assert_eq!(out, xs[1200..].to_vec());
        let first = p.copy_range(0, 5000, &mut out);
        assert_eq!(first, p.oldest());
        assert_eq!(out, xs[p.oldest()..].to_vec());
        assert_eq!(p.get(1233), Some(1233.0));
        assert_eq!(p.get(0), None);
    }
}
