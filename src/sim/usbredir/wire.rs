//! usbredir messages on the wire (spice-usbredir `docs/usb-redirection-protocol.md`, protocol
//! version 0.7, struct layouts from `usbredirproto.h`) for the usb-host side: the side that has
//! the device, talking to QEMU's `usb-redir` (the usb-guest). Parsing what a usb-guest sends and
//! encoding what a usb-host answers. Pure and bounded: the parser works on a byte buffer
//! (incrementally: a partial message asks for more bytes), checks every length against the
//! type's fixed layout and limits before looking at the payload, borrows instead of
//! allocating, and reports bad input as a typed error. Nothing here panics on any input.
//!
//! All integers are little-endian and all structs packed. A message is a header (`u32` type,
//! `u32` length of what follows, then the id: `u32`, or `u64` once both sides advertised
//! [`Cap::Ids64`]), a type-specific fixed header, then data for the packet types that carry
//! it. Which fields some fixed headers have depends on the capabilities both sides
//! advertised in their hellos, so the parser and the encoders take a [`Link`].

use nix::libc;

/// Bytes of the message header with 32-bit ids (always used for the hello messages).
pub const HEADER32_BYTES: usize = 12;
/// Bytes of the message header once both sides have [`Cap::Ids64`].
pub const HEADER64_BYTES: usize = 16;
/// Bytes of the version string in a hello (NUL-terminated, NUL-padded).
pub const HELLO_VERSION_BYTES: usize = 64;
/// The most capability bytes we accept after a hello's version (64 words, 2048 capabilities;
/// protocol 0.7 defines 8, in one word).
pub const MAX_HELLO_CAPS_BYTES: usize = 256;
/// The most data bytes one message may carry (bulk OUT data; control, iso and interrupt data
/// are limited to 65535 by their `u16` length fields anyway).
pub const MAX_DATA_BYTES: usize = 1 << 20;
/// The largest bulk transfer length a request may name (usbredirparser's
/// `MAX_BULK_TRANSFER_SIZE`; a bulk IN request names it without carrying the data).
pub const MAX_BULK_TRANSFER_BYTES: u32 = 128 << 20;
/// The longest filter string we accept in a `filter_filter` (with its NUL).
pub const MAX_FILTER_BYTES: usize = 64 << 10;

pub const TYPE_HELLO: u32 = 0;
pub const TYPE_DEVICE_CONNECT: u32 = 1;
pub const TYPE_DEVICE_DISCONNECT: u32 = 2;
pub const TYPE_RESET: u32 = 3;
pub const TYPE_INTERFACE_INFO: u32 = 4;
pub const TYPE_EP_INFO: u32 = 5;
pub const TYPE_SET_CONFIGURATION: u32 = 6;
pub const TYPE_GET_CONFIGURATION: u32 = 7;
pub const TYPE_CONFIGURATION_STATUS: u32 = 8;
pub const TYPE_SET_ALT_SETTING: u32 = 9;
pub const TYPE_GET_ALT_SETTING: u32 = 10;
pub const TYPE_ALT_SETTING_STATUS: u32 = 11;
pub const TYPE_START_ISO_STREAM: u32 = 12;
pub const TYPE_STOP_ISO_STREAM: u32 = 13;
pub const TYPE_ISO_STREAM_STATUS: u32 = 14;
pub const TYPE_START_INTERRUPT_RECEIVING: u32 = 15;
pub const TYPE_STOP_INTERRUPT_RECEIVING: u32 = 16;
pub const TYPE_INTERRUPT_RECEIVING_STATUS: u32 = 17;
pub const TYPE_ALLOC_BULK_STREAMS: u32 = 18;
pub const TYPE_FREE_BULK_STREAMS: u32 = 19;
pub const TYPE_BULK_STREAMS_STATUS: u32 = 20;
pub const TYPE_CANCEL_DATA_PACKET: u32 = 21;
pub const TYPE_FILTER_REJECT: u32 = 22;
pub const TYPE_FILTER_FILTER: u32 = 23;
pub const TYPE_DEVICE_DISCONNECT_ACK: u32 = 24;
pub const TYPE_START_BULK_RECEIVING: u32 = 25;
pub const TYPE_STOP_BULK_RECEIVING: u32 = 26;
pub const TYPE_BULK_RECEIVING_STATUS: u32 = 27;
pub const TYPE_CONTROL_PACKET: u32 = 100;
pub const TYPE_BULK_PACKET: u32 = 101;
pub const TYPE_ISO_PACKET: u32 = 102;
pub const TYPE_INTERRUPT_PACKET: u32 = 103;
pub const TYPE_BUFFERED_BULK_PACKET: u32 = 104;

/// A message a usb-host cannot accept. Every error is found once the message header is
/// complete; [`WireError::resyncable`] says whether skipping the frame is an option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("unknown message type {ty} (length {length})")]
    UnknownType { ty: u32, length: u32 },
    #[error("message type {ty} is only sent by a usb-host, not to one")]
    HostOnlyType { ty: u32 },
    #[error("message type {ty} needs capability {cap:?}, which we did not advertise")]
    CapNotNegotiated { ty: u32, cap: Cap },
    #[error("message type {ty} has length {length}, at most {max} allowed")]
    TooLong { ty: u32, length: u32, max: usize },
    #[error("message type {ty} has length {length}, its layout needs {expected}")]
    Length { ty: u32, length: u32, expected: usize },
    #[error("message type {ty} declares {declared} data bytes but carries {data}")]
    DataLength { ty: u32, declared: u32, data: usize },
    #[error("message type {ty} for IN endpoint {endpoint:#04x} carries {data} data bytes")]
    UnexpectedData { ty: u32, endpoint: u8, data: usize },
    #[error("message type {ty} is not valid for endpoint {endpoint:#04x} in this direction")]
    WrongDirection { ty: u32, endpoint: u8 },
    #[error("message type {ty} names a transfer of {length} bytes, at most {max} allowed")]
    TransferTooLong { ty: u32, length: u32, max: u32 },
    #[error("hello version is not a NUL-terminated string")]
    HelloVersion,
    #[error("filter_filter data is not a NUL-terminated string")]
    Filter,
}

impl WireError {
    /// Whether the frame that caused this error can be skipped to stay in sync: the next
    /// message starts [`Header::frame_len`] bytes on, as usbredirparser does for every bad
    /// message (QEMU ignores the error and reads on). `false` when the header's length is over
    /// [`MAX_DATA_BYTES`]: reading up to 4 GiB to throw it away is worse than closing.
    pub fn resyncable(&self) -> bool {
        match *self {
            Self::UnknownType { length, .. } | Self::TooLong { length, .. } | Self::Length { length, .. } => {
                length as usize <= MAX_DATA_BYTES
            }
            _ => true,
        }
    }
}

/// A capability from a hello's capability array (the bit number in `usbredirproto.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Cap {
    /// USB 3 bulk streams; `ep_info` carries `max_streams`.
    BulkStreams = 0,
    /// `device_connect` carries `device_version_bcd`.
    ConnectDeviceVersion = 1,
    /// `filter_reject` and `filter_filter` messages.
    Filter = 2,
    /// The usb-guest answers `device_disconnect` with `device_disconnect_ack`.
    DeviceDisconnectAck = 3,
    /// `ep_info` carries `max_packet_size`.
    EpInfoMaxPacketSize = 4,
    /// 64-bit ids in the message header.
    Ids64 = 5,
    /// `bulk_packet` carries `length_high`.
    BulkLength32 = 6,
    /// Bulk receiving (`start_bulk_receiving`, `buffered_bulk_packet`).
    BulkReceiving = 7,
}

/// A set of capabilities: the first `u32` of a hello's capability array (the only word
/// protocol 0.7 defines).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Caps(pub u32);

