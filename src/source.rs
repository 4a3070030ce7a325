//! Where samples come from: a device selector (`auto`, `sim[:SIGNAL]`, `BUS:DEV`, `VID:PID`,
//! a `/dev/bus/usb` path) turned into a USB device opened through usbfs or the simulated
//! device, ready to capture. The CLI and the GUI both open devices here.

use std::path::Path;

use crate::capture::{Capture, CaptureConfig, CaptureError, Sink, StreamConfig};
use crate::fix::Fix;
use crate::sim::signal::SignalError;
use crate::sim::{Signal, SimConfig, SimDevice, SimError};
use crate::usb::discovery::{self, DeviceSelector, SelectorError, UsbDeviceInfo};
use crate::usb::open::{open_capture, OpenError, UsbCapture};
use crate::usb::uac::StreamRequest;

/// Why a device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("no USB device matches '{0}'")]
    NotFound(String),
    #[error("cannot list USB devices: {0}")]
    Discovery(String),
    /// The caller gave up on the open (a stop came while it ran).
    #[error("opening '{0}' was cancelled")]
    Cancelled(String),
}

impl SourceError {
    /// The standard remedy, if there is one (each front end says it in its own words).
    pub fn fix(&self) -> Option<Fix> {
        match self {
            SourceError::Open(e) => e.fix(),
            SourceError::Discovery(_) => Some(Fix::NoSysfs),
            SourceError::NotFound(_) => Some(Fix::PickDevice),
            _ => None,
        }
    }
}

/// A device ready to capture from.
pub enum Source {
    Sim(Box<SimDevice>),
    Usb(Box<UsbCapture>),
}

/// What [`open`] found.
pub struct Opened {
    pub source: Source,
    /// With `auto`: why it is the simulated device (none found, or why each failed).
    pub fallback: Option<String>,
}

impl Source {
    /// Starts a capture on it, pushing into `sinks`.
    pub fn start(self, cfg: &CaptureConfig, sinks: Vec<Sink>) -> Result<Capture, CaptureError> {
        match self {
            Source::Sim(dev) => Capture::start(dev.backend(), dev.stream(), cfg, sinks),
            Source::Usb(usb) => {
                let usb = *usb;
                Capture::start(usb.backend, usb.stream, cfg, sinks)
            }
        }
    }

    /// The stream it will capture.
    pub fn stream(&self) -> StreamConfig {
        match self {
            Source::Sim(dev) => dev.stream(),
            Source::Usb(usb) => usb.stream,
        }
    }

    /// A few lines about the device for a bug report.
    pub fn summary(&self) -> String {
        match self {
            Source::Sim(dev) => format!("{} (simulated, in process)", dev.name()),
            Source::Usb(usb) => {
                let mut s = format!("stream: {}", usb.chosen);
                if let Some(hc) = &usb.host_controller {
                    s.push_str(&format!("\nhost controller: {hc}"));
                }
                for (i, d) in &usb.detached {
                    s.push_str(&format!("\ntook interface {i} from {d}"));
                }
                s
            }
        }
    }
}

/// Opens what `selector` names, asking for the stream in `req`. The simulated device is
/// `sim` (faults, pacing, seed, ...) with the signal the selector names and the format
/// `req` asks for. `auto` is the first USB audio capture device that opens, else the
/// simulated device, and says why in [`Opened::fallback`].
pub fn open(selector: &str, req: &StreamRequest, sim: &SimConfig) -> Result<Opened, SourceError> {
    open_cancellable(selector, req, sim, &|| false)
}

/// [`open`], giving up with [`SourceError::Cancelled`] as soon as `cancelled` says so: it
/// is asked between the steps of an open (and through the simulator's open delay), so a
/// caller that wants to stop does not wait for every device `auto` would try.
pub fn open_cancellable(
    selector: &str,
    req: &StreamRequest,
    sim: &SimConfig,
    cancelled: &dyn Fn() -> bool,
) -> Result<Opened, SourceError> {
    let gave_up = || SourceError::Cancelled(selector.to_string());
    let sim_with = |signal: Signal| -> Result<Source, SourceError> {
        let mut cfg = SimConfig { signal, ..sim.clone() };
        cfg.format.sample = req.sample.unwrap_or(cfg.format.sample);
        cfg.format.channels = req.channels.unwrap_or(cfg.format.channels);
        cfg.format.rate = req.rate.unwrap_or(cfg.format.rate);
        let f = cfg.format;
        if !(1..=64).contains(&f.channels) || !(1_000..=768_000).contains(&f.rate) {
            return Err(SimError::Config(format!(
                "it streams 1 to 64 channels at 1000 to 768000 Hz, not {f}"
            ))
            .into());
        }
        let until = std::time::Instant::now() + sim.open_delay;
        while std::time::Instant::now() < until {
            if cancelled() {
                return Err(gave_up());
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(Source::Sim(Box::new(SimDevice::new(cfg)?)))
    };
    match selector.parse::<DeviceSelector>()? {
        DeviceSelector::Sim(signal) => {
            let signal = match signal {
                Some(s) => s.parse::<Signal>()?,
                None => Signal::default(),
            };
            Ok(Opened { source: sim_with(signal)?, fallback: None })
        }
        DeviceSelector::Auto => {
            let devices =
                discovery::list_devices(Path::new(discovery::SYSFS_USB_DEVICES)).unwrap_or_default();
            let mut reasons = Vec::new();
            for info in devices.iter().filter(|d| has_audio_capture(d)) {
                if cancelled() {
                    return Err(gave_up());
                }
                match open_capture(info, req) {
                    Ok(c) => return Ok(Opened { source: Source::Usb(Box::new(c)), fallback: None }),
                    Err(e) => reasons.push(format!("{}: {e}", info.label())),
                }
            }
            let why = if reasons.is_empty() {
                "No USB audio capture device found: using the built-in simulated device.".to_string()
            } else {
                format!(
                    "No USB capture device could be opened ({}): using the built-in simulated device.",
                    reasons.join("; ")
                )
            };
            Ok(Opened { source: sim_with(Signal::default())?, fallback: Some(why) })
        }
        sel => {
            let devices = discovery::list_devices(Path::new(discovery::SYSFS_USB_DEVICES))
                .map_err(|e| SourceError::Discovery(format!("looking for '{selector}': {e}")))?;
            let info = sel.find(&devices).ok_or_else(|| SourceError::NotFound(selector.to_string()))?;
            if cancelled() {
                return Err(gave_up());
            }
            Ok(Opened { source: Source::Usb(Box::new(open_capture(info, req)?)), fallback: None })
        }
    }
}

/// Whether a device's active configuration has an audio streaming interface with an iso IN
/// endpoint.
pub fn has_audio_capture(info: &UsbDeviceInfo) -> bool {
    info.audio_streams().is_ok_and(|s| !s.is_empty())
}
