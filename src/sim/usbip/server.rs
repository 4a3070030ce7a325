//! The USB/IP server behind `isoscope virtual-device`: answers device lists and imports,
//! then serves the imported device's URBs. Control transfers are answered at once; iso IN
//! URBs complete at the bus's pace, one (micro)frame per packet; interrupt IN URBs on the
//! status endpoint wait until the device has a status message. A malformed or hostile
//! message closes that connection with the reason logged; the server goes on. What a client
//! can hold is bounded: [`MAX_CONNECTIONS`] at once, [`MAX_PENDING_ISO`] queued iso URBs
//! and [`MAX_PENDING_STATUS`] status URBs each, a first request within [`STALL_LIMIT`] of
//! connecting, the rest of a message within [`STALL_LIMIT`] of its first byte, and a write
//! it does not read for [`STALL_LIMIT`].
//! An imported connection may stay idle between messages as long as it likes (a host
//! whose device is not in use sends nothing).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use nix::libc;

use super::wire::{self, CmdSubmit, Command, ExportedDevice, IsoPacket, OpRequest, WireError};
use crate::sim::device::{VirtualDevice, VirtualDeviceConfig, PRODUCT_ID, STATUS_ENDPOINT, VENDOR_ID};
use crate::usb::Speed;

/// The bus id the virtual device is exported as.
pub const BUSID: &str = "1-1";

/// How long a client has for its first request, for the rest of a message once it has
/// begun, and to read what the server writes; past it the connection is closed. (Short in
/// unit tests.)
pub const STALL_LIMIT: Duration =
    if cfg!(test) { Duration::from_millis(400) } else { Duration::from_secs(10) };

/// Connections served at once; more are refused (closed at once, logged).
pub const MAX_CONNECTIONS: usize = 32;

/// Iso URBs one connection may have queued (vhci-hcd keeps a few dozen); more close it.
pub const MAX_PENDING_ISO: usize = 1024;

/// Interrupt IN URBs on the status endpoint one connection may have waiting at once
/// (snd-usb-audio keeps one); more close it.
pub const MAX_PENDING_STATUS: usize = 16;

/// How often a quiet read wakes to look at its deadline.
const READ_POLL: Duration = Duration::from_millis(100);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {error}. Is another USB/IP server (usbipd) using the port?")]
    Bind { addr: SocketAddr, error: std::io::Error },
    #[error(transparent)]
    Device(#[from] crate::sim::SimError),
}

