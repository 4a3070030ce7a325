//! The buffer pool panel: a gauge of this process's usbfs memory against the app cap and
//! `usbfs_memory_mb`, the strip of URB slots by state with each one's transfer path, and a
//! warning with the fix before the cap is hit.

use crate::capture::{CaptureInfo, SlotState, SlotStates};
use crate::dma::{human_bytes, TransferPath, USBFS_MEMORY_MB_PATH};
use eframe::egui;

use super::{Panel, PanelCx, Settings};

/// Warn when the plan uses this share of the tighter cap.
pub const WARN_SHARE: f64 = 0.8;

pub fn slot_color(s: SlotState) -> egui::Color32 {
    match s {
        SlotState::InFlight => egui::Color32::from_rgb(60, 130, 220),
        SlotState::Completed => egui::Color32::from_rgb(230, 160, 0),
        SlotState::BeingRead => egui::Color32::from_rgb(60, 180, 90),
        SlotState::Free => egui::Color32::from_gray(128),
    }
}

/// The warning (with the fix) for a plan close to a cap, if any.
pub fn cap_warning(info: &CaptureInfo) -> Option<String> {
    let used = info.memory.accounted_bytes();
    let cap = info.limit.effective_bytes();
    if cap == 0 || (used as f64) < WARN_SHARE * cap as f64 {
        return None;
    }
    Some(format!(
        "This capture's buffers use {} of the {} cap ({:.0} %). Other usbfs users share usbfs_memory_mb, \
         so the next start may fail with ENOMEM. Fix: use fewer or shorter URBs, or raise the cap: \
         echo 64 | sudo tee {USBFS_MEMORY_MB_PATH}",
        human_bytes(used),
        human_bytes(cap),
        100.0 * used as f64 / cap as f64
    ))
}

/// The buffer pool tab.
#[derive(Default)]
pub struct PoolPanel;

impl Panel for PoolPanel {
    fn ui(&mut self, ui: &mut egui::Ui, _settings: &mut Settings, cx: &mut PanelCx<'_>) {
        let live = cx.session.live.as_ref();
        show(ui, live.map(|l| &l.info), live.map(|l| &l.probe.slots));
    }
}

/// The usbfs gauge's title: the cap it is against, and whose (the simulator has its own).
fn usbfs_gauge_name(usbfs_memory_mb: Option<u32>, simulated: bool) -> String {
    match (usbfs_memory_mb, simulated) {
        (Some(mb), true) => {
            format!("against the simulated device's usbfs_memory_mb = {mb} (not this machine's)")
        }
        (Some(mb), false) => format!("against usbfs_memory_mb = {mb}"),
        (None, _) => "usbfs_memory_mb (unreadable)".into(),
    }
}

