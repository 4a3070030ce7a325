//! The usbfs device node (`/dev/bus/usb/BBB/DDD`) and every ioctl isoscope uses: the one
//! home of ioctl unsafe.
//!
//! Mirrors `include/uapi/linux/usbdevice_fs.h` and follows `drivers/usb/core/devio.c`.
//! Value-only ioctls get safe wrappers; the URB ioctls hand the kernel a pointer that it
//! keeps until reap, so their invariant is held by [`UsbfsBackend`], which owns every
//! submitted URB (and its buffer slot) until the kernel gives it back.
#![allow(unsafe_code)] // reason: ioctl(2) on the usbfs fd lives here and nowhere else

use std::ffi::c_void;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags};

use super::backend::{Backend, BackendError, BackendInfo};
use super::urb::{usbdevfs_urb, IsoUrb};
use super::wake::Wake;
use super::{ControlTransfer, Speed};
use crate::dma::{MemoryLimit, Region};

/// `USBDEVFS_CAP_*` bits from GET_CAPABILITIES.
pub mod caps {
    pub const ZERO_PACKET: u32 = 0x01;
    pub const BULK_CONTINUATION: u32 = 0x02;
    pub const NO_PACKET_SIZE_LIM: u32 = 0x04;
    pub const BULK_SCATTER_GATHER: u32 = 0x08;
    pub const REAP_AFTER_DISCONNECT: u32 = 0x10;
    pub const MMAP: u32 = 0x20;
    pub const DROP_PRIVILEGES: u32 = 0x40;
    pub const CONNINFO_EX: u32 = 0x80;
    pub const SUSPEND: u32 = 0x100;

    /// Names of the set bits, for `isoscope list`.
    pub fn names(bits: u32) -> Vec<&'static str> {
        [
            (ZERO_PACKET, "ZERO_PACKET"),
            (BULK_CONTINUATION, "BULK_CONTINUATION"),
            (NO_PACKET_SIZE_LIM, "NO_PACKET_SIZE_LIM"),
            (BULK_SCATTER_GATHER, "BULK_SCATTER_GATHER"),
            (REAP_AFTER_DISCONNECT, "REAP_AFTER_DISCONNECT"),
            (MMAP, "MMAP"),
            (DROP_PRIVILEGES, "DROP_PRIVILEGES"),
            (CONNINFO_EX, "CONNINFO_EX"),
            (SUSPEND, "SUSPEND"),
        ]
        .into_iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| n)
        .collect()
    }
}

/// `struct usbdevfs_ctrltransfer`
#[repr(C)]
struct usbdevfs_ctrltransfer {
    b_request_type: u8,
    b_request: u8,
    w_value: u16,
    w_index: u16,
    w_length: u16,
    /// In milliseconds.
    timeout: u32,
    data: *mut c_void,
}

/// `struct usbdevfs_setinterface`
#[repr(C)]
struct usbdevfs_setinterface {
    interface: u32,
    altsetting: u32,
}

const USBDEVFS_MAXDRIVERNAME: usize = 255;

/// `struct usbdevfs_getdriver`
#[repr(C)]
struct usbdevfs_getdriver {
    interface: u32,
    driver: [u8; USBDEVFS_MAXDRIVERNAME + 1],
}

/// `struct usbdevfs_disconnect_claim`
#[repr(C)]
struct usbdevfs_disconnect_claim {
    interface: u32,
    flags: u32,
    driver: [u8; USBDEVFS_MAXDRIVERNAME + 1],
}

/// `struct usbdevfs_ioctl`: an ioctl for the driver of one interface.
#[repr(C)]
struct usbdevfs_ioctl {
    ifno: i32,
    ioctl_code: i32,
    data: *mut c_void,
}

const USBDEVFS_DISCONNECT_CLAIM_EXCEPT_DRIVER: u32 = 0x02;

// Request numbers, encoded like the header's _IO* macros.
const USBDEVFS_CONTROL: libc::c_ulong =
    nix::request_code_readwrite!(b'U', 0, std::mem::size_of::<usbdevfs_ctrltransfer>()) as _;
