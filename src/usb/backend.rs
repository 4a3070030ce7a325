//! The seam between the capture engine and a device: submit, reap and discard iso URBs,
//! and map buffer memory. Implemented by the real usbfs device and by the simulator.

use std::time::Duration;

use super::wake::Wake;
use crate::dma::{MemoryLimit, Region};
use crate::dsp::PcmFormat;
use crate::usb::urb::{IsoUrb, UrbStatusKind};
use crate::usb::Speed;

/// The iso IN stream to capture, as the descriptors describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StreamConfig {
    /// Endpoint address (with the IN bit, e.g. 0x81).
    pub endpoint: u8,
    pub format: PcmFormat,
    pub speed: Speed,
    /// One packet every `interval` (micro)frames: 2^(bInterval-1).
    pub interval: u32,
    /// Bytes requested per packet: the endpoint's bytes per interval.
    pub packet_len: u32,
}

impl StreamConfig {
    /// Microseconds between packets.
    pub fn packet_period_us(&self) -> u32 {
        self.speed.frame_us() * self.interval
    }
}

/// What a backend says about itself once opened.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackendInfo {
    /// How errors name the device: "sim (sine 1 kHz)", "/dev/bus/usb/001/004 (0d8c:0014 USB Audio)".
    pub name: String,
    pub speed: Speed,
    /// Whether the backend can map zero-copy memory at all (usbfs CAP_MMAP).
    pub can_mmap: bool,
    /// True for the in-process simulator (the UI says so on screen).
    pub simulated: bool,
}

/// Errors a backend reports to the engine. The engine turns them into capture errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The device is gone (ENODEV / ESHUTDOWN, or POLLHUP on its fd).
    #[error("device disconnected")]
    Disconnected,
    /// The kernel refused memory: over `usbfs_memory_mb` or out of memory (ENOMEM).
    #[error("out of usbfs memory (ENOMEM) during {op}")]
    NoMemory { op: &'static str },
    /// Any other errno from an operation.
    #[error("{op} failed: {errno}{}", os_hint(op, *errno))]
    Os { op: &'static str, errno: nix::errno::Errno },
}

/// What an errno from the data path's ioctls means (after the kernel's
/// Documentation/driver-api/usb/error-codes.rst and the host controller drivers); what to
/// change is [`BackendError::fix`].
fn os_hint(op: &str, errno: nix::errno::Errno) -> &'static str {
    use nix::errno::Errno;
    match (op, errno) {
        ("SUBMITURB", Errno::EFBIG) => {
            ". The URBs queued span more time than the host controller's periodic schedule holds \
             (EHCI: 1024 frames, about 1 s)"
        }
        ("SUBMITURB", Errno::ENOSPC) => {
            ". Not enough periodic bandwidth left on this bus for the stream: use a lower rate, fewer \
             channels or a smaller alt setting, unplug other audio/video devices on the same bus, or use \
             another port or controller"
        }
        ("SUBMITURB", Errno::EMSGSIZE) | ("SUBMITURB", Errno::EINVAL) => {
            ". The kernel refused the URB's layout: a packet longer than the alt setting's max packet, \
             more than 128 packets, or a packet over the kernel's per-packet limit (98304 bytes; 49152 \
             before Linux 5.2)"
        }
        ("SUBMITURB", Errno::EXDEV) | ("SUBMITURB", Errno::EL2NSYNC) => {
            ". The controller could not schedule the URB in time (it started behind the bus): the system \
             was too busy"
        }
        _ => "",
    }
}

impl BackendError {
    /// What to change, where the errno says (the URB plan or the alt setting).
    pub fn fix(&self) -> Option<crate::fix::Fix> {
        use crate::fix::Fix;
        use nix::errno::Errno;
        match self {
            BackendError::Os { op: "SUBMITURB", errno: Errno::EFBIG } => {
                Some(Fix::SmallerPlan { raise_cap_mb: None })
            }
            BackendError::Os { op: "SUBMITURB", errno: Errno::EMSGSIZE | Errno::EINVAL } => {
                Some(Fix::FewerPackets)
            }
            BackendError::Os { op: "SUBMITURB", errno: Errno::EXDEV | Errno::EL2NSYNC } => {
                Some(Fix::MoreUrbs)
            }
            BackendError::Os { errno: Errno::EBUSY, .. } => Some(Fix::CloseOtherProgram),
            _ => None,
        }
    }

