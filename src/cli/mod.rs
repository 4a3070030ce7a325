//! Command-line arguments and subcommand dispatch.

mod bench;
mod capture;
mod device;
mod inspect;
mod monitor;
mod virtual_device;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use isoscope::capture::ModeRequest;

/// isoscope: USB isochronous oscilloscope and audio monitor with usbfs zero-copy capture.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// Without a subcommand: the GUI, capturing from the first USB device, else the simulated one.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Devices with iso IN endpoints (and the simulated one), their streams, usbfs caps.
    List(ListArgs),
    /// A device's descriptors in full (from a device, or a copy of sysfs `descriptors`).
    Describe(DescribeArgs),
    /// Capture from a device: live status, optional WAV recording and JSON statistics.
    Capture(CaptureArgs),
    /// Serve a virtual USB audio capture device over USB/IP (for vhci-hcd or `usbip attach`).
    VirtualDevice(VirtualDeviceArgs),
    /// Import a USB/IP device and plug it into this kernel's vhci-hcd (needs root).
    Attach(AttachArgs),
    /// Unplug the device on a vhci-hcd port (needs root).
    Detach(DetachArgs),
    /// Play a device live on a sound card (resampled, drift-compensated) and report the
    /// latency, underruns, overruns and the resampling ratio.
    Monitor(MonitorArgs),
    /// Zero-copy against copy mode on one device: alternating runs, CPU per MiB, syscalls.
    Bench(BenchArgs),
    /// Check that a WAV recording is an unbroken, bit-exact run of a test signal
    /// (e.g. what `arecord` recorded from `isoscope virtual-device`).
    VerifyWav(VerifyWavArgs),
    /// The GUI (the default).
    Gui(GuiArgs),
    /// Render the GUI after N seconds of capture and save it as PNG, then exit (needs a
    /// display: under CI, run it in xvfb-run).
    Screenshot(ScreenshotArgs),
}

#[derive(clap::Args, Debug, Default)]
pub struct GuiArgs {
    /// The device to open (default: the last one used, at first "auto").
    #[arg(long, short = 'd')]
    pub device: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ScreenshotArgs {
    /// The device: auto, sim, sim:SIGNAL, BUS:DEV, VID:PID or a /dev/bus/usb path.
    #[arg(long, short = 'd', default_value = "auto")]
    pub device: String,
    /// Seconds of capture before the screenshot.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Where to save the PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Theme: dark or light.
    #[arg(long, default_value = "dark")]
    pub theme: String,
    /// The tab to show: scope, spectrum, pool, compare.
    #[arg(long, default_value = "scope")]
    pub tab: String,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// List every USB device, not only those with iso IN endpoints.
    #[arg(long)]
    pub all: bool,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// The device: sim, BUS:DEV, VID:PID or a /dev/bus/usb path.
    #[arg(long, short = 'd', conflicts_with = "file")]
    pub device: Option<String>,
    /// A file holding descriptor bytes (e.g. a copy of /sys/bus/usb/devices/1-1/descriptors).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Seconds per run.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// A/B rounds (each runs zero-copy, then copy).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// URBs in flight.
    #[arg(long)]
    pub urbs: Option<usize>,
    /// Packets per URB.
    #[arg(long)]
    pub packets: Option<usize>,
    /// Write the figures as JSON here (default: stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct VerifyWavArgs {
    /// The signal the device sent: sine[:HZ], multitone[:HZ,..], chirp[:F0-F1], square[:HZ], noise.
    #[arg(long)]
    pub signal: String,
    /// The recording (its format, channels and rate are taken from its header).
    pub file: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct VirtualDeviceArgs {
    /// How the device reaches a host: usbip (vhci-hcd attaches it: `isoscope attach`) or
    /// usbredir (QEMU's usb-redir device connects to --listen and plugs it into the
    /// guest's emulated xHCI/EHCI/UHCI controller).
    #[arg(long, value_enum, default_value = "usbip")]
    pub transport: Transport,
    /// Address to listen on (3240 is the USB/IP port).
    #[arg(long, default_value = "127.0.0.1:3240")]
    pub listen: std::net::SocketAddr,
    /// USB Audio Class version: 2 (high speed) or 1 (full speed).
    #[arg(long, value_enum, default_value = "2")]
    pub uac: UacArg,
    /// Channels (1..8).
    #[arg(long, default_value_t = 2)]
    pub channels: u16,
    /// What the microphone hears: sine[:HZ], multitone[:HZ,..], chirp[:F0-F1], square[:HZ], noise, wav:PATH.
    #[arg(long, default_value = "sine")]
    pub signal: String,
    /// Share of short packets (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub short_ratio: f64,
    /// Share of failed packets (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub error_ratio: f64,
    /// Hang up after this many seconds of streaming (an unplug).
    #[arg(long)]
    pub disconnect_after: Option<f64>,
    /// With --disconnect-after over usbredir: plug the device in again this many seconds
    /// after the unplug (a replug), on the same connection.
    #[arg(long, requires = "disconnect_after")]
    pub reconnect_after: Option<f64>,
    /// Seed of the fault schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the device's descriptors (as sysfs `descriptors` shows them) to this file.
    #[arg(long)]
    pub write_descriptors: Option<PathBuf>,
}

/// The wire a virtual device is served over.
/// `--mode`: the library's [`ModeRequest`], as the command line spells it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    Auto,
    Zerocopy,
    Copy,
}

impl From<ModeArg> for ModeRequest {
    fn from(m: ModeArg) -> ModeRequest {
        match m {
            ModeArg::Auto => ModeRequest::Auto,
            ModeArg::Zerocopy => ModeRequest::ZeroCopy,
            ModeArg::Copy => ModeRequest::Copy,
        }
    }
}

/// `--uac`: the USB Audio Class version of the virtual device.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UacArg {
    #[value(name = "1")]
    V1,
    #[value(name = "2")]
    V2,
}

