//! The live monitor: plays what a capture hears on a sound card. It owns the consumer end of
//! a [`Sink::Frames`](crate::capture::Sink::Frames) ring; a worker thread maps channels and
//! resamples (rubato, with a drift-corrected ratio) into a second SPSC ring; the cpal
//! callback only pops from it, applies the volume, fills silence on underrun and counts.
//!
//! ```text
//! engine --f32 frames--> ring 1 --worker: map channels, resample--> ring 2 --callback--> sound card
//!                                  drift PI: ring 2 fill -> ratio        volume, mute, underruns
//! ```
//!
//! # What the latency figure measures
//!
//! For each batch of frames the engine pushes (one per reaped URB), the worker notes the
//! moment it first sees the batch in ring 1 (it looks every 0.5 ms, so this is at most
//! 0.5 ms after the engine's push, which follows the URB's completion by the time it takes
//! to walk and decode it). It tracks that batch's *middle* frame through the resampler
//! (its position in the output stream, the resampler's delay included) into ring 2. When
//! the callback hands that frame to the output, the figure is
//! `play time - seen time`, where `play time` is the callback's entry time plus the output's
//! own delay that ALSA or the sound server reports for this buffer (`playback - callback` of
//! cpal's timestamp: with PipeWire or PulseAudio, the server's buffer and the sink's
//! latency) plus the frame's offset in the buffer. So it is what the user hears. So: URB completion (within 0.5 ms) to the moment
//! the frame is due at the DAC, averaged over the frames of a URB by taking the middle one.
//! Frames in a URB were captured up to one URB duration before its completion; that part
//! is the capture's URB size (`--urb-ms`), not the monitor's, and is not included.
//!
//! # Holding the latency on outputs that come in bursts
//!
//! The worker controls only what it buffers (ring 2). It aims that at the target less the
//! output's own delay (averaged over about a second) and the resampler's, but never below
//! the largest callback the output made lately plus the largest batch the capture delivered
//! and 2 ms: a sound server asks for a whole quantum (5 to 40 ms) at once, and the ring must
//! hold it. When the output's delay alone exceeds the target, the latency held is that
//! floor, and the statistics say so (`holding_ms`). A PI loop on the ring's fill sets the
//! resampling ratio (see [`super::drift`]); when the fill is off by more than the loop can
//! correct (over 10 ms or half the target, plus half a burst, for 0.3 s; or the correction
//! pinned at its bound for 2 s) the worker resyncs at once: drops device frames or adds
//! silence, and counts it. A pinned correction also doubles its bound (1000 ppm at first,
//! up to 8000): a sound server's graph clock can run a few thousand ppm off the host's
//! (PipeWire's null sink here: -1800 to -2800 ppm).
//!
//! # Outputs that are not clocks
//!
//! The worker compares the frames the output asks for with the host clock. An output that
//! takes them more than 1.5 times faster than real time (over half a second, after its first
//! quarter second), or, once running, takes none for a second (or never starts running in
//! 4 s), is not a sound card: the monitor drops its stream, says so ([`OutputFault`]) and
//! plays no more; the capture goes on.
//!
//! # The callback
//!
//! It does not allocate, lock, log or make system calls other than reading the clock
//! (and, with [`Pacing::HostClock`] only, sleeping until its period is due).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use crossbeam_channel::{Receiver, Sender};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use rubato::Resampler;

use super::drift::{DriftConfig, DriftController};
use super::output::{open_output, AudioHost, ChosenConfig, OutputError};
use super::stats::{MonitorCounters, MonitorStats, OutputFault};
use crate::capture::stats::thread_cpu_ns;
use crate::dsp::PcmFormat;
pub use crate::dsp::{ChannelMap, ChannelMapError};

/// How often the worker looks at ring 1.
const WORKER_TICK: Duration = Duration::from_micros(500);
/// How far off the target (at least; half the target if more, plus half a burst) the ring's
/// fill may get, for [`RESYNC_AFTER`], before the worker resyncs.
const RESYNC_EXCESS_S: f64 = 0.010;
const RESYNC_AFTER: Duration = Duration::from_millis(300);
/// The widest the drift correction's bound grows to, ppm (the resampler is built for 1 %).
const MAX_DRIFT_PPM: f64 = 8000.0;
/// How long the drift correction may sit at its bound before the worker resyncs.
const PINNED_AFTER: Duration = Duration::from_secs(2);
/// The shortest period cpal's PulseAudio host keeps up with (see [`Monitor::start`]).
const PULSE_MIN_PERIOD_S: f64 = 0.021;
/// The shortest period asked of PipeWire (see [`Monitor::start`]).
const PIPEWIRE_MIN_PERIOD_S: f64 = 0.010;
/// Input frames the resampler takes per call.
const CHUNK_FRAMES: usize = 64;

/// Who decides when the sound card wants the next period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Pacing {
    /// The sound card (every real output).
    #[default]
    Device,
    /// The host's monotonic clock: the callback waits until its period is due, as a card
    /// with a two-period buffer would make it. For outputs that take frames as fast as they
    /// come, such as ALSA's `null` and `file` PCMs (tests and benchmarks without hardware).
    HostClock,
}

/// Why the monitor could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("monitor: {0}")]
    Config(String),
    #[error("monitor: cannot set up the resampler: {0}")]
    Resampler(String),
    #[error("monitor: cannot start the audio worker thread: {0}")]
    Thread(String),
}

impl MonitorError {
    /// What to change, where there is a remedy.
    pub fn fix(&self) -> Option<crate::fix::Fix> {
        match self {
            MonitorError::Output(e) => e.fix(),
            _ => None,
        }
    }
}

impl From<ChannelMapError> for MonitorError {
    fn from(e: ChannelMapError) -> MonitorError {
        MonitorError::Config(e.0)
    }
}

/// How to monitor.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// The sound system; None: the first of PipeWire, PulseAudio and ALSA that runs (and,
    /// for a named output, every running one).
    pub host: Option<AudioHost>,
    /// The output's name (an id from [`super::list_outputs`]) or a unique part of its
    /// description; None: the host's default output.
    pub output: Option<String>,
    /// The latency to hold, ms (default 20).
    pub latency_ms: f64,
    /// Linear gain (1.0: unchanged), 0..=8.
    pub volume: f32,
    pub muted: bool,
    /// None: mono to both ears, else channel c to output c.
    pub channel_map: Option<ChannelMap>,
    /// The output rate; None: the device's rate if the output offers it, else the output's default.
    pub output_rate: Option<u32>,
    pub pacing: Pacing,
    pub drift: DriftConfig,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            host: None,
            output: None,
            latency_ms: 20.0,
            volume: 1.0,
            muted: false,
            channel_map: None,
            output_rate: None,
            pacing: Pacing::Device,
            drift: DriftConfig::default(),
        }
    }
}

