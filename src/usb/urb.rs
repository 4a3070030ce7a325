//! Iso URBs: the kernel's `struct usbdevfs_urb` with its trailing packet descriptors, the
//! buffer slot it reads into, and the walk over its packets at their fixed offsets.
//!
//! Mirrors `include/uapi/linux/usbdevice_fs.h`. Packet `i` of an iso URB starts at the sum
//! of the *requested* lengths of packets `0..i`; the kernel does not compact. After a short
//! packet the rest of that packet's space keeps whatever it held before (stale bytes from
//! an earlier transfer in zero-copy mode, zeros in copy mode). [`PacketWalk`] yields only
//! `[offset, offset + actual_length)` of packets whose status is 0 (DESIGN invariant 1).

use crate::dma::{Slot, TransferPath};

/// The kernel's limit on packets in one iso URB.
pub const MAX_ISO_PACKETS: usize = 128;
/// The kernel's limit on one iso packet's length (kernel >= 5.2; 49152 before).
pub const MAX_ISO_PACKET_BYTES: u32 = 98_304;

/// `USBDEVFS_URB_TYPE_ISO`
pub const USBDEVFS_URB_TYPE_ISO: u8 = 0;
/// `USBDEVFS_URB_ISO_ASAP`: start at the next free (micro)frame.
pub const USBDEVFS_URB_ISO_ASAP: u32 = 0x02;

/// `struct usbdevfs_iso_packet_desc`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct usbdevfs_iso_packet_desc {
    pub length: u32,
    pub actual_length: u32,
    /// A negative errno stored in an unsigned field.
    pub status: u32,
}

/// `struct usbdevfs_urb` (without the flexible array member).
#[repr(C)]
#[derive(Debug)]
pub struct usbdevfs_urb {
    pub type_: u8,
    pub endpoint: u8,
    pub status: i32,
    pub flags: u32,
    /// `void *` in C; kept as an address so the struct stays plain data.
    pub buffer: usize,
    pub buffer_length: i32,
    pub actual_length: i32,
    pub start_frame: i32,
    /// A union in C with `stream_id` (bulk streams only).
    pub number_of_packets: i32,
    pub error_count: i32,
    pub signr: u32,
    /// `void *` in C; isoscope stores the URB's id here.
    pub usercontext: usize,
}

/// The URB header followed by room for the maximum number of packet descriptors, so one
/// allocation serves any packet count (the kernel reads `number_of_packets` of them).
#[repr(C)]
#[derive(Debug)]
pub struct UrbMemory {
    pub urb: usbdevfs_urb,
    pub iso_frame_desc: [usbdevfs_iso_packet_desc; MAX_ISO_PACKETS],
}

/// Why a URB could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrbError {
    #[error("an iso URB carries 1 to {MAX_ISO_PACKETS} packets, not {0}")]
    PacketCount(usize),
    #[error("an iso packet is at most {MAX_ISO_PACKET_BYTES} bytes, not {0}")]
    PacketLength(u32),
    #[error("{packets} packets of {packet_len} bytes need {need} bytes but the buffer slot holds {slot}")]
    SlotTooSmall { packets: usize, packet_len: u32, need: usize, slot: usize },
}

/// A packet's completion status, decoded from the kernel's negative errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketStatus {
    Ok,
    /// The errno, positive, e.g. EXDEV (not completed in its frame), EPROTO, EILSEQ,
    /// EOVERFLOW, ENOSR: see [`UrbStatusKind`] for what each means.
    Error(i32),
}

impl PacketStatus {
    /// Decodes the `status` field of a packet descriptor.
    pub fn from_raw(raw: u32) -> PacketStatus {
        match raw as i32 {
            0 => PacketStatus::Ok,
            e => PacketStatus::Error(e.wrapping_neg()),
        }
    }

    /// What the status means.
    pub fn kind(self) -> UrbStatusKind {
        match self {
            PacketStatus::Ok => UrbStatusKind::Completed,
            PacketStatus::Error(errno) => UrbStatusKind::from_errno(errno),
        }
    }
}

