//! The spectrum panel (window, size, log frequency axis, dBFS, peak hold) and the meters
//! (peak and RMS dBFS per channel, clip indicator, dominant frequency).

use eframe::egui;
use std::time::{Duration, Instant};

use egui_plot::{Line, Plot, PlotBounds, PlotPoint, PlotPoints};

use crate::dsp::meter::{self, Levels};
use crate::dsp::spectrum::{Spectrum, Window, DB_FLOOR};

use super::{channel_color, Command, History, Panel, PanelCx, Settings};

/// Persisted spectrum settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SpectrumSettings {
    pub window: Window,
    pub size: usize,
    pub log_freq: bool,
    pub peak_hold: bool,
    /// Bottom of the dB axis.
    pub floor_db: f32,
}

impl Default for SpectrumSettings {
    fn default() -> Self {
        SpectrumSettings {
            window: Window::Hann,
            size: 8192,
            log_freq: true,
            peak_hold: true,
            floor_db: -140.0,
        }
    }
}

/// How long the clip light stays on after a clipped sample.
const CLIP_HOLD: Duration = Duration::from_secs(2);

/// How often the spectra are computed while the spectrum tab is hidden (the meters' dominant
/// frequency still needs one).
const HIDDEN_SPECTRUM_EVERY: Duration = Duration::from_millis(250);

/// Spectra and levels of every channel: the levels every frame, the spectra every frame
/// while they are shown and a few times a second while not.
#[derive(Default)]
pub struct Analysis {
    pub spectra: Vec<Spectrum>,
    pub levels: Vec<Levels>,
    pub clip_until: Vec<Option<Instant>>,
    /// Dominant frequency of each channel (Hz).
    pub dominant: Vec<Option<f64>>,
    /// Transforms computed so far (one per channel per update that computed spectra).
    pub transforms: u64,
    last_transform: Option<Instant>,
    scratch: Vec<f32>,
}

impl Analysis {
    /// Forgets every channel's peak hold.
    pub fn reset_peaks(&mut self) {
        self.spectra.iter_mut().for_each(Spectrum::reset_peak);
    }

    /// Recomputes from the newest samples of `h` (no allocation once sizes are stable);
    /// `spectrum_shown` says whether the spectrum tab is on screen.
    pub fn update(&mut self, s: &SpectrumSettings, h: &History, spectrum_shown: bool) {
        let transform =
            spectrum_shown || self.last_transform.is_none_or(|t| t.elapsed() >= HIDDEN_SPECTRUM_EVERY);
        let n = h.channels.len();
        let size = s.size.clamp(256, 65_536);
        if self.spectra.len() != n
            || self.spectra.first().is_some_and(|x| x.size() != size || x.window() != s.window)
        {
            self.spectra = (0..n).map(|_| Spectrum::new(size, s.window)).collect();
        }
        self.levels.resize(n, Levels::default());
        self.clip_until.resize(n, None);
        self.dominant.resize(n, None);
        let meter_len = (h.rate as usize / 20).max(64); // 50 ms
        for (c, pyr) in h.channels.iter().enumerate() {
            let t = pyr.total();
            pyr.copy_range(t.saturating_sub(size), t, &mut self.scratch);
            // A partial block would be zero-padded: the step leaks everywhere and would stick
            // in the peak hold. Wait for a whole one.
            if transform && self.scratch.len() == size {
                self.spectra[c].process(&self.scratch);
                self.transforms += 1;
                self.last_transform = Some(Instant::now());
            }
            if !s.peak_hold {
                self.spectra[c].reset_peak();
            }
            let m = self.scratch.len().saturating_sub(meter_len);
            self.levels[c] = meter::levels(&self.scratch[m..], 1, 0);
            if self.levels[c].clipped > 0 {
                self.clip_until[c] = Some(Instant::now() + CLIP_HOLD);
            }
            let bin = f64::from(h.rate) / size as f64;
            self.dominant[c] = meter::dominant_frequency(self.spectra[c].db(), bin);
        }
    }
}

#[derive(Default)]
pub struct SpectrumPanel {
    points: Vec<Vec<PlotPoint>>,
    peaks: Vec<Vec<PlotPoint>>,
}

