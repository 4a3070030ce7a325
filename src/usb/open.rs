//! Opening a USB audio device for capture: choose the stream, claim its interfaces (taking
//! them from snd-usb-audio, which gets them back when the capture ends), select the alt
//! setting, set the sample rate, and hand back a ready usbfs backend.

use super::descriptors::{self, AudioStream, DescriptorError, Rates, UacVersion};
use super::discovery::UsbDeviceInfo;
use super::uac::{self, StreamRequest, UacError};
use super::usbfs::{UsbfsBackend, UsbfsDevice, UsbfsError};
use crate::capture::StreamConfig;
use crate::dsp::PcmFormat;

/// Why a device could not be opened for capture.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Usbfs(#[from] UsbfsError),
    #[error("{device}: its descriptors do not parse: {source}")]
    Descriptors { device: String, source: DescriptorError },
    #[error("{device}: {source}")]
    Uac { device: String, source: UacError },
    #[error(
        "{device}: its audio streams are in configuration {with_streams:?}, but configuration {active} is \
         active{}. Switch it (as root): echo {} > /sys/bus/usb/devices/{sysfs_name}/bConfigurationValue",
        if *.active == 0 { " (0: not configured)" } else { "" },
        .with_streams.first().copied().unwrap_or(1)
    )]
    InactiveConfiguration { device: String, active: u8, with_streams: Vec<u8>, sysfs_name: String },
}

/// A device ready to stream: the backend (owning the claimed interfaces) and what it streams.
#[derive(Debug)]
pub struct UsbCapture {
    pub backend: UsbfsBackend,
    pub stream: StreamConfig,
    pub chosen: AudioStream,
    /// Kernel drivers detached to claim the interfaces (given back when the backend drops).
    pub detached: Vec<(u8, String)>,
}

/// Opens `info` for capture of the stream that best matches `req`.
pub fn open_capture(info: &UsbDeviceInfo, req: &StreamRequest) -> Result<UsbCapture, OpenError> {
    let name = format!("{} ({})", info.dev_node().display(), info.label());
    let uac_err = |source| OpenError::Uac { device: name.clone(), source };
    let parsed = descriptors::parse(&info.descriptors)
        .map_err(|source| OpenError::Descriptors { device: name.clone(), source })?;
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

    // UAC2 rates live in the clock source: claim the control interface and ask it.
    for s in streams.iter_mut().filter(|s| s.uac == UacVersion::V2 && s.rates == Rates::FromClock) {
        if let Some(ac) = s.ac_interface {
            dev.claim_detaching(ac)?;
            // Behind a clock selector the source in use is only known by asking the device.
            let Some(clock) = uac::find_clock_source(&mut dev, s).map_err(uac_err)? else {
                continue;
            };
            let ranges = uac::uac2_rates(&mut dev, ac, clock).map_err(uac_err)?;
            s.rates = Rates::Discrete(uac::rates_from_ranges(&ranges));
        }
    }
    let (chosen, rate) = uac::select_stream(&streams, req).map_err(uac_err)?;
    if let Some(ac) = chosen.ac_interface {
        dev.claim_detaching(ac)?;
    }
    dev.claim_detaching(chosen.interface)?;
    // UAC2 sets the clock before the alt setting; UAC1 sets the endpoint's rate after it.
    let rate = match chosen.uac {
        UacVersion::V2 => {
            let r = uac::set_sample_rate(&mut dev, &chosen, rate).map_err(uac_err)?;
            dev.set_interface(chosen.interface, chosen.alt)?;
            r
        }
        UacVersion::V1 => {
            dev.set_interface(chosen.interface, chosen.alt)?;
            uac::set_sample_rate(&mut dev, &chosen, rate).map_err(uac_err)?
        }
    };
    let detached: Vec<(u8, String)> =
        dev.claims().iter().filter_map(|(i, d)| d.as_ref().map(|d| (*i, d.clone()))).collect();
    let backend = UsbfsBackend::new(dev, name)?;
    let speed = crate::capture::Backend::info(&backend).speed;
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
    Ok(UsbCapture { backend, stream, chosen, detached })
}
