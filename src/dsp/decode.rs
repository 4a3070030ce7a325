//! PCM bytes (as a USB audio device sends them) to interleaved `f32` samples in [-1, 1).

use serde::Serialize;

/// One sample's encoding on the wire (UAC Type I formats; little-endian as USB is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum SampleFormat {
    /// Unsigned 8-bit, 0x80 is silence (UAC PCM8).
    U8,
    /// Signed 8-bit, 0 is silence (UAC PCM with a 1-byte subslot).
    S8,
    /// Signed 16-bit little-endian.
    S16Le,
    /// Signed 24-bit little-endian packed in 3 bytes.
    S24_3Le,
    /// Signed 24-bit little-endian in the low bytes of a 4-byte subslot.
    S24_4Le,
    /// Signed 32-bit little-endian.
    S32Le,
    /// IEEE float 32-bit little-endian.
    F32Le,
}

impl SampleFormat {
    /// Bytes one sample occupies on the wire (UAC `bSubslotSize`).
    pub const fn bytes(self) -> usize {
        match self {
            SampleFormat::U8 | SampleFormat::S8 => 1,
            SampleFormat::S16Le => 2,
            SampleFormat::S24_3Le => 3,
            SampleFormat::S24_4Le | SampleFormat::S32Le | SampleFormat::F32Le => 4,
        }
    }

    /// Significant bits per sample (UAC `bBitResolution`).
    pub const fn bits(self) -> u16 {
        match self {
            SampleFormat::U8 | SampleFormat::S8 => 8,
            SampleFormat::S16Le => 16,
            SampleFormat::S24_3Le | SampleFormat::S24_4Le => 24,
            SampleFormat::S32Le | SampleFormat::F32Le => 32,
        }
    }

    /// The name used on the command line and in JSON (ALSA's spelling).
    pub const fn name(self) -> &'static str {
        match self {
            SampleFormat::U8 => "U8",
            SampleFormat::S8 => "S8",
            SampleFormat::S16Le => "S16_LE",
            SampleFormat::S24_3Le => "S24_3LE",
            SampleFormat::S24_4Le => "S24_LE",
            SampleFormat::S32Le => "S32_LE",
            SampleFormat::F32Le => "FLOAT_LE",
        }
    }

    /// Parses the names [`SampleFormat::name`] prints, and the short forms `s16`, `s24`, `s32`,
    /// `f32`.
    pub fn parse(s: &str) -> Option<SampleFormat> {
        Some(match s.to_ascii_uppercase().as_str() {
            "U8" => SampleFormat::U8,
            "S8" => SampleFormat::S8,
            "S16" | "S16_LE" => SampleFormat::S16Le,
            "S24" | "S24_3" | "S24_3LE" => SampleFormat::S24_3Le,
            "S24_4" | "S24_LE" => SampleFormat::S24_4Le,
            "S32" | "S32_LE" => SampleFormat::S32Le,
            "F32" | "FLOAT" | "FLOAT_LE" => SampleFormat::F32Le,
            _ => return None,
        })
    }
}

impl std::fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A PCM stream's shape: sample encoding, channel count and frame rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PcmFormat {
    pub sample: SampleFormat,
    pub channels: u16,
    pub rate: u32,
}

impl PcmFormat {
    /// Bytes in one frame (one sample for every channel).
    pub const fn frame_bytes(&self) -> usize {
        self.sample.bytes() * self.channels as usize
    }

    /// Payload bytes per second.
    pub const fn bytes_per_second(&self) -> u64 {
        self.frame_bytes() as u64 * self.rate as u64
    }
}

impl std::fmt::Display for PcmFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ch {} Hz", self.sample, self.channels, self.rate)
    }
}