/// What a URB's or an iso packet's completion status means: the one place an errno from a
/// completion is given a meaning (after the kernel's
/// Documentation/driver-api/usb/error-codes.rst and the host controller drivers). One kind
/// per errno, so counters and messages can name the errno the kernel reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UrbStatusKind {
    /// 0: transferred.
    Completed,
    /// ENOENT: killed by a discard (usb_kill_urb; the capture stopping).
    Killed,
    /// ECONNRESET: unlinked (usb_unlink_urb; USB/IP's unlink, an unbind).
    Unlinked,
    /// ESHUTDOWN: the device or its host controller went away.
    Shutdown,
    /// ENODEV: the device is gone.
    NoDevice,
    /// EXDEV: an iso packet not transferred in its (micro)frame.
    Missed,
    /// EPROTO: a protocol error on the bus (bit stuffing, no response in time).
    Protocol,
    /// EILSEQ: a bad CRC, or no packet at all.
    BadCrc,
    /// EOVERFLOW: the device sent more than the packet's length (babble).
    Babble,
    /// ENOSR: the controller could not fetch or store the data in time (buffer underrun).
    BufferUnderrun,
    /// ECOMM: the controller received data faster than it could write it (buffer overrun).
    BufferOverrun,
    /// ETIME: a bus-level timeout.
    Timeout,
    /// EPIPE: the endpoint stalled.
    Stall,
    /// Any other errno (positive).
    Other(i32),
}

/// Each [`UrbStatusKind`] but `Other` with its errno (positive) and the kernel's name for it.
const KNOWN_STATUSES: [(UrbStatusKind, i32, &str); 13] = {
    use nix::libc;
    [
        (UrbStatusKind::Completed, 0, "0"),
        (UrbStatusKind::Killed, libc::ENOENT, "ENOENT"),
        (UrbStatusKind::Unlinked, libc::ECONNRESET, "ECONNRESET"),
        (UrbStatusKind::Shutdown, libc::ESHUTDOWN, "ESHUTDOWN"),
        (UrbStatusKind::NoDevice, libc::ENODEV, "ENODEV"),
        (UrbStatusKind::Missed, libc::EXDEV, "EXDEV"),
        (UrbStatusKind::Protocol, libc::EPROTO, "EPROTO"),
        (UrbStatusKind::BadCrc, libc::EILSEQ, "EILSEQ"),
        (UrbStatusKind::Babble, libc::EOVERFLOW, "EOVERFLOW"),
        (UrbStatusKind::BufferUnderrun, libc::ENOSR, "ENOSR"),
        (UrbStatusKind::BufferOverrun, libc::ECOMM, "ECOMM"),
        (UrbStatusKind::Timeout, libc::ETIME, "ETIME"),
        (UrbStatusKind::Stall, libc::EPIPE, "EPIPE"),
    ]
};

impl UrbStatusKind {
    /// Every kind but [`UrbStatusKind::Other`].
    pub const ALL: [UrbStatusKind; KNOWN_STATUSES.len()] = {
        let mut all = [UrbStatusKind::Completed; KNOWN_STATUSES.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = KNOWN_STATUSES[i].0;
            i += 1;
        }
        all
    };

    /// The packet failures counted one by one (anything else counts as "other"): what the
    /// kernel documents for iso IN packets.
    pub const PACKET_ERRORS: [UrbStatusKind; 7] = [
        UrbStatusKind::Missed,
        UrbStatusKind::Protocol,
        UrbStatusKind::BadCrc,
        UrbStatusKind::Babble,
        UrbStatusKind::BufferUnderrun,
        UrbStatusKind::BufferOverrun,
        UrbStatusKind::Timeout,
    ];

    /// The kind of `errno`, of either sign (the kernel stores it negated); 0 is
    /// [`UrbStatusKind::Completed`].
    pub fn from_errno(errno: i32) -> UrbStatusKind {
        let errno = errno.checked_abs().unwrap_or(errno);
        KNOWN_STATUSES.iter().find(|k| k.1 == errno).map_or(UrbStatusKind::Other(errno), |k| k.0)
    }

    /// The errno, positive (0 for [`UrbStatusKind::Completed`]).
    pub fn errno(self) -> i32 {
        match self {
            UrbStatusKind::Other(errno) => errno,
            known => KNOWN_STATUSES.iter().find(|k| k.0 == known).map_or(0, |k| k.1),
        }
    }

