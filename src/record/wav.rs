//! A WAV writer fed with the raw bytes the engine delivers (whole frames in the device's
//! format): by default in that native format, so a recording is bit-exact with what the
//! device sent; or as 32-bit float ([`WavSamples::Float`], decoded as the scope sees it). The header is brought
//! up to date every second, so even a killed process leaves a playable file.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::dsp::{PcmFormat, SampleFormat};

/// Why a recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create WAV file {path}: {source}. Check that the folder exists and is writable")]
    Create { path: PathBuf, source: hound::Error },
    #[error("writing WAV file {path} failed: {source}. Check free disk space")]
    Write { path: PathBuf, source: hound::Error },
    #[error("recording to {path}: {reason}")]
    Thread { path: PathBuf, reason: String },
}

/// The sample format a recording is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum WavSamples {
    /// The device's own format, bit-exact.
    #[default]
    Native,
    /// IEEE float 32-bit, values in [-1, 1) as [`crate::dsp::decode_into`] makes them.
    Float,
}

/// Writes frames of one [`PcmFormat`] to a WAV file.
pub struct WavRecorder {
    path: PathBuf,
    format: PcmFormat,
    samples: WavSamples,
    /// Decoded samples (float output only).
    decoded: Vec<f32>,
    writer: hound::WavWriter<BufWriter<File>>,
    frames: u64,
    last_flush: Instant,
    /// Bytes of a frame split across two `write_bytes` calls.
    partial: Vec<u8>,
}

impl WavRecorder {
    /// Creates (truncates) `path` for `format`, written in that native format.
    pub fn create(path: &Path, format: PcmFormat) -> Result<WavRecorder, RecordError> {
        WavRecorder::create_as(path, format, WavSamples::Native)
    }

    /// Creates (truncates) `path` for device frames of `format`, written as `samples`.
    pub fn create_as(
        path: &Path,
        format: PcmFormat,
        samples: WavSamples,
    ) -> Result<WavRecorder, RecordError> {
        let (bits, sample_format) = match (samples, format.sample) {
            (WavSamples::Float, _) | (_, SampleFormat::F32Le) => (32, hound::SampleFormat::Float),
            (WavSamples::Native, s) => (s.bits(), hound::SampleFormat::Int),
        };
        let spec = hound::WavSpec {
            channels: format.channels,
            sample_rate: format.rate,
            bits_per_sample: bits,
            sample_format,
        };
        let writer = hound::WavWriter::create(path, spec)
            .map_err(|source| RecordError::Create { path: path.to_path_buf(), source })?;
        Ok(WavRecorder {
            path: path.to_path_buf(),
            format,
            samples,
            decoded: Vec::new(),
            writer,
            frames: 0,
            last_flush: Instant::now(),
            partial: Vec::with_capacity(format.frame_bytes()),
        })
    }

