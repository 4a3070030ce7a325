//! Opening a USB audio device for capture: choose the stream, claim its interfaces (taking
//! them from snd-usb-audio, which gets them back when the capture ends), select the alt
//! setting, set the sample rate, and hand back a ready usbfs backend.

use super::backend::StreamConfig;
use super::descriptors::{self, AudioStream, DescriptorError, Rates, UacVersion};
use super::discovery::UsbDeviceInfo;
use super::uac::{self, StreamRequest, UacError};
use super::usbfs::{UsbfsBackend, UsbfsDevice, UsbfsError};
use crate::dsp::PcmFormat;

/// Why a device could not be opened for capture.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Usbfs(#[from] UsbfsError),
    #[error("{device}: its descriptors do not parse: {error}")]
    Descriptors { device: String, error: DescriptorError },
    #[error("{device}: {error}")]
    Uac { device: String, error: UacError },
    #[error(
        "{device}: its audio streams are in configuration {with_streams:?}, but configuration {active} is \
         active{}. Switch it (as root): echo {} > /sys/bus/usb/devices/{sysfs_name}/bConfigurationValue",
        if *.active == 0 { " (0: not configured)" } else { "" },
        .with_streams.first().copied().unwrap_or(1)
    )]
    InactiveConfiguration { device: String, active: u8, with_streams: Vec<u8>, sysfs_name: String },
    #[error(
        "{device}: SETINTERFACE to alt {alt} of interface {interface} failed: ENOSPC: the host controller \
         has not enough periodic bandwidth left for this stream.{note}"
    )]
    NoBandwidth { device: String, interface: u8, alt: u8, note: String },
}

impl OpenError {
    /// The remedy, if there is one.
    pub fn fix(&self) -> Option<crate::fix::Fix> {
        match self {
            OpenError::Usbfs(e) => e.fix(),
            _ => None,
        }
    }
}

/// A device ready to stream: the backend (owning the claimed interfaces) and what it streams.
#[derive(Debug)]
pub struct UsbCapture {
    pub backend: UsbfsBackend,
    pub stream: StreamConfig,
    pub chosen: AudioStream,
    /// Kernel drivers detached to claim the interfaces (given back when the backend drops).
    pub detached: Vec<(u8, String)>,
    /// The host controller the device hangs on.
    pub host_controller: Option<crate::usb::controller::HostController>,
}

