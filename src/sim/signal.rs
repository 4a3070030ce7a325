//! Signal models rendered once into a looping PCM table: the simulated device copies
//! packets out of it, and the verifier compares captured frames against it.

use std::f64::consts::TAU;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::dsp::{PcmFormat, SampleFormat};

/// A test signal. Every channel carries it, each later channel phase-shifted by 90 degrees
/// (so an XY plot of a stereo sine is a circle).
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    Sine {
        freq: f64,
        amplitude: f64,
    },
    /// Several sines summed (scaled so the sum stays within full scale).
    MultiTone {
        freqs: Vec<f64>,
        amplitude: f64,
    },
    /// A linear sweep from `f0` to `f1` over `period_s`, repeating.
    Chirp {
        f0: f64,
        f1: f64,
        period_s: f64,
        amplitude: f64,
    },
    Square {
        freq: f64,
        amplitude: f64,
    },
    /// Uniform white noise from a fixed seed.
    Noise {
        amplitude: f64,
        seed: u64,
    },
    /// A WAV file, looped; its own format, channels and rate become the device's.
    Wav(PathBuf),
}

impl Default for Signal {
    fn default() -> Self {
        Signal::Sine { freq: 1000.0, amplitude: 0.5 }
    }
}

/// Why a signal could not be parsed or rendered.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error(
        "unknown signal '{0}': use sine[:HZ], multitone[:HZ,HZ,...], chirp[:F0-F1], square[:HZ], noise, or wav:PATH"
    )]
    Unknown(String),
    #[error("bad number '{value}' in signal '{signal}': {hint}")]
    BadNumber { signal: String, value: String, hint: &'static str },
    #[error("cannot read WAV file {path}: {error}. Check the path, and that it is PCM or float WAV")]
    Wav { path: PathBuf, error: hound::Error },
    #[error("WAV file {path} holds {detail}, which the simulated device cannot stream")]
    WavFormat { path: PathBuf, detail: String },
}

impl FromStr for Signal {
    type Err = SignalError;

    /// `sine`, `sine:440`, `multitone:100,1000,5000`, `chirp:20-20000`, `square:500`,
    /// `noise`, `wav:/path/file.wav`.
    fn from_str(s: &str) -> Result<Signal, SignalError> {
        let (name, arg) = s.split_once(':').map_or((s, None), |(n, a)| (n, Some(a)));
        let num = |v: &str| -> Result<f64, SignalError> {
            v.trim().parse::<f64>().ok().filter(|f| f.is_finite() && *f > 0.0).ok_or_else(|| {
                SignalError::BadNumber {
                    signal: s.to_string(),
                    value: v.to_string(),
                    hint: "frequencies are positive numbers in Hz",
                }
            })
        };
        Ok(match (name.to_ascii_lowercase().as_str(), arg) {
            ("sine", None) => Signal::default(),
            ("sine", Some(a)) => Signal::Sine { freq: num(a)?, amplitude: 0.5 },
            ("multitone", None) => Signal::MultiTone { freqs: vec![440.0, 1000.0, 3000.0], amplitude: 0.8 },
            ("multitone", Some(a)) => {
                Signal::MultiTone { freqs: a.split(',').map(num).collect::<Result<_, _>>()?, amplitude: 0.8 }
            }
            ("chirp", None) => Signal::Chirp { f0: 20.0, f1: 20_000.0, period_s: 2.0, amplitude: 0.5 },
            ("chirp", Some(a)) => {
                let (f0, f1) = a.split_once('-').ok_or_else(|| SignalError::BadNumber {
                    signal: s.to_string(),
                    value: a.to_string(),
                    hint: "a chirp range is written F0-F1, e.g. chirp:20-20000",
                })?;
                Signal::Chirp { f0: num(f0)?, f1: num(f1)?, period_s: 2.0, amplitude: 0.5 }
            }
            ("square", None) => Signal::Square { freq: 500.0, amplitude: 0.5 },
            ("square", Some(a)) => Signal::Square { freq: num(a)?, amplitude: 0.5 },
            ("noise", None) => Signal::Noise { amplitude: 0.5, seed: 1 },
            ("wav", Some(p)) if !p.is_empty() => Signal::Wav(PathBuf::from(p)),
            _ => return Err(SignalError::Unknown(s.to_string())),
        })
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signal::Sine { freq, .. } => write!(f, "sine {freq} Hz"),
            Signal::MultiTone { freqs, .. } => write!(f, "multitone {freqs:?} Hz"),
            Signal::Chirp { f0, f1, period_s, .. } => write!(f, "chirp {f0}-{f1} Hz every {period_s} s"),
            Signal::Square { freq, .. } => write!(f, "square {freq} Hz"),
            Signal::Noise { .. } => write!(f, "white noise"),
            Signal::Wav(p) => write!(f, "WAV {}", p.display()),
        }
    }
}