    /// The kernel's name of the errno ("EXDEV"); "0" for [`UrbStatusKind::Completed`] and
    /// "other" for [`UrbStatusKind::Other`], the way the stats count it.
    pub fn name(self) -> &'static str {
        KNOWN_STATUSES.iter().find(|k| k.0 == self).map_or("other", |k| k.2)
    }

    /// What it means for an iso IN transfer, and what to try.
    pub fn meaning(self) -> &'static str {
        match self {
            UrbStatusKind::Completed => "transferred",
            UrbStatusKind::Killed | UrbStatusKind::Unlinked => {
                "cancelled: the capture stopped or the URB was unlinked"
            }
            UrbStatusKind::Shutdown | UrbStatusKind::NoDevice => {
                "the device disconnected: reconnect it and start again"
            }
            UrbStatusKind::Missed => {
                "the host controller did not transfer the packet in its (micro)frame: the bus or the \
                 controller was too busy, or the device did not answer in time. Try another USB port or \
                 controller, fewer busy devices on the same hub, or a lower rate or fewer channels"
            }
            UrbStatusKind::Protocol => {
                "a protocol error on the bus (bit stuffing, or no response in time): usually the cable, a \
                 hub or the device itself. Try another cable or port, without a hub"
            }
            UrbStatusKind::BadCrc => {
                "the packet arrived with a bad CRC, or not at all: a noisy link. Try another cable or port"
            }
            UrbStatusKind::Babble => {
                "the device sent more than the packet's length (babble): the endpoint's wMaxPacketSize \
                 does not match what it sends at this rate and format; try another alt setting (another \
                 format, channel count or rate)"
            }
            UrbStatusKind::BufferUnderrun | UrbStatusKind::BufferOverrun => {
                "the host controller could not move the data to memory in time (buffer overrun): the \
                 system is too busy; try more URBs in flight or a less loaded machine"
            }
            UrbStatusKind::Timeout => {
                "the device did not answer in time (a bus-level timeout): check the device and cable"
            }
            UrbStatusKind::Stall => "the endpoint stalled: the device refused the transfer",
            UrbStatusKind::Other(_) => "an error the kernel does not document for iso transfers",
        }
    }

    /// A discard (or unlink) ended it: no data, and nothing wrong.
    pub fn is_cancelled(self) -> bool {
        matches!(self, UrbStatusKind::Killed | UrbStatusKind::Unlinked)
    }

    /// The device is gone: the capture cannot go on.
    pub fn is_disconnect(self) -> bool {
        matches!(self, UrbStatusKind::Shutdown | UrbStatusKind::NoDevice)
    }

    /// Where [`UrbStatusKind::PACKET_ERRORS`] lists it; `None` for the ones counted as "other".
    pub fn packet_error_index(self) -> Option<usize> {
        UrbStatusKind::PACKET_ERRORS.iter().position(|&k| k == self)
    }
}

/// An iso IN URB that owns its buffer slot. Outside the kernel it is plain data; the
/// backends move it into the kernel on submit and get it back on reap, so an in-flight
/// URB and its slot are never reachable from safe code.
#[derive(Debug)]
pub struct IsoUrb {
    mem: Box<UrbMemory>,
    slot: Slot,
    id: usize,
    packets: usize,
    packet_len: u32,
}

impl IsoUrb {
    /// A URB for endpoint `endpoint` (with the IN bit) of `packets` packets requesting
    /// `packet_len` bytes each, reading into `slot`. `id` comes back at reap as the URB's
    /// `usercontext`.
    pub fn new(
        id: usize,
        endpoint: u8,
        slot: Slot,
        packets: usize,
        packet_len: u32,
    ) -> Result<IsoUrb, UrbError> {
        if packets == 0 || packets > MAX_ISO_PACKETS {
            return Err(UrbError::PacketCount(packets));
        }
        if packet_len == 0 || packet_len > MAX_ISO_PACKET_BYTES {
            return Err(UrbError::PacketLength(packet_len));
        }
        let need = packets * packet_len as usize;
        if need > slot.len() {
            return Err(UrbError::SlotTooSmall { packets, packet_len, need, slot: slot.len() });
        }
        let mem = Box::new(UrbMemory {
            urb: usbdevfs_urb {
                type_: USBDEVFS_URB_TYPE_ISO,
                endpoint,
                status: 0,
                flags: USBDEVFS_URB_ISO_ASAP,
                buffer: 0,
                buffer_length: need as i32,
                actual_length: 0,
                start_frame: 0,
                number_of_packets: packets as i32,
                error_count: 0,
                signr: 0,
                usercontext: id,
            },
            iso_frame_desc: [usbdevfs_iso_packet_desc::default(); MAX_ISO_PACKETS],
        });
        let mut urb = IsoUrb { mem, slot, id, packets, packet_len };
        urb.prepare();
        Ok(urb)
    }

