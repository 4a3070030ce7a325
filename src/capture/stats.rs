//! Capture statistics: atomics the engine thread bumps once per URB, and the snapshot
//! everyone else reads (UI, CLI, JSON). No locks on the hot path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::dma::TransferPath;
use crate::usb::urb::UrbStatusKind;

/// How many packet error counters there are: one per [`UrbStatusKind::PACKET_ERRORS`],
/// then "other".
pub const PACKET_ERROR_COUNTERS: usize = UrbStatusKind::PACKET_ERRORS.len() + 1;

/// The kind counted under `name` (a key of [`StatsSnapshot::packet_errors_by_errno`]: an
/// errno's name, or "other").
fn counted_kind(name: &str) -> UrbStatusKind {
    UrbStatusKind::PACKET_ERRORS.into_iter().find(|k| k.name() == name).unwrap_or(UrbStatusKind::Other(0))
}

/// Counters shared between the engine thread (writer) and everyone else (readers).
/// Each is a running total, updated with Relaxed ordering: readers want a recent value,
/// not a consistent cut across fields.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// URBs reaped with data (cancelled ones excluded).
    pub urbs: AtomicU64,
    /// URBs whose buffer was in an mmap'd region.
    pub urbs_zerocopy: AtomicU64,
    /// URBs whose buffer was heap memory (the kernel copied).
    pub urbs_copy: AtomicU64,
    pub packets: AtomicU64,
    /// Valid payload bytes delivered.
    pub bytes: AtomicU64,
    /// Whole frames delivered.
    pub frames: AtomicU64,
    /// Packets with fewer bytes than requested (normal for audio; each leaves a gap).
    pub short_packets: AtomicU64,
    pub zero_length_packets: AtomicU64,
    /// Packets that completed with an error status; their bytes are never read.
    pub packet_errors: AtomicU64,
    /// Per errno, in the order of [`UrbStatusKind::PACKET_ERRORS`], then "other".
    pub errors_by_errno: [AtomicU64; PACKET_ERROR_COUNTERS],
    /// Packets whose length was not a whole number of frames (the tail was dropped).
    pub misaligned_packets: AtomicU64,
    /// Frames a full ring could not take, summed over rings.
    pub ring_drops: AtomicU64,
    /// Bytes the kernel copied to user space for us (copy path: whole URB buffers).
    pub kernel_copied_bytes: AtomicU64,
    /// CPU time of the engine thread (CLOCK_THREAD_CPUTIME_ID), ns.
    pub cpu_ns: AtomicU64,
    /// Data-path system calls (submit, reap, poll, discard).
    pub syscalls: AtomicU64,
    /// Wall time since streaming started, ns.
    pub elapsed_ns: AtomicU64,
    /// Reap latency (see [`crate::capture::engine`]): the time from when a URB's last packet
    /// was due on the bus to when the engine reaped it. Last value, maximum, sum and count.
    pub reap_latency_last_ns: AtomicU64,
    pub reap_latency_max_ns: AtomicU64,
    pub reap_latency_sum_ns: AtomicU64,
    pub reap_latency_count: AtomicU64,
    /// How long every byte the device sent has been zero, ns (0 once a byte is not):
    /// digital silence, or a controller that reports lengths without writing data.
    pub all_zero_run_ns: AtomicU64,
    /// The longest such run so far, ns.
    pub all_zero_run_max_ns: AtomicU64,
}

impl CaptureCounters {
    pub(crate) fn count_error(&self, kind: UrbStatusKind) {
        self.packet_errors.fetch_add(1, Relaxed);
        let i = kind.packet_error_index().unwrap_or(UrbStatusKind::PACKET_ERRORS.len());
        self.errors_by_errno[i].fetch_add(1, Relaxed);
    }

    pub(crate) fn count_path(&self, path: TransferPath, buffer_len: usize) {
        match path {
            TransferPath::ZeroCopy => self.urbs_zerocopy.fetch_add(1, Relaxed),
            TransferPath::Copy => {
                self.kernel_copied_bytes.fetch_add(buffer_len as u64, Relaxed);
                self.urbs_copy.fetch_add(1, Relaxed)
            }
        };
    }

