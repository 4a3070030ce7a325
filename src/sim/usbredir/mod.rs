//! A usbredir usb-host (the side with the device) for QEMU's `usb-redir`: the protocol's wire
//! format, without the C library, and the server that carries the virtual device
//! ([`crate::sim::device`]) to QEMU's emulated xHCI, EHCI and UHCI controllers.

pub mod server;
pub mod wire;

pub use server::{bind, serve, Replug, ServerError};
