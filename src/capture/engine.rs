//! The engine: sets a capture up (plan, pool, preflight, fallback), then runs the capture
//! thread that reaps URBs, resubmits, walks packets, copies the valid bytes out of the
//! slot, decodes, and pushes whole frames into SPSC rings without ever blocking.
//!
//! For the UI it also keeps, at a cost of a few relaxed atomic stores per URB: each slot's
//! state ([`SlotStates`]), a raw copy of one URB on request ([`RawTap`]), and the reap
//! latency. usbfs gives no completion timestamp, so the latency is measured from when the
//! URB's last packet was due on the bus (streaming start + packets so far x packet period)
//! to the reap; it includes the engine's own wake-up delay and any drift between the bus
//! clock and the host's.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use nix::errno::Errno;
use ringbuf::traits::{Observer, Producer};
use ringbuf::HeapProd;

use super::monitor::{raw_tap, RawSource, RawTap, SlotState, SlotStates};
use super::plan::{ModeRequest, UrbPlan};
use super::stats::{thread_cpu_ns, CaptureCounters, StatsSnapshot, PACKET_ERROR_COUNTERS};
use crate::dma::probe::{self, ReadSpeed};
use crate::dma::{
    human_bytes, BudgetError, BufferPool, MemoryLimit, MemoryPlan, PoolLayout, TransferPath,
    USBFS_MEMORY_MB_PATH,
};
use crate::dsp::{decode_into, PcmFormat};
use crate::fix::Fix;
use crate::usb::backend::{Backend, BackendError, BackendInfo, StreamConfig};
use crate::usb::urb::{IsoUrb, PacketStatus, UrbError, UrbStatusKind};
use crate::usb::wake::{Wake, WakeError};

/// How long one wait for a completion lasts at most (a stop or an attach cuts it short
/// through the wake-up fd; the engine also looks at its publishing and no-data clocks
/// after each wait).
const REAP_WAIT: Duration = Duration::from_millis(20);
/// How long teardown waits for discarded URBs to come back.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);

/// A consumer's ring. The engine pushes whole frames only; a full ring drops and counts.
pub enum Sink {
    /// The valid bytes as the device sent them (recording, verification).
    Bytes(HeapProd<u8>),
    /// Decoded interleaved samples (scope, audio).
    Frames(HeapProd<f32>),
}

/// How to capture.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    pub mode: ModeRequest,
    /// Target duration of one URB.
    pub urb_ms: f64,
    /// Target audio queued in the kernel.
    pub queue_ms: f64,
    /// Fixed packets per URB (overrides `urb_ms`).
    pub packets_per_urb: Option<usize>,
    /// Fixed URBs in flight (overrides `queue_ms`).
    pub urbs: Option<usize>,
    /// isoscope's own cap on its buffer memory.
    pub app_cap_bytes: u64,
    /// Fill every buffer with this pattern before streaming (to see stale bytes).
    pub prefill: Option<Vec<u8>>,
    /// End the capture with [`CaptureError::NoData`] after this long without one valid byte
    /// (every packet failed or empty, or no URB completing). `None`: never.
    pub no_data_timeout: Option<Duration>,
}

/// The default [`CaptureConfig::no_data_timeout`].
pub const DEFAULT_NO_DATA_TIMEOUT: Duration = Duration::from_secs(2);

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            mode: ModeRequest::Auto,
            urb_ms: 4.0,
            queue_ms: 32.0,
            packets_per_urb: None,
            urbs: None,
            app_cap_bytes: MemoryLimit::DEFAULT_APP_CAP,
            prefill: None,
            no_data_timeout: Some(DEFAULT_NO_DATA_TIMEOUT),
        }
    }
}

/// What a capture was set up with.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CaptureInfo {
    pub device: BackendInfo,
    pub stream: StreamConfig,
    pub plan: UrbPlan,
    pub memory: MemoryPlan,
    pub limit: MemoryLimit,
    /// The path every URB takes.
    pub path: TransferPath,
    /// Why zero-copy was not used in auto mode, if it was not.
    pub fallback: Option<String>,
    /// How fast the mapped pool read against heap memory, measured before streaming
    /// (zero-copy pools only; see [`crate::dma::probe`]).
    pub mapping_read: Option<ReadSpeed>,
}

/// Why a capture could not start or had to end.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    #[error("{device}: {error}")]
    Budget { device: String, error: BudgetError },
    #[error("{device}: zero-copy capture is not available: {reason}")]
    ZeroCopyUnavailable { device: String, reason: String },
    #[error("{device}: cannot build iso URBs: {error}")]
    Urb { device: String, error: UrbError },
    /// `detail` is what the numbers and the device's surroundings add to the backend's
    /// error; `fix` what to change.
    #[error("{device}: {error}{detail}")]
    Device { device: String, error: BackendError, detail: String, fix: Option<Fix> },
    #[error("{device}: device disconnected. What was captured so far is kept; reconnect the device and start again")]
    Disconnected { device: String },
    #[error("{device}: no valid data for {:.1} s: {}. What was captured before is kept", .window.as_secs_f64(), no_data_detail(.packets, .failed, .errno))]
    NoData {
        device: String,
        /// How long nothing valid came.
        window: Duration,
        /// Packets completed in that time.
        packets: u64,
        /// Of those, packets that completed with an error status.
        failed: u64,
        /// The most common packet errno (positive) among them, if any failed.
        errno: Option<i32>,
    },
    #[error("cannot start the capture thread: {0}")]
    Thread(String),
    #[error(transparent)]
    Wake(#[from] WakeError),
    #[error("cannot add a consumer to the capture: {0}")]
    Sinks(String),
}

/// What [`CaptureError::NoData`] says about the packets of its window.
fn no_data_detail(packets: &u64, failed: &u64, errno: &Option<i32>) -> String {
    match (*packets, *failed, *errno) {
        (0, _, _) => "no URB completed: the device or the host controller stopped completing \
                      transfers. Unplug and replug the device"
            .to_string(),
        (n, 0, _) => format!(
            "all {n} packets were empty (0 bytes, status 0): the device streams but sends no samples \
             (its clock may not be locked, or the input is not active). Try another rate or alt setting"
        ),
        (n, f, Some(e)) => {
            let kind = UrbStatusKind::from_errno(e);
            format!("{f} of {n} packets failed, most with -{} ({e}): {}", kind.name(), kind.meaning())
        }
        (n, f, None) => format!("{f} of {n} packets failed and the rest were empty"),
    }
}