impl ServerError {
    /// What to change: the port, when it is taken.
    pub fn fix(&self) -> Option<crate::fix::Fix> {
        match self {
            ServerError::Bind { .. } => Some(crate::fix::Fix::OtherListenPort { qemu: false }),
            ServerError::Device(_) => None,
        }
    }
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
    let listener = TcpListener::bind(addr).map_err(|error| ServerError::Bind { addr, error })?;
    listener.set_nonblocking(true).map_err(|error| ServerError::Bind { addr, error })?;
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
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((sock, peer)) => {
                if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                    log(format!("{peer}: refused: already serving {MAX_CONNECTIONS} connections"));
                    continue; // dropping the socket closes it
                }
                let place = Place::take(&active);
                let (cfg, conn_log, stop) = (cfg.clone(), Arc::clone(&log), Arc::clone(&stop));
                let spawned = std::thread::Builder::new().name("isoscope-usbip".into()).spawn(move || {
                    let _place = place; // given back when the thread ends, however it ends
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

/// Reads the socket (which has a short read timeout) with the server's patience: between
/// messages it waits as long as `idle_ok` allows (forever, or [`STALL_LIMIT`] from the
/// last [`Patient::begin`]); once a message has begun, the rest must come within
/// [`STALL_LIMIT`] of its first byte.
struct Patient {
    sock: TcpStream,
    idle_ok: bool,
    /// When waiting for the current message began.
    since: Instant,
    /// When its first byte came.
    started: Option<Instant>,
}

impl Patient {
    fn new(sock: TcpStream, idle_ok: bool) -> Patient {
        Patient { sock, idle_ok, since: Instant::now(), started: None }
    }

    /// The next read is the start of a new message.
    fn begin(&mut self) {
        self.since = Instant::now();
        self.started = None;
    }
}

impl Read for Patient {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.sock.read(buf) {
                Ok(n) => {
                    if n > 0 {
                        self.started.get_or_insert_with(Instant::now);
                    }
                    return Ok(n);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    let stalled = match self.started {
                        Some(t) if t.elapsed() >= STALL_LIMIT => {
                            format!("a message began and its rest did not come within {STALL_LIMIT:?}")
                        }
                        None if !self.idle_ok && self.since.elapsed() >= STALL_LIMIT => {
                            format!("no request within {STALL_LIMIT:?} of connecting")
                        }
                        _ => continue,
                    };
                    return Err(io::Error::new(io::ErrorKind::TimedOut, stalled));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// One of the [`MAX_CONNECTIONS`] places, held by a connection's thread.
struct Place(Arc<AtomicUsize>);

impl Place {
    fn take(active: &Arc<AtomicUsize>) -> Place {
        active.fetch_add(1, Ordering::AcqRel);
        Place(Arc::clone(active))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one connection: a device list, or an import followed by URB traffic.
fn serve_connection(sock: TcpStream, cfg: VirtualDeviceConfig, stop: &AtomicBool) -> Result<String, String> {
    sock.set_nodelay(true).ok();
    // Socket options, so they hold for every handle of it: reads wake to look at their
    // deadline; a client that does not read what we write is let go of.
    sock.set_read_timeout(Some(READ_POLL)).map_err(|e| format!("cannot set a read timeout: {e}"))?;
    sock.set_write_timeout(Some(STALL_LIMIT)).map_err(|e| format!("cannot set a write timeout: {e}"))?;
    let mut device = VirtualDevice::new(cfg).map_err(|e| e.to_string())?;
    let mut first = Patient::new(sock.try_clone().map_err(|e| e.to_string())?, false);
    let request = wire::read_op_request(&mut first).map_err(|e| e.to_string())?;
    let mut sock = sock;
    match request {
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
    let mut reader = Patient::new(sock, true);
    std::thread::Builder::new()
        .name("isoscope-usbip-rx".into())
        .spawn(move || loop {
            reader.begin();
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
    // Interrupt IN URBs on the status endpoint: they wait (the endpoint NAKs) until the
    // device has a status message.
    let mut pending_status: VecDeque<CmdSubmit> = VecDeque::new();
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
        while device.status_pending() && !pending_status.is_empty() {
            let (Some(urb), Some(m)) = (pending_status.pop_front(), device.take_status()) else { break };
            let bytes = m.as_bytes();
            let n = bytes.len().min(urb.transfer_buffer_length as usize);
            w.write_all(&wire::ret_submit(urb.seqnum, 0, &bytes[..n], 0, None))
                .map_err(|e| format!("write failed: {e}"))?;
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
                let iso = pending.iter().position(|p| p.cmd.seqnum == unlink_seqnum);
                let status_urb = pending_status.iter().position(|c| c.seqnum == unlink_seqnum);
                let status = match (iso, status_urb) {
                    (Some(i), _) => {
                        pending.remove(i);
                        -libc::ECONNRESET
                    }
                    (None, Some(i)) => {
                        pending_status.remove(i);
                        -libc::ECONNRESET
                    }
                    (None, None) => 0,
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
                if pending.len() >= MAX_PENDING_ISO {
                    return Err(format!(
                        "more than {MAX_PENDING_ISO} iso URBs queued at once (a host keeps a few dozen)"
                    ));
                }
                // ASAP scheduling: right after the previous URB, or now if the queue ran dry.
                let start = bus_clock.max(Instant::now());
                let due = start + packet * cmd.iso.len() as u32;
                bus_clock = due;
                pending.push_back(PendingIso { cmd, due });
            }
            Command::Submit(cmd)
                if cmd.ep == u32::from(STATUS_ENDPOINT & 0x0f)
                    && cmd.direction == wire::USBIP_DIR_IN
                    && matches!(cmd.number_of_packets, None | Some(0))
                    && device.configuration() != 0 =>
            {
                if pending_status.len() >= MAX_PENDING_STATUS {
                    return Err(format!(
                        "more than {MAX_PENDING_STATUS} interrupt URBs queued on the status endpoint at once (a host keeps one)"
                    ));
                }
                pending_status.push_back(cmd);
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

    /// A server on loopback; its log lines arrive on the receiver.
    fn start(cfg: VirtualDeviceConfig) -> (SocketAddr, Arc<AtomicBool>, Receiver<String>) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let (log_tx, log_rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("test-usbip-server".into())
            .spawn(move || {
                serve(listener, cfg, s, move |l| {
                    let _ = log_tx.send(l);
                })
                .unwrap()
            })
            .unwrap();
        (addr, stop, log_rx)
    }

    /// Waits for a log line containing `want`.
    fn logged(log: &Receiver<String>, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while let Ok(line) = log.recv_deadline(deadline) {
            if line.contains(want) {
                return line;
            }
            seen.push(line);
        }
        panic!("no log line with '{want}'; saw {seen:?}");
    }

    /// A client that imports the device (with a read timeout, so a test never hangs).
    fn import(addr: SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&wire::import_request(BUSID)).unwrap();
        assert_eq!(wire::read_import_reply(&mut s).unwrap(), Some((1, 2, 3)));
        s
    }

    /// A well-behaved imported client is answered: GET_DESCRIPTOR(device).
    fn answered(s: &mut TcpStream, seq: u32) {
        s.write_all(&submit(seq, 1, 0, [0x80, 6, 0, 1, 0, 0, 18, 0], 18, &[])).unwrap();
        let (got, status, dev) = read_ret(s, 0);
        assert_eq!((got, status, dev.len()), (seq, 0, 18));
    }

    /// The server hangs up on `s` within `within`.
    fn hung_up_within(s: &mut TcpStream, within: Duration) {
        let t0 = Instant::now();
        s.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 4096];
        loop {
            match s.read(&mut b) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("no hang-up within {within:?}: {e}"),
            }
        }
        assert!(t0.elapsed() < within, "hung up only after {:?}", t0.elapsed());
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
        let (addr, stop, _log) = start(VirtualDeviceConfig::default());
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

    /// Imports the device and selects configuration 1.
    fn import_configured(addr: SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&wire::import_request(BUSID)).unwrap();
        wire::read_import_reply(&mut s).unwrap();
        s.write_all(&submit(1, 0, 0, [0x00, 9, 1, 0, 0, 0, 0, 0], 0, &[])).unwrap();
        assert_eq!(read_ret(&mut s, 0).1, 0);
        s
    }

    #[test]
    fn the_status_endpoint_holds_an_interrupt_urb_until_the_clock_changes() {
        let (addr, stop, _log) = start(VirtualDeviceConfig::default());
        let mut s = import_configured(addr);
        // Two interrupt URBs wait on the status endpoint (ep 2 IN): nothing answers them.
        s.write_all(&submit(2, 1, 2, [0; 8], 6, &[])).unwrap();
        s.write_all(&submit(3, 1, 2, [0; 8], 6, &[])).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut b = [0u8; 1];
        assert!(s.peek(&mut b).is_err(), "an interrupt URB was answered with nothing to report");
        s.set_read_timeout(None).unwrap();
        // The host sets 96 kHz on the clock: the control completes, then the first URB
        // carries the sample-frequency message and the second the validity message.
        let set_rate = [0x21, 0x01, 0x00, 0x01, 0x00, 0x10, 4, 0];
        let mut cmd = submit(4, 0, 0, set_rate, 4, &[]);
        cmd.extend_from_slice(&96_000u32.to_le_bytes());
        s.write_all(&cmd).unwrap();
        // An OUT reply carries no data (its actual_length counts what was sent).
        let mut h = [0u8; 48];
        s.read_exact(&mut h).unwrap();
        assert_eq!((h[7], i32::from_be_bytes(h[20..24].try_into().unwrap())), (4, 0));
        assert_eq!(read_ret(&mut s, 0), (2, 0, vec![0x00, 0x01, 0x00, 0x01, 0x00, 0x10]));
        assert_eq!(read_ret(&mut s, 0), (3, 0, vec![0x00, 0x01, 0x00, 0x02, 0x00, 0x10]));
        // A waiting URB is unlinked with ECONNRESET, as the kernel kills it at unbind.
        s.write_all(&submit(5, 1, 2, [0; 8], 6, &[])).unwrap();
        let mut unlink = Vec::new();
        for v in [2u32, 6, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0] {
            unlink.extend_from_slice(&v.to_be_bytes());
        }
        s.write_all(&unlink).unwrap();
        let mut r = [0u8; 48];
        s.read_exact(&mut r).unwrap();
        assert_eq!((r[3], i32::from_be_bytes(r[20..24].try_into().unwrap())), (4, -libc::ECONNRESET));
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn a_client_cannot_queue_status_urbs_without_bound() {
        let (addr, stop, log) = start(VirtualDeviceConfig::default());
        let mut s = import_configured(addr);
        for seq in 0..=MAX_PENDING_STATUS as u32 {
            s.write_all(&submit(10 + seq, 1, 2, [0; 8], 6, &[])).unwrap();
        }
        logged(&log, "interrupt URBs queued on the status endpoint");
        hung_up_within(&mut s, Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn garbage_closes_only_that_connection() {
        let (addr, stop, _log) = start(VirtualDeviceConfig::default());
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

    #[test]
    fn out_of_order_and_truncated_messages_close_only_that_connection() {
        let (addr, stop, log) = start(VirtualDeviceConfig::default());
        let mut good = import(addr);
        answered(&mut good, 1);
        // CMD_SUBMIT before any import: not an OP request.
        let mut early = TcpStream::connect(addr).unwrap();
        early.write_all(&submit(1, 1, 0, [0x80, 6, 0, 1, 0, 0, 18, 0], 18, &[])).unwrap();
        hung_up_within(&mut early, Duration::from_secs(2));
        logged(&log, "unsupported USB/IP version");
        // An import of a bus id we do not export: refused, then traffic gets nothing.
        let mut wrong = TcpStream::connect(addr).unwrap();
        wrong.write_all(&wire::import_request("9-9")).unwrap();
        wrong.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(wire::read_import_reply(&mut wrong).unwrap(), None, "refused");
        let _ = wrong.write_all(&submit(2, 1, 0, [0x80, 6, 0, 1, 0, 0, 18, 0], 18, &[]));
        hung_up_within(&mut wrong, Duration::from_secs(2));
        logged(&log, "unknown bus id '9-9'");
        // An OP request after the import (padded to a command header): an unknown command.
        let mut again = import(addr);
        again.write_all(&[wire::import_request(BUSID), vec![0; 8]].concat()).unwrap();
        hung_up_within(&mut again, Duration::from_secs(2));
        logged(&log, "unknown command");
        // A header, then EOF.
        let mut cut = import(addr);
        cut.write_all(&submit(3, 1, 0, [0; 8], 0, &[])[..20]).unwrap();
        cut.shutdown(std::net::Shutdown::Write).unwrap();
        hung_up_within(&mut cut, Duration::from_secs(2));
        logged(&log, "closed the connection");
        answered(&mut good, 2);
        answered(&mut import(addr), 1);
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn oversized_submits_are_refused_before_anything_is_allocated() {
        let (addr, stop, log) = start(VirtualDeviceConfig::default());
        let mut good = import(addr);
        for (bad, why) in [
            // number_of_packets huge (2^31 descriptors would be 32 GiB).
            (submit(1, 1, 1, [0; 8], 1024, &[]), "number_of_packets"),
            // transfer_buffer_length over the limit, OUT: its data would be read.
            (submit(1, 0, 2, [0; 8], 0xffff_fff0, &[]), "transfer_buffer_length"),
            // The packets' lengths add up to more than the buffer.
            (submit(1, 1, 1, [0; 8], 10, &[(0, 8), (8, 8)]), "iso packet end"),
        ] {
            let mut bad = bad;
            if why == "number_of_packets" {
                bad[0x20..0x24].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
            }
            let mut s = import(addr);
            s.write_all(&bad).unwrap();
            hung_up_within(&mut s, Duration::from_secs(2));
            logged(&log, why);
            answered(&mut good, 2);
        }
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn a_client_that_stalls_is_let_go_of_and_an_idle_import_is_not() {
        let (addr, stop, log) = start(VirtualDeviceConfig::default());
        let within = STALL_LIMIT + Duration::from_secs(2);
        let mut idle = import(addr);
        // Nothing at all after connecting.
        let mut silent = TcpStream::connect(addr).unwrap();
        hung_up_within(&mut silent, within);
        logged(&log, "no request within");
        // Half an OP request.
        let mut half_op = TcpStream::connect(addr).unwrap();
        half_op.write_all(&wire::import_request(BUSID)[..10]).unwrap();
        hung_up_within(&mut half_op, within);
        logged(&log, "did not come within");
        // Half a CMD_SUBMIT header after the import.
        let mut half_cmd = import(addr);
        half_cmd.write_all(&submit(1, 1, 0, [0; 8], 0, &[])[..30]).unwrap();
        hung_up_within(&mut half_cmd, within);
        logged(&log, "did not come within");
        // An OUT submit of 4 MiB with 100 bytes of its data.
        let mut half_data = import(addr);
        half_data.write_all(&submit(1, 0, 2, [0; 8], 4 << 20, &[])).unwrap();
        half_data.write_all(&[0u8; 100]).unwrap();
        hung_up_within(&mut half_data, within);
        logged(&log, "did not come within");
        // The imported host that sent nothing all this time is still served.
        assert!(STALL_LIMIT < Duration::from_secs(1));
        answered(&mut idle, 1);
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn a_client_cannot_queue_iso_urbs_without_bound() {
        let (addr, stop, log) = start(VirtualDeviceConfig::default());
        let mut good = import(addr);
        let mut greedy = import(addr);
        // 128 packets of 125 us each: 16 ms per URB, so they queue far faster than they complete.
        let iso: Vec<(u32, u32)> = (0..128).map(|i| (i * 28, 28)).collect();
        let one = submit(0, 1, 1, [0; 8], 128 * 28, &iso);
        let mut burst = Vec::new();
        for seq in 0..(MAX_PENDING_ISO as u32 + 64) {
            let mut m = one.clone();
            m[4..8].copy_from_slice(&seq.to_be_bytes());
            burst.extend_from_slice(&m);
        }
        let _ = greedy.write_all(&burst); // the server may hang up before it has read it all
        hung_up_within(&mut greedy, Duration::from_secs(5));
        logged(&log, "iso URBs queued at once");
        answered(&mut good, 1);
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn connections_past_the_limit_are_refused_and_the_others_served() {
        let (addr, stop, log) = start(VirtualDeviceConfig::default());
        let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS).map(|_| import(addr)).collect();
        let mut extra = TcpStream::connect(addr).unwrap();
        hung_up_within(&mut extra, Duration::from_secs(2));
        logged(&log, "refused: already serving");
        answered(&mut held[0], 1);
        // One goes away: a new one is served once the server has seen it go.
        drop(held.pop());
        let t0 = Instant::now();
        let mut next = loop {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.write_all(&wire::import_request(BUSID)).unwrap();
            if let Ok(Some(_)) = wire::read_import_reply(&mut s) {
                break s;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "a freed place was never given again");
            std::thread::sleep(Duration::from_millis(50));
        };
        answered(&mut next, 1);
        stop.store(true, Ordering::Relaxed);
    }
}
