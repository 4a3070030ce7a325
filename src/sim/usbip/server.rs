//! The USB/IP server behind `isoscope virtual-device`: answers device lists and imports,
//! then serves the imported device's URBs. Control transfers are answered at once; iso IN
//! URBs complete at the bus's pace, one (micro)frame per packet. A malformed or hostile
//! message closes that connection with the reason logged; the server goes on.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use nix::libc;

use super::wire::{self, CmdSubmit, Command, ExportedDevice, IsoPacket, OpRequest, WireError};
use crate::sim::device::{VirtualDevice, VirtualDeviceConfig, PRODUCT_ID, VENDOR_ID};
use crate::usb::Speed;

/// The bus id the virtual device is exported as.
pub const BUSID: &str = "1-1";

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}. Is another USB/IP server (usbipd) using the port? Pick another with --listen")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Device(#[from] crate::sim::SimError),
}

/// How the virtual device appears in a USB/IP device list and import reply.
pub fn exported(device: &VirtualDevice, busid: &str) -> ExportedDevice {
    let d = device.device_descriptor();
    ExportedDevice {
        path: format!("/sys/devices/isoscope/{busid}"),
        busid: busid.to_string(),
        busnum: 1,
        devnum: 2,
        speed: match device.speed() {
            Speed::Full => 2,
            _ => 3,
        },
        id_vendor: VENDOR_ID,
        id_product: PRODUCT_ID,
        bcd_device: u16::from_le_bytes([d[12], d[13]]),
        device_class: d[4],
        device_subclass: d[5],
        device_protocol: d[6],
        configuration_value: device.configuration(),
        num_configurations: 1,
        interfaces: device.interfaces().iter().map(|&(_, class, sub, proto)| (class, sub, proto)).collect(),
    }
}

/// Completes an iso IN URB: fills each packet (at most its requested length) and appends
/// the packets' valid bytes back to back to `data`, as USB/IP sends them. Returns the
/// URB's start frame.
pub fn fill_iso(device: &mut VirtualDevice, packets: &mut [IsoPacket], data: &mut Vec<u8>) -> i32 {
    let start = device.frame_number();
    for p in packets.iter_mut() {
        let out = device.next_iso_packet(p.length, data);
        p.actual_length = out.actual_length;
        p.status = -out.errno;
    }
    start
}

/// Binds the server's listening socket (so a client may connect as soon as this returns).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let listener = TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr, source })?;
    Ok(listener)
}

