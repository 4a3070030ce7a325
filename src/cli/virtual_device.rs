//! `isoscope virtual-device`, `attach` and `detach`: a virtual USB audio device served over
//! USB/IP (plugged into this kernel's vhci-hcd with `attach`) or over usbredir (to QEMU's
//! usb-redir, on the guest's emulated host controller).

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use isoscope::sim::{usbip, usbredir};
use isoscope::sim::{Faults, Signal};
use isoscope::sim::{VirtualDevice, VirtualDeviceConfig};
use isoscope::usb::vhci;

use super::{AttachArgs, DetachArgs, Transport, VirtualDeviceArgs};

pub fn serve(args: &VirtualDeviceArgs) -> anyhow::Result<ExitCode> {
    let cfg = VirtualDeviceConfig {
        uac: args.uac.into(),
        channels: args.channels,
        signal: args.signal.parse::<Signal>()?,
        faults: Faults {
            short_ratio: args.short_ratio,
            error_ratio: args.error_ratio,
            disconnect_after_s: args.disconnect_after,
        },
        seed: args.seed,
    };
    for (name, r) in [("--short-ratio", args.short_ratio), ("--error-ratio", args.error_ratio)] {
        anyhow::ensure!((0.0..=1.0).contains(&r), "{name} must be between 0 and 1, not {r}");
    }
    let device = VirtualDevice::new(cfg.clone()).context("cannot set up the virtual device")?;
    if let Some(path) = &args.write_descriptors {
        std::fs::write(path, device.descriptor_bytes())
            .with_context(|| format!("cannot write the descriptors to {}", path.display()))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install the signal handler")?;
    }
    let uac = match cfg.uac {
        isoscope::sim::UacVersion::V1 => 1,
        isoscope::sim::UacVersion::V2 => 2,
    };
    let what = format!("a virtual UAC{uac} microphone ({} ch, {})", cfg.channels, cfg.signal);
    match args.transport {
        Transport::Usbip => {
            anyhow::ensure!(
                args.reconnect_after.is_none(),
                "--reconnect-after is for --transport usbredir: over USB/IP an unplugged device comes back with `isoscope attach`"
            );
            let listener = usbip::bind(args.listen)?;
            let local = listener.local_addr().unwrap_or(args.listen);
            eprintln!("isoscope: serving {what} as bus id {} on {local}", usbip::BUSID);
            eprintln!("isoscope: attach it with `sudo isoscope attach --host {local}`");
            usbip::serve(listener, cfg, stop, |line| eprintln!("isoscope: usbip: {line}"))?;
        }
        Transport::Usbredir => {
            let secs = |name: &str, v: Option<f64>| -> anyhow::Result<Option<std::time::Duration>> {
                v.map(|s| {
                    anyhow::ensure!(
                        s.is_finite() && s >= 0.0,
                        "{name} must be a number of seconds >= 0, not {s}"
                    );
                    Ok(std::time::Duration::from_secs_f64(s))
                })
                .transpose()
            };
            let replug = usbredir::Replug {
                disconnect_after: secs("--disconnect-after", args.disconnect_after)?,
                reconnect_after: secs("--reconnect-after", args.reconnect_after)?,
            };
            let listener = usbredir::bind(args.listen)?;
            let local = listener.local_addr().unwrap_or(args.listen);
            eprintln!("isoscope: serving {what} over usbredir on {local}");
            eprintln!(
                "isoscope: plug it into a QEMU guest with `-device qemu-xhci,id=hc -chardev socket,id=ur,host={},port={},reconnect=1 -device usb-redir,chardev=ur,bus=hc.0`",
                local.ip(),
                local.port()
            );
            usbredir::serve(listener, cfg, replug, stop, |line| eprintln!("isoscope: usbredir: {line}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn attach(args: &AttachArgs) -> anyhow::Result<ExitCode> {
    let port = vhci::attach(Path::new(vhci::VHCI_SYSFS), &args.host, &args.busid)?;
    println!("{port}");
    eprintln!(
        "isoscope: attached {} from {} on vhci port {port}; `isoscope detach --port {port}` unplugs it",
        args.busid, args.host
    );
    Ok(ExitCode::SUCCESS)
}

pub fn detach(args: &DetachArgs) -> anyhow::Result<ExitCode> {
    vhci::detach(Path::new(vhci::VHCI_SYSFS), args.port)?;
    Ok(ExitCode::SUCCESS)
}