/// What the capture holds of usbfs memory, to tell the causes of an ENOMEM apart (the
/// kernel says ENOMEM for its cap and for a failed allocation alike, and does not export
/// the machine-wide usage: only our own share is known).
#[derive(Clone, Copy, Debug)]
struct MemoryUse {
    /// Bytes this capture's plan counts against usbfs_memory_mb.
    ours: u64,
    /// The cap in MiB (0: unlimited), if readable.
    usbfs_memory_mb: Option<u32>,
    path: TransferPath,
    /// Buffer bytes per URB (what copy mode kmallocs for each one).
    urb_bytes: usize,
}

/// What the numbers say caused an ENOMEM from the data path, and what to change.
fn enomem_cause(m: MemoryUse) -> (String, Fix) {
    let kmalloc = match m.path {
        TransferPath::Copy => format!(
            "; in copy mode the kernel allocates a physically contiguous {} buffer for every URB it \
             submits, which fails when memory is fragmented (zero-copy allocates its buffers once, at \
             start)",
            human_bytes(m.urb_bytes as u64)
        ),
        TransferPath::ZeroCopy => String::new(),
    };
    let copy = m.path == TransferPath::Copy;
    match m.usbfs_memory_mb {
        Some(0) => (
            format!(
                ". usbfs_memory_mb is 0 (unlimited), so this is not the usbfs cap: the kernel could not \
                 allocate the memory{kmalloc}"
            ),
            if copy { Fix::ZeroCopyMode } else { Fix::SmallerPlan { raise_cap_mb: None } },
        ),
        Some(mb) if m.ours < u64::from(mb) << 20 => (
            format!(
                ". isoscope's share is {} of the {mb} MiB usbfs cap, so either other usbfs programs hold \
                 the rest (the cap is one for the whole machine, and the kernel does not say who uses it), \
                 or the kernel could not allocate the memory{kmalloc}",
                human_bytes(m.ours)
            ),
            if copy { Fix::ZeroCopyMode } else { Fix::FreeUsbfsMemory { raise_cap_mb: (mb * 2).max(16) } },
        ),
        cap => (
            format!(
                ". The usbfs memory cap (usbfs_memory_mb{}) is shared by every usbfs user on the machine \
                 and isoscope's plan ({}) needs all of it",
                cap.map(|mb| format!(" = {mb} MiB")).unwrap_or_default(),
                human_bytes(m.ours)
            ),
            Fix::SmallerPlan { raise_cap_mb: cap.map(|mb| (mb * 2).max(16)) },
        ),
    }
}

impl CaptureError {
    /// `note` is what the backend's surroundings add (see [`Backend::explain`]).
    fn from_backend(device: &str, e: BackendError, memory: MemoryUse, note: Option<String>) -> CaptureError {
        let (mut detail, fix) = match e {
            BackendError::Disconnected => return CaptureError::Disconnected { device: device.to_string() },
            BackendError::NoMemory { .. } => {
                let (detail, fix) = enomem_cause(memory);
                (detail, Some(fix))
            }
            BackendError::Os { errno: Errno::EBUSY, .. } => {
                (". Another program or kernel driver holds the interface".into(), e.fix())
            }
            BackendError::Os { .. } => (String::new(), e.fix()),
        };
        if let Some(note) = note {
            detail.push_str(&note);
        }
        CaptureError::Device { device: device.to_string(), error: e, detail, fix }
    }

    /// What to change, where there is a remedy.
    pub fn fix(&self) -> Option<Fix> {
        match self {
            CaptureError::Budget { error, .. } => error.fix(),
            CaptureError::ZeroCopyUnavailable { .. } => Some(Fix::CopyMode),
            CaptureError::Device { fix, .. } => *fix,
            CaptureError::NoData { packets, failed: 0, .. } if *packets > 0 => Some(Fix::OtherAltSetting),
            _ => None,
        }
    }
}

/// Whether every byte of `b` is zero. Stops at the first 64-byte block holding another
/// byte, so live audio costs one block; a silent URB is read once, in word-sized steps.
fn all_zero(b: &[u8]) -> bool {
    let blocks = b.chunks_exact(64);
    let rest = blocks.remainder();
    blocks.into_iter().all(|block| {
        block.chunks_exact(8).fold(0u64, |acc, w| acc | u64::from_ne_bytes(w.try_into().unwrap_or([1; 8])))
            == 0
    }) && rest.iter().all(|&x| x == 0)
}

/// Commands to the capture thread (a stop is not one: see `Control`).
#[derive(Debug)]
pub enum Command {
    /// Start pushing into one more sink (see [`Capture::attach`]).
    Attach(Sink),
}

/// What the controlling thread and the capture thread share to stop and wake it.
#[derive(Debug)]
struct Control {
    /// Set once by [`Capture::request_stop`]; the capture thread reads it on every turn, so a
    /// stop cannot be lost or refused the way a message into a full queue can.
    stop: AtomicBool,
    /// Polled with the device's fd: written after a stop or a command, so the capture thread
    /// acts at once instead of when its wait for a completion ends.
    wake: Wake,
}

/// The most sinks a capture pushes into at once (their list is allocated before streaming).
pub const MAX_SINKS: usize = 8;

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Bytes(r) => write!(f, "Sink::Bytes({} bytes)", r.capacity()),
            Sink::Frames(r) => write!(f, "Sink::Frames({} samples)", r.capacity()),
        }
    }
}

impl Sink {
    /// Whether a consumer still holds the other end.
    fn has_consumer(&self) -> bool {
        match self {
            Sink::Bytes(r) => r.read_is_held(),
            Sink::Frames(r) => r.read_is_held(),
        }
    }
}

/// What the capture thread reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// The capture ended on request; URBs in flight were discarded and reaped.
    Stopped,
    /// The capture ended on its own; the stats and everything already pushed are kept.
    Failed(CaptureError),
}

/// A running capture: the engine thread and the handles to talk to it.
pub struct Capture {
    info: CaptureInfo,
    /// Sinks the capture thread let go of, dropped here so it never frees memory.
    retired: Receiver<Sink>,
    counters: Arc<CaptureCounters>,
    slots: SlotStates,
    raw: RawTap,
    control: Arc<Control>,
    commands: Sender<Command>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

/// Why zero-copy could not be set up.
enum ZeroCopyRefusal {
    NoCapMmap,
    Budget(BudgetError),
    Mmap(Errno, usize),
}

impl ZeroCopyRefusal {
    fn reason(&self) -> String {
        match self {
            ZeroCopyRefusal::NoCapMmap => {
                "the kernel offers no usbfs mmap (CAP_MMAP missing; it needs Linux 4.6 or later)".into()
            }
            ZeroCopyRefusal::Budget(e) => e.to_string(),
            ZeroCopyRefusal::Mmap(Errno::ENOMEM, len) => format!(
                "mmap of {len} bytes on the usbfs fd failed with ENOMEM: the machine-wide usbfs \
                 memory cap is used up (other programs count too) or no contiguous memory was free; \
                 raise {USBFS_MEMORY_MB_PATH} or use fewer or smaller URBs"
            ),
            ZeroCopyRefusal::Mmap(e @ (Errno::EPERM | Errno::EACCES), len) => format!(
                "mmap of {len} bytes on the usbfs fd failed with {e}: the device node must be open \
                 read-write (check its permissions and the udev rule)"
            ),
            ZeroCopyRefusal::Mmap(e, len) => format!("mmap of {len} bytes on the usbfs fd failed with {e}"),
        }
    }

