//! What the GUI keeps between runs (eframe storage): the device and stream asked for, the
//! tab, and each panel's settings. Runtime handles never live here.

use crate::capture::ModeRequest;
use crate::dsp::SampleFormat;
use crate::session::ab::AbSettings;
use crate::session::StartRequest;
use crate::usb::uac::StreamRequest;

use super::audio::AudioSettings;
use super::scope::ScopeSettings;
use super::spectrum::SpectrumSettings;

/// The panel shown in the middle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    #[default]
    Scope,
    Spectrum,
    Pool,
    Compare,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Scope, Tab::Spectrum, Tab::Pool, Tab::Compare];

    pub fn name(self) -> &'static str {
        match self {
            Tab::Scope => "Scope",
            Tab::Spectrum => "Spectrum",
            Tab::Pool => "Buffer pool",
            Tab::Compare => "Copy vs zero-copy",
        }
    }
}

/// Everything that persists between runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    pub device: String,
    pub rate: Option<u32>,
    pub channels: Option<u16>,
    /// Sample format name (`SampleFormat::name`).
    pub sample: Option<String>,
    pub mode: ModeRequest,
    pub pool_cap_mb: u64,
    /// Seconds of history kept per channel (fewer if `history_mb` says so).
    pub history_s: f64,
    /// The most memory the history may take, MiB.
    pub history_mb: u64,
    pub tab: Tab,
    pub scope: ScopeSettings,
    pub spectrum: SpectrumSettings,
    pub ab: AbSettings,
    pub audio: AudioSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            device: "auto".into(),
            rate: None,
            channels: None,
            sample: None,
            mode: ModeRequest::Auto,
            pool_cap_mb: 8,
            history_s: 600.0,
            history_mb: 1024,
            tab: Tab::Scope,
            scope: ScopeSettings::default(),
            spectrum: SpectrumSettings::default(),
            ab: AbSettings::default(),
            audio: AudioSettings::default(),
        }
    }
}

impl Settings {
    /// The capture these settings ask for, in `mode`.
    pub fn start_request(&self, mode: ModeRequest) -> StartRequest {
        StartRequest {
            device: self.device.clone(),
            stream: StreamRequest {
                rate: self.rate,
                channels: self.channels,
                sample: self.sample.as_deref().and_then(SampleFormat::parse),
            },
            mode,
            app_cap_bytes: self.pool_cap_mb << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_a_restart_and_old_files_fill_in_defaults() {
        let mut s =
            Settings { device: "1:4".into(), rate: Some(96_000), history_mb: 256, ..Settings::default() };
        s.audio.monitor = true;
        s.audio.channel_map = Some("2,3".into());
        s.scope.xy = true;
        s.tab = Tab::Compare;
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), s);
        // A settings file from an older version (fields missing) still loads.
        let old: Settings = serde_json::from_str(r#"{"device":"sim","rate":48000}"#).unwrap();
        assert_eq!((old.device.as_str(), old.rate), ("sim", Some(48_000)));
        assert_eq!(old.audio, AudioSettings::default());
        assert_eq!(old.history_mb, Settings::default().history_mb);
    }
}
