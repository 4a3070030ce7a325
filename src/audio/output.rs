//! Sound card outputs through cpal: listing them, opening one by name, choosing a stream
//! configuration, and typed errors that say what to do (no sound card, busy, unsupported).

use cpal::traits::{DeviceTrait, HostTrait};

/// Why an output could not be opened or played.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// No audio system or no sound card at all.
    #[error(
        "no sound card: {detail}. Capture, plots and recording work without one; to listen, \
         connect a sound card (`aplay -l` lists what ALSA sees) or pick an output with --output \
         (`isoscope monitor --list-outputs`)"
    )]
    NoSoundCard { detail: String },
    /// The output named does not exist.
    #[error("no audio output named '{wanted}'. Outputs: {available}. Pass one of them to --output")]
    NotFound { wanted: String, available: String },
    /// Another program holds the device.
    #[error(
        "audio output '{device}' is busy: another program is playing to it. Close that program, \
         or pick an output that mixes (e.g. --output default, through PipeWire or PulseAudio)"
    )]
    Busy { device: String },
    /// The device refuses every configuration isoscope can play.
    #[error("audio output '{device}' cannot play {what}. Pick another output with --output")]
    Unsupported { device: String, what: String },
    #[error("audio output '{device}': permission denied. Add your user to the 'audio' group")]
    PermissionDenied { device: String },
    /// Anything else cpal reported.
    #[error("audio output '{device}': {detail}")]
    Other { device: String, detail: String },
}

impl OutputError {
    /// Maps a cpal error on `device` to what the user can act on.
    pub fn from_cpal(device: &str, e: &cpal::Error) -> OutputError {
        use cpal::ErrorKind as K;
        let device = device.to_string();
        match e.kind() {
            K::DeviceBusy => OutputError::Busy { device },
            K::PermissionDenied => OutputError::PermissionDenied { device },
            K::UnsupportedConfig | K::UnsupportedOperation => {
                OutputError::Unsupported { device, what: e.to_string() }
            }
            K::HostUnavailable => OutputError::NoSoundCard { detail: e.to_string() },
            K::DeviceNotAvailable => OutputError::NoSoundCard {
                detail: format!(
                    "ALSA cannot open audio output '{device}' ({e}), so there may be no /dev/snd here"
                ),
            },
            _ => OutputError::Other { device, detail: e.to_string() },
        }
    }
}

/// One output as `--list-outputs` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OutputInfo {
    /// The ALSA PCM name, what `--output` takes ("default", "hw:CARD=0,DEV=0", ...).
    pub id: String,
    /// What ALSA says it is.
    pub description: String,
}

/// An output device ready to be configured.
pub struct OutputDevice {
    pub(crate) device: cpal::Device,
    /// The name it was opened by (the ALSA PCM name).
    pub id: String,
}

fn host() -> Result<cpal::Host, OutputError> {
    Ok(cpal::default_host())
}

fn info(d: &cpal::Device) -> Option<OutputInfo> {
    let id = d.id().ok()?.id().to_string();
    let description = d.description().map(|x| x.name().to_string()).unwrap_or_default();
    Some(OutputInfo { id, description })
}

/// Every output ALSA knows of ("default" first).
pub fn list_outputs() -> Result<Vec<OutputInfo>, OutputError> {
    let host = host()?;
    let mut out = vec![OutputInfo { id: "default".into(), description: "ALSA's default output".into() }];
    let devices = host.devices().map_err(|e| OutputError::from_cpal("(all)", &e))?;
    for d in devices.filter(|d| d.supports_output()) {
        if let Some(i) = info(&d) {
            if i.id != "default" {
                out.push(i);
            }
        }
    }
    Ok(out)
}