impl SpectrumPanel {
    fn show(
        &mut self,
        ui: &mut egui::Ui,
        s: &mut SpectrumSettings,
        a: &Analysis,
        h: &History,
        cmds: &mut Vec<Command>,
    ) {
        ui.horizontal_wrapped(|ui| {
            egui::ComboBox::from_id_salt("window").selected_text(s.window.name()).show_ui(ui, |ui| {
                for w in Window::ALL {
                    ui.selectable_value(&mut s.window, w, w.name());
                }
            });
            egui::ComboBox::from_id_salt("fftsize").selected_text(format!("{} points", s.size)).show_ui(
                ui,
                |ui| {
                    for n in [1024, 2048, 4096, 8192, 16384, 32768, 65536] {
                        ui.selectable_value(&mut s.size, n, format!("{n} points"));
                    }
                },
            );
            ui.checkbox(&mut s.log_freq, "log frequency");
            ui.checkbox(&mut s.peak_hold, "peak hold");
            if ui.button("reset peaks").clicked() {
                cmds.push(Command::ResetPeaks);
            }
            ui.label("floor");
            ui.add(egui::DragValue::new(&mut s.floor_db).range(-200.0..=-20.0).suffix(" dB"));
            if let Some(sp) = a.spectra.first() {
                ui.label(format!("bin width {:.2} Hz", f64::from(h.rate) / sp.size() as f64));
            }
        });
        let rate = f64::from(h.rate.max(1));
        let log = s.log_freq;
        let fx = move |hz: f64| if log { hz.max(1.0).log10() } else { hz };
        let plot = Plot::new("spectrum")
            .x_axis_label(if log { "frequency (Hz, log)" } else { "frequency (Hz)" })
            .y_axis_label("dBFS")
            .legend(egui_plot::Legend::default())
            .auto_bounds(egui::Vec2b::FALSE)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .label_formatter(move |name, p| hover_text(name, p.x, p.y, log))
            .x_axis_formatter(move |m, _| {
                let hz = if log { 10f64.powf(m.value) } else { m.value };
                if hz >= 1000.0 {
                    format!("{:.0}k", hz / 1000.0)
                } else {
                    format!("{hz:.0}")
                }
            });
        let floor = f64::from(s.floor_db);
        let peak_hold = s.peak_hold;
        let n = a.spectra.len();
        self.points.resize_with(n, Vec::new);
        self.peaks.resize_with(n, Vec::new);
        for (c, sp) in a.spectra.iter().enumerate() {
            let (pts, pks) = (&mut self.points[c], &mut self.peaks[c]);
            pts.clear();
            pks.clear();
            for (k, (&d, &p)) in sp.db().iter().zip(sp.peak_hold()).enumerate().skip(1) {
                let x = fx(sp.bin_hz(k, rate));
                pts.push(PlotPoint::new(x, f64::from(d.max(DB_FLOOR))));
                pks.push(PlotPoint::new(x, f64::from(p.max(DB_FLOOR))));
            }
        }
        let (points, peaks) = (&self.points, &self.peaks);
        plot.show(ui, |pui| {
            pui.set_plot_bounds(PlotBounds::from_min_max([fx(10.0), floor], [fx(rate / 2.0), 6.0]));
            for c in 0..n {
                pui.line(
                    Line::new(format!("ch {}", c + 1), PlotPoints::Borrowed(&points[c]))
                        .color(channel_color(c)),
                );
                if peak_hold {
                    pui.line(
                        Line::new(format!("ch {} peak", c + 1), PlotPoints::Borrowed(&peaks[c]))
                            .color(channel_color(c).gamma_multiply(0.5))
                            .style(egui_plot::LineStyle::dotted_dense()),
                    );
                }
            }
        });
    }
}

impl Panel for SpectrumPanel {
    fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings, cx: &mut PanelCx<'_>) {
        self.show(ui, &mut settings.spectrum, cx.analysis, cx.history, cx.commands);
    }
}

/// The meters: one row per channel.
pub fn meters_ui(ui: &mut egui::Ui, a: &Analysis) {
    ui.heading("Levels");
    for (c, l) in a.levels.iter().enumerate() {
        ui.horizontal(|ui| {
            ui.colored_label(channel_color(c), format!("ch {}", c + 1));
            let clip = a.clip_until[c].is_some_and(|t| Instant::now() < t);
            let (bg, fg) = if clip {
                (egui::Color32::from_rgb(200, 30, 30), egui::Color32::WHITE)
            } else {
                (ui.visuals().faint_bg_color, ui.visuals().weak_text_color())
            };
            egui::Frame::new().fill(bg).inner_margin(egui::Margin::symmetric(4, 0)).corner_radius(3).show(
                ui,
                |ui| {
                    ui.colored_label(fg, "CLIP");
                },
            );
        });
        bar(ui, "peak", l.peak_db);
        bar(ui, "RMS", l.rms_db);
        let dom = a.dominant.get(c).copied().flatten().map_or("-".to_string(), |f| format!("{f:.1} Hz"));
        ui.monospace(format!("dominant {dom}"));
        ui.add_space(4.0);
    }
    ui.small("RMS is not sine-referenced: a full-scale sine reads -3 dBFS.");
}

/// What the pointer's spot on the spectrum says: the frequency in Hz (the axis is log10 of it
/// on a log axis) and the level.
fn hover_text(name: &str, x: f64, y: f64, log: bool) -> String {
    let hz = if log { 10f64.powf(x) } else { x };
    let f = if hz >= 1000.0 { format!("{:.3} kHz", hz / 1000.0) } else { format!("{hz:.1} Hz") };
    let who = if name.is_empty() { String::new() } else { format!("{name}: ") };
    format!("{who}{f}, {y:.1} dBFS")
}

fn bar(ui: &mut egui::Ui, name: &str, db: f32) {
    let frac = ((db + 60.0) / 60.0).clamp(0.0, 1.0);
    let color = if db > -1.0 {
        egui::Color32::from_rgb(210, 50, 50)
    } else if db > -12.0 {
        egui::Color32::from_rgb(220, 170, 30)
    } else {
        egui::Color32::from_rgb(60, 170, 80)
    };
    let text = if db <= DB_FLOOR { format!("{name} -inf dBFS") } else { format!("{name} {db:.1} dBFS") };
    // The figure beside the bar, not on it: on the bar it was readable only over the filled
    // part, so a low level was cut ("RMS -33.8 dBF").
    ui.horizontal(|ui| {
        ui.add(egui::ProgressBar::new(frac).fill(color).desired_width(110.0));
        ui.monospace(text);
    });
}

#[cfg(test)]
mod tests {
    use super::hover_text;

    #[test]
    fn the_hover_says_hertz_on_a_log_axis_too() {
        assert_eq!(hover_text("ch 1", 3.0, -6.02, true), "ch 1: 1.000 kHz, -6.0 dBFS");
        assert_eq!(hover_text("", 440.0, -20.0, false), "440.0 Hz, -20.0 dBFS");
        assert_eq!(hover_text("ch 2", 2.0, -1.0, true), "ch 2: 100.0 Hz, -1.0 dBFS");
    }
}
