//! Checks a capture from the simulated device frame by frame: replays the device's packet
//! schedule and compares every captured frame with the frame the device sent in its place.
//! Whole packets lost in transit (a host controller that skips an interval and says
//! nothing, as QEMU's xHCI does under load) are found by resynchronising at packet
//! boundaries and counted apart; they are never taken for data.

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
    /// Whether the current run is a packet's first frames (where a loss can be seen).
    run_fresh: bool,
    verified: u64,
    mismatched: u64,
    lost_packets: u64,
    lost_frames: u64,
    /// Capture frame index and stream frame of the first mismatch.
    first_mismatch: Option<(u64, u64)>,
}

/// How many packets ahead a resynchronisation looks (1 s at high speed, 8 s at full speed;
/// QEMU's usb-redir drops up to about 60 ms at a time when its buffer overflows): a longer
/// silent loss is reported as mismatches.
const MAX_LOST_PACKETS: usize = 8000;
/// Frames compared to accept a resynchronisation (fewer only at the end of the data fed):
/// across packets, so short packets make no weaker a probe.
const PROBE_FRAMES: usize = 16;

impl Verifier {
    pub(crate) fn new(table: Arc<PcmTable>, schedule: Schedule) -> Verifier {
        let fb = table.format.frame_bytes();
        Verifier {
            table,
            schedule,
            next_frame: 0,
            run_left: 0,
            partial: Vec::with_capacity(fb),
            run_fresh: false,
            verified: 0,
            mismatched: 0,
            lost_packets: 0,
            lost_frames: 0,
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

    /// Packets the device sent with data that never reached the capture, found by
    /// resynchronising on the device's own sequence (no status said they were lost).
    pub fn lost_packets(&self) -> u64 {
        self.lost_packets
    }

    /// Stream frames in those lost packets.
    pub fn lost_frames(&self) -> u64 {
        self.lost_frames
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
                    self.run_fresh = true;
                } else {
                    self.next_frame += u64::from(plan.frames);
                }
            }
            if std::mem::take(&mut self.run_fresh) {
                self.resync(frames);
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

impl Verifier {
    /// At the start of a packet whose first frames do not match: if they match the start of
    /// a later packet (within [`MAX_LOST_PACKETS`]), the packets in between were lost in
    /// transit; count them and go on from there. Only forward: stale bytes from an earlier
    /// transfer never match ahead of the stream.
    fn resync(&mut self, frames: &[u8]) {
        let fb = self.table.format.frame_bytes();
        let want = (frames.len() / fb).min(PROBE_FRAMES);
        if self.delivered_matches(
            &self.schedule.clone(),
            self.next_frame,
            self.run_left,
            &frames[..want * fb],
        ) {
            return;
        }
        let mut schedule = self.schedule.clone();
        let (mut next, mut lost_packets, mut lost_frames) =
            (self.next_frame + self.run_left, 1u64, self.run_left);
        for _ in 0..MAX_LOST_PACKETS {
            let plan = schedule.next_packet();
            let run = u64::from(plan.frames);
            if plan.errno != 0 {
                next += run; // failed packets are not lost: their frames never came anyway
                continue;
            }
            if run > 0 && self.delivered_matches(&schedule, next, run, &frames[..want * fb]) {
                self.schedule = schedule;
                self.next_frame = next;
                self.run_left = run;
                self.lost_packets += lost_packets;
                self.lost_frames += lost_frames;
                return;
            }
            next += run;
            lost_packets += 1;
            lost_frames += run;
        }
    }

    /// Whether `got` (whole frames) is what the device delivers from stream frame `next`,
    /// with `run` frames left in the current packet and `schedule` planning the packets after
    /// it (failed packets skipped): a probe that may span short packets.
    fn delivered_matches(&self, schedule: &Schedule, mut next: u64, mut run: u64, mut got: &[u8]) -> bool {
        let fb = self.table.format.frame_bytes();
        let mut schedule = schedule.clone();
        let mut budget = MAX_LOST_PACKETS;
        while !got.is_empty() {
            while run == 0 {
                if budget == 0 {
                    return false;
                }
                budget -= 1;
                let plan = schedule.next_packet();
                if plan.errno == 0 {
                    run = u64::from(plan.frames);
                } else {
                    next += u64::from(plan.frames);
                }
            }
            let n = (run as usize).min(got.len() / fb);
            if self.table.count_mismatches(next, &got[..n * fb]) != 0 {
                return false;
            }
            got = &got[n * fb..];
            next += n as u64;
            run -= n as u64;
        }
        true
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
    /// Places where a run of the signal is missing and the recording goes on, bit-exact,
    /// further along (packets lost on the way, e.g. by QEMU's xHCI), and the frames missing.
    pub gaps: u64,
    pub missing_frames: u64,
    /// Where the recording first stops matching with no gap to explain it: the recording's
    /// frame, and what it holds there as a signal offset from the frame expected (negative:
    /// a repeat of earlier frames; `None`: nothing of the signal within the search window,
    /// e.g. zeros or stale bytes).
    pub first_break: Option<(u64, Option<i64>)>,
}

/// The longest run of missing signal a contiguous check resynchronises over (1 s at
/// 48 kHz); a longer one shows as mismatches.
const MAX_GAP_FRAMES: u64 = 48_000;

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
    let mut a =
        Alignment { offset, verified: 0, mismatched: 0, gaps: 0, missing_frames: 0, first_break: None };
    // Walk in runs: a run that matches counts as verified; at the first differing frame,
    // look up to MAX_GAP_FRAMES ahead for where the next PROBE_FRAMES frames continue.
    let (mut i, mut at) = (0usize, offset);
    while i < frames {
        let rest = &bytes[i * fb..frames * fb];
        let Some(bad) = table.first_mismatch(at, rest) else {
            a.verified += (frames - i) as u64;
            break;
        };
        a.verified += bad as u64;
        i += bad;
        at += bad as u64;
        let n = (frames - i).min(PROBE_FRAMES);
        let probe = &bytes[i * fb..(i + n) * fb];
        // Less than half the signal's period either way, or a periodic signal would "find" itself.
        let window = MAX_GAP_FRAMES.min(table.frames() as u64 / 2);
        match (1..=window).find(|&k| n >= PROBE_FRAMES && table.count_mismatches(at + k, probe) == 0) {
            Some(k) => {
                a.gaps += 1;
                a.missing_frames += k;
                at += k;
            }
            None => {
                if a.first_break.is_none() {
                    let back = (1..=window.min(at))
                        .find(|&k| n >= PROBE_FRAMES && table.count_mismatches(at - k, probe) == 0);
                    a.first_break = Some((i as u64, back.map(|k| -(k as i64))));
                }
                // No gap explains it: count the next stretch frame by frame at this
                // alignment before searching again (a wrong recording stays cheap).
                let w = (frames - i).min(4800);
                let bad = table.count_mismatches(at, &bytes[i * fb..(i + w) * fb]);
                a.mismatched += bad;
                a.verified += w as u64 - bad;
                i += w;
                at += w as u64;
            }
        }
    }
    Some(a)
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
        assert_eq!(v.lost_packets(), 0);
    }

    #[test]
    fn whole_packets_lost_in_transit_are_counted_not_taken_for_data() {
        let dev = SimDevice::new(SimConfig {
            signal: crate::sim::Signal::Chirp { f0: 100.0, f1: 8000.0, period_s: 1.0, amplitude: 0.5 },
            faults: Faults { short_ratio: 0.3, error_ratio: 0.05, disconnect_after_s: None },
            realtime: false,
            ..SimConfig::default()
        })
        .unwrap();
        let (mut sched, table) = (dev.schedule(), dev.table());
        let (mut bytes, mut pos, mut dropped, mut dropped_frames) = (Vec::new(), 0u64, 0, 0);
        for i in 0..4000 {
            let p = sched.next_packet();
            // Lose packets 1000..1003 and 2500 (with data) silently, as QEMU's xHCI does.
            let lost = p.errno == 0 && p.frames > 0 && ((1000..1003).contains(&i) || i == 2500);
            if lost {
                dropped += 1;
                dropped_frames += u64::from(p.frames);
            } else if p.errno == 0 {
                let mut buf = vec![0u8; p.frames as usize * 4];
                table.copy_frames(pos, &mut buf);
                bytes.extend_from_slice(&buf);
            }
            pos += u64::from(p.frames);
        }
        let mut v = dev.verifier();
        for chunk in bytes.chunks(4 * 48) {
            v.feed(chunk);
        }
        assert_eq!((v.mismatched(), v.lost_packets(), v.lost_frames()), (0, dropped, dropped_frames));
        assert_eq!(v.verified(), bytes.len() as u64 / 4);
        // 12 frames of zeros (a leaked copy-mode gap) are mismatches, not a loss.
        let mut v = dev.verifier();
        let mut gap = bytes.clone();
        gap[40_000..40_048].fill(0);
        v.feed(&gap);
        assert_eq!((v.mismatched(), v.lost_packets()), (12, dropped));
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
            Some(Alignment {
                offset: 12_345,
                verified: 30_000,
                mismatched: 0,
                gaps: 0,
                missing_frames: 0,
                first_break: None
            })
        );
        // Missing runs (packets lost on the way) are gaps, and the rest still verifies.
        let mut gap = rec[..10_000 * 4].to_vec();
        gap.extend_from_slice(&rec[10_006 * 4..20_000 * 4]);
        gap.extend_from_slice(&rec[20_048 * 4..]);
        let a = check_contiguous(&table, &gap).unwrap();
        assert_eq!(
            a,
            Alignment {
                offset: 12_345,
                verified: 30_000 - 54,
                mismatched: 0,
                gaps: 2,
                missing_frames: 54,
                first_break: None
            }
        );
        // A corrupted frame is a mismatch, not a gap.
        let mut bad = rec.clone();
        bad[4 * 15_000] ^= 0x10;
        let a = check_contiguous(&table, &bad).unwrap();
        assert_eq!((a.mismatched, a.gaps, a.verified, a.first_break), (1, 0, 29_999, Some((15_000, None))));
        // Frames played twice are a break that points back.
        let mut rep = rec[..10_000 * 4].to_vec();
        rep.extend_from_slice(&rec[9_000 * 4..]);
        let a = check_contiguous(&table, &rep).unwrap();
        assert_eq!(a.first_break, Some((10_000, Some(-1_000))));
        assert_eq!(check_contiguous(&table, &[0x11; 400]), None);
        assert_eq!(check_contiguous(&table, &[]), None);
    }
}
