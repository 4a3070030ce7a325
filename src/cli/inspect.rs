//! `isoscope list` and `isoscope describe`: what is connected, what it can stream, and its
//! descriptors in full.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use isoscope::dma::{human_bytes, MemoryLimit};
use isoscope::sim::{VirtualDevice, VirtualDeviceConfig};
use isoscope::usb::asound::PROC_ASOUND;
use isoscope::usb::descriptors::{self, AudioStream, DeviceDescriptors};
use isoscope::usb::discovery::UsbDeviceInfo;
use isoscope::usb::discovery::{self, DeviceSelector};
use isoscope::usb::open::resolve_clock_rates;
use isoscope::usb::usbfs::{caps, UsbfsDevice};
use isoscope::usb::Speed;

use super::{DescribeArgs, ListArgs};

#[derive(serde::Serialize)]
struct ListedDevice {
    selector: String,
    name: String,
    speed: Option<String>,
    dev_node: Option<String>,
    /// Interface number and bound driver.
    interfaces: Vec<(u8, Option<String>)>,
    /// The host controller: driver, device, DMA mask.
    host_controller: Option<isoscope::usb::controller::HostController>,
    streams: Vec<String>,
    usbfs_capabilities: Option<Vec<&'static str>>,
    note: Option<String>,
}

#[derive(serde::Serialize)]
struct Listing {
    usbfs_memory_mb: Option<u32>,
    devices: Vec<ListedDevice>,
}

