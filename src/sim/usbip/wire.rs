//! USB/IP messages on the wire (Documentation/usb/usbip_protocol.rst, version 1.1.1):
//! parsing what a client sends and encoding what a server answers. Pure and bounded:
//! every length is checked before anything is allocated, and bad input is a typed error.

use std::io::{self, Read};

/// The protocol version in every OP header.
pub const USBIP_VERSION: u16 = 0x0111;
pub const OP_REQ_DEVLIST: u16 = 0x8005;
pub const OP_REP_DEVLIST: u16 = 0x0005;
pub const OP_REQ_IMPORT: u16 = 0x8003;
pub const OP_REP_IMPORT: u16 = 0x0003;
pub const USBIP_CMD_SUBMIT: u32 = 1;
pub const USBIP_CMD_UNLINK: u32 = 2;
pub const USBIP_RET_SUBMIT: u32 = 3;
pub const USBIP_RET_UNLINK: u32 = 4;
pub const USBIP_DIR_OUT: u32 = 0;
pub const USBIP_DIR_IN: u32 = 1;
/// `usbip_header` is 48 bytes for every command.
pub const HEADER_BYTES: usize = 48;
/// Bytes of one iso packet descriptor on the wire.
pub const ISO_DESC_BYTES: usize = 16;
/// The largest transfer we accept (a hostile length must not make us allocate gigabytes).
pub const MAX_TRANSFER_BYTES: u32 = 4 << 20;
/// The largest iso packet count we accept in one URB.
pub const MAX_ISO_PACKETS: u32 = 1024;

/// A message that is not valid USB/IP; the connection that sent it is closed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("read failed: {0}")]
    Io(io::Error),
    #[error("unsupported USB/IP version {0:#06x} (expected 0x0111)")]
    Version(u16),
    #[error("unknown operation code {0:#06x}")]
    OpCode(u16),
    #[error("unknown command {0:#010x}")]
    Command(u32),
    #[error("{field} {value} is out of range ({limit})")]
    Range { field: &'static str, value: i64, limit: &'static str },
    #[error("bus id is not a NUL-terminated string")]
    BusId,
}

// By hand, not `#[from]`: the message already says the I/O error, so it is not also a
// `source()` (each cause said once).
impl From<io::Error> for WireError {
    fn from(e: io::Error) -> WireError {
        WireError::Io(e)
    }
}

/// The 8-byte header of the OP_* messages (before import).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpHeader {
    pub version: u16,
    pub code: u16,
    pub status: u32,
}

/// A client's first request on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpRequest {
    DevList,
    Import { busid: String },
}

/// Reads one OP request.
pub fn read_op_request(r: &mut impl Read) -> Result<OpRequest, WireError> {
    let mut h = [0u8; 8];
    read_exact(r, &mut h)?;
    let version = u16::from_be_bytes([h[0], h[1]]);
    let code = u16::from_be_bytes([h[2], h[3]]);
    if version != USBIP_VERSION {
        return Err(WireError::Version(version));
    }
    match code {
        OP_REQ_DEVLIST => Ok(OpRequest::DevList),
        OP_REQ_IMPORT => {
            let mut busid = [0u8; 32];
            read_exact(r, &mut busid)?;
            Ok(OpRequest::Import { busid: c_string(&busid)? })
        }
        other => Err(WireError::OpCode(other)),
    }
}

fn c_string(b: &[u8]) -> Result<String, WireError> {
    let end = b.iter().position(|&c| c == 0).ok_or(WireError::BusId)?;
    std::str::from_utf8(&b[..end]).map(str::to_string).map_err(|_| WireError::BusId)
}

fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<(), WireError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            WireError::Closed
        } else {
            e.into()
        }
    })
}

/// What a device looks like in OP_REP_DEVLIST / OP_REP_IMPORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedDevice {
    pub path: String,
    pub busid: String,
    pub busnum: u32,
    pub devnum: u32,
    /// `USB_SPEED_*`: 2 full, 3 high.
    pub speed: u32,
    pub id_vendor: u16,
    pub id_product: u16,
    pub bcd_device: u16,
    pub device_class: u8,
    pub device_subclass: u8,
    pub device_protocol: u8,
    pub configuration_value: u8,
    pub num_configurations: u8,
    /// (class, subclass, protocol) of each interface.
    pub interfaces: Vec<(u8, u8, u8)>,
}