const USBDEVFS_SETINTERFACE: libc::c_ulong =
    nix::request_code_read!(b'U', 4, std::mem::size_of::<usbdevfs_setinterface>()) as _;
const USBDEVFS_GETDRIVER: libc::c_ulong =
    nix::request_code_write!(b'U', 8, std::mem::size_of::<usbdevfs_getdriver>()) as _;
const USBDEVFS_SUBMITURB: libc::c_ulong =
    nix::request_code_read!(b'U', 10, std::mem::size_of::<usbdevfs_urb>()) as _;
const USBDEVFS_DISCARDURB: libc::c_ulong = nix::request_code_none!(b'U', 11) as _;
const USBDEVFS_REAPURBNDELAY: libc::c_ulong =
    nix::request_code_write!(b'U', 13, std::mem::size_of::<*mut c_void>()) as _;
const USBDEVFS_CLAIMINTERFACE: libc::c_ulong =
    nix::request_code_read!(b'U', 15, std::mem::size_of::<libc::c_uint>()) as _;
const USBDEVFS_RELEASEINTERFACE: libc::c_ulong =
    nix::request_code_read!(b'U', 16, std::mem::size_of::<libc::c_uint>()) as _;
const USBDEVFS_IOCTL: libc::c_ulong =
    nix::request_code_readwrite!(b'U', 18, std::mem::size_of::<usbdevfs_ioctl>()) as _;
const USBDEVFS_CONNECT: libc::c_ulong = nix::request_code_none!(b'U', 23) as _;
const USBDEVFS_GET_CAPABILITIES: libc::c_ulong =
    nix::request_code_read!(b'U', 26, std::mem::size_of::<u32>()) as _;
const USBDEVFS_DISCONNECT_CLAIM: libc::c_ulong =
    nix::request_code_read!(b'U', 27, std::mem::size_of::<usbdevfs_disconnect_claim>()) as _;
const USBDEVFS_GET_SPEED: libc::c_ulong = nix::request_code_none!(b'U', 31) as _;

