//! Turning a `--device` selector into a backend and the stream it will capture.

use std::path::Path;

use anyhow::{bail, Context};
use isoscope::dsp::{PcmFormat, SampleFormat};
use isoscope::sim::usbip::VirtualDeviceConfig;
use isoscope::sim::{Faults, Signal, SimBackend, SimConfig, SimDevice, Verifier};
use isoscope::usb::discovery::{self, DeviceSelector, UsbDeviceInfo};
use isoscope::usb::open::{open_capture, UsbCapture};
use isoscope::usb::uac::StreamRequest;
use isoscope::usb::Speed;

use super::DeviceArgs;

/// A device ready to capture from.
pub enum OpenedDevice {
    Sim { device: Box<SimDevice>, backend: Box<SimBackend> },
    Usb { capture: Box<UsbCapture>, verifier: Option<Verifier> },
}

fn faults(args: &DeviceArgs) -> Faults {
    Faults {
        short_ratio: args.sim_short_ratio,
        error_ratio: args.sim_error_ratio,
        disconnect_after_s: args.sim_disconnect_after,
    }
}

fn request(args: &DeviceArgs) -> StreamRequest {
    StreamRequest { rate: args.rate, channels: args.channels, sample: args.format }
}

/// Opens what `args.device` names.
pub fn open(args: &DeviceArgs) -> anyhow::Result<OpenedDevice> {
    let sel: DeviceSelector = args.device.parse()?;
    match sel {
        DeviceSelector::Sim(signal) => {
            let signal = match signal {
                Some(s) => s.parse::<Signal>()?,
                None => Signal::default(),
            };
            open_sim(args, signal)
        }
        DeviceSelector::Auto => {
            let devices =
                discovery::list_devices(Path::new(discovery::SYSFS_USB_DEVICES)).unwrap_or_default();
            let mut reasons = Vec::new();
            for info in devices.iter().filter(|d| has_audio_capture(d)) {
                match open_usb(args, info) {
                    Ok(dev) => return Ok(dev),
                    Err(e) => reasons.push(format!("{}: {e:#}", info.label())),
                }
            }
            if reasons.is_empty() {
                eprintln!("isoscope: no USB audio capture device found; using the simulated device");
            } else {
                eprintln!("isoscope: no USB capture device could be opened; using the simulated device");
                for r in reasons {
                    eprintln!("isoscope:   {r}");
                }
            }
            open_sim(args, Signal::default())
        }
        sel => {
            let devices = discovery::list_devices(Path::new(discovery::SYSFS_USB_DEVICES))?;
            let info = sel.find(&devices).with_context(|| {
                format!("no USB device matches '{}': `isoscope list` shows what is connected", args.device)
            })?;
            open_usb(args, info)
        }
    }
}

/// Whether a device has an audio streaming interface with an iso IN endpoint.
pub fn has_audio_capture(info: &UsbDeviceInfo) -> bool {
    isoscope::usb::descriptors::parse(&info.descriptors).is_ok_and(|d| !d.audio_streams().is_empty())
}

fn open_usb(args: &DeviceArgs, info: &UsbDeviceInfo) -> anyhow::Result<OpenedDevice> {
    let capture = open_capture(info, &request(args))?;
    for (interface, driver) in &capture.detached {
        eprintln!(
            "isoscope: took interface {interface} from {driver}; it gets it back when the capture ends"
        );
    }
    let verifier = match &args.verify_signal {
        Some(sig) => {
            let cfg = VirtualDeviceConfig {
                uac: capture.chosen.uac,
                channels: capture.stream.format.channels,
                signal: sig.parse()?,
                faults: faults(args),
                seed: args.sim_seed,
            };
            let twin = cfg
                .stream_twin(capture.stream.format.sample, capture.stream.format.rate)
                .context("cannot model the virtual device's stream for --verify-signal")?;
            Some(twin.verifier())
        }
        None => None,
    };
    Ok(OpenedDevice::Usb { capture: Box::new(capture), verifier })
}

fn open_sim(args: &DeviceArgs, signal: Signal) -> anyhow::Result<OpenedDevice> {
    let format = PcmFormat {
        sample: args.format.unwrap_or(SampleFormat::S16Le),
        channels: args.channels.unwrap_or(2),
        rate: args.rate.unwrap_or(48_000),
    };
    if !(1..=64).contains(&format.channels) || !(1_000..=768_000).contains(&format.rate) {
        bail!("the simulated device streams 1 to 64 channels at 1000 to 768000 Hz, not {format}");
    }
    let cfg = SimConfig {
        signal,
        format,
        speed: if args.sim_full_speed { Speed::Full } else { Speed::High },
        faults: faults(args),
        realtime: !args.sim_unpaced,
        usbfs_memory_mb: args.sim_usbfs_mb,
        seed: args.sim_seed,
        clock_ppm: args.sim_clock_ppm,
        ..SimConfig::default()
    };
    let device = SimDevice::new(cfg).context("cannot set up the simulated device")?;
    let backend = device.backend();
    Ok(OpenedDevice::Sim { device: Box::new(device), backend: Box::new(backend) })
}
