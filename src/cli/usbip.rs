//! `isoscope virtual-device`, `attach` and `detach`: a virtual USB audio device served over
//! USB/IP, and plugging it (or any USB/IP device) into this kernel's vhci-hcd.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use isoscope::sim::usbip;
use isoscope::sim::{Faults, Signal};
use isoscope::sim::{VirtualDevice, VirtualDeviceConfig};
use isoscope::usb::vhci;

use super::{AttachArgs, DetachArgs, VirtualDeviceArgs};

pub fn virtual_device(args: &VirtualDeviceArgs) -> anyhow::Result<ExitCode> {
    let cfg = VirtualDeviceConfig {
        uac: args.uac,
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
    let listener = usbip::bind(args.listen)?;
    let local = listener.local_addr().unwrap_or(args.listen);
    eprintln!(
        "isoscope: serving a virtual UAC{} microphone ({} ch, {}) as bus id {} on {}",
        match cfg.uac {
            isoscope::sim::UacVersion::V1 => 1,
            isoscope::sim::UacVersion::V2 => 2,
        },
        cfg.channels,
        cfg.signal,
        usbip::BUSID,
        local
    );
    eprintln!("isoscope: attach it with `sudo isoscope attach --host {local}`");
    usbip::serve(listener, cfg, stop, |line| eprintln!("isoscope: usbip: {line}"))?;
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
