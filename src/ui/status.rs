//! The status bar: device, rate, format, mode, throughput, drops, errors (by errno, with
//! their meanings on hover) and a run of all-zero data.

use crate::capture::{CaptureInfo, StatsSnapshot};
use crate::dma::human_bytes;
use eframe::egui;

use super::{Panel, PanelCx, Settings};

/// What the status bar shows.
struct Status<'a> {
    pub info: Option<&'a CaptureInfo>,
    pub stats: Option<&'a StatsSnapshot>,
    pub bytes_per_s: f64,
    pub running: bool,
    pub note: Option<&'a str>,
    /// Seconds of history held now, the most it keeps, and the memory it takes now.
    pub history: (f64, f64, usize),
}

/// The status bar along the bottom.
#[derive(Default)]
pub struct StatusBar;

impl Panel for StatusBar {
    fn ui(&mut self, ui: &mut egui::Ui, _settings: &mut Settings, cx: &mut PanelCx<'_>) {
        let v = cx.session;
        let h = cx.history;
        show(
            ui,
            Status {
                info: v.live.as_ref().map(|l| &l.info),
                stats: v.stats.as_ref(),
                bytes_per_s: v.bytes_per_s(),
                running: v.running(),
                note: v.simulated().then_some("built-in simulated device"),
                history: (h.held_seconds(), h.seconds(), h.heap_bytes()),
            },
        );
    }
}

fn show(ui: &mut egui::Ui, s: Status<'_>) {
    ui.horizontal_wrapped(|ui| {
        let (dot, text) = if s.running {
            (egui::Color32::from_rgb(60, 180, 90), "running")
        } else {
            (egui::Color32::from_gray(140), "stopped")
        };
        ui.colored_label(dot, "●");
        ui.label(text);
        if let Some(info) = s.info {
            ui.separator();
            if info.device.simulated {
                ui.colored_label(egui::Color32::from_rgb(220, 140, 0), "SIMULATED");
            }
            ui.label(&info.device.name);
            ui.separator();
            let f = info.stream.format;
            ui.label(format!("{} Hz", f.rate));
            ui.label(format!("{} × {}", f.channels, f.sample));
            ui.separator();
            ui.label(info.path.to_string());
        }
        if let Some(st) = s.stats {
            ui.separator();
            ui.label(format!("{}/s", human_bytes(s.bytes_per_s as u64)));
            ui.separator();
            let (held, max, bytes) = s.history;
            ui.label(format!("history {held:.0} of {max:.0} s ({})", human_bytes(bytes as u64)))
                .on_hover_text("How far back pause and scroll reach; set by history_s and history_mb");
            ui.separator();
            let drops = st.ring_drops;
            let errs = st.packet_errors;
            let warn = egui::Color32::from_rgb(220, 80, 60);
            if drops > 0 {
                ui.colored_label(warn, format!("drops {drops}"));
            } else {
                ui.label("drops 0");
            }
            if errs > 0 {
                // The lines are built only while the pointer is on the label.
                ui.colored_label(warn, format!("packet errors {errs}")).on_hover_ui(|ui| {
                    ui.label("Failed packets are never read as signal.");
                    for line in st.packet_error_lines() {
                        ui.label(line);
                    }
                });
            } else {
                ui.label("errors 0");
            }
            if st.all_zero_run_ns >= crate::capture::stats::ALL_ZERO_NOTICE.as_nanos() as u64 {
                ui.colored_label(warn, format!("all zeros for {:.0} s", st.all_zero_run_ns as f64 / 1e9))
                    .on_hover_ui(|ui| {
                        ui.label(st.all_zero_note().unwrap_or_default());
                    });
            }
        }
        if let Some(n) = s.note {
            ui.separator();
            ui.colored_label(egui::Color32::from_rgb(220, 140, 0), n);
        }
    });
}
