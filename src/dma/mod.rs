//! Buffer memory for iso URBs: regions (mmap'd usbfs DMA pages, or heap in copy mode)
//! carved into slots, and the usbfs memory budget they are accounted against.
//!
//! The data path starts here: the host controller DMAs packets into a [`Slot`], the
//! capture engine reads only the valid bytes back out of it.

mod budget;
mod pool;
pub mod probe;
mod region;

pub use budget::{
    human_bytes, kernel_urb_overhead, BudgetError, MemoryLimit, MemoryPlan, USBFS_MEMORY_MB_PATH,
    USB_MEMORY_STRUCT_BYTES,
};
pub use pool::{BufferPool, PoolLayout};
pub use region::{page_size, Containment, Region, RegionKind, Slot};

/// Which way a transfer's bytes reach user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferPath {
    /// The buffer lies in an mmap'd usbfs region: the controller DMAs into it, nothing is copied.
    ZeroCopy,
    /// The buffer is ordinary memory: the kernel bounces through its own buffer and copies at reap.
    Copy,
}

impl std::fmt::Display for TransferPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransferPath::ZeroCopy => "zero-copy",
            TransferPath::Copy => "copy",
        })
    }
}
