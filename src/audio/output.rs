//! Sound outputs through cpal: the sound systems (PipeWire, PulseAudio, ALSA) and which of
//! them is running, listing each one's outputs by the names the desktop shows, opening one,
//! choosing a stream configuration, and typed errors that say what to do.

use cpal::traits::{DeviceTrait, HostTrait};

/// A sound system the monitor can play through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioHost {
    /// PipeWire's own protocol (needs the `pipewire` cargo feature).
    PipeWire,
    /// PulseAudio's protocol: a PulseAudio server, or PipeWire through pipewire-pulse.
    PulseAudio,
    /// ALSA directly: a sound card, or ALSA's default device (which goes to a sound server
    /// through its ALSA plugin when one runs).
    Alsa,
}

impl AudioHost {
    /// Every host, in the order the monitor prefers them.
    pub const ALL: [AudioHost; 3] = [AudioHost::PipeWire, AudioHost::PulseAudio, AudioHost::Alsa];

    /// The name `--host` takes.
    pub fn name(self) -> &'static str {
        match self {
            AudioHost::PipeWire => "pipewire",
            AudioHost::PulseAudio => "pulseaudio",
            AudioHost::Alsa => "alsa",
        }
    }

    /// As people write it.
    pub fn label(self) -> &'static str {
        match self {
            AudioHost::PipeWire => "PipeWire",
            AudioHost::PulseAudio => "PulseAudio",
            AudioHost::Alsa => "ALSA",
        }
    }

    /// cpal's id of this host, None when this build does not include it.
    fn cpal_id(self) -> Option<cpal::HostId> {
        cpal::ALL_HOSTS.iter().copied().find(|id| {
            matches!(
                (self, id.name()),
                (AudioHost::PipeWire, "PipeWire")
                    | (AudioHost::PulseAudio, "PulseAudio")
                    | (AudioHost::Alsa, "ALSA")
            )
        })
    }

    /// Whether this build can play through this host.
    pub fn compiled(self) -> bool {
        self.cpal_id().is_some()
    }

    /// Whether its server appears to run (its socket exists; ALSA always does).
    pub fn running(self) -> bool {
        self.cpal_id().is_some_and(|id| cpal::available_hosts().contains(&id))
    }

    /// The hosts whose servers run, in the order the monitor prefers them.
    pub fn running_hosts() -> Vec<AudioHost> {
        AudioHost::ALL.into_iter().filter(|h| h.running()).collect()
    }

    fn open(self) -> Result<cpal::Host, OutputError> {
        let Some(id) = self.cpal_id() else {
            return Err(OutputError::HostNotBuilt { host: self });
        };
        if !self.running() {
            return Err(OutputError::HostNotRunning { host: self, detail: "no server socket".into() });
        }
        cpal::host_from_id(id).map_err(|e| OutputError::HostNotRunning { host: self, detail: e.to_string() })
    }
}

impl std::fmt::Display for AudioHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl std::str::FromStr for AudioHost {
    type Err = String;
    fn from_str(s: &str) -> Result<AudioHost, String> {
        match s.to_ascii_lowercase().as_str() {
            "pipewire" | "pw" => Ok(AudioHost::PipeWire),
            "pulseaudio" | "pulse" | "pa" => Ok(AudioHost::PulseAudio),
            "alsa" => Ok(AudioHost::Alsa),
            _ => Err(format!("'{s}' is not a sound system: use pipewire, pulseaudio or alsa")),
        }
    }
}