    /// Resets the URB for (re)submission: buffer, lengths and flags as built, results cleared.
    pub fn prepare(&mut self) {
        let buffer = self.slot.as_mut_ptr() as usize;
        let u = &mut self.mem.urb;
        u.type_ = USBDEVFS_URB_TYPE_ISO;
        u.flags = USBDEVFS_URB_ISO_ASAP;
        u.buffer = buffer;
        u.buffer_length = (self.packets * self.packet_len as usize) as i32;
        u.actual_length = 0;
        u.status = 0;
        u.start_frame = 0;
        u.number_of_packets = self.packets as i32;
        u.error_count = 0;
        u.signr = 0;
        u.usercontext = self.id;
        for d in &mut self.mem.iso_frame_desc[..self.packets] {
            *d = usbdevfs_iso_packet_desc { length: self.packet_len, actual_length: 0, status: 0 };
        }
    }

    /// The id given at construction (the URB's `usercontext`).
    pub fn id(&self) -> usize {
        self.id
    }

    pub fn endpoint(&self) -> u8 {
        self.mem.urb.endpoint
    }

    /// Packets in this URB.
    pub fn packet_count(&self) -> usize {
        self.packets
    }

    /// Requested bytes per packet.
    pub fn packet_len(&self) -> u32 {
        self.packet_len
    }

    /// The buffer length the kernel checks against regions: the sum of requested lengths.
    pub fn buffer_len(&self) -> usize {
        self.packets * self.packet_len as usize
    }

    /// The buffer slot (readable only while the URB is out of the kernel, which holding
    /// `&IsoUrb` guarantees).
    pub fn slot(&self) -> &Slot {
        &self.slot
    }

    /// Which path the kernel takes for this URB's buffer.
    pub fn path(&self) -> TransferPath {
        self.slot.path()
    }

    /// The URB-level status (0 or a negative errno).
    pub fn status(&self) -> i32 {
        self.mem.urb.status
    }

    /// The (micro)frame number of the first packet, as the host controller reported it.
    pub fn start_frame(&self) -> i32 {
        self.mem.urb.start_frame
    }

    /// Packets that completed with an error.
    pub fn error_count(&self) -> i32 {
        self.mem.urb.error_count
    }

    /// The kernel struct, for the ioctl that submits it. The pointer stays valid while
    /// `self` lives (the memory is boxed, so moving `self` does not move it).
    pub fn as_raw(&mut self) -> *mut usbdevfs_urb {
        &mut self.mem.urb
    }

    /// The kernel struct's address, to match a reaped pointer back to its URB.
    pub fn raw_addr(&self) -> usize {
        &self.mem.urb as *const usbdevfs_urb as usize
    }

    /// The packet descriptors in use.
    pub fn descriptors(&self) -> &[usbdevfs_iso_packet_desc] {
        &self.mem.iso_frame_desc[..self.packets]
    }

    /// Walks the packets at their fixed offsets, yielding only valid bytes.
    pub fn packets(&self) -> PacketWalk<'_> {
        PacketWalk { descs: self.descriptors(), buf: self.slot.bytes(), index: 0, offset: 0 }
    }

    /// Device side of a completion (the simulated backends): the packet descriptors and
    /// the buffer to write into, as the host controller would see them.
    pub fn device_view(&mut self) -> (&mut [usbdevfs_iso_packet_desc], &mut [u8]) {
        let n = self.packets;
        (&mut self.mem.iso_frame_desc[..n], self.slot.bytes_mut())
    }

    /// Device side: the URB-level results the kernel writes at completion.
    pub fn complete(&mut self, status: i32, start_frame: i32) {
        let descs = &self.mem.iso_frame_desc[..self.packets];
        let actual: u32 = descs.iter().map(|d| d.actual_length).sum();
        let errors = descs.iter().filter(|d| d.status != 0).count();
        let u = &mut self.mem.urb;
        u.status = status;
        u.start_frame = start_frame;
        u.actual_length = actual as i32;
        u.error_count = errors as i32;
    }

    /// The whole buffer including gaps, for the raw buffer view (never for the signal).
    pub fn raw_buffer(&self) -> &[u8] {
        &self.slot.bytes()[..self.buffer_len()]
    }

    /// Gives the slot back (when the engine tears down).
    pub fn into_slot(self) -> Slot {
        self.slot
    }
}

