//! A recording running beside a capture: a thread drains a byte ring (the consumer end of a
//! [`Sink::Bytes`](crate::capture::Sink::Bytes)) into a [`WavRecorder`]. Stopping it writes
//! every frame already in the ring before the file is closed, so nothing captured up to
//! the stop is lost; it also ends on its own, with everything written, when the capture
//! ends (the ring's producer is dropped). A write error (a full disk) ends it too: the file
//! is closed, valid up to the frames it holds, and the ring let go of, so the capture drops
//! this sink and goes on with its others; [`Recording::stop`] then returns the error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ringbuf::traits::{Consumer, Observer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use super::wav::{RecordError, WavRecorder, WavSamples};
use crate::dsp::PcmFormat;

/// How often the thread looks at the ring when it is empty.
const POLL: Duration = Duration::from_millis(5);

/// What a finished recording wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordingSummary {
    pub path: PathBuf,
    pub frames: u64,
    pub seconds: f64,
}

/// Reads a running recording's progress (see [`Recording::probe`]).
#[derive(Clone, Debug)]
pub struct RecordingProbe {
    path: PathBuf,
    rate: u32,
    frames: Arc<AtomicU64>,
}

impl RecordingProbe {
    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seconds written so far.
    pub fn seconds(&self) -> f64 {
        self.frames.load(Relaxed) as f64 / f64::from(self.rate.max(1))
    }
}

/// A WAV recording fed by a capture, on its own thread.
pub struct Recording {
    path: PathBuf,
    format: PcmFormat,
    stop: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<u64, RecordError>>>,
}

impl Recording {
    /// A byte ring for `format` holding `seconds` of audio: give the producer to the
    /// capture (at start or with [`Capture::attach`](crate::capture::Capture::attach)) and
    /// the consumer to [`Recording::start`].
    pub fn ring(format: PcmFormat, seconds: f64) -> (HeapProd<u8>, HeapCons<u8>) {
        let frames = (f64::from(format.rate) * seconds.max(0.1)) as usize;
        HeapRb::<u8>::new(frames.max(1024) * format.frame_bytes()).split()
    }

    /// Creates `path` and starts writing what arrives in `input`.
    pub fn start(
        input: HeapCons<u8>,
        path: &Path,
        format: PcmFormat,
        samples: WavSamples,
    ) -> Result<Recording, RecordError> {
        let wav = WavRecorder::create_as(path, format, samples)?;
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, frames) = (Arc::clone(&stop), Arc::clone(&frames));
            std::thread::Builder::new()
                .name("isoscope-record".into())
                .spawn(move || drain(input, wav, &stop, &frames))
                .map_err(|e| RecordError::Thread { path: path.to_path_buf(), reason: e.to_string() })?
        };
        Ok(Recording { path: path.to_path_buf(), format, stop, frames, thread: Some(thread) })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Relaxed)
    }

    /// Seconds written so far.
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.format.rate.max(1))
    }

    /// A handle that reads the progress from another thread.
    pub fn probe(&self) -> RecordingProbe {
        RecordingProbe { path: self.path.clone(), rate: self.format.rate, frames: Arc::clone(&self.frames) }
    }

    /// Whether the thread has ended (the capture ended, or writing failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Writes what is still in the ring, closes the file and says what it holds.
    pub fn stop(mut self) -> Result<RecordingSummary, RecordError> {
        self.stop.store(true, Relaxed);
        let frames = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r?,
            Some(Err(_)) | None => {
                return Err(RecordError::Thread {
                    path: self.path.clone(),
                    reason: "the recording thread panicked".into(),
                })
            }
        };
        let seconds = frames as f64 / f64::from(self.format.rate.max(1));
        Ok(RecordingSummary { path: self.path.clone(), frames, seconds })
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: write until told to stop or the capture is gone, then write the rest.
fn drain(
    mut input: HeapCons<u8>,
    mut wav: WavRecorder,
    stop: &AtomicBool,
    frames: &AtomicU64,
) -> Result<u64, RecordError> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // Read the flags before the ring: what was pushed before they changed is then seen.
        let last = stop.load(Relaxed) || !input.write_is_held();
        let n = input.pop_slice(&mut buf);
        if n > 0 {
            let written = wav.write_bytes(&buf[..n]);
            frames.store(wav.frames(), Relaxed);
            // The file is closed and valid up to here; the thread ends, which lets go of
            // the ring, so the capture drops this sink and goes on with the others.
            written?;
        } else if last {
            return wav.finish();
        } else {
            std::thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::SampleFormat;
    use ringbuf::traits::Producer;

    fn format() -> PcmFormat {
        PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 48_000 }
    }

    fn samples_of(path: &Path) -> Vec<i16> {
        hound::WavReader::open(path).unwrap().into_samples::<i16>().map(Result::unwrap).collect()
    }

    #[test]
    fn stop_writes_everything_already_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.wav");
        let (mut prod, cons) = Recording::ring(format(), 1.0);
        let bytes: Vec<u8> = (0..4 * 20_000u32).map(|i| (i % 251) as u8).collect();
        // Everything is in the ring before the thread even starts: stop must still write it.
        assert_eq!(prod.push_slice(&bytes), bytes.len());
        let rec = Recording::start(cons, &path, format(), WavSamples::Native).unwrap();
        let summary = rec.stop().unwrap();
        assert_eq!(summary.frames, 20_000);
        let want: Vec<i16> = bytes.chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        assert_eq!(samples_of(&path), want);
    }

    #[test]
    fn the_recording_ends_by_itself_when_the_capture_drops_its_producer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.wav");
        let (mut prod, cons) = Recording::ring(format(), 1.0);
        let rec = Recording::start(cons, &path, format(), WavSamples::Native).unwrap();
        prod.push_slice(&[1, 0, 2, 0, 3, 0]);
        drop(prod);
        let t = std::time::Instant::now();
        while !rec.is_finished() {
            assert!(t.elapsed() < Duration::from_secs(5), "the thread never noticed");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(rec.stop().unwrap().frames, 1, "the whole frame, not the half one");
        assert_eq!(samples_of(&path), vec![1, 2]);
    }

    #[test]
    fn a_file_that_cannot_be_created_is_an_error_that_names_it() {
        let (_prod, cons) = Recording::ring(format(), 1.0);
        let e = Recording::start(cons, Path::new("/nonexistent/dir/x.wav"), format(), WavSamples::Native)
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/dir/x.wav"), "{e}");
    }
}
