//! A WAV writer fed with the raw bytes the engine delivers (whole frames in the device's
//! format): by default in that native format, so a recording is bit-exact with what the
//! device sent; or as 32-bit float ([`WavSamples::Float`], decoded as the scope sees it). The header is brought
//! up to date every second, so even a killed process leaves a playable file. When a write
//! fails (a full disk: ENOSPC), the file is cut to the whole frames it holds and its header
//! brought up to them, so it stays valid up to there; later writes are ignored.

use std::fs::File;
use std::io::{self, BufWriter};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::dsp::{PcmFormat, SampleFormat};

/// Why a recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create WAV file {path}: {error}. Check that the folder exists and is writable")]
    Create { path: PathBuf, error: hound::Error },
    /// The disk (or the quota) ran out of space: the file is closed with what fitted.
    #[error(
        "recording to {path} stopped: the disk is full ({errno}) after {frames} frames ({seconds:.1} s); {kept}. \
         Free space on that disk, or record to another one; the capture goes on"
    )]
    DiskFull { path: PathBuf, errno: &'static str, frames: u64, seconds: f64, kept: Kept },
    /// Any other write error: the file is closed with what reached it.
    #[error(
        "writing WAV file {path} failed after {frames} frames ({seconds:.1} s): {error}; {kept}. \
         Check the disk and record again"
    )]
    Write { path: PathBuf, error: hound::Error, frames: u64, seconds: f64, kept: Kept },
    #[error("recording to {path}: {reason}")]
    Thread { path: PathBuf, reason: String },
}

impl RecordError {
    /// The frames the file holds after a write error (it is closed and, when
    /// [`Kept::Valid`], plays up to there); `None` for the other errors.
    pub fn frames_kept(&self) -> Option<u64> {
        match self {
            RecordError::DiskFull { frames, .. } | RecordError::Write { frames, .. } => Some(*frames),
            RecordError::Create { .. } | RecordError::Thread { .. } => None,
        }
    }
}

/// What became of a file whose writing failed.
#[derive(Debug)]
pub enum Kept {
    /// The header was brought up to the whole frames in the file: it plays up to there.
    Valid,
    /// The file could not be repaired (the reason); its header may claim less than it holds.
    Damaged(String),
}