/// What a monitor was set up with.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MonitorInfo {
    /// The sound system played through.
    pub host: AudioHost,
    pub output: String,
    /// The output's name as the desktop shows it.
    pub output_description: String,
    pub output_rate: u32,
    pub output_channels: u16,
    pub sample_format: String,
    /// The period asked of the card, frames (None: the card's default).
    pub period_frames: Option<u32>,
    pub input_rate: u32,
    pub input_channels: u16,
    /// Output frames per device frame before drift correction.
    pub nominal_ratio: f64,
    pub target_latency_ms: f64,
    pub channel_map: Vec<Option<usize>>,
    pub pacing: Pacing,
}

/// A frame on its way: its index in the output stream and when its batch was seen.
#[derive(Clone, Copy, Debug)]
struct Mark {
    out_frame: u64,
    seen_ns: u64,
}

/// Shared between the callback, the worker and the owner.
struct Shared {
    counters: MonitorCounters,
    volume_bits: AtomicU32,
    muted: AtomicBool,
    stop: AtomicBool,
    /// The worker has put real frames into ring 2: from now on a short callback is an underrun.
    primed: AtomicBool,
}

enum Control {
    ChannelMap(ChannelMap),
}

/// A running monitor. Dropping it stops playback.
pub struct Monitor {
    /// The worker; it owns the output stream and drops it when it ends.
    worker: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    controls: Sender<Control>,
    info: MonitorInfo,
    input_channels: u16,
}

impl Monitor {
    /// A ring for [`Sink::Frames`](crate::capture::Sink::Frames) that holds half a second
    /// of `format`: pass the producer to the capture and the consumer to [`Monitor::start`].
    pub fn input_ring(format: PcmFormat) -> (HeapProd<f32>, HeapCons<f32>) {
        let samples = (format.rate as usize / 2).max(4096) * usize::from(format.channels);
        HeapRb::<f32>::new(samples).split()
    }

    /// Opens the output and starts playing `input` (interleaved frames of `format`).
    pub fn start(
        input: HeapCons<f32>,
        format: PcmFormat,
        cfg: &MonitorConfig,
    ) -> Result<Monitor, MonitorError> {
        if !(cfg.latency_ms.is_finite() && (2.0..=2000.0).contains(&cfg.latency_ms)) {
            return Err(MonitorError::Config(format!(
                "latency {} ms is outside 2 to 2000 ms",
                cfg.latency_ms
            )));
        }
        if format.channels == 0 || format.rate == 0 {
            return Err(MonitorError::Config(format!("cannot play {format}")));
        }
        let device = open_output(cfg.host, cfg.output.as_deref())?;
        let want_channels = cfg.channel_map.as_ref().map_or(2, |m| m.outputs().max(2)) as u16;
        let want_rate = cfg.output_rate.unwrap_or(format.rate);
        // A period of about a sixth of the target: the card's own buffer (two periods) then
        // leaves room in the target for the ring to absorb URB and period bursts. cpal's
        // PulseAudio client asks the server for a buffer of two periods, and the server
        // refills it about every 20 ms whatever it is told (measured here: periods of 5, 10
        // and 13 ms got 0.44x, 0.63x and 0.85x real time, 20 ms got 1.0x), so on that host
        // a period is at least 21 ms.
        // ALSA's default device (or its "pulse"/"pipewire" PCMs) goes to the sound server when
        // one runs, through alsa-plugins' PulseAudio client, which keeps up no better with
        // short periods (measured here: 5 ms periods got 0.77x real time and 4 resyncs in 5 s).
        let through_server = device.host == AudioHost::Alsa
            && matches!(device.id.as_str(), "default" | "pulse" | "pipewire")
            && (AudioHost::PulseAudio.running() || AudioHost::PipeWire.running());
        // PipeWire's period is the whole graph's quantum: a short one wakes every node often,
        // and a timer-driven graph (a null sink, no card) loses time at each wake-up (3.3 ms
        // quanta here: the graph ran 1800 to 7700 ppm slow, varying with load).
        let min_period_s = match device.host {
            AudioHost::PulseAudio => PULSE_MIN_PERIOD_S,
            AudioHost::PipeWire => PIPEWIRE_MIN_PERIOD_S,
            AudioHost::Alsa if through_server => PULSE_MIN_PERIOD_S,
            AudioHost::Alsa => 0.0,
        };
        let period_s = (cfg.latency_ms / 6.0 / 1000.0).max(min_period_s);
        let period = (period_s * f64::from(want_rate)).round().max(32.0) as u32;
        let ChosenConfig { config, sample_format } =
            device.choose_config(want_rate, want_channels, period)?;
        let out_ch = usize::from(config.channels);
        let map = cfg
            .channel_map
            .clone()
            .unwrap_or_else(|| ChannelMap::default_for(format.channels, config.channels))
            .fit(out_ch);
        if let Some(bad) = map.sources().iter().flatten().find(|&&c| c >= usize::from(format.channels)) {
            return Err(MonitorError::Config(format!("channel {bad} does not exist on a {format} device")));
        }
        let out_rate = config.sample_rate;
        let nominal_ratio = f64::from(out_rate) / f64::from(format.rate);
        let period_frames = match config.buffer_size {
            cpal::BufferSize::Fixed(n) => Some(n),
            cpal::BufferSize::Default => None,
        };
        let info = MonitorInfo {
            host: device.host,
            output: device.id.clone(),
            output_description: device.description.clone(),
            output_rate: out_rate,
            output_channels: config.channels,
            sample_format: sample_format.to_string(),
            period_frames,
            input_rate: format.rate,
            input_channels: format.channels,
            nominal_ratio,
            target_latency_ms: cfg.latency_ms,
            channel_map: map.sources().to_vec(),
            pacing: cfg.pacing,
        };

        let shared = Arc::new(Shared {
            counters: MonitorCounters::default(),
            volume_bits: AtomicU32::new(cfg.volume.clamp(0.0, 8.0).to_bits()),
            muted: AtomicBool::new(cfg.muted),
            stop: AtomicBool::new(false),
            primed: AtomicBool::new(false),
        });
        shared.counters.ratio_bits.store(nominal_ratio.to_bits(), Relaxed);
        let target_s = cfg.latency_ms / 1000.0;
        let ring_frames = ((target_s * 4.0).max(0.25) * f64::from(out_rate)) as usize;
        let (out_prod, out_cons) = HeapRb::<f32>::new(ring_frames * out_ch).split();
        let (mark_prod, mark_cons) = HeapRb::<Mark>::new(4096).split();
        let epoch = Instant::now();

        let resampler = rubato::SincFixedIn::<f32>::new(
            nominal_ratio,
            1.01,
            rubato::SincInterpolationParameters {
                sinc_len: 128,
                f_cutoff: 0.95,
                oversampling_factor: 256,
                interpolation: rubato::SincInterpolationType::Linear,
                window: rubato::WindowFunction::BlackmanHarris2,
            },
            CHUNK_FRAMES,
            out_ch,
        )
        .map_err(|e| MonitorError::Resampler(e.to_string()))?;

        let period_s = f64::from(period_frames.unwrap_or(period)) / f64::from(out_rate);
        let (controls, control_rx) = crossbeam_channel::unbounded();
        let worker = Worker {
            input,
            in_ch: usize::from(format.channels),
            out_ch,
            map,
            in_buf: vec![0.0; CHUNK_FRAMES * usize::from(format.channels)],
            res_in: vec![vec![0.0; CHUNK_FRAMES]; out_ch],
            res_out: resampler.output_buffer_allocate(true),
            out_buf: vec![0.0; resampler.output_frames_max() * out_ch],
            resampler,
            out: out_prod,
            marks: mark_prod,
            drift: DriftController::new(target_s, cfg.drift),
            target_s,
            period_s,
            shared: Arc::clone(&shared),
            epoch,
            out_rate: f64::from(out_rate),
            nominal_ratio,
            skip_in: 0,
            out_delay_s: None,
            bursts: RecentMax::default(),
            in_bursts: RecentMax::default(),
            off_since: None,
            pinned_since: None,
            clock: ClockCheck::new(f64::from(out_rate)),
            clocks: ClockWindow::default(),
            setpoint_s: None,
            retarget_since: None,
            smoothing_s: cfg.drift.smoothing_s,
            stream: None,
            pushed: 0,
            consumed: 0,
            seen: 0,
            pending: std::collections::VecDeque::with_capacity(256),
            controls: control_rx,
        };

        let callback = Callback {
            ring: out_cons,
            marks: mark_cons,
            pending_mark: None,
            shared: Arc::clone(&shared),
            epoch,
            channels: out_ch,
            rate: f64::from(out_rate),
            scratch: vec![0.0; 8192 * out_ch].into_boxed_slice(),
            gain: if cfg.muted { 0.0 } else { cfg.volume.clamp(0.0, 8.0) },
            played: 0,
            pacing: cfg.pacing,
            t0: None,
            written: 0,
        };
        let err_shared = Arc::clone(&shared);
        // Called on the audio thread too: count, never log.
        let on_error = move |e: cpal::Error| {
            // The stream's own teardown (PipeWire reports "Device disconnected" when the
            // stream is dropped, and so when an output that is not a clock is let go) is not
            // a lost output.
            if err_shared.stop.load(Relaxed) || err_shared.counters.fault_code.load(Relaxed) != 0 {
                return;
            }
            err_shared.counters.output_errors.fetch_add(1, Relaxed);
            if matches!(e.kind(), cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::StreamInvalidated) {
                err_shared.counters.output_lost.store(true, Relaxed);
            }
        };
        let stream = build_stream(&device.device, config, sample_format, callback, on_error)
            .map_err(|e| OutputError::from_cpal(&device.id, &e))?;

        let mut worker = worker;
        worker.stream = Some(stream);
        let play = |w: &Worker| match &w.stream {
            Some(stream) => stream.play().map_err(|e| OutputError::from_cpal(&device.id, &e).into()),
            None => Ok(()),
        };
        let worker = spawn_after(worker, play, Worker::run)?;
        Ok(Monitor { worker: Some(worker), shared, controls, info, input_channels: format.channels })
    }

