//! The capture engine: a thread that keeps iso URBs in flight on a [`Backend`], walks
//! completed packets, copies only their valid bytes, decodes them and pushes them into
//! lock-free rings, never blocking on a consumer.

pub mod backend;
pub mod engine;
pub mod monitor;
pub mod plan;
pub mod stats;
pub mod wake;

pub use backend::{Backend, BackendError, BackendInfo};
pub use engine::{Capture, CaptureConfig, CaptureError, CaptureInfo, Command, Event, Sink};
pub use monitor::{RawPacket, RawSnapshot, RawTap, SlotState, SlotStates};
pub use plan::{ModeRequest, StreamConfig, UrbPlan};
pub use stats::{CaptureCounters, StatsSnapshot};
pub use wake::Wake;