/// Why an output could not be opened or played.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// No audio system or no sound card at all.
    #[error(
        "no sound output: {detail}. Capture, plots and recording work without one; to listen, \
         start a sound server (PipeWire or PulseAudio) or connect a sound card (`aplay -l` lists \
         what ALSA sees)"
    )]
    NoSoundCard { detail: String },
    /// This build leaves the host out.
    #[error(
        "this isoscope was built without {host} support{}; rebuilding with `cargo build --release \
         --features {}` adds it",
        if *host == AudioHost::PipeWire { " (PipeWire serves PulseAudio's protocol too, through pipewire-pulse)" } else { "" },
        host.name()
    )]
    HostNotBuilt { host: AudioHost },
    /// The host's server does not run or does not answer.
    #[error("{host} is not running or does not answer ({detail}); running here: {}", running_list())]
    HostNotRunning { host: AudioHost, detail: String },
    /// The output named does not exist.
    #[error("no audio output named '{wanted}'. Outputs: {available}")]
    NotFound { wanted: String, available: String },
    /// A part of a name that fits more than one output.
    #[error("'{wanted}' fits several outputs: {matches}; name one of them whole")]
    Ambiguous { wanted: String, matches: String },
    /// Another program holds the device.
    #[error("audio output '{device}' is busy: another program is playing to it")]
    Busy { device: String },
    /// The device refuses every configuration isoscope can play.
    #[error("audio output '{device}' cannot play {what}")]
    Unsupported { device: String, what: String },
    #[error("audio output '{device}': permission denied. Add your user to the 'audio' group")]
    PermissionDenied { device: String },
    /// Anything else cpal reported.
    #[error("audio output '{device}': {detail}")]
    Other { device: String, detail: String },
}

fn running_list() -> String {
    let names: Vec<&str> = AudioHost::running_hosts().into_iter().map(AudioHost::name).collect();
    names.join(", ")
}

impl OutputError {
    /// What to change: the output or the sound system.
    pub fn fix(&self) -> Option<crate::fix::Fix> {
        use crate::fix::Fix;
        match self {
            OutputError::NoSoundCard { .. }
            | OutputError::NotFound { .. }
            | OutputError::Ambiguous { .. } => Some(Fix::PickOutput),
            OutputError::Unsupported { .. } => Some(Fix::PickOutput),
            OutputError::HostNotBuilt { host } => Some(Fix::OtherAudioHost {
                try_host: if *host == AudioHost::PipeWire { "pulseaudio" } else { "alsa" },
            }),
            OutputError::HostNotRunning { .. } => Some(Fix::StartSoundServer),
            OutputError::Busy { .. } => Some(Fix::MixingOutput),
            _ => None,
        }
    }

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
                    "cannot open audio output '{device}' ({e}), so there may be no /dev/snd here"
                ),
            },
            _ => OutputError::Other { device, detail: e.to_string() },
        }
    }
}

/// One output as `--list-outputs` and the GUI's output menu show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OutputInfo {
    /// The sound system it belongs to.
    pub host: AudioHost,
    /// What `--output` takes: "default", an ALSA PCM name ("hw:CARD=0,DEV=0"), a PulseAudio
    /// sink name or a PipeWire node name.
    pub id: String,
    /// The name the desktop shows ("Built-in Audio Analog Stereo").
    pub description: String,
}

/// An output device ready to be configured.
pub struct OutputDevice {
    pub(crate) device: cpal::Device,
    /// The sound system it is on.
    pub host: AudioHost,
    /// The name it was opened by.
    pub id: String,
    /// The name the desktop shows.
    pub description: String,
}

fn info(host: AudioHost, d: &cpal::Device) -> Option<OutputInfo> {
    let id = d.id().ok()?.id().to_string();
    let description = d.description().map(|x| x.name().to_string()).unwrap_or_default();
    Some(OutputInfo { host, id, description })
}

/// What the default output of `host` is called.
fn default_info(host: AudioHost, h: &cpal::Host) -> OutputInfo {
    let behind = h.default_output_device().and_then(|d| d.description().ok()).map(|d| d.name().to_string());
    let description = match (host, behind) {
        (AudioHost::Alsa, _) => "ALSA's default output (a sound server's, when one runs)".to_string(),
        (_, Some(name)) if !name.is_empty() && !name.contains("default") => {
            format!("{host}'s default output: {name}")
        }
        _ => format!("{host}'s default output"),
    };
    OutputInfo { host, id: "default".into(), description }
}

/// The outputs of one host, "default" first.
pub fn list_host_outputs(host: AudioHost) -> Result<Vec<OutputInfo>, OutputError> {
    let h = host.open()?;
    let mut out = vec![default_info(host, &h)];
    let devices = h.devices().map_err(|e| OutputError::from_cpal("(all)", &e))?;
    for d in devices.filter(|d| d.supports_output()) {
        if let Some(i) = info(host, &d) {
            // PipeWire lists its default pseudo-devices; "default" above stands for them.
            if !matches!(i.id.as_str(), "default" | "sink_default" | "output_default") {
                out.push(i);
            }
        }
    }
    Ok(out)
}

