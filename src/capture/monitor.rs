//! What the UI can see of the engine without slowing it: each URB slot's state (one
//! atomic byte per slot), and a copy of one reaped URB's raw buffer on request, handed
//! over through preallocated buffers that go back and forth on bounded channels so the
//! engine thread never allocates, locks or blocks for it.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::dma::TransferPath;
use crate::usb::urb::IsoUrb;

/// Where one URB slot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    /// Held by the engine as a spare, ready to submit.
    Free = 0,
    /// Submitted: the kernel (and the controller's DMA) owns the buffer.
    InFlight = 1,
    /// Reaped, not yet read.
    Completed = 2,
    /// The engine is copying its valid bytes out.
    BeingRead = 3,
}

impl SlotState {
    pub const ALL: [SlotState; 4] =
        [SlotState::InFlight, SlotState::Completed, SlotState::BeingRead, SlotState::Free];

    pub fn from_u8(v: u8) -> SlotState {
        match v {
            1 => SlotState::InFlight,
            2 => SlotState::Completed,
            3 => SlotState::BeingRead,
            _ => SlotState::Free,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SlotState::Free => "free",
            SlotState::InFlight => "in flight",
            SlotState::Completed => "completed",
            SlotState::BeingRead => "being read",
        }
    }
}

/// One state byte per URB slot, indexed by URB id; written by the engine, read by anyone.
#[derive(Clone, Debug)]
pub struct SlotStates(Arc<[AtomicU8]>);

impl SlotStates {
    pub fn new(slots: usize) -> SlotStates {
        SlotStates((0..slots).map(|_| AtomicU8::new(SlotState::Free as u8)).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, id: usize) -> SlotState {
        self.0.get(id).map_or(SlotState::Free, |s| SlotState::from_u8(s.load(Relaxed)))
    }

    pub(crate) fn set(&self, id: usize, state: SlotState) {
        if let Some(s) = self.0.get(id) {
            s.store(state as u8, Relaxed);
        }
    }

    /// How many slots are in each state, in the order of [`SlotState::ALL`].
    pub fn counts(&self) -> [usize; 4] {
        let mut n = [0; 4];
        for i in 0..self.len() {
            let s = self.get(i);
            if let Some(k) = SlotState::ALL.iter().position(|&x| x == s) {
                n[k] += 1;
            }
        }
        n
    }
}

/// One packet descriptor as the kernel returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawPacket {
    /// Where the packet starts: the sum of the requested lengths before it.
    pub offset: usize,
    pub requested: u32,
    pub actual: u32,
    /// 0 or a negative errno.
    pub status: i32,
}

impl RawPacket {
    /// The bytes of the packet that are signal: `[offset, offset + actual)` if it succeeded.
    pub fn valid(&self) -> std::ops::Range<usize> {
        let len = if self.status == 0 { self.actual.min(self.requested) as usize } else { 0 };
        self.offset..self.offset + len
    }
}

/// A copy of one reaped URB's whole buffer and its packet descriptors.
#[derive(Clone, Debug, Default)]
pub struct RawSnapshot {
    pub urb_id: usize,
    pub path: Option<TransferPath>,
    /// The URB's buffer, gaps included (zeros in copy mode, stale bytes in zero-copy mode).
    pub buffer: Vec<u8>,
    pub packets: Vec<RawPacket>,
}

impl RawSnapshot {
    /// Room for a URB of `bytes` and `packets` without reallocating.
    pub fn with_capacity(bytes: usize, packets: usize) -> RawSnapshot {
        RawSnapshot {
            urb_id: 0,
            path: None,
            buffer: Vec::with_capacity(bytes),
            packets: Vec::with_capacity(packets),
        }
    }

    /// Whether byte `i` of the buffer is a gap: not inside any packet's valid bytes.
    pub fn is_gap(&self, i: usize) -> bool {
        !self.packets.iter().any(|p| p.valid().contains(&i))
    }

    /// Gap bytes that hold 0 and gap bytes that hold something else (stale data from an
    /// earlier transfer, in zero-copy mode): `(zero, non_zero)`.
    pub fn gap_census(&self) -> (usize, usize) {
        // Packets sit at increasing offsets (each starts where the one before was asked to end).
        let (mut zero, mut non_zero, mut at) = (0, 0, 0);
        let mut count = |bytes: &[u8]| {
            let z = bytes.iter().filter(|&&b| b == 0).count();
            zero += z;
            non_zero += bytes.len() - z;
        };
        for r in self.packets.iter().map(RawPacket::valid) {
            let start = r.start.min(self.buffer.len());
            if start > at {
                count(&self.buffer[at..start]);
            }
            at = at.max(r.end.min(self.buffer.len()));
        }
        count(&self.buffer[at.min(self.buffer.len())..]);
        (zero, non_zero)
    }