/// Decodes whole samples of `bytes` into `out`, returning how many samples were written.
///
/// Decodes `min(bytes.len() / sample_bytes, out.len())` samples; trailing bytes of an
/// incomplete sample are ignored. The caller copies bytes out of DMA memory first
/// (DESIGN invariant 6), so this reads ordinary cached memory.
pub fn decode_into(format: SampleFormat, bytes: &[u8], out: &mut [f32]) -> usize {
    let n = (bytes.len() / format.bytes()).min(out.len());
    let out = &mut out[..n];
    match format {
        SampleFormat::U8 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = (b as f32 - 128.0) * (1.0 / 128.0);
            }
        }
        SampleFormat::S8 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = f32::from(b as i8) * (1.0 / 128.0);
            }
        }
        SampleFormat::S16Le => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = i16::from_le_bytes([c[0], c[1]]) as f32 * (1.0 / 32768.0);
            }
        }
        SampleFormat::S24_3Le => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(3)) {
                let v = i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8;
                *o = v as f32 * (1.0 / 8_388_608.0);
            }
        }
        SampleFormat::S24_4Le => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                let v = i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8;
                *o = v as f32 * (1.0 / 8_388_608.0);
            }
        }
        SampleFormat::S32Le => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                let v = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                *o = v as f32 * (1.0 / 2_147_483_648.0);
            }
        }
        SampleFormat::F32Le => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scale_values_decode_to_unit_range() {
        let mut out = [0.0f32; 4];
        let s16 = [0x00, 0x80, 0xff, 0x7f, 0x00, 0x00, 0x00, 0x40];
        assert_eq!(decode_into(SampleFormat::S16Le, &s16, &mut out), 4);
        assert_eq!(out, [-1.0, 32767.0 / 32768.0, 0.0, 0.5]);

        let s24 = [0x00, 0x00, 0x80, 0xff, 0xff, 0x7f, 0x00, 0x00, 0xc0];
        assert_eq!(decode_into(SampleFormat::S24_3Le, &s24, &mut out), 3);
        assert_eq!(&out[..3], &[-1.0, 8_388_607.0 / 8_388_608.0, -0.5]);

        let s24_4 = [0x00, 0x00, 0x40, 0x00];
        assert_eq!(decode_into(SampleFormat::S24_4Le, &s24_4, &mut out), 1);
        assert_eq!(out[0], 0.5);

        let s32 = i32::MIN.to_le_bytes();
        assert_eq!(decode_into(SampleFormat::S32Le, &s32, &mut out), 1);
        assert_eq!(out[0], -1.0);

        let u8s = [0u8, 128, 192];
        assert_eq!(decode_into(SampleFormat::U8, &u8s, &mut out), 3);
        assert_eq!(&out[..3], &[-1.0, 0.0, 0.5]);

        let s8s = [0x80u8, 0, 0x40, 0x7f];
        assert_eq!(decode_into(SampleFormat::S8, &s8s, &mut out), 4);
        assert_eq!(out, [-1.0, 0.0, 0.5, 127.0 / 128.0]);

        let f = 0.25f32.to_le_bytes();
        assert_eq!(decode_into(SampleFormat::F32Le, &f, &mut out), 1);
        assert_eq!(out[0], 0.25);
    }

    #[test]
    fn partial_samples_and_short_outputs_are_not_overrun() {
        let mut out = [9.0f32; 2];
        // 5 bytes of S16: two whole samples, one trailing byte ignored.
        assert_eq!(decode_into(SampleFormat::S16Le, &[0, 0, 0, 0x40, 7], &mut out), 2);
        let mut one = [0.0f32; 1];
        assert_eq!(decode_into(SampleFormat::S16Le, &[0, 0x40, 0, 0x40], &mut one), 1);
        assert_eq!(one[0], 0.5);
    }

    #[test]
    fn format_names_round_trip() {
        for f in [
            SampleFormat::U8,
            SampleFormat::S8,
            SampleFormat::S16Le,
            SampleFormat::S24_3Le,
            SampleFormat::S24_4Le,
            SampleFormat::S32Le,
            SampleFormat::F32Le,
        ] {
            assert_eq!(SampleFormat::parse(f.name()), Some(f));
        }
        assert_eq!(SampleFormat::parse("s16"), Some(SampleFormat::S16Le));
        assert_eq!(SampleFormat::parse("mp3"), None);
    }
}
