//! CSV export of a window of decoded frames (what the scope shows): one row per frame,
//! time in seconds then one column per channel. Pure: the caller chooses the window.

use std::io::{self, Write};

/// Writes `frames` (interleaved, `channels` per frame, at `rate` Hz, the first being stream
/// frame `first_frame`) as CSV: a header `time_s,ch0,ch1,...`, then one row per frame.
/// A trailing partial frame is ignored. Values keep f32's full precision (shortest form
/// that reads back exactly).
pub fn write_csv<W: Write>(
    mut w: W,
    frames: &[f32],
    channels: usize,
    rate: u32,
    first_frame: u64,
) -> io::Result<()> {
    if channels == 0 || rate == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "CSV export needs at least one channel and a rate",
        ));
    }
    let mut line = String::from("time_s");
    for c in 0..channels {
        line.push_str(&format!(",ch{c}"));
    }
    writeln!(w, "{line}")?;
    for (i, f) in frames.chunks_exact(channels).enumerate() {
        line.clear();
        line.push_str(&format!("{:.9}", (first_frame + i as u64) as f64 / f64::from(rate)));
        for v in f {
            line.push_str(&format!(",{v}"));
        }
        writeln!(w, "{line}")?;
    }
    Ok(())
}

/// [`write_csv`] into a string.
pub fn to_csv_string(frames: &[f32], channels: usize, rate: u32, first_frame: u64) -> io::Result<String> {
    let mut out = Vec::new();
    write_csv(&mut out, frames, channels, rate, first_frame)?;
    String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_time_and_every_channel_and_read_back_exactly() {
        let frames = [0.5f32, -0.25, 0.1, 1.0e-7, 0.3];
        let csv = to_csv_string(&frames, 2, 48_000, 48_000).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines, ["time_s,ch0,ch1", "1.000000000,0.5,-0.25", "1.000020833,0.1,0.0000001"]);
        let back: f32 = lines[2].split(',').nth(2).unwrap().parse().unwrap();
        assert_eq!(back, 1.0e-7);
        assert!(to_csv_string(&frames, 0, 48_000, 0).is_err());
    }
}
