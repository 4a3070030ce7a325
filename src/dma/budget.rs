//! What the kernel counts against `usbfs_memory_mb` for a capture plan, and the preflight
//! check that refuses a plan over the cap before anything streams (DESIGN invariant 3).

use std::fmt::Write as _;
use std::path::Path;

use super::TransferPath;

/// The sysfs file holding the machine-wide usbfs cap in MiB (0 = unlimited).
pub const USBFS_MEMORY_MB_PATH: &str = "/sys/module/usbcore/parameters/usbfs_memory_mb";

/// Bytes the kernel adds per mmap'd region for its `struct usb_memory` (rounded up).
pub const USB_MEMORY_STRUCT_BYTES: u64 = 96;

/// Bytes the kernel counts for one submitted iso URB besides its buffer:
/// `sizeof(struct async) + sizeof(struct urb)` (about 400 on x86_64; we round up to 512)
/// plus a 16-byte `usb_iso_packet_descriptor` per packet (drivers/usb/core/devio.c,
/// `proc_do_submiturb`). In copy mode the kernel adds the buffer length on top.
pub const fn kernel_urb_overhead(packets: usize) -> u64 {
    512 + 16 * packets as u64
}

/// The two caps a plan must fit under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemoryLimit {
    /// The machine-wide usbfs cap in MiB as read from sysfs (0 = unlimited), or `None`
    /// when it could not be read (then only the app cap applies).
    pub usbfs_memory_mb: Option<u32>,
    /// isoscope's own cap on its buffer memory, in bytes.
    pub app_cap_bytes: u64,
}

impl MemoryLimit {
    /// The default app cap: 8 MiB, half the kernel's default usbfs cap, so another usbfs
    /// user on the machine still has room.
    pub const DEFAULT_APP_CAP: u64 = 8 << 20;

    /// Reads `usbfs_memory_mb` from sysfs (or `None` if it cannot be read).
    pub fn from_sysfs(app_cap_bytes: u64) -> MemoryLimit {
        MemoryLimit { usbfs_memory_mb: read_usbfs_memory_mb(Path::new(USBFS_MEMORY_MB_PATH)), app_cap_bytes }
    }

    /// The usbfs cap in bytes, `None` if unlimited or unknown.
    pub fn usbfs_bytes(&self) -> Option<u64> {
        match self.usbfs_memory_mb {
            Some(0) | None => None,
            Some(mb) => Some(u64::from(mb) << 20),
        }
    }

    /// The cap shown on the gauge: the smaller of the app cap and the usbfs cap.
    pub fn effective_bytes(&self) -> u64 {
        self.usbfs_bytes().map_or(self.app_cap_bytes, |u| u.min(self.app_cap_bytes))
    }
}

/// Reads a `usbfs_memory_mb`-style file: a decimal number of MiB.
pub fn read_usbfs_memory_mb(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The memory a capture will hold: its buffer regions and its URBs in flight.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemoryPlan {
    pub path: TransferPath,
    /// Bytes of each buffer region (whole pages for mapped regions).
    pub region_bytes: Vec<u64>,
    /// URBs the engine keeps submitted.
    pub urbs_in_flight: usize,
    /// Packets per URB.
    pub packets_per_urb: usize,
    /// Buffer bytes per URB (the sum of its packets' requested lengths).
    pub urb_bytes: usize,
}

impl MemoryPlan {
    /// Bytes of buffer memory the pool holds (mapped or heap).
    pub fn pool_bytes(&self) -> u64 {
        self.region_bytes.iter().sum()
    }

    /// Bytes the kernel counts against `usbfs_memory_mb` for this plan while streaming.
    pub fn usbfs_bytes(&self) -> u64 {
        let per_urb = kernel_urb_overhead(self.packets_per_urb);
        let urbs = self.urbs_in_flight as u64;
        match self.path {
            TransferPath::ZeroCopy => {
                let regions = self.region_bytes.len() as u64;
                self.pool_bytes() + regions * USB_MEMORY_STRUCT_BYTES + urbs * per_urb
            }
            TransferPath::Copy => urbs * (per_urb + self.urb_bytes as u64),
        }
    }

    /// Bytes counted against the app's own cap: the pool, plus whatever the kernel holds
    /// for us that is not the pool itself (URB bookkeeping, copy-mode bounce buffers).
    pub fn accounted_bytes(&self) -> u64 {
        match self.path {
            TransferPath::ZeroCopy => self.usbfs_bytes(),
            TransferPath::Copy => self.pool_bytes() + self.usbfs_bytes(),
        }
    }

    /// The preflight check (DESIGN invariant 3): refuses a plan over either cap with the
    /// numbers and the fix.
    pub fn check(&self, limit: &MemoryLimit) -> Result<(), BudgetError> {
        if let Some(cap) = limit.usbfs_bytes() {
            let need = self.usbfs_bytes();
            if need > cap {
                return Err(BudgetError::OverUsbfsCap {
                    need,
                    cap_mb: limit.usbfs_memory_mb.unwrap_or(0),
                    plan: self.describe(),
                    suggest_mb: suggest_mb(need),
                });
            }
        }
        let need = self.accounted_bytes();
        if need > limit.app_cap_bytes {
            return Err(BudgetError::OverAppCap { need, cap: limit.app_cap_bytes, plan: self.describe() });
        }
        Ok(())
    }

    /// "8 URBs x 16 packets x 196 B, zero-copy pool 28.0 KiB in 1 region"
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} URBs x {} packets ({} per URB), {} pool {} in {} region{}",
            self.urbs_in_flight,
            self.packets_per_urb,
            human_bytes(self.urb_bytes as u64),
            self.path,
            human_bytes(self.pool_bytes()),
            self.region_bytes.len(),
            if self.region_bytes.len() == 1 { "" } else { "s" },
        );
        let _ = write!(s, ", usbfs counts {}", human_bytes(self.usbfs_bytes()));
        s
    }
}