impl Caps {
    /// No capabilities: what we know of a peer before its hello.
    pub const EMPTY: Caps = Caps(0);
    /// What a usb-host of ours advertises:
    /// - [`Cap::EpInfoMaxPacketSize`], [`Cap::Ids64`], [`Cap::BulkLength32`]: QEMU refuses
    ///   to attach a device to a port with SuperSpeed (xHCI) without all three
    ///   (`usbredir_do_attach`), and without the first it also takes iso and interrupt
    ///   endpoints for speed-incompatible (`usbredir_ep_info`).
    /// - [`Cap::ConnectDeviceVersion`]: `device_connect` carries bcdDevice, which QEMU needs
    ///   to check a `filter=` property (`usbredir_check_filter`).
    /// - [`Cap::Filter`]: QEMU then tells us with `filter_reject` when it refuses the device
    ///   (no interface info, a filter, a speed mismatch, missing xHCI capabilities) instead of
    ///   dropping it silently; a `filter_filter` it may send after its hello is only logged.
    /// - [`Cap::DeviceDisconnectAck`]: QEMU's parser then acknowledges our
    ///   `device_disconnect`, so we know when a new `device_connect` on the same connection can
    ///   no longer meet packets meant for the old device.
    ///
    /// Not advertised: [`Cap::BulkStreams`] (no USB 3 streams here; without it `ep_info` has no
    /// `max_streams` and QEMU never sends `alloc_bulk_streams`) and [`Cap::BulkReceiving`]
    /// (buffered bulk IN is for QEMU's FTDI-like quirk devices; without it QEMU never sends
    /// `start_bulk_receiving`).
    pub const DEVICE: Caps = Caps::EMPTY
        .with(Cap::ConnectDeviceVersion)
        .with(Cap::Filter)
        .with(Cap::DeviceDisconnectAck)
        .with(Cap::EpInfoMaxPacketSize)
        .with(Cap::Ids64)
        .with(Cap::BulkLength32);

    /// This set and `cap`.
    pub const fn with(self, cap: Cap) -> Caps {
        Caps(self.0 | (1 << cap as u32))
    }

    /// Whether `cap` is in the set.
    pub const fn has(self, cap: Cap) -> bool {
        self.0 & (1 << cap as u32) != 0
    }

    /// The caps of a received hello's capability bytes: the first word (missing bytes are
    /// zero, later words are ignored), with [`Cap::BulkStreams`] dropped when
    /// [`Cap::EpInfoMaxPacketSize`] is missing, as usbredirparser does (the protocol forbids
    /// that combination, and `ep_info`'s layout depends on it).
    pub fn from_wire(bytes: &[u8]) -> Caps {
        let mut w = [0u8; 4];
        let n = bytes.len().min(4);
        w[..n].copy_from_slice(&bytes[..n]);
        let caps = Caps(u32::from_le_bytes(w));
        if caps.has(Cap::BulkStreams) && !caps.has(Cap::EpInfoMaxPacketSize) {
            Caps(caps.0 & !(1 << Cap::BulkStreams as u32))
        } else {
            caps
        }
    }
}

/// What one connection has negotiated: our caps and, once its hello arrived, the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub ours: Caps,
    /// `None` until the peer's hello has been parsed.
    pub peer: Option<Caps>,
}

impl Link {
    /// A connection before the peer's hello (32-bit ids, no shared capabilities).
    pub const fn new(ours: Caps) -> Link {
        Link { ours, peer: None }
    }

    /// This connection once the peer's hello with `peer` arrived.
    pub const fn with_peer(self, peer: Caps) -> Link {
        Link { ours: self.ours, peer: Some(peer) }
    }

    /// Whether both sides advertised `cap`.
    pub fn both(&self, cap: Cap) -> bool {
        self.ours.has(cap) && self.peer.is_some_and(|p| p.has(cap))
    }

    /// Whether message headers carry 64-bit ids.
    pub fn ids64(&self) -> bool {
        self.both(Cap::Ids64)
    }

    /// Bytes of a message header on this connection.
    pub fn header_len(&self) -> usize {
        if self.ids64() {
            HEADER64_BYTES
        } else {
            HEADER32_BYTES
        }
    }
}

/// A message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub ty: u32,
    /// Bytes after the header: the type's fixed header plus its data.
    pub length: u32,
    pub id: u64,
}

impl Header {
    /// The header at the start of `buf`, or `None` if `buf` is shorter than a header.
    pub fn parse(buf: &[u8], link: &Link) -> Option<Header> {
        let h = buf.get(..link.header_len())?;
        let id = if link.ids64() { le64(h, 8) } else { u64::from(le32(h, 8)) };
        Some(Header { ty: le32(h, 0), length: le32(h, 4), id })
    }

    /// Bytes of the whole message: header and payload.
    pub fn frame_len(&self, link: &Link) -> u64 {
        link.header_len() as u64 + u64::from(self.length)
    }
}

/// A status code in a usb-host's reply. Values the protocol does not define (yet) are kept;
/// the protocol says to take them for errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Status(pub u8);

impl Status {
    pub const SUCCESS: Status = Status(0);
    /// The transfer was cancelled.
    pub const CANCELLED: Status = Status(1);
    /// Invalid packet type, length, endpoint, etc.
    pub const INVAL: Status = Status(2);
    pub const IOERROR: Status = Status(3);
    pub const STALL: Status = Status(4);
    pub const TIMEOUT: Status = Status(5);
    /// The device babbled (sent more than asked for).
    pub const BABBLE: Status = Status(6);

    pub fn is_success(self) -> bool {
        self == Self::SUCCESS
    }

    /// The status for a Linux URB status or transfer error (negative or positive errno, 0 for
    /// success), as libusb and usbredirhost map them: `EPIPE` stall, `EOVERFLOW` babble,
    /// `ETIMEDOUT` timeout, `ENOENT`/`ECONNRESET` (killed or unlinked URB) cancelled,
    /// `EINVAL`/`EMSGSIZE` inval, everything else (`EPROTO`, `EILSEQ`, `EXDEV`, `ESHUTDOWN`,
    /// `ENODEV`, ...) ioerror.
    pub fn from_errno(errno: i32) -> Status {
        match errno.unsigned_abs() as i32 {
            0 => Self::SUCCESS,
            libc::EPIPE => Self::STALL,
            libc::EOVERFLOW => Self::BABBLE,
            libc::ETIMEDOUT => Self::TIMEOUT,
            libc::ENOENT | libc::ECONNRESET => Self::CANCELLED,
            libc::EINVAL | libc::EMSGSIZE => Self::INVAL,
            _ => Self::IOERROR,
        }
    }
}

/// Device speed in `device_connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Speed {
    Low = 0,
    Full = 1,
    High = 2,
    Super = 3,
    Unknown = 255,
}

/// Endpoint type in `ep_info` (the first four match the USB spec's bmAttributes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum EpType {
    Control = 0,
    Iso = 1,
    Bulk = 2,
    Interrupt = 3,
    /// No such endpoint.
    #[default]
    Invalid = 255,
}

/// `device_connect`: the device the usb-host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConnect {
    pub speed: Speed,
    pub device_class: u8,
    pub device_subclass: u8,
    pub device_protocol: u8,
    pub vendor_id: u16,
    pub product_id: u16,
    /// bcdDevice; on the wire only with [`Cap::ConnectDeviceVersion`] on both sides.
    pub device_version_bcd: u16,
}

/// One interface in `interface_info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interface {
    /// bInterfaceNumber.
    pub number: u8,
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
}

/// `interface_info`: the interfaces of the active configuration, in their current alt
/// settings (at most 32; more are not encoded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub interfaces: Vec<Interface>,
}

/// One endpoint in `ep_info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub kind: EpType,
    /// bInterval as in the descriptor (QEMU must not see 0 for iso or interrupt endpoints: it
    /// refuses the device).
    pub interval: u8,
    /// bInterfaceNumber the endpoint belongs to.
    pub interface: u8,
    /// Bytes per (micro)frame: mult x packet size, not the wMaxPacketSize bit field. On the
    /// wire only with [`Cap::EpInfoMaxPacketSize`] on both sides.
    pub max_packet_size: u16,
    /// On the wire only with [`Cap::BulkStreams`] on both sides.
    pub max_streams: u32,
}

/// `ep_info`: all 32 endpoints, index 0-15 OUT then 16-31 IN (see [`EpInfo::index`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpInfo {
    pub endpoints: [Endpoint; 32],
}

impl Default for EpInfo {
    /// Only endpoint 0 (control, both directions), as usbredirhost reports a device without a
    /// configuration.
    fn default() -> EpInfo {
        let mut endpoints = [Endpoint::default(); 32];
        endpoints[0].kind = EpType::Control;
        endpoints[16].kind = EpType::Control;
        EpInfo { endpoints }
    }
}

impl EpInfo {
    /// The index of endpoint `address` (bit 7 direction, bits 0-3 number).
    pub const fn index(address: u8) -> usize {
        (((address & 0x80) >> 3) | (address & 0x0f)) as usize
    }

    /// Sets the endpoint at `address`.
    pub fn set(&mut self, address: u8, endpoint: Endpoint) {
        self.endpoints[Self::index(address)] = endpoint;
    }

    /// The endpoint at `address`.
    pub fn get(&self, address: u8) -> &Endpoint {
        &self.endpoints[Self::index(address)]
    }
}

/// `start_iso_stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartIsoStream {
    pub endpoint: u8,
    pub pkts_per_urb: u8,
    pub no_urbs: u8,
}