    /// What the monitor was set up with.
    pub fn info(&self) -> &MonitorInfo {
        &self.info
    }

    /// Linear gain, 0..=8 (1.0 unchanged); ramps over one callback, so no click.
    pub fn set_volume(&self, volume: f32) {
        let v = if volume.is_finite() { volume.clamp(0.0, 8.0) } else { 0.0 };
        self.shared.volume_bits.store(v.to_bits(), Relaxed);
    }

    /// Mutes or unmutes (ramped like the volume).
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Relaxed);
    }

    /// Changes which device channels play on which output (output count as set up).
    pub fn set_channel_map(&self, map: ChannelMap) -> Result<(), MonitorError> {
        if let Some(bad) = map.sources().iter().flatten().find(|&&c| c >= usize::from(self.input_channels)) {
            return Err(MonitorError::Config(format!("channel {bad} does not exist")));
        }
        let map = map.fit(usize::from(self.info.output_channels));
        // The worker owns the receiver until it exits; after that there is nothing to map.
        let _ = self.controls.send(Control::ChannelMap(map));
        Ok(())
    }

    /// Set when the output stopped behaving like a clock: the monitor plays no more.
    pub fn fault(&self) -> Option<OutputFault> {
        self.shared.counters.fault()
    }

    /// The statistics so far.
    pub fn stats(&self) -> MonitorStats {
        self.shared.counters.snapshot()
    }

    /// The counters themselves (for a UI that polls them every frame).
    pub fn counters(&self) -> &MonitorCounters {
        &self.shared.counters
    }

    /// A handle that reads the statistics from another thread while the monitor runs.
    pub fn probe(&self) -> MonitorProbe {
        MonitorProbe(Arc::clone(&self.shared))
    }

    /// Stops playback and the worker; returns the final statistics.
    pub fn stop(mut self) -> MonitorStats {
        self.shutdown();
        self.shared.counters.snapshot()
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Relaxed);
        // The worker drops the stream as it ends, which stops the callback thread (cpal
        // wakes it through its pipe).
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads a running monitor's statistics from anywhere (lock-free; see [`Monitor::probe`]).
#[derive(Clone)]
pub struct MonitorProbe(Arc<Shared>);

impl MonitorProbe {
    /// The statistics so far.
    pub fn stats(&self) -> MonitorStats {
        self.0.counters.snapshot()
    }

    /// Set when the output stopped behaving like a clock.
    pub fn fault(&self) -> Option<OutputFault> {
        self.0.counters.fault()
    }
}

impl std::fmt::Debug for MonitorProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MonitorProbe")
    }
}

/// The name of the monitor's worker thread.
const WORKER_THREAD: &str = "isoscope-monitor";

/// Runs `play` on `state`, and only when it succeeds starts `run(state)` on the monitor's
/// worker thread: a play that fails returns its error with no thread started, and `state`
/// (the worker, and the stream it owns) is dropped, which stops cpal's own thread.
fn spawn_after<T: Send + 'static>(
    state: T,
    play: impl FnOnce(&T) -> Result<(), MonitorError>,
    run: fn(T),
) -> Result<JoinHandle<()>, MonitorError> {
    play(&state)?;
    std::thread::Builder::new()
        .name(WORKER_THREAD.into())
        .spawn(move || run(state))
        .map_err(|e| MonitorError::Thread(e.to_string()))
}

/// How long after the callback the card plays the buffer's first frame.
fn delay(info: &cpal::OutputCallbackInfo) -> Duration {
    let ts = info.timestamp();
    ts.playback.duration_since(ts.callback)
}

