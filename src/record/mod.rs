//! Recording captured audio: WAV files in the device's native sample format or float, and
//! CSV export of a window of decoded frames.

pub mod csv;
mod wav;

pub use csv::{to_csv_string, write_csv};
pub use wav::{RecordError, WavRecorder, WavSamples};
