//! A usbredir usb-host (the side with the device) for QEMU's `usb-redir`: the protocol's wire
//! format, without the C library.

pub mod wire;
