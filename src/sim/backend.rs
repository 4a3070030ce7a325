//! The in-process simulated device: a [`Backend`] with the kernel's usbfs semantics.
//!
//! - zero-copy: a URB buffer inside a region from [`SimBackend::map_dma`] is written in
//!   place at completion; the bytes after a short packet keep whatever they held.
//! - copy: any other buffer goes through a bounce buffer that is zeroed at submit and
//!   copied whole into the user buffer at reap, on the reaping thread (devio.c's
//!   `copy_urb_data_to_user` copies the whole buffer for iso).
//! - a buffer that starts in a region but overhangs it is refused with EINVAL;
//!   `usbfs_memory_mb` is enforced with ENOMEM on mmap and submit, counting what devio.c counts.
//! - faults: short packets, failed packets, disconnect; real-time pacing or as fast as possible.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;

use super::schedule::{Faults, Schedule};
use super::signal::{PcmTable, Signal, SignalError};
use super::verify::Verifier;
use crate::capture::{Backend, BackendError, BackendInfo, StreamConfig};
use crate::dma::{kernel_urb_overhead, Containment, MemoryLimit, Region, USB_MEMORY_STRUCT_BYTES};
use crate::dsp::{PcmFormat, SampleFormat};
use crate::usb::urb::IsoUrb;
use crate::usb::wake::{self, Wake};
use crate::usb::Speed;

/// The endpoint address the simulated device streams on.
pub const SIM_ENDPOINT: u8 = 0x81;

/// How the simulated device behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub signal: Signal,
    /// The stream format (a WAV signal brings its own).
    pub format: PcmFormat,
    pub speed: Speed,
    /// Packets every `interval` (micro)frames (2^(bInterval-1)).
    pub interval: u32,
    pub faults: Faults,
    /// Complete URBs at the bus's pace (true) or as fast as they are reaped (benchmarks).
    pub realtime: bool,
    /// The simulated `usbfs_memory_mb` (0 = unlimited).
    pub usbfs_memory_mb: u32,
    /// Whether the simulated kernel offers CAP_MMAP.
    pub can_mmap: bool,
    /// Make every mmap fail with this errno (e.g. EPERM, as on some Android kernels).
    pub mmap_error: Option<Errno>,
    /// Seed of the fault schedule.
    pub seed: u64,
    /// Model the controller's DMA as free for the CPU, as it is on real hardware: packets
    /// get their lengths and statuses but their bytes are not written (the buffer keeps what
    /// it held). For benchmarks of the engine's own cost; captures cannot be verified.
    /// Copy mode still pays the kernel's memset at submit and copy at reap.
    pub free_dma: bool,
    /// How far the device's clock is off, in parts per million (real time only): at
    /// `+500.0` its bus (micro)frames are 500 ppm shorter than the host's, so it sends
    /// 500 ppm more frames per host second than its nominal rate, like a real device whose
    /// crystal runs fast. 0 is the host's clock exactly. Must lie in -100000..=100000.
    pub clock_ppm: f64,
    /// Reads of the mapped pool count this many times slower than measured, as on a kernel
    /// that maps usbfs DMA memory uncached (1: as measured).
    pub mapping_slowdown: f64,
    /// How long opening the device takes (a real one spends it on control transfers with
    /// 1 s timeouts): the session's tests open slow devices with it.
    pub open_delay: Duration,
    /// How long releasing the device takes once a capture ends (a real one may take
    /// seconds to give its interface back to snd-usb-audio).
    pub release_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            signal: Signal::default(),
            format: PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 48_000 },
            speed: Speed::High,
            interval: 1,
            faults: Faults::default(),
            realtime: true,
            usbfs_memory_mb: 16,
            can_mmap: true,
            mmap_error: None,
            seed: 1,
            free_dma: false,
            clock_ppm: 0.0,
            mapping_slowdown: 1.0,
            open_delay: Duration::ZERO,
            release_delay: Duration::ZERO,
        }
    }
}

/// Why a simulated device could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error("simulated device: {0}")]
    Config(String),
}

