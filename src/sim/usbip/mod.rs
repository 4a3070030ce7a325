//! A USB/IP server that exports a virtual USB Audio Class capture device: with the
//! kernel's vhci-hcd it becomes a real usbfs device (real ioctls, real mmap, real drivers
//! such as snd-usb-audio) on a machine without USB hardware. The device itself is
//! [`crate::sim::device`]; this module only carries it.

pub mod server;
pub mod wire;

pub use server::{bind, serve, ServerError, BUSID};