impl From<UacArg> for isoscope::sim::UacVersion {
    fn from(u: UacArg) -> isoscope::sim::UacVersion {
        match u {
            UacArg::V1 => isoscope::sim::UacVersion::V1,
            UacArg::V2 => isoscope::sim::UacVersion::V2,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Usbip,
    Usbredir,
}

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// The USB/IP server, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:3240")]
    pub host: String,
    /// The bus id of the exported device.
    #[arg(long, default_value = "1-1")]
    pub busid: String,
}

#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    /// The vhci port `attach` printed.
    #[arg(long)]
    pub port: u32,
}

/// Options that pick and shape a device's stream.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// sim, sim:SIGNAL (sine[:HZ], multitone[:HZ,..], chirp[:F0-F1], square[:HZ], noise,
    /// wav:PATH), BUS:DEV, VID:PID, or a /dev/bus/usb path. "auto": the first USB audio
    /// capture device isoscope may open, else the simulated device.
    #[arg(long, short = 'd', default_value = "auto")]
    pub device: String,
    /// Sample rate to ask the device for (default: 48000 if offered).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Channels to ask for.
    #[arg(long)]
    pub channels: Option<u16>,
    /// Sample format to ask for: u8, s8, s16, s24, s24_4, s32, f32.
    #[arg(long, value_parser = parse_sample_format)]
    pub format: Option<isoscope::dsp::SampleFormat>,
    /// Check a capture from `isoscope virtual-device` frame by frame: the signal it was
    /// started with (its --short-ratio, --error-ratio and --seed go in the --sim-* flags).
    #[arg(long)]
    pub verify_signal: Option<String>,
    /// Stop with an error after this many seconds without valid data (every packet failed
    /// or empty, or nothing completing); 0: never.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub no_data_timeout: f64,
    /// Simulated device: share of short packets (0..1).
    #[arg(long, default_value_t = 0.0, help_heading = "Simulated device")]
    pub sim_short_ratio: f64,
    /// Simulated device: share of failed packets (0..1).
    #[arg(long, default_value_t = 0.0, help_heading = "Simulated device")]
    pub sim_error_ratio: f64,
    /// Simulated device: unplug after this many seconds.
    #[arg(long, help_heading = "Simulated device")]
    pub sim_disconnect_after: Option<f64>,
    /// Simulated device: its usbfs_memory_mb (0 = unlimited).
    #[arg(long, default_value_t = 16, help_heading = "Simulated device")]
    pub sim_usbfs_mb: u32,
    /// Simulated device: complete transfers as fast as possible instead of in real time.
    #[arg(long, help_heading = "Simulated device")]
    pub sim_unpaced: bool,
    /// Simulated device: full speed (1 ms frames) instead of high speed (125 us).
    #[arg(long, help_heading = "Simulated device")]
    pub sim_full_speed: bool,
    /// Simulated device: seed of the fault schedule.
    #[arg(long, default_value_t = 1, help_heading = "Simulated device")]
    pub sim_seed: u64,
    /// Simulated device: its clock's offset in ppm (+500: 500 ppm fast), to see drift
    /// compensation at work.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true, help_heading = "Simulated device")]
    pub sim_clock_ppm: f64,
    /// Simulated device: its mapped memory reads this many times slower than the heap (an
    /// uncached mapping, as on some ARM kernels), to see `--mode auto` take copy mode.
    #[arg(long, default_value_t = 1.0, help_heading = "Simulated device")]
    pub sim_slow_mapping: f64,
}