/// Serves the virtual device on `listener` (from [`bind`]) until `stop` is set. Each
/// connection is served on its own thread; `log` receives one line per connection event.
pub fn serve(
    listener: TcpListener,
    cfg: VirtualDeviceConfig,
    stop: Arc<AtomicBool>,
    log: impl Fn(String) + Send + Sync + 'static,
) -> Result<(), ServerError> {
    VirtualDevice::new(cfg.clone())?; // validate before accepting
    let log = Arc::new(log);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((sock, peer)) => {
                let (cfg, conn_log, stop) = (cfg.clone(), Arc::clone(&log), Arc::clone(&stop));
                let spawned = std::thread::Builder::new().name("isoscope-usbip".into()).spawn(move || {
                    match serve_connection(sock, cfg, &stop) {
                        Ok(note) => conn_log(format!("{peer}: {note}")),
                        Err(reason) => conn_log(format!("{peer}: connection closed: {reason}")),
                    }
                });
                if let Err(e) = spawned {
                    log(format!("{peer}: cannot start a thread for the connection: {e}"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => log(format!("accept failed: {e}")),
        }
    }
    Ok(())
}

/// Serves one connection: a device list, or an import followed by URB traffic.
fn serve_connection(
    mut sock: TcpStream,
    cfg: VirtualDeviceConfig,
    stop: &AtomicBool,
) -> Result<String, String> {
    sock.set_nodelay(true).ok();
    let mut device = VirtualDevice::new(cfg).map_err(|e| e.to_string())?;
    match wire::read_op_request(&mut sock).map_err(|e| e.to_string())? {
        OpRequest::DevList => {
            sock.write_all(&exported(&device, BUSID).devlist_reply()).map_err(|e| e.to_string())?;
            Ok("sent the device list".into())
        }
        OpRequest::Import { busid } if busid == BUSID => {
            sock.write_all(&exported(&device, BUSID).import_reply()).map_err(|e| e.to_string())?;
            serve_urbs(sock, &mut device, stop)
        }
        OpRequest::Import { busid } => {
            sock.write_all(&wire::import_refused()).map_err(|e| e.to_string())?;
            Err(format!("import of unknown bus id '{busid}' refused (this server exports {BUSID})"))
        }
    }
}

/// An iso IN URB waiting for its frames to pass.
struct PendingIso {
    cmd: CmdSubmit,
    due: Instant,
}

fn serve_urbs(sock: TcpStream, device: &mut VirtualDevice, stop: &AtomicBool) -> Result<String, String> {
    let mut writer = sock.try_clone().map_err(|e| e.to_string())?;
    let (tx, rx) = crossbeam_channel::bounded::<Result<Command, WireError>>(256);
    let mut reader = sock;
    std::thread::Builder::new()
        .name("isoscope-usbip-rx".into())
        .spawn(move || loop {
            let cmd = wire::read_command(&mut reader);
            let end = cmd.is_err();
            if tx.send(cmd).is_err() || end {
                break;
            }
        })
        .map_err(|e| e.to_string())?;
    let result = urb_loop(&mut writer, &rx, device, stop);
    let _ = writer.shutdown(std::net::Shutdown::Both);
    result
}

fn urb_loop(
    w: &mut TcpStream,
    rx: &Receiver<Result<Command, WireError>>,
    device: &mut VirtualDevice,
    stop: &AtomicBool,
) -> Result<String, String> {
    let packet = Duration::from_micros(u64::from(device.packet_us()));
    let mut pending: VecDeque<PendingIso> = VecDeque::new();
    let mut bus_clock = Instant::now();
    let mut stream_started: Option<Instant> = None;
    let disconnect_after = device.config().faults.disconnect_after_s.map(Duration::from_secs_f64);
    let mut out = Vec::with_capacity(64 << 10);
    let mut data = Vec::with_capacity(64 << 10);
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok("server stopping".into());
        }
        if let (Some(t0), Some(after)) = (stream_started, disconnect_after) {
            if t0.elapsed() >= after {
                return Ok(format!("unplugged after {after:?} of streaming (fault injection)"));
            }
        }
        // Complete every iso URB whose last frame has passed.
        while pending.front().is_some_and(|p| p.due <= Instant::now()) {
            let Some(mut p) = pending.pop_front() else { break };
            data.clear();
            let start_frame = fill_iso(device, &mut p.cmd.iso, &mut data);
            out.clear();
            wire::ret_submit_into(&mut out, p.cmd.seqnum, 0, &data, start_frame, Some(&p.cmd.iso));
            w.write_all(&out).map_err(|e| format!("write failed: {e}"))?;
        }
        let wait = pending
            .front()
            .map_or(Duration::from_millis(50), |p| p.due.saturating_duration_since(Instant::now()));
        let cmd = match rx.recv_timeout(wait.min(Duration::from_millis(50))) {
            Ok(Ok(cmd)) => cmd,
            Ok(Err(WireError::Closed)) | Err(RecvTimeoutError::Disconnected) => {
                return Ok("the importing host closed the connection".into())
            }
            Ok(Err(e)) => return Err(format!("malformed message: {e}")),
            Err(RecvTimeoutError::Timeout) => continue,
        };
        match cmd {
            Command::Unlink { seqnum, unlink_seqnum } => {
                let status = match pending.iter().position(|p| p.cmd.seqnum == unlink_seqnum) {
                    Some(i) => {
                        pending.remove(i);
                        -libc::ECONNRESET
                    }
                    None => 0,
                };
                w.write_all(&wire::ret_unlink(seqnum, status)).map_err(|e| format!("write failed: {e}"))?;
            }
            Command::Submit(cmd) if cmd.ep == 0 => {
                let reply = match device.control(cmd.setup, &cmd.data) {
                    Ok(v) if cmd.direction == wire::USBIP_DIR_IN => {
                        wire::ret_submit(cmd.seqnum, 0, &v, 0, None)
                    }
                    Ok(_) => {
                        let mut r = wire::ret_submit(cmd.seqnum, 0, &[], 0, None);
                        r[0x18..0x1C].copy_from_slice(&(cmd.data.len() as u32).to_be_bytes());
                        r
                    }
                    Err(errno) => wire::ret_submit(cmd.seqnum, errno, &[], 0, None),
                };
                w.write_all(&reply).map_err(|e| format!("write failed: {e}"))?;
                if device.streaming() && stream_started.is_none() {
                    stream_started = Some(Instant::now());
                }
            }
            Command::Submit(cmd)
                if cmd.ep == 1 && cmd.direction == wire::USBIP_DIR_IN && cmd.number_of_packets.is_some() =>
            {
                // ASAP scheduling: right after the previous URB, or now if the queue ran dry.
                let start = bus_clock.max(Instant::now());
                let due = start + packet * cmd.iso.len() as u32;
                bus_clock = due;
                pending.push_back(PendingIso { cmd, due });
            }
            Command::Submit(cmd) => {
                w.write_all(&wire::ret_submit(cmd.seqnum, -libc::EPIPE, &[], 0, None))
                    .map_err(|e| format!("write failed: {e}"))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn start(cfg: VirtualDeviceConfig) -> (SocketAddr, Arc<AtomicBool>) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        std::thread::spawn(move || serve(listener, cfg, s, |_| {}).unwrap());
        (addr, stop)
    }

    fn submit(seq: u32, dir: u32, ep: u32, setup: [u8; 8], len: u32, iso: &[(u32, u32)]) -> Vec<u8> {
        let mut b = Vec::new();
        let n = if iso.is_empty() { 0xffff_ffff } else { iso.len() as u32 };
        for v in [1, seq, 0x0001_0002, dir, ep, 0, len, 0, n, 1] {
            b.extend_from_slice(&u32::to_be_bytes(v));
        }
        b.extend_from_slice(&setup);
        for &(off, l) in iso {
            for v in [off, l, 0, 0] {
                b.extend_from_slice(&v.to_be_bytes());
            }
        }
        b
    }

    fn read_ret(s: &mut TcpStream, iso_packets: usize) -> (u32, i32, Vec<u8>) {
        let mut h = [0u8; 48];
        s.read_exact(&mut h).unwrap();
        let seq = u32::from_be_bytes(h[4..8].try_into().unwrap());
        let status = i32::from_be_bytes(h[20..24].try_into().unwrap());
        let len = u32::from_be_bytes(h[24..28].try_into().unwrap()) as usize;
        let mut data = vec![0u8; len + 16 * iso_packets];
        s.read_exact(&mut data).unwrap();
        (seq, status, data)
    }

    #[test]
    fn import_then_control_and_paced_iso_traffic() {
        let (addr, stop) = start(VirtualDeviceConfig::default());
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&wire::import_request(BUSID)).unwrap();
        assert_eq!(wire::read_import_reply(&mut s).unwrap(), Some((1, 2, 3)));
        s.write_all(&submit(1, 1, 0, [0x80, 6, 0, 1, 0, 0, 18, 0], 18, &[])).unwrap();
        let (seq, status, dev) = read_ret(&mut s, 0);
        assert_eq!((seq, status, dev.len(), dev[1]), (1, 0, 18, 1));
        s.write_all(&submit(2, 0, 0, [0x01, 11, 1, 0, 1, 0, 0, 0], 0, &[])).unwrap(); // alt 1
        assert_eq!(read_ret(&mut s, 0).1, 0);
        let t0 = Instant::now();
        for seq in 3..11 {
            s.write_all(&submit(
                seq,
                1,
                1,
                [0; 8],
                8 * 28,
                &(0..8).map(|i| (i * 28, 28)).collect::<Vec<_>>(),
            ))
            .unwrap();
        }
        let mut frames = 0;
        for seq in 3..11 {
            let (got, status, body) = read_ret(&mut s, 8);
            assert_eq!((got, status), (seq, 0));
            frames += (body.len() - 8 * 16) / 4;
        }
        // 64 packets of 125 us: 8 ms of a 48 kHz stream.
        assert!(t0.elapsed() >= Duration::from_millis(7), "{:?}", t0.elapsed());
        assert_eq!(frames, 384);
        // Unlinking a completed URB answers 0; a stall for an unknown endpoint.
        let mut unlink = Vec::new();
        for v in [2u32, 20, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0] {
            unlink.extend_from_slice(&v.to_be_bytes());
        }
        s.write_all(&unlink).unwrap();
        let mut r = [0u8; 48];
        s.read_exact(&mut r).unwrap();
        assert_eq!((r[3], i32::from_be_bytes(r[20..24].try_into().unwrap())), (4, 0));
        s.write_all(&submit(21, 1, 5, [0; 8], 8, &[])).unwrap();
        assert_eq!(read_ret(&mut s, 0).1, -libc::EPIPE);
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn garbage_closes_only_that_connection() {
        let (addr, stop) = start(VirtualDeviceConfig::default());
        let mut bad = TcpStream::connect(addr).unwrap();
        bad.write_all(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(bad.read(&mut buf).unwrap_or(0), 0, "the server hangs up");
        let mut ok = TcpStream::connect(addr).unwrap();
        ok.write_all(&[0x01, 0x11, 0x80, 0x05, 0, 0, 0, 0]).unwrap();
        let mut h = [0u8; 12];
        ok.read_exact(&mut h).unwrap();
        assert_eq!(u32::from_be_bytes(h[8..12].try_into().unwrap()), 1, "one device listed");
        stop.store(true, Ordering::Relaxed);
    }
}
