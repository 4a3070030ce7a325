//! The capture engine: a thread that keeps iso URBs in flight on a [`Backend`], walks
//! completed packets, copies only their valid bytes, decodes them and pushes them into
//! lock-free rings, never blocking on a consumer.

pub mod backend;

pub use backend::{Backend, BackendError, BackendInfo};
