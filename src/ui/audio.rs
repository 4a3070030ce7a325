//! The audio panel (right side, under the meters): live monitoring through a sound card
//! (on/off, output, volume, mute, channel mapping, target latency, and the live latency,
//! underruns, overruns and resampling ratio) and recording to WAV (native or float).

use eframe::egui;

use crate::audio::stats::LATENCY_RANGE_MS;
use crate::audio::{AudioHost, MonitorConfig, OutputInfo, Pacing};
use crate::record::WavSamples;
use crate::session::ListenRequest;

use super::{Command, Panel, PanelCx, Settings};

/// Persisted monitor and recording settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AudioSettings {
    /// Monitoring is on (restarts with each capture).
    pub monitor: bool,
    /// The sound system; None: the first that runs (PipeWire, PulseAudio, ALSA).
    pub host: Option<AudioHost>,
    /// The output's name on that system; None: its default output.
    pub output: Option<String>,
    /// Linear gain, 0..=2 in the UI.
    pub volume: f32,
    pub muted: bool,
    /// A channel map as `ChannelMap::parse` reads it ("0,1", "0,0", "2,3"); None: device
    /// channel c to output c (mono to both).
    pub channel_map: Option<String>,
    pub latency_ms: f64,
    /// Record as 32-bit float instead of the device's native format.
    pub record_float: bool,
    /// Who paces the output (tests and benchmarks on ALSA's null and file PCMs use the
    /// host clock); never persisted.
    #[serde(skip)]
    pub pacing: Pacing,
}

impl Default for AudioSettings {
    fn default() -> Self {
        AudioSettings {
            monitor: false,
            host: None,
            output: None,
            volume: 1.0,
            muted: false,
            channel_map: None,
            latency_ms: 20.0,
            record_float: false,
            pacing: Pacing::Device,
        }
    }
}

/// The channel maps the menu offers for a device with `channels` channels, with labels:
/// every channel to both ears, then channel pairs to left and right.
pub fn map_choices(channels: u16) -> Vec<(Option<String>, String)> {
    let mut v =
        vec![(None, if channels <= 1 { "mono to both".to_string() } else { "ch 1, 2 to L, R".to_string() })];
    for c in 0..channels {
        v.push((Some(format!("{c},{c}")), format!("ch {} to both", c + 1)));
    }
    for c in (2..channels.saturating_sub(1)).step_by(2) {
        v.push((Some(format!("{},{}", c, c + 1)), format!("ch {}, {} to L, R", c + 1, c + 2)));
    }
    v
}

impl AudioSettings {
    /// What the session listens with.
    pub fn listen_request(&self) -> ListenRequest {
        ListenRequest {
            config: MonitorConfig {
                host: self.host,
                output: self.output.clone(),
                latency_ms: self.latency_ms,
                volume: self.volume,
                muted: self.muted,
                pacing: self.pacing,
                ..MonitorConfig::default()
            },
            channel_map: self.channel_map.clone(),
        }
    }

    /// How recordings store samples.
    pub fn wav_samples(&self) -> WavSamples {
        if self.record_float {
            WavSamples::Float
        } else {
            WavSamples::Native
        }
    }
}

/// The side panel: the meters, then the monitor and the recording.
#[derive(Default)]
pub struct AudioPanel;

impl Panel for AudioPanel {
    fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings, cx: &mut PanelCx<'_>) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            super::spectrum::meters_ui(ui, cx.analysis);
            ui.separator();
            monitor_and_record(ui, &mut settings.audio, cx);
        });
    }
}