impl ExportedDevice {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut fixed = |s: &str, n: usize| {
            let mut b = s.as_bytes()[..s.len().min(n - 1)].to_vec();
            b.resize(n, 0);
            out.extend_from_slice(&b);
        };
        fixed(&self.path, 256);
        fixed(&self.busid, 32);
        out.extend_from_slice(&self.busnum.to_be_bytes());
        out.extend_from_slice(&self.devnum.to_be_bytes());
        out.extend_from_slice(&self.speed.to_be_bytes());
        out.extend_from_slice(&self.id_vendor.to_be_bytes());
        out.extend_from_slice(&self.id_product.to_be_bytes());
        out.extend_from_slice(&self.bcd_device.to_be_bytes());
        out.extend_from_slice(&[
            self.device_class,
            self.device_subclass,
            self.device_protocol,
            self.configuration_value,
            self.num_configurations,
            self.interfaces.len() as u8,
        ]);
    }

    /// OP_REP_DEVLIST with this one device.
    pub fn devlist_reply(&self) -> Vec<u8> {
        let mut out = op_header(OP_REP_DEVLIST, 0);
        out.extend_from_slice(&1u32.to_be_bytes());
        self.encode(&mut out);
        for &(c, s, p) in &self.interfaces {
            out.extend_from_slice(&[c, s, p, 0]);
        }
        out
    }

    /// OP_REP_IMPORT accepting the import.
    pub fn import_reply(&self) -> Vec<u8> {
        let mut out = op_header(OP_REP_IMPORT, 0);
        self.encode(&mut out);
        out
    }
}

/// OP_REP_IMPORT refusing the import (unknown bus id).
pub fn import_refused() -> Vec<u8> {
    op_header(OP_REP_IMPORT, 1)
}

fn op_header(code: u16, status: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(0x140);
    out.extend_from_slice(&USBIP_VERSION.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
    out
}

/// One iso packet descriptor as carried by USB/IP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IsoPacket {
    pub offset: u32,
    pub length: u32,
    pub actual_length: u32,
    pub status: i32,
}

/// USBIP_CMD_SUBMIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdSubmit {
    pub seqnum: u32,
    pub devid: u32,
    pub direction: u32,
    pub ep: u32,
    pub transfer_flags: u32,
    pub transfer_buffer_length: u32,
    pub start_frame: i32,
    /// `None` for non-iso transfers (0xffffffff on the wire).
    pub number_of_packets: Option<u32>,
    pub interval: i32,
    pub setup: [u8; 8],
    /// OUT data.
    pub data: Vec<u8>,
    pub iso: Vec<IsoPacket>,
}

/// A command from the importing host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Submit(CmdSubmit),
    Unlink { seqnum: u32, unlink_seqnum: u32 },
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads one command (after the import).
pub fn read_command(r: &mut impl Read) -> Result<Command, WireError> {
    let mut h = [0u8; HEADER_BYTES];
    read_exact(r, &mut h)?;
    let command = be32(&h, 0);
    let seqnum = be32(&h, 4);
    match command {
        USBIP_CMD_UNLINK => Ok(Command::Unlink { seqnum, unlink_seqnum: be32(&h, 0x14) }),
        USBIP_CMD_SUBMIT => {
            let direction = be32(&h, 0xC);
            if direction > USBIP_DIR_IN {
                return Err(WireError::Range {
                    field: "direction",
                    value: direction.into(),
                    limit: "0 or 1",
                });
            }
            let ep = be32(&h, 0x10);
            if ep > 15 {
                return Err(WireError::Range { field: "endpoint", value: ep.into(), limit: "0..15" });
            }
            let transfer_buffer_length = be32(&h, 0x18);
            if transfer_buffer_length > MAX_TRANSFER_BYTES {
                return Err(WireError::Range {
                    field: "transfer_buffer_length",
                    value: transfer_buffer_length.into(),
                    limit: "at most 4 MiB",
                });
            }
            let number_of_packets = match be32(&h, 0x20) {
                0xffff_ffff => None,
                n if n <= MAX_ISO_PACKETS => Some(n),
                n => {
                    return Err(WireError::Range {
                        field: "number_of_packets",
                        value: n.into(),
                        limit: "at most 1024",
                    })
                }
            };
            let mut setup = [0u8; 8];
            setup.copy_from_slice(&h[0x28..0x30]);
            let mut data = Vec::new();
            if direction == USBIP_DIR_OUT && transfer_buffer_length > 0 {
                data = vec![0u8; transfer_buffer_length as usize];
                read_exact(r, &mut data)?;
            }
            let mut iso = Vec::new();
            if let Some(n) = number_of_packets {
                let mut raw = vec![0u8; n as usize * ISO_DESC_BYTES];
                read_exact(r, &mut raw)?;
                let mut expect_offset = 0u64;
                for d in raw.chunks_exact(ISO_DESC_BYTES) {
                    let p = IsoPacket {
                        offset: be32(d, 0),
                        length: be32(d, 4),
                        actual_length: be32(d, 8),
                        status: be32(d, 12) as i32,
                    };
                    expect_offset += u64::from(p.length);
                    if expect_offset > u64::from(transfer_buffer_length) {
                        return Err(WireError::Range {
                            field: "iso packet end",
                            value: expect_offset as i64,
                            limit: "within transfer_buffer_length",
                        });
                    }
                    iso.push(p);
                }
            }
            Ok(Command::Submit(CmdSubmit {
                seqnum,
                devid: be32(&h, 8),
                direction,
                ep,
                transfer_flags: be32(&h, 0x14),
                transfer_buffer_length,
                start_frame: be32(&h, 0x1C) as i32,
                number_of_packets,
                interval: be32(&h, 0x24) as i32,
                setup,
                data,
                iso,
            }))
        }
        other => Err(WireError::Command(other)),
    }
}