/// Opens the output named `name` (an ALSA PCM name from [`list_outputs`], or a unique part of
/// a description), or the default output for `None` or "default".
pub fn open_output(name: Option<&str>) -> Result<OutputDevice, OutputError> {
    let host = host()?;
    let name = name.unwrap_or("default");
    if name == "default" {
        let device = host
            .default_output_device()
            .ok_or_else(|| OutputError::NoSoundCard { detail: "ALSA offers no default output".into() })?;
        return Ok(OutputDevice { device, id: name.into() });
    }
    let devices: Vec<cpal::Device> = host
        .devices()
        .map_err(|e| OutputError::from_cpal(name, &e))?
        .filter(|d| d.supports_output())
        .collect();
    let infos: Vec<Option<OutputInfo>> = devices.iter().map(info).collect();
    let exact = infos.iter().position(|i| i.as_ref().is_some_and(|i| i.id == name || i.description == name));
    let lower = name.to_lowercase();
    let partial: Vec<usize> = infos
        .iter()
        .enumerate()
        .filter(|(_, i)| i.as_ref().is_some_and(|i| i.description.to_lowercase().contains(&lower)))
        .map(|(n, _)| n)
        .collect();
    let pick = exact.or(if partial.len() == 1 { Some(partial[0]) } else { None });
    match pick {
        Some(n) => {
            let device = devices.into_iter().nth(n).expect("index from the same list");
            Ok(OutputDevice { device, id: name.into() })
        }
        None => {
            let mut available: Vec<String> = infos.into_iter().flatten().map(|i| i.id).collect();
            available.insert(0, "default".into());
            Err(OutputError::NotFound { wanted: name.into(), available: available.join(", ") })
        }
    }
}

/// The sample formats the monitor can write, best first.
const FORMATS: [cpal::SampleFormat; 4] =
    [cpal::SampleFormat::F32, cpal::SampleFormat::I32, cpal::SampleFormat::I16, cpal::SampleFormat::U16];

/// The configuration an output will be played with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChosenConfig {
    pub config: cpal::StreamConfig,
    pub sample_format: cpal::SampleFormat,
}

impl OutputDevice {
    /// Picks a stream configuration: `channels` if offered (else 2, else the device's
    /// first); the sample rate `rate` if offered (no conversion), else the device's default
    /// rate; float, else 32- or 16-bit integers; a period of `period_frames` clamped to what
    /// the device allows.
    pub fn choose_config(
        &self,
        rate: u32,
        channels: u16,
        period_frames: u32,
    ) -> Result<ChosenConfig, OutputError> {
        let ranges: Vec<cpal::SupportedStreamConfigRange> = self
            .device
            .supported_output_configs()
            .map_err(|e| OutputError::from_cpal(&self.id, &e))?
            .filter(|r| FORMATS.contains(&r.sample_format()))
            .collect();
        if ranges.is_empty() {
            return Err(OutputError::Unsupported {
                device: self.id.clone(),
                what: "any of f32, i32, i16 or u16 samples".into(),
            });
        }
        let default_rate = self.device.default_output_config().map(|c| c.sample_rate()).unwrap_or(48_000);
        let has_channels = |c: u16| ranges.iter().any(|r| r.channels() == c);
        let want_channels = if has_channels(channels) {
            channels
        } else if has_channels(2) {
            2
        } else {
            ranges[0].channels()
        };
        let in_range = |r: &cpal::SupportedStreamConfigRange, hz: u32| {
            (r.min_sample_rate()..=r.max_sample_rate()).contains(&hz)
        };
        let with_channels: Vec<&cpal::SupportedStreamConfigRange> =
            ranges.iter().filter(|r| r.channels() == want_channels).collect();
        let rate = if with_channels.iter().any(|r| in_range(r, rate)) {
            rate
        } else if with_channels.iter().any(|r| in_range(r, default_rate)) {
            default_rate
        } else {
            with_channels[0].max_sample_rate()
        };
        let best = FORMATS
            .iter()
            .find_map(|f| with_channels.iter().find(|r| r.sample_format() == *f && in_range(r, rate)))
            .ok_or_else(|| OutputError::Unsupported {
                device: self.id.clone(),
                what: format!("{want_channels} channels at {rate} Hz"),
            })?;
        let buffer_size = match best.buffer_size() {
            cpal::SupportedBufferSize::Range { min, max } => {
                cpal::BufferSize::Fixed(period_frames.clamp(*min, (*max).max(*min)))
            }
            cpal::SupportedBufferSize::Unknown => cpal::BufferSize::Default,
        };
        Ok(ChosenConfig {
            config: cpal::StreamConfig { channels: want_channels, sample_rate: rate, buffer_size },
            sample_format: best.sample_format(),
        })
    }
}