fn monitor_and_record(ui: &mut egui::Ui, s: &mut AudioSettings, cx: &mut PanelCx<'_>) {
    let v = cx.session;
    let channels = v.live.as_ref().map_or(0, |l| l.info.stream.format.channels);
    ui.heading("Monitor");
    ui.horizontal(|ui| {
        let text = if s.monitor { "🔊 Listening" } else { "🔈 Listen" };
        // One width for both texts: the controls beside it must not move when it toggles.
        if ui
            .add_sized([96.0, 18.0], egui::Button::selectable(s.monitor, text))
            .on_hover_text("Play the capture on a sound card (M)")
            .clicked()
        {
            cx.send(Command::ToggleMonitor);
        }
        if ui.checkbox(&mut s.muted, "mute").changed() {
            cx.send(Command::SetMuted(s.muted));
        }
    });
    let out_text = output_label(s.host, s.output.as_deref(), &v.outputs);
    let mut restart = false;
    let combo = egui::ComboBox::from_id_salt("audio_output")
        .width(200.0)
        .truncate()
        .selected_text(out_text)
        .show_ui(ui, |ui| {
            let auto = s.host.is_none() && s.output.is_none();
            if ui.selectable_label(auto, "default output (first sound system that runs)").clicked() && !auto {
                (s.host, s.output) = (None, None);
                restart = true;
            }
            let mut host = None;
            for o in &v.outputs {
                if host != Some(o.host) {
                    host = Some(o.host);
                    ui.separator();
                    ui.label(egui::RichText::new(o.host.label()).strong());
                }
                let id = (o.id != "default").then(|| o.id.clone());
                let chosen = s.host == Some(o.host) && s.output == id;
                let label = o.description.lines().next().unwrap_or(&o.id).to_string();
                if ui.selectable_label(chosen, label).on_hover_text(&o.id).clicked() && !chosen {
                    (s.host, s.output) = (Some(o.host), id);
                    restart = true;
                }
            }
        });
    if combo.response.clicked() {
        cx.send(Command::ListOutputs);
    }
    if ui.add(egui::Slider::new(&mut s.volume, 0.0..=2.0).text("volume").fixed_decimals(2)).changed() {
        cx.send(Command::SetVolume(s.volume));
    }
    let choices = map_choices(channels.max(1));
    let current = choices
        .iter()
        .find(|(m, _)| *m == s.channel_map)
        .map_or_else(|| s.channel_map.clone().unwrap_or_default(), |(_, l)| l.clone());
    egui::ComboBox::from_id_salt("channel_map").width(200.0).selected_text(current).show_ui(ui, |ui| {
        for (m, label) in &choices {
            if ui.selectable_value(&mut s.channel_map, m.clone(), label).changed() {
                cx.send(Command::SetChannelMap(s.channel_map.clone()));
            }
        }
    });
    restart |= ui
        .add(egui::DragValue::new(&mut s.latency_ms).range(5.0..=500.0).speed(1.0).suffix(" ms target"))
        .on_hover_text("The latency the drift control holds, from packet completion to the sound card")
        .changed();
    if restart && s.monitor {
        cx.send(Command::RestartMonitor);
    }
    if let Some((st, name, playing)) = v.monitor_stats() {
        let ms = latency_text;
        if !playing {
            ui.small("Last listen (stopped):");
        }
        egui::Grid::new("monitor_stats").num_columns(2).show(ui, |ui| {
            ui.label("output");
            ui.add(egui::Label::new(name).truncate());
            ui.end_row();
            ui.label("latency");
            ui.monospace(format!("{} ms", ms(st.latency_ms_last)));
            ui.end_row();
            ui.label("median / p99");
            ui.monospace(format!("{} / {} ms", ms(st.latency_ms_median), ms(st.latency_ms_p99)));
            ui.end_row();
            ui.label("holding");
            ui.monospace(format!("{:.1} ms", st.holding_ms)).on_hover_text(
                "The latency the monitor aims for: the target, or, when the output's own delay \
                 and bursts are larger, the lowest it allows",
            );
            ui.end_row();
            ui.label("output delay");
            ui.monospace(format!("{:.1} ms", st.device_delay_ms))
                .on_hover_text("What the sound server or card reports it holds ahead of playback");
            ui.end_row();
            ui.label("resyncs");
            ui.monospace(st.resyncs.to_string());
            ui.end_row();
            ui.label("underruns");
            ui.monospace(format!("{} ({} frames)", st.underruns, st.underrun_frames));
            ui.end_row();
            ui.label("overruns");
            ui.monospace(format!("{} ({} frames)", st.overruns, st.overrun_frames));
            ui.end_row();
            ui.label("ratio");
            ui.monospace(format!("{:.6} ({:+.0} ppm)", st.ratio, st.correction_ppm));
            ui.end_row();
            ui.label("resampler CPU");
            ui.monospace(format!("{:.1} %", st.resampler_cpu_percent));
            ui.end_row();
        });
        if st.output_lost {
            ui.colored_label(egui::Color32::from_rgb(220, 140, 0), "the sound card went away");
        }
        if let Some(f) = &st.output_fault {
            ui.colored_label(egui::Color32::from_rgb(220, 140, 0), f.to_string());
        }
    }
    if let Some(e) = &v.monitor_error {
        ui.colored_label(egui::Color32::from_rgb(220, 80, 60), &e.message);
        if let Some(fix) = &e.fix {
            ui.label(fix);
        }
        ui.small("Capture, plots and recording go on without sound.");
    }

    ui.separator();
    ui.heading("Record");
    ui.horizontal(|ui| {
        let rec = v.recording.is_some();
        let text = if rec { "⏹ Stop recording" } else { "⏺ Record WAV" };
        if ui.selectable_label(rec, text).on_hover_text("Record the capture to a WAV file (R)").clicked() {
            cx.send(Command::ToggleRecord);
        }
        ui.add_enabled(!rec, egui::Checkbox::new(&mut s.record_float, "float"))
            .on_hover_text("32-bit float instead of the device's own format (bit-exact)");
    });
    if let Some(r) = &v.recording {
        let (secs, path) = (r.seconds(), r.path().display());
        ui.colored_label(egui::Color32::from_rgb(220, 60, 60), format!("● {secs:.1} s to {path}"));
    } else if let Some(last) = &v.last_recording {
        ui.small(last);
    }
}