    /// Appends raw device bytes. A frame split across calls is kept until its rest arrives.
    pub fn write_bytes(&mut self, mut bytes: &[u8]) -> Result<(), RecordError> {
        let fb = self.format.frame_bytes();
        if !self.partial.is_empty() {
            let take = (fb - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() < fb {
                return Ok(());
            }
            let frame = std::mem::take(&mut self.partial);
            let res = self.write_frames(&frame);
            self.partial = frame;
            self.partial.clear();
            res?;
        }
        let whole = bytes.len() / fb * fb;
        self.partial.extend_from_slice(&bytes[whole..]);
        self.write_frames(&bytes[..whole])
    }

    /// Writes whole frames.
    fn write_frames(&mut self, frames: &[u8]) -> Result<(), RecordError> {
        let sample = self.format.sample;
        let writer = &mut self.writer;
        let res: Result<(), hound::Error> = if self.samples == WavSamples::Float {
            self.decoded.resize(frames.len() / sample.bytes(), 0.0);
            let n = crate::dsp::decode_into(sample, frames, &mut self.decoded);
            self.decoded[..n].iter().try_for_each(|&v| writer.write_sample(v))
        } else {
            frames.chunks_exact(sample.bytes()).try_for_each(|c| match sample {
                SampleFormat::U8 => writer.write_sample(c[0] as i8 ^ i8::MIN),
                SampleFormat::S8 => writer.write_sample(c[0] as i8),
                SampleFormat::S16Le => writer.write_sample(i16::from_le_bytes([c[0], c[1]])),
                SampleFormat::S24_3Le => writer.write_sample(i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8),
                SampleFormat::S24_4Le => writer.write_sample(i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8),
                SampleFormat::S32Le => writer.write_sample(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                SampleFormat::F32Le => writer.write_sample(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            })
        };
        res.map_err(|source| RecordError::Write { path: self.path.clone(), source })?;
        self.frames += (frames.len() / self.format.frame_bytes()) as u64;
        if self.last_flush.elapsed() >= Duration::from_secs(1) {
            self.writer.flush().map_err(|source| RecordError::Write { path: self.path.clone(), source })?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes the final header and closes the file.
    pub fn finish(self) -> Result<u64, RecordError> {
        let path = self.path;
        self.writer.finalize().map_err(|source| RecordError::Write { path, source })?;
        Ok(self.frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_hold_exactly_the_device_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for sample in [
            SampleFormat::U8,
            SampleFormat::S16Le,
            SampleFormat::S24_3Le,
            SampleFormat::S32Le,
            SampleFormat::F32Le,
        ] {
            let format = PcmFormat { sample, channels: 2, rate: 48_000 };
            let path = dir.path().join(format!("{sample}.wav"));
            let bytes: Vec<u8> = (0..format.frame_bytes() * 50).map(|i| (i * 37 % 251) as u8).collect();
            let mut rec = WavRecorder::create(&path, format).unwrap();
            rec.write_bytes(&bytes[..7]).unwrap();
            rec.write_bytes(&bytes[format.frame_bytes()..]).unwrap();
            // The 7 bytes and the rest form a stream whose split points are not on frames.
            let mut stream = bytes[..7].to_vec();
            stream.extend_from_slice(&bytes[format.frame_bytes()..]);
            let frames = stream.len() / format.frame_bytes();
            assert_eq!(rec.finish().unwrap(), frames as u64);
            let file = std::fs::read(&path).unwrap();
            let want = &stream[..frames * format.frame_bytes()];
            assert_eq!(&file[file.len() - want.len()..], want, "{sample}");
        }
    }

    /// WAV's 8-bit samples are unsigned: an S8 device's samples are stored offset by 128 and
    /// read back as the signed values they were.
    #[test]
    fn s8_recordings_read_back_as_the_signed_samples() {
        let dir = tempfile::tempdir().unwrap();
        let format = PcmFormat { sample: SampleFormat::S8, channels: 2, rate: 8000 };
        let path = dir.path().join("s8.wav");
        let mut rec = WavRecorder::create(&path, format).unwrap();
        rec.write_bytes(&[0x80, 0x00, 0x7f, 0xff]).unwrap();
        assert_eq!(rec.finish().unwrap(), 2);
        let mut r = hound::WavReader::open(&path).unwrap();
        let got: Vec<i8> = r.samples::<i8>().map(Result::unwrap).collect();
        assert_eq!(got, [-128, 0, 127, -1]);
    }

    #[test]
    fn float_recordings_hold_the_decoded_samples() {
        let dir = tempfile::tempdir().unwrap();
        let format = PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 48_000 };
        let path = dir.path().join("f.wav");
        let values: [i16; 6] = [0, 16384, -32768, 32767, -1, 1];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut rec = WavRecorder::create_as(&path, format, WavSamples::Float).unwrap();
        rec.write_bytes(&bytes[..5]).unwrap();
        rec.write_bytes(&bytes[5..]).unwrap();
        assert_eq!(rec.finish().unwrap(), 3);
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().sample_format, hound::SampleFormat::Float);
        let got: Vec<f32> = r.samples::<f32>().map(Result::unwrap).collect();
        let want: Vec<f32> = values.iter().map(|&v| f32::from(v) / 32768.0).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_unwritable_path_is_a_clear_error() {
        let format = PcmFormat { sample: SampleFormat::S16Le, channels: 1, rate: 8000 };
        let err = WavRecorder::create(Path::new("/nonexistent/dir/x.wav"), format).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/dir/x.wav"), "{err}");
    }
}
