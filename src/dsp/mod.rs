//! Signal processing on captured samples: PCM decoding, the min/max decimation pyramid
//! for plots, and the edge trigger.

pub mod decimate;
pub mod decode;
pub mod trigger;

pub use decode::{decode_into, PcmFormat, SampleFormat};