/// Opens `info` for capture of the stream that best matches `req`.
pub fn open_capture(info: &UsbDeviceInfo, req: &StreamRequest) -> Result<UsbCapture, OpenError> {
    let name = format!("{} ({})", info.dev_node().display(), info.label());
    let uac_err = |error| OpenError::Uac { device: name.clone(), error };
    let parsed = descriptors::parse(&info.descriptors)
        .map_err(|error| OpenError::Descriptors { device: name.clone(), error })?;
    // Only the active configuration's streams can be streamed from.
    let mut streams = parsed.streams_of(info.active_config);
    if streams.is_empty() {
        let mut with_streams: Vec<u8> = parsed.audio_streams().iter().map(|s| s.configuration).collect();
        with_streams.dedup();
        return Err(match info.active_config {
            Some(active) if !with_streams.is_empty() => OpenError::InactiveConfiguration {
                device: name,
                active,
                with_streams,
                sysfs_name: info.sysfs_name.clone(),
            },
            _ => uac_err(UacError::NoStream),
        });
    }
    let mut dev = UsbfsDevice::open(&info.dev_node())?;

    // UAC2 rates live in the clock source: claim the control interface and ask it (behind
    // a clock selector the source in use is only known by asking the device).
    for s in streams.iter_mut().filter(|s| s.uac == UacVersion::V2 && s.rates == Rates::FromClock) {
        if let Some(ac) = s.ac_interface {
            dev.claim_detaching(ac)?;
            if let Some((_, rates)) = uac::clock_rates(&mut dev, s).map_err(uac_err)? {
                s.rates = Rates::Discrete(rates);
            }
        }
    }
    let (chosen, rate) = uac::select_stream(&streams, req).map_err(uac_err)?;
    if let Some(ac) = chosen.ac_interface {
        dev.claim_detaching(ac)?;
    }
    dev.claim_detaching(chosen.interface)?;
    // Selecting the alt setting reserves its bandwidth (xHCI checks it here: ENOSPC).
    let set_alt = |dev: &mut UsbfsDevice| {
        dev.set_interface(chosen.interface, chosen.alt).map_err(|e| match e {
            UsbfsError::Os { errno: nix::errno::Errno::ENOSPC, .. } => OpenError::NoBandwidth {
                device: name.clone(),
                interface: chosen.interface,
                alt: chosen.alt,
                note: super::bus::bandwidth_note(
                    std::path::Path::new(super::discovery::SYSFS_USB_DEVICES),
                    info.busnum,
                    &info.sysfs_name,
                ),
            },
            e => OpenError::Usbfs(e),
        })
    };
    // UAC2 sets the clock before the alt setting; UAC1 sets the endpoint's rate after it.
    let rate = match chosen.uac {
        UacVersion::V2 => {
            let r = uac::set_sample_rate(&mut dev, &chosen, rate).map_err(uac_err)?;
            set_alt(&mut dev)?;
            r
        }
        UacVersion::V1 => {
            set_alt(&mut dev)?;
            uac::set_sample_rate(&mut dev, &chosen, rate).map_err(uac_err)?
        }
    };
    let detached: Vec<(u8, String)> =
        dev.claims().iter().filter_map(|(i, d)| d.as_ref().map(|d| (*i, d.clone()))).collect();
    let backend = UsbfsBackend::new(dev, name)?.on_bus(info.busnum, &info.sysfs_name);
    let speed = super::backend::Backend::info(&backend).speed;
    let stream = StreamConfig {
        endpoint: chosen.endpoint.address,
        format: PcmFormat {
            // select_stream only picks streams whose sample format is known.
            sample: chosen.sample.unwrap_or(crate::dsp::SampleFormat::S16Le),
            channels: chosen.channels,
            rate,
        },
        speed,
        interval: chosen.endpoint.interval_frames(),
        packet_len: chosen.endpoint.bytes_per_interval(speed),
    };
    Ok(UsbCapture { backend, stream, chosen, detached, host_controller: info.host_controller.clone() })
}

