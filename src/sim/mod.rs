//! Simulated devices: signal models, a deterministic packet schedule with fault injection,
//! an in-process backend with the kernel's usbfs semantics, a verifier that checks a
//! capture frame by frame against what the device sent, and the virtual USB device model
//! ([`device`]) with its two wire transports ([`usbip`], [`usbredir`]).

pub mod backend;
pub mod device;
pub mod schedule;
pub mod signal;
pub mod usbip;
pub mod usbredir;
pub mod verify;

pub use backend::{SimBackend, SimConfig, SimDevice, SimError};
pub use device::{UacVersion, VirtualDevice, VirtualDeviceConfig};
pub use schedule::{Faults, PacketPlan, Schedule};
pub use signal::{PcmTable, Signal};
pub use verify::{check_contiguous, Alignment, Verifier};
