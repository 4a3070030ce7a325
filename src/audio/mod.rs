//! Live audio replay: plays a capture on a sound card through cpal, with channel mapping,
//! volume, sample-rate conversion and drift compensation, and measures the latency.
//!
//! The GUI's whole API: make a ring with [`Monitor::input_ring`], give its producer to
//! [`Capture::start`](crate::capture::Capture::start) as a
//! [`Sink::Frames`](crate::capture::Sink::Frames), and its consumer to [`Monitor::start`];
//! then [`Monitor::set_volume`], [`Monitor::set_muted`], [`Monitor::set_channel_map`],
//! [`Monitor::stats`] (latency median/p99, underruns, overruns, ratio) and
//! [`Monitor::stop`]. [`list_outputs`] fills an output menu. An [`OutputError`] says when
//! there is no sound card or it is busy; the capture is not affected by it.

pub mod drift;
pub mod monitor;
pub mod output;
pub mod stats;

pub use drift::{DriftConfig, DriftController};
pub use monitor::{ChannelMap, Monitor, MonitorConfig, MonitorError, MonitorInfo, MonitorProbe, Pacing};
pub use output::{
    default_host, list_host_outputs, list_outputs, open_output, AudioHost, OutputError, OutputInfo,
};
pub use stats::{MonitorCounters, MonitorStats, OutputFault};