/// A rendered signal: `frames` frames of PCM in `format`, looping. Frame `k` of the
/// device's stream is frame `k % frames` of the table.
#[derive(Clone, Debug)]
pub struct PcmTable {
    pub format: PcmFormat,
    bytes: Vec<u8>,
    frames: usize,
}

impl PcmTable {
    /// Renders `signal` in `format` (ignored for WAV files, which bring their own).
    /// Periodic signals are rendered over one second, so a whole-Hz tone loops seamlessly.
    pub fn render(signal: &Signal, format: PcmFormat) -> Result<PcmTable, SignalError> {
        if let Signal::Wav(path) = signal {
            return Self::from_wav(path);
        }
        let frames = table_frames(signal, format.rate);
        let fb = format.frame_bytes();
        let mut bytes = vec![0u8; frames * fb];
        let mut noise = crate::sim::schedule::SplitMix64::new(match signal {
            Signal::Noise { seed, .. } => *seed,
            _ => 0,
        });
        let rate = format.rate as f64;
        for (k, frame) in bytes.chunks_exact_mut(fb).enumerate() {
            let t = k as f64 / rate;
            for (c, out) in frame.chunks_exact_mut(format.sample.bytes()).enumerate() {
                let phase = c as f64 * TAU / 4.0;
                let v = match signal {
                    Signal::Sine { freq, amplitude } => amplitude * (TAU * freq * t + phase).sin(),
                    Signal::MultiTone { freqs, amplitude } => {
                        let n = freqs.len().max(1) as f64;
                        freqs.iter().map(|f| (TAU * f * t + phase).sin()).sum::<f64>() * amplitude / n
                    }
                    Signal::Chirp { f0, f1, period_s, amplitude } => {
                        let k1 = (f1 - f0) / period_s;
                        amplitude * (TAU * (f0 * t + 0.5 * k1 * t * t) + phase).sin()
                    }
                    Signal::Square { freq, amplitude } => {
                        let x = (TAU * freq * t + phase).sin();
                        if x >= 0.0 {
                            *amplitude
                        } else {
                            -amplitude
                        }
                    }
                    Signal::Noise { amplitude, .. } => amplitude * (noise.next_f64() * 2.0 - 1.0),
                    Signal::Wav(_) => 0.0,
                };
                encode(format.sample, v, out);
            }
        }
        Ok(PcmTable { format, bytes, frames })
    }

    fn from_wav(path: &Path) -> Result<PcmTable, SignalError> {
        let file = std::fs::File::open(path)
            .map_err(|e| SignalError::Wav { path: path.to_path_buf(), error: hound::Error::IoError(e) })?;
        Self::from_wav_reader(std::io::BufReader::new(file), path)
    }