#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The sound system: pipewire, pulseaudio or alsa. Default: the first of them that runs
    /// (`--list-outputs` shows which).
    #[arg(long, value_parser = clap::value_parser!(isoscope::audio::AudioHost))]
    pub host: Option<isoscope::audio::AudioHost>,
    /// The output: a name from `--list-outputs` (a sink, a PipeWire node, an ALSA PCM) or a
    /// unique part of its description. Default: the sound system's default output. Without
    /// --host, looked up on every running sound system.
    #[arg(long)]
    pub output: Option<String>,
    /// List the outputs and exit.
    #[arg(long)]
    pub list_outputs: bool,
    /// The latency to hold from URB completion to playback, ms.
    #[arg(long, default_value_t = 20.0)]
    pub latency_ms: f64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Write the final statistics as JSON to this file.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
    /// Linear gain (1.0: unchanged; 0 to 8).
    #[arg(long, default_value_t = 1.0)]
    pub volume: f32,
    /// Start muted.
    #[arg(long)]
    pub mute: bool,
    /// Which device channel plays on each output, 0-based: "0,1", "0,0" (channel 0 to both
    /// ears), "2,3", "0,-" ('-' is silence). Default: mono to both, else 0,1.
    #[arg(long)]
    pub channel_map: Option<String>,
    /// The output's sample rate (default: the device's, if the output offers it).
    #[arg(long)]
    pub output_rate: Option<u32>,
    /// Pace playback by the host clock instead of the sound card: for ALSA outputs that
    /// take frames as fast as they come (`null`, `file`), in tests and benchmarks.
    #[arg(long)]
    pub pace_host_clock: bool,
    /// Also record to this WAV file in the device's native format. With a recording, a
    /// missing or busy sound card is a warning and the capture goes on.
    #[arg(long)]
    pub wav: Option<PathBuf>,
    /// auto: zero-copy if possible, else copy mode; zerocopy: or fail; copy.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    /// Print no live status line.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// auto: zero-copy if possible, else copy mode (said on stderr); zerocopy: or fail; copy.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Record to this WAV file in the device's native format.
    #[arg(long)]
    pub wav: Option<PathBuf>,
    /// Write the --wav recording as 32-bit float instead of the native format.
    #[arg(long, requires = "wav")]
    pub wav_float: bool,
    /// Write the final statistics as JSON to this file.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
    /// URBs kept in flight (default: enough for --queue-ms).
    #[arg(long)]
    pub urbs: Option<usize>,
    /// Packets per URB, 1..128 (default: enough for --urb-ms).
    #[arg(long)]
    pub packets: Option<usize>,
    /// Target duration of one URB in ms.
    #[arg(long, default_value_t = 4.0)]
    pub urb_ms: f64,
    /// Target audio queued in the kernel in ms.
    #[arg(long, default_value_t = 32.0)]
    pub queue_ms: f64,
    /// isoscope's own cap on buffer memory, in MiB.
    #[arg(long, default_value_t = 8)]
    pub pool_cap_mb: u64,
    /// Print no live status line.
    #[arg(long, short)]
    pub quiet: bool,
}

impl DeviceArgs {
    /// `--no-data-timeout` as the engine takes it.
    pub fn no_data_timeout(&self) -> anyhow::Result<Option<std::time::Duration>> {
        let s = self.no_data_timeout;
        anyhow::ensure!(
            s.is_finite() && s >= 0.0,
            "--no-data-timeout must be a number of seconds >= 0, not {s}"
        );
        Ok((s > 0.0).then(|| std::time::Duration::from_secs_f64(s)))
    }
}

fn parse_sample_format(s: &str) -> Result<isoscope::dsp::SampleFormat, String> {
    isoscope::dsp::SampleFormat::parse(s)
        .ok_or_else(|| format!("unknown sample format '{s}': use u8, s8, s16, s24, s24_4, s32 or f32"))
}