/// One packet of a reaped URB.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub index: usize,
    /// Where the packet starts in the buffer: the sum of requested lengths before it.
    pub offset: usize,
    pub requested: u32,
    /// What the device sent (clamped to `requested`).
    pub actual: u32,
    pub status: PacketStatus,
    /// The valid bytes: `[offset, offset + actual)` if the status is OK, else empty.
    pub data: &'a [u8],
}

impl Packet<'_> {
    /// Fewer bytes than requested arrived (normal for audio, whose packets vary in size).
    pub fn is_short(&self) -> bool {
        self.actual < self.requested
    }
}

/// Iterator over a URB's packets at their fixed offsets (DESIGN invariant 1).
#[derive(Debug)]
pub struct PacketWalk<'a> {
    descs: &'a [usbdevfs_iso_packet_desc],
    buf: &'a [u8],
    index: usize,
    offset: usize,
}

impl<'a> Iterator for PacketWalk<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        let d = self.descs.get(self.index)?;
        let offset = self.offset;
        let requested = d.length;
        self.offset += requested as usize;
        self.index += 1;
        let mut status = PacketStatus::from_raw(d.status);
        // A length past what was requested would read the next packet's space: treat it as
        // an overflow, like a babbling device.
        let actual = if d.actual_length > requested {
            if status == PacketStatus::Ok {
                status = PacketStatus::Error(UrbStatusKind::Babble.errno());
            }
            requested
        } else {
            d.actual_length
        };
        let data = match status {
            PacketStatus::Ok => self.buf.get(offset..offset + actual as usize).unwrap_or(&[]),
            PacketStatus::Error(_) => &[],
        };
        Some(Packet { index: self.index - 1, offset, requested, actual, status, data })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.descs.len() - self.index;
        (n, Some(n))
    }
}