/// Encodes USBIP_RET_SUBMIT. For iso IN, `data` holds the packets' valid bytes back to back
/// (USB/IP does not send the gaps; the importer spreads them to their offsets again).
pub fn ret_submit(
    seqnum: u32,
    status: i32,
    data: &[u8],
    start_frame: i32,
    iso: Option<&[IsoPacket]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + data.len() + iso.map_or(0, |p| p.len() * ISO_DESC_BYTES));
    ret_submit_into(&mut out, seqnum, status, data, start_frame, iso);
    out
}

/// [`ret_submit`] appending to a reused buffer.
pub fn ret_submit_into(
    out: &mut Vec<u8>,
    seqnum: u32,
    status: i32,
    data: &[u8],
    start_frame: i32,
    iso: Option<&[IsoPacket]>,
) {
    let error_count = iso.map_or(0, |p| p.iter().filter(|p| p.status != 0).count() as u32);
    for v in [USBIP_RET_SUBMIT, seqnum, 0, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&start_frame.to_be_bytes());
    out.extend_from_slice(&iso.map_or(0xffff_ffff, |p| p.len() as u32).to_be_bytes());
    out.extend_from_slice(&error_count.to_be_bytes());
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(data);
    for p in iso.unwrap_or(&[]) {
        for v in [p.offset, p.length, p.actual_length, p.status as u32] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Encodes USBIP_RET_UNLINK.
pub fn ret_unlink(seqnum: u32, status: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    for v in [USBIP_RET_UNLINK, seqnum, 0, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&[0u8; 24]);
    out
}

/// Encodes an OP_REQ_IMPORT (what `isoscope attach` sends).
pub fn import_request(busid: &str) -> Vec<u8> {
    let mut out = op_header(OP_REQ_IMPORT, 0);
    let mut b = busid.as_bytes()[..busid.len().min(31)].to_vec();
    b.resize(32, 0);
    out.extend_from_slice(&b);
    out
}

/// Reads an OP_REP_IMPORT (what `isoscope attach` receives): the device, or `None` if refused.
pub fn read_import_reply(r: &mut impl Read) -> Result<Option<(u32, u32, u32)>, WireError> {
    let mut h = [0u8; 8];
    read_exact(r, &mut h)?;
    let version = u16::from_be_bytes([h[0], h[1]]);
    if version != USBIP_VERSION {
        return Err(WireError::Version(version));
    }
    let code = u16::from_be_bytes([h[2], h[3]]);
    if code != OP_REP_IMPORT {
        return Err(WireError::OpCode(code));
    }
    if be32(&h, 4) != 0 {
        return Ok(None);
    }
    let mut dev = [0u8; 0x138];
    read_exact(r, &mut dev)?;
    Ok(Some((be32(&dev, 0x120), be32(&dev, 0x124), be32(&dev, 0x128))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit_bytes(direction: u32, ep: u32, len: u32, packets: u32, extra: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [USBIP_CMD_SUBMIT, 7, 0x0001_0002, direction, ep, 0, len, 0, packets, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&[0x80, 6, 0, 1, 0, 0, 18, 0]);
        b.extend_from_slice(extra);
        b
    }

    #[test]
    fn an_iso_in_submit_parses_with_its_packet_descriptors() {
        let mut iso = Vec::new();
        for i in 0..2u32 {
            for v in [i * 200, 200, 0, 0] {
                iso.extend_from_slice(&v.to_be_bytes());
            }
        }
        let bytes = submit_bytes(USBIP_DIR_IN, 1, 400, 2, &iso);
        let Command::Submit(s) = read_command(&mut &bytes[..]).unwrap() else { panic!("not a submit") };
        assert_eq!((s.seqnum, s.devid, s.ep, s.transfer_buffer_length), (7, 0x0001_0002, 1, 400));
        assert_eq!(s.number_of_packets, Some(2));
        assert_eq!(s.iso[1], IsoPacket { offset: 200, length: 200, actual_length: 0, status: 0 });
        assert!(s.data.is_empty());
    }

    #[test]
    fn a_control_in_submit_matches_the_documented_example() {
        let bytes = submit_bytes(USBIP_DIR_IN, 0, 18, 0xffff_ffff, &[]);
        let Command::Submit(s) = read_command(&mut &bytes[..]).unwrap() else { panic!("not a submit") };
        assert_eq!(s.number_of_packets, None);
        assert_eq!(s.setup, [0x80, 6, 0, 1, 0, 0, 18, 0]);
    }

    #[test]
    fn hostile_lengths_and_truncations_are_errors_not_allocations_or_panics() {
        let huge = submit_bytes(USBIP_DIR_OUT, 0, u32::MAX, 0xffff_ffff, &[]);
        assert!(matches!(
            read_command(&mut &huge[..]),
            Err(WireError::Range { field: "transfer_buffer_length", .. })
        ));
        let many = submit_bytes(USBIP_DIR_IN, 1, 400, 1 << 30, &[]);
        assert!(matches!(
            read_command(&mut &many[..]),
            Err(WireError::Range { field: "number_of_packets", .. })
        ));
        let mut iso = Vec::new();
        for v in [0u32, 500, 0, 0] {
            iso.extend_from_slice(&v.to_be_bytes());
        }
        let past = submit_bytes(USBIP_DIR_IN, 1, 400, 1, &iso);
        assert!(matches!(
            read_command(&mut &past[..]),
            Err(WireError::Range { field: "iso packet end", .. })
        ));
        let good = submit_bytes(USBIP_DIR_OUT, 0, 8, 0xffff_ffff, &[1, 2, 3, 4, 5, 6, 7, 8]);
        for cut in 0..good.len() {
            assert!(read_command(&mut &good[..cut]).is_err(), "prefix {cut}");
        }
        let mut seed = 0x1234_5678u64;
        for _ in 0..2000 {
            let mut junk = vec![0u8; 120];
            for b in &mut junk {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                *b = (seed >> 56) as u8;
            }
            let _ = read_command(&mut &junk[..]);
            let _ = read_op_request(&mut &junk[..]);
        }
        let bad_version = [0x01, 0x06, 0x80, 0x05, 0, 0, 0, 0];
        assert!(matches!(read_op_request(&mut &bad_version[..]), Err(WireError::Version(0x0106))));
        let no_nul = [&[0x01, 0x11, 0x80, 0x03, 0, 0, 0, 0][..], &[b'x'; 32][..]].concat();
        assert!(matches!(read_op_request(&mut &no_nul[..]), Err(WireError::BusId)));
    }

    #[test]
    fn replies_have_the_documented_layout() {
        let dev = ExportedDevice {
            path: "/sys/devices/isoscope/1-1".into(),
            busid: "1-1".into(),
            busnum: 1,
            devnum: 2,
            speed: 3,
            id_vendor: 0x1209,
            id_product: 0x0001,
            bcd_device: 0x0100,
            device_class: 0xEF,
            device_subclass: 2,
            device_protocol: 1,
            configuration_value: 1,
            num_configurations: 1,
            interfaces: vec![(1, 1, 0x20), (1, 2, 0x20)],
        };
        let list = dev.devlist_reply();
        assert_eq!(list.len(), 0xC + 0x138 + 2 * 4);
        assert_eq!(&list[0x10C..0x10F], b"1-1");
        assert_eq!(be32(&list, 0x134), 3);
        assert_eq!(list[0x143], 2);
        assert_eq!(&list[0x144..0x148], &[1, 1, 0x20, 0]);
        let imp = dev.import_reply();
        assert_eq!(imp.len(), 8 + 0x138);
        assert_eq!(read_import_reply(&mut &imp[..]).unwrap(), Some((1, 2, 3)));
        assert_eq!(read_import_reply(&mut &import_refused()[..]).unwrap(), None);
        assert_eq!(
            read_op_request(&mut &import_request("1-1")[..]).unwrap(),
            OpRequest::Import { busid: "1-1".into() }
        );

        let iso = [
            IsoPacket { offset: 0, length: 8, actual_length: 4, status: 0 },
            IsoPacket { offset: 8, length: 8, actual_length: 0, status: -71 },
        ];
        let r = ret_submit(9, 0, &[1, 2, 3, 4], 100, Some(&iso));
        assert_eq!(r.len(), HEADER_BYTES + 4 + 2 * ISO_DESC_BYTES);
        assert_eq!(
            (be32(&r, 0), be32(&r, 4), be32(&r, 0x18), be32(&r, 0x20), be32(&r, 0x24)),
            (3, 9, 4, 2, 1)
        );
        assert_eq!(&r[0x30..0x34], &[1, 2, 3, 4]);
        assert_eq!(be32(&r, 0x34 + 16 + 12) as i32, -71);
        let u = ret_unlink(10, -104);
        assert_eq!((u.len(), be32(&u, 0), be32(&u, 0x14) as i32), (HEADER_BYTES, 4, -104));
    }
}