    fn into_error(self, device: &str) -> CaptureError {
        match self {
            ZeroCopyRefusal::Budget(error) => CaptureError::Budget { device: device.to_string(), error },
            other => CaptureError::ZeroCopyUnavailable { device: device.to_string(), reason: other.reason() },
        }
    }
}

fn zero_copy_pool<B: Backend>(
    backend: &mut B,
    layout: PoolLayout,
    plan: &UrbPlan,
    limit: &MemoryLimit,
) -> Result<BufferPool, ZeroCopyRefusal> {
    if !backend.info().can_mmap {
        return Err(ZeroCopyRefusal::NoCapMmap);
    }
    layout
        .plan(TransferPath::ZeroCopy, plan.urbs_in_flight, plan.packets_per_urb)
        .check(limit)
        .map_err(ZeroCopyRefusal::Budget)?;
    BufferPool::mapped(layout, |len| backend.map_dma(len).map_err(|e| ZeroCopyRefusal::Mmap(e, len)))
}

type Prepared<B> = (Worker<B>, CaptureInfo, Sender<Command>, Receiver<Event>, RawTap, Receiver<Sink>);

/// Everything before streaming, on the caller's thread: the plan, the pool (zero-copy,
/// copy, or the fallback), the preflight budget check, the URBs and their first submission.
fn prepare<B: Backend>(
    mut backend: B,
    stream: StreamConfig,
    cfg: &CaptureConfig,
    sinks: Vec<Sink>,
    urb_limit: Option<u64>,
) -> Result<Prepared<B>, CaptureError> {
    if sinks.len() > MAX_SINKS {
        return Err(CaptureError::Sinks(format!(
            "{} sinks asked for; a capture feeds at most {MAX_SINKS}",
            sinks.len()
        )));
    }
    let control = Arc::new(Control { stop: AtomicBool::new(false), wake: Wake::new()? });
    let mut sinks = sinks;
    sinks.reserve_exact(MAX_SINKS - sinks.len());
    let device = backend.info();
    let name = device.name.clone();
    let plan = UrbPlan::for_stream(&stream, cfg.urb_ms, cfg.queue_ms, cfg.packets_per_urb, cfg.urbs);
    let limit = backend.memory_limit(cfg.app_cap_bytes);
    let layout = PoolLayout::new(plan.packets_per_urb * stream.packet_len as usize, plan.total_urbs());

    let (pool, fallback) = match cfg.mode {
        ModeRequest::Copy => (BufferPool::heap(layout), None),
        ModeRequest::ZeroCopy => {
            (zero_copy_pool(&mut backend, layout, &plan, &limit).map_err(|r| r.into_error(&name))?, None)
        }
        ModeRequest::Auto => match zero_copy_pool(&mut backend, layout, &plan, &limit) {
            Ok(pool) => (pool, None),
            Err(why) => (BufferPool::heap(layout), Some(why.reason())),
        },
    };
    // Read the mapped pool once against the heap: an uncached mapping (some ARM kernels)
    // makes zero-copy dearer than the copy it saves, and auto then takes copy mode.
    let mapping_read = probe::measure(&pool).map(|s| s.scaled(backend.simulated_mapping_slowdown()));
    let (mut pool, fallback) = match mapping_read.and_then(|s| s.too_slow()) {
        Some(why) if cfg.mode == ModeRequest::Auto => (BufferPool::heap(layout), Some(why)),
        _ => (pool, fallback),
    };
    let memory = layout.plan(pool.path(), plan.urbs_in_flight, plan.packets_per_urb);
    memory.check(&limit).map_err(|error| CaptureError::Budget { device: name.clone(), error })?;
    if let Some(pattern) = &cfg.prefill {
        pool.prefill(pattern);
    }
    let path = pool.path();

    let mut urbs = Vec::with_capacity(plan.total_urbs());
    for (id, slot) in pool.into_slots().into_iter().enumerate() {
        let urb = IsoUrb::new(id, stream.endpoint, slot, plan.packets_per_urb, stream.packet_len)
            .map_err(|error| CaptureError::Urb { device: name.clone(), error })?;
        urbs.push(urb);
    }
    let spare = urbs.split_off(plan.urbs_in_flight);
    let slots = SlotStates::new(plan.total_urbs());
    let memory_use = MemoryUse {
        ours: memory.usbfs_bytes(),
        usbfs_memory_mb: limit.usbfs_memory_mb,
        path,
        urb_bytes: memory.urb_bytes,
    };
    let stream_t0 = Instant::now();
    for urb in urbs {
        let id = urb.id();
        backend.submit(urb).map_err(|(_, e)| {
            let note = backend.explain(&e);
            CaptureError::from_backend(&name, e, memory_use, note)
        })?;
        slots.set(id, SlotState::InFlight);
    }

    let info = CaptureInfo { device, stream, plan, memory, limit, path, fallback, mapping_read };
    let counters = Arc::new(CaptureCounters::default());
    // Room for as many attaches as the capture can take sinks: a bounded channel's slots
    // are allocated here, so receiving on the capture thread allocates nothing.
    let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(MAX_SINKS);
    let (retired_tx, retired_rx) = crossbeam_channel::bounded(MAX_SINKS);
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let max_bytes = plan.packets_per_urb * stream.packet_len as usize;
    let (tap, raw) = raw_tap(max_bytes, plan.packets_per_urb);
    let worker = Worker {
        slots,
        raw,
        stream_t0,
        urb_period_ns: u64::from(stream.packet_period_us()) * 1000 * plan.packets_per_urb as u64,
        urbs_due: 0,
        backend,
        name,
        format: stream.format,
        sinks,
        spare,
        staging: Vec::with_capacity(max_bytes),
        scratch: vec![0.0; max_bytes / stream.format.sample.bytes()],
        counters,
        control,
        commands: cmd_rx,
        events: ev_tx,
        retired: retired_tx,
        urb_limit,
        no_data_timeout: cfg.no_data_timeout,
        quiet: QuietWindow::new(stream_t0),
        zero_since: None,
        memory_use,
    };
    Ok((worker, info, cmd_tx, ev_rx, tap, retired_rx))
}

impl Capture {
    /// Sets up and starts a capture of `stream` on `backend`, pushing into `sinks`.
    ///
    /// Everything that can be checked before streaming is checked here, on the caller's
    /// thread: the memory budget (DESIGN invariant 3), zero-copy availability (falling back
    /// to copy mode in `auto`), URB limits, and the first submissions.
    pub fn start<B: Backend>(
        backend: B,
        stream: StreamConfig,
        cfg: &CaptureConfig,
        sinks: Vec<Sink>,
    ) -> Result<Capture, CaptureError> {
        let (worker, info, commands, events, raw, retired) = prepare(backend, stream, cfg, sinks, None)?;
        let counters = Arc::clone(&worker.counters);
        let control = Arc::clone(&worker.control);
        let slots = worker.slots.clone();
        let thread = std::thread::Builder::new()
            .name("isoscope-capture".into())
            .spawn(move || worker.run())
            .map_err(|e| CaptureError::Thread(e.to_string()))?;
        Ok(Capture { info, retired, counters, slots, raw, control, commands, events, thread: Some(thread) })
    }

