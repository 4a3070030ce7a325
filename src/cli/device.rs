//! Turning a `--device` selector into a backend and the stream it will capture.

use anyhow::{bail, Context};
use isoscope::dsp::{PcmFormat, SampleFormat};
use isoscope::sim::{Faults, Signal, SimBackend, SimConfig, SimDevice};
use isoscope::usb::Speed;

use super::DeviceArgs;

/// A device ready to capture from.
pub enum OpenedDevice {
    Sim { device: SimDevice, backend: SimBackend },
}

/// Opens what `args.device` names.
pub fn open(args: &DeviceArgs) -> anyhow::Result<OpenedDevice> {
    let sel = args.device.as_str();
    if sel == "auto" || sel == "sim" || sel.starts_with("sim:") {
        let signal = match sel.strip_prefix("sim:") {
            Some(s) => s.parse::<Signal>()?,
            None => Signal::default(),
        };
        return open_sim(args, signal);
    }
    bail!("cannot open '{sel}': USB devices are not supported by this build yet; use --device sim")
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
        faults: Faults {
            short_ratio: args.sim_short_ratio,
            error_ratio: args.sim_error_ratio,
            disconnect_after_s: args.sim_disconnect_after,
        },
        realtime: !args.sim_unpaced,
        usbfs_memory_mb: args.sim_usbfs_mb,
        seed: args.sim_seed,
        ..SimConfig::default()
    };
    let device = SimDevice::new(cfg).context("cannot set up the simulated device")?;
    let backend = device.backend();
    Ok(OpenedDevice::Sim { device, backend })
}