/// The next power of two MiB that holds `need` with room for others: what we tell users to set.
fn suggest_mb(need: u64) -> u32 {
    let mb = need.div_ceil(1 << 20).max(1) * 2;
    mb.next_power_of_two().clamp(16, 1 << 16) as u32
}

/// Formats a byte count as B, KiB or MiB with one decimal.
pub fn human_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1 << 20 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
    }
}

/// A plan that does not fit. Each message names the knob and the numbers; [`BudgetError::fix`]
/// says what to change.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error(
        "usbfs memory cap too small: this capture needs {need_h} of usbfs memory ({plan}) but \
         usbfs_memory_mb is {cap_mb} MiB for the whole machine",
        need_h = human_bytes(*need)
    )]
    OverUsbfsCap { need: u64, cap_mb: u32, plan: String, suggest_mb: u32 },
    #[error(
        "isoscope's own buffer cap is too small: this capture needs {need_h} ({plan}) but the \
         app cap is {cap_h}",
        need_h = human_bytes(*need),
        cap_h = human_bytes(*cap)
    )]
    OverAppCap { need: u64, cap: u64, plan: String },
}

impl BudgetError {
    /// What to change: the plan, or the cap that is short.
    pub fn fix(&self) -> Option<crate::fix::Fix> {
        Some(match self {
            BudgetError::OverUsbfsCap { suggest_mb, .. } => {
                crate::fix::Fix::SmallerPlan { raise_cap_mb: Some(*suggest_mb) }
            }
            BudgetError::OverAppCap { .. } => crate::fix::Fix::RaiseAppCap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(path: TransferPath) -> MemoryPlan {
        MemoryPlan {
            path,
            region_bytes: vec![1 << 20],
            urbs_in_flight: 8,
            packets_per_urb: 128,
            urb_bytes: 128 * 1024,
        }
    }

    #[test]
    fn zero_copy_counts_regions_and_urb_overhead_but_not_buffers_twice() {
        let p = plan(TransferPath::ZeroCopy);
        assert_eq!(p.usbfs_bytes(), (1 << 20) + 96 + 8 * (512 + 16 * 128));
    }

    #[test]
    fn copy_mode_counts_bounce_buffers() {
        let p = MemoryPlan { region_bytes: vec![9 * 128 * 1024], ..plan(TransferPath::Copy) };
        assert_eq!(p.usbfs_bytes(), 8 * (512 + 16 * 128 + 128 * 1024));
        assert_eq!(p.accounted_bytes(), p.pool_bytes() + p.usbfs_bytes());
    }

    #[test]
    fn over_the_usbfs_cap_names_the_knob_numbers_and_fix() {
        let limit = MemoryLimit { usbfs_memory_mb: Some(1), app_cap_bytes: 64 << 20 };
        let err = plan(TransferPath::ZeroCopy).check(&limit).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("usbfs_memory_mb is 1 MiB"), "{msg}");
        assert!(msg.contains("1.0 MiB"), "{msg}");
        assert!(!msg.contains("--"), "no command-line flag in library text: {msg}");
        let fix = err.fix().unwrap();
        assert_eq!(fix, crate::fix::Fix::SmallerPlan { raise_cap_mb: Some(16) });
        let cli = fix.for_cli();
        assert!(cli.contains(USBFS_MEMORY_MB_PATH) && cli.contains("usbcore.usbfs_memory_mb=16"), "{cli}");
        assert!(cli.contains("--urbs"), "{cli}");
    }

    #[test]
    fn unlimited_usbfs_leaves_only_the_app_cap() {
        let limit = MemoryLimit { usbfs_memory_mb: Some(0), app_cap_bytes: 64 << 20 };
        assert_eq!(plan(TransferPath::ZeroCopy).check(&limit), Ok(()));
        let tight = MemoryLimit { usbfs_memory_mb: Some(0), app_cap_bytes: 1 << 20 };
        assert!(matches!(plan(TransferPath::ZeroCopy).check(&tight), Err(BudgetError::OverAppCap { .. })));
        assert_eq!(tight.effective_bytes(), 1 << 20);
    }

    #[test]
    fn sysfs_value_is_parsed_or_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("usbfs_memory_mb");
        std::fs::write(&f, "16\n").unwrap();
        assert_eq!(read_usbfs_memory_mb(&f), Some(16));
        std::fs::write(&f, "garbage").unwrap();
        assert_eq!(read_usbfs_memory_mb(&f), None);
        assert_eq!(read_usbfs_memory_mb(&dir.path().join("missing")), None);
    }
}
