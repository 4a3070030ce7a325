//! The notices under the tabs: why the device is the simulated one, the last hotplug
//! change, a device being opened, and the error banner with its fix.

use eframe::egui;

use super::{Command, Panel, PanelCx, Settings};

#[derive(Default)]
pub struct NoticesPanel;

impl Panel for NoticesPanel {
    fn ui(&mut self, ui: &mut egui::Ui, _settings: &mut Settings, cx: &mut PanelCx<'_>) {
        let v = cx.session;
        if let Some(n) = &v.note {
            ui.colored_label(egui::Color32::from_rgb(220, 140, 0), n);
        }
        if let Some(h) = &v.hotplug {
            ui.colored_label(egui::Color32::from_rgb(60, 160, 220), format!("USB {h}"));
        }
        if let Some(d) = &v.opening {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("opening {d}…"));
            });
        }
        if let Some(e) = &v.error {
            egui::Frame::new()
                .fill(egui::Color32::from_rgb(150, 30, 30))
                .inner_margin(6)
                .corner_radius(4)
                .show(ui, |ui| {
                    ui.colored_label(egui::Color32::WHITE, format!("Error: {}", e.message));
                    if let Some(f) = &e.fix {
                        ui.colored_label(egui::Color32::WHITE, format!("Fix: {f}"));
                    }
                    if ui.button("Dismiss").clicked() {
                        cx.send(Command::DismissError);
                    }
                });
        }
    }
}