    /// Runs a capture on the calling thread until `urbs` URBs were delivered (or it ends),
    /// then tears it down. The same engine as [`Capture::start`]; for benchmarks and
    /// measurements that want the engine thread's own clock.
    pub fn run_blocking<B: Backend>(
        backend: B,
        stream: StreamConfig,
        cfg: &CaptureConfig,
        sinks: Vec<Sink>,
        urbs: u64,
    ) -> Result<(CaptureInfo, StatsSnapshot), CaptureError> {
        let (worker, info, _commands, events, _raw, _retired) =
            prepare(backend, stream, cfg, sinks, Some(urbs))?;
        let counters = Arc::clone(&worker.counters);
        worker.run();
        match events.try_recv() {
            Ok(Event::Failed(e)) => Err(e),
            _ => Ok((info, counters.snapshot())),
        }
    }

    pub fn info(&self) -> &CaptureInfo {
        &self.info
    }

    /// The live counters (shared with the engine thread).
    pub fn counters(&self) -> &Arc<CaptureCounters> {
        &self.counters
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.counters.snapshot()
    }

    /// Each URB slot's state, indexed by URB id (live).
    pub fn slot_states(&self) -> &SlotStates {
        &self.slots
    }

    /// Asks for and collects a raw copy of one reaped URB.
    pub fn raw_tap(&self) -> &RawTap {
        &self.raw
    }

    /// Events from the engine thread (at most one: how it ended).
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// Whether the engine thread has ended (stopped, failed or disconnected).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Adds a sink to a running capture: from the next URB on, its valid bytes (or decoded
    /// frames) go there too, for a consumer that comes and goes (a recording started from
    /// the UI, the audio monitor). The sink is let go of when its consumer is dropped, and
    /// the producer is dropped when the capture ends, which is how its consumer learns that
    /// nothing more will come (`write_is_held()` turns false). A capture feeds at most
    /// [`MAX_SINKS`] sinks; one more is dropped at once. Never blocks; errors when the
    /// capture has ended, or when [`MAX_SINKS`] attaches are still waiting for the capture
    /// thread to take them.
    pub fn attach(&self, sink: Sink) -> Result<(), CaptureError> {
        // Sinks let go of since the last call are freed here, not on the capture thread.
        while self.retired.try_recv().is_ok() {}
        let sent = self.commands.try_send(Command::Attach(sink)).map_err(|e| {
            CaptureError::Sinks(match e {
                TrySendError::Full(_) => format!(
                    "{MAX_SINKS} consumers are waiting to be added already; a capture feeds at most {MAX_SINKS}"
                ),
                TrySendError::Disconnected(_) => "the capture has ended; start it again".into(),
            })
        });
        self.control.wake.signal();
        sent
    }

    /// Asks the capture thread to stop and returns at once: it discards what is in flight,
    /// reaps it back (for at most two seconds) and releases the device on its own. For a
    /// caller that must not wait for that (a UI's thread); [`Capture::is_finished`] says
    /// when it is done, and [`Capture::stop`] (or dropping the capture) then joins it.
    pub fn request_stop(&self) {
        self.control.stop.store(true, Release);
        self.control.wake.signal();
    }

    /// Stops the capture and waits for the capture thread to end: URBs in flight are
    /// discarded and reaped, data already completed is still pushed, the device is
    /// released. Returns the final stats and, if the capture had already failed, why.
    pub fn stop(mut self) -> (StatsSnapshot, Option<CaptureError>) {
        self.shutdown();
        let failure = self.events.try_iter().find_map(|e| match e {
            Event::Failed(err) => Some(err),
            Event::Stopped => None,
        });
        (self.counters.snapshot(), failure)
    }