fn show(ui: &mut egui::Ui, info: Option<&CaptureInfo>, slots: Option<&SlotStates>) {
    let Some(info) = info else {
        ui.label("No capture running: start one to see its buffer pool.");
        return;
    };
    let m = &info.memory;
    let l = &info.limit;
    ui.heading("usbfs memory (this process)");
    ui.label(
        "The kernel counts every usbfs user on the machine against usbfs_memory_mb, but does not \
         say how much the others use: this gauge shows this process's share only.",
    );
    let used = m.accounted_bytes();
    let gauge = |ui: &mut egui::Ui, name: &str, cap: Option<u64>| {
        ui.horizontal(|ui| {
            ui.add_sized([230.0, 18.0], egui::Label::new(name));
            match cap {
                Some(cap) if cap > 0 => {
                    let f = used as f64 / cap as f64;
                    let color = if f >= WARN_SHARE {
                        egui::Color32::from_rgb(210, 60, 40)
                    } else {
                        egui::Color32::from_rgb(60, 140, 200)
                    };
                    ui.add(
                        egui::ProgressBar::new(f.min(1.0) as f32).fill(color).desired_width(360.0).text(
                            format!("{} of {} ({:.1} %)", human_bytes(used), human_bytes(cap), 100.0 * f),
                        ),
                    );
                }
                _ => {
                    ui.label(format!("{} (no limit)", human_bytes(used)));
                }
            }
        });
    };
    gauge(ui, "against the app cap", Some(l.app_cap_bytes));
    let usbfs_name = usbfs_gauge_name(l.usbfs_memory_mb, info.device.simulated);
    gauge(ui, &usbfs_name, l.usbfs_bytes());
    egui::Grid::new("pool_numbers").num_columns(2).striped(true).show(ui, |ui| {
        ui.label("buffer pool");
        ui.monospace(human_bytes(m.pool_bytes()));
        ui.end_row();
        ui.label("counted by usbfs");
        ui.monospace(human_bytes(m.usbfs_bytes()));
        ui.end_row();
        ui.label("accounted (with bookkeeping)");
        ui.monospace(human_bytes(used));
        ui.end_row();
        ui.label("URBs");
        ui.monospace(format!(
            "{} in flight + {} spare, {} packets of {} bytes each",
            info.plan.urbs_in_flight, info.plan.spare_urbs, info.plan.packets_per_urb, info.stream.packet_len
        ));
        ui.end_row();
        ui.label("transfer path");
        ui.monospace(match info.path {
            TransferPath::ZeroCopy => "zero-copy (mmap'd usbfs pages)",
            TransferPath::Copy => "copy (heap buffers, the kernel bounces and copies)",
        });
        ui.end_row();
    });
    if let Some(why) = &info.fallback {
        ui.colored_label(egui::Color32::from_rgb(220, 140, 0), format!("Copy mode because: {why}"));
    }
    if let Some(w) = cap_warning(info) {
        ui.colored_label(egui::Color32::from_rgb(210, 60, 40), w);
    }
    ui.separator();
    ui.heading("URB slots");
    let Some(slots) = slots else { return };
    ui.horizontal_wrapped(|ui| {
        for s in SlotState::ALL {
            let (r, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
            ui.painter().rect_filled(r, 2.0, slot_color(s));
            ui.label(s.name());
        }
    });
    let counts = slots.counts();
    ui.monospace(format!(
        "in flight {}   completed {}   being read {}   free {}",
        counts[0], counts[1], counts[2], counts[3]
    ));
    let path = match info.path {
        TransferPath::ZeroCopy => "mmap",
        TransferPath::Copy => "copy",
    };
    ui.horizontal_wrapped(|ui| {
        for i in 0..slots.len() {
            let s = slots.get(i);
            let (r, resp) = ui.allocate_exact_size(egui::vec2(44.0, 34.0), egui::Sense::hover());
            ui.painter().rect_filled(r, 3.0, slot_color(s));
            ui.painter().text(
                r.center_top() + egui::vec2(0.0, 2.0),
                egui::Align2::CENTER_TOP,
                format!("#{i}"),
                egui::FontId::monospace(11.0),
                egui::Color32::WHITE,
            );
            ui.painter().text(
                r.center_bottom() - egui::vec2(0.0, 2.0),
                egui::Align2::CENTER_BOTTOM,
                path,
                egui::FontId::monospace(10.0),
                egui::Color32::WHITE,
            );
            resp.on_hover_text(format!("URB {i}: {} ({path})", s.name()));
        }
    });
    ui.small("States are sampled once per frame; 'completed' and 'being read' last microseconds, so they flash rarely.");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Capture, CaptureConfig, Sink};
    use crate::sim::{SimConfig, SimDevice};
    use ringbuf::traits::Split;

    fn info_with_cap(app_cap_bytes: u64) -> CaptureInfo {
        let dev = SimDevice::new(SimConfig::default()).unwrap();
        let (prod, _cons) = ringbuf::HeapRb::<u8>::new(1 << 16).split();
        let cfg = CaptureConfig { app_cap_bytes, ..CaptureConfig::default() };
        let cap = Capture::start(dev.backend(), dev.stream(), &cfg, vec![Sink::Bytes(prod)]).unwrap();
        let info = cap.info().clone();
        cap.stop();
        info
    }

    #[test]
    fn the_simulated_cap_is_named_as_the_simulators() {
        assert_eq!(
            usbfs_gauge_name(Some(16), true),
            "against the simulated device's usbfs_memory_mb = 16 (not this machine's)"
        );
        assert_eq!(usbfs_gauge_name(Some(16), false), "against usbfs_memory_mb = 16");
        assert_eq!(usbfs_gauge_name(None, false), "usbfs_memory_mb (unreadable)");
    }

    #[test]
    fn the_warning_comes_before_the_cap_with_the_numbers_and_the_fix() {
        let roomy = info_with_cap(8 << 20);
        assert_eq!(cap_warning(&roomy), None);
        // The same plan under a cap just above what it needs: near the cap, so warned.
        let need = roomy.memory.accounted_bytes();
        let tight = info_with_cap(need + need / 20);
        let w = cap_warning(&tight).expect("a warning near the cap");
        assert!(w.contains("usbfs_memory_mb") && w.contains("sudo tee"), "{w}");
        assert!(w.contains(&human_bytes(need)), "{w}");
    }
}