/// Every output of every running host, the preferred host first.
pub fn list_outputs() -> Result<Vec<OutputInfo>, OutputError> {
    let mut out = Vec::new();
    let mut last_err = None;
    for host in AudioHost::running_hosts() {
        match list_host_outputs(host) {
            Ok(v) => out.extend(v),
            Err(e) => last_err = Some(e),
        }
    }
    match (out.is_empty(), last_err) {
        (true, Some(e)) => Err(e),
        _ => Ok(out),
    }
}

/// The host the monitor plays through when none is named: the first of PipeWire,
/// PulseAudio and ALSA that runs and answers.
pub fn default_host() -> AudioHost {
    AudioHost::running_hosts().into_iter().find(|h| h.open().is_ok()).unwrap_or(AudioHost::Alsa)
}

/// Opens the output named `name` (an id from [`list_outputs`], or a unique part of a
/// description) on `host`, or the default output for `None` or "default". Without a host,
/// "default" is the preferred running host's, and a name is looked up on every running host.
pub fn open_output(host: Option<AudioHost>, name: Option<&str>) -> Result<OutputDevice, OutputError> {
    let name = name.unwrap_or("default");
    let hosts = match host {
        Some(h) => vec![h],
        None => AudioHost::running_hosts(),
    };
    if hosts.is_empty() {
        return Err(OutputError::NoSoundCard { detail: "no sound system runs".into() });
    }
    let mut first_err = None;
    let mut candidates: Vec<(OutputInfo, cpal::Device)> = Vec::new();
    for host in hosts {
        let h = match host.open() {
            Ok(h) => h,
            Err(e) => {
                first_err.get_or_insert(e);
                continue;
            }
        };
        if name == "default" {
            match h.default_output_device() {
                Some(device) => {
                    let description = default_info(host, &h).description;
                    return Ok(OutputDevice { device, host, id: name.into(), description });
                }
                None => {
                    first_err.get_or_insert(OutputError::NoSoundCard {
                        detail: format!("{host} offers no default output"),
                    });
                    continue;
                }
            }
        }
        match h.devices() {
            Ok(devices) => {
                for d in devices.filter(|d| d.supports_output()) {
                    if let Some(i) = info(host, &d) {
                        candidates.push((i, d));
                    }
                }
            }
            Err(e) => {
                first_err.get_or_insert(OutputError::from_cpal(name, &e));
            }
        }
    }
    if name == "default" {
        return Err(first_err.unwrap_or(OutputError::NoSoundCard { detail: "no default output".into() }));
    }
    if candidates.is_empty() {
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    let pick = match_output(candidates.iter().map(|(i, _)| i), name)?;
    let (i, device) = candidates.swap_remove(pick);
    Ok(OutputDevice { device, host: i.host, id: i.id, description: i.description })
}

/// Which of `outputs` `name` means: an exact id or description (the preferred host's first),
/// else the one description that contains it.
fn match_output<'a>(
    outputs: impl Iterator<Item = &'a OutputInfo> + Clone,
    name: &str,
) -> Result<usize, OutputError> {
    if let Some(n) = outputs.clone().position(|i| i.id == name || i.description == name) {
        return Ok(n);
    }
    let lower = name.to_lowercase();
    let partial: Vec<(usize, &OutputInfo)> =
        outputs.clone().enumerate().filter(|(_, i)| i.description.to_lowercase().contains(&lower)).collect();
    match partial.as_slice() {
        [(n, _)] => Ok(*n),
        [] => {
            let mut available: Vec<String> =
                outputs.map(|i| format!("{} ({})", i.id, i.host.name())).collect();
            available.dedup();
            Err(OutputError::NotFound { wanted: name.into(), available: available.join(", ") })
        }
        many => Err(OutputError::Ambiguous {
            wanted: name.into(),
            matches: many
                .iter()
                .map(|(_, i)| format!("{} ({}: {})", i.id, i.host.name(), i.description))
                .collect::<Vec<_>>()
                .join(", "),
        }),
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