/// A simulated device: its rendered signal and stream parameters. Hands out backends
/// (one per capture) and verifiers that replay what the device sends.
#[derive(Clone, Debug)]
pub struct SimDevice {
    cfg: SimConfig,
    table: Arc<PcmTable>,
    packet_bytes: u32,
}

impl SimDevice {
    pub fn new(cfg: SimConfig) -> Result<SimDevice, SimError> {
        if cfg.interval == 0 || cfg.interval > 1 << 15 {
            return Err(SimError::Config(format!("interval {} is outside 1..=32768 frames", cfg.interval)));
        }
        for (name, r) in [("short ratio", cfg.faults.short_ratio), ("error ratio", cfg.faults.error_ratio)] {
            if !(0.0..=1.0).contains(&r) {
                return Err(SimError::Config(format!("{name} {r} is outside 0..1")));
            }
        }
        if !(cfg.clock_ppm.is_finite() && cfg.clock_ppm.abs() <= 100_000.0) {
            return Err(SimError::Config(format!(
                "clock offset {} ppm is outside -100000..=100000",
                cfg.clock_ppm
            )));
        }
        let table = PcmTable::render(&cfg.signal, cfg.format)?;
        let f = table.format;
        if f.rate == 0 || f.channels == 0 {
            return Err(SimError::Config(format!("format {f} has no frames")));
        }
        let interval_us = u64::from(cfg.speed.frame_us()) * u64::from(cfg.interval);
        // Like a UAC device: room for the nominal frames rounded up, plus one.
        let nominal = (u64::from(f.rate) * interval_us).div_ceil(1_000_000);
        let packet_bytes = (nominal + 1) * f.frame_bytes() as u64;
        if packet_bytes > u64::from(crate::usb::urb::MAX_ISO_PACKET_BYTES) {
            return Err(SimError::Config(format!(
                "{f} needs {packet_bytes}-byte packets; the limit is 98304"
            )));
        }
        Ok(SimDevice { cfg, table: Arc::new(table), packet_bytes: packet_bytes as u32 })
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The stream as the engine sees it.
    pub fn stream(&self) -> StreamConfig {
        StreamConfig {
            endpoint: SIM_ENDPOINT,
            format: self.table.format,
            speed: self.cfg.speed,
            interval: self.cfg.interval,
            packet_len: self.packet_bytes,
        }
    }

    /// "sim (sine 1000 Hz, S16_LE 2 ch 48000 Hz)"
    pub fn name(&self) -> String {
        format!("sim ({}, {})", self.cfg.signal, self.table.format)
    }

    fn interval_us(&self) -> u32 {
        self.cfg.speed.frame_us() * self.cfg.interval
    }

    /// The packet schedule this device follows (the virtual USB/IP device shares it).
    pub(crate) fn schedule(&self) -> Schedule {
        Schedule::new(
            self.table.format,
            self.interval_us(),
            self.packet_bytes,
            self.cfg.faults,
            self.cfg.seed,
        )
    }

    /// A fresh backend: the device starts streaming from frame 0 of its signal.
    pub fn backend(&self) -> SimBackend {
        let frame_us = u64::from(self.cfg.speed.frame_us());
        SimBackend {
            frame_ns: frame_us as f64 * 1000.0 / (1.0 + self.cfg.clock_ppm * 1e-6),
            name: self.name(),
            cfg: self.cfg.clone(),
            table: Arc::clone(&self.table),
            schedule: self.schedule(),
            regions: Vec::new(),
            mem_used: 0,
            queue: VecDeque::with_capacity(256),
            bounce_free: Vec::new(),
            t0: None,
            next_frame: 0,
            stream_pos: 0,
            disconnect_frame: self.cfg.faults.disconnect_after_s.map(|s| (s * 1e6 / frame_us as f64) as u64),
            disconnected: false,
            syscalls: 0,
            late_urbs: 0,
        }
    }

    /// A verifier that replays this device's stream from frame 0.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(Arc::clone(&self.table), self.schedule())
    }
}

struct InFlight {
    urb: IsoUrb,
    bounce: Option<Vec<u8>>,
    first_frame: u64,
    mem: u64,
    cancelled: bool,
}

