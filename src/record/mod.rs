//! Recording captured audio: WAV files in the device's native sample format.

mod wav;

pub use wav::{RecordError, WavRecorder};