    fn shutdown(&mut self) {
        self.request_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Everything the capture thread owns; allocated before the thread starts.
struct Worker<B: Backend> {
    backend: B,
    slots: SlotStates,
    raw: RawSource,
    /// When the first URB was submitted: the bus time origin for reap latency.
    stream_t0: Instant,
    /// Bus time one URB covers.
    urb_period_ns: u64,
    /// URBs reaped with bus time (not cancelled) so far.
    urbs_due: u64,
    name: String,
    format: PcmFormat,
    sinks: Vec<Sink>,
    /// URBs out of the kernel, ready to submit.
    spare: Vec<IsoUrb>,
    /// The valid bytes of one URB, compacted (DESIGN invariant 6: a plain copy out of DMA
    /// memory before anything converts them).
    staging: Vec<u8>,
    /// Decoded samples of one URB.
    scratch: Vec<f32>,
    counters: Arc<CaptureCounters>,
    control: Arc<Control>,
    commands: Receiver<Command>,
    events: Sender<Event>,
    /// Where sinks whose consumer is gone are sent to be freed off this thread.
    retired: Sender<Sink>,
    /// Stop after delivering this many URBs (blocking runs).
    urb_limit: Option<u64>,
    /// See [`CaptureConfig::no_data_timeout`].
    no_data_timeout: Option<Duration>,
    /// The packets since valid data last came.
    quiet: QuietWindow,
    /// When the current run of URBs whose valid bytes are all zero began.
    zero_since: Option<Instant>,
    /// Our usbfs memory, for ENOMEM messages.
    memory_use: MemoryUse,
}

/// The packets completed since the last valid byte: how many, and how many failed with
/// each errno (in the order of [`UrbStatusKind::PACKET_ERRORS`], then "other"). Fixed size:
/// updated per packet without allocating.
struct QuietWindow {
    since: Instant,
    packets: u64,
    errors: [u64; PACKET_ERROR_COUNTERS],
    /// The last errno not in [`UrbStatusKind::PACKET_ERRORS`].
    other: i32,
}

impl QuietWindow {
    fn new(since: Instant) -> QuietWindow {
        QuietWindow { since, packets: 0, errors: [0; PACKET_ERROR_COUNTERS], other: 0 }
    }

    fn count_error(&mut self, kind: UrbStatusKind) {
        match kind.packet_error_index() {
            Some(i) => self.errors[i] += 1,
            None => {
                self.errors[UrbStatusKind::PACKET_ERRORS.len()] += 1;
                self.other = kind.errno();
            }
        }
    }

    /// The error for a window that has lasted `window` without valid data.
    fn error(&self, device: &str, window: Duration) -> CaptureError {
        let failed = self.errors.iter().sum();
        let errno = (failed > 0)
            .then(|| self.errors.iter().enumerate().max_by_key(|&(i, n)| (*n, std::cmp::Reverse(i))))
            .flatten()
            .map(|(i, _)| UrbStatusKind::PACKET_ERRORS.get(i).map_or(self.other, |k| k.errno()));
        CaptureError::NoData { device: device.to_string(), window, packets: self.packets, failed, errno }
    }
}

enum Outcome {
    Stopped,
    Failed(CaptureError),
}

impl<B: Backend> Worker<B> {
    /// The capture error for a backend error that ends the capture.
    fn failure(&self, e: BackendError) -> CaptureError {
        let note = self.backend.explain(&e);
        CaptureError::from_backend(&self.name, e, self.memory_use, note)
    }

    fn run(mut self) {
        let cpu0 = thread_cpu_ns();
        let t0 = Instant::now();
        let mut urbs_seen = 0u64;
        let outcome = 'streaming: loop {
            if self.control.stop.load(Acquire) {
                break Outcome::Stopped;
            }
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Attach(sink)) => {
                        // Within the capacity reserved before streaming: no allocation here.
                        if self.sinks.len() < MAX_SINKS {
                            self.sinks.push(sink);
                        } else {
                            let _ = self.retired.try_send(sink);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break 'streaming Outcome::Stopped,
                }
            }
            match self.backend.reap(REAP_WAIT, Some(&self.control.wake)) {
                Ok(Some(urb)) => {
                    if let Err(e) = self.on_reaped(urb, true) {
                        break Outcome::Failed(self.failure(e));
                    }
                    urbs_seen += 1;
                    if urbs_seen % 32 == 0 {
                        self.publish_times(cpu0, t0);
                    }
                    if self.urb_limit.is_some_and(|n| self.counters.urbs.load(Relaxed) >= n) {
                        break Outcome::Stopped;
                    }
                }
                Ok(None) => {
                    // Timed out or woken: whatever woke it is read at the top of the loop.
                    self.control.wake.clear();
                    self.publish_times(cpu0, t0);
                }
                Err(e) => break Outcome::Failed(self.failure(e)),
            }
            if let Some(limit) = self.no_data_timeout {
                let quiet = self.quiet.since.elapsed();
                if quiet >= limit {
                    break Outcome::Failed(self.quiet.error(&self.name, quiet));
                }
            }
        };
        self.teardown();
        self.publish_times(cpu0, t0);
        let _ = self.events.send(match outcome {
            Outcome::Stopped => Event::Stopped,
            Outcome::Failed(e) => Event::Failed(e),
        });
    }

    fn publish_times(&self, cpu0: u64, t0: Instant) {
        let c = &self.counters;
        c.cpu_ns.store(thread_cpu_ns().saturating_sub(cpu0), Relaxed);
        c.syscalls.store(self.backend.syscalls(), Relaxed);
        c.elapsed_ns.store(t0.elapsed().as_nanos() as u64, Relaxed);
    }