/// `start_bulk_receiving`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartBulkReceiving {
    pub stream_id: u32,
    pub bytes_per_transfer: u32,
    pub endpoint: u8,
    pub no_transfers: u8,
}

/// The fixed header of `control_packet`, both ways: the request, and the reply with `status`
/// and `length` updated to what happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlPacket {
    /// 0x80 for IN, 0x00 for OUT (QEMU sends `requesttype & 0x80`).
    pub endpoint: u8,
    pub request: u8,
    pub requesttype: u8,
    pub status: Status,
    pub value: u16,
    pub index: u16,
    /// wLength in a request; the bytes transferred in a reply.
    pub length: u16,
}

/// The fixed header of `bulk_packet`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkPacket {
    pub endpoint: u8,
    pub status: Status,
    /// `length | length_high << 16` (`length_high` only with [`Cap::BulkLength32`]).
    pub length: u32,
    pub stream_id: u32,
}

/// The fixed header of `iso_packet` (and of `interrupt_packet`, which has the same layout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IsoPacketHeader {
    pub endpoint: u8,
    pub status: Status,
    pub length: u16,
}

/// The fixed header of `interrupt_packet`.
pub type InterruptPacketHeader = IsoPacketHeader;

/// A message a usb-host receives. Data borrows from the parsed buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// The peer's hello: its version (the bytes before the NUL; free form, for logs only) and
    /// caps. Must be the first message; whether a second one is an error is the caller's call
    /// (usbredirparser ignores it).
    Hello {
        version: &'a [u8],
        caps: Caps,
    },
    /// Reset the device; no reply.
    Reset,
    SetConfiguration {
        configuration: u8,
    },
    GetConfiguration,
    SetAltSetting {
        interface: u8,
        alt: u8,
    },
    GetAltSetting {
        interface: u8,
    },
    StartIsoStream(StartIsoStream),
    StopIsoStream {
        endpoint: u8,
    },
    /// Always for an IN endpoint (others are rejected).
    StartInterruptReceiving {
        endpoint: u8,
    },
    /// Always for an IN endpoint (others are rejected).
    StopInterruptReceiving {
        endpoint: u8,
    },
    /// `endpoints` is a bit mask of [`EpInfo::index`]es.
    AllocBulkStreams {
        endpoints: u32,
        no_streams: u32,
    },
    FreeBulkStreams {
        endpoints: u32,
    },
    /// Cancel the data packet with the frame's id (it is still answered, with
    /// [`Status::CANCELLED`] unless it completed first).
    CancelDataPacket,
    /// The usb-guest refused the device.
    FilterReject,
    /// The usb-guest's device filter (usbredirfilter rule string, without its NUL).
    FilterFilter {
        rules: &'a [u8],
    },
    DeviceDisconnectAck,
    /// Always for an IN endpoint (others are rejected).
    StartBulkReceiving(StartBulkReceiving),
    /// Always for an IN endpoint (others are rejected).
    StopBulkReceiving {
        stream_id: u32,
        endpoint: u8,
    },
    /// `data` is the OUT data (`packet.length` bytes); empty for IN.
    ControlPacket {
        packet: ControlPacket,
        data: &'a [u8],
    },
    /// `data` is the OUT data (`packet.length` bytes); empty for IN.
    BulkPacket {
        packet: BulkPacket,
        data: &'a [u8],
    },
    /// Iso OUT data (IN endpoints are rejected: iso IN data only flows to the usb-guest).
    IsoPacket {
        packet: IsoPacketHeader,
        data: &'a [u8],
    },
    /// Interrupt OUT data (IN endpoints are rejected: use interrupt receiving).
    InterruptPacket {
        packet: InterruptPacketHeader,
        data: &'a [u8],
    },
}

/// A parsed message with its header's id and the bytes it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub id: u64,
    pub message: Message<'a>,
    /// Bytes of `buf` the message took (header and payload); never more than `buf.len()`.
    pub consumed: usize,
}

/// What [`parse`] found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// The buffer holds only part of a message; it needs at least `needed` bytes in all
    /// (the header, or once the header is there, the whole message).
    Incomplete {
        needed: usize,
    },
    Message(Frame<'a>),
}

/// How a message type received by a usb-host is laid out: its fixed header size and the most
/// data bytes it may carry after it.
fn layout(ty: u32, length: u32, link: &Link) -> Result<(usize, usize), WireError> {
    let need = |cap: Cap| {
        if link.ours.has(cap) {
            Ok(())
        } else {
            Err(WireError::CapNotNegotiated { ty, cap })
        }
    };
    Ok(match ty {
        TYPE_HELLO => (HELLO_VERSION_BYTES, MAX_HELLO_CAPS_BYTES),
        TYPE_RESET | TYPE_GET_CONFIGURATION | TYPE_CANCEL_DATA_PACKET => (0, 0),
        TYPE_SET_CONFIGURATION | TYPE_GET_ALT_SETTING => (1, 0),
        TYPE_SET_ALT_SETTING => (2, 0),
        TYPE_START_ISO_STREAM => (3, 0),
        TYPE_STOP_ISO_STREAM | TYPE_START_INTERRUPT_RECEIVING | TYPE_STOP_INTERRUPT_RECEIVING => (1, 0),
        TYPE_ALLOC_BULK_STREAMS => (8, 0),
        TYPE_FREE_BULK_STREAMS => (4, 0),
        TYPE_FILTER_REJECT => {
            need(Cap::Filter)?;
            (0, 0)
        }
        TYPE_FILTER_FILTER => {
            need(Cap::Filter)?;
            (0, MAX_FILTER_BYTES)
        }
        TYPE_DEVICE_DISCONNECT_ACK => {
            need(Cap::DeviceDisconnectAck)?;
            (0, 0)
        }
        TYPE_START_BULK_RECEIVING => {
            need(Cap::BulkReceiving)?;
            (10, 0)
        }
        TYPE_STOP_BULK_RECEIVING => {
            need(Cap::BulkReceiving)?;
            (5, 0)
        }
        TYPE_CONTROL_PACKET => (10, usize::from(u16::MAX)),
        TYPE_BULK_PACKET => (bulk_header_len(link), MAX_DATA_BYTES),
        TYPE_ISO_PACKET | TYPE_INTERRUPT_PACKET => (4, usize::from(u16::MAX)),
        TYPE_DEVICE_CONNECT
        | TYPE_DEVICE_DISCONNECT
        | TYPE_INTERFACE_INFO
        | TYPE_EP_INFO
        | TYPE_CONFIGURATION_STATUS
        | TYPE_ALT_SETTING_STATUS
        | TYPE_ISO_STREAM_STATUS
        | TYPE_INTERRUPT_RECEIVING_STATUS
        | TYPE_BULK_STREAMS_STATUS
        | TYPE_BULK_RECEIVING_STATUS
        | TYPE_BUFFERED_BULK_PACKET => return Err(WireError::HostOnlyType { ty }),
        _ => return Err(WireError::UnknownType { ty, length }),
    })
}

fn bulk_header_len(link: &Link) -> usize {
    if link.both(Cap::BulkLength32) {
        10
    } else {
        8
    }
}

/// Parses the message at the start of `buf` (what a usb-guest sends), or says how many bytes
/// it needs. A server loop appends what it reads to a buffer, calls this until it returns
/// [`Parsed::Incomplete`], and drops each frame's `consumed` bytes; after the peer's hello it
/// continues with [`Link::with_peer`], since the header size and some layouts change.
///
/// The header alone decides the errors about the type, its capability and its length (no
/// payload is waited for, let alone buffered, for a message that cannot be valid); the
/// payload's content is checked once it is complete.
pub fn parse<'a>(buf: &'a [u8], link: &Link) -> Result<Parsed<'a>, WireError> {
    let header_len = link.header_len();
    let Some(header) = Header::parse(buf, link) else {
        return Ok(Parsed::Incomplete { needed: header_len });
    };
    let (ty, length) = (header.ty, header.length);
    let (fixed, max_data) = layout(ty, length, link)?;
    let len = length as usize;
    if len < fixed || (max_data == 0 && len != fixed) {
        return Err(WireError::Length { ty, length, expected: fixed });
    }
    if len - fixed > max_data {
        return Err(WireError::TooLong { ty, length, max: fixed + max_data });
    }
    let total = header_len + len;
    let Some(payload) = buf.get(header_len..total) else {
        return Ok(Parsed::Incomplete { needed: total });
    };
    let (th, data) = payload.split_at(fixed);
    let message = decode(ty, th, data, link)?;
    Ok(Parsed::Message(Frame { id: header.id, message, consumed: total }))
}