    pub(crate) fn count_latency(&self, ns: u64) {
        self.reap_latency_last_ns.store(ns, Relaxed);
        self.reap_latency_max_ns.fetch_max(ns, Relaxed);
        self.reap_latency_sum_ns.fetch_add(ns, Relaxed);
        self.reap_latency_count.fetch_add(1, Relaxed);
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut errors = BTreeMap::new();
        for (i, c) in self.errors_by_errno.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                let name = UrbStatusKind::PACKET_ERRORS.get(i).map_or("other", |k| k.name());
                errors.insert(name.to_string(), n);
            }
        }
        StatsSnapshot {
            urbs: self.urbs.load(Relaxed),
            urbs_zerocopy: self.urbs_zerocopy.load(Relaxed),
            urbs_copy: self.urbs_copy.load(Relaxed),
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            frames: self.frames.load(Relaxed),
            short_packets: self.short_packets.load(Relaxed),
            zero_length_packets: self.zero_length_packets.load(Relaxed),
            packet_errors: self.packet_errors.load(Relaxed),
            packet_errors_by_errno: errors,
            misaligned_packets: self.misaligned_packets.load(Relaxed),
            ring_drops: self.ring_drops.load(Relaxed),
            kernel_copied_bytes: self.kernel_copied_bytes.load(Relaxed),
            cpu_ns: self.cpu_ns.load(Relaxed),
            syscalls: self.syscalls.load(Relaxed),
            elapsed_ns: self.elapsed_ns.load(Relaxed),
            reap_latency_last_ns: self.reap_latency_last_ns.load(Relaxed),
            reap_latency_max_ns: self.reap_latency_max_ns.load(Relaxed),
            reap_latency_sum_ns: self.reap_latency_sum_ns.load(Relaxed),
            reap_latency_count: self.reap_latency_count.load(Relaxed),
            all_zero_run_ns: self.all_zero_run_ns.load(Relaxed),
            all_zero_run_max_ns: self.all_zero_run_max_ns.load(Relaxed),
        }
    }
}

/// A point-in-time copy of [`CaptureCounters`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub urbs: u64,
    pub urbs_zerocopy: u64,
    pub urbs_copy: u64,
    pub packets: u64,
    pub bytes: u64,
    pub frames: u64,
    pub short_packets: u64,
    pub zero_length_packets: u64,
    pub packet_errors: u64,
    pub packet_errors_by_errno: BTreeMap<String, u64>,
    pub misaligned_packets: u64,
    pub ring_drops: u64,
    pub kernel_copied_bytes: u64,
    pub cpu_ns: u64,
    pub syscalls: u64,
    pub elapsed_ns: u64,
    pub reap_latency_last_ns: u64,
    pub reap_latency_max_ns: u64,
    pub reap_latency_sum_ns: u64,
    pub reap_latency_count: u64,
    pub all_zero_run_ns: u64,
    pub all_zero_run_max_ns: u64,
}

/// How long an all-zero run must last before it is worth a word: longer than any pause a
/// signal has, shorter than a user waits before wondering.
pub const ALL_ZERO_NOTICE: std::time::Duration = std::time::Duration::from_secs(2);

impl StatsSnapshot {
    /// The failed packets by errno, a line each with what it means ("N x -EPROTO: ...").
    pub fn packet_error_lines(&self) -> Vec<String> {
        self.packet_errors_by_errno
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(name, n)| format!("{n} packets failed with -{name}: {}", counted_kind(name).meaning()))
            .collect()
    }

    /// A note when the device has sent only zero bytes for at least [`ALL_ZERO_NOTICE`]
    /// (now, or at some point of the capture), saying what it can mean.
    pub fn all_zero_note(&self) -> Option<String> {
        let (now, max) = (self.all_zero_run_ns as f64 / 1e9, self.all_zero_run_max_ns as f64 / 1e9);
        if max < ALL_ZERO_NOTICE.as_secs_f64() {
            return None;
        }
        let when = if now >= ALL_ZERO_NOTICE.as_secs_f64() {
            format!("for the last {now:.1} s")
        } else {
            format!("for {max:.1} s at a stretch")
        };
        Some(format!(
            "every byte the device sent was zero {when}: a muted or unplugged input sends digital \
             silence; if the input is live, the host controller may be reporting packet lengths \
             without having written the data (seen on some ARM controllers): try copy mode, and \
             report it with the bug report"
        ))
    }

    /// Mean reap latency in microseconds (0 before the first URB).
    pub fn reap_latency_mean_us(&self) -> f64 {
        if self.reap_latency_count == 0 {
            return 0.0;
        }
        self.reap_latency_sum_ns as f64 / self.reap_latency_count as f64 / 1000.0
    }

    /// Engine CPU time per MiB of payload, in microseconds.
    pub fn cpu_us_per_mib(&self) -> f64 {
        if self.bytes == 0 {
            return 0.0;
        }
        self.cpu_ns as f64 / 1000.0 / (self.bytes as f64 / (1 << 20) as f64)
    }
}

/// CPU time consumed by the calling thread, in ns.
pub fn thread_cpu_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}