/// A running simulated device (see the module docs for the semantics it reproduces).
pub struct SimBackend {
    name: String,
    cfg: SimConfig,
    table: Arc<PcmTable>,
    schedule: Schedule,
    /// How long one bus (micro)frame lasts in host time, ns (`frame_us` scaled by `clock_ppm`).
    frame_ns: f64,
    /// Address ranges of the regions handed out by `map_dma`.
    regions: Vec<(usize, usize)>,
    /// Bytes counted against the simulated usbfs_memory_mb.
    mem_used: u64,
    queue: VecDeque<InFlight>,
    bounce_free: Vec<Vec<u8>>,
    t0: Option<Instant>,
    /// The bus (micro)frame the next packet is scheduled in.
    next_frame: u64,
    /// The stream frame the next packet starts with.
    stream_pos: u64,
    disconnect_frame: Option<u64>,
    disconnected: bool,
    syscalls: u64,
    late_urbs: u64,
}

impl SimBackend {
    /// URBs that were submitted after the bus had passed their slot (real time only).
    pub fn late_urbs(&self) -> u64 {
        self.late_urbs
    }

    /// Bytes currently counted against the simulated usbfs cap.
    pub fn usbfs_bytes_in_use(&self) -> u64 {
        self.mem_used
    }

    fn cap_bytes(&self) -> Option<u64> {
        (self.cfg.usbfs_memory_mb > 0).then(|| u64::from(self.cfg.usbfs_memory_mb) << 20)
    }

    fn charge(&mut self, bytes: u64) -> Result<(), Errno> {
        if self.cap_bytes().is_some_and(|cap| self.mem_used + bytes > cap) {
            return Err(Errno::ENOMEM);
        }
        self.mem_used += bytes;
        Ok(())
    }

    /// The kernel's `find_memory_area`: which path a buffer takes, or EINVAL if it overhangs.
    pub fn classify(&self, addr: usize, len: usize) -> Result<bool, Errno> {
        for &(start, rlen) in &self.regions {
            let end = start + rlen;
            if addr >= start && addr < end {
                return if addr + len <= end { Ok(true) } else { Err(Errno::EINVAL) };
            }
        }
        Ok(false)
    }

    fn now_frame(&self) -> u64 {
        self.t0.map_or(0, |t0| (t0.elapsed().as_nanos() as f64 / self.frame_ns) as u64)
    }

    fn due(&self, f: &InFlight) -> Option<Instant> {
        let t0 = self.t0?;
        let end = f.first_frame + (f.urb.packet_count() as u64) * u64::from(self.cfg.interval);
        Some(t0 + Duration::from_nanos((end as f64 * self.frame_ns).round() as u64))
    }

    /// The device side of a completion: fill the packets as the schedule says.
    fn fill(&mut self, f: &mut InFlight) {
        let fb = self.table.format.frame_bytes();
        let plen = f.urb.packet_len() as usize;
        let (descs, slot) = f.urb.device_view();
        let target: &mut [u8] = match &mut f.bounce {
            Some(b) => b.as_mut_slice(),
            None => slot,
        };
        for (i, d) in descs.iter_mut().enumerate() {
            let plan = self.schedule.next_packet();
            let off = i * plen;
            if plan.errno != 0 {
                let n = (plan.reported_bytes as usize).min(plen);
                if !self.cfg.free_dma {
                    target[off..off + n].fill(0xEE); // whatever a corrupted packet left behind
                }
                d.actual_length = plan.reported_bytes;
                d.status = (-plan.errno) as u32;
            } else {
                let n = plan.frames as usize * fb;
                if !self.cfg.free_dma {
                    self.table.copy_frames(self.stream_pos, &mut target[off..off + n]);
                }
                d.actual_length = n as u32;
                d.status = 0;
            }
            self.stream_pos += u64::from(plan.frames);
        }
        if let Some(b) = &f.bounce {
            // The copy path's copy_to_user: the whole buffer, gaps (zeros) included.
            let n = f.urb.buffer_len();
            f.urb.device_view().1[..n].copy_from_slice(&b[..n]);
        }
    }