/// Runs the chosen subcommand. With none, opens the GUI on the first USB capture device
/// isoscope may open, else the simulated device.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Command::List(a)) => inspect::list(&a),
        Some(Command::Describe(a)) => inspect::describe(&a),
        Some(Command::Capture(a)) => capture::run(&a),
        Some(Command::VirtualDevice(a)) => virtual_device::serve(&a),
        Some(Command::Attach(a)) => virtual_device::attach(&a),
        Some(Command::Detach(a)) => virtual_device::detach(&a),
        Some(Command::VerifyWav(a)) => verify_wav(&a),
        Some(Command::Bench(a)) => bench::run(&a),
        Some(Command::Monitor(a)) => monitor::run(&a),
        Some(Command::Gui(a)) => gui(a.device, None),
        Some(Command::Screenshot(a)) => screenshot(&a),
        None => gui(None, None),
    }
}

fn gui(device: Option<String>, shot: Option<isoscope::app::GuiOptions>) -> anyhow::Result<ExitCode> {
    let opts = shot.unwrap_or(isoscope::app::GuiOptions { device, ..Default::default() });
    if let Some(path) = isoscope::app::run(opts).map_err(anyhow::Error::msg)? {
        eprintln!("isoscope: saved {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn screenshot(a: &ScreenshotArgs) -> anyhow::Result<ExitCode> {
    use isoscope::app::{GuiOptions, Tab};
    anyhow::ensure!(
        a.seconds.is_finite() && a.seconds >= 0.0,
        "--seconds must be a number >= 0, not {}",
        a.seconds
    );
    let dark = match a.theme.as_str() {
        "dark" => true,
        "light" => false,
        t => anyhow::bail!("unknown theme '{t}': use dark or light"),
    };
    let tab = match a.tab.as_str() {
        "scope" => Tab::Scope,
        "spectrum" => Tab::Spectrum,
        "pool" => Tab::Pool,
        "compare" => Tab::Compare,
        t => anyhow::bail!("unknown tab '{t}': use scope, spectrum, pool or compare"),
    };
    let opts = GuiOptions {
        device: Some(a.device.clone()),
        screenshot: Some((std::time::Duration::from_secs_f64(a.seconds), a.out.clone())),
        dark: Some(dark),
        tab: Some(tab),
        fresh: true,
        session: None,
    };
    gui(None, Some(opts))
}

fn verify_wav(args: &VerifyWavArgs) -> anyhow::Result<ExitCode> {
    use isoscope::sim::{check_contiguous, PcmTable, Signal};
    let signal: Signal = args.signal.parse()?;
    let recording =
        PcmTable::render(&Signal::Wav(args.file.clone()), isoscope::sim::SimConfig::default().format)?;
    let table = PcmTable::render(&signal, recording.format)?;
    let Some(a) = check_contiguous(&table, recording.bytes()) else {
        anyhow::bail!(
            "{}: its first frames match {} ({}) nowhere: wrong signal, format, or not a capture of it",
            args.file.display(),
            signal,
            recording.format
        );
    };
    println!("{}", serde_json::to_string(&a)?);
    eprintln!(
        "isoscope: {}: {} frames of {} ({}) from frame {}: {} match, {} differ; {} gaps ({} frames missing: lost on the way, the frames around them match)",
        args.file.display(),
        a.verified + a.mismatched,
        signal,
        recording.format,
        a.offset,
        a.verified,
        a.mismatched,
        a.gaps,
        a.missing_frames
    );
    Ok(if a.mismatched == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Writes a statistics report as pretty JSON.
pub(crate) fn write_json(path: &std::path::Path, report: &impl serde::Serialize) -> anyhow::Result<()> {
    use anyhow::Context;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(path, json + "\n").with_context(|| {
        format!("cannot write statistics to {}: check the folder exists and is writable", path.display())
    })
}

/// Waits until Ctrl-C or SIGTERM (`stop`), the end of the capture, or `seconds`; unless
/// `quiet` or stderr is not a terminal, redraws `status()` there twice a second.
pub(crate) fn wait_for_end(
    capture: &isoscope::capture::Capture,
    stop: &std::sync::atomic::AtomicBool,
    seconds: Option<f64>,
    quiet: bool,
    mut status: impl FnMut() -> Option<String>,
) {
    use std::io::IsTerminal;
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let live = !quiet && std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed)
        && !capture.is_finished()
        && seconds.is_none_or(|s| started.elapsed().as_secs_f64() < s)
    {
        std::thread::sleep(Duration::from_millis(20));
        if live && last_line.elapsed() >= Duration::from_millis(500) {
            if let Some(line) = status() {
                eprint!("\r{line}   ");
            }
            last_line = Instant::now();
        }
    }
    if live {
        eprintln!();
    }
}
