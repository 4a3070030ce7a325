//! Regions of buffer memory and the slots carved from them: the one home of mmap unsafe.
//!
//! A [`Region`] is either pages mmap'd from a usbfs file descriptor (the kernel allocates
//! them DMA-able and uses them as the transfer buffer), anonymous pages that stand in for
//! them in the simulator, or heap memory (copy mode). A [`Slot`] is a disjoint sub-range
//! of one region and is the buffer of exactly one URB.
#![allow(unsafe_code)] // reason: mmap/munmap and slices over mapped memory live here

use std::alloc::{self, Layout};
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::mman::{mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};

use super::TransferPath;

/// Where a region's memory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// `mmap()` of a usbfs device fd: DMA-able pages owned by the kernel's usbfs.
    Usbfs,
    /// Anonymous pages standing in for usbfs pages (the simulated device's "DMA" memory).
    Anonymous,
    /// Heap memory: the kernel takes its copy path for URBs that point here.
    Heap,
}

/// How an address range relates to a region (the kernel's `find_memory_area` rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Containment {
    /// Starts and ends inside the region.
    Inside,
    /// Starts inside but ends past the region's end (the kernel answers EINVAL).
    Overhangs,
    /// Does not start inside the region.
    Outside,
}

/// One contiguous block of buffer memory. Unmapped or freed on drop.
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    kind: RegionKind,
}

// SAFETY: a Region is a plain owned block of memory; all access to its bytes goes through
// `Slot`s, which are disjoint and not Clone, so sharing the Region itself between threads
// hands out no aliasing access.
unsafe impl Send for Region {}
// SAFETY: as above; &Region exposes only the address and length.
unsafe impl Sync for Region {}

/// The system page size (mmap granularity).
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|v| v as usize)
        .unwrap_or(4096)
}

impl Region {
    /// Maps `len` bytes (rounded up to whole pages) of DMA-able memory from a usbfs device fd.
    ///
    /// The fd must be open read-write. The kernel counts the mapping against
    /// `usbfs_memory_mb` and answers ENOMEM over the cap, EPERM without write access.
    pub fn map_usbfs(fd: BorrowedFd<'_>, len: usize) -> Result<Region, Errno> {
        let len = round_up(len.max(1), page_size());
        let nz = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
        // SAFETY: a fresh shared mapping at an address the kernel chooses cannot alias any
        // Rust object; usbfs backs it with pages it allocated and zeroed for this device.
        let ptr = unsafe {
            mmap(None, nz, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, fd, 0)?
        };
        Ok(Region { ptr: ptr.cast(), len, kind: RegionKind::Usbfs })
    }

    /// Maps `len` bytes (rounded up to whole pages) of zeroed anonymous memory.
    pub fn map_anonymous(len: usize) -> Result<Region, Errno> {
        let len = round_up(len.max(1), page_size());
        let nz = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
        // SAFETY: a fresh private anonymous mapping cannot alias any Rust object.
        let ptr = unsafe {
            mmap_anonymous(None, nz, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_PRIVATE)?
        };
        Ok(Region { ptr: ptr.cast(), len, kind: RegionKind::Anonymous })
    }

    /// Allocates `len` zeroed bytes of heap memory (copy mode).
    pub fn heap(len: usize) -> Region {
        let len = len.max(1);
        let layout = Self::heap_layout(len);
        // SAFETY: layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        Region { ptr, len, kind: RegionKind::Heap }
    }

    fn heap_layout(len: usize) -> Layout {
        // 64-byte alignment: a cache line, like the DMA pages' own alignment is generous.
        Layout::from_size_align(len, 64).expect("region length overflows a Layout")
    }

    /// Where the memory came from.
    pub fn kind(&self) -> RegionKind {
        self.kind
    }

    /// Length in bytes (whole pages for mapped regions).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: regions are at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte's address.
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Which path the kernel takes for a buffer at `addr` of `len` bytes, relative to this region.
    pub fn contains(&self, addr: usize, len: usize) -> Containment {
        let start = self.addr();
        let end = start + self.len;
        if addr < start || addr >= end {
            Containment::Outside
        } else if addr.checked_add(len).is_some_and(|e| e <= end) {
            Containment::Inside
        } else {
            Containment::Overhangs
        }
    }

    /// The transfer path a URB buffer inside this region takes.
    pub fn path(&self) -> TransferPath {
        match self.kind {
            RegionKind::Usbfs | RegionKind::Anonymous => TransferPath::ZeroCopy,
            RegionKind::Heap => TransferPath::Copy,
        }
    }