/// Decodes a payload whose fixed header `th` has exactly the type's size.
fn decode<'a>(ty: u32, th: &'a [u8], data: &'a [u8], link: &Link) -> Result<Message<'a>, WireError> {
    let in_only = |endpoint: u8| {
        if endpoint & 0x80 != 0 {
            Ok(endpoint)
        } else {
            Err(WireError::WrongDirection { ty, endpoint })
        }
    };
    // Data packets carry data one way only: to the usb-host for OUT endpoints.
    let out_data = |endpoint: u8, declared: u32| {
        if endpoint & 0x80 != 0 {
            if data.is_empty() {
                Ok(data)
            } else {
                Err(WireError::UnexpectedData { ty, endpoint, data: data.len() })
            }
        } else if data.len() as u64 == u64::from(declared) {
            Ok(data)
        } else {
            Err(WireError::DataLength { ty, declared, data: data.len() })
        }
    };
    Ok(match ty {
        TYPE_HELLO => {
            let end = th.iter().position(|&c| c == 0).ok_or(WireError::HelloVersion)?;
            Message::Hello { version: &th[..end], caps: Caps::from_wire(data) }
        }
        TYPE_RESET => Message::Reset,
        TYPE_SET_CONFIGURATION => Message::SetConfiguration { configuration: th[0] },
        TYPE_GET_CONFIGURATION => Message::GetConfiguration,
        TYPE_SET_ALT_SETTING => Message::SetAltSetting { interface: th[0], alt: th[1] },
        TYPE_GET_ALT_SETTING => Message::GetAltSetting { interface: th[0] },
        TYPE_START_ISO_STREAM => {
            Message::StartIsoStream(StartIsoStream { endpoint: th[0], pkts_per_urb: th[1], no_urbs: th[2] })
        }
        TYPE_STOP_ISO_STREAM => Message::StopIsoStream { endpoint: th[0] },
        TYPE_START_INTERRUPT_RECEIVING => Message::StartInterruptReceiving { endpoint: in_only(th[0])? },
        TYPE_STOP_INTERRUPT_RECEIVING => Message::StopInterruptReceiving { endpoint: in_only(th[0])? },
        TYPE_ALLOC_BULK_STREAMS => {
            Message::AllocBulkStreams { endpoints: le32(th, 0), no_streams: le32(th, 4) }
        }
        TYPE_FREE_BULK_STREAMS => Message::FreeBulkStreams { endpoints: le32(th, 0) },
        TYPE_CANCEL_DATA_PACKET => Message::CancelDataPacket,
        TYPE_FILTER_REJECT => Message::FilterReject,
        TYPE_FILTER_FILTER => match data.split_last() {
            Some((&0, rules)) => Message::FilterFilter { rules },
            _ => return Err(WireError::Filter),
        },
        TYPE_DEVICE_DISCONNECT_ACK => Message::DeviceDisconnectAck,
        TYPE_START_BULK_RECEIVING => {
            let bytes_per_transfer = le32(th, 4);
            if bytes_per_transfer > MAX_BULK_TRANSFER_BYTES {
                return Err(WireError::TransferTooLong {
                    ty,
                    length: bytes_per_transfer,
                    max: MAX_BULK_TRANSFER_BYTES,
                });
            }
            Message::StartBulkReceiving(StartBulkReceiving {
                stream_id: le32(th, 0),
                bytes_per_transfer,
                endpoint: in_only(th[8])?,
                no_transfers: th[9],
            })
        }
        TYPE_STOP_BULK_RECEIVING => {
            Message::StopBulkReceiving { stream_id: le32(th, 0), endpoint: in_only(th[4])? }
        }
        TYPE_CONTROL_PACKET => {
            let packet = ControlPacket {
                endpoint: th[0],
                request: th[1],
                requesttype: th[2],
                status: Status(th[3]),
                value: le16(th, 4),
                index: le16(th, 6),
                length: le16(th, 8),
            };
            let data = out_data(packet.endpoint, packet.length.into())?;
            Message::ControlPacket { packet, data }
        }
        TYPE_BULK_PACKET => {
            let high = if link.both(Cap::BulkLength32) { u32::from(le16(th, 8)) } else { 0 };
            let length = u32::from(le16(th, 2)) | (high << 16);
            if length > MAX_BULK_TRANSFER_BYTES {
                return Err(WireError::TransferTooLong { ty, length, max: MAX_BULK_TRANSFER_BYTES });
            }
            let packet =
                BulkPacket { endpoint: th[0], status: Status(th[1]), length, stream_id: le32(th, 4) };
            let data = out_data(packet.endpoint, length)?;
            Message::BulkPacket { packet, data }
        }
        TYPE_ISO_PACKET | TYPE_INTERRUPT_PACKET => {
            let packet = IsoPacketHeader { endpoint: th[0], status: Status(th[1]), length: le16(th, 2) };
            if packet.endpoint & 0x80 != 0 {
                return Err(WireError::WrongDirection { ty, endpoint: packet.endpoint });
            }
            let data = out_data(packet.endpoint, packet.length.into())?;
            if ty == TYPE_ISO_PACKET {
                Message::IsoPacket { packet, data }
            } else {
                Message::InterruptPacket { packet, data }
            }
        }
        // `layout` only lets the types above through.
        _ => return Err(WireError::UnknownType { ty, length: (th.len() + data.len()) as u32 }),
    })
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

/// Appends a message header for a payload of `length` bytes.
fn put_header(out: &mut Vec<u8>, link: &Link, ty: u32, id: u64, length: usize) {
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&(length as u32).to_le_bytes());
    if link.ids64() {
        out.extend_from_slice(&id.to_le_bytes());
    } else {
        out.extend_from_slice(&(id as u32).to_le_bytes());
    }
}

/// Appends any message: header, the fixed header `type_header` and `data`. The typed encoders
/// below are built on it; it is public for test peers that play the usb-guest.
pub fn encode_message(out: &mut Vec<u8>, link: &Link, ty: u32, id: u64, type_header: &[u8], data: &[u8]) {
    out.reserve(link.header_len() + type_header.len() + data.len());
    put_header(out, link, ty, id, type_header.len() + data.len());
    out.extend_from_slice(type_header);
    out.extend_from_slice(data);
}

/// Appends our hello: `version` (cut to 63 bytes, NUL-padded) and `caps`. Always with the
/// 32-bit id header and id 0, since the peer's caps are not known yet.
pub fn encode_hello(out: &mut Vec<u8>, version: &str, caps: Caps) {
    let mut v = [0u8; HELLO_VERSION_BYTES];
    let n = version.len().min(HELLO_VERSION_BYTES - 1);
    v[..n].copy_from_slice(&version.as_bytes()[..n]);
    encode_message(out, &Link::new(Caps::EMPTY), TYPE_HELLO, 0, &v, &caps.0.to_le_bytes());
}

/// Appends `device_connect` (id 0). Send [`encode_ep_info`] and [`encode_interface_info`]
/// first: QEMU refuses a device whose interfaces it does not know yet.
pub fn encode_device_connect(out: &mut Vec<u8>, link: &Link, d: &DeviceConnect) {
    let mut th = [0u8; 10];
    th[..4].copy_from_slice(&[d.speed as u8, d.device_class, d.device_subclass, d.device_protocol]);
    th[4..6].copy_from_slice(&d.vendor_id.to_le_bytes());
    th[6..8].copy_from_slice(&d.product_id.to_le_bytes());
    th[8..10].copy_from_slice(&d.device_version_bcd.to_le_bytes());
    let n = if link.both(Cap::ConnectDeviceVersion) { 10 } else { 8 };
    encode_message(out, link, TYPE_DEVICE_CONNECT, 0, &th[..n], &[]);
}

/// Appends `device_disconnect` (id 0).
pub fn encode_device_disconnect(out: &mut Vec<u8>, link: &Link) {
    encode_message(out, link, TYPE_DEVICE_DISCONNECT, 0, &[], &[]);
}

/// Appends `interface_info` (id 0).
pub fn encode_interface_info(out: &mut Vec<u8>, link: &Link, info: &InterfaceInfo) {
    let mut th = [0u8; 4 + 4 * 32];
    let interfaces = &info.interfaces[..info.interfaces.len().min(32)];
    th[..4].copy_from_slice(&(interfaces.len() as u32).to_le_bytes());
    for (i, f) in interfaces.iter().enumerate() {
        th[4 + i] = f.number;
        th[4 + 32 + i] = f.class;
        th[4 + 64 + i] = f.subclass;
        th[4 + 96 + i] = f.protocol;
    }
    encode_message(out, link, TYPE_INTERFACE_INFO, 0, &th, &[]);
}