    /// Reads a WAV file's samples from `input` as a table, as `wav:PATH` and `verify-wav`
    /// do; `path` names it in errors. Any bytes give a table or an error, never a panic
    /// (fuzzed: `fuzz/fuzz_targets/wav.rs`).
    pub fn from_wav_reader(input: impl std::io::Read, path: &Path) -> Result<PcmTable, SignalError> {
        let wav_err = |error| SignalError::Wav { path: path.to_path_buf(), error };
        let mut reader = hound::WavReader::new(input).map_err(wav_err)?;
        let spec = reader.spec();
        let sample = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 8) => SampleFormat::U8,
            (hound::SampleFormat::Int, 16) => SampleFormat::S16Le,
            (hound::SampleFormat::Int, 24) => SampleFormat::S24_3Le,
            (hound::SampleFormat::Int, 32) => SampleFormat::S32Le,
            (hound::SampleFormat::Float, 32) => SampleFormat::F32Le,
            (f, b) => {
                return Err(SignalError::WavFormat {
                    path: path.to_path_buf(),
                    detail: format!("{b}-bit {f:?} samples"),
                })
            }
        };
        let format = PcmFormat { sample, channels: spec.channels, rate: spec.sample_rate };
        let mut bytes = Vec::new();
        let mut out = [0u8; 4];
        let w = sample.bytes();
        match sample {
            SampleFormat::F32Le => {
                for s in reader.samples::<f32>() {
                    bytes.extend_from_slice(&s.map_err(wav_err)?.to_le_bytes());
                }
            }
            _ => {
                for s in reader.samples::<i32>() {
                    let v = s.map_err(wav_err)?;
                    match sample {
                        SampleFormat::U8 => out[0] = (v + 128) as u8,
                        _ => out = (v << (32 - sample.bits())).to_le_bytes(),
                    }
                    // S24_3: the top three bytes of the left-aligned value.
                    let src = if sample == SampleFormat::U8 { &out[..1] } else { &out[4 - w..] };
                    bytes.extend_from_slice(src);
                }
            }
        }
        let frames = bytes.len() / format.frame_bytes().max(1);
        if frames == 0 {
            return Err(SignalError::WavFormat { path: path.to_path_buf(), detail: "no samples".into() });
        }
        bytes.truncate(frames * format.frame_bytes());
        Ok(PcmTable { format, bytes, frames })
    }

    /// The PCM bytes of one loop.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Frames in one loop of the table.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Copies the stream's frames `first..first + n` into `out` (which holds exactly n frames).
    pub fn copy_frames(&self, first: u64, out: &mut [u8]) {
        let fb = self.format.frame_bytes();
        let mut k = (first % self.frames as u64) as usize;
        let mut out = out;
        while !out.is_empty() {
            let n = (out.len() / fb).min(self.frames - k);
            let (head, tail) = out.split_at_mut(n * fb);
            head.copy_from_slice(&self.bytes[k * fb..(k + n) * fb]);
            out = tail;
            k = 0;
        }
    }

    /// The index (within `got`) of the first frame that differs from the stream's frames
    /// starting at `first`.
    pub fn first_mismatch(&self, first: u64, got: &[u8]) -> Option<usize> {
        let fb = self.format.frame_bytes();
        let mut want = vec![0u8; fb];
        got.chunks_exact(fb).enumerate().find_map(|(i, f)| {
            self.copy_frames(first + i as u64, &mut want);
            (f != want.as_slice()).then_some(i)
        })
    }

    /// Counts how many of the frames in `got` differ from the stream's frames starting at `first`.
    pub fn count_mismatches(&self, first: u64, got: &[u8]) -> u64 {
        let fb = self.format.frame_bytes();
        let mut k = (first % self.frames as u64) as usize;
        let mut got = got;
        let mut bad = 0;
        while !got.is_empty() {
            let n = (got.len() / fb).min(self.frames - k);
            let (head, tail) = got.split_at(n * fb);
            let want = &self.bytes[k * fb..(k + n) * fb];
            if head != want {
                bad +=
                    head.chunks_exact(fb).zip(want.chunks_exact(fb)).filter(|(a, b)| a != b).count() as u64;
            }
            got = tail;
            k = 0;
        }
        bad
    }
}