pub fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let limit = MemoryLimit::from_sysfs(MemoryLimit::DEFAULT_APP_CAP);
    let mut devices = vec![ListedDevice {
        selector: "sim".into(),
        name: "isoscope simulated device (sim, or sim:SIGNAL)".into(),
        speed: Some("high speed (480 Mb/s)".into()),
        dev_node: None,
        interfaces: Vec::new(),
        host_controller: None,
        streams: vec![
            "any of U8, S8, S16_LE, S24_3LE, S24_LE, S32_LE, FLOAT_LE; 1 to 64 ch; 1000 to 768000 Hz \
             (--format, --channels, --rate); default S16_LE 2 ch 48000 Hz"
                .into(),
        ],
        usbfs_capabilities: None,
        note: Some("in-process, no kernel involved".into()),
    }];
    let (usb, note) = match discovery::list_devices(Path::new(discovery::SYSFS_USB_DEVICES)) {
        Ok(d) => (d, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    for info in &usb {
        let parsed = descriptors::parse(&info.descriptors);
        let iso_in = parsed.as_ref().is_ok_and(|d| {
            d.configs
                .iter()
                .flat_map(|c| &c.interfaces)
                .flat_map(|i| &i.endpoints)
                .any(|e| e.is_in() && e.transfer_type() == descriptors::TransferType::Isochronous)
        });
        if !iso_in && !args.all {
            continue;
        }
        let (caps, note) = match UsbfsDevice::open(&info.dev_node()).and_then(|d| d.capabilities()) {
            Ok(bits) => (Some(caps::names(bits)), None),
            Err(e) => (None, Some(e.to_string())),
        };
        devices.push(ListedDevice {
            selector: format!("{}:{}", info.busnum, info.devnum),
            name: info.label(),
            speed: info.speed.map(|s| s.to_string()),
            dev_node: Some(info.dev_node().display().to_string()),
            interfaces: info.interfaces.iter().map(|i| (i.number, i.driver.clone())).collect(),
            host_controller: info.host_controller.clone(),
            streams: parsed
                .map(|d| {
                    let streams = live_streams(&d, info);
                    stream_lines(&d, &streams, info.speed.or(d.known_speed()), info.active_config)
                })
                .unwrap_or_default(),
            usbfs_capabilities: caps,
            note,
        });
    }
    let listing = Listing { usbfs_memory_mb: limit.usbfs_memory_mb, devices };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(ExitCode::SUCCESS);
    }
    match listing.usbfs_memory_mb {
        Some(0) => println!("usbfs_memory_mb: 0 (unlimited)"),
        Some(mb) => println!(
            "usbfs_memory_mb: {mb} ({} for all usbfs users on this machine)",
            human_bytes(u64::from(mb) << 20)
        ),
        None => println!("usbfs_memory_mb: unknown ({} not readable)", isoscope::dma::USBFS_MEMORY_MB_PATH),
    }
    if let Some(n) = note {
        println!("(no USB devices listed: {n})");
    }
    for d in &listing.devices {
        println!("\n{}  [--device {}]", d.name, d.selector);
        if let Some(s) = &d.speed {
            println!("  speed: {s}");
        }
        if let Some(n) = &d.dev_node {
            println!("  node: {n}");
        }
        if let Some(hc) = &d.host_controller {
            println!("  host controller: {hc}");
        }
        for (i, drv) in &d.interfaces {
            println!("  interface {i}: {}", drv.as_deref().unwrap_or("no driver"));
        }
        if let Some(c) = &d.usbfs_capabilities {
            println!("  usbfs capabilities: {}", c.join(" "));
        }
        for s in &d.streams {
            println!("  {s}");
        }
        if let Some(n) = &d.note {
            println!("  note: {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A connected device's streams, with the rates of UAC2 streams in its active configuration
/// asked of its clock, or read from snd-usb-audio when that driver holds the interface.
fn live_streams(d: &DeviceDescriptors, info: &UsbDeviceInfo) -> Vec<AudioStream> {
    let mut streams = d.audio_streams();
    let (mut active, others): (Vec<_>, Vec<_>) =
        streams.drain(..).partition(|s| info.active_config.is_none_or(|a| a == s.configuration));
    resolve_clock_rates(info, &mut active, Path::new(PROC_ASOUND));
    let mut all: Vec<AudioStream> = active.into_iter().chain(others).collect();
    all.sort_by_key(|s| (s.configuration, s.interface, s.alt));
    all
}

/// One line per stream, led by its configuration on a device with several.
fn stream_lines(
    d: &DeviceDescriptors,
    streams: &[AudioStream],
    speed: Option<Speed>,
    active: Option<u8>,
) -> Vec<String> {
    streams
        .iter()
        .map(|s| match d.configuration_label(s.configuration, active) {
            Some(label) => format!("{label}: {}", s.summary(speed)),
            None => s.summary(speed),
        })
        .collect()
}

#[derive(serde::Serialize)]
struct Described<'a> {
    source: String,
    /// The device's bConfigurationValue (none for a file).
    active_configuration: Option<u8>,
    /// The host controller of a connected device (none for a file).
    host_controller: Option<isoscope::usb::controller::HostController>,
    descriptors: &'a DeviceDescriptors,
    audio_streams: Vec<AudioStream>,
}

pub fn describe(args: &DescribeArgs) -> anyhow::Result<ExitCode> {
    let (source, bytes, live) = match (&args.device, &args.file) {
        (_, Some(file)) => (
            file.display().to_string(),
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
            None,
        ),
        (Some(sel), None) => match sel.parse::<DeviceSelector>()? {
            DeviceSelector::Sim(_) => (
                "sim".to_string(),
                VirtualDevice::new(VirtualDeviceConfig::default())?.descriptor_bytes(),
                None,
            ),
            sel => {
                let devices = discovery::list_devices(Path::new(discovery::SYSFS_USB_DEVICES))?;
                let info = sel.find(&devices).with_context(|| {
                    format!(
                        "no USB device matches '{}': `isoscope list` shows what is connected",
                        args.device.as_deref().unwrap_or("")
                    )
                })?;
                (info.label(), info.descriptors.clone(), Some(info.clone()))
            }
        },
        (None, None) => anyhow::bail!("say what to describe: --device SEL or --file PATH"),
    };
    let parsed = descriptors::parse(&bytes).with_context(|| match &args.file {
        Some(_) => format!(
            "{source} is not a valid USB descriptor set (a device descriptor and its configurations, \
             as in sysfs `descriptors`)"
        ),
        None => format!("{source}: the descriptors do not parse"),
    })?;
    let active = live.as_ref().and_then(|i| i.active_config);
    let speed = live.as_ref().and_then(|i| i.speed).or(parsed.known_speed());
    let streams = match &live {
        Some(info) => live_streams(&parsed, info),
        None => parsed.audio_streams(),
    };
    let host_controller = live.as_ref().and_then(|i| i.host_controller.clone());
    if args.json {
        let d = Described {
            source,
            active_configuration: active,
            host_controller,
            audio_streams: streams,
            descriptors: &parsed,
        };
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        println!("{source}");
        if let Some(hc) = &host_controller {
            println!("host controller: {hc}");
        }
        print!("{}", parsed.render_with(&streams, speed, active));
    }
    Ok(ExitCode::SUCCESS)
}