    fn finish(&mut self, mut f: InFlight, status: i32) -> IsoUrb {
        if status != 0 {
            for d in f.urb.device_view().0.iter_mut() {
                d.actual_length = 0;
                d.status = status as u32;
            }
        }
        f.urb.complete(status, f.first_frame as i32);
        self.mem_used -= f.mem;
        if let Some(b) = f.bounce.take() {
            self.bounce_free.push(b);
        }
        f.urb
    }
}

impl Drop for SimBackend {
    fn drop(&mut self) {
        std::thread::sleep(self.cfg.release_delay);
    }
}

impl Backend for SimBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: self.name.clone(),
            speed: self.cfg.speed,
            can_mmap: self.cfg.can_mmap,
            simulated: true,
        }
    }

    fn simulated_mapping_slowdown(&self) -> f64 {
        self.cfg.mapping_slowdown
    }

    fn memory_limit(&self, app_cap_bytes: u64) -> MemoryLimit {
        MemoryLimit { usbfs_memory_mb: Some(self.cfg.usbfs_memory_mb), app_cap_bytes }
    }

    fn map_dma(&mut self, len: usize) -> Result<Region, Errno> {
        if let Some(e) = self.cfg.mmap_error {
            return Err(e);
        }
        if !self.cfg.can_mmap {
            return Err(Errno::ENODEV);
        }
        let region = Region::map_anonymous(len)?;
        self.charge(region.len() as u64 + USB_MEMORY_STRUCT_BYTES)?;
        self.regions.push((region.addr(), region.len()));
        Ok(region)
    }

    fn submit(&mut self, urb: IsoUrb) -> Result<(), (IsoUrb, BackendError)> {
        self.syscalls += 1;
        if self.disconnected {
            return Err((urb, BackendError::Disconnected));
        }
        let len = urb.buffer_len();
        debug_assert_eq!(urb.slot().region().contains(urb.slot().addr(), len), Containment::Inside);
        let zero_copy = match self.classify(urb.slot().addr(), len) {
            Ok(z) => z,
            Err(e) => return Err((urb, BackendError::from_errno("SUBMITURB", e))),
        };
        let mem = kernel_urb_overhead(urb.packet_count()) + if zero_copy { 0 } else { len as u64 };
        if let Err(e) = self.charge(mem) {
            return Err((urb, BackendError::from_errno("SUBMITURB", e)));
        }
        let bounce = (!zero_copy).then(|| {
            // The kernel allocates and zeroes a bounce buffer per submit "so that the gaps
            // don't leak kernel data"; we reuse allocations but pay for the memset.
            let mut b = self.bounce_free.pop().unwrap_or_default();
            b.clear();
            b.resize(len, 0);
            b
        });
        self.t0.get_or_insert_with(Instant::now);
        let now = if self.cfg.realtime { self.now_frame() } else { self.next_frame };
        if self.cfg.realtime && now > self.next_frame + 1 {
            self.late_urbs += 1;
        }
        let first_frame = self.next_frame;
        self.next_frame += urb.packet_count() as u64 * u64::from(self.cfg.interval);
        self.queue.push_back(InFlight { urb, bounce, first_frame, mem, cancelled: false });
        Ok(())
    }

    fn reap(&mut self, timeout: Duration, wake: Option<&Wake>) -> Result<Option<IsoUrb>, BackendError> {
        self.syscalls += 1;
        let mut waited = false;
        loop {
            let Some(head) = self.queue.front() else {
                if self.disconnected {
                    return Err(BackendError::Disconnected);
                }
                if !timeout.is_zero() {
                    wake::sleep(wake, timeout);
                }
                return Ok(None);
            };
            if head.cancelled {
                let f = self.queue.pop_front().expect("head exists");
                return Ok(Some(self.finish(f, -libc::ENOENT)));
            }
            if self.disconnected {
                let f = self.queue.pop_front().expect("head exists");
                return Ok(Some(self.finish(f, -libc::ESHUTDOWN)));
            }
            if self.cfg.realtime {
                let due = self.due(head).expect("t0 is set at the first submit");
                let now = Instant::now();
                if now < due {
                    if waited || timeout.is_zero() {
                        return Ok(None);
                    }
                    self.syscalls += 1; // the poll()
                    if wake::sleep(wake, (due - now).min(timeout)) {
                        return Ok(None);
                    }
                    waited = true;
                    continue;
                }
            }
            let mut f = self.queue.pop_front().expect("head exists");
            let end = f.first_frame + (f.urb.packet_count() as u64) * u64::from(self.cfg.interval);
            if self.disconnect_frame.is_some_and(|d| end > d) {
                self.disconnected = true;
                return Ok(Some(self.finish(f, -libc::ESHUTDOWN)));
            }
            self.fill(&mut f);
            return Ok(Some(self.finish(f, 0)));
        }
    }

    fn discard_all(&mut self) {
        for f in &mut self.queue {
            self.syscalls += 1;
            f.cancelled = true;
        }
    }

    fn in_flight(&self) -> usize {
        self.queue.len()
    }

    fn syscalls(&self) -> u64 {
        self.syscalls
    }
}