/// How many frames one loop of the table holds: one exact period for whole-Hz tones (so
/// the table is small and stays in cache), else one second (or the chirp's period).
fn table_frames(signal: &Signal, rate: u32) -> usize {
    let rate = u64::from(rate.max(1));
    let period =
        |f: f64| -> Option<u64> { (f.fract() == 0.0 && f >= 1.0).then(|| rate / gcd(rate, f as u64)) };
    let frames = match signal {
        Signal::Chirp { period_s, .. } => Some((period_s * rate as f64).round().max(1.0) as u64),
        Signal::Sine { freq, .. } | Signal::Square { freq, .. } => period(*freq),
        Signal::MultiTone { freqs, .. } => freqs
            .iter()
            .try_fold(1u64, |acc, &f| period(f).map(|p| acc / gcd(acc, p) * p).filter(|&l| l <= rate)),
        Signal::Noise { .. } | Signal::Wav(_) => None,
    };
    frames.filter(|&f| f <= rate).unwrap_or(rate) as usize
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Encodes `v` in [-1, 1] as one little-endian sample.
fn encode(format: SampleFormat, v: f64, out: &mut [u8]) {
    let v = v.clamp(-1.0, 1.0);
    let int = |bits: u32| -> i64 {
        let scale = (1i64 << (bits - 1)) as f64;
        ((v * scale).round() as i64).clamp(-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
    };
    match format {
        SampleFormat::U8 => out[0] = (int(8) + 128) as u8,
        SampleFormat::S8 => out[0] = int(8) as i8 as u8,
        SampleFormat::S16Le => out.copy_from_slice(&(int(16) as i16).to_le_bytes()),
        SampleFormat::S24_3Le => out.copy_from_slice(&(int(24) as i32).to_le_bytes()[..3]),
        SampleFormat::S24_4Le => out.copy_from_slice(&(int(24) as i32).to_le_bytes()),
        SampleFormat::S32Le => out.copy_from_slice(&(int(32) as i32).to_le_bytes()),
        SampleFormat::F32Le => out.copy_from_slice(&(v as f32).to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::decode_into;

    const S16_STEREO_48K: PcmFormat = PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 48_000 };

    #[test]
    fn signals_parse_from_the_command_line_forms() {
        assert_eq!("sine:440".parse::<Signal>().unwrap(), Signal::Sine { freq: 440.0, amplitude: 0.5 });
        assert!(
            matches!("chirp:20-2000".parse::<Signal>().unwrap(), Signal::Chirp { f1, .. } if f1 == 2000.0)
        );
        assert!(
            matches!("multitone:1,2".parse::<Signal>().unwrap(), Signal::MultiTone { freqs, .. } if freqs.len() == 2)
        );
        for bad in ["sine:-3", "sine:abc", "chirp:100", "beep", "wav:", "sine:inf"] {
            let err = bad.parse::<Signal>().unwrap_err().to_string();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[test]
    fn sine_table_has_the_right_amplitude_and_quadrature_channels() {
        let t = PcmTable::render(&Signal::Sine { freq: 1000.0, amplitude: 0.5 }, S16_STEREO_48K).unwrap();
        assert_eq!(t.frames(), 48); // one exact period
        let odd = PcmTable::render(&Signal::Sine { freq: 997.5, amplitude: 0.5 }, S16_STEREO_48K).unwrap();
        assert_eq!(odd.frames(), 48_000);
        let multi = Signal::MultiTone { freqs: vec![440.0, 1000.0], amplitude: 0.5 };
        assert_eq!(PcmTable::render(&multi, S16_STEREO_48K).unwrap().frames(), 1200); // lcm(1200, 48)
        let mut raw = vec![0u8; 48 * 4];
        t.copy_frames(0, &mut raw);
        let mut f = vec![0f32; 96];
        decode_into(SampleFormat::S16Le, &raw, &mut f);
        let peak_l = f.iter().step_by(2).fold(0f32, |m, v| m.max(v.abs()));
        assert!((peak_l - 0.5).abs() < 0.01, "{peak_l}");
        assert_eq!(f[0], 0.0); // sin(0)
        assert!((f[1] - 0.5).abs() < 1e-3); // cos(0) on the second channel
    }

    #[test]
    fn copy_frames_wraps_and_mismatches_are_counted_per_frame() {
        let t = PcmTable::render(&Signal::Noise { amplitude: 1.0, seed: 3 }, S16_STEREO_48K).unwrap();
        let mut out = vec![0u8; 10 * 4];
        t.copy_frames(47_995, &mut out); // 5 frames before the loop point, 5 after
        assert_eq!(t.count_mismatches(47_995, &out), 0);
        assert_eq!(t.count_mismatches(95_995, &out), 0); // one loop later
        out[4 * 7] ^= 1;
        assert_eq!(t.count_mismatches(47_995, &out), 1);
    }

    #[test]
    fn wav_files_round_trip_and_bad_ones_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for v in [0, 1, -1, 8_388_607, -8_388_608] {
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let t = PcmTable::render(&Signal::Wav(path.clone()), S16_STEREO_48K).unwrap();
        assert_eq!(t.format, PcmFormat { sample: SampleFormat::S24_3Le, channels: 1, rate: 8000 });
        let mut out = vec![0u8; 15];
        t.copy_frames(0, &mut out);
        assert_eq!(out, [0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0x80]);

        std::fs::write(&path, b"RIFF....not a wav").unwrap();
        let err = PcmTable::render(&Signal::Wav(path), S16_STEREO_48K).unwrap_err().to_string();
        assert!(err.contains("cannot read WAV"), "{err}");
    }
}
