//! Signal processing on captured samples: PCM decoding (and, later, decimation, trigger, spectrum).

pub mod decode;

pub use decode::{decode_into, PcmFormat, SampleFormat};
