//! Recording captured audio: WAV files (written on their own thread beside a capture) in the device's native sample format or float, and
//! CSV export of a window of decoded frames.

pub mod csv;
mod recording;
mod wav;

pub use csv::{to_csv_string, write_csv};
pub use recording::{Recording, RecordingProbe, RecordingSummary};
pub use wav::{Kept, RecordError, WavRecorder, WavSamples};
