//! Signal processing on captured samples: PCM decoding, the min/max decimation pyramid
//! for plots, the edge trigger, the spectrum and the level meters. Pure code, no GUI.

pub mod channel_map;
pub mod decimate;
pub mod decode;
pub mod meter;
pub mod spectrum;
pub mod trigger;

pub use channel_map::{ChannelMap, ChannelMapError};
pub use decode::{decode_into, PcmFormat, SampleFormat};