impl std::fmt::Display for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kept::Valid => f.write_str("the file is closed and plays up to there"),
            Kept::Damaged(why) => write!(f, "the file could not be closed properly ({why})"),
        }
    }
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
    /// `None` once a write failed and the file was closed.
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    /// The same open file, to repair the header after a failed write.
    file: File,
    /// Bytes of one frame in the file (not always the device's: float, S24 in 4 bytes).
    file_frame_bytes: u64,
    /// Frames written so far (after a failed write: the frames the file holds).
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
        let create =
            |e: io::Error| RecordError::Create { path: path.to_path_buf(), error: hound::Error::IoError(e) };
        // Read-write: the header is read back to repair it after a failed write.
        let file =
            File::options().read(true).write(true).create(true).truncate(true).open(path).map_err(create)?;
        let repair = file.try_clone().map_err(create)?;
        let writer = hound::WavWriter::new(BufWriter::new(file), spec)
            .map_err(|error| RecordError::Create { path: path.to_path_buf(), error })?;
        Ok(WavRecorder {
            path: path.to_path_buf(),
            format,
            samples,
            decoded: Vec::new(),
            writer: Some(writer),
            file: repair,
            file_frame_bytes: u64::from(bits.div_ceil(8)) * u64::from(format.channels),
            frames: 0,
            last_flush: Instant::now(),
            partial: Vec::with_capacity(format.frame_bytes()),
        })
    }

    /// Appends raw device bytes. A frame split across calls is kept until its rest arrives.
    /// After an error (the file is then closed, valid up to the frames it holds), further
    /// bytes are ignored.
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
        let Some(writer) = self.writer.as_mut() else { return Ok(()) };
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
        if let Err(e) = res {
            return Err(self.fail(e));
        }
        self.frames += (frames.len() / self.format.frame_bytes()) as u64;
        if self.last_flush.elapsed() >= Duration::from_secs(1) {
            if let Err(e) = writer.flush() {
                return Err(self.fail(e));
            }
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    /// After a failed write: lets go of the writer (what it still buffered is lost), cuts
    /// the file to the whole frames it holds and brings the header up to them.
    fn fail(&mut self, error: hound::Error) -> RecordError {
        // hound's drop tries to update the header once more; its errors are ignored.
        drop(self.writer.take());
        let kept = match self.repair() {
            Ok(frames) => {
                self.frames = frames.min(self.frames);
                Kept::Valid
            }
            Err(e) => Kept::Damaged(e.to_string()),
        };
        let path = self.path.clone();
        let (frames, seconds) = (self.frames, self.frames as f64 / f64::from(self.format.rate.max(1)));
        match disk_full(&error) {
            Some(errno) => RecordError::DiskFull { path, errno, frames, seconds, kept },
            None => RecordError::Write { path, error, frames, seconds, kept },
        }
    }

    /// Cuts the file to the whole frames after its header and writes their length into the
    /// header (RIFF and data chunk sizes). Returns the frames the file holds.
    fn repair(&self) -> io::Result<u64> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mut head = [0u8; 512];
        let n = self.file.read_at(&mut head, 0)?;
        let head = &head[..n];
        if head.len() < 12 || &head[..4] != b"RIFF" || &head[8..12] != b"WAVE" {
            return Err(bad("no WAV header in the file"));
        }
        let mut pos = 12;
        let data_start = loop {
            let Some(chunk) = head.get(pos..pos + 8) else { return Err(bad("no data chunk in the header")) };
            let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]) as usize;
            if &chunk[..4] == b"data" {
                break pos + 8;
            }
            pos += 8 + size + (size & 1);
        } as u64;
        let frames = self.file.metadata()?.len().saturating_sub(data_start) / self.file_frame_bytes.max(1);
        let data_len = frames * self.file_frame_bytes;
        let riff_len =
            u32::try_from(data_start + data_len - 8).map_err(|_| bad("over 4 GiB, too long for WAV"))?;
        self.file.set_len(data_start + data_len)?;
        self.file.write_all_at(&riff_len.to_le_bytes(), 4)?;
        self.file.write_all_at(&(data_len as u32).to_le_bytes(), data_start - 4)?;
        Ok(frames)
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes the final header and closes the file. After an earlier error the file is
    /// already closed: this says how many frames it holds.
    pub fn finish(mut self) -> Result<u64, RecordError> {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.finalize() {
                return Err(self.fail(e));
            }
        }
        Ok(self.frames)
    }
}

/// The errno's name when `e` says the disk or the quota is full.
fn disk_full(e: &hound::Error) -> Option<&'static str> {
    let hound::Error::IoError(e) = e else { return None };
    match nix::errno::Errno::from_raw(e.raw_os_error()?) {
        nix::errno::Errno::ENOSPC => Some("ENOSPC"),
        nix::errno::Errno::EDQUOT => Some("EDQUOT"),
        _ => None,
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

    /// /dev/full fails every write with ENOSPC and cannot be repaired (it reads as zeros):
    /// still a disk-full error that names the file, and writes after it are ignored.
    #[test]
    fn a_full_device_is_a_disk_full_error_even_when_the_file_cannot_be_repaired() {
        let format = PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 48_000 };
        let path = Path::new("/dev/full");
        let mut rec = WavRecorder::create(path, format).unwrap();
        let bytes = vec![0x11u8; 64 << 10]; // past BufWriter's 8 KiB
        let err = rec.write_bytes(&bytes).expect_err("/dev/full is full");
        match &err {
            RecordError::DiskFull { errno: "ENOSPC", kept: Kept::Damaged(_), .. } => {}
            other => panic!("want DiskFull with a damaged file, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("/dev/full") && msg.contains("disk is full (ENOSPC)"), "{msg}");
        assert!(rec.write_bytes(&bytes).is_ok(), "ignored after the error");
        assert!(rec.finish().is_ok());
    }

    #[test]
    fn an_unwritable_path_is_a_clear_error() {
        let format = PcmFormat { sample: SampleFormat::S16Le, channels: 1, rate: 8000 };
        let err = WavRecorder::create(Path::new("/nonexistent/dir/x.wav"), format).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/dir/x.wav"), "{err}");
    }
}