/// Appends `ep_info` (id 0): 96 bytes, 160 with `max_packet_size`, 288 with `max_streams`,
/// depending on the caps both sides have.
pub fn encode_ep_info(out: &mut Vec<u8>, link: &Link, info: &EpInfo) {
    let mut th = [0u8; 96 + 64 + 128];
    for (i, e) in info.endpoints.iter().enumerate() {
        th[i] = e.kind as u8;
        th[32 + i] = e.interval;
        th[64 + i] = e.interface;
        th[96 + 2 * i..98 + 2 * i].copy_from_slice(&e.max_packet_size.to_le_bytes());
        th[160 + 4 * i..164 + 4 * i].copy_from_slice(&e.max_streams.to_le_bytes());
    }
    // usbredirparser only honours bulk_streams with ep_info_max_packet_size (Caps::from_wire
    // drops it otherwise), so max_streams always comes after max_packet_size.
    let n = if link.both(Cap::BulkStreams) {
        288
    } else if link.both(Cap::EpInfoMaxPacketSize) {
        160
    } else {
        96
    };
    encode_message(out, link, TYPE_EP_INFO, 0, &th[..n], &[]);
}

/// Appends `configuration_status`, the reply to `set_configuration`/`get_configuration` `id`.
pub fn encode_configuration_status(
    out: &mut Vec<u8>,
    link: &Link,
    id: u64,
    status: Status,
    configuration: u8,
) {
    encode_message(out, link, TYPE_CONFIGURATION_STATUS, id, &[status.0, configuration], &[]);
}

/// Appends `alt_setting_status`, the reply to `set_alt_setting`/`get_alt_setting` `id`.
pub fn encode_alt_setting_status(
    out: &mut Vec<u8>,
    link: &Link,
    id: u64,
    status: Status,
    interface: u8,
    alt: u8,
) {
    encode_message(out, link, TYPE_ALT_SETTING_STATUS, id, &[status.0, interface, alt], &[]);
}

/// Appends `iso_stream_status` for `endpoint` (the reply to a start/stop, or unsolicited with
/// [`Status::STALL`] when the stream stopped by itself).
pub fn encode_iso_stream_status(out: &mut Vec<u8>, link: &Link, id: u64, status: Status, endpoint: u8) {
    encode_message(out, link, TYPE_ISO_STREAM_STATUS, id, &[status.0, endpoint], &[]);
}

/// Appends `interrupt_receiving_status` for `endpoint` (an IN endpoint).
pub fn encode_interrupt_receiving_status(
    out: &mut Vec<u8>,
    link: &Link,
    id: u64,
    status: Status,
    endpoint: u8,
) {
    encode_message(out, link, TYPE_INTERRUPT_RECEIVING_STATUS, id, &[status.0, endpoint], &[]);
}

/// Appends `bulk_streams_status`, the reply to `alloc_bulk_streams`/`free_bulk_streams`.
pub fn encode_bulk_streams_status(
    out: &mut Vec<u8>,
    link: &Link,
    id: u64,
    endpoints: u32,
    no_streams: u32,
    status: Status,
) {
    let mut th = [0u8; 9];
    th[..4].copy_from_slice(&endpoints.to_le_bytes());
    th[4..8].copy_from_slice(&no_streams.to_le_bytes());
    th[8] = status.0;
    encode_message(out, link, TYPE_BULK_STREAMS_STATUS, id, &th, &[]);
}

/// Appends the `control_packet` reply to request `id`: the request's fields with `status` and
/// `length` as they came out. For IN (`endpoint` bit 7) the data read follows and `length` is
/// set to its size (cut to 65535); for OUT there is no data and `length` says how many bytes
/// were written.
pub fn encode_control_packet(out: &mut Vec<u8>, link: &Link, id: u64, packet: &ControlPacket, data: &[u8]) {
    let data = if packet.endpoint & 0x80 != 0 { &data[..data.len().min(usize::from(u16::MAX))] } else { &[] };
    let length = if packet.endpoint & 0x80 != 0 { data.len() as u16 } else { packet.length };
    let mut th = [0u8; 10];
    th[..4].copy_from_slice(&[packet.endpoint, packet.request, packet.requesttype, packet.status.0]);
    th[4..6].copy_from_slice(&packet.value.to_le_bytes());
    th[6..8].copy_from_slice(&packet.index.to_le_bytes());
    th[8..10].copy_from_slice(&length.to_le_bytes());
    encode_message(out, link, TYPE_CONTROL_PACKET, id, &th, data);
}

/// Appends the `bulk_packet` reply to request `id`, as [`encode_control_packet`] does: IN data
/// follows (cut to 65535 bytes without [`Cap::BulkLength32`] on both sides, and to
/// [`MAX_DATA_BYTES`]) and sets `length`; for OUT `length` is the bytes written.
pub fn encode_bulk_packet(out: &mut Vec<u8>, link: &Link, id: u64, packet: &BulkPacket, data: &[u8]) {
    let len32 = link.both(Cap::BulkLength32);
    let max = if len32 { MAX_DATA_BYTES } else { usize::from(u16::MAX) };
    let data = if packet.endpoint & 0x80 != 0 { &data[..data.len().min(max)] } else { &[] };
    let length = if packet.endpoint & 0x80 != 0 {
        data.len() as u32
    } else if len32 {
        packet.length
    } else {
        packet.length.min(u16::MAX.into())
    };
    let mut th = [0u8; 10];
    th[0] = packet.endpoint;
    th[1] = packet.status.0;
    th[2..4].copy_from_slice(&(length as u16).to_le_bytes());
    th[4..8].copy_from_slice(&packet.stream_id.to_le_bytes());
    th[8..10].copy_from_slice(&((length >> 16) as u16).to_le_bytes());
    encode_message(out, link, TYPE_BULK_PACKET, id, &th[..bulk_header_len(link)], data);
}

/// Appends an `iso_packet` with the data of one (micro)frame of IN `endpoint` (cut to 65535
/// bytes); `length` is the data's size. `id` counts the stream's packets from 0 (QEMU ignores
/// it). Allocates nothing beyond growing `out`.
pub fn encode_iso_packet(out: &mut Vec<u8>, link: &Link, id: u64, endpoint: u8, status: Status, data: &[u8]) {
    encode_stream_packet(out, link, TYPE_ISO_PACKET, id, endpoint, status, data);
}

/// Appends an `interrupt_packet` with data from interrupt IN `endpoint` while receiving (cut
/// to 65535 bytes; `id` counts from 0, QEMU ignores it). The reply to an interrupt OUT packet
/// is [`encode_interrupt_out_reply`].
pub fn encode_interrupt_packet(
    out: &mut Vec<u8>,
    link: &Link,
    id: u64,
    endpoint: u8,
    status: Status,
    data: &[u8],
) {
    encode_stream_packet(out, link, TYPE_INTERRUPT_PACKET, id, endpoint, status, data);
}

/// Appends the `interrupt_packet` reply to interrupt OUT packet `id`: no data, `length` the
/// bytes written.
pub fn encode_interrupt_out_reply(
    out: &mut Vec<u8>,
    link: &Link,
    id: u64,
    endpoint: u8,
    status: Status,
    length: u16,
) {
    let [l0, l1] = length.to_le_bytes();
    encode_message(out, link, TYPE_INTERRUPT_PACKET, id, &[endpoint, status.0, l0, l1], &[]);
}