    /// The packet whose requested span holds byte `i`, by index.
    pub fn packet_at(&self, i: usize) -> Option<usize> {
        self.packets.iter().position(|p| (p.offset..p.offset + p.requested as usize).contains(&i))
    }

    /// Bytes that are gaps.
    pub fn gap_bytes(&self) -> usize {
        let valid: usize = self.packets.iter().map(|p| p.valid().len()).sum();
        self.buffer.len().saturating_sub(valid)
    }

    /// Copies `urb` in, within the capacity it already has (the engine must not allocate).
    /// Returns false, leaving it empty, if it does not fit.
    pub(crate) fn fill(&mut self, urb: &IsoUrb) -> bool {
        self.buffer.clear();
        self.packets.clear();
        let raw = urb.raw_buffer();
        let descs = urb.descriptors();
        if raw.len() > self.buffer.capacity() || descs.len() > self.packets.capacity() {
            return false;
        }
        self.urb_id = urb.id();
        self.path = Some(urb.path());
        self.buffer.extend_from_slice(raw);
        let mut offset = 0;
        for d in descs {
            self.packets.push(RawPacket {
                offset,
                requested: d.length,
                actual: d.actual_length,
                status: d.status as i32,
            });
            offset += d.length as usize;
        }
        true
    }
}

/// The UI's end of the raw-buffer hand-over (clones share it).
#[derive(Clone, Debug)]
pub struct RawTap {
    pub(crate) request: Arc<AtomicBool>,
    pub(crate) filled: Receiver<RawSnapshot>,
    pub(crate) recycle: Sender<RawSnapshot>,
}

impl RawTap {
    /// Asks the engine to copy the next URB it reaps.
    pub fn request(&self) {
        self.request.store(true, Relaxed);
    }

    /// The snapshot, once the engine has taken it.
    pub fn try_take(&self) -> Option<RawSnapshot> {
        self.filled.try_recv().ok()
    }

    /// Gives a snapshot's buffers back for the next request.
    pub fn recycle(&self, snapshot: RawSnapshot) {
        let _ = self.recycle.try_send(snapshot);
    }
}

/// The engine's end.
#[derive(Debug)]
pub(crate) struct RawSource {
    request: Arc<AtomicBool>,
    filled: Sender<RawSnapshot>,
    free: Receiver<RawSnapshot>,
}

impl RawSource {
    /// Called for every reaped URB: one relaxed load unless a snapshot was asked for.
    pub(crate) fn offer(&self, urb: &IsoUrb) {
        if !self.request.load(Relaxed) || self.filled.is_full() {
            return;
        }
        if let Ok(mut snap) = self.free.try_recv() {
            if snap.fill(urb) {
                self.request.store(false, Relaxed);
            }
            // Never blocks: the channel had room; it fails only if the UI hung up.
            let _ = self.filled.try_send(snap);
        }
    }
}

/// The pair of ends, with two preallocated snapshots of `bytes` and `packets`.
pub(crate) fn raw_tap(bytes: usize, packets: usize) -> (RawTap, RawSource) {
    let request = Arc::new(AtomicBool::new(false));
    let (filled_tx, filled_rx) = crossbeam_channel::bounded(1);
    let (free_tx, free_rx) = crossbeam_channel::bounded(2);
    for _ in 0..2 {
        let _ = free_tx.try_send(RawSnapshot::with_capacity(bytes, packets));
    }
    (
        RawTap { request: Arc::clone(&request), filled: filled_rx, recycle: free_tx },
        RawSource { request, filled: filled_tx, free: free_rx },
    )
}

#[cfg(test)]
mod tests {
    use super::{RawPacket, RawSnapshot};

    #[test]
    fn the_gap_census_counts_zero_and_stale_gap_bytes_apart() {
        // Two packets asked for 4 bytes each: the first brought 2 (then 2 gap bytes, one
        // stale), the second failed (4 gap bytes, all zero); a trailing stale byte.
        let raw = RawSnapshot {
            urb_id: 1,
            path: None,
            buffer: vec![1, 2, 0, 9, 0, 0, 0, 0, 7],
            packets: vec![
                RawPacket { offset: 0, requested: 4, actual: 2, status: 0 },
                RawPacket { offset: 4, requested: 4, actual: 4, status: -18 },
            ],
        };
        assert_eq!(raw.gap_census(), (5, 2));
        assert_eq!(raw.gap_bytes(), 7);
        assert_eq!((raw.packet_at(3), raw.packet_at(4), raw.packet_at(8)), (Some(0), Some(1), None));
    }
}