    /// Discards what is in flight and reaps it all back. URBs that completed before the
    /// discard still deliver their data, in order, until the first one that came back
    /// cancelled or empty: after that hole nothing more is delivered, so the stream a
    /// consumer receives ends cleanly and never has a gap in it. (With USB/IP, a URB the
    /// device completed while its unlink was in flight can come back empty while later
    /// ones still carry data.)
    fn teardown(&mut self) {
        self.backend.discard_all();
        let deadline = Instant::now() + TEARDOWN_WAIT;
        let mut hole = false;
        while self.backend.in_flight() > 0 && Instant::now() < deadline {
            match self.backend.reap(Duration::from_millis(10), None) {
                Ok(Some(urb)) => {
                    let empty = urb.packets().all(|p| p.data.is_empty());
                    hole |= urb.status() != 0 || empty;
                    if hole {
                        self.free(urb);
                    } else {
                        let _ = self.on_reaped(urb, false);
                    }
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }

    /// Handles one completed URB: resubmit a spare first (so the kernel's queue stays
    /// full), then deliver this one's valid bytes, then keep it as the next spare.
    fn on_reaped(&mut self, urb: IsoUrb, resubmit: bool) -> Result<(), BackendError> {
        let id = urb.id();
        self.slots.set(id, SlotState::Completed);
        let kind = UrbStatusKind::from_errno(urb.status());
        if kind.is_cancelled() {
            self.free(urb); // cancelled by discard: no data
            return Ok(());
        }
        if kind.is_disconnect() {
            self.free(urb);
            return Err(BackendError::Disconnected);
        }
        self.urbs_due += 1;
        let due = self.stream_t0 + Duration::from_nanos(self.urbs_due * self.urb_period_ns);
        self.counters.count_latency(Instant::now().saturating_duration_since(due).as_nanos() as u64);
        if resubmit {
            if let Some(mut next) = self.spare.pop() {
                next.prepare();
                let next_id = next.id();
                self.slots.set(next_id, SlotState::InFlight);
                if let Err((next, e)) = self.backend.submit(next) {
                    self.free(next);
                    self.deliver(&urb);
                    self.free(urb);
                    return Err(e);
                }
            }
        }
        self.deliver(&urb);
        self.free(urb);
        Ok(())
    }

    /// Keeps `urb` as a spare.
    fn free(&mut self, urb: IsoUrb) {
        self.slots.set(urb.id(), SlotState::Free);
        self.spare.push(urb);
    }

    /// Walks the packets at their fixed offsets and pushes the valid bytes (DESIGN invariant 1).
    fn deliver(&mut self, urb: &IsoUrb) {
        self.slots.set(urb.id(), SlotState::BeingRead);
        self.raw.offer(urb);
        let c = &self.counters;
        let fb = self.format.frame_bytes();
        c.urbs.fetch_add(1, Relaxed);
        c.count_path(urb.path(), urb.buffer_len());
        self.staging.clear();
        let (mut short, mut zero, mut misaligned) = (0u64, 0u64, 0u64);
        for p in urb.packets() {
            match p.status {
                PacketStatus::Ok => {
                    let whole = p.data.len() / fb * fb;
                    misaligned += u64::from(whole != p.data.len());
                    short += u64::from(p.is_short());
                    zero += u64::from(p.actual == 0);
                    self.staging.extend_from_slice(&p.data[..whole]);
                }
                PacketStatus::Error(errno) => {
                    let kind = UrbStatusKind::from_errno(errno);
                    c.count_error(kind);
                    self.quiet.count_error(kind);
                }
            }
        }
        if self.staging.is_empty() {
            self.quiet.packets += urb.packet_count() as u64;
        } else {
            self.quiet = QuietWindow::new(Instant::now());
        }
        c.packets.fetch_add(urb.packet_count() as u64, Relaxed);
        c.short_packets.fetch_add(short, Relaxed);
        c.zero_length_packets.fetch_add(zero, Relaxed);
        c.misaligned_packets.fetch_add(misaligned, Relaxed);
        c.bytes.fetch_add(self.staging.len() as u64, Relaxed);
        if !self.staging.is_empty() {
            if all_zero(&self.staging) {
                let now = Instant::now();
                let run =
                    now.saturating_duration_since(*self.zero_since.get_or_insert(now)).as_nanos() as u64;
                c.all_zero_run_ns.store(run, Relaxed);
                c.all_zero_run_max_ns.fetch_max(run, Relaxed);
            } else if self.zero_since.take().is_some() {
                c.all_zero_run_ns.store(0, Relaxed);
            }
        }
        let frames = self.staging.len() / fb;
        c.frames.fetch_add(frames as u64, Relaxed);
        if frames == 0 {
            return;
        }
        let mut decoded = 0;
        let mut dropped = 0u64;
        let channels = usize::from(self.format.channels);
        // A sink whose consumer is gone is let go of (freed on the controlling thread).
        let mut i = 0;
        while i < self.sinks.len() {
            if self.sinks[i].has_consumer() {
                i += 1;
            } else {
                let gone = self.sinks.swap_remove(i);
                let _ = self.retired.try_send(gone);
            }
        }
        for sink in &mut self.sinks {
            match sink {
                Sink::Bytes(ring) => {
                    let n = (ring.vacant_len() / fb).min(frames);
                    ring.push_slice(&self.staging[..n * fb]);
                    dropped += (frames - n) as u64;
                }
                Sink::Frames(ring) => {
                    if decoded == 0 {
                        decoded = decode_into(self.format.sample, &self.staging, &mut self.scratch);
                    }
                    let n = (ring.vacant_len() / channels).min(frames);
                    ring.push_slice(&self.scratch[..n * channels]);
                    dropped += (frames - n) as u64;
                }
            }
        }
        if dropped > 0 {
            c.ring_drops.fetch_add(dropped, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::SampleFormat;
    use crate::usb::Speed;
    use nix::libc;
    use ringbuf::traits::Split;
    use ringbuf::HeapRb;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicU64;

    /// S16_LE stereo at 48 kHz on high speed, one 8-byte packet per microframe.
    fn test_stream() -> StreamConfig {
        StreamConfig {
            endpoint: 0x81,
            format: PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 48_000 },
            speed: Speed::High,
            interval: 1,
            packet_len: 8,
        }
    }

    /// The parts of a test device that holds its URBs in `self.queue`: high speed, copy mode
    /// only, 16 MiB of usbfs memory, no system calls.
    macro_rules! queued_test_device {
        ($name:literal) => {
            fn info(&self) -> BackendInfo {
                BackendInfo { name: $name.into(), speed: Speed::High, can_mmap: false, simulated: true }
            }
            fn memory_limit(&self, app_cap_bytes: u64) -> crate::dma::MemoryLimit {
                crate::dma::MemoryLimit { usbfs_memory_mb: Some(16), app_cap_bytes }
            }
            fn map_dma(&mut self, _len: usize) -> Result<crate::dma::Region, Errno> {
                Err(Errno::ENOSYS)
            }
            fn submit(&mut self, urb: IsoUrb) -> Result<(), (IsoUrb, BackendError)> {
                self.queue.push_back(urb);
                Ok(())
            }
            fn in_flight(&self) -> usize {
                self.queue.len()
            }
            fn syscalls(&self) -> u64 {
                0
            }
        };
    }

    /// A device that completes every URB at once: full packets, every 5th short, every 7th
    /// failed. Its queue is allocated up front, so it allocates nothing per URB itself.
    struct Endless {
        queue: VecDeque<IsoUrb>,
        n: u32,
    }

    impl Backend for Endless {
        queued_test_device!("endless");
        fn reap(&mut self, _timeout: Duration, _wake: Option<&Wake>) -> Result<Option<IsoUrb>, BackendError> {
            let Some(mut urb) = self.queue.pop_front() else { return Ok(None) };
            let (descs, buf) = urb.device_view();
            for (i, d) in descs.iter_mut().enumerate() {
                self.n += 1;
                buf[i * 8..i * 8 + 8].fill(self.n as u8);
                d.actual_length = if self.n % 5 == 0 { 4 } else { 8 };
                d.status = if self.n % 7 == 0 { (-libc::EXDEV) as u32 } else { 0 };
            }
            urb.complete(0, 0);
            Ok(Some(urb))
        }
        fn discard_all(&mut self) {}
    }

    /// [`Endless`] on a bus with no bandwidth left: its third submit fails with ENOSPC, and
    /// it explains who else uses the bus.
    struct FullBus(Endless);

    impl Backend for FullBus {
        fn info(&self) -> BackendInfo {
            self.0.info()
        }
        fn memory_limit(&self, app_cap_bytes: u64) -> crate::dma::MemoryLimit {
            self.0.memory_limit(app_cap_bytes)
        }
        fn map_dma(&mut self, len: usize) -> Result<crate::dma::Region, Errno> {
            self.0.map_dma(len)
        }
        fn submit(&mut self, urb: IsoUrb) -> Result<(), (IsoUrb, BackendError)> {
            if self.0.queue.len() == 2 {
                return Err((urb, BackendError::Os { op: "SUBMITURB", errno: Errno::ENOSPC }));
            }
            self.0.submit(urb)
        }
        fn reap(&mut self, timeout: Duration, wake: Option<&Wake>) -> Result<Option<IsoUrb>, BackendError> {
            self.0.reap(timeout, wake)
        }
        fn discard_all(&mut self) {}
        fn in_flight(&self) -> usize {
            self.0.in_flight()
        }
        fn syscalls(&self) -> u64 {
            0
        }
        fn explain(&self, e: &BackendError) -> Option<String> {
            matches!(e, BackendError::Os { errno: Errno::ENOSPC, .. })
                .then(|| " Other devices on bus 1 reserve up to 24578 bytes/ms: 1-2 (webcam).".to_string())
        }
    }

    /// A device whose second URB completes with status `-errno` (full packets all the same);
    /// `reaped` counts the URBs it handed back.
    struct SecondFails {
        queue: VecDeque<IsoUrb>,
        errno: i32,
        reaped: Arc<AtomicU64>,
    }

    impl Backend for SecondFails {
        queued_test_device!("second fails");
        fn reap(&mut self, _timeout: Duration, _wake: Option<&Wake>) -> Result<Option<IsoUrb>, BackendError> {
            let Some(mut urb) = self.queue.pop_front() else { return Ok(None) };
            let n = self.reaped.fetch_add(1, Relaxed);
            for d in urb.device_view().0.iter_mut() {
                d.actual_length = 8;
                d.status = 0;
            }
            urb.complete(if n == 1 { -self.errno } else { 0 }, 0);
            Ok(Some(urb))
        }
        fn discard_all(&mut self) {}
    }

    #[test]
    fn cancelled_and_disconnected_urbs_are_told_apart_by_their_status_kind() {
        let cfg = CaptureConfig { mode: ModeRequest::Copy, urbs: Some(4), ..CaptureConfig::default() };
        for kind in UrbStatusKind::ALL.into_iter().filter(|&k| k != UrbStatusKind::Completed) {
            let reaped = Arc::new(AtomicU64::new(0));
            let backend =
                SecondFails { queue: VecDeque::new(), errno: kind.errno(), reaped: Arc::clone(&reaped) };
            let result = Capture::run_blocking(backend, test_stream(), &cfg, Vec::new(), 10);
            if kind.is_disconnect() {
                assert!(matches!(result, Err(CaptureError::Disconnected { .. })), "{kind:?}: {result:?}");
                continue;
            }
            let (_, stats) = result.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            let reaped = reaped.load(Relaxed);
            if kind.is_cancelled() {
                // Skipped: no data, no latency.
                assert_eq!(reaped, stats.urbs + 1, "{kind:?}: {stats:?}");
                assert_eq!(stats.reap_latency_count, stats.urbs, "{kind:?}");
            } else {
                // A URB-level status the engine does not act on: its packets still count.
                assert_eq!(reaped, stats.urbs, "{kind:?}: {stats:?}");
            }
        }
    }

    #[test]
    fn a_submit_refused_for_bandwidth_names_the_fix_and_the_other_users_of_the_bus() {
        let stream = test_stream();
        let cfg = CaptureConfig { mode: ModeRequest::Copy, urbs: Some(4), ..CaptureConfig::default() };
        let backend = FullBus(Endless { queue: VecDeque::with_capacity(16), n: 0 });
        let Err(e) = Capture::run_blocking(backend, stream, &cfg, Vec::new(), 10) else {
            panic!("a capture whose submits fail with ENOSPC ran")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("ENOSPC") && msg.contains("periodic bandwidth") && msg.contains("1-2 (webcam)"),
            "{msg}"
        );
    }

    /// A device that completes one URB every `delay`, full packets, whose bytes are zero in
    /// the URBs `zero` picks (by URB number) and 0x5A in the others.
    struct Zeros {
        queue: VecDeque<IsoUrb>,
        urb: u32,
        delay: Duration,
        zero: fn(u32) -> bool,
    }

    impl Backend for Zeros {
        queued_test_device!("zeros");
        fn reap(&mut self, _timeout: Duration, wake: Option<&Wake>) -> Result<Option<IsoUrb>, BackendError> {
            crate::usb::wake::sleep(wake, self.delay);
            let Some(mut urb) = self.queue.pop_front() else { return Ok(None) };
            let byte = if (self.zero)(self.urb) { 0 } else { 0x5A };
            self.urb += 1;
            let (descs, buf) = urb.device_view();
            buf.fill(byte);
            for d in descs.iter_mut() {
                d.actual_length = 8;
                d.status = 0;
            }
            urb.complete(0, 0);
            Ok(Some(urb))
        }
        fn discard_all(&mut self) {}
    }

    fn zeros_capture(urbs: u64, zero: fn(u32) -> bool) -> StatsSnapshot {
        let stream = test_stream();
        let cfg = CaptureConfig { mode: ModeRequest::Copy, urbs: Some(2), ..CaptureConfig::default() };
        let backend = Zeros { queue: VecDeque::new(), urb: 0, delay: Duration::from_millis(100), zero };
        Capture::run_blocking(backend, stream, &cfg, Vec::new(), urbs).unwrap().1
    }

    #[test]
    fn data_that_is_all_zeros_for_seconds_is_flagged_and_a_live_byte_ends_the_run() {
        // 26 URBs 100 ms apart, all zero: a run of about 2.5 s, still going at the end.
        let s = zeros_capture(26, |_| true);
        assert!(s.all_zero_run_max_ns >= 2_000_000_000, "{s:?}");
        assert_eq!(s.all_zero_run_ns, s.all_zero_run_max_ns);
        let note = s.all_zero_note().unwrap();
        assert!(
            note.contains("for the last") && note.contains("try copy mode") && !note.contains("--"),
            "{note}"
        );
        // Zeros for 2.3 s, one URB of data, then 0.2 s of zeros: flagged as a past stretch.
        let s = zeros_capture(28, |n| n != 24);
        assert!(s.all_zero_run_max_ns >= 2_000_000_000 && s.all_zero_run_ns < 1_000_000_000, "{s:?}");
        assert!(s.all_zero_note().unwrap().contains("at a stretch"));
        // Live data with a zero URB now and then: nothing to say.
        let s = zeros_capture(26, |n| n % 5 == 0);
        assert!(s.all_zero_run_max_ns < 1_000_000_000 && s.all_zero_note().is_none(), "{s:?}");
    }

    /// A device that never completes a URB; each reap waits `wait` (ignoring the engine's
    /// timeout), on the wake-up fd if `wakeable`, else deaf to it.
    struct Silent {
        queue: VecDeque<IsoUrb>,
        wait: Duration,
        wakeable: bool,
    }

    impl Backend for Silent {
        queued_test_device!("silent");
        fn reap(&mut self, _timeout: Duration, wake: Option<&Wake>) -> Result<Option<IsoUrb>, BackendError> {
            // After the discard the URBs come back cancelled, as the kernel's do.
            if let Some(mut urb) = self.queue.pop_front().filter(|_| self.wait.is_zero()) {
                urb.complete(-libc::ENOENT, 0);
                return Ok(Some(urb));
            }
            crate::usb::wake::sleep(wake.filter(|_| self.wakeable), self.wait);
            Ok(None)
        }
        fn discard_all(&mut self) {
            self.wait = Duration::ZERO;
        }
    }

    fn silent_capture(wait: Duration, wakeable: bool) -> Capture {
        let stream = test_stream();
        let cfg = CaptureConfig {
            mode: ModeRequest::Copy,
            urbs: Some(2),
            no_data_timeout: None,
            ..CaptureConfig::default()
        };
        let backend = Silent { queue: VecDeque::new(), wait, wakeable };
        Capture::start(backend, stream, &cfg, Vec::new()).unwrap()
    }

    /// Stops `capture` on another thread; how long that took, or `None` after 5 s.
    fn stop_within_5_s(capture: Capture) -> Option<Duration> {
        let (done_tx, done) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("stop-test".into())
            .spawn(move || {
                let t = Instant::now();
                let (_, failure) = capture.stop();
                let _ = done_tx.send((t.elapsed(), failure));
            })
            .unwrap();
        let (took, failure) = done.recv_timeout(Duration::from_secs(5)).ok()?;
        assert!(failure.is_none(), "{failure:?}");
        Some(took)
    }

    #[test]
    fn a_stop_cuts_a_long_wait_for_a_completion_short() {
        let capture = silent_capture(Duration::from_secs(1), true);
        std::thread::sleep(Duration::from_millis(50)); // the capture thread is in its wait now
        let took = stop_within_5_s(capture).expect("the capture stopped");
        assert!(took < Duration::from_millis(50), "a stop took {took:?} against a 1 s wait");
    }

    #[test]
    fn request_stop_returns_at_once_and_the_capture_ends_on_its_own() {
        let capture = silent_capture(Duration::from_secs(1), true);
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        capture.request_stop();
        assert!(t.elapsed() < Duration::from_millis(5), "request_stop blocked for {:?}", t.elapsed());
        while !capture.is_finished() {
            assert!(t.elapsed() < Duration::from_millis(500), "the capture did not end");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(matches!(capture.events().try_recv(), Ok(Event::Stopped)));
    }

    #[test]
    fn a_stop_is_honoured_behind_a_full_queue_of_attaches() {
        // A capture thread deaf to the wake-up fd for 200 ms at a time: the attaches queue up.
        let capture = silent_capture(Duration::from_millis(200), false);
        std::thread::sleep(Duration::from_millis(20));
        let mut consumers = Vec::new();
        for n in 0..MAX_SINKS {
            let (prod, cons) = HeapRb::<u8>::new(64).split();
            consumers.push(cons);
            capture.attach(Sink::Bytes(prod)).unwrap_or_else(|e| panic!("attach {n}: {e}"));
        }
        let (prod, _cons) = HeapRb::<u8>::new(64).split();
        let e = capture.attach(Sink::Bytes(prod)).unwrap_err().to_string();
        assert!(e.contains("at most 8"), "{e}");
        let took = stop_within_5_s(capture).expect("a stop behind queued attaches was lost");
        assert!(took < Duration::from_millis(400), "{took:?}");
    }

    #[test]
    fn all_zero_looks_at_every_byte() {
        assert!(all_zero(&[]));
        assert!(all_zero(&[0; 200]));
        for at in [0, 7, 63, 64, 130, 199] {
            let mut b = [0u8; 200];
            b[at] = 1;
            assert!(!all_zero(&b), "a byte at {at}");
        }
    }

    /// Allocator calls made by a whole blocking capture of `urbs` URBs into a byte sink and
    /// a frame sink.
    fn allocator_calls(urbs: u64) -> u32 {
        let stream = test_stream();
        let cfg = CaptureConfig {
            mode: ModeRequest::Copy,
            packets_per_urb: Some(8),
            urbs: Some(4),
            ..CaptureConfig::default()
        };
        let (bytes, _bytes_out) = HeapRb::<u8>::new(1 << 20).split();
        let (frames, _frames_out) = HeapRb::<f32>::new(1 << 20).split();
        let backend = Endless { queue: VecDeque::with_capacity(16), n: 0 };
        let sinks = vec![Sink::Bytes(bytes), Sink::Frames(frames)];
        assert_no_alloc::reset_violation_count();
        let stats = assert_no_alloc::assert_no_alloc(|| {
            let (_, stats) = Capture::run_blocking(backend, stream, &cfg, sinks, urbs).unwrap();
            stats
        });
        assert!(stats.urbs >= urbs && stats.short_packets > 0 && stats.packet_errors > 0, "{stats:?}");
        assert_no_alloc::violation_count()
    }

    #[test]
    fn the_capture_thread_does_not_allocate_per_urb_or_per_packet() {
        // Setting up and tearing down allocate; streaming must not. So ten times the URBs
        // (and packets, short ones and failed ones among them) may not cost one more call.
        let short = allocator_calls(100);
        let long = allocator_calls(1000);
        assert!(short > 0, "the check sees the set-up's allocations");
        assert_eq!(long, short, "{} more allocator calls for 900 more URBs", long - short);
    }
}

#[cfg(test)]
mod enomem_tests {
    use super::{enomem_cause, MemoryUse};
    use crate::dma::TransferPath;
    use crate::fix::Fix;

    fn use_(mb: Option<u32>, ours: u64, path: TransferPath) -> (String, Fix) {
        let (m, fix) = enomem_cause(MemoryUse { ours, usbfs_memory_mb: mb, path, urb_bytes: 96 << 10 });
        assert!(!m.contains("--"), "no command-line flag in library text: {m}");
        (m, fix)
    }

    #[test]
    fn an_enomem_says_which_cause_the_numbers_leave() {
        // Cap 0: not the cap; in copy mode the per-URB contiguous allocation is named, and
        // zero-copy (allocated once) is the remedy.
        let (m, fix) = use_(Some(0), 1 << 20, TransferPath::Copy);
        assert!(m.contains("0 (unlimited), so this is not the usbfs cap"), "{m}");
        assert!(m.contains("contiguous 96.0 KiB buffer for every URB"), "{m}");
        assert_eq!(fix, Fix::ZeroCopyMode);
        assert!(
            !fix.for_cli().contains("raise"),
            "raising an unlimited cap would mislead: {}",
            fix.for_cli()
        );
        let (_, fix) = use_(Some(0), 1 << 20, TransferPath::ZeroCopy);
        assert_eq!(fix, Fix::SmallerPlan { raise_cap_mb: None }, "no cap to raise");
        // Under the cap: others, or an allocation failure; the share and the knob are named.
        let (m, fix) = use_(Some(16), 2 << 20, TransferPath::ZeroCopy);
        assert!(
            m.contains("share is 2.0 MiB of the 16 MiB usbfs cap") && m.contains("other usbfs programs"),
            "{m}"
        );
        assert!(!m.contains("contiguous"), "{m}");
        assert_eq!(fix, Fix::FreeUsbfsMemory { raise_cap_mb: 32 });
        // Our plan alone fills it.
        let (m, fix) = use_(Some(1), 1 << 20, TransferPath::ZeroCopy);
        assert!(m.contains("needs all of it") && m.contains("= 1 MiB"), "{m}");
        assert_eq!(fix, Fix::SmallerPlan { raise_cap_mb: Some(16) });
        assert!(fix.for_cli().contains("--urbs"), "{}", fix.for_cli());
    }
}
