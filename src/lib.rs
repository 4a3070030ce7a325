//! isoscope: a USB isochronous oscilloscope and audio monitor for Linux with usbfs
//! zero-copy capture.
//!
//! The data path, in the order bytes travel:
//! [`usb`] (devices, URBs) -> [`dma`] (the mmap'd buffer pool) -> [`capture`] (the engine
//! thread: reap, walk packets, copy valid bytes) -> [`dsp`] (decode) -> lock-free rings to
//! consumers. [`sim`] provides devices without hardware; [`source`] opens a USB or simulated
//! device from a selector. [`app`] and [`ui`] are the desktop GUI (eframe); [`audio`]
//! replays a capture through cpal; [`record`] writes WAV and CSV.

/// Unit tests check that the real-time paths (the audio callback) never call the
/// allocator; this allocator counts the calls made inside `assert_no_alloc`.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

#[cfg(feature = "gui")]
pub mod app;
#[cfg(feature = "audio")]
pub mod audio;
pub mod capture;
pub mod dma;
pub mod dsp;
pub mod fix;
pub mod record;
#[cfg(feature = "audio")]
pub mod session;
pub mod sim;
pub mod source;
#[cfg(feature = "gui")]
pub mod ui;
pub mod usb;
