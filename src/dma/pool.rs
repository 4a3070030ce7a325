//! The buffer pool: URB slots carved from a few regions, each slot wholly inside one region.

use std::sync::Arc;

use super::budget::MemoryPlan;
use super::region::{page_size, round_up, Region, Slot};
use super::TransferPath;

/// How slots are laid out in regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLayout {
    /// Bytes per slot (one URB's buffer).
    pub slot_len: usize,
    /// Slots in the pool.
    pub slots: usize,
    /// Distance between slot starts inside a region (slot_len rounded up to 64 bytes).
    pub stride: usize,
    /// Slots per region.
    pub slots_per_region: usize,
}

impl PoolLayout {
    /// Upper bound for one region. usbfs allocates each mapping as physically contiguous
    /// pages; keeping regions small keeps that allocation from failing on a fragmented
    /// machine (the reason zero-copy exists in the first place).
    pub const MAX_REGION_BYTES: usize = 1 << 20;

    /// Lays out `slots` slots of `slot_len` bytes.
    pub fn new(slot_len: usize, slots: usize) -> PoolLayout {
        let slot_len = slot_len.max(1);
        let stride = round_up(slot_len, 64);
        let slots_per_region = (Self::MAX_REGION_BYTES / stride).clamp(1, slots.max(1));
        PoolLayout { slot_len, slots, stride, slots_per_region }
    }

    /// The byte length of each region, in order.
    pub fn region_lengths(&self, path: TransferPath) -> Vec<usize> {
        let mut left = self.slots;
        let mut out = Vec::new();
        while left > 0 {
            let n = left.min(self.slots_per_region);
            let len = (n - 1) * self.stride + self.slot_len;
            out.push(match path {
                TransferPath::ZeroCopy => round_up(len, page_size()),
                TransferPath::Copy => len,
            });
            left -= n;
        }
        out
    }

    /// The memory plan for this layout with `in_flight` URBs of `packets` packets each.
    pub fn plan(&self, path: TransferPath, in_flight: usize, packets: usize) -> MemoryPlan {
        MemoryPlan {
            path,
            region_bytes: self.region_lengths(path).into_iter().map(|l| l as u64).collect(),
            urbs_in_flight: in_flight,
            packets_per_urb: packets,
            urb_bytes: self.slot_len,
        }
    }
}

/// The slots of one capture, and the regions behind them.
#[derive(Debug)]
pub struct BufferPool {
    layout: PoolLayout,
    path: TransferPath,
    regions: Vec<Arc<Region>>,
    slots: Vec<Slot>,
}

impl BufferPool {
    /// Builds the pool from regions that `map` returns (mmap of the usbfs fd, or anonymous
    /// pages in the simulator). Fails with `map`'s error; regions mapped so far are released.
    pub fn mapped<E>(
        layout: PoolLayout,
        mut map: impl FnMut(usize) -> Result<Region, E>,
    ) -> Result<BufferPool, E> {
        let lens = layout.region_lengths(TransferPath::ZeroCopy);
        let mut regions = Vec::with_capacity(lens.len());
        for len in lens {
            regions.push(Arc::new(map(len)?));
        }
        Ok(Self::carve(layout, TransferPath::ZeroCopy, regions))
    }

    /// Builds the pool from heap memory (copy mode).
    pub fn heap(layout: PoolLayout) -> BufferPool {
        let regions = layout
            .region_lengths(TransferPath::Copy)
            .into_iter()
            .map(|l| Arc::new(Region::heap(l)))
            .collect();
        Self::carve(layout, TransferPath::Copy, regions)
    }

    fn carve(layout: PoolLayout, path: TransferPath, regions: Vec<Arc<Region>>) -> BufferPool {
        let mut left = layout.slots;
        let mut slots = Vec::with_capacity(layout.slots);
        for r in &regions {
            let n = left.min(layout.slots_per_region);
            slots.extend(r.carve(n, layout.slot_len, layout.stride));
            left -= n;
        }
        BufferPool { layout, path, regions, slots }
    }

    /// Fills every slot with a repeating pattern, so that stale bytes are recognisable
    /// (the canary test, and the raw buffer view's demonstration of gaps).
    pub fn prefill(&mut self, pattern: &[u8]) {
        if pattern.is_empty() {
            return;
        }
        for s in &mut self.slots {
            for (b, p) in s.bytes_mut().iter_mut().zip(pattern.iter().cycle()) {
                *b = *p;
            }
        }
    }

    pub fn layout(&self) -> PoolLayout {
        self.layout
    }

    pub fn path(&self) -> TransferPath {
        self.path
    }

    /// Bytes of all regions.
    pub fn bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.len() as u64).sum()
    }

    pub fn regions(&self) -> &[Arc<Region>] {
        &self.regions
    }

    /// The slots, before they are handed out (read-only: nothing is in flight yet).
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Hands the slots out (to become URB buffers). The regions stay alive through them.
    pub fn into_slots(self) -> Vec<Slot> {
        self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::Containment;

    #[test]
    fn every_slot_lies_wholly_inside_one_region() {
        for &(slot_len, count) in &[(196usize, 9usize), (3072 * 128, 5), (1, 1), (700_000, 3), (1 << 20, 2)] {
            let layout = PoolLayout::new(slot_len, count);
            let pool = BufferPool::mapped(layout, Region::map_anonymous).unwrap();
            let regions: Vec<_> = pool.regions().to_vec();
            let slots = pool.into_slots();
            assert_eq!(slots.len(), count);
            for s in &slots {
                let inside =
                    regions.iter().filter(|r| r.contains(s.addr(), s.len()) == Containment::Inside).count();
                assert_eq!(
                    inside,
                    1,
                    "slot at +{} len {} not inside exactly one region",
                    s.offset(),
                    s.len()
                );
                assert!(regions.iter().all(|r| r.contains(s.addr(), s.len()) != Containment::Overhangs));
            }
            for r in &regions {
                assert!(r.len() <= PoolLayout::MAX_REGION_BYTES.max(round_up(slot_len, page_size())));
            }
        }
    }

    #[test]
    fn plan_matches_what_was_mapped() {
        let layout = PoolLayout::new(3000, 700);
        let pool = BufferPool::mapped(layout, Region::map_anonymous).unwrap();
        let plan = layout.plan(TransferPath::ZeroCopy, 699, 10);
        assert_eq!(plan.pool_bytes(), pool.bytes());
        assert!(plan.region_bytes.len() > 1);
    }

    #[test]
    fn a_failed_mapping_fails_the_pool() {
        let layout = PoolLayout::new(4096, 600);
        let mut calls = 0;
        let err = BufferPool::mapped(layout, |len| {
            calls += 1;
            if calls == 2 {
                Err(nix::errno::Errno::ENOMEM)
            } else {
                Region::map_anonymous(len)
            }
        })
        .unwrap_err();
        assert_eq!(err, nix::errno::Errno::ENOMEM);
    }

    #[test]
    fn prefill_reaches_every_byte() {
        let mut pool = BufferPool::heap(PoolLayout::new(100, 3));
        pool.prefill(b"CANARY!!");
        for s in pool.into_slots() {
            assert_eq!(&s.bytes()[..8], b"CANARY!!");
            assert_eq!(s.bytes()[99], b'A'); // 99 % 8 == 3
        }
    }
}