    /// Carves the region into slots of `slot_len` bytes every `stride` bytes.
    ///
    /// Each slot lies wholly inside this region (DESIGN invariant 2) and no two overlap.
    /// Panics if the slots do not fit, which the pool's layout rules out.
    pub(crate) fn carve(self: &Arc<Self>, count: usize, slot_len: usize, stride: usize) -> Vec<Slot> {
        assert!(stride >= slot_len, "slots would overlap");
        assert!(count == 0 || (count - 1) * stride + slot_len <= self.len, "slots overhang the region");
        (0..count).map(|i| Slot { region: Arc::clone(self), offset: i * stride, len: slot_len }).collect()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        match self.kind {
            RegionKind::Usbfs | RegionKind::Anonymous => {
                // SAFETY: ptr/len are exactly what mmap returned, and every Slot holds an Arc
                // to this Region, so no slot (and no URB buffer we own) outlives the mapping.
                // For usbfs, URBs still in the kernel's hands keep the pages alive until reaped.
                let _ = unsafe { munmap(self.ptr.cast(), self.len) };
            }
            RegionKind::Heap => {
                // SAFETY: allocated in `heap` with this very layout.
                unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::heap_layout(self.len)) };
            }
        }
    }
}

/// A URB's buffer: a disjoint range of one region. Not `Clone`: whoever holds the slot
/// (the pool, a URB, the kernel through an in-flight URB) is its only user.
#[derive(Debug)]
pub struct Slot {
    region: Arc<Region>,
    offset: usize,
    len: usize,
}

impl Slot {
    /// The buffer address handed to the kernel.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        // `offset + len <= region.len` was checked in `carve`.
        self.region.ptr.as_ptr().wrapping_add(self.offset)
    }

    /// The buffer address as a number (for containment checks).
    pub fn addr(&self) -> usize {
        self.region.addr() + self.offset
    }

    /// Capacity in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false for carved slots.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of the slot inside its region.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The region this slot lies in.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Which path a URB pointing at this slot takes.
    pub fn path(&self) -> TransferPath {
        self.region.path()
    }

    /// The slot's bytes. Only callable while no transfer is in flight on it: an in-flight
    /// URB owns its slot, so whoever holds `&Slot` holds the URB outside the kernel.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: [offset, offset+len) lies inside the live region (checked in `carve`;
        // the Arc keeps it alive); slots are disjoint and not Clone, and this `&self`
        // borrow excludes `bytes_mut` on the same slot. The memory is initialised: mapped
        // pages and heap regions are zeroed when created.
        unsafe { std::slice::from_raw_parts(self.region.ptr.as_ptr().add(self.offset), self.len) }
    }

    /// The slot's bytes, mutably (the simulated device's "DMA", and test prefills).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes this the only live access to the range.
        unsafe { std::slice::from_raw_parts_mut(self.region.ptr.as_ptr().add(self.offset), self.len) }
    }
}

/// Rounds `n` up to a multiple of `to` (a power of two or any non-zero value).
pub(crate) fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_follows_the_kernel_rule() {
        let r = Region::heap(100);
        let a = r.addr();
        assert_eq!(r.contains(a, 100), Containment::Inside);
        assert_eq!(r.contains(a + 50, 50), Containment::Inside);
        assert_eq!(r.contains(a + 50, 51), Containment::Overhangs);
        assert_eq!(r.contains(a + 100, 1), Containment::Outside);
        assert_eq!(r.contains(a.wrapping_sub(1), 10), Containment::Outside);
    }

    #[test]
    fn slots_are_disjoint_and_inside_their_region() {
        let r = Arc::new(Region::map_anonymous(10_000).unwrap());
        assert_eq!(r.len() % page_size(), 0);
        let mut slots = r.carve(3, 1000, 1024);
        for (i, s) in slots.iter_mut().enumerate() {
            assert_eq!(r.contains(s.addr(), s.len()), Containment::Inside);
            s.bytes_mut().fill(i as u8 + 1);
        }
        for (i, s) in slots.iter().enumerate() {
            assert!(s.bytes().iter().all(|&b| b == i as u8 + 1));
        }
    }

    #[test]
    #[should_panic(expected = "overhang")]
    fn carving_past_the_end_is_refused() {
        let r = Arc::new(Region::heap(100));
        let _ = r.carve(2, 60, 60);
    }
}
