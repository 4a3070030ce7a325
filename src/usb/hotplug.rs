//! Hotplug: a thread that follows the USB devices in sysfs and sends the new list whenever
//! it changes. It wakes on the kernel's uevents (a `NETLINK_KOBJECT_UEVENT` socket, as
//! udev and nusb's `linux_usbfs/hotplug.rs` do) and also rescans on a timer, which is all
//! it has where netlink is not allowed (some containers) and for a sysfs tree that is not
//! the kernel's (tests). Stop is a [`Wake`] eventfd polled with the socket: it is immediate.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nix::poll::{PollFd, PollFlags};
use nix::sys::socket::{
    bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

use super::discovery::{list_devices, UsbDeviceInfo};
use super::wake::{self, Wake};

/// How long after a uevent the tree is read (a device's interfaces and descriptors appear
/// in sysfs over a few events; one scan after they settle, not one per event).
const SETTLE: Duration = Duration::from_millis(150);

/// How the watcher learns of changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotplugSource {
    /// Kernel uevents, with a slow rescan as a safety net.
    Uevents,
    /// Only the timer (netlink refused, or told not to use it).
    Polling,
}

/// A running watcher. Dropping it stops the thread.
pub struct HotplugWatcher {
    updates: Receiver<Vec<UsbDeviceInfo>>,
    stop: std::sync::Arc<Wake>,
    source: HotplugSource,
    thread: Option<JoinHandle<()>>,
}

impl HotplugWatcher {
    /// Watches the sysfs device folder `root` (normally
    /// [`SYSFS_USB_DEVICES`](super::discovery::SYSFS_USB_DEVICES)), rescanning at least every
    /// `every`; `uevents` says whether to listen to the kernel as well (only meaningful for
    /// the real sysfs). The first list is sent at once.
    pub fn start(root: PathBuf, every: Duration, uevents: bool) -> std::io::Result<HotplugWatcher> {
        let stop = std::sync::Arc::new(Wake::new().map_err(|e| std::io::Error::from(e.0))?);
        let socket = if uevents { uevent_socket().ok() } else { None };
        let source = if socket.is_some() { HotplugSource::Uevents } else { HotplugSource::Polling };
        let (tx, updates) = crossbeam_channel::bounded(4);
        let wake = std::sync::Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("isoscope-hotplug".into()).spawn(move || {
            let mut last: Option<Vec<UsbDeviceInfo>> = None;
            let mut buf = vec![0u8; 8192];
            let mut next_scan = Instant::now();
            loop {
                let now = Instant::now();
                if now >= next_scan {
                    let devices = list_devices(&root).unwrap_or_default();
                    if last.as_ref() != Some(&devices) {
                        if tx.send(devices.clone()).is_err() {
                            return;
                        }
                        last = Some(devices);
                    }
                    next_scan = now + every;
                }
                let timeout = next_scan.saturating_duration_since(Instant::now());
                let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
                if let Some(s) = &socket {
                    fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
                }
                if wake::poll(&mut fds, timeout).is_err() {
                    std::thread::sleep(timeout.min(Duration::from_millis(100)));
                    continue;
                }
                if fds[0].any().unwrap_or(false) {
                    return;
                }
                if fds.get(1).and_then(|f| f.any()).unwrap_or(false) {
                    let mut usb = false;
                    if let Some(s) = &socket {
                        while let Ok(n) =
                            recv(std::os::fd::AsRawFd::as_raw_fd(s), &mut buf, MsgFlags::MSG_DONTWAIT)
                        {
                            usb |= is_usb_uevent(&buf[..n]);
                        }
                    }
                    if usb {
                        next_scan = next_scan.min(Instant::now() + SETTLE);
                    }
                }
            }
        })?;
        Ok(HotplugWatcher { updates, stop, source, thread: Some(thread) })
    }

    /// The newest list, if it changed since the last call.
    pub fn poll(&self) -> Option<Vec<UsbDeviceInfo>> {
        self.updates.try_iter().last()
    }

    /// Whether it hears the kernel's uevents or only rescans on its timer.
    pub fn source(&self) -> HotplugSource {
        self.source
    }
}

impl Drop for HotplugWatcher {
    fn drop(&mut self) {
        self.stop.signal();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A socket on the kernel's uevent multicast group (group 1: what the kernel sends; udev
/// re-sends on group 2).
fn uevent_socket() -> nix::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkKObjectUEvent,
    )?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, 1))?;
    Ok(fd)
}

/// Whether a kernel uevent (`ACTION@DEVPATH\0KEY=VALUE\0...`) is about a USB device or
/// interface.
pub fn is_usb_uevent(msg: &[u8]) -> bool {
    msg.split(|&b| b == 0).any(|field| field == b"SUBSYSTEM=usb")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usb_uevents_are_told_from_others() {
        let usb = b"add@/devices/pci0000:00/usb1/1-1\0ACTION=add\0SUBSYSTEM=usb\0DEVTYPE=usb_device\0";
        assert!(is_usb_uevent(usb));
        let sound = b"add@/devices/sound/card1\0ACTION=add\0SUBSYSTEM=sound\0";
        assert!(!is_usb_uevent(sound));
        assert!(!is_usb_uevent(b""));
    }

    #[test]
    fn the_watcher_sends_changes_and_stops_at_once() {
        let sys = tempfile::tempdir().unwrap();
        let w = HotplugWatcher::start(sys.path().to_path_buf(), Duration::from_millis(20), false).unwrap();
        assert_eq!(w.source(), HotplugSource::Polling);
        let wait = |want: usize| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(l) = w.poll() {
                    if l.len() == want {
                        return l;
                    }
                }
                assert!(Instant::now() < deadline, "no list of {want} devices came");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        assert!(wait(0).is_empty());
        let d = sys.path().join("1-1");
        std::fs::create_dir_all(&d).unwrap();
        for (f, v) in [("busnum", "1\n"), ("devnum", "7\n"), ("idVendor", "1209\n"), ("idProduct", "0001\n")]
        {
            std::fs::write(d.join(f), v).unwrap();
        }
        assert_eq!(wait(1)[0].devnum, 7);
        std::fs::remove_dir_all(&d).unwrap();
        wait(0);
        // Stop is the eventfd, not the next timer tick.
        let w = HotplugWatcher::start(sys.path().to_path_buf(), Duration::from_secs(30), false).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        drop(w);
        assert!(t.elapsed() < Duration::from_millis(500), "stop took {:?}", t.elapsed());
    }
}