impl ExactSizeIterator for PacketWalk<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::{BufferPool, PoolLayout};

    #[test]
    fn every_status_kind_round_trips_through_its_errno_of_either_sign() {
        for kind in UrbStatusKind::ALL {
            assert_eq!(UrbStatusKind::from_errno(kind.errno()), kind, "{kind:?}");
            assert_eq!(UrbStatusKind::from_errno(-kind.errno()), kind, "{kind:?}");
            let errno = nix::errno::Errno::from_raw(kind.errno());
            if kind != UrbStatusKind::Completed {
                assert_eq!(format!("{errno:?}"), kind.name(), "the kernel's name of {kind:?}");
            }
            assert!(!kind.meaning().is_empty());
        }
        assert_eq!(UrbStatusKind::from_errno(-nix::libc::EINVAL), UrbStatusKind::Other(nix::libc::EINVAL));
        assert_eq!(UrbStatusKind::from_errno(i32::MIN).name(), "other");
        assert_eq!(PacketStatus::from_raw((-nix::libc::EILSEQ) as u32).kind(), UrbStatusKind::BadCrc);
        assert_eq!(PacketStatus::Ok.kind(), UrbStatusKind::Completed);
        for (i, kind) in UrbStatusKind::PACKET_ERRORS.into_iter().enumerate() {
            assert_eq!(kind.packet_error_index(), Some(i));
            assert!(!kind.is_cancelled() && !kind.is_disconnect());
        }
        let cancelled: Vec<_> = UrbStatusKind::ALL.into_iter().filter(|k| k.is_cancelled()).collect();
        assert_eq!(cancelled, [UrbStatusKind::Killed, UrbStatusKind::Unlinked]);
        let gone: Vec<_> = UrbStatusKind::ALL.into_iter().filter(|k| k.is_disconnect()).collect();
        assert_eq!(gone, [UrbStatusKind::Shutdown, UrbStatusKind::NoDevice]);
    }

    fn urb(packets: usize, packet_len: u32) -> IsoUrb {
        let slot = BufferPool::heap(PoolLayout::new(packets * packet_len as usize, 1)).into_slots().remove(0);
        IsoUrb::new(7, 0x81, slot, packets, packet_len).unwrap()
    }

    #[test]
    fn kernel_struct_layout_matches_the_header() {
        // x86_64 / aarch64 sizes of struct usbdevfs_urb and its packet descriptor.
        assert_eq!(std::mem::size_of::<usbdevfs_iso_packet_desc>(), 12);
        assert_eq!(std::mem::size_of::<usbdevfs_urb>(), 56);
        assert_eq!(std::mem::offset_of!(usbdevfs_urb, buffer), 16);
        assert_eq!(std::mem::offset_of!(usbdevfs_urb, usercontext), 48);
        assert_eq!(std::mem::offset_of!(UrbMemory, iso_frame_desc), 56);
    }

    #[test]
    fn packet_and_length_limits_are_the_kernels() {
        let slot = || BufferPool::heap(PoolLayout::new(200 * 1024, 1)).into_slots().remove(0);
        assert_eq!(IsoUrb::new(0, 0x81, slot(), 0, 8).unwrap_err(), UrbError::PacketCount(0));
        assert_eq!(IsoUrb::new(0, 0x81, slot(), 129, 8).unwrap_err(), UrbError::PacketCount(129));
        assert!(IsoUrb::new(0, 0x81, slot(), 128, 8).is_ok());
        assert_eq!(IsoUrb::new(0, 0x81, slot(), 1, 98_305).unwrap_err(), UrbError::PacketLength(98_305));
        assert!(IsoUrb::new(0, 0x81, slot(), 2, 98_304).is_ok());
        assert!(matches!(IsoUrb::new(0, 0x81, slot(), 3, 98_304), Err(UrbError::SlotTooSmall { .. })));
    }

    #[test]
    fn walk_reads_only_valid_bytes_at_requested_offsets() {
        let mut u = urb(4, 10);
        {
            let (descs, buf) = u.device_view();
            buf.fill(0xEE); // stale bytes everywhere
                            // packet 0: full; 1: short (3 bytes); 2: error with a length; 3: zero-length
            for (i, d) in descs.iter_mut().enumerate() {
                d.actual_length = [10, 3, 10, 0][i];
                d.status = if i == 2 { (-nix::libc::EPROTO) as u32 } else { 0 };
            }
            buf[0..10].copy_from_slice(b"0123456789");
            buf[10..13].copy_from_slice(b"abc");
            buf[20..30].copy_from_slice(b"BADBADBADB");
        }
        u.complete(0, 1234);
        let p: Vec<_> = u.packets().collect();
        assert_eq!(p.len(), 4);
        assert_eq!(p.iter().map(|p| p.offset).collect::<Vec<_>>(), [0, 10, 20, 30]);
        assert_eq!(p[0].data, b"0123456789");
        assert_eq!(p[1].data, b"abc");
        assert!(p[1].is_short());
        assert_eq!(p[2].status, PacketStatus::Error(nix::libc::EPROTO));
        assert!(p[2].data.is_empty());
        assert!(p[3].data.is_empty());
        assert_eq!(u.error_count(), 1);
        assert_eq!(u.start_frame(), 1234);
        let all: Vec<u8> = u.packets().flat_map(|p| p.data.iter().copied()).collect();
        assert!(!all.contains(&0xEE), "stale gap bytes leaked: {all:?}");
    }

    #[test]
    fn an_actual_length_past_the_request_is_an_overflow_not_a_read() {
        let mut u = urb(2, 4);
        {
            let (descs, buf) = u.device_view();
            buf.copy_from_slice(b"AAAABBBB");
            descs[0].actual_length = 8;
            descs[1].actual_length = 4;
        }
        let p: Vec<_> = u.packets().collect();
        assert_eq!(p[0].status, PacketStatus::Error(nix::libc::EOVERFLOW));
        assert!(p[0].data.is_empty());
        assert_eq!(p[1].data, b"BBBB");
    }

    #[test]
    fn prepare_clears_results_for_resubmission() {
        let mut u = urb(2, 4);
        u.device_view().0[0].actual_length = 4;
        u.complete(-5, 9);
        u.prepare();
        assert_eq!(u.status(), 0);
        assert!(u.descriptors().iter().all(|d| d.actual_length == 0 && d.length == 4));
        assert_eq!(u.mem.urb.buffer, u.slot().addr());
        assert_eq!(u.mem.urb.usercontext, 7);
    }
}