fn encode_stream_packet(
    out: &mut Vec<u8>,
    link: &Link,
    ty: u32,
    id: u64,
    endpoint: u8,
    status: Status,
    data: &[u8],
) {
    let data = &data[..data.len().min(usize::from(u16::MAX))];
    let [l0, l1] = (data.len() as u16).to_le_bytes();
    encode_message(out, link, ty, id, &[endpoint, status.0, l0, l1], data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our side after QEMU 7.2's hello: it advertises every cap of protocol 0.7.
    fn qemu_link() -> Link {
        Link::new(Caps::DEVICE).with_peer(Caps(0xff))
    }

    fn frame(link: &Link, ty: u32, id: u64, th: &[u8], data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        encode_message(&mut b, link, ty, id, th, data);
        b
    }

    fn parse_one<'a>(buf: &'a [u8], link: &Link) -> Frame<'a> {
        match parse(buf, link) {
            Ok(Parsed::Message(f)) => f,
            other => panic!("not one message: {other:?}"),
        }
    }

    #[test]
    fn caps_have_the_bit_numbers_of_usbredirproto_h() {
        assert_eq!(Caps::DEVICE, Caps(0x7e));
        assert_eq!(Caps::EMPTY.with(Cap::BulkStreams).with(Cap::BulkReceiving), Caps(0x81));
        assert!(Caps(0x20).has(Cap::Ids64) && !Caps(0x20).has(Cap::BulkLength32));
        assert_eq!(Caps::from_wire(&[0x21, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]), Caps(0x20));
        assert_eq!(Caps::from_wire(&[0x11]), Caps(0x11));
        assert_eq!(Caps::from_wire(&[]), Caps::EMPTY);
        let before = Link::new(Caps::DEVICE);
        assert!(!before.ids64() && before.header_len() == 12);
        assert!(qemu_link().ids64() && qemu_link().header_len() == 16);
        assert!(!Link::new(Caps::EMPTY).with_peer(Caps(0xff)).ids64());
    }

    #[test]
    fn our_hello_has_the_32_bit_header_and_the_golden_bytes() {
        let mut b = Vec::new();
        encode_hello(&mut b, "isoscope 0.1", Caps::DEVICE);
        let mut golden = vec![0, 0, 0, 0, 68, 0, 0, 0, 0, 0, 0, 0];
        golden.extend_from_slice(b"isoscope 0.1");
        golden.resize(12 + 64, 0);
        golden.extend_from_slice(&[0x7e, 0, 0, 0]);
        assert_eq!(b, golden);
        let long = "x".repeat(100);
        b.clear();
        encode_hello(&mut b, &long, Caps::DEVICE);
        assert_eq!((b.len(), b[12 + 62], b[12 + 63]), (80, b'x', 0));
    }

    #[test]
    fn qemu_7_2s_hello_parses() {
        // usbredir_create_parser: connect_device_version, filter, ep_info_max_packet_size,
        // 64bits_ids, 32bits_bulk_length, bulk_receiving, bulk_streams ("streams" defaults to
        // on), and usbredirparser_init adds device_disconnect_ack for a usb-guest: 0xff.
        // usbredirparser_queue: struct usb_redir_header_32bit_id {type 0, length 64 + 4, id 0},
        // then struct usb_redir_hello_header {char version[64]} from snprintf, then caps[1].
        let mut bytes = vec![0u8; 12 + 64 + 4];
        bytes[4] = 68;
        let version = b"qemu usb-redir guest 7.2.0";
        bytes[12..12 + version.len()].copy_from_slice(version);
        bytes[76] = 0xff;
        let f = parse_one(&bytes, &Link::new(Caps::DEVICE));
        assert_eq!(f.consumed, 80);
        assert_eq!(f.id, 0);
        assert_eq!(f.message, Message::Hello { version, caps: Caps(0xff) });
        let link = Link::new(Caps::DEVICE).with_peer(Caps(0xff));
        assert!(link.ids64() && link.both(Cap::BulkLength32) && !link.both(Cap::BulkStreams));
        // A longer caps array (a future peer) is fine; only the first word counts.
        let mut more = bytes.clone();
        more[4] = 72;
        more.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(parse_one(&more, &Link::new(Caps::DEVICE)).consumed, 84);
    }

    #[test]
    fn ep_info_and_interface_info_have_the_golden_layout() {
        let mut info = EpInfo::default();
        info.set(
            0x81,
            Endpoint {
                kind: EpType::Iso,
                interval: 1,
                interface: 1,
                max_packet_size: 3 * 1024,
                max_streams: 0,
            },
        );
        info.set(
            0x02,
            Endpoint { kind: EpType::Bulk, interval: 0, interface: 2, max_packet_size: 512, max_streams: 7 },
        );
        assert_eq!(EpInfo::index(0x81), 17);
        assert_eq!(info.get(0x81).max_packet_size, 3072);
        let mut b = Vec::new();
        encode_ep_info(&mut b, &qemu_link(), &info);
        assert_eq!(b.len(), 16 + 160);
        assert_eq!(&b[..16], &[5, 0, 0, 0, 160, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let p = &b[16..];
        assert_eq!((p[0], p[1], p[2], p[16], p[17], p[18]), (0, 255, 2, 0, 1, 255));
        assert_eq!((p[32 + 17], p[64 + 17], p[64 + 2]), (1, 1, 2));
        assert_eq!(&p[96 + 2 * 17..96 + 2 * 18], &[0x00, 0x0c]);
        assert_eq!(&p[96 + 4..96 + 6], &[0x00, 0x02]);
        // With streams on both sides: max_streams follows; without max_packet_size: 96 bytes.
        let streams = Link::new(Caps::DEVICE.with(Cap::BulkStreams)).with_peer(Caps(0xff));
        b.clear();
        encode_ep_info(&mut b, &streams, &info);
        assert_eq!((b.len(), &b[16 + 160 + 8..16 + 160 + 12]), (16 + 288, &[7, 0, 0, 0][..]));
        b.clear();
        encode_ep_info(&mut b, &Link::new(Caps::DEVICE).with_peer(Caps::EMPTY), &info);
        assert_eq!((b.len(), b[4]), (12 + 96, 96));

        let ifs = InterfaceInfo {
            interfaces: vec![
                Interface { number: 0, class: 1, subclass: 1, protocol: 0x20 },
                Interface { number: 1, class: 1, subclass: 2, protocol: 0x20 },
            ],
        };
        b.clear();
        encode_interface_info(&mut b, &qemu_link(), &ifs);
        assert_eq!(b.len(), 16 + 132);
        assert_eq!(&b[..8], &[4, 0, 0, 0, 132, 0, 0, 0]);
        let p = &b[16..];
        assert_eq!(&p[..4], &[2, 0, 0, 0]);
        assert_eq!((p[4], p[5], p[36], p[37], p[68], p[69], p[100], p[101]), (0, 1, 1, 1, 1, 2, 0x20, 0x20));
    }

    #[test]
    fn device_connect_has_the_golden_bytes_with_and_without_the_version() {
        let d = DeviceConnect {
            speed: Speed::High,
            device_class: 0xef,
            device_subclass: 2,
            device_protocol: 1,
            vendor_id: 0x1209,
            product_id: 0x0001,
            device_version_bcd: 0x0100,
        };
        let mut b = Vec::new();
        encode_device_connect(&mut b, &qemu_link(), &d);
        assert_eq!(
            b,
            [
                1, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0xef, 2, 1, 0x09, 0x12, 0x01, 0x00, 0x00,
                0x01
            ]
        );
        b.clear();
        encode_device_connect(&mut b, &Link::new(Caps::DEVICE).with_peer(Caps::EMPTY), &d);
        assert_eq!(b, [1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2, 0xef, 2, 1, 0x09, 0x12, 0x01, 0x00]);
        b.clear();
        encode_device_disconnect(&mut b, &qemu_link());
        assert_eq!(b, [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_control_packet_round_trips() {
        let link = qemu_link();
        let id = 0x1_0000_0002;
        // GET_DESCRIPTOR(device), as usbredir_handle_control sends it: no data for IN.
        let req = [0x80, 6, 0x80, 0, 0x00, 0x01, 0, 0, 18, 0];
        let bytes = frame(&link, TYPE_CONTROL_PACKET, id, &req, &[]);
        let f = parse_one(&bytes, &link);
        let Message::ControlPacket { packet, data } = f.message else { panic!("not control") };
        assert_eq!((f.id, f.consumed, data), (id, bytes.len(), &[][..]));
        assert_eq!(
            packet,
            ControlPacket {
                endpoint: 0x80,
                request: 6,
                requesttype: 0x80,
                status: Status::SUCCESS,
                value: 0x100,
                index: 0,
                length: 18
            }
        );
        let mut reply = Vec::new();
        let descriptor = [18, 1, 0, 2, 0xef, 2, 1, 64];
        encode_control_packet(&mut reply, &link, f.id, &packet, &descriptor);
        let mut golden = vec![100, 0, 0, 0, 18, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0];
        golden.extend_from_slice(&[0x80, 6, 0x80, 0, 0x00, 0x01, 0, 0, 8, 0]);
        golden.extend_from_slice(&descriptor);
        assert_eq!(reply, golden);
        // A stalled OUT request: the reply has no data and the bytes written (0).
        let out_req = [0, 0x0b, 0x01, 0, 1, 0, 1, 0, 2, 0];
        let bytes = frame(&link, TYPE_CONTROL_PACKET, 9, &out_req, &[0xaa, 0xbb]);
        let f = parse_one(&bytes, &link);
        let Message::ControlPacket { packet, data } = f.message else { panic!("not control") };
        assert_eq!(data, &[0xaa, 0xbb]);
        reply.clear();
        let stalled = ControlPacket { status: Status::STALL, length: 0, ..packet };
        encode_control_packet(&mut reply, &link, 9, &stalled, &[1, 2, 3]);
        assert_eq!(&reply[4..8], &[10, 0, 0, 0]);
        assert_eq!(&reply[16..], &[0, 0x0b, 0x01, 4, 1, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn iso_and_interrupt_packets_and_statuses_encode() {
        let link = qemu_link();
        let mut b = Vec::with_capacity(64);
        encode_iso_packet(&mut b, &link, 3, 0x81, Status::SUCCESS, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(b, [102, 0, 0, 0, 10, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0x81, 0, 6, 0, 1, 2, 3, 4, 5, 6]);
        b.clear();
        encode_iso_packet(&mut b, &Link::new(Caps::DEVICE), 0x1_0000_0007, 0x81, Status::IOERROR, &[]);
        assert_eq!(b, [102, 0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0, 0x81, 3, 0, 0]);
        b.clear();
        encode_interrupt_packet(&mut b, &link, 0, 0x83, Status::SUCCESS, &[9]);
        assert_eq!(&b[..8], &[103, 0, 0, 0, 5, 0, 0, 0]);
        assert_eq!(&b[16..], &[0x83, 0, 1, 0, 9]);
        b.clear();
        encode_interrupt_out_reply(&mut b, &link, 5, 0x03, Status::SUCCESS, 8);
        assert_eq!(&b[16..], &[0x03, 0, 8, 0]);
        b.clear();
        encode_configuration_status(&mut b, &link, 11, Status::SUCCESS, 1);
        encode_alt_setting_status(&mut b, &link, 12, Status::SUCCESS, 1, 1);
        encode_iso_stream_status(&mut b, &link, 0, Status::SUCCESS, 0x81);
        encode_interrupt_receiving_status(&mut b, &link, 0, Status::STALL, 0x83);
        encode_bulk_streams_status(&mut b, &link, 0, 1 << 17, 4, Status::INVAL);
        assert_eq!(&b[..18], &[8, 0, 0, 0, 2, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&b[18..37], &[11, 0, 0, 0, 3, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(&b[37 + 16..37 + 18], &[0, 0x81]);
        assert_eq!(&b[55..59], &[17, 0, 0, 0]);
        assert_eq!(&b[55 + 16..55 + 18], &[4, 0x83]);
        assert_eq!(&b[73 + 16..], &[0, 0, 2, 0, 4, 0, 0, 0, 2]);
        let mut bulk = Vec::new();
        let reply = BulkPacket { endpoint: 0x82, status: Status::SUCCESS, length: 0, stream_id: 0 };
        encode_bulk_packet(&mut bulk, &link, 4, &reply, &[0u8; 70_000]);
        assert_eq!(&bulk[16..26], &[0x82, 0, 0x70, 0x11, 0, 0, 0, 0, 1, 0]);
        assert_eq!(bulk.len(), 26 + 70_000);
        bulk.clear();
        encode_bulk_packet(&mut bulk, &Link::new(Caps::DEVICE), 4, &reply, &[0u8; 70_000]);
        assert_eq!((&bulk[12..20], bulk.len()), (&[0x82, 0, 0xff, 0xff, 0, 0, 0, 0][..], 20 + 65535));
    }

    #[test]
    fn errnos_map_to_statuses() {
        assert_eq!(Status::from_errno(0), Status::SUCCESS);
        assert_eq!(Status::from_errno(-libc::EPIPE), Status::STALL);
        assert_eq!(Status::from_errno(libc::EPIPE), Status::STALL);
        assert_eq!(Status::from_errno(-libc::EOVERFLOW), Status::BABBLE);
        for e in [libc::EPROTO, libc::EXDEV, libc::EILSEQ, libc::ESHUTDOWN, libc::ENODEV] {
            assert_eq!(Status::from_errno(-e), Status::IOERROR, "errno {e}");
        }
        assert_eq!(Status::from_errno(-libc::ETIMEDOUT), Status::TIMEOUT);
        assert_eq!(Status::from_errno(-libc::ENOENT), Status::CANCELLED);
        assert_eq!(Status::from_errno(-libc::ECONNRESET), Status::CANCELLED);
        assert_eq!(Status::from_errno(-libc::EINVAL), Status::INVAL);
        assert_eq!(Status::from_errno(i32::MIN), Status::IOERROR);
        assert!(Status::SUCCESS.is_success() && !Status(7).is_success());
    }

    #[test]
    fn every_guest_request_parses() {
        let link = qemu_link();
        let cases: Vec<(u32, Vec<u8>, Vec<u8>, Message<'static>)> = vec![
            (TYPE_RESET, vec![], vec![], Message::Reset),
            (TYPE_SET_CONFIGURATION, vec![1], vec![], Message::SetConfiguration { configuration: 1 }),
            (TYPE_GET_CONFIGURATION, vec![], vec![], Message::GetConfiguration),
            (TYPE_SET_ALT_SETTING, vec![1, 2], vec![], Message::SetAltSetting { interface: 1, alt: 2 }),
            (TYPE_GET_ALT_SETTING, vec![1], vec![], Message::GetAltSetting { interface: 1 }),
            (
                TYPE_START_ISO_STREAM,
                vec![0x81, 32, 3],
                vec![],
                Message::StartIsoStream(StartIsoStream { endpoint: 0x81, pkts_per_urb: 32, no_urbs: 3 }),
            ),
            (TYPE_STOP_ISO_STREAM, vec![0x81], vec![], Message::StopIsoStream { endpoint: 0x81 }),
            (
                TYPE_START_INTERRUPT_RECEIVING,
                vec![0x83],
                vec![],
                Message::StartInterruptReceiving { endpoint: 0x83 },
            ),
            (
                TYPE_STOP_INTERRUPT_RECEIVING,
                vec![0x83],
                vec![],
                Message::StopInterruptReceiving { endpoint: 0x83 },
            ),
            (
                TYPE_ALLOC_BULK_STREAMS,
                vec![4, 0, 2, 0, 8, 0, 0, 0],
                vec![],
                Message::AllocBulkStreams { endpoints: 0x20004, no_streams: 8 },
            ),
            (TYPE_FREE_BULK_STREAMS, vec![4, 0, 0, 0], vec![], Message::FreeBulkStreams { endpoints: 4 }),
            (TYPE_CANCEL_DATA_PACKET, vec![], vec![], Message::CancelDataPacket),
            (TYPE_FILTER_REJECT, vec![], vec![], Message::FilterReject),
            (
                TYPE_FILTER_FILTER,
                vec![],
                b"-1,-1,-1,-1,1\0".to_vec(),
                Message::FilterFilter { rules: b"-1,-1,-1,-1,1" },
            ),
            (TYPE_DEVICE_DISCONNECT_ACK, vec![], vec![], Message::DeviceDisconnectAck),
            (
                TYPE_BULK_PACKET,
                vec![0x02, 0, 3, 0, 0, 0, 0, 0, 0, 0],
                vec![7, 8, 9],
                Message::BulkPacket {
                    packet: BulkPacket { endpoint: 2, status: Status::SUCCESS, length: 3, stream_id: 0 },
                    data: &[7, 8, 9],
                },
            ),
            (
                TYPE_BULK_PACKET,
                vec![0x82, 0, 0, 0, 5, 0, 0, 0, 2, 0],
                vec![],
                Message::BulkPacket {
                    packet: BulkPacket {
                        endpoint: 0x82,
                        status: Status::SUCCESS,
                        length: 0x20000,
                        stream_id: 5,
                    },
                    data: &[],
                },
            ),
            (
                TYPE_ISO_PACKET,
                vec![0x01, 0, 2, 0],
                vec![5, 6],
                Message::IsoPacket {
                    packet: IsoPacketHeader { endpoint: 1, status: Status::SUCCESS, length: 2 },
                    data: &[5, 6],
                },
            ),
            (
                TYPE_INTERRUPT_PACKET,
                vec![0x03, 0, 1, 0],
                vec![5],
                Message::InterruptPacket {
                    packet: InterruptPacketHeader { endpoint: 3, status: Status::SUCCESS, length: 1 },
                    data: &[5],
                },
            ),
        ];
        for (ty, th, data, want) in cases {
            let bytes = frame(&link, ty, 42, &th, &data);
            let f = parse_one(&bytes, &link);
            assert_eq!((f.id, f.consumed, &f.message), (42, bytes.len(), &want), "type {ty}");
        }
        // Bulk receiving only with the cap on our side.
        let recv = Link::new(Caps::DEVICE.with(Cap::BulkReceiving)).with_peer(Caps(0xff));
        let bytes = frame(&recv, TYPE_START_BULK_RECEIVING, 1, &[0, 0, 0, 0, 0, 2, 0, 0, 0x81, 5], &[]);
        assert_eq!(
            parse_one(&bytes, &recv).message,
            Message::StartBulkReceiving(StartBulkReceiving {
                stream_id: 0,
                bytes_per_transfer: 512,
                endpoint: 0x81,
                no_transfers: 5
            })
        );
        let bytes = frame(&recv, TYPE_STOP_BULK_RECEIVING, 1, &[0, 0, 0, 0, 0x81], &[]);
        assert_eq!(
            parse_one(&bytes, &recv).message,
            Message::StopBulkReceiving { stream_id: 0, endpoint: 0x81 }
        );
        // Without 32-bit bulk lengths the header is 8 bytes.
        let short = Link::new(Caps::DEVICE).with_peer(Caps(0x20));
        let bytes = frame(&short, TYPE_BULK_PACKET, 1, &[0x02, 0, 1, 0, 0, 0, 0, 0], &[9]);
        let Message::BulkPacket { packet, data } = parse_one(&bytes, &short).message else { panic!() };
        assert_eq!((packet.length, data), (1, &[9][..]));
    }

    #[test]
    fn a_partial_buffer_asks_for_more_and_a_stream_parses_in_order() {
        let link = qemu_link();
        let mut stream = frame(&link, TYPE_SET_CONFIGURATION, 1, &[1], &[]);
        stream.extend(frame(&link, TYPE_CONTROL_PACKET, 2, &[0, 9, 0, 0, 1, 0, 0, 0, 3, 0], &[1, 2, 3]));
        let first = stream.len() - 29;
        for cut in 0..first {
            let want = if cut < 16 { 16 } else { 17 };
            assert_eq!(parse(&stream[..cut], &link), Ok(Parsed::Incomplete { needed: want }), "cut {cut}");
        }
        let f = parse_one(&stream, &link);
        assert_eq!((f.id, f.consumed), (1, 17));
        let rest = &stream[f.consumed..];
        assert_eq!(parse(&rest[..28], &link), Ok(Parsed::Incomplete { needed: 29 }));
        assert_eq!(parse_one(rest, &link).consumed, 29);
        // 32-bit ids before the hello.
        assert_eq!(parse(&[0; 11], &Link::new(Caps::DEVICE)), Ok(Parsed::Incomplete { needed: 12 }));
        // A hostile length is refused from the header alone, without waiting for its bytes.
        let mut huge = frame(&link, TYPE_BULK_PACKET, 1, &[], &[]);
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&huge, &link), Err(WireError::TooLong { ty: TYPE_BULK_PACKET, .. })));
    }

    #[test]
    fn bad_messages_are_rejected() {
        let link = qemu_link();
        let err = |bytes: Vec<u8>, link: &Link| parse(&bytes, link).unwrap_err();
        assert_eq!(err(frame(&link, 99, 0, &[], &[]), &link), WireError::UnknownType { ty: 99, length: 0 });
        assert_eq!(
            err(frame(&link, TYPE_EP_INFO, 0, &[0; 160], &[]), &link),
            WireError::HostOnlyType { ty: 5 }
        );
        assert_eq!(
            err(frame(&link, TYPE_DEVICE_CONNECT, 0, &[], &[]), &link),
            WireError::HostOnlyType { ty: 1 }
        );
        assert_eq!(
            err(frame(&link, TYPE_SET_CONFIGURATION, 0, &[1, 2], &[]), &link),
            WireError::Length { ty: 6, length: 2, expected: 1 }
        );
        assert_eq!(
            err(frame(&link, TYPE_START_ISO_STREAM, 0, &[0x81], &[]), &link),
            WireError::Length { ty: 12, length: 1, expected: 3 }
        );
        assert_eq!(
            err(frame(&link, TYPE_CONTROL_PACKET, 0, &[0; 9], &[]), &link),
            WireError::Length { ty: 100, length: 9, expected: 10 }
        );
        assert_eq!(
            err(frame(&link, TYPE_RESET, 0, &[0], &[]), &link),
            WireError::Length { ty: 3, length: 1, expected: 0 }
        );
        assert_eq!(
            err(frame(&link, TYPE_HELLO, 0, &[0; 64], &[0; 257]), &link),
            WireError::TooLong { ty: 0, length: 321, max: 320 }
        );
        assert_eq!(
            err(frame(&link, TYPE_HELLO, 0, &[b'q'; 64], &[0xff, 0, 0, 0]), &link),
            WireError::HelloVersion
        );
        assert_eq!(
            err(frame(&link, TYPE_CONTROL_PACKET, 0, &[0, 9, 0, 0, 1, 0, 0, 0, 3, 0], &[1]), &link),
            WireError::DataLength { ty: 100, declared: 3, data: 1 }
        );
        assert_eq!(
            err(frame(&link, TYPE_CONTROL_PACKET, 0, &[0x80, 6, 0x80, 0, 0, 1, 0, 0, 1, 0], &[1]), &link),
            WireError::UnexpectedData { ty: 100, endpoint: 0x80, data: 1 }
        );
        assert_eq!(
            err(frame(&link, TYPE_ISO_PACKET, 0, &[0x81, 0, 0, 0], &[]), &link),
            WireError::WrongDirection { ty: 102, endpoint: 0x81 }
        );
        assert_eq!(
            err(frame(&link, TYPE_INTERRUPT_PACKET, 0, &[0x83, 0, 0, 0], &[]), &link),
            WireError::WrongDirection { ty: 103, endpoint: 0x83 }
        );
        assert_eq!(
            err(frame(&link, TYPE_START_INTERRUPT_RECEIVING, 0, &[0x03], &[]), &link),
            WireError::WrongDirection { ty: 15, endpoint: 0x03 }
        );
        assert_eq!(
            err(frame(&link, TYPE_BULK_PACKET, 0, &[0x82, 0, 0, 0, 0, 0, 0, 0x10, 0], &[]), &link),
            WireError::Length { ty: 101, length: 9, expected: 10 }
        );
        assert_eq!(
            err(frame(&link, TYPE_BULK_PACKET, 0, &[0x82, 0, 1, 0, 0, 0, 0, 0, 0, 0x08], &[]), &link),
            WireError::TransferTooLong { ty: 101, length: 0x0800_0001, max: MAX_BULK_TRANSFER_BYTES }
        );
        assert_eq!(err(frame(&link, TYPE_FILTER_FILTER, 0, &[], b"-1"), &link), WireError::Filter);
        assert_eq!(err(frame(&link, TYPE_FILTER_FILTER, 0, &[], &[]), &link), WireError::Filter);
        assert_eq!(
            err(frame(&link, TYPE_START_BULK_RECEIVING, 0, &[0; 10], &[]), &link),
            WireError::CapNotNegotiated { ty: 25, cap: Cap::BulkReceiving }
        );
        let bare = Link::new(Caps::EMPTY.with(Cap::Ids64)).with_peer(Caps(0xff));
        assert_eq!(
            err(frame(&bare, TYPE_DEVICE_DISCONNECT_ACK, 0, &[], &[]), &bare),
            WireError::CapNotNegotiated { ty: 24, cap: Cap::DeviceDisconnectAck }
        );
        assert!(WireError::HelloVersion.resyncable());
        assert!(WireError::TooLong { ty: 0, length: 321, max: 320 }.resyncable());
        assert!(!WireError::Length { ty: 6, length: u32::MAX, expected: 1 }.resyncable());
        // An error's frame can be skipped: the next message parses.
        let mut two = frame(&link, 99, 0, &[], &[1, 2, 3]);
        two.extend(frame(&link, TYPE_RESET, 0, &[], &[]));
        assert!(parse(&two, &link).is_err());
        let skip = Header::parse(&two, &link).unwrap().frame_len(&link) as usize;
        assert_eq!(parse_one(&two[skip..], &link).message, Message::Reset);
    }

    #[test]
    fn junk_never_panics_and_never_consumes_more_than_it_has() {
        let links = [Link::new(Caps::DEVICE), qemu_link(), Link::new(Caps(0xff)).with_peer(Caps(0x3f))];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..4000 {
            let mut junk = vec![0u8; 1 + round % 97];
            for b in &mut junk {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1442695040888963407);
                *b = (seed >> 56) as u8;
            }
            // Plausible types and lengths make the parser go past the header.
            let types = [0u32, 3, 6, 9, 12, 15, 18, 21, 22, 23, 24, 25, 26, 100, 101, 102, 103];
            junk[0] = types[(seed as usize >> 8) % types.len()] as u8;
            if junk.len() > 8 {
                junk[1..4].fill(0);
                junk[4] = (seed >> 16) as u8 % 80;
                junk[5..8].fill(0);
            }
            for link in &links {
                if let Ok(Parsed::Message(f)) = parse(&junk, link) {
                    assert!(f.consumed <= junk.len());
                }
            }
        }
    }
}