/// A latency in ms for the panel; "> 2000.0" past the end of the histogram.
pub fn latency_text(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_string(),
        Some(x) if x >= LATENCY_RANGE_MS => format!("> {x:.1}"),
        Some(x) => format!("{x:.1}"),
    }
}

/// What the output menu shows for the chosen host and output.
fn output_label(host: Option<AudioHost>, output: Option<&str>, outputs: &[OutputInfo]) -> String {
    match (host, output) {
        (None, None) => "default output".into(),
        (Some(h), None) => format!("{h}: default output"),
        (h, Some(id)) => {
            let known = outputs.iter().find(|o| o.id == id && h.is_none_or(|h| h == o.host));
            let name = known.map_or(id, |o| o.description.lines().next().unwrap_or(id));
            match h {
                Some(h) => format!("{h}: {name}"),
                None => name.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::ChannelMap;

    #[test]
    fn latency_past_the_histogram_says_so() {
        assert_eq!(latency_text(Some(12.34)), "12.3");
        assert_eq!(latency_text(Some(LATENCY_RANGE_MS)), "> 2000.0");
        assert_eq!(latency_text(None), "-");
    }

    #[test]
    fn the_output_menu_names_the_host_and_the_desktop_name() {
        let outs = [OutputInfo {
            host: AudioHost::PulseAudio,
            id: "null".into(),
            description: "Null Output".into(),
        }];
        assert_eq!(output_label(None, None, &outs), "default output");
        assert_eq!(output_label(Some(AudioHost::PulseAudio), Some("null"), &outs), "PulseAudio: Null Output");
        assert_eq!(output_label(Some(AudioHost::Alsa), None, &outs), "ALSA: default output");
        assert_eq!(output_label(Some(AudioHost::Alsa), Some("hw:0"), &outs), "ALSA: hw:0");
    }

    #[test]
    fn every_offered_channel_map_is_valid_for_the_device() {
        for ch in 1..=8u16 {
            let choices = map_choices(ch);
            assert_eq!(choices.len(), 1 + usize::from(ch) + usize::from(ch.saturating_sub(2) / 2));
            for (m, label) in choices {
                if let Some(m) = m {
                    assert!(ChannelMap::parse(&m, ch).is_ok(), "{ch} ch: {m} ({label})");
                }
            }
        }
        assert_eq!(map_choices(4)[5], (Some("2,3".into()), "ch 3, 4 to L, R".into()));
    }
}