fn build_stream(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    format: cpal::SampleFormat,
    mut cb: Callback,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream, cpal::Error> {
    use cpal::SampleFormat as F;
    match format {
        F::I16 => {
            device.build_output_stream(config, move |d: &mut [i16], i| cb.fill(d, delay(i)), on_error, None)
        }
        F::U16 => {
            device.build_output_stream(config, move |d: &mut [u16], i| cb.fill(d, delay(i)), on_error, None)
        }
        F::I32 => {
            device.build_output_stream(config, move |d: &mut [i32], i| cb.fill(d, delay(i)), on_error, None)
        }
        _ => device.build_output_stream(config, move |d: &mut [f32], i| cb.fill(d, delay(i)), on_error, None),
    }
}

/// The state the audio callback owns (allocated before the stream starts).
struct Callback {
    ring: HeapCons<f32>,
    marks: HeapCons<Mark>,
    pending_mark: Option<Mark>,
    shared: Arc<Shared>,
    epoch: Instant,
    channels: usize,
    rate: f64,
    scratch: Box<[f32]>,
    /// The gain applied at the end of the last callback (ramps toward the setting).
    gain: f32,
    /// Output frames popped from the ring so far (silence excluded).
    played: u64,
    pacing: Pacing,
    /// HostClock pacing: when the first callback ran, and frames handed over since.
    t0: Option<Instant>,
    written: u64,
}

impl Callback {
    /// Fills one buffer for the card; `card_delay` is how long after this call the
    /// buffer's first frame plays, as the card reports it (unused with host-clock pacing).
    fn fill<T: cpal::SizedSample + cpal::FromSample<f32>>(&mut self, data: &mut [T], card_delay: Duration) {
        let c = &self.shared.counters;
        let ch = self.channels;
        let frames = data.len() / ch;
        let now = Instant::now();
        c.frames_asked.fetch_add(frames as u64, Relaxed);
        c.callback_frames_max.fetch_max(frames as u64, Relaxed);
        if c.fault_code.load(Relaxed) != 0 {
            // Not a clock: the worker pauses the stream; until then, silence.
            data.fill(T::EQUILIBRIUM);
            c.callbacks.fetch_add(1, Relaxed);
            return;
        }
        let play_at = match self.pacing {
            Pacing::Device => {
                c.delays.fetch_add(DelaySum::one(card_delay), Relaxed);
                now + card_delay
            }
            Pacing::HostClock => {
                // A card with a two-period buffer asks for a period once the one before the
                // previous has played, and plays it after the one still queued.
                let t0 = *self.t0.get_or_insert(now);
                let due = t0 + secs(self.written.saturating_sub(frames as u64) as f64 / self.rate);
                if due > now {
                    std::thread::sleep(due - now);
                }
                let play = t0 + secs(self.written as f64 / self.rate);
                c.delays.fetch_add(DelaySum::one(play.saturating_duration_since(Instant::now())), Relaxed);
                play
            }
        };
        self.written += frames as u64;

        let target = if self.shared.muted.load(Relaxed) {
            0.0
        } else {
            f32::from_bits(self.shared.volume_bits.load(Relaxed))
        };
        let step = if frames > 0 { (target - self.gain) / frames as f32 } else { 0.0 };
        let chunk_len = self.scratch.len() / ch * ch;
        let mut got_total = 0;
        let mut frame_no = 0usize;
        for chunk in data.chunks_mut(chunk_len) {
            let got = self.ring.pop_slice(&mut self.scratch[..chunk.len()]);
            for (f, (out, inp)) in chunk[..got].chunks_mut(ch).zip(self.scratch[..got].chunks(ch)).enumerate()
            {
                let g = self.gain + step * (frame_no + f + 1) as f32;
                for (o, i) in out.iter_mut().zip(inp) {
                    *o = T::from_sample(i * g);
                }
            }
            chunk[got..].fill(T::EQUILIBRIUM);
            got_total += got;
            frame_no += chunk.len() / ch;
        }
        self.gain = target;
        let got_frames = (got_total / ch) as u64;
        if got_frames < frames as u64 && self.shared.primed.load(Relaxed) {
            c.underruns.fetch_add(1, Relaxed);
            c.underrun_frames.fetch_add(frames as u64 - got_frames, Relaxed);
        }

        // Latency of the marked frames this buffer plays.
        let end = self.played + got_frames;
        let base_ns = play_at.saturating_duration_since(self.epoch).as_nanos() as u64;
        while let Some(m) = self.pending_mark.take().or_else(|| self.marks.try_pop()) {
            if m.out_frame >= end {
                self.pending_mark = Some(m);
                break;
            }
            if m.out_frame >= self.played {
                let offset_ns = ((m.out_frame - self.played) as f64 * 1e9 / self.rate) as u64;
                c.latency.record((base_ns + offset_ns).saturating_sub(m.seen_ns));
            }
        }
        self.played = end;
        c.frames_played.fetch_add(got_frames, Relaxed);
        c.callbacks.fetch_add(1, Relaxed);
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// The largest of a value over the last two seconds (eight quarter-second slots).
#[derive(Clone, Debug, Default)]
struct RecentMax {
    slots: [f64; 8],
    slot: usize,
    slot_start: Option<Instant>,
}

impl RecentMax {
    fn observe(&mut self, now: Instant, value: f64) {
        let start = *self.slot_start.get_or_insert(now);
        if now.duration_since(start) >= Duration::from_millis(250) {
            self.slot = (self.slot + 1) % self.slots.len();
            self.slots[self.slot] = 0.0;
            self.slot_start = Some(now);
        }
        self.slots[self.slot] = self.slots[self.slot].max(value);
    }

    fn get(&self) -> f64 {
        self.slots.iter().copied().fold(0.0, f64::max)
    }
}

/// The output delays the callbacks saw, summed in one atomic so a reader never takes a sum
/// without its count: the count in the top 20 bits, the sum in microseconds below.
struct DelaySum;

impl DelaySum {
    const SHIFT: u32 = 44;

    fn one(delay: Duration) -> u64 {
        (1 << Self::SHIFT) | (delay.as_micros() as u64).min((1 << Self::SHIFT) / 1024)
    }

    /// (count, sum in microseconds).
    fn split(v: u64) -> (u64, u64) {
        (v >> Self::SHIFT, v & ((1 << Self::SHIFT) - 1))
    }
}

/// The resampling ratio's mean and the output's clock against the host's over the last
/// twenty seconds, from one-second slots.
#[derive(Clone, Debug, Default)]
struct ClockWindow {
    /// (time, frames asked, integral of the ratio over time, the output's delay) at each
    /// slot's start.
    slots: std::collections::VecDeque<(Instant, u64, f64, f64)>,
    integral: f64,
    last: Option<Instant>,
}

impl ClockWindow {
    const SLOT: Duration = Duration::from_secs(1);
    const SLOTS: usize = 20;

    /// Takes the ratio in use now and the output's delay (seconds); returns (mean ratio,
    /// output clock ppm) once twenty seconds are in. The output played what it asked for
    /// less what its queue grew by (ALSA's pulse plugin lets its buffer grow for seconds).
    fn observe(
        &mut self,
        now: Instant,
        asked: u64,
        ratio: f64,
        rate: f64,
        delay_s: f64,
    ) -> Option<(f64, f64)> {
        if let Some(last) = self.last {
            self.integral += ratio * now.duration_since(last).as_secs_f64();
        }
        self.last = Some(now);
        if self.slots.back().is_none_or(|&(t, _, _, _)| now.duration_since(t) >= Self::SLOT) {
            if self.slots.len() == Self::SLOTS + 1 {
                self.slots.pop_front();
            }
            self.slots.push_back((now, asked, self.integral, delay_s));
        }
        if self.slots.len() <= Self::SLOTS {
            return None;
        }
        let &(t0, asked0, i0, d0) = self.slots.front()?;
        let dt = now.duration_since(t0).as_secs_f64();
        let played = (asked - asked0) as f64 - (delay_s - d0) * rate;
        Some(((self.integral - i0) / dt, (played / (dt * rate) - 1.0) * 1e6))
    }
}

/// Tells an output that behaves like a clock from one that does not: compares the frames it
/// asks for with the host clock. Pure: the caller passes the time and the running count.
#[derive(Clone, Debug)]
struct ClockCheck {
    rate: f64,
    /// When the check began, when the output first asked for frames, and when it last did.
    started: Option<Instant>,
    first_ask: Option<Instant>,
    last_change: Option<(Instant, u64)>,
    /// (time, frames asked) every 50 ms, the last second.
    history: [(Option<Instant>, u64); 24],
    next: usize,
    last_sample: Option<Instant>,
    /// Before it runs: (time, frames asked) at the last probe.
    probe: Option<(Instant, u64)>,
    running: bool,
}

impl ClockCheck {
    /// After its first quarter second (a server fills its buffer at once), the output may not
    /// ask for more than this many times real time over half a second.
    const TOO_FAST: f64 = 1.5;
    const WINDOW: Duration = Duration::from_millis(500);
    const GRACE: Duration = Duration::from_millis(250);
    /// Longest wait for the output to start (its first callbacks: cpal's PulseAudio client
    /// waits 1 to 2 s after the first), and the longest pause between two once it runs.
    const FIRST_CALL: Duration = Duration::from_secs(4);
    const SILENT: Duration = Duration::from_secs(1);
    /// The output counts as running once it has made this many callbacks and asked for at
    /// least half of real time over the last [`Self::PROBE`] (a sound server, or ALSA's
    /// plugin for one, takes its whole buffer at once and may then wait a second or two).
    const RUNNING_AFTER: u64 = 3;
    const PROBE: Duration = Duration::from_millis(100);

    fn new(rate: f64) -> ClockCheck {
        ClockCheck {
            rate,
            started: None,
            first_ask: None,
            last_change: None,
            history: [(None, 0); 24],
            next: 0,
            last_sample: None,
            probe: None,
            running: false,
        }
    }

    /// Whether the output asks for audio at a steady pace yet.
    fn running(&self) -> bool {
        self.running
    }

    fn observe(&mut self, now: Instant, asked: u64, callbacks: u64) -> Option<OutputFault> {
        let started = *self.started.get_or_insert(now);
        if !self.running {
            let (t, n) = *self.probe.get_or_insert((now, asked));
            let dt = now.duration_since(t);
            if dt >= Self::PROBE {
                let steady = (asked - n) as f64 >= 0.5 * self.rate * dt.as_secs_f64();
                self.running = steady && callbacks >= Self::RUNNING_AFTER;
                self.probe = Some((now, asked));
            }
            if !self.running {
                let waited = now.duration_since(started);
                return (waited > Self::FIRST_CALL)
                    .then_some(OutputFault::Silent { seconds: waited.as_secs_f64() });
            }
        }
        let first = *self.first_ask.get_or_insert(now);
        match self.last_change {
            Some((_, n)) if n == asked => {}
            _ => self.last_change = Some((now, asked)),
        }
        let (changed_at, _) = self.last_change.expect("set above");
        let quiet = now.duration_since(changed_at);
        if quiet > Self::SILENT {
            return Some(OutputFault::Silent { seconds: quiet.as_secs_f64() });
        }
        if now.duration_since(first) < Self::GRACE {
            return None;
        }
        if self.last_sample.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(50)) {
            self.history[self.next] = (Some(now), asked);
            self.next = (self.next + 1) % self.history.len();
            self.last_sample = Some(now);
        }
        // The oldest sample at least half a second back.
        let back = self
            .history
            .iter()
            .filter_map(|&(t, n)| t.map(|t| (t, n)))
            .filter(|&(t, _)| now.duration_since(t) >= Self::WINDOW)
            .max_by_key(|&(t, _)| t)?;
        let dt = now.duration_since(back.0).as_secs_f64();
        let ratio = (asked - back.1) as f64 / (dt * self.rate);
        (ratio > Self::TOO_FAST).then_some(OutputFault::TooFast { ratio })
    }
}

/// The non-realtime side: ring 1 -> channel map -> resampler -> ring 2, the drift loop and
/// the clock check. It owns the output stream, so it can pause an output that is not a clock.
struct Worker {
    input: HeapCons<f32>,
    in_ch: usize,
    out_ch: usize,
    map: ChannelMap,
    in_buf: Vec<f32>,
    res_in: Vec<Vec<f32>>,
    res_out: Vec<Vec<f32>>,
    out_buf: Vec<f32>,
    resampler: rubato::SincFixedIn<f32>,
    out: HeapProd<f32>,
    marks: HeapProd<Mark>,
    drift: DriftController,
    target_s: f64,
    period_s: f64,
    shared: Arc<Shared>,
    epoch: Instant,
    out_rate: f64,
    nominal_ratio: f64,
    /// Output frames pushed into ring 2 (silence included).
    pushed: u64,
    /// Device frames taken from ring 1.
    consumed: u64,
    /// Device frames seen in ring 1 (taken or still there).
    seen: u64,
    /// Device frames still to drop to resync.
    skip_in: u64,
    /// The output's delay, averaged (None before the first callback).
    out_delay_s: Option<f64>,
    /// The largest callback, and the largest batch of device frames, lately (seconds).
    bursts: RecentMax,
    in_bursts: RecentMax,
    /// Since when the fill has been too far off, and the correction at its bound.
    off_since: Option<Instant>,
    pinned_since: Option<Instant>,
    clock: ClockCheck,
    clocks: ClockWindow,
    /// The fill the drift loop holds, and since when the wanted one has differed.
    setpoint_s: Option<f64>,
    retarget_since: Option<Instant>,
    /// The drift loop's configured smoothing, seconds (the least it uses).
    smoothing_s: f64,
    /// Middle frames of batches seen but not yet resampled, with when they were seen.
    pending: std::collections::VecDeque<(u64, u64)>,
    controls: Receiver<Control>,
    /// The output; paused when it is not a clock, dropped when the worker ends.
    stream: Option<cpal::Stream>,
}

impl Worker {
    fn run(mut self) {
        let started = Instant::now();
        let cpu0 = thread_cpu_ns();
        let mut last = Instant::now();
        let mut underruns_seen = 0;
        let shared = Arc::clone(&self.shared);
        let c = &shared.counters;
        while !self.shared.stop.load(Relaxed) {
            while let Ok(Control::ChannelMap(m)) = self.controls.try_recv() {
                self.map = m;
            }
            let now = Instant::now();
            if c.fault_code.load(Relaxed) != 0 {
                // Not playing any more: keep the capture's ring empty, so it loses nothing.
                self.skip_input(u64::MAX);
                self.finish_tick(started, cpu0);
                last = now;
                continue;
            }
            if let Some(fault) =
                self.clock.observe(now, c.frames_asked.load(Relaxed), c.callbacks.load(Relaxed))
            {
                let (code, value) = fault.code();
                c.fault_value_bits.store(value.to_bits(), Relaxed);
                c.fault_code.store(code, Relaxed);
                // Drop it (pausing first): ALSA's file and null PCMs cannot pause, and a stream
                // that is only told to stop would spin on.
                if let Some(stream) = self.stream.take() {
                    let _ = stream.pause();
                }
                continue;
            }
            let (n, sum_us) = DelaySum::split(c.delays.swap(0, Relaxed));
            if n > 0 {
                let d = sum_us as f64 / n as f64 / 1e6;
                let dt = now.duration_since(last).as_secs_f64();
                self.out_delay_s = Some(match self.out_delay_s {
                    None => d,
                    Some(s) => s + (d - s) * (dt / (1.0 + dt)),
                });
                c.device_delay_ns.store((self.out_delay_s.unwrap_or(0.0) * 1e9) as u64, Relaxed);
            }
            self.bursts.observe(now, c.callback_frames_max.swap(0, Relaxed) as f64 / self.out_rate);
            c.burst_ns.store((self.bursts.get() * 1e9) as u64, Relaxed);

            let waiting = (self.input.occupied_len() / self.in_ch) as u64;
            let total = self.consumed + waiting;
            if total > self.seen {
                let mid = self.seen + (total - self.seen) / 2;
                let seen_ns = now.duration_since(self.epoch).as_nanos() as u64;
                if self.pending.len() < self.pending.capacity() {
                    self.pending.push_back((mid, seen_ns));
                }
                self.in_bursts.observe(now, (total - self.seen) as f64 * self.nominal_ratio / self.out_rate);
                self.seen = total;
            }
            // Start once the output runs (it has asked three times: a sound server asks for its
            // whole buffer first and may then wait a second or two before it plays), with the
            // ring at its target in silence, so playback starts steady. Until then the device's
            // frames are let go, so neither ring overflows.
            let running = self.clock.running();
            if !self.shared.primed.load(Relaxed) && !running {
                self.skip_input(u64::MAX);
            }
            if !self.shared.primed.load(Relaxed) && waiting >= CHUNK_FRAMES as u64 && running {
                let fill = self.ring_target_s();
                self.setpoint_s = Some(fill);
                self.drift.set_target(fill);
                self.push_silence((fill * self.out_rate) as usize);
                self.shared.primed.store(true, Relaxed);
            }
            if self.shared.primed.load(Relaxed) {
                if self.skip_in > 0 {
                    self.skip_in -= self.skip_input(self.skip_in);
                    if self.skip_in == 0 {
                        // The backlog is gone: measure the fill afresh, not the lagging average.
                        self.drift.reset_measurement();
                    }
                }
                while self.input.occupied_len() >= CHUNK_FRAMES * self.in_ch {
                    self.process_chunk();
                }
                let buffered = (self.out.occupied_len() / self.out_ch) as f64 / self.out_rate;
                let target = self.retarget(now);
                self.drift.set_min_smoothing(20.0 * self.bursts.get(), self.smoothing_s);
                let under = c.underruns.load(Relaxed);
                if under != underruns_seen {
                    underruns_seen = under;
                    // The output ran dry: refill to the target at once rather than slowly.
                    if buffered < target / 2.0 {
                        self.push_silence(((target - buffered) * self.out_rate) as usize);
                        self.drift.reset_measurement();
                    }
                }
                let rel = self.drift.update(buffered, now.duration_since(last).as_secs_f64());
                self.resync_if_far_off(now, started);
                // Within the 1 % the resampler was built for, by construction of the bound.
                let _ = self.resampler.set_resample_ratio_relative(rel, true);
                let ratio = self.nominal_ratio * rel;
                c.ratio_bits.store(ratio.to_bits(), Relaxed);
                if let Some((mean, clock_ppm)) = self.clocks.observe(
                    now,
                    c.frames_asked.load(Relaxed),
                    ratio,
                    self.out_rate,
                    self.out_delay_s.unwrap_or(0.0),
                ) {
                    c.ratio_mean_bits.store(mean.to_bits(), Relaxed);
                    c.output_clock_ppm_bits.store(clock_ppm.to_bits(), Relaxed);
                }
                c.correction_ppm_bits.store(self.drift.correction_ppm().to_bits(), Relaxed);
                c.buffered_ns
                    .store(((self.drift.error_s() + self.drift.target_s()).max(0.0) * 1e9) as u64, Relaxed);
                let holding = target + self.output_side_s();
                c.holding_ns.store((holding * 1e9) as u64, Relaxed);
            }
            last = now;
            self.finish_tick(started, cpu0);
        }
        if let Some(stream) = self.stream.take() {
            let _ = stream.pause();
        }
    }

    /// Lets go of up to `max` device frames waiting in ring 1 (and of their latency marks:
    /// they will not be played); returns how many.
    fn skip_input(&mut self, max: u64) -> u64 {
        let n = ((self.input.occupied_len() / self.in_ch) as u64).min(max);
        self.input.skip(n as usize * self.in_ch);
        self.consumed += n;
        while self.pending.front().is_some_and(|&(frame, _)| frame < self.consumed) {
            self.pending.pop_front();
        }
        n
    }

    fn finish_tick(&self, started: Instant, cpu0: u64) {
        let c = &self.shared.counters;
        c.worker_cpu_ns.store(thread_cpu_ns().saturating_sub(cpu0), Relaxed);
        c.elapsed_ns.store(started.elapsed().as_nanos() as u64, Relaxed);
        std::thread::sleep(WORKER_TICK);
    }

    /// Puts the fill back on target at once when the drift loop cannot: too far off for
    /// [`RESYNC_AFTER`], or the correction pinned at its widest bound for [`PINNED_AFTER`].
    /// Pinned at a narrower bound, the bound is widened instead (nothing heard).
    fn resync_if_far_off(&mut self, now: Instant, started: Instant) {
        if self.skip_in > 0 {
            // A resync is under way: judge the fill once it is done.
            self.off_since = None;
            self.pinned_since = None;
            return;
        }
        let e = self.drift.error_s();
        let limit = RESYNC_EXCESS_S.max(self.target_s / 2.0) + self.bursts.get() / 2.0;
        self.off_since = if e.abs() > limit { Some(self.off_since.unwrap_or(now)) } else { None };
        let pinned = (self.drift.correction_ppm().abs() - self.drift.max_ppm()).abs() < 1e-6;
        self.pinned_since = if pinned { Some(self.pinned_since.unwrap_or(now)) } else { None };
        // Not in the first second: the output's delay and bursts are still being learned.
        let warm = started.elapsed() > Duration::from_secs(1);
        let far = self.off_since.is_some_and(|t| now.duration_since(t) >= RESYNC_AFTER);
        let stuck = self.pinned_since.is_some_and(|t| now.duration_since(t) >= PINNED_AFTER);
        if !warm || self.skip_in > 0 {
            return;
        }
        if stuck && !far && self.drift.widen_bound(MAX_DRIFT_PPM) {
            self.pinned_since = None;
            return;
        }
        if !(far || stuck) {
            return;
        }
        if e > 0.0 {
            self.skip_in = (e * self.out_rate / self.nominal_ratio) as u64;
        } else {
            self.push_silence((-e * self.out_rate) as usize);
        }
        self.shared.counters.resyncs.fetch_add(1, Relaxed);
        self.drift.reset_measurement();
        // Pinned at its bound as the error grew: the clocks are further apart than it
        // allows; widen it, or, at the widest, start again from no offset.
        if self.pinned_since.is_some() && !self.drift.widen_bound(MAX_DRIFT_PPM) {
            self.drift.reset_integral();
        }
        self.off_since = None;
        self.pinned_since = None;
    }

    /// The fill the drift loop holds. It follows [`Worker::ring_target_s`] only when that
    /// has differed by over 5 ms (or a quarter) for 2 s: a sound server's reported delay
    /// wanders by several ms, and a setpoint that wandered with it would bend the pitch.
    fn retarget(&mut self, now: Instant) -> f64 {
        let want = self.ring_target_s();
        let current = *self.setpoint_s.get_or_insert(want);
        if (want - current).abs() > (0.25 * current).max(0.005) {
            let since = *self.retarget_since.get_or_insert(now);
            if now.duration_since(since) >= Duration::from_secs(2) {
                self.setpoint_s = Some(want);
                self.drift.set_target(want);
                self.retarget_since = None;
            }
        } else {
            self.retarget_since = None;
        }
        self.setpoint_s.unwrap_or(want)
    }

    fn resampler_delay_s(&self) -> f64 {
        self.resampler.output_delay() as f64 / self.out_rate
    }

    /// What the output side adds to a frame's wait in ring 2, on average: the output's
    /// reported delay (its queue ahead of each callback), half a callback (the buffer just
    /// handed over plays out after that queue) and the resampler's delay.
    fn output_side_s(&self) -> f64 {
        let device = self.out_delay_s.unwrap_or(self.period_s);
        device + self.bursts.get().max(self.period_s) / 2.0 + self.resampler_delay_s()
    }

    /// The audio ring 2 should hold: the target less what the output side adds, but at
    /// least the largest callback and device batch lately plus 2 ms (one period before the
    /// first callback), the bursts the ring must absorb.
    fn ring_target_s(&self) -> f64 {
        let burst = self.bursts.get().max(self.period_s) + self.in_bursts.get();
        (self.target_s - self.output_side_s()).max(burst + 0.002)
    }

    fn push_silence(&mut self, frames: usize) {
        let n = self.out.push_iter(std::iter::repeat_n(0.0, frames * self.out_ch)) / self.out_ch;
        self.pushed += n as u64;
    }

    fn process_chunk(&mut self) {
        let c = &self.shared.counters;
        let n_in = self.input.pop_slice(&mut self.in_buf);
        debug_assert_eq!(n_in, self.in_buf.len());
        for (o, src) in self.map.sources().iter().enumerate() {
            let dst = &mut self.res_in[o];
            match src {
                Some(s) => {
                    for (d, f) in dst.iter_mut().zip(self.in_buf.chunks_exact(self.in_ch)) {
                        *d = f[*s];
                    }
                }
                None => dst.fill(0.0),
            }
        }
        self.consumed += CHUNK_FRAMES as u64;
        c.frames_in.fetch_add(CHUNK_FRAMES as u64, Relaxed);
        let produced = match self.resampler.process_into_buffer(&self.res_in, &mut self.res_out, None) {
            Ok((_, n)) => n,
            Err(_) => return, // buffers are sized by the resampler itself; nothing to play
        };
        for (f, frame) in self.out_buf[..produced * self.out_ch].chunks_exact_mut(self.out_ch).enumerate() {
            for (o, s) in frame.iter_mut().enumerate() {
                *s = self.res_out[o][f];
            }
        }
        let samples = produced * self.out_ch;
        if self.out.vacant_len() >= samples {
            self.out.push_slice(&self.out_buf[..samples]);
            self.pushed += produced as u64;
        } else {
            c.overruns.fetch_add(1, Relaxed);
            c.overrun_frames.fetch_add(produced as u64, Relaxed);
        }
        // Where the marked device frames land in the output stream: the frame just consumed
        // comes out `output_delay` frames after the last one pushed.
        let ratio = f64::from_bits(c.ratio_bits.load(Relaxed));
        let delay = self.resampler.output_delay() as f64;
        while let Some(&(frame, seen_ns)) = self.pending.front() {
            if frame >= self.consumed {
                break;
            }
            self.pending.pop_front();
            let back = (self.consumed - frame) as f64 * ratio;
            let out_frame = (self.pushed as f64 + delay - back).max(0.0) as u64;
            let _ = self.marks.try_push(Mark { out_frame, seen_ns });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbuf::traits::Producer;

    /// Threads of this process named `name` (as the kernel keeps it: 15 bytes at most).
    fn threads_named(name: &str) -> usize {
        let name = &name.as_bytes()[..name.len().min(15)];
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read(t.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.strip_suffix(b"\n").unwrap_or(comm) == name)
            .count()
    }

    /// Stands in for the worker: spins every tick until told to stop, as the real one does.
    fn spin_until_stopped(stop: Arc<AtomicBool>) {
        while !stop.load(Relaxed) {
            std::thread::sleep(WORKER_TICK);
        }
    }

    #[test]
    fn a_failed_play_leaves_no_worker_thread_running() {
        let before = threads_named(WORKER_THREAD);
        let stop = Arc::new(AtomicBool::new(false));
        let refused = |_: &Arc<AtomicBool>| Err(MonitorError::Config("the output refused to play".into()));
        let e = spawn_after(Arc::clone(&stop), refused, spin_until_stopped).unwrap_err();
        assert!(e.to_string().contains("refused to play"), "{e}");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(threads_named(WORKER_THREAD), before, "a worker runs on after a failed play");
        // The check sees a worker that does run.
        let worker = spawn_after(Arc::clone(&stop), |_| Ok(()), spin_until_stopped).unwrap();
        let t = Instant::now(); // the thread names itself once it runs
        while threads_named(WORKER_THREAD) == before && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(threads_named(WORKER_THREAD), before + 1);
        stop.store(true, Relaxed);
        worker.join().unwrap();
        assert_eq!(threads_named(WORKER_THREAD), before);
    }

    fn callback(ring: HeapCons<f32>, marks: HeapCons<Mark>, shared: Arc<Shared>) -> Callback {
        Callback {
            ring,
            marks,
            pending_mark: None,
            shared,
            epoch: Instant::now(),
            channels: 2,
            rate: 48_000.0,
            scratch: vec![0.0; 8192 * 2].into_boxed_slice(),
            gain: 1.0,
            played: 0,
            pacing: Pacing::Device,
            t0: None,
            written: 0,
        }
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            counters: MonitorCounters::default(),
            volume_bits: AtomicU32::new(0.5f32.to_bits()),
            muted: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            primed: AtomicBool::new(true),
        })
    }

    #[test]
    fn the_callback_neither_allocates_nor_frees_and_counts_underruns() {
        let (mut prod, cons) = HeapRb::<f32>::new(48_000 * 2).split();
        let (mut mark_prod, mark_cons) = HeapRb::<Mark>::new(64).split();
        let shared = shared();
        let mut cb = callback(cons, mark_cons, Arc::clone(&shared));
        let input: Vec<f32> = (0..2 * 4800).map(|i| (i as f32 * 0.001).sin()).collect();
        prod.push_slice(&input);
        for k in 0..10u64 {
            let _ = mark_prod.try_push(Mark { out_frame: k * 480 + 240, seen_ns: 0 });
        }
        let mut out_f32 = vec![0.0f32; 2 * 480];
        let mut out_i16 = vec![0i16; 2 * 480];
        assert_no_alloc::reset_violation_count();
        assert_no_alloc::assert_no_alloc(|| {
            for k in 0..12 {
                // Ten full buffers, then two with nothing left in the ring (underruns);
                // the volume changes half-way (a ramp, not a click).
                if k == 5 {
                    shared.volume_bits.store(1.0f32.to_bits(), Relaxed);
                }
                if k % 2 == 0 {
                    cb.fill(&mut out_f32, Duration::from_millis(5));
                } else {
                    cb.fill(&mut out_i16, Duration::from_millis(5));
                }
            }
        });
        assert_eq!(assert_no_alloc::violation_count(), 0, "the audio callback (de)allocated");
        let st = shared.counters.snapshot();
        assert_eq!(st.frames_played, 4800);
        assert_eq!(st.callbacks, 12);
        assert_eq!((st.underruns, st.underrun_frames), (2, 960));
        assert_eq!(st.latency_samples, 10, "every marked frame's latency is measured");
        // The last buffers are silence, not stale samples.
        assert!(out_f32.iter().all(|&x| x == 0.0) && out_i16.iter().all(|&x| x == 0));
    }

    #[test]
    fn the_allocation_check_catches_an_allocation() {
        // The check above would fail if the callback allocated: the same check on a Vec.
        assert_no_alloc::reset_violation_count();
        assert_no_alloc::assert_no_alloc(|| std::hint::black_box(vec![1u8; 64]).len());
        assert!(assert_no_alloc::violation_count() > 0);
    }

    /// Feeds a [`ClockCheck`] an output that asks for `speed` times real time in 10 ms
    /// callbacks from `t0` until `stop_s`; returns the first fault and when (s) it came.
    fn clock_fault(speed: f64, stop_s: f64, until_s: f64) -> Option<(OutputFault, f64)> {
        let rate = 48_000.0;
        let mut check = ClockCheck::new(rate);
        let t0 = Instant::now();
        let (mut asked, mut calls) = (0u64, 0u64);
        let mut t = 0.0;
        while t < until_s {
            if t < stop_s {
                asked += (rate * 0.001 * speed) as u64;
                if (t * 1000.0).round() as u64 % 10 == 0 {
                    calls += 1;
                }
            }
            if let Some(f) = check.observe(t0 + secs(t), asked, calls) {
                return Some((f, t));
            }
            t += 0.001;
        }
        None
    }

    #[test]
    fn a_real_time_output_is_a_clock_and_the_others_are_caught_within_a_second() {
        assert_eq!(clock_fault(1.0, 10.0, 10.0), None, "real time");
        assert_eq!(clock_fault(1.3, 10.0, 10.0), None, "within the 1.5x allowed");
        let (f, t) = clock_fault(3.0, 10.0, 10.0).expect("3x real time is caught");
        assert!(matches!(f, OutputFault::TooFast { ratio } if (ratio - 3.0).abs() < 0.2), "{f:?}");
        assert!(t < 1.0, "caught after {t} s");
        let (f, t) = clock_fault(1.0, 2.0, 10.0).expect("an output that stops is caught");
        assert!(matches!(f, OutputFault::Silent { .. }), "{f:?}");
        assert!((3.0..3.1).contains(&t), "caught {t} s in, 1 s after it stopped");
        let (f, t) = clock_fault(1.0, 0.0, 10.0).expect("an output that never starts is caught");
        assert!(matches!(f, OutputFault::Silent { .. }) && (4.0..4.1).contains(&t), "{f:?} at {t}");
    }

    #[test]
    fn recent_max_forgets_after_two_seconds() {
        let mut m = RecentMax::default();
        let t0 = Instant::now();
        m.observe(t0, 0.040);
        for k in 1..=8 {
            m.observe(t0 + Duration::from_millis(250 * k), 0.005);
            if k < 8 {
                assert_eq!(m.get(), 0.040, "held at {k}");
            }
        }
        assert_eq!(m.get(), 0.005);
    }

    #[test]
    fn channel_maps_parse_check_and_fit() {
        assert_eq!(ChannelMap::parse("0,1", 2).unwrap().sources(), &[Some(0), Some(1)]);
        assert_eq!(ChannelMap::parse("2, -", 4).unwrap().sources(), &[Some(2), None]);
        assert!(ChannelMap::parse("2,3", 2).unwrap_err().to_string().contains("channel 2 does not exist"));
        assert!(ChannelMap::parse("a,1", 2).unwrap_err().to_string().contains("'a'"));
        assert_eq!(ChannelMap::default_for(1, 2).sources(), &[Some(0), Some(0)]);
        assert_eq!(ChannelMap::default_for(4, 2).sources(), &[Some(0), Some(1)]);
        assert_eq!(ChannelMap::parse("3", 4).unwrap().fit(2).sources(), &[Some(3), Some(3)]);
        assert_eq!(ChannelMap::parse("0,1", 2).unwrap().fit(4).sources(), &[Some(0), Some(1), None, None]);
    }
}