/// Why a usbfs operation failed. Every message names the device, the operation, the
/// errno and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UsbfsError {
    #[error("permission denied opening {path} ({errno}): this user may not open the device node read-write")]
    Permission { path: PathBuf, errno: Errno },
    #[error("{path}: device disconnected during {op}")]
    Disconnected { path: PathBuf, op: &'static str },
    #[error("{path}: interface {interface} is claimed by another program or driver ({op}: EBUSY)")]
    Busy { path: PathBuf, op: &'static str, interface: u8 },
    #[error("{path}: {op} failed: {errno}{hint}")]
    Os { path: PathBuf, op: &'static str, errno: Errno, hint: &'static str },
}

impl UsbfsError {
    /// The standard remedy, if there is one.
    pub fn fix(&self) -> Option<crate::fix::Fix> {
        match self {
            UsbfsError::Permission { .. } => Some(crate::fix::Fix::UdevRule),
            UsbfsError::Busy { .. } | UsbfsError::Os { errno: Errno::EBUSY, .. } => {
                Some(crate::fix::Fix::CloseOtherProgram)
            }
            _ => None,
        }
    }
}

/// An open usbfs device node, read-write (zero-copy mmap needs write access).
#[derive(Debug)]
pub struct UsbfsDevice {
    fd: OwnedFd,
    path: PathBuf,
    /// Interfaces we claimed, and the kernel driver we detached from each (if any).
    claims: Vec<(u8, Option<String>)>,
}

impl UsbfsDevice {
    /// Opens `path` (e.g. `/dev/bus/usb/001/004`) read-write.
    pub fn open(path: &Path) -> Result<UsbfsDevice, UsbfsError> {
        let file =
            OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(path).map_err(
                |e| {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                    match errno {
                        Errno::EACCES | Errno::EPERM => {
                            UsbfsError::Permission { path: path.to_path_buf(), errno }
                        }
                        Errno::ENOENT | Errno::ENODEV | Errno::ENXIO => {
                            UsbfsError::Disconnected { path: path.to_path_buf(), op: "open" }
                        }
                        errno => UsbfsError::Os { path: path.to_path_buf(), op: "open", errno, hint: "" },
                    }
                },
            )?;
        Ok(UsbfsDevice { fd: file.into(), path: path.to_path_buf(), claims: Vec::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, op: &'static str, errno: Errno, interface: Option<u8>) -> UsbfsError {
        match (errno, interface) {
            (Errno::ENODEV | Errno::ESHUTDOWN, _) => UsbfsError::Disconnected { path: self.path.clone(), op },
            (Errno::EBUSY, Some(interface)) => UsbfsError::Busy { path: self.path.clone(), op, interface },
            (Errno::EPIPE, _) => UsbfsError::Os {
                path: self.path.clone(),
                op,
                errno,
                hint: " (the device stalled the request: it does not support it)",
            },
            _ => UsbfsError::Os { path: self.path.clone(), op, errno, hint: "" },
        }
    }

    /// Calls ioctl `req` with `arg`.
    ///
    /// # Safety
    /// `arg` must be what `req` expects: a pointer to a live, properly sized and aligned
    /// value of the request's struct (or an integer for argument-less requests), valid for
    /// the kernel to read and write for the duration of the call.
    unsafe fn ioctl(&self, req: libc::c_ulong, arg: *mut c_void) -> Result<libc::c_int, Errno> {
        // SAFETY: the caller upholds the argument contract; the fd is open for our lifetime.
        Errno::result(unsafe { libc::ioctl(self.fd.as_raw_fd(), req as _, arg) })
    }

    /// USBDEVFS_GET_CAPABILITIES: `caps::*` bits.
    pub fn capabilities(&self) -> Result<u32, UsbfsError> {
        let mut caps = 0u32;
        // SAFETY: GET_CAPABILITIES writes one u32 to the pointer, which is a live local.
        unsafe { self.ioctl(USBDEVFS_GET_CAPABILITIES, (&mut caps as *mut u32).cast()) }
            .map_err(|e| self.err("GET_CAPABILITIES", e, None))?;
        Ok(caps)
    }

    /// USBDEVFS_GET_SPEED.
    pub fn speed(&self) -> Result<Option<Speed>, UsbfsError> {
        // SAFETY: GET_SPEED takes no argument and returns the speed.
        let v = unsafe { self.ioctl(USBDEVFS_GET_SPEED, std::ptr::null_mut()) }
            .map_err(|e| self.err("GET_SPEED", e, None))?;
        Ok(Speed::from_kernel(v as u32))
    }

    /// USBDEVFS_GETDRIVER: the kernel driver bound to `interface`, if any.
    pub fn driver(&self, interface: u8) -> Result<Option<String>, UsbfsError> {
        let mut gd =
            usbdevfs_getdriver { interface: interface.into(), driver: [0; USBDEVFS_MAXDRIVERNAME + 1] };
        // SAFETY: GETDRIVER reads `interface` and writes a NUL-terminated name into `driver`
        // of the live local struct.
        match unsafe { self.ioctl(USBDEVFS_GETDRIVER, (&mut gd as *mut usbdevfs_getdriver).cast()) } {
            Ok(_) => {
                let end = gd.driver.iter().position(|&b| b == 0).unwrap_or(gd.driver.len());
                Ok(Some(String::from_utf8_lossy(&gd.driver[..end]).into_owned()))
            }
            Err(Errno::ENODATA) => Ok(None),
            Err(e) => Err(self.err("GETDRIVER", e, Some(interface))),
        }
    }

    /// Claims `interface`, first detaching any kernel driver other than usbfs
    /// (USBDEVFS_DISCONNECT_CLAIM with EXCEPT_DRIVER "usbfs"). The driver is given back
    /// when the device is released or dropped (DESIGN invariant 5).
    pub fn claim_detaching(&mut self, interface: u8) -> Result<(), UsbfsError> {
        if self.claims.iter().any(|(i, _)| *i == interface) {
            return Ok(());
        }
        let driver = self.driver(interface)?;
        if driver.as_deref() == Some("usbfs") {
            return Err(self.err("DISCONNECT_CLAIM", Errno::EBUSY, Some(interface)));
        }
        let mut dc = usbdevfs_disconnect_claim {
            interface: interface.into(),
            flags: USBDEVFS_DISCONNECT_CLAIM_EXCEPT_DRIVER,
            driver: [0; USBDEVFS_MAXDRIVERNAME + 1],
        };
        dc.driver[..5].copy_from_slice(b"usbfs");
        // SAFETY: DISCONNECT_CLAIM reads the live local struct.
        unsafe { self.ioctl(USBDEVFS_DISCONNECT_CLAIM, (&mut dc as *mut usbdevfs_disconnect_claim).cast()) }
            .map_err(|e| self.err("DISCONNECT_CLAIM", e, Some(interface)))?;
        self.claims.push((interface, driver));
        Ok(())
    }

    /// Claims `interface` without touching drivers (USBDEVFS_CLAIMINTERFACE).
    pub fn claim(&mut self, interface: u8) -> Result<(), UsbfsError> {
        let mut n: libc::c_uint = interface.into();
        // SAFETY: CLAIMINTERFACE reads one unsigned int from the live local.
        unsafe { self.ioctl(USBDEVFS_CLAIMINTERFACE, (&mut n as *mut libc::c_uint).cast()) }
            .map_err(|e| self.err("CLAIMINTERFACE", e, Some(interface)))?;
        self.claims.push((interface, None));
        Ok(())
    }

    /// Interfaces claimed, each with the kernel driver that was detached from it.
    pub fn claims(&self) -> &[(u8, Option<String>)] {
        &self.claims
    }

    /// Releases every claimed interface, then asks the kernel to bind its drivers again
    /// (USBDEVFS_IOCTL with USBDEVFS_CONNECT) where we detached one. Errors are collected,
    /// not fatal: on a disconnected device there is nothing left to give back.
    pub fn release_all(&mut self) -> Vec<UsbfsError> {
        let mut errors = Vec::new();
        let claims = std::mem::take(&mut self.claims);
        for &(interface, _) in &claims {
            let mut n: libc::c_uint = interface.into();
            // SAFETY: RELEASEINTERFACE reads one unsigned int from the live local.
            let released =
                unsafe { self.ioctl(USBDEVFS_RELEASEINTERFACE, (&mut n as *mut libc::c_uint).cast()) };
            if let Err(e) = released {
                if e != Errno::ENODEV {
                    errors.push(self.err("RELEASEINTERFACE", e, Some(interface)));
                }
            }
        }
        for (interface, driver) in claims {
            if driver.is_none() {
                continue;
            }
            let mut cmd = usbdevfs_ioctl {
                ifno: interface.into(),
                ioctl_code: USBDEVFS_CONNECT as i32,
                data: std::ptr::null_mut(),
            };
            // SAFETY: USBDEVFS_IOCTL reads the live local struct; CONNECT takes no data.
            let connected = unsafe { self.ioctl(USBDEVFS_IOCTL, (&mut cmd as *mut usbdevfs_ioctl).cast()) };
            match connected {
                // EBUSY: a driver already has the interface. snd-usb-audio binds to the control
                // interface and claims its streaming interfaces itself, so once the control
                // interface is connected the streaming ones answer EBUSY: the goal is reached.
                Ok(_) | Err(Errno::ENODEV | Errno::EBUSY) => {}
                Err(e) => errors.push(self.err("USBDEVFS_IOCTL(CONNECT)", e, Some(interface))),
            }
        }
        errors
    }

    /// USBDEVFS_SETINTERFACE (kills URBs pending on that interface).
    pub fn set_interface(&self, interface: u8, alt: u8) -> Result<(), UsbfsError> {
        let mut si = usbdevfs_setinterface { interface: interface.into(), altsetting: alt.into() };
        // SAFETY: SETINTERFACE reads the live local struct.
        unsafe { self.ioctl(USBDEVFS_SETINTERFACE, (&mut si as *mut usbdevfs_setinterface).cast()) }
            .map_err(|e| self.err("SETINTERFACE", e, Some(interface)))?;
        Ok(())
    }

    fn control(
        &self,
        rt: u8,
        req: u8,
        value: u16,
        index: u16,
        data: *mut u8,
        len: usize,
    ) -> Result<usize, Errno> {
        let w_length = u16::try_from(len).map_err(|_| Errno::EINVAL)?;
        let mut ct = usbdevfs_ctrltransfer {
            b_request_type: rt,
            b_request: req,
            w_value: value,
            w_index: index,
            w_length,
            timeout: 1000,
            data: data.cast(),
        };
        // SAFETY: CONTROL reads the struct and transfers at most w_length bytes to or from
        // `data`, which the callers derive from a slice of exactly `len` bytes.
        let n = unsafe { self.ioctl(USBDEVFS_CONTROL, (&mut ct as *mut usbdevfs_ctrltransfer).cast()) }?;
        Ok(n as usize)
    }
}

impl ControlTransfer for UsbfsDevice {
    fn control_in(
        &mut self,
        rt: u8,
        req: u8,
        value: u16,
        index: u16,
        data: &mut [u8],
    ) -> Result<usize, Errno> {
        self.control(rt | 0x80, req, value, index, data.as_mut_ptr(), data.len())
    }

    fn control_out(&mut self, rt: u8, req: u8, value: u16, index: u16, data: &[u8]) -> Result<(), Errno> {
        // The kernel only reads OUT data; the cast to *mut is what the struct's type demands.
        self.control(rt & 0x7f, req, value, index, data.as_ptr().cast_mut(), data.len()).map(|_| ())
    }
}

impl Drop for UsbfsDevice {
    fn drop(&mut self) {
        // DESIGN invariant 5: give detached kernel drivers back on every exit path,
        // including unwinding from a panic.
        let _ = self.release_all();
    }
}

/// A usbfs device as a capture [`Backend`]: owns every URB from submit until reap.
#[derive(Debug)]
pub struct UsbfsBackend {
    dev: UsbfsDevice,
    /// URBs in the kernel's hands, indexed by URB id.
    pending: Vec<Option<IsoUrb>>,
    in_flight: usize,
    syscalls: u64,
    caps: u32,
    speed: Speed,
    name: String,
    /// The bus number and sysfs name of the device (see [`UsbfsBackend::on_bus`]).
    bus: Option<(u8, String)>,
}

impl UsbfsBackend {
    /// Wraps an opened (and configured) device. `name` is how messages name it.
    pub fn new(dev: UsbfsDevice, name: String) -> Result<UsbfsBackend, UsbfsError> {
        let caps = dev.capabilities()?;
        let speed = dev.speed()?.unwrap_or(Speed::High);
        Ok(UsbfsBackend { dev, pending: Vec::new(), in_flight: 0, syscalls: 0, caps, speed, name, bus: None })
    }

    /// Says where the device sits (bus `busnum`, sysfs name `sysfs_name`), so an error that
    /// depends on the bus (ENOSPC: no bandwidth left) can name the bus's other users.
    pub fn on_bus(mut self, busnum: u8, sysfs_name: &str) -> UsbfsBackend {
        self.bus = Some((busnum, sysfs_name.to_string()));
        self
    }

    pub fn device(&self) -> &UsbfsDevice {
        &self.dev
    }

    pub fn capabilities(&self) -> u32 {
        self.caps
    }

    /// Waits at most `timeout` for a completion (POLLOUT on the usbfs fd) or for `wake`.
    /// True if a completion may be waiting; false on a timeout or a wake-up.
    fn poll_out(&mut self, timeout: Duration, wake: Option<&Wake>) -> Result<bool, BackendError> {
        self.syscalls += 1;
        let device = PollFd::new(self.dev.fd.as_fd(), PollFlags::POLLOUT);
        let (mut both, mut alone);
        let fds: &mut [PollFd] = match wake {
            Some(wake) => {
                both = [device, PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
                &mut both
            }
            None => {
                alone = [device];
                &mut alone
            }
        };
        match super::wake::poll(fds, timeout) {
            Ok(0) => Ok(false),
            Ok(_) => {
                let ev = fds[0].revents().unwrap_or(PollFlags::empty());
                if ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) && !ev.contains(PollFlags::POLLOUT)
                {
                    return Err(BackendError::Disconnected);
                }
                Ok(ev.contains(PollFlags::POLLOUT))
            }
            Err(Errno::EINTR) => Ok(false),
            Err(e) => Err(BackendError::from_errno("poll", e)),
        }
    }

    /// REAPURBNDELAY once: the completed URB, `None` if nothing is waiting.
    fn reap_now(&mut self) -> Result<Option<IsoUrb>, BackendError> {
        self.syscalls += 1;
        let mut done: *mut usbdevfs_urb = std::ptr::null_mut();
        // SAFETY: REAPURBNDELAY writes one pointer into `done`, a live local.
        match unsafe { self.dev.ioctl(USBDEVFS_REAPURBNDELAY, (&mut done as *mut *mut usbdevfs_urb).cast()) }
        {
            Ok(_) => {
                // Match by address, never dereferencing what the kernel returned: it is one
                // of ours, and the kernel has finished writing its status into it.
                let addr = done as usize;
                let slot = self.pending.iter_mut().find(|p| p.as_ref().is_some_and(|u| u.raw_addr() == addr));
                match slot.and_then(Option::take) {
                    Some(urb) => {
                        self.in_flight -= 1;
                        Ok(Some(urb))
                    }
                    None => Err(BackendError::Os { op: "REAPURBNDELAY", errno: Errno::EFAULT }),
                }
            }
            Err(Errno::EAGAIN) => Ok(None),
            Err(e) => Err(BackendError::from_errno("REAPURBNDELAY", e)),
        }
    }
}

impl Backend for UsbfsBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: self.name.clone(),
            speed: self.speed,
            can_mmap: self.caps & caps::MMAP != 0,
            simulated: false,
        }
    }

    fn memory_limit(&self, app_cap_bytes: u64) -> MemoryLimit {
        MemoryLimit::from_sysfs(app_cap_bytes)
    }

    fn map_dma(&mut self, len: usize) -> Result<Region, Errno> {
        Region::map_usbfs(self.dev.fd.as_fd(), len)
    }

    fn submit(&mut self, mut urb: IsoUrb) -> Result<(), (IsoUrb, BackendError)> {
        let id = urb.id();
        if self.pending.len() <= id {
            // Grows once per URB id, during the first submissions before streaming.
            self.pending.resize_with(id + 1, || None);
        }
        if self.pending[id].is_some() {
            return Err((urb, BackendError::Os { op: "SUBMITURB", errno: Errno::EALREADY }));
        }
        self.syscalls += 1;
        let raw = urb.as_raw();
        // SAFETY: `raw` points into the URB's boxed kernel struct, whose buffer field points
        // at its slot (set by `prepare`, checked by IsoUrb::new to hold every packet). From
        // here until reap the URB lives in `self.pending` and nothing else can reach it, so
        // the struct and the buffer stay valid and unaliased while the kernel holds them;
        // `Drop` discards and reaps every pending URB before that memory is freed.
        match unsafe { self.dev.ioctl(USBDEVFS_SUBMITURB, raw.cast()) } {
            Ok(_) => {
                self.pending[id] = Some(urb);
                self.in_flight += 1;
                Ok(())
            }
            Err(e) => Err((urb, BackendError::from_errno("SUBMITURB", e))),
        }
    }

    fn reap(&mut self, timeout: Duration, wake: Option<&Wake>) -> Result<Option<IsoUrb>, BackendError> {
        if let Some(urb) = self.reap_now()? {
            return Ok(Some(urb));
        }
        if timeout.is_zero() || !self.poll_out(timeout, wake)? {
            return Ok(None);
        }
        self.reap_now()
    }

    fn discard_all(&mut self) {
        for urb in self.pending.iter_mut().flatten() {
            self.syscalls += 1;
            let raw = urb.as_raw();
            // SAFETY: DISCARDURB takes the address of a URB we submitted and still own in
            // `pending`; the kernel only uses it to find its record (EINVAL if it already
            // completed, which is fine).
            let _ = unsafe { self.dev.ioctl(USBDEVFS_DISCARDURB, raw.cast()) };
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn syscalls(&self) -> u64 {
        self.syscalls
    }

    fn explain(&self, e: &BackendError) -> Option<String> {
        match (e, &self.bus) {
            (BackendError::Os { errno: Errno::ENOSPC, .. }, Some((busnum, me))) => {
                Some(super::bus::bandwidth_note(Path::new(super::discovery::SYSFS_USB_DEVICES), *busnum, me))
            }
            _ => None,
        }
    }
}

impl Drop for UsbfsBackend {
    fn drop(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        // The kernel may still write into pending URBs: cancel and collect them all before
        // their memory is freed.
        self.discard_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.in_flight > 0 && Instant::now() < deadline {
            match self.reap(Duration::from_millis(50), None) {
                Ok(_) => {}
                Err(BackendError::Disconnected) => break, // killed by the disconnect; no more DMA
                Err(_) => break,
            }
        }
        if self.in_flight > 0 && Instant::now() >= deadline {
            // Never free memory the kernel may still use: leak what it did not give back.
            for urb in self.pending.drain(..).flatten() {
                std::mem::forget(urb);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_header_on_x86_64_and_aarch64() {
        assert_eq!(std::mem::size_of::<usbdevfs_ctrltransfer>(), 24);
        assert_eq!(std::mem::size_of::<usbdevfs_getdriver>(), 260);
        assert_eq!(std::mem::size_of::<usbdevfs_disconnect_claim>(), 264);
        assert_eq!(std::mem::size_of::<usbdevfs_ioctl>(), 16);
        assert_eq!(USBDEVFS_CONTROL, 0xc018_5500);
        assert_eq!(USBDEVFS_SETINTERFACE, 0x8008_5504);
        assert_eq!(USBDEVFS_GETDRIVER, 0x4104_5508);
        assert_eq!(USBDEVFS_SUBMITURB, 0x8038_550a);
        assert_eq!(USBDEVFS_DISCARDURB, 0x550b);
        assert_eq!(USBDEVFS_REAPURBNDELAY, 0x4008_550d);
        assert_eq!(USBDEVFS_CLAIMINTERFACE, 0x8004_550f);
        assert_eq!(USBDEVFS_RELEASEINTERFACE, 0x8004_5510);
        assert_eq!(USBDEVFS_IOCTL, 0xc010_5512);
        assert_eq!(USBDEVFS_CONNECT, 0x5517);
        assert_eq!(USBDEVFS_GET_CAPABILITIES, 0x8004_551a);
        assert_eq!(USBDEVFS_DISCONNECT_CLAIM, 0x8108_551b);
        assert_eq!(USBDEVFS_GET_SPEED, 0x551f);
    }

    #[test]
    fn opening_a_missing_or_forbidden_node_says_what_to_do() {
        let err = UsbfsDevice::open(Path::new("/dev/bus/usb/999/999")).unwrap_err();
        assert!(matches!(err, UsbfsError::Disconnected { .. }), "{err}");
        // A regular file stands in for a device node: opening works, the ioctls do not.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("node");
        std::fs::write(&f, b"").unwrap();
        let dev = UsbfsDevice::open(&f).unwrap();
        let err = dev.capabilities().unwrap_err().to_string();
        assert!(err.contains("GET_CAPABILITIES") && err.contains("ENOTTY"), "{err}");
        // The message says what happened; the fix is a kind, said once by each front end.
        let e = UsbfsError::Permission { path: "/dev/bus/usb/001/004".into(), errno: Errno::EACCES };
        let msg = e.to_string();
        assert!(
            msg.contains("/dev/bus/usb/001/004") && msg.contains("EACCES") && !msg.contains("udev"),
            "{msg}"
        );
        assert_eq!(e.fix(), Some(crate::fix::Fix::UdevRule));
        assert!(crate::fix::Fix::UdevRule.for_cli().contains("udevadm"));
    }

    #[test]
    fn capability_bits_are_named() {
        assert_eq!(caps::names(0x30), ["REAP_AFTER_DISCONNECT", "MMAP"]);
    }
}
