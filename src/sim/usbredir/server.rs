//! The usbredir usb-host behind `isoscope virtual-device --transport usbredir`: QEMU's
//! `usb-redir` device connects (QEMU is the client), and the virtual device appears on the
//! guest's emulated xHCI, EHCI or UHCI controller, driven by the guest's own controller
//! driver with real DMA. One device per connection; connections are served one at a time,
//! each on its own thread. Iso IN packets are paced by the wall clock (QEMU has no flow
//! control: it buffers about 60 ms and drops what runs ahead); status messages go out as
//! interrupt packets while QEMU receives on the status endpoint. A malformed message that the
//! protocol can skip is skipped and logged; one it cannot closes the connection with the
//! reason logged; the server goes on. Since one client holds the server, no client can hold
//! it forever: its hello must come within [`STALL_LIMIT`] of connecting, a message once
//! begun must be complete within it, and a write it does not read for [`STALL_LIMIT`]
//! closes the connection. Messages before the hello are skipped (their id width is not yet
//! known), as is a second hello.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use nix::libc;

use super::wire::{self, Cap, Caps, ControlPacket, EpInfo, EpType, Link, Message, Parsed, Status};
use crate::sim::device::{VirtualDevice, VirtualDeviceConfig, PRODUCT_ID, STATUS_ENDPOINT, VENDOR_ID};
use crate::usb::descriptors::{self, TransferType};
use crate::usb::Speed;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {error}. Is another program (a second isoscope virtual-device?) using the port?")]
    Bind { addr: SocketAddr, error: std::io::Error },
    #[error(transparent)]
    Device(#[from] crate::sim::SimError),
}

impl ServerError {
    /// What to change: the port, when it is taken.
    pub fn fix(&self) -> Option<crate::fix::Fix> {
        match self {
            ServerError::Bind { .. } => Some(crate::fix::Fix::OtherListenPort { qemu: true }),
            ServerError::Device(_) => None,
        }
    }
}

/// How long the server waits for a client's hello after it connects, for the rest of a
/// message that has begun, and for a client to read what the server writes. A client that
/// stalls past it is disconnected, so the next one can be served. (Short in unit tests.)
pub const STALL_LIMIT: Duration =
    if cfg!(test) { Duration::from_millis(400) } else { Duration::from_secs(10) };

/// How often the reader looks at its deadlines while the socket is quiet.
const READ_POLL: Duration = Duration::from_millis(100);

/// The version string our hello carries.
const VERSION: &str = concat!("isoscope ", env!("CARGO_PKG_VERSION"));

/// Timed faults of the transport: an unplug after some streaming, and a replug.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Replug {
    /// Send device_disconnect after this much streaming (from the first alt setting >= 1).
    pub disconnect_after: Option<Duration>,
    /// Send device_connect again (a fresh device) this long after the disconnect; `None`
    /// leaves the device unplugged until the connection closes.
    pub reconnect_after: Option<Duration>,
}

/// Binds the server's listening socket (so QEMU may connect as soon as this returns).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let listener = TcpListener::bind(addr).map_err(|error| ServerError::Bind { addr, error })?;
    listener.set_nonblocking(true).map_err(|error| ServerError::Bind { addr, error })?;
    Ok(listener)
}