/// Fills in the rates of `streams` (of the device `info`) that come from a UAC2 clock, for
/// a listing, without taking anything from a kernel driver: when snd-usb-audio holds the
/// control interface, the rates it found (`asound_root`/cardN/streamM, normally
/// [`super::asound::PROC_ASOUND`]); otherwise by asking the clock (GET RANGE) through usbfs,
/// claiming the control interface only while asking. Each resolved stream's `rates_from`
/// says where its rates came from; a stream that could not be resolved keeps
/// `Rates::FromClock` and says why in `rates_from`.
pub fn resolve_clock_rates(info: &UsbDeviceInfo, streams: &mut [AudioStream], asound_root: &std::path::Path) {
    let mut dev: Option<Result<UsbfsDevice, String>> = None;
    for s in streams.iter_mut().filter(|s| s.uac == UacVersion::V2 && s.rates == Rates::FromClock) {
        let Some(ac) = s.ac_interface else { continue };
        let driver = info.interfaces.iter().find(|i| i.number == ac).and_then(|i| i.driver.as_deref());
        if driver.is_some_and(|d| d != "usbfs") {
            let card = super::asound::card_of(asound_root, info.busnum, info.devnum);
            match card.and_then(|c| super::asound::capture_rates(&c, s.interface, s.alt)) {
                Some((rates, path)) => {
                    s.rates = rates;
                    s.rates_from =
                        Some(format!("from {}, {}", driver.unwrap_or("snd-usb-audio"), path.display()));
                }
                None => {
                    s.rates_from = Some(format!(
                        "not asked: {} holds the control interface and {} lists no capture rates for \
                         interface {} alt {}",
                        driver.unwrap_or("a kernel driver"),
                        asound_root.display(),
                        s.interface,
                        s.alt
                    ));
                }
            }
            continue;
        }
        let dev = dev.get_or_insert_with(|| UsbfsDevice::open(&info.dev_node()).map_err(|e| e.to_string()));
        let asked = match dev {
            Ok(dev) => dev.claim(ac).map_err(|e| e.to_string()).and_then(|()| {
                uac::clock_rates(dev, s).map_err(|e| format!("{}: {e}", dev.path().display()))
            }),
            Err(e) => Err(e.clone()),
        };
        match asked {
            Ok(Some((clock, rates))) => {
                s.rates = Rates::Discrete(rates);
                s.rates_from = Some(format!("from clock source {clock}, GET RANGE"));
            }
            Ok(None) => {}
            Err(e) => s.rates_from = Some(format!("not asked: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{VirtualDevice, VirtualDeviceConfig};
    use crate::usb::discovery::InterfaceInfo;

    /// The virtual UAC2 device as sysfs would list it at bus 3 device 7, its control
    /// interface bound to `driver`.
    fn uac2_info(driver: Option<&str>) -> (UsbDeviceInfo, Vec<AudioStream>) {
        let dev = VirtualDevice::new(VirtualDeviceConfig::default()).unwrap();
        let descriptors = dev.descriptor_bytes();
        let streams = descriptors::parse(&descriptors).unwrap().audio_streams();
        assert!(streams.iter().all(|s| s.rates == Rates::FromClock && s.ac_interface == Some(0)));
        let info = UsbDeviceInfo {
            sysfs_name: "3-1".into(),
            busnum: 3,
            devnum: 7,
            vendor_id: 0x1209,
            product_id: 1,
            manufacturer: None,
            product: None,
            serial: None,
            speed: None,
            descriptors,
            active_config: Some(1),
            host_controller: None,
            interfaces: vec![InterfaceInfo {
                number: 0,
                class: 1,
                subclass: 1,
                protocol: 0x20,
                driver: driver.map(str::to_string),
            }],
        };
        (info, streams)
    }

    #[test]
    fn rates_of_a_device_snd_usb_audio_holds_come_from_its_proc_file() {
        let t = tempfile::tempdir().unwrap();
        let card = t.path().join("card2");
        std::fs::create_dir_all(&card).unwrap();
        std::fs::write(card.join("usbbus"), "003/007\n").unwrap();
        let (info, mut streams) = uac2_info(Some("snd-usb-audio"));
        let alt = streams[0].alt;
        let proc =
            format!("Capture:\n  Status: Stop\n  Interface 1\n    Altset {alt}\n    Rates: 44100, 48000\n");
        std::fs::write(card.join("stream0"), proc).unwrap();
        resolve_clock_rates(&info, &mut streams, t.path());
        assert_eq!(streams[0].rates, Rates::Discrete(vec![44_100, 48_000]));
        let line = streams[0].to_string();
        let want = format!("44100/48000 Hz (from snd-usb-audio, {})", card.join("stream0").display());
        assert!(line.contains(&want), "{line}");
        // The other alt setting is not in the file: said, not guessed.
        assert_eq!(streams[1].rates, Rates::FromClock);
        assert!(
            streams[1].rates_from.as_deref().unwrap().contains("lists no capture rates"),
            "{:?}",
            streams[1]
        );
    }

    #[test]
    fn rates_of_a_device_isoscope_cannot_open_say_why_they_are_unknown() {
        let (mut info, mut streams) = uac2_info(None);
        info.busnum = 250; // no such device node
        resolve_clock_rates(&info, &mut streams, std::path::Path::new("/nonexistent"));
        assert_eq!(streams[0].rates, Rates::FromClock);
        let line = streams[0].to_string();
        assert!(
            line.contains("rates from the clock source (not asked: ")
                && line.contains("/dev/bus/usb/250/007"),
            "{line}"
        );
    }
}
