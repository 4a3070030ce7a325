//! Attaching a USB/IP device to the kernel's virtual host controller (vhci-hcd), as
//! `usbip attach` does: import the device over TCP, then hand the connected socket to
//! the kernel by writing "port sockfd devid speed" to the controller's sysfs `attach`.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::sim::usbip::wire;

/// Where the first virtual host controller lives in sysfs.
pub const VHCI_SYSFS: &str = "/sys/devices/platform/vhci_hcd.0";

/// Why attaching or detaching failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum VhciError {
    #[error("vhci-hcd is not loaded ({0} is missing): load it with `sudo modprobe vhci-hcd`")]
    NotLoaded(PathBuf),
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("cannot write {path}: {error}. Attaching and detaching need root (sudo)")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("cannot reach the USB/IP server at {addr}: {error}. Is `isoscope virtual-device` (or usbipd) running there?")]
    Connect { addr: String, error: std::io::Error },
    #[error("USB/IP exchange with {addr} failed: {error}")]
    Protocol { addr: String, error: wire::WireError },
    #[error("the server at {addr} has no device with bus id '{busid}' (try `usbip list -r HOST`)")]
    Refused { addr: String, busid: String },
    #[error("no free {hub} port on vhci-hcd (all {ports} in use)")]
    NoFreePort { hub: &'static str, ports: usize },
    #[error("{0} is not a vhci-hcd status table")]
    Status(PathBuf),
}

impl VhciError {
    /// What to change, where it is not in the message already.
    pub fn fix(&self) -> Option<crate::fix::Fix> {
        matches!(self, VhciError::NoFreePort { .. }).then_some(crate::fix::Fix::DetachVirtualDevice)
    }
}

/// One port of the virtual host controller, from its `status` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhciPort {
    /// "hs" (USB 2 ports) or "ss" (USB 3 ports).
    pub hub: String,
    pub port: u32,
    /// 4: free (VDEV_ST_NULL); 6: in use.
    pub state: u32,
    pub busid: String,
}

impl VhciPort {
    pub fn is_free(&self) -> bool {
        self.state == 4
    }
}

/// Parses a vhci `status` file: a header line, then
/// `hub port sta spd dev sockfd local_busid` per port.
pub fn parse_status(text: &str) -> Option<Vec<VhciPort>> {
    let mut lines = text.lines();
    if !lines.next()?.starts_with("hub port") {
        return None;
    }
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(VhciPort {
                hub: f.first()?.to_string(),
                port: f.get(1)?.parse().ok()?,
                state: f.get(2)?.parse().ok()?,
                busid: f.get(6).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Reads the ports of the controller at `root`.
pub fn ports(root: &Path) -> Result<Vec<VhciPort>, VhciError> {
    let path = root.join("status");
    if !root.exists() {
        return Err(VhciError::NotLoaded(root.to_path_buf()));
    }
    let text =
        std::fs::read_to_string(&path).map_err(|error| VhciError::Read { path: path.clone(), error })?;
    parse_status(&text).ok_or(VhciError::Status(path))
}

/// Imports `busid` from the USB/IP server at `addr` and attaches it to a free port of the
/// controller at `root`. Returns the port number. The kernel keeps the connection; this
/// process may exit.
pub fn attach(root: &Path, addr: &str, busid: &str) -> Result<u32, VhciError> {
    let ports = ports(root)?;
    let connect_err = |error| VhciError::Connect { addr: addr.to_string(), error };
    let target = addr.to_socket_addrs().map_err(connect_err)?.next().ok_or_else(|| {
        connect_err(std::io::Error::new(std::io::ErrorKind::NotFound, "the address resolves to nothing"))
    })?;
    let mut sock = TcpStream::connect(target).map_err(connect_err)?;
    sock.set_nodelay(true).ok();
    sock.write_all(&wire::import_request(busid)).map_err(connect_err)?;
    let reply = wire::read_import_reply(&mut sock)
        .map_err(|error| VhciError::Protocol { addr: addr.to_string(), error })?;
    let Some((busnum, devnum, speed)) = reply else {
        return Err(VhciError::Refused { addr: addr.to_string(), busid: busid.to_string() });
    };
    let hub = if speed >= 5 { "ss" } else { "hs" };
    let port = ports
        .iter()
        .find(|p| p.hub == hub && p.is_free())
        .ok_or(VhciError::NoFreePort { hub, ports: ports.iter().filter(|p| p.hub == hub).count() })?
        .port;
    let devid = (busnum << 16) | devnum;
    let line = format!("{port} {} {devid} {speed}", sock.as_raw_fd());
    let path = root.join("attach");
    std::fs::write(&path, line).map_err(|error| VhciError::Write { path, error })?;
    Ok(port)
}

/// Unplugs the device on `port`.
pub fn detach(root: &Path, port: u32) -> Result<(), VhciError> {
    if !root.exists() {
        return Err(VhciError::NotLoaded(root.to_path_buf()));
    }
    let path = root.join("detach");
    std::fs::write(&path, port.to_string()).map_err(|error| VhciError::Write { path, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const STATUS: &str = "hub port sta spd dev      sockfd local_busid\n\
hs  0000 006 003 00010002 000003 1-1\n\
hs  0001 004 000 00000000 000000 0-0\n\
ss  0008 004 000 00000000 000000 0-0\n";

    #[test]
    fn status_tables_parse_and_garbage_does_not() {
        let p = parse_status(STATUS).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], VhciPort { hub: "hs".into(), port: 0, state: 6, busid: "1-1".into() });
        assert!(p[1].is_free() && !p[0].is_free());
        assert_eq!(p[2].port, 8);
        assert!(parse_status("").is_none());
        assert!(parse_status("hello\nworld").is_none());
        assert!(parse_status("hub port sta\nhs x y").is_none());
    }

    #[test]
    fn a_missing_controller_says_how_to_load_it() {
        let err = ports(Path::new("/nonexistent/vhci_hcd.0")).unwrap_err().to_string();
        assert!(err.contains("modprobe vhci-hcd"), "{err}");
        let err = attach(Path::new("/nonexistent/vhci_hcd.0"), "127.0.0.1:1", "1-1").unwrap_err().to_string();
        assert!(err.contains("modprobe vhci-hcd"), "{err}");
    }

    #[test]
    fn an_unreachable_server_and_a_refused_bus_id_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), STATUS).unwrap();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap().to_string();
        drop(probe);
        let err = attach(dir.path(), &addr, "1-1").unwrap_err().to_string();
        assert!(err.contains("Is `isoscope virtual-device`"), "{err}");

        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let _ = wire::read_op_request(&mut s);
            s.write_all(&wire::import_refused()).unwrap();
        });
        let err = attach(dir.path(), &addr, "9-9").unwrap_err().to_string();
        assert!(err.contains("no device with bus id '9-9'"), "{err}");
    }
}
