//! How fast the CPU reads the mapped pool, against heap memory: on some ARM kernels usbfs
//! maps its DMA memory uncached, and every read of it is 35-50 times slower than a read of
//! ordinary memory (raspberrypi/linux#3818), so zero-copy costs more than the copy it saves.
//! Measured once, before streaming, so `--mode auto` can prefer copy mode there and say why.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::{BufferPool, TransferPath};

/// Past this many times slower than heap memory, `--mode auto` takes copy mode. An uncached
/// mapping is 35-50x (raspberrypi/linux#3818); a cached one reads like the heap.
pub const SLOW_MAPPING: f64 = 4.0;

/// Bytes of the pool read per measurement (all of it when smaller).
const PROBE_BYTES: usize = 256 << 10;
/// Measurements of each kind; the fastest counts (the others met an interrupt or a
/// cold cache).
const ROUNDS: usize = 5;

/// The time to read the same number of bytes from the mapped pool and from the heap.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ReadSpeed {
    /// Bytes read per round.
    pub bytes: usize,
    pub mapped: Duration,
    pub heap: Duration,
}

impl ReadSpeed {
    /// How many times slower the mapping reads than the heap.
    pub fn slowdown(&self) -> f64 {
        self.mapped.as_secs_f64() / self.heap.as_secs_f64().max(1e-9)
    }

    /// The same measurement with the mapped read `factor` times slower (the simulator's
    /// stand-in for an uncached mapping).
    pub fn scaled(self, factor: f64) -> ReadSpeed {
        ReadSpeed { mapped: self.mapped.mul_f64(factor.max(0.0)), ..self }
    }

    /// Why auto mode should not use the mapping, if it should not.
    pub fn too_slow(&self) -> Option<String> {
        let x = self.slowdown();
        (x > SLOW_MAPPING).then(|| {
            format!(
                "reading the usbfs mapping is {x:.0} times slower than reading heap memory here \
                 ({} in {:?} against {:?}): the kernel maps its DMA memory uncached (as some ARM \
                 kernels do, raspberrypi/linux#3818), so copy mode is cheaper; zero-copy mode, \
                 chosen rather than auto, uses the mapping anyway",
                super::human_bytes(self.bytes as u64),
                self.mapped,
                self.heap
            )
        })
    }
}

/// Measures `pool` (a zero-copy pool; `None` for a heap pool or an empty one) against a heap
/// buffer of the same size. Reads only: the pool is not yet handed to the kernel.
pub fn measure(pool: &BufferPool) -> Option<ReadSpeed> {
    if pool.path() != TransferPath::ZeroCopy {
        return None;
    }
    let slots = pool.slots();
    let mut bytes = 0;
    let taken: Vec<&[u8]> = slots
        .iter()
        .map(|s| s.bytes())
        .take_while(|b| {
            let go = bytes < PROBE_BYTES;
            bytes += b.len();
            go
        })
        .collect();
    if bytes == 0 {
        return None;
    }
    let heap = vec![1u8; bytes];
    let mapped = fastest(|| taken.iter().map(|b| read(b)).fold(0, u64::wrapping_add));
    let heap = fastest(|| read(&heap));
    Some(ReadSpeed { bytes, mapped, heap })
}

/// The fastest of [`ROUNDS`] runs of `f`.
fn fastest(f: impl Fn() -> u64) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Reads every byte of `b` (summed a word at a time, so the compiler cannot skip it).
fn read(b: &[u8]) -> u64 {
    let words = b.chunks_exact(8);
    let tail: u64 = words.remainder().iter().map(|&x| u64::from(x)).sum();
    words.fold(tail, |acc, w| acc.wrapping_add(u64::from_ne_bytes(w.try_into().unwrap_or([0; 8]))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::{PoolLayout, Region};

    #[test]
    fn a_cached_mapping_reads_like_the_heap_and_an_uncached_one_is_refused() {
        // Anonymous mmap'd memory stands in for a cached usbfs mapping (what x86 gives).
        let layout = PoolLayout::new(3072 * 32, 8);
        let pool = BufferPool::mapped(layout, Region::map_anonymous).unwrap();
        let s = measure(&pool).unwrap();
        assert!(s.bytes >= PROBE_BYTES.min(pool.bytes() as usize) && s.bytes as u64 <= pool.bytes(), "{s:?}");
        assert!(s.slowdown() < SLOW_MAPPING, "cached memory measured {:.1}x slower: {s:?}", s.slowdown());
        assert_eq!(s.too_slow(), None);
        // 40x, as an uncached mapping on a Raspberry Pi.
        let slow = s.scaled(40.0 * s.heap.as_secs_f64() / s.mapped.as_secs_f64().max(1e-9));
        let why = slow.too_slow().unwrap();
        assert!(why.contains("40 times slower") && why.contains("copy mode"), "{why}");
        // A heap pool is not measured.
        assert!(measure(&BufferPool::heap(layout)).is_none());
    }

    #[test]
    fn read_sums_every_byte() {
        let b: Vec<u8> = (0..=20u8).collect();
        let words = u64::from_ne_bytes(b[0..8].try_into().unwrap())
            .wrapping_add(u64::from_ne_bytes(b[8..16].try_into().unwrap()));
        assert_eq!(read(&b), words + (16..=20u8).map(u64::from).sum::<u64>());
        assert_eq!(read(&[]), 0);
    }
}