impl SimDevice {
    /// The samples the device sends, one period of its signal (for
    /// [`check_contiguous`](super::verify::check_contiguous) on a capture that starts mid-stream).
    pub fn table(&self) -> Arc<PcmTable> {
        Arc::clone(&self.table)
    }

    /// Bytes the device puts in a packet at most.
    pub fn packet_bytes(&self) -> u32 {
        self.packet_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::{BufferPool, PoolLayout};

    fn device(cfg: SimConfig) -> SimDevice {
        SimDevice::new(SimConfig { realtime: false, ..cfg }).unwrap()
    }

    #[test]
    fn clock_ppm_scales_when_urbs_complete_and_bad_offsets_are_refused() {
        for (ppm, want_ns) in
            [(0.0, 1_000_000.0), (500.0, 1_000_000.0 / 1.0005), (-2000.0, 1_000_000.0 / 0.998)]
        {
            let d = SimDevice::new(SimConfig { clock_ppm: ppm, ..SimConfig::default() }).unwrap();
            let mut b = d.backend();
            let slots = BufferPool::heap(PoolLayout::new(8 * 28, 1)).into_slots();
            b.submit(IsoUrb::new(0, 0x81, slots.into_iter().next().unwrap(), 8, 28).unwrap())
                .map_err(|(_, e)| e)
                .unwrap();
            // 8 packets of 125 us: 1 ms on the device's clock.
            let t0 = b.t0.unwrap();
            let due = b.due(b.queue.front().unwrap()).unwrap() - t0;
            assert!((due.as_nanos() as f64 - want_ns).abs() < 1.0, "{ppm} ppm: {due:?}");
        }
        for ppm in [f64::NAN, 200_000.0] {
            assert!(SimDevice::new(SimConfig { clock_ppm: ppm, ..SimConfig::default() }).is_err());
        }
    }

    #[test]
    fn high_speed_48k_stereo_packets_have_room_for_one_more_frame() {
        let d = device(SimConfig::default());
        assert_eq!(d.stream().packet_len, 7 * 4);
    }

    #[test]
    fn buffers_outside_regions_take_the_copy_path_and_overhangs_are_einval() {
        let d = device(SimConfig::default());
        let mut b = d.backend();
        let r = b.map_dma(4096).unwrap();
        assert_eq!(b.classify(r.addr(), 4096), Ok(true));
        assert_eq!(b.classify(r.addr() + 4000, 96), Ok(true));
        assert_eq!(b.classify(r.addr() + 4000, 97), Err(Errno::EINVAL));
        assert_eq!(b.classify(r.addr() + 4096, 10), Ok(false));
        let heap = Region::heap(10);
        assert_eq!(b.classify(heap.addr(), 10), Ok(false));
    }

    #[test]
    fn mmap_and_submit_fail_with_enomem_over_the_simulated_cap() {
        let d = device(SimConfig { usbfs_memory_mb: 1, ..SimConfig::default() });
        let mut b = d.backend();
        assert_eq!(b.map_dma(2 << 20).unwrap_err(), Errno::ENOMEM);
        let _ok = b.map_dma(512 << 10).unwrap();
        assert_eq!(b.map_dma(512 << 10).unwrap_err(), Errno::ENOMEM);
        // copy mode: each submit charges its bounce buffer.
        let slots = BufferPool::heap(PoolLayout::new(128 * 4096, 2)).into_slots();
        let mut results = Vec::new();
        for (i, s) in slots.into_iter().enumerate() {
            results.push(b.submit(IsoUrb::new(i, 0x81, s, 128, 4096).unwrap()).map_err(|(_, e)| e));
        }
        assert_eq!(results[0], Err(BackendError::NoMemory { op: "SUBMITURB" }));
    }

    #[test]
    fn copy_path_gaps_are_zeros_and_zero_copy_gaps_are_stale() {
        let cfg =
            SimConfig { faults: Faults { short_ratio: 1.0, ..Faults::default() }, ..SimConfig::default() };
        let d = device(cfg);
        for zero_copy in [false, true] {
            let mut b = d.backend();
            let layout = PoolLayout::new(8 * 28, 1);
            let mut pool = if zero_copy {
                BufferPool::mapped(layout, |l| b.map_dma(l)).unwrap()
            } else {
                BufferPool::heap(layout)
            };
            pool.prefill(&[0xA5]);
            let slot = pool.into_slots().remove(0);
            b.submit(IsoUrb::new(0, 0x81, slot, 8, 28).unwrap()).map_err(|(_, e)| e).unwrap();
            let urb = b.reap(Duration::ZERO, None).unwrap().unwrap();
            let gap_bytes: Vec<u8> = urb
                .packets()
                .flat_map(|p| {
                    urb.raw_buffer()[p.offset + p.actual as usize..p.offset + p.requested as usize].to_vec()
                })
                .collect();
            assert!(!gap_bytes.is_empty());
            let want = if zero_copy { 0xA5 } else { 0 };
            assert!(gap_bytes.iter().all(|&g| g == want), "zero_copy={zero_copy}: {gap_bytes:?}");
        }
    }

    #[test]
    fn discard_returns_every_urb_cancelled_and_disconnect_ends_with_enodev() {
        let cfg = SimConfig {
            faults: Faults { disconnect_after_s: Some(0.002), ..Faults::default() },
            ..SimConfig::default()
        };
        let d = device(cfg);
        let mut b = d.backend();
        let slots = BufferPool::heap(PoolLayout::new(8 * 28, 3)).into_slots();
        for (i, s) in slots.into_iter().enumerate() {
            b.submit(IsoUrb::new(i, 0x81, s, 8, 28).unwrap()).map_err(|(_, e)| e).unwrap();
        }
        // 8 packets of 125 us = 1 ms per URB: the first two complete, the third crosses 2 ms.
        assert_eq!(b.reap(Duration::ZERO, None).unwrap().unwrap().status(), 0);
        assert_eq!(b.reap(Duration::ZERO, None).unwrap().unwrap().status(), 0);
        assert_eq!(b.reap(Duration::ZERO, None).unwrap().unwrap().status(), -libc::ESHUTDOWN);
        assert_eq!(b.reap(Duration::ZERO, None).unwrap_err(), BackendError::Disconnected);
        assert_eq!(b.usbfs_bytes_in_use(), 0);

        let mut b = device(SimConfig::default()).backend();
        let slots = BufferPool::heap(PoolLayout::new(8 * 28, 2)).into_slots();
        for (i, s) in slots.into_iter().enumerate() {
            b.submit(IsoUrb::new(i, 0x81, s, 8, 28).unwrap()).map_err(|(_, e)| e).unwrap();
        }
        b.discard_all();
        for _ in 0..2 {
            assert_eq!(b.reap(Duration::ZERO, None).unwrap().unwrap().status(), -libc::ENOENT);
        }
        assert_eq!(b.in_flight(), 0);
    }
}
