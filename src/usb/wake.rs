//! A wake-up fd for a worker thread (the capture thread, the hotplug watcher): an eventfd
//! that the controlling thread writes and the worker polls together with its own fd (the
//! device's, the uevent socket), so a stop (or a new sink) cuts the wait short instead of
//! waiting it out.
//!
//! The fd only wakes; what to do is said elsewhere (a stop flag, the command channel), and
//! the capture thread reads those on every turn, so a wake-up that comes while it is busy
//! is never lost: the eventfd stays readable until [`Wake::clear`], and the next wait
//! returns at once.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::time::TimeSpec;

/// Why a wake-up fd could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot create a wake-up eventfd: {0}")]
pub struct WakeError(pub Errno);

// By hand, not `#[from]`: the message says the errno, so it is not also a `source()`.
impl From<Errno> for WakeError {
    fn from(e: Errno) -> WakeError {
        WakeError(e)
    }
}

/// An eventfd in non-blocking mode: [`Wake::signal`] makes it readable until [`Wake::clear`].
#[derive(Debug)]
pub struct Wake {
    fd: EventFd,
}

impl Wake {
    pub fn new() -> Result<Wake, WakeError> {
        Ok(Wake { fd: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)? })
    }

    /// Makes the fd readable, waking a thread polling it now or the next one to poll it.
    /// Never blocks (the counter would have to reach 2^64 - 1 first) and never fails for a
    /// reason the caller could act on.
    pub fn signal(&self) {
        let _ = self.fd.write(1);
    }

    /// Makes the fd unreadable again (reads the counter; nothing to read is fine).
    pub fn clear(&self) {
        let _ = self.fd.read();
    }

    /// Waits at most `timeout` for a [`Wake::signal`]; true if one came (or was pending).
    /// Leaves the fd readable: clear it with [`Wake::clear`] after acting on it.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) => n > 0,
            Err(_) => false, // EINTR: an early return, as a timeout is
        }
    }
}

impl AsFd for Wake {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Sleeps `timeout`, or until `wake` is signalled if there is one: how a backend without
/// an fd of its own (the simulator, test devices) waits for its next completion. True if
/// woken.
pub fn sleep(wake: Option<&Wake>, timeout: Duration) -> bool {
    match wake {
        Some(wake) => wake.wait(timeout),
        None => {
            std::thread::sleep(timeout);
            false
        }
    }
}

/// poll() over `fds` for at most `timeout`, to the nanosecond (ppoll: a simulated device
/// is due at any instant, not on a millisecond). The number of fds with events.
pub fn poll(fds: &mut [PollFd], timeout: Duration) -> nix::Result<i32> {
    nix::poll::ppoll(fds, Some(TimeSpec::from_duration(timeout)), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_signal_wakes_a_wait_and_stays_until_cleared() {
        let w = Wake::new().unwrap();
        let t = Instant::now();
        assert!(!w.wait(Duration::from_millis(30)));
        assert!(t.elapsed() >= Duration::from_millis(30));
        w.signal();
        w.signal();
        assert!(w.wait(Duration::from_secs(5)));
        assert!(w.wait(Duration::ZERO), "a wake-up stays until cleared");
        w.clear();
        assert!(!w.wait(Duration::ZERO));
    }

    #[test]
    fn a_signal_from_another_thread_ends_a_long_wait_at_once() {
        let w = std::sync::Arc::new(Wake::new().unwrap());
        let t = Instant::now();
        let signaller = {
            let w = std::sync::Arc::clone(&w);
            std::thread::Builder::new()
                .name("wake-test".into())
                .spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    w.signal();
                })
                .unwrap()
        };
        assert!(w.wait(Duration::from_secs(5)));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        signaller.join().unwrap();
    }
}
