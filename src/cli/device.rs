//! Turning the `--device` options into a [`Source`] (through [`isoscope::source::open`]),
//! saying on stderr what was chosen, and the verifier for `--verify-signal`.

use anyhow::Context;
use isoscope::sim::VirtualDeviceConfig;
use isoscope::sim::{Faults, SimConfig, Verifier};
use isoscope::source::{self, Source};
use isoscope::usb::uac::StreamRequest;
use isoscope::usb::Speed;

use super::DeviceArgs;

fn faults(args: &DeviceArgs) -> Faults {
    Faults {
        short_ratio: args.sim_short_ratio,
        error_ratio: args.sim_error_ratio,
        disconnect_after_s: args.sim_disconnect_after,
    }
}

/// Opens what `args.device` names. The verifier checks the capture frame by frame: always
/// for the simulated device, with `--verify-signal` for `isoscope virtual-device`.
pub fn open(args: &DeviceArgs) -> anyhow::Result<(Source, Option<Verifier>)> {
    let req = StreamRequest { rate: args.rate, channels: args.channels, sample: args.format };
    let sim = SimConfig {
        speed: if args.sim_full_speed { Speed::Full } else { Speed::High },
        faults: faults(args),
        realtime: !args.sim_unpaced,
        usbfs_memory_mb: args.sim_usbfs_mb,
        seed: args.sim_seed,
        clock_ppm: args.sim_clock_ppm,
        mapping_slowdown: args.sim_slow_mapping,
        ..SimConfig::default()
    };
    let opened = source::open(&args.device, &req, &sim)?;
    if let Some(why) = &opened.fallback {
        eprintln!("isoscope: {why}");
    }
    let verifier = match &opened.source {
        Source::Sim(device) => Some(device.verifier()),
        Source::Usb(capture) => {
            for (interface, driver) in &capture.detached {
                eprintln!(
                    "isoscope: took interface {interface} from {driver}; it gets it back when the capture ends"
                );
            }
            match &args.verify_signal {
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
            }
        }
    };
    Ok((opened.source, verifier))
}