/// Serves the virtual device on `listener` (from [`bind`]) until `stop` is set; `log`
/// receives one line per connection event. The disconnect fault is taken from `replug`,
/// not from `cfg.faults.disconnect_after_s`.
pub fn serve(
    listener: TcpListener,
    cfg: VirtualDeviceConfig,
    replug: Replug,
    stop: Arc<AtomicBool>,
    log: impl Fn(String) + Send + Sync + 'static,
) -> Result<(), ServerError> {
    VirtualDevice::new(cfg.clone())?; // validate before accepting
    let log = Arc::new(log);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((sock, peer)) => {
                let (cfg, conn_log, stop) = (cfg.clone(), Arc::clone(&log), Arc::clone(&stop));
                let spawned = std::thread::Builder::new().name("isoscope-usbredir".into()).spawn(move || {
                    let line_log = |l: String| conn_log(format!("{peer}: {l}"));
                    match serve_connection(sock, cfg, replug, &stop, &line_log) {
                        Ok(note) => line_log(note),
                        Err(reason) => line_log(format!("connection closed: {reason}")),
                    }
                });
                match spawned {
                    // One device, one connection at a time: wait for this one to end.
                    Ok(handle) => {
                        let _ = handle.join();
                    }
                    Err(e) => log(format!("{peer}: cannot start a thread for the connection: {e}")),
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

/// A message from the reader thread: owned, since the parse borrows the read buffer.
#[derive(Debug)]
enum Incoming {
    Hello {
        caps: Caps,
        version: String,
    },
    Reset,
    SetConfiguration {
        id: u64,
        configuration: u8,
    },
    GetConfiguration {
        id: u64,
    },
    SetAltSetting {
        id: u64,
        interface: u8,
        alt: u8,
    },
    GetAltSetting {
        id: u64,
        interface: u8,
    },
    StartIsoStream {
        id: u64,
        endpoint: u8,
    },
    StopIsoStream {
        id: u64,
        endpoint: u8,
    },
    StartInterruptReceiving {
        id: u64,
        endpoint: u8,
    },
    StopInterruptReceiving {
        id: u64,
        endpoint: u8,
    },
    Control {
        id: u64,
        packet: ControlPacket,
        data: Vec<u8>,
    },
    /// A data packet for an endpoint the device does not have (bulk, interrupt OUT, iso OUT):
    /// answered with a stall.
    Unsupported {
        id: u64,
        ty: u32,
        endpoint: u8,
    },
    FilterReject,
    DisconnectAck,
    /// Skipped: a message the device side need not act on (or a bad one the protocol lets
    /// us skip), with why.
    Skipped(String),
}

/// The read half: parses messages from the socket and hands them over in order. Ends with
/// `Err(reason)` on a message the protocol cannot skip or a client that stalls (no hello,
/// or half a message, for [`STALL_LIMIT`]), or `Err("closed")` at end of stream. The
/// socket must have a read timeout (it wakes the deadline checks).
fn reader(mut sock: TcpStream, tx: Sender<Result<Incoming, String>>) {
    let mut link = Link::new(Caps::DEVICE);
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    let connected = Instant::now();
    let mut hello_seen = false;
    // When the incomplete message at the start of `buf` began to arrive.
    let mut partial_since: Option<Instant> = None;
    loop {
        // Take every whole message in the buffer.
        let mut at = 0;
        let end = loop {
            match wire::parse(&buf[at..], &link) {
                Ok(Parsed::Incomplete { .. }) => break None,
                Ok(Parsed::Message(frame)) => {
                    let ty = wire::Header::parse(&buf[at..], &link).map_or(0, |h| h.ty);
                    at += frame.consumed;
                    let msg = match incoming(frame.id, frame.message) {
                        // Only the first hello sets the link (the id width); the
                        // connection's own loop ignores a second one too.
                        Incoming::Hello { caps, version } if !hello_seen => {
                            hello_seen = true;
                            link = link.with_peer(caps);
                            Incoming::Hello { caps, version }
                        }
                        msg @ Incoming::Hello { .. } => msg,
                        _ if !hello_seen => {
                            Incoming::Skipped(format!("skipped a message of type {ty} sent before the hello"))
                        }
                        msg => msg,
                    };
                    if tx.send(Ok(msg)).is_err() {
                        return;
                    }
                }
                Err(e) if e.resyncable() => {
                    let Some(h) = wire::Header::parse(&buf[at..], &link) else { break None };
                    let skip = h.frame_len(&link) as usize;
                    if buf.len() - at < skip {
                        break None; // skip once the whole message is here
                    }
                    at += skip;
                    if tx.send(Ok(Incoming::Skipped(format!("skipped a bad message: {e}")))).is_err() {
                        return;
                    }
                }
                Err(e) => break Some(format!("malformed message: {e}")),
            }
        };
        buf.drain(..at);
        if let Some(reason) = end {
            let _ = tx.send(Err(reason));
            return;
        }
        if buf.is_empty() {
            partial_since = None;
        } else if at > 0 || partial_since.is_none() {
            partial_since = Some(Instant::now());
        }
        match sock.read(&mut chunk) {
            Ok(0) => {
                let _ = tx.send(Err("closed".into()));
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                let stalled = if partial_since.is_some_and(|t| t.elapsed() >= STALL_LIMIT) {
                    Some(format!(
                        "{} bytes of a message, then nothing for {STALL_LIMIT:?}: the client stalled",
                        buf.len()
                    ))
                } else if !hello_seen && connected.elapsed() >= STALL_LIMIT {
                    Some(format!("no hello within {STALL_LIMIT:?} of connecting"))
                } else {
                    None
                };
                if let Some(reason) = stalled {
                    let _ = tx.send(Err(reason));
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(format!("read failed: {e}")));
                return;
            }
        }
    }
}

fn incoming(id: u64, m: Message<'_>) -> Incoming {
    match m {
        Message::Hello { version, caps } => {
            Incoming::Hello { caps, version: String::from_utf8_lossy(version).into_owned() }
        }
        Message::Reset => Incoming::Reset,
        Message::SetConfiguration { configuration } => Incoming::SetConfiguration { id, configuration },
        Message::GetConfiguration => Incoming::GetConfiguration { id },
        Message::SetAltSetting { interface, alt } => Incoming::SetAltSetting { id, interface, alt },
        Message::GetAltSetting { interface } => Incoming::GetAltSetting { id, interface },
        Message::StartIsoStream(s) => Incoming::StartIsoStream { id, endpoint: s.endpoint },
        Message::StopIsoStream { endpoint } => Incoming::StopIsoStream { id, endpoint },
        Message::StartInterruptReceiving { endpoint } => Incoming::StartInterruptReceiving { id, endpoint },
        Message::StopInterruptReceiving { endpoint } => Incoming::StopInterruptReceiving { id, endpoint },
        Message::ControlPacket { packet, data } => Incoming::Control { id, packet, data: data.to_vec() },
        Message::BulkPacket { packet, .. } => {
            Incoming::Unsupported { id, ty: wire::TYPE_BULK_PACKET, endpoint: packet.endpoint }
        }
        Message::IsoPacket { packet, .. } => {
            Incoming::Unsupported { id, ty: wire::TYPE_ISO_PACKET, endpoint: packet.endpoint }
        }
        Message::InterruptPacket { packet, .. } => {
            Incoming::Unsupported { id, ty: wire::TYPE_INTERRUPT_PACKET, endpoint: packet.endpoint }
        }
        Message::FilterReject => Incoming::FilterReject,
        Message::DeviceDisconnectAck => Incoming::DisconnectAck,
        Message::CancelDataPacket => Incoming::Skipped(format!("cancel of packet {id}: already answered")),
        Message::FilterFilter { rules } => {
            Incoming::Skipped(format!("QEMU's device filter: {}", String::from_utf8_lossy(rules)))
        }
        other => Incoming::Skipped(format!("not used by this device: {other:?}")),
    }
}

/// Where the device is in its plug cycle on this connection.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plug {
    /// Waiting for QEMU's hello.
    Hello,
    /// device_connect sent; `since` is when streaming first started (for the unplug fault).
    Connected { streaming_since: Option<Instant> },
    /// device_disconnect sent at `at`.
    Disconnected { at: Instant, acked: bool },
}

/// The iso IN stream QEMU asked for.
struct IsoStream {
    endpoint: u8,
    /// When (micro)frame `sent` is due.
    t0: Instant,
    sent: u64,
    /// Packets sent (the iso_packet ids).
    id: u64,
}

/// One connection's state: the device, the link, what is plugged and streaming.
struct Connection<'a> {
    w: TcpStream,
    cfg: VirtualDeviceConfig,
    device: VirtualDevice,
    link: Link,
    plug: Plug,
    iso: Option<IsoStream>,
    /// Interrupt receiving on the status endpoint, with the next interrupt_packet id
    /// (`None`: QEMU has not started it, or stopped it).
    status: Option<u64>,
    replug: Replug,
    out: Vec<u8>,
    data: Vec<u8>,
    log: &'a dyn Fn(String),
    packet: Duration,
}

fn serve_connection(
    sock: TcpStream,
    cfg: VirtualDeviceConfig,
    replug: Replug,
    stop: &AtomicBool,
    log: &dyn Fn(String),
) -> Result<String, String> {
    sock.set_nodelay(true).ok();
    // Socket options, so they hold for both halves: the reader wakes to check its
    // deadlines; a client that does not read what we write is let go of.
    sock.set_read_timeout(Some(READ_POLL)).map_err(|e| format!("cannot set a read timeout: {e}"))?;
    sock.set_write_timeout(Some(STALL_LIMIT)).map_err(|e| format!("cannot set a write timeout: {e}"))?;
    let device = VirtualDevice::new(cfg.clone()).map_err(|e| e.to_string())?;
    let read_half = sock.try_clone().map_err(|e| e.to_string())?;
    let (tx, rx) = crossbeam_channel::bounded::<Result<Incoming, String>>(1024);
    std::thread::Builder::new()
        .name("isoscope-usbredir-rx".into())
        .spawn(move || reader(read_half, tx))
        .map_err(|e| e.to_string())?;
    let packet = Duration::from_micros(u64::from(device.packet_us()));
    let mut c = Connection {
        w: sock,
        cfg,
        device,
        link: Link::new(Caps::DEVICE),
        plug: Plug::Hello,
        iso: None,
        status: None,
        replug,
        out: Vec::with_capacity(64 << 10),
        data: Vec::with_capacity(64 << 10),
        log,
        packet,
    };
    wire::encode_hello(&mut c.out, VERSION, Caps::DEVICE);
    c.flush()?;
    let result = c.run(&rx, stop);
    let _ = c.w.shutdown(std::net::Shutdown::Both);
    result
}

impl Connection<'_> {
    fn flush(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.w.write_all(&self.out).map_err(|e| format!("write failed: {e}"));
        self.out.clear();
        r
    }

    fn run(&mut self, rx: &Receiver<Result<Incoming, String>>, stop: &AtomicBool) -> Result<String, String> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok("server stopping".into());
            }
            self.timed_faults()?;
            self.send_due_iso()?;
            self.send_status();
            self.flush()?;
            // Wake for the next millisecond of packets, or at least every 50 ms.
            let wait = if self.iso.is_some() { Duration::from_millis(1) } else { Duration::from_millis(50) };
            let msg = match rx.recv_timeout(wait) {
                Ok(Ok(m)) => m,
                Ok(Err(reason)) if reason == "closed" => return Ok("QEMU closed the connection".into()),
                Ok(Err(reason)) => return Err(reason),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok("QEMU closed the connection".into()),
            };
            self.handle(msg)?;
            // Take everything else that is waiting before pacing again.
            while let Ok(m) = rx.try_recv() {
                match m {
                    Ok(m) => self.handle(m)?,
                    Err(reason) if reason == "closed" => return Ok("QEMU closed the connection".into()),
                    Err(reason) => return Err(reason),
                }
            }
        }
    }

    /// The unplug and replug faults.
    fn timed_faults(&mut self) -> Result<(), String> {
        match self.plug {
            Plug::Connected { streaming_since: Some(t0) } => {
                if let Some(after) = self.replug.disconnect_after {
                    if t0.elapsed() >= after {
                        (self.log)(format!("unplugged after {after:?} of streaming (fault injection)"));
                        self.iso = None;
                        self.status = None;
                        wire::encode_device_disconnect(&mut self.out, &self.link);
                        self.plug = Plug::Disconnected { at: Instant::now(), acked: false };
                    }
                }
            }
            Plug::Disconnected { at, acked } => {
                let ack_ok = acked || !self.link.both(Cap::DeviceDisconnectAck);
                if let Some(after) = self.replug.reconnect_after {
                    if ack_ok && at.elapsed() >= after {
                        (self.log)(format!("plugged in again {after:?} after the unplug (fault injection)"));
                        self.device = VirtualDevice::new(self.cfg.clone()).map_err(|e| e.to_string())?;
                        self.connect();
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends ep_info, interface_info and device_connect (in the order QEMU needs: it refuses
    /// a device_connect without interface info). The device comes configured, as a host's
    /// kernel leaves a device it hands to usbredir.
    fn connect(&mut self) {
        let _ = self.device.set_configuration(1);
        self.status = None;
        self.send_interfaces();
        let d = self.device.device_descriptor();
        let connect = wire::DeviceConnect {
            speed: match self.device.speed() {
                Speed::Low => wire::Speed::Low,
                Speed::Full => wire::Speed::Full,
                Speed::High => wire::Speed::High,
                Speed::Super | Speed::SuperPlus => wire::Speed::Super,
            },
            device_class: d[4],
            device_subclass: d[5],
            device_protocol: d[6],
            vendor_id: VENDOR_ID,
            product_id: PRODUCT_ID,
            device_version_bcd: u16::from_le_bytes([d[12], d[13]]),
        };
        wire::encode_device_connect(&mut self.out, &self.link, &connect);
        self.plug = Plug::Connected { streaming_since: None };
    }

    /// ep_info and interface_info for the current configuration and alt settings, from the
    /// device's own descriptors.
    fn send_interfaces(&mut self) {
        let (ep_info, interfaces) = endpoint_table(&self.device);
        wire::encode_ep_info(&mut self.out, &self.link, &ep_info);
        wire::encode_interface_info(&mut self.out, &self.link, &interfaces);
    }

    fn handle(&mut self, msg: Incoming) -> Result<(), String> {
        let connected = matches!(self.plug, Plug::Connected { .. });
        match msg {
            Incoming::Hello { caps, version } => {
                if self.plug != Plug::Hello {
                    (self.log)("a second hello, ignored".into());
                    return Ok(());
                }
                self.link = self.link.with_peer(caps);
                (self.log)(format!("hello from '{version}' (caps {:#x}); plugging the device in", caps.0));
                self.connect();
            }
            Incoming::Reset => {
                // A bus reset: the stream stops, the configuration stays (as libusb's reset).
                self.iso = None;
                let _ = self.device.set_interface(crate::sim::device::AS_INTERFACE, 0);
            }
            Incoming::SetConfiguration { id, configuration } => {
                let r = if connected { self.device.set_configuration(configuration) } else { Err(STALL) };
                self.iso = None;
                self.status = None;
                if r.is_ok() {
                    self.send_interfaces();
                }
                let status = status_of(r);
                wire::encode_configuration_status(
                    &mut self.out,
                    &self.link,
                    id,
                    status,
                    self.device.configuration(),
                );
            }
            Incoming::GetConfiguration { id } => {
                let status = if connected { Status::SUCCESS } else { Status::IOERROR };
                wire::encode_configuration_status(
                    &mut self.out,
                    &self.link,
                    id,
                    status,
                    self.device.configuration(),
                );
            }
            Incoming::SetAltSetting { id, interface, alt } => {
                let r = if connected { self.device.set_interface(interface, alt) } else { Err(STALL) };
                if r.is_ok() {
                    self.note_streaming();
                    self.send_interfaces();
                }
                let status = status_of(r);
                let now = self.device.alt_setting(interface);
                wire::encode_alt_setting_status(&mut self.out, &self.link, id, status, interface, now);
            }
            Incoming::GetAltSetting { id, interface } => {
                let alt = self.device.alt_setting(interface);
                wire::encode_alt_setting_status(
                    &mut self.out,
                    &self.link,
                    id,
                    Status::SUCCESS,
                    interface,
                    alt,
                );
            }
            Incoming::StartIsoStream { id, endpoint } => {
                let (ep_info, _) = endpoint_table(&self.device);
                let ok = connected && ep_info.get(endpoint).kind == EpType::Iso && endpoint & 0x80 != 0;
                if ok {
                    self.iso = Some(IsoStream { endpoint, t0: Instant::now(), sent: 0, id: 0 });
                }
                let status = if ok { Status::SUCCESS } else { Status::STALL };
                wire::encode_iso_stream_status(&mut self.out, &self.link, id, status, endpoint);
            }
            Incoming::StopIsoStream { id, endpoint } => {
                if self.iso.as_ref().is_some_and(|s| s.endpoint == endpoint) {
                    self.iso = None;
                }
                wire::encode_iso_stream_status(&mut self.out, &self.link, id, Status::SUCCESS, endpoint);
            }
            Incoming::StartInterruptReceiving { id, endpoint } => {
                // The status endpoint exists while the device is configured; QEMU starts
                // receiving on the guest's first poll of it.
                let (ep_info, _) = endpoint_table(&self.device);
                let ok = connected
                    && endpoint == STATUS_ENDPOINT
                    && ep_info.get(endpoint).kind == EpType::Interrupt;
                if ok && self.status.is_none() {
                    self.status = Some(0);
                }
                let status = if ok { Status::SUCCESS } else { Status::STALL };
                wire::encode_interrupt_receiving_status(&mut self.out, &self.link, id, status, endpoint);
            }
            Incoming::StopInterruptReceiving { id, endpoint } => {
                let status = if endpoint == STATUS_ENDPOINT {
                    self.status = None;
                    Status::SUCCESS
                } else {
                    Status::STALL
                };
                wire::encode_interrupt_receiving_status(&mut self.out, &self.link, id, status, endpoint);
            }
            Incoming::Control { id, mut packet, data } => {
                let setup = setup_bytes(&packet);
                let result = if connected { self.device.control(setup, &data) } else { Err(-libc::ENODEV) };
                let reply = match result {
                    Ok(v) => {
                        packet.status = Status::SUCCESS;
                        if packet.endpoint & 0x80 == 0 {
                            packet.length = data.len() as u16;
                        }
                        v
                    }
                    Err(errno) => {
                        packet.status = Status::from_errno(errno);
                        packet.length = 0;
                        Vec::new()
                    }
                };
                self.note_streaming();
                wire::encode_control_packet(&mut self.out, &self.link, id, &packet, &reply);
            }
            Incoming::Unsupported { id, ty, endpoint } => {
                let header = [endpoint, Status::STALL.0, 0, 0];
                if ty == wire::TYPE_BULK_PACKET {
                    let p = wire::BulkPacket { endpoint, status: Status::STALL, length: 0, stream_id: 0 };
                    wire::encode_bulk_packet(&mut self.out, &self.link, id, &p, &[]);
                } else {
                    wire::encode_message(&mut self.out, &self.link, ty, id, &header, &[]);
                }
            }
            Incoming::FilterReject => {
                return Err("QEMU refused the device (filter_reject): see QEMU's output for why".into())
            }
            Incoming::DisconnectAck => {
                if let Plug::Disconnected { at, .. } = self.plug {
                    self.plug = Plug::Disconnected { at, acked: true };
                }
            }
            Incoming::Skipped(why) => (self.log)(why),
        }
        Ok(())
    }

    /// Starts the unplug fault's clock when the device first streams.
    fn note_streaming(&mut self) {
        if let Plug::Connected { streaming_since: None } = self.plug {
            if self.device.streaming() {
                self.plug = Plug::Connected { streaming_since: Some(Instant::now()) };
            }
        }
    }

    /// Sends the device's waiting status messages while QEMU receives on the status
    /// endpoint (QEMU buffers them for the guest's polls; one message per transfer).
    fn send_status(&mut self) {
        let Some(id) = &mut self.status else { return };
        while let Some(m) = self.device.take_status() {
            wire::encode_interrupt_packet(
                &mut self.out,
                &self.link,
                *id,
                STATUS_ENDPOINT,
                Status::SUCCESS,
                m.as_bytes(),
            );
            *id += 1;
        }
    }

    /// Sends every iso packet whose (micro)frame has passed. QEMU has no flow control, so
    /// packets follow the wall clock: one per interval since the stream started.
    fn send_due_iso(&mut self) -> Result<(), String> {
        let Some(s) = &mut self.iso else { return Ok(()) };
        let due = (s.t0.elapsed().as_nanos() / self.packet.as_nanos().max(1)) as u64;
        // After a stall of the server (a busy host) send at most 10 ms of packets at once and
        // let the rest of the stall pass as time, not data: a burst on top of QEMU's 60 ms
        // buffer overflows it, and QEMU then drops packets silently. The stream's data stays
        // unbroken; only its timing slips, as a device whose clock stalled.
        let burst = (10_000 / self.packet.as_micros().max(1)).max(1) as u64;
        if due > s.sent + burst {
            s.sent = due - burst;
        }
        let limit = u32::from(self.device.iso_max_packet());
        while s.sent < due {
            self.data.clear();
            let p = self.device.next_iso_packet(limit, &mut self.data);
            let (status, data): (Status, &[u8]) = match p.errno {
                0 => (Status::SUCCESS, &self.data),
                // A packet longer than the guest asked for: QEMU reports it as babble
                // (-EOVERFLOW in the guest). Send one, of stale bytes, past the limit.
                libc::EOVERFLOW => {
                    self.data.resize(limit as usize + 4, 0xA5);
                    (Status::SUCCESS, &self.data)
                }
                errno => (Status::from_errno(errno), &[]),
            };
            wire::encode_iso_packet(&mut self.out, &self.link, s.id, s.endpoint, status, data);
            s.sent += 1;
            s.id += 1;
        }
        Ok(())
    }
}

/// A USB request that the device refuses.
const STALL: i32 = -libc::EPIPE;

fn status_of(r: Result<(), i32>) -> Status {
    match r {
        Ok(()) => Status::SUCCESS,
        Err(errno) => Status::from_errno(errno),
    }
}

/// The 8 setup bytes of a control request.
fn setup_bytes(p: &ControlPacket) -> [u8; 8] {
    let [v0, v1] = p.value.to_le_bytes();
    let [i0, i1] = p.index.to_le_bytes();
    let [l0, l1] = p.length.to_le_bytes();
    [p.requesttype, p.request, v0, v1, i0, i1, l0, l1]
}

/// The endpoints and interfaces of the device's current configuration and alt settings,
/// read from its configuration descriptor.
fn endpoint_table(device: &VirtualDevice) -> (EpInfo, wire::InterfaceInfo) {
    let mut ep_info = EpInfo::default();
    let mut interfaces = wire::InterfaceInfo::default();
    if device.configuration() == 0 {
        return (ep_info, interfaces);
    }
    let full = [device.device_descriptor(), device.config_descriptor()].concat();
    let Ok(parsed) = descriptors::parse(&full) else { return (ep_info, interfaces) };
    let Some(config) = parsed.configs.first() else { return (ep_info, interfaces) };
    for alt in config.interfaces.iter().filter(|a| a.alt == device.alt_setting(a.number)) {
        interfaces.interfaces.push(wire::Interface {
            number: alt.number,
            class: alt.class,
            subclass: alt.subclass,
            protocol: alt.protocol,
        });
        for e in &alt.endpoints {
            let kind = match e.transfer_type() {
                TransferType::Control => EpType::Control,
                TransferType::Isochronous => EpType::Iso,
                TransferType::Bulk => EpType::Bulk,
                TransferType::Interrupt => EpType::Interrupt,
            };
            let max_packet_size = e.bytes_per_interval(device.speed()).min(u32::from(u16::MAX)) as u16;
            ep_info.set(
                e.address,
                wire::Endpoint {
                    kind,
                    interval: e.interval,
                    interface: alt.number,
                    max_packet_size,
                    max_streams: 0,
                },
            );
        }
    }
    (ep_info, interfaces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Faults, UacVersion};

    /// The usb-guest side of a test: QEMU's part of the conversation.
    struct Guest {
        s: TcpStream,
        link: Link,
        buf: Vec<u8>,
    }

    /// A received message, owned.
    #[derive(Debug, Clone, PartialEq)]
    struct Got {
        ty: u32,
        id: u64,
        body: Vec<u8>,
    }

    impl Guest {
        /// Connects and reads the device's hello, sending none yet.
        fn open(addr: SocketAddr) -> Guest {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut g = Guest { s, link: Link::new(Caps::DEVICE), buf: Vec::new() };
            let h = g.next();
            assert_eq!(h.ty, wire::TYPE_HELLO);
            assert!(h.body.starts_with(b"isoscope "));
            g
        }

        fn hello(&mut self) {
            let mut hello = Vec::new();
            wire::encode_hello(&mut hello, "qemu usb-redir guest 7.2.0", Caps::DEVICE);
            self.s.write_all(&hello).unwrap();
            self.link = self.link.with_peer(Caps::DEVICE);
        }

        fn connect(addr: SocketAddr) -> Guest {
            let mut g = Guest::open(addr);
            g.hello();
            g
        }

        /// Waits for the device to hang up (end of stream or a reset), at most `within`.
        fn hung_up_within(&mut self, within: Duration) {
            let t0 = Instant::now();
            self.s.set_read_timeout(Some(within)).unwrap();
            let mut b = [0u8; 4096];
            loop {
                match self.s.read(&mut b) {
                    Ok(0) => break,
                    Ok(_) => assert!(t0.elapsed() < within, "still talking after {within:?}"),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                    Err(e) => panic!("no hang-up within {within:?}: {e}"),
                }
            }
            assert!(t0.elapsed() < within, "hung up only after {:?}", t0.elapsed());
        }

        /// The next message from the device (the test parses headers itself, as QEMU does).
        fn next(&mut self) -> Got {
            let hl = self.link.header_len();
            loop {
                if self.buf.len() >= hl {
                    let ty = u32::from_le_bytes(self.buf[0..4].try_into().unwrap());
                    let len = u32::from_le_bytes(self.buf[4..8].try_into().unwrap()) as usize;
                    let id = if hl == 16 {
                        u64::from_le_bytes(self.buf[8..16].try_into().unwrap())
                    } else {
                        u64::from(u32::from_le_bytes(self.buf[8..12].try_into().unwrap()))
                    };
                    if self.buf.len() >= hl + len {
                        let body = self.buf[hl..hl + len].to_vec();
                        self.buf.drain(..hl + len);
                        return Got { ty, id, body };
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = self.s.read(&mut chunk).expect("the device answers within 5 s");
                assert!(n > 0, "the device closed the connection");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }

        /// Messages up to and including the first of type `ty`.
        fn until(&mut self, ty: u32) -> Vec<Got> {
            let mut v = Vec::new();
            loop {
                let g = self.next();
                let done = g.ty == ty;
                v.push(g);
                if done {
                    return v;
                }
            }
        }

        fn send(&mut self, ty: u32, id: u64, header: &[u8], data: &[u8]) {
            let mut out = Vec::new();
            wire::encode_message(&mut out, &self.link, ty, id, header, data);
            self.s.write_all(&out).unwrap();
        }

        fn control_in(
            &mut self,
            id: u64,
            requesttype: u8,
            request: u8,
            value: u16,
            index: u16,
            len: u16,
        ) -> Got {
            let mut h = vec![0x80, request, requesttype, 0];
            h.extend_from_slice(&value.to_le_bytes());
            h.extend_from_slice(&index.to_le_bytes());
            h.extend_from_slice(&len.to_le_bytes());
            self.send(wire::TYPE_CONTROL_PACKET, id, &h, &[]);
            let got = self.until(wire::TYPE_CONTROL_PACKET).pop().unwrap();
            assert_eq!(got.id, id);
            got
        }
    }

    fn start(cfg: VirtualDeviceConfig, replug: Replug) -> (SocketAddr, Arc<AtomicBool>) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("test-usbredir-server".into())
            .spawn(move || serve(listener, cfg, replug, s, |_| {}).unwrap())
            .unwrap();
        (addr, stop)
    }

    #[test]
    fn connect_sends_ep_info_and_interfaces_before_device_connect() {
        let (addr, stop) = start(VirtualDeviceConfig::default(), Replug::default());
        let mut g = Guest::connect(addr);
        let first = g.until(wire::TYPE_DEVICE_CONNECT);
        let types: Vec<u32> = first.iter().map(|m| m.ty).collect();
        assert_eq!(types, [wire::TYPE_EP_INFO, wire::TYPE_INTERFACE_INFO, wire::TYPE_DEVICE_CONNECT]);
        // ep_info with max_packet_size (160 bytes): at alt 0 only endpoint 0.
        let ep = &first[0].body;
        assert_eq!(ep.len(), 160);
        assert_eq!((ep[0], ep[16], ep[EpInfo::index(0x81)]), (0, 0, EpType::Invalid as u8));
        // Two interfaces: audio control and audio streaming, UAC2 (protocol 0x20).
        let ifs = &first[1].body;
        assert_eq!(u32::from_le_bytes(ifs[0..4].try_into().unwrap()), 2);
        assert_eq!((ifs[4], ifs[5], ifs[36], ifs[37], ifs[68], ifs[69], ifs[100]), (0, 1, 1, 1, 1, 2, 0x20));
        // High speed, pid.codes test VID:PID, bcdDevice.
        let dc = &first[2].body;
        assert_eq!(dc[0], wire::Speed::High as u8);
        assert_eq!(u16::from_le_bytes([dc[4], dc[5]]), VENDOR_ID);
        assert_eq!(u16::from_le_bytes([dc[6], dc[7]]), PRODUCT_ID);
        assert_eq!(dc.len(), 10, "with connect_device_version");
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn control_requests_configuration_and_alt_settings() {
        let (addr, stop) = start(VirtualDeviceConfig::default(), Replug::default());
        let mut g = Guest::connect(addr);
        g.until(wire::TYPE_DEVICE_CONNECT);
        let dev = g.control_in(7, 0x80, 6, 0x0100, 0, 18);
        assert_eq!(dev.body[3], Status::SUCCESS.0);
        assert_eq!(u16::from_le_bytes([dev.body[8], dev.body[9]]), 18);
        assert_eq!(&dev.body[10..12], &[18, 1]);
        // A request the device refuses: a stall, no data.
        let bos = g.control_in(8, 0x80, 6, 0x0f00, 0, 5);
        assert_eq!((bos.body[3], bos.body.len()), (Status::STALL.0, 10));
        // set_configuration: ep_info and interface_info again, then the status with the id.
        g.send(wire::TYPE_SET_CONFIGURATION, 9, &[1], &[]);
        let v = g.until(wire::TYPE_CONFIGURATION_STATUS);
        let types: Vec<u32> = v.iter().map(|m| m.ty).collect();
        assert_eq!(types, [wire::TYPE_EP_INFO, wire::TYPE_INTERFACE_INFO, wire::TYPE_CONFIGURATION_STATUS]);
        assert_eq!((v[2].id, v[2].body.clone()), (9, vec![Status::SUCCESS.0, 1]));
        // set_alt_setting 1 on the streaming interface: the iso endpoint appears in ep_info
        // with its bytes per microframe (13 frames x 4 bytes at 96 kHz stereo S16).
        g.send(wire::TYPE_SET_ALT_SETTING, 10, &[1, 1], &[]);
        let v = g.until(wire::TYPE_ALT_SETTING_STATUS);
        let ep = &v[0].body;
        let i = EpInfo::index(0x81);
        assert_eq!((ep[i], ep[32 + i], ep[64 + i]), (EpType::Iso as u8, 1, 1));
        assert_eq!(u16::from_le_bytes([ep[96 + 2 * i], ep[97 + 2 * i]]), 52);
        assert_eq!((v[2].id, v[2].body.clone()), (10, vec![Status::SUCCESS.0, 1, 1]));
        g.send(wire::TYPE_SET_ALT_SETTING, 11, &[1, 9], &[]);
        let v = g.until(wire::TYPE_ALT_SETTING_STATUS);
        assert_eq!(v.last().unwrap().body, vec![Status::STALL.0, 1, 1]);
        g.send(wire::TYPE_GET_ALT_SETTING, 12, &[1], &[]);
        assert_eq!(g.until(wire::TYPE_ALT_SETTING_STATUS).pop().unwrap().body, vec![0, 1, 1]);
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn the_status_endpoint_reports_a_clock_change_while_receiving() {
        let (addr, stop) = start(VirtualDeviceConfig::default(), Replug::default());
        let mut g = Guest::connect(addr);
        let first = g.until(wire::TYPE_DEVICE_CONNECT);
        // ep_info: the status endpoint is interrupt IN, bInterval 8, 6 bytes, interface 0.
        let (ep, i) = (&first[0].body, EpInfo::index(STATUS_ENDPOINT));
        assert_eq!((ep[i], ep[32 + i], ep[64 + i]), (EpType::Interrupt as u8, 8, 0));
        assert_eq!(u16::from_le_bytes([ep[96 + 2 * i], ep[97 + 2 * i]]), 6);
        // Receiving on an endpoint the device does not have is refused.
        g.send(wire::TYPE_START_INTERRUPT_RECEIVING, 0, &[0x83], &[]);
        let st = g.until(wire::TYPE_INTERRUPT_RECEIVING_STATUS).pop().unwrap();
        assert_eq!(st.body, vec![Status::STALL.0, 0x83]);
        g.send(wire::TYPE_START_INTERRUPT_RECEIVING, 0, &[STATUS_ENDPOINT], &[]);
        let st = g.until(wire::TYPE_INTERRUPT_RECEIVING_STATUS).pop().unwrap();
        assert_eq!(st.body, vec![Status::SUCCESS.0, STATUS_ENDPOINT]);
        // SET_CUR 96 kHz on the clock (interface 0, entity 0x10): the control completes,
        // then the sample-frequency and validity messages arrive as interrupt packets.
        let mut h = vec![0x00, 0x01, 0x21, 0];
        for v in [0x0100u16, 0x1000, 4] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        g.send(wire::TYPE_CONTROL_PACKET, 5, &h, &96_000u32.to_le_bytes());
        let v = g.until(wire::TYPE_CONTROL_PACKET);
        assert_eq!(v.last().unwrap().body[3], Status::SUCCESS.0);
        let a = g.until(wire::TYPE_INTERRUPT_PACKET).pop().unwrap();
        let b = g.until(wire::TYPE_INTERRUPT_PACKET).pop().unwrap();
        assert_eq!((a.id, &a.body[..4]), (0, &[STATUS_ENDPOINT, Status::SUCCESS.0, 6, 0][..]));
        assert_eq!(&a.body[4..], &[0x00, 0x01, 0x00, 0x01, 0x00, 0x10]);
        assert_eq!((b.id, &b.body[4..]), (1, &[0x00, 0x01, 0x00, 0x02, 0x00, 0x10][..]));
        // After stop, a change waits in the device instead of going out.
        g.send(wire::TYPE_STOP_INTERRUPT_RECEIVING, 6, &[STATUS_ENDPOINT], &[]);
        let st = g.until(wire::TYPE_INTERRUPT_RECEIVING_STATUS).pop().unwrap();
        assert_eq!((st.id, st.body), (6, vec![Status::SUCCESS.0, STATUS_ENDPOINT]));
        g.send(wire::TYPE_CONTROL_PACKET, 7, &h, &48_000u32.to_le_bytes());
        let v = g.until(wire::TYPE_CONTROL_PACKET);
        assert!(v.iter().all(|m| m.ty != wire::TYPE_INTERRUPT_PACKET));
        g.send(wire::TYPE_GET_CONFIGURATION, 8, &[], &[]);
        let v = g.until(wire::TYPE_CONFIGURATION_STATUS);
        assert!(v.iter().all(|m| m.ty != wire::TYPE_INTERRUPT_PACKET), "{v:?}");
        // Receiving again delivers what waited.
        g.send(wire::TYPE_START_INTERRUPT_RECEIVING, 0, &[STATUS_ENDPOINT], &[]);
        g.until(wire::TYPE_INTERRUPT_RECEIVING_STATUS);
        let c = g.until(wire::TYPE_INTERRUPT_PACKET).pop().unwrap();
        assert_eq!(&c.body[4..], &[0x00, 0x01, 0x00, 0x01, 0x00, 0x10]);
        stop.store(true, Ordering::Relaxed);
    }

    /// Starts alt 1 and the iso stream; returns the stream's packets for `ms` of wall time.
    fn stream(g: &mut Guest, ms: u64) -> Vec<Got> {
        g.until(wire::TYPE_DEVICE_CONNECT);
        g.send(wire::TYPE_SET_ALT_SETTING, 1, &[1, 1], &[]);
        g.until(wire::TYPE_ALT_SETTING_STATUS);
        g.send(wire::TYPE_START_ISO_STREAM, 2, &[0x81, 8, 4], &[]);
        let st = g.until(wire::TYPE_ISO_STREAM_STATUS).pop().unwrap();
        assert_eq!((st.id, st.body.clone()), (2, vec![Status::SUCCESS.0, 0x81]));
        let t0 = Instant::now();
        let mut v = Vec::new();
        while t0.elapsed() < Duration::from_millis(ms) {
            let m = g.next();
            if m.ty == wire::TYPE_ISO_PACKET {
                v.push(m);
            }
        }
        v
    }

    #[test]
    fn iso_packets_follow_the_wall_clock_and_verify_against_the_twin() {
        let cfg = VirtualDeviceConfig {
            faults: Faults { short_ratio: 0.3, error_ratio: 0.05, disconnect_after_s: None },
            ..VirtualDeviceConfig::default()
        };
        let (addr, stop) = start(cfg.clone(), Replug::default());
        let mut g = Guest::connect(addr);
        let packets = stream(&mut g, 400);
        // 400 ms of 125 us microframes: at most about 3200 packets (never ahead of the
        // clock), fewer only when this machine stalls the server (time slips, data does not).
        assert!((400..=3300).contains(&packets.len()), "{} packets in 400 ms", packets.len());
        let mut v = cfg.stream_twin(crate::dsp::SampleFormat::S16Le, 48_000).unwrap().verifier();
        let (mut failed, mut babble) = (0, 0);
        for (n, p) in packets.iter().enumerate() {
            assert_eq!(p.id, n as u64, "ids count the stream's packets");
            assert_eq!(p.body[0], 0x81);
            let len = usize::from(u16::from_le_bytes([p.body[2], p.body[3]]));
            assert_eq!(len, p.body.len() - 4);
            match (Status(p.body[1]), len) {
                (Status::SUCCESS, l) if l > 52 => babble += 1, // oversize: the guest sees -EOVERFLOW
                (Status::SUCCESS, _) => v.feed(&p.body[4..]),
                _ => failed += 1,
            }
        }
        assert!(failed > 0 && babble > 0, "failed {failed}, babble {babble}");
        assert_eq!(v.mismatched(), 0);
        assert!(v.verified() > 10_000, "{}", v.verified());
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn unplug_after_streaming_and_replug_on_the_same_connection() {
        let replug = Replug {
            disconnect_after: Some(Duration::from_millis(150)),
            reconnect_after: Some(Duration::from_millis(100)),
        };
        let (addr, stop) = start(VirtualDeviceConfig { uac: UacVersion::V1, ..Default::default() }, replug);
        let mut g = Guest::connect(addr);
        g.until(wire::TYPE_DEVICE_CONNECT);
        g.send(wire::TYPE_SET_ALT_SETTING, 1, &[1, 1], &[]);
        g.until(wire::TYPE_ALT_SETTING_STATUS);
        g.send(wire::TYPE_START_ISO_STREAM, 2, &[0x81, 8, 4], &[]);
        let t0 = Instant::now();
        let before = g.until(wire::TYPE_DEVICE_DISCONNECT);
        assert!(t0.elapsed() >= Duration::from_millis(140), "{:?}", t0.elapsed());
        assert!(before.iter().filter(|m| m.ty == wire::TYPE_ISO_PACKET).count() > 100);
        // With device_disconnect_ack negotiated, the replug waits for the ack.
        std::thread::sleep(Duration::from_millis(300));
        g.send(wire::TYPE_DEVICE_DISCONNECT_ACK, 0, &[], &[]);
        let again = g.until(wire::TYPE_DEVICE_CONNECT);
        assert!(again.iter().all(|m| m.ty != wire::TYPE_ISO_PACKET), "no packets of the old stream");
        assert_eq!(again.last().unwrap().body[0], wire::Speed::Full as u8, "UAC1 at full speed");
        stop.store(true, Ordering::Relaxed);
    }

    /// The next connection is served: the device plugs in and answers.
    fn next_connection_is_served(addr: SocketAddr) {
        let mut g = Guest::connect(addr);
        g.until(wire::TYPE_DEVICE_CONNECT);
        g.send(wire::TYPE_GET_CONFIGURATION, 99, &[], &[]);
        let st = g.until(wire::TYPE_CONFIGURATION_STATUS).pop().unwrap();
        assert_eq!((st.id, st.body), (99, vec![Status::SUCCESS.0, 1]));
    }

    /// Runs `talk` on a plugged-in connection to a fresh server, then checks that the next
    /// connection is served.
    fn on_a_connection_then_the_next(talk: impl FnOnce(&mut Guest)) {
        let (addr, stop) = start(VirtualDeviceConfig::default(), Replug::default());
        let mut g = Guest::connect(addr);
        g.until(wire::TYPE_DEVICE_CONNECT);
        talk(&mut g);
        drop(g);
        next_connection_is_served(addr);
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn data_before_hello_and_a_second_hello_are_skipped() {
        let (addr, stop) = start(VirtualDeviceConfig::default(), Replug::default());
        let mut g = Guest::open(addr);
        // Before the hello (32-bit ids): a request and a control packet, neither answered.
        g.send(wire::TYPE_GET_CONFIGURATION, 3, &[], &[]);
        g.send(wire::TYPE_CONTROL_PACKET, 4, &[0x80, 6, 0x80, 0, 0, 1, 0, 0, 18, 0], &[]);
        g.hello();
        let types: Vec<u32> = g.until(wire::TYPE_DEVICE_CONNECT).iter().map(|m| m.ty).collect();
        assert_eq!(types, [wire::TYPE_EP_INFO, wire::TYPE_INTERFACE_INFO, wire::TYPE_DEVICE_CONNECT]);
        // A second hello offering no capabilities changes nothing: ids stay 64-bit.
        let mut version = [0u8; 64];
        version[..5].copy_from_slice(b"evil\0");
        g.send(wire::TYPE_HELLO, 0, &version, &0u32.to_le_bytes());
        g.send(wire::TYPE_GET_CONFIGURATION, 1 << 40, &[], &[]);
        let v = g.until(wire::TYPE_CONFIGURATION_STATUS);
        assert_eq!(v.len(), 1, "nothing answers the pre-hello messages or the second hello: {v:?}");
        assert_eq!((v[0].id, v[0].body.clone()), (1 << 40, vec![Status::SUCCESS.0, 1]));
        drop(g);
        next_connection_is_served(addr);
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn control_packets_whose_length_disagrees_with_their_data_are_skipped() {
        on_a_connection_then_the_next(|g| {
            // OUT (SET_CUR of the clock) declaring 4 bytes, carrying 2; IN carrying data.
            g.send(wire::TYPE_CONTROL_PACKET, 5, &[0x00, 1, 0x21, 0, 0, 1, 0, 0x29, 4, 0], &[0x80, 0xbb]);
            g.send(wire::TYPE_CONTROL_PACKET, 6, &[0x80, 6, 0x80, 0, 0, 1, 0, 0, 18, 0], &[1, 2, 3]);
            // An OUT declaring 64 KiB - 1 with none of it.
            g.send(wire::TYPE_CONTROL_PACKET, 7, &[0x00, 1, 0x21, 0, 0, 1, 0, 0x29, 0xff, 0xff], &[]);
            let dev = g.control_in(8, 0x80, 6, 0x0100, 0, 18);
            assert_eq!((dev.body[3], dev.body.len()), (Status::SUCCESS.0, 10 + 18), "only id 8 is answered");
        });
    }

    #[test]
    fn iso_start_on_an_endpoint_that_does_not_exist_stalls() {
        on_a_connection_then_the_next(|g| {
            // 0x81 exists only at alt 1; 0x85 never; 0x01 is OUT; 0x8f is the last IN index.
            for (id, ep) in [(1u64, 0x81u8), (2, 0x85), (3, 0x01), (4, 0x8f), (5, 0xff)] {
                g.send(wire::TYPE_START_ISO_STREAM, id, &[ep, 8, 4], &[]);
                let st = g.until(wire::TYPE_ISO_STREAM_STATUS).pop().unwrap();
                assert_eq!((st.id, st.body), (id, vec![Status::STALL.0, ep]));
            }
            // Nothing streams: the next message is the answer to this request.
            g.send(wire::TYPE_GET_CONFIGURATION, 6, &[], &[]);
            assert_eq!(g.next().ty, wire::TYPE_CONFIGURATION_STATUS);
        });
    }

    #[test]
    fn a_thousand_messages_in_one_write_are_all_answered_in_order() {
        on_a_connection_then_the_next(|g| {
            let mut out = Vec::new();
            for id in 0..1000u64 {
                wire::encode_message(&mut out, &g.link, wire::TYPE_GET_ALT_SETTING, id, &[1], &[]);
            }
            g.s.write_all(&out).unwrap();
            for id in 0..1000u64 {
                let m = g.next();
                assert_eq!((m.ty, m.id, m.body), (wire::TYPE_ALT_SETTING_STATUS, id, vec![0, 1, 0]));
            }
        });
    }

    /// One client at a time: a client that stalls must not hold the server. No hello, half a
    /// header, and a message cut short each end that connection after [`STALL_LIMIT`].
    #[test]
    fn a_client_that_stalls_is_let_go_of_and_the_next_is_served() {
        let (addr, stop) = start(VirtualDeviceConfig::default(), Replug::default());
        let within = STALL_LIMIT + Duration::from_secs(2);
        let mut silent = Guest::open(addr);
        silent.hung_up_within(within);
        next_connection_is_served(addr);
        let mut half = Guest::connect(addr);
        half.until(wire::TYPE_DEVICE_CONNECT);
        half.s.write_all(&[100, 0, 0, 0, 10]).unwrap();
        half.hung_up_within(within);
        next_connection_is_served(addr);
        let mut cut = Guest::connect(addr);
        cut.until(wire::TYPE_DEVICE_CONNECT);
        let mut m = Vec::new();
        wire::encode_message(
            &mut m,
            &cut.link,
            wire::TYPE_CONTROL_PACKET,
            1,
            &[0, 1, 0x21, 0, 0, 1, 0, 0x29, 4, 0],
            &[1, 2, 3, 4],
        );
        cut.s.write_all(&m[..m.len() - 2]).unwrap();
        cut.hung_up_within(within);
        next_connection_is_served(addr);
        stop.store(true, Ordering::Relaxed);
    }

    #[test]
    fn hostile_messages_close_only_that_connection() {
        let (addr, stop) = start(VirtualDeviceConfig::default(), Replug::default());
        // A header claiming 2 GiB: closed.
        let mut bad = Guest::connect(addr);
        bad.until(wire::TYPE_DEVICE_CONNECT);
        let mut h = Vec::new();
        h.extend_from_slice(&wire::TYPE_CONTROL_PACKET.to_le_bytes());
        h.extend_from_slice(&0x8000_0000u32.to_le_bytes());
        h.extend_from_slice(&1u64.to_le_bytes());
        bad.s.write_all(&h).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(bad.s.read(&mut b).unwrap_or(0), 0, "the server hangs up");
        // A truncated connection (half a header, then EOF) ends too.
        let mut t = Guest::connect(addr);
        t.until(wire::TYPE_DEVICE_CONNECT);
        t.s.write_all(&[100, 0, 0]).unwrap();
        t.s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(t.s.read(&mut b).unwrap_or(0), 0);
        // An unknown message type is skipped by its length; the connection goes on.
        let mut ok = Guest::connect(addr);
        ok.until(wire::TYPE_DEVICE_CONNECT);
        ok.send(77, 5, &[1, 2, 3], &[]);
        ok.send(wire::TYPE_GET_CONFIGURATION, 6, &[], &[]);
        let st = ok.until(wire::TYPE_CONFIGURATION_STATUS).pop().unwrap();
        assert_eq!((st.id, st.body), (6, vec![Status::SUCCESS.0, 1]));
        // Data for an endpoint the device does not have: a stall.
        ok.send(wire::TYPE_BULK_PACKET, 7, &[0x02, 0, 4, 0, 0, 0, 0, 0, 0, 0], &[1, 2, 3, 4]);
        let r = ok.until(wire::TYPE_BULK_PACKET).pop().unwrap();
        assert_eq!((r.id, r.body[1]), (7, Status::STALL.0));
        stop.store(true, Ordering::Relaxed);
    }
}
