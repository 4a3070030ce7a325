//! The capture engine: a thread that keeps iso URBs in flight on a [`Backend`], walks
//! completed packets, copies only their valid bytes, decodes them and pushes them into
//! lock-free rings, never blocking on a consumer.

pub mod engine;
pub mod monitor;
pub mod plan;
pub mod stats;

pub use crate::usb::backend::{Backend, BackendError, BackendInfo, StreamConfig};
pub use crate::usb::wake::{self, Wake};
pub use engine::{Capture, CaptureConfig, CaptureError, CaptureInfo, Command, Event, Sink};
pub use monitor::{RawPacket, RawSnapshot, RawTap, SlotState, SlotStates};
pub use plan::{ModeRequest, UrbPlan};
pub use stats::{CaptureCounters, StatsSnapshot};
