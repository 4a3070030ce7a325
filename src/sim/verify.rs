//! Checks a capture from the simulated device frame by frame: replays the device's packet
//! schedule and compares every captured frame with the frame the device sent in its place.

use std::sync::Arc;

use super::schedule::Schedule;
use super::signal::PcmTable;

/// Consumes the captured byte stream (whole frames, in order) and counts frames that
/// match and frames that do not. Packets the device sent with an error are skipped in the
/// replay, because their frames never reach the capture.
#[derive(Debug)]
pub struct Verifier {
    table: Arc<PcmTable>,
    schedule: Schedule,
    /// Stream frame the next captured frame must equal.
    next_frame: u64,
    /// Frames left in the current delivered packet.
    run_left: u64,
    /// Bytes of a frame split across two `feed` calls.
    partial: Vec<u8>,
    verified: u64,
    mismatched: u64,
    /// Capture frame index and stream frame of the first mismatch.
    first_mismatch: Option<(u64, u64)>,
}

impl Verifier {
    pub(crate) fn new(table: Arc<PcmTable>, schedule: Schedule) -> Verifier {
        let fb = table.format.frame_bytes();
        Verifier {
            table,
            schedule,
            next_frame: 0,
            run_left: 0,
            partial: Vec::with_capacity(fb),
            verified: 0,
            mismatched: 0,
            first_mismatch: None,
        }
    }

    /// Frames that equal what the device sent.
    pub fn verified(&self) -> u64 {
        self.verified
    }

    /// Frames that differ (a leaked gap, a lost or reordered packet, a wrong copy).
    pub fn mismatched(&self) -> u64 {
        self.mismatched
    }

    /// Where the first mismatch was: (index of the frame in the capture, the stream frame
    /// the device sent in that place).
    pub fn first_mismatch(&self) -> Option<(u64, u64)> {
        self.first_mismatch
    }

    /// Feeds captured bytes.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        let fb = self.table.format.frame_bytes();
        if !self.partial.is_empty() {
            let take = (fb - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() < fb {
                return;
            }
            let frame = std::mem::take(&mut self.partial);
            self.check_frames(&frame);
            self.partial = frame;
            self.partial.clear();
        }
        let whole = bytes.len() / fb * fb;
        self.check_frames(&bytes[..whole]);
        self.partial.extend_from_slice(&bytes[whole..]);
    }

    fn check_frames(&mut self, mut frames: &[u8]) {
        let fb = self.table.format.frame_bytes();
        while !frames.is_empty() {
            while self.run_left == 0 {
                let plan = self.schedule.next_packet();
                if plan.errno == 0 {
                    self.run_left = u64::from(plan.frames);
                } else {
                    self.next_frame += u64::from(plan.frames);
                }
            }
            let n = (self.run_left as usize).min(frames.len() / fb);
            let (run, rest) = frames.split_at(n * fb);
            let bad = self.table.count_mismatches(self.next_frame, run);
            if bad > 0 && self.first_mismatch.is_none() {
                let i = self.table.first_mismatch(self.next_frame, run).unwrap_or(0) as u64;
                self.first_mismatch = Some((self.verified + self.mismatched + i, self.next_frame + i));
            }
            self.mismatched += bad;
            self.verified += n as u64 - bad;
            self.next_frame += n as u64;
            self.run_left -= n as u64;
            frames = rest;
        }
    }
}

/// The result of checking a contiguous recording against a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Alignment {
    /// The signal's frame (modulo its table) the recording starts at.
    pub offset: u64,
    /// Frames that equal the signal from there on.
    pub verified: u64,
    /// Frames that do not.
    pub mismatched: u64,
}

/// Checks a recording that should be an unbroken run of `table`'s signal starting at an
/// unknown frame (e.g. what `arecord` got from the virtual device through snd-usb-audio):
/// finds the first offset at which the first `probe` frames match, then counts every frame.
/// `None` if no offset matches the start at all.
pub fn check_contiguous(table: &PcmTable, bytes: &[u8]) -> Option<Alignment> {
    let fb = table.format.frame_bytes();
    let frames = bytes.len() / fb;
    let probe = frames.min(64);
    if probe == 0 {
        return None;
    }
    let head = &bytes[..probe * fb];
    let offset = (0..table.frames() as u64).find(|&k| table.count_mismatches(k, head) == 0)?;
    let mismatched = table.count_mismatches(offset, &bytes[..frames * fb]);
    Some(Alignment { offset, verified: frames as u64 - mismatched, mismatched })
}

#[cfg(test)]
mod tests {
    use crate::sim::{Faults, SimConfig, SimDevice};

    #[test]
    fn a_stream_split_anywhere_verifies_and_a_flipped_bit_does_not() {
        let dev = SimDevice::new(SimConfig {
            faults: Faults { short_ratio: 0.3, error_ratio: 0.1, disconnect_after_s: None },
            realtime: false,
            ..SimConfig::default()
        })
        .unwrap();
        // Build the expected capture by replaying the schedule by hand.
        let mut sched = dev.schedule();
        let table = dev.table();
        let mut bytes = Vec::new();
        let mut pos = 0u64;
        for _ in 0..2000 {
            let p = sched.next_packet();
            if p.errno == 0 {
                let mut buf = vec![0u8; p.frames as usize * 4];
                table.copy_frames(pos, &mut buf);
                bytes.extend_from_slice(&buf);
            }
            pos += u64::from(p.frames);
        }
        let mut v = dev.verifier();
        for chunk in bytes.chunks(37) {
            v.feed(chunk);
        }
        assert_eq!(v.mismatched(), 0);
        assert_eq!(v.verified(), bytes.len() as u64 / 4);

        let mut v = dev.verifier();
        let mut bad = bytes.clone();
        bad[4001] ^= 0x40;
        v.feed(&bad);
        assert_eq!(v.mismatched(), 1);
        assert_eq!(v.first_mismatch().map(|(i, _)| i), Some(1000)); // byte 4001 is in frame 1000
    }
}

#[cfg(test)]
mod contiguous_tests {
    use super::*;
    use crate::dsp::{PcmFormat, SampleFormat};
    use crate::sim::Signal;

    #[test]
    fn a_recording_starting_anywhere_is_aligned_and_checked() {
        let fmt = PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 48_000 };
        let table =
            PcmTable::render(&Signal::Chirp { f0: 100.0, f1: 5000.0, period_s: 0.5, amplitude: 0.5 }, fmt)
                .unwrap();
        let mut rec = vec![0u8; 30_000 * 4];
        table.copy_frames(12_345, &mut rec);
        assert_eq!(
            check_contiguous(&table, &rec),
            Some(Alignment { offset: 12_345, verified: 30_000, mismatched: 0 })
        );
        // A dropped frame in the middle shows up as mismatches from there on.
        let mut gap = rec[..10_000 * 4].to_vec();
        gap.extend_from_slice(&rec[10_001 * 4..]);
        let a = check_contiguous(&table, &gap).unwrap();
        assert_eq!(a.offset, 12_345);
        assert!(a.mismatched > 19_000, "{a:?}");
        assert_eq!(check_contiguous(&table, &[0x11; 400]), None);
        assert_eq!(check_contiguous(&table, &[]), None);
    }
}
