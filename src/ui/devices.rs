//! The device bar: the picker (simulated signals and USB audio capture devices, as the
//! session's hotplug watcher lists them), format and rate from the descriptors, capture
//! mode, run/stop/single, screenshot and bug report.

use eframe::egui;

use crate::capture::ModeRequest;
use crate::session::devices::Offers;

use super::{Command, Panel, PanelCx, Settings};

/// The device bar along the top of the window.
#[derive(Default)]
pub struct DevicesPanel;

impl Panel for DevicesPanel {
    fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings, cx: &mut PanelCx<'_>) {
        ui.horizontal_wrapped(|ui| {
            ui.strong("isoscope");
            ui.separator();
            device_bar(ui, settings, cx);
            ui.separator();
            if ui.button("📷 Screenshot").on_hover_text("Save a PNG of the window (F12)").clicked() {
                cx.send(Command::Screenshot);
            }
            if ui
                .button("Copy bug report")
                .on_hover_text(
                    "Version, kernel, usbfs caps, device, settings, stats: to the clipboard and a file",
                )
                .clicked()
            {
                cx.send(Command::CopyBugReport);
            }
        });
    }
}

fn device_bar(ui: &mut egui::Ui, bar: &mut Settings, cx: &mut PanelCx<'_>) {
    let session = cx.session;
    let entries = &session.devices;
    let running = session.running();
    let current = entries
        .iter()
        .find(|e| e.selector == bar.device)
        .map_or_else(|| bar.device.clone(), |e| e.label.clone());
    let mut changed = false;
    egui::ComboBox::from_id_salt("device").width(230.0).selected_text(current).show_ui(ui, |ui| {
        for e in entries {
            changed |= ui.selectable_value(&mut bar.device, e.selector.clone(), &e.label).changed();
        }
    });
    if ui
        .button("⟳")
        .on_hover_text("Read the device list again (it also follows hotplug by itself)")
        .clicked()
    {
        cx.send(Command::RescanDevices);
    }
    static ANY: std::sync::LazyLock<Offers> = std::sync::LazyLock::new(Offers::any);
    if changed {
        // A new device: keep only the choices it offers.
        if let Some(e) = entries.iter().find(|e| e.selector == bar.device) {
            let o = &e.offers;
            bar.rate.take_if(|r| !o.rates.contains(r));
            bar.channels.take_if(|c| !o.channels.contains(c));
            bar.sample.take_if(|f| !o.formats.iter().any(|x| x.name() == f.as_str()));
        }
    }
    let offers = entries.iter().find(|e| e.selector == bar.device).map_or(&*ANY, |e| &e.offers);
    let rate_text = bar.rate.map_or("rate: default".to_string(), |r| format!("{r} Hz"));
    let rates = egui::ComboBox::from_id_salt("rate").selected_text(rate_text).show_ui(ui, |ui| {
        changed |= ui.selectable_value(&mut bar.rate, None, "default").changed();
        for &r in &offers.rates {
            changed |= ui.selectable_value(&mut bar.rate, Some(r), format!("{r} Hz")).changed();
        }
    });
    if offers.rates_from_clock {
        rates.response.on_hover_text(
            "A UAC2 device says its rates only when asked: isoscope asks its clock when it opens it \
             and says so if the rate is refused.",
        );
    }
    let ch_text = bar.channels.map_or("channels: default".to_string(), |c| format!("{c} ch"));
    egui::ComboBox::from_id_salt("channels").selected_text(ch_text).show_ui(ui, |ui| {
        changed |= ui.selectable_value(&mut bar.channels, None, "default").changed();
        for &c in &offers.channels {
            changed |= ui.selectable_value(&mut bar.channels, Some(c), format!("{c} ch")).changed();
        }
    });
    let fmt_text = bar.sample.clone().unwrap_or_else(|| "format: default".into());
    egui::ComboBox::from_id_salt("format").selected_text(fmt_text).show_ui(ui, |ui| {
        changed |= ui.selectable_value(&mut bar.sample, None, "default").changed();
        for &f in &offers.formats {
            changed |= ui.selectable_value(&mut bar.sample, Some(f.name().to_string()), f.name()).changed();
        }
    });
    let mode_text = mode_name(bar.mode);
    egui::ComboBox::from_id_salt("mode").selected_text(mode_text).show_ui(ui, |ui| {
        for m in [ModeRequest::Auto, ModeRequest::ZeroCopy, ModeRequest::Copy] {
            changed |= ui.selectable_value(&mut bar.mode, m, mode_name(m)).changed();
        }
    });
    if changed && running {
        cx.send(Command::Restart);
    }
    ui.separator();
    if running {
        if ui.button("⏹ Stop").on_hover_text("Stop the capture (Space)").clicked() {
            cx.send(Command::Stop);
        }
    } else if ui.button("▶ Run").on_hover_text("Start the capture (Space)").clicked() {
        cx.send(Command::Start);
    }
    if ui.button("Single").on_hover_text("Capture until one trigger, then stop (S)").clicked() {
        cx.send(Command::Single);
    }
}

pub fn mode_name(m: ModeRequest) -> &'static str {
    match m {
        ModeRequest::Auto => "mode: auto",
        ModeRequest::ZeroCopy => "mode: zero-copy",
        ModeRequest::Copy => "mode: copy",
    }
}