    /// Maps an errno from `op` to the error kind the engine acts on (the one place errno
    /// meanings are decided for the data path).
    pub fn from_errno(op: &'static str, errno: nix::errno::Errno) -> BackendError {
        use nix::errno::Errno;
        match errno {
            e if UrbStatusKind::from_errno(e as i32).is_disconnect() => BackendError::Disconnected,
            Errno::ENOMEM => BackendError::NoMemory { op },
            errno => BackendError::Os { op, errno },
        }
    }
}

/// A device the engine can stream iso IN from.
///
/// Ownership follows the URB: `submit` takes it (the kernel now owns its memory), `reap`
/// hands it back completed. `submit` returns the URB with the error so nothing is lost.
pub trait Backend: Send + 'static {
    /// Who this is, for messages and the UI.
    fn info(&self) -> BackendInfo;

    /// The caps this device's memory counts against (`usbfs_memory_mb` and the app cap).
    fn memory_limit(&self, app_cap_bytes: u64) -> MemoryLimit;

    /// Maps `len` bytes of zero-copy buffer memory for this device (mmap of the usbfs fd).
    fn map_dma(&mut self, len: usize) -> Result<Region, nix::errno::Errno>;

    /// Queues `urb` on the device.
    fn submit(&mut self, urb: IsoUrb) -> Result<(), (IsoUrb, BackendError)>;

    /// Returns the next completed URB, waiting at most `timeout` (zero: don't wait).
    /// `Ok(None)` means nothing completed in time, or `wake` was signalled: the wait polls
    /// `wake` with the device and returns as soon as it is readable (leaving it readable;
    /// the caller clears it).
    fn reap(&mut self, timeout: Duration, wake: Option<&Wake>) -> Result<Option<IsoUrb>, BackendError>;

    /// Asks the device to cancel every URB in flight; they still come back through `reap`.
    fn discard_all(&mut self);

    /// URBs submitted and not yet reaped.
    fn in_flight(&self) -> usize;

    /// System calls made on the data path so far (submit, reap, poll, discard).
    fn syscalls(&self) -> u64;

    /// What the device's surroundings add to error `e`, which ends the capture (a real
    /// device names the other users of its bus's bandwidth for an ENOSPC). Called once, on
    /// the way out, never on the data path.
    fn explain(&self, _e: &BackendError) -> Option<String> {
        None
    }

    /// How many times slower than measured the simulator makes reads of its mapped memory
    /// (`--sim-slow-mapping`, standing in for an uncached mapping); 1 for a real device,
    /// whose mapping is simply measured.
    fn simulated_mapping_slowdown(&self) -> f64 {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::BackendError;
    use nix::errno::Errno;

    #[test]
    fn submit_errors_say_what_they_mean_and_what_to_try() {
        use crate::fix::Fix;
        let err = BackendError::from_errno("SUBMITURB", Errno::EFBIG);
        let e = err.to_string();
        assert!(e.contains("periodic schedule") && !e.contains("--"), "{e}");
        assert_eq!(err.fix(), Some(Fix::SmallerPlan { raise_cap_mb: None }));
        assert_eq!(BackendError::from_errno("SUBMITURB", Errno::EMSGSIZE).fix(), Some(Fix::FewerPackets));
        assert_eq!(BackendError::from_errno("SUBMITURB", Errno::EXDEV).fix(), Some(Fix::MoreUrbs));
        assert_eq!(BackendError::from_errno("REAPURB", Errno::EFBIG).fix(), None);
        let e = BackendError::from_errno("SUBMITURB", Errno::ENOSPC).to_string();
        assert!(e.contains("bandwidth") && e.contains("another port"), "{e}");
        let e = BackendError::from_errno("SUBMITURB", Errno::EMSGSIZE).to_string();
        assert!(e.contains("max packet") && e.contains("128 packets"), "{e}");
        assert_eq!(
            BackendError::from_errno("REAPURB", Errno::EFBIG).to_string(),
            "REAPURB failed: EFBIG: File too large"
        );
        assert_eq!(BackendError::from_errno("SUBMITURB", Errno::ENODEV), BackendError::Disconnected);
    }
}
