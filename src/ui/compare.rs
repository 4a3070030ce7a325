//! Copy vs zero-copy: live figures for the running mode (engine CPU per MiB, syscalls/s,
//! bytes the kernel copied, reap latency), the A/B run and its chart, and the raw buffer
//! of one URB with packet boundaries and gaps marked.

use eframe::egui;
use egui_plot::{Bar, BarChart, Plot};

use crate::capture::{ModeRequest, RawSnapshot, StatsSnapshot};
use crate::dma::{human_bytes, TransferPath};

use crate::session::ab::{AbResult, AbSettings, AbState};

use super::{Command, Panel, PanelCx, Settings};

/// The copy vs zero-copy tab.
#[derive(Default)]
pub struct ComparePanel;

impl Panel for ComparePanel {
    fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings, cx: &mut PanelCx<'_>) {
        let v = cx.session;
        // The raw view shows a URB as soon as the tab opens.
        if v.raw.is_none() && v.running() {
            cx.send(Command::RawSnapshot);
        }
        let view = CompareView {
            stats: v.stats.as_ref().filter(|_| v.running()),
            path: v.live.as_ref().map(|l| l.info.path),
            simulated: v.simulated(),
            ab: &v.ab,
            settings: &mut settings.ab,
            raw: v.raw.as_ref(),
        };
        view.ui(ui, cx.commands);
    }
}

struct CompareView<'a> {
    stats: Option<&'a StatsSnapshot>,
    path: Option<TransferPath>,
    simulated: bool,
    ab: &'a AbState,
    settings: &'a mut AbSettings,
    raw: Option<&'a RawSnapshot>,
}

impl CompareView<'_> {
    fn ui(self, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
        egui::ScrollArea::vertical().auto_shrink(false).show(ui, |ui| {
            ui.heading("Live: the running mode");
            if self.simulated {
                ui.colored_label(
                    egui::Color32::from_rgb(220, 140, 0),
                    "Simulated device: the in-process backend reproduces the kernel's copy path (bounce buffer \
                     zeroed at submit, copied at reap on the reaping thread), so the figures compare the two \
                     modes' costs on this CPU, not a real host controller.",
                );
            }
            if let (Some(s), Some(path)) = (self.stats, self.path) {
                let r = AbResult::from_stats(0, path, s);
                egui::Grid::new("live_figs").num_columns(2).striped(true).show(ui, |ui| {
                    ui.label("mode");
                    ui.monospace(path.to_string());
                    ui.end_row();
                    ui.label("engine thread CPU per MiB");
                    ui.monospace(format!("{:.0} µs", r.cpu_us_per_mib));
                    ui.end_row();
                    ui.label("data-path syscalls per second");
                    ui.monospace(format!("{:.0}", r.syscalls_per_s));
                    ui.end_row();
                    ui.label("bytes the kernel copied to us");
                    ui.monospace(human_bytes(s.kernel_copied_bytes));
                    ui.end_row();
                    ui.label("reap latency (mean / max)");
                    ui.monospace(format!("{:.0} µs / {:.0} µs", r.latency_us, s.reap_latency_max_ns as f64 / 1000.0));
                    ui.end_row();
                });
                ui.small(
                    "Reap latency: usbfs gives no completion time, so this is the time from when the URB's last \
                     packet was due on the bus (stream start + packets × period) to the reap.",
                );
            } else {
                ui.label("No capture running.");
            }
            ui.separator();
            ui.heading("A/B: zero-copy then copy, same device");
            ui.horizontal(|ui| {
                ui.label("seconds per phase");
                ui.add(egui::DragValue::new(&mut self.settings.seconds).range(0.5..=60.0).speed(0.1));
                ui.label("rounds");
                ui.add(egui::DragValue::new(&mut self.settings.rounds).range(1..=10));
                if self.ab.running {
                    let phase = match self.ab.phase {
                        Some(ModeRequest::Copy) => "copy",
                        _ => "zero-copy",
                    };
                    ui.label(format!("running round {} ({phase})…", self.ab.round + 1));
                    if ui.button("Cancel").clicked() {
                        cmds.push(Command::CancelAb);
                    }
                } else if ui.button("Run A/B").clicked() {
                    cmds.push(Command::StartAb);
                }
            });
            if let Some(e) = &self.ab.error {
                ui.colored_label(egui::Color32::from_rgb(210, 60, 40), e);
            }
            if !self.ab.results.is_empty() {
                ab_chart(ui, &self.ab.results);
            }
            ui.separator();
            ui.heading("Raw buffer of one URB");
            ui.horizontal(|ui| {
                if ui.button("Capture one URB").clicked() {
                    cmds.push(Command::RawSnapshot);
                }
                ui.label("Packets at their fixed offsets; gaps (after a short packet, or a failed packet) are never signal.");
            });
            if let Some(raw) = self.raw {
                raw_view(ui, raw);
            }
        });
    }
}

fn ab_chart(ui: &mut egui::Ui, results: &[AbResult]) {
    ui.horizontal(|ui| {
        for (title, value, unit) in [
            ("CPU per MiB", (|r: &AbResult| r.cpu_us_per_mib) as fn(&AbResult) -> f64, "µs/MiB"),
            ("syscalls per second", |r: &AbResult| r.syscalls_per_s, "1/s"),
        ] {
            ui.vertical(|ui| {
                ui.label(format!("{title} ({unit})"));
                let mut zc = Vec::new();
                let mut cp = Vec::new();
                for (i, r) in results.iter().enumerate() {
                    let bar = Bar::new(i as f64, value(r)).name(format!("round {} {}", r.round + 1, r.path));
                    match r.path {
                        TransferPath::ZeroCopy => zc.push(bar),
                        TransferPath::Copy => cp.push(bar),
                    }
                }
                Plot::new(title)
                    .width(ui.available_width().min(420.0))
                    .height(180.0)
                    .legend(egui_plot::Legend::default())
                    .allow_drag(false)
                    .allow_zoom(false)
                    .allow_scroll(false)
                    .show(ui, |pui| {
                        pui.bar_chart(
                            BarChart::new("zero-copy", zc).color(egui::Color32::from_rgb(60, 160, 90)),
                        );
                        pui.bar_chart(BarChart::new("copy", cp).color(egui::Color32::from_rgb(210, 110, 50)));
                    });
            });
        }
    });
    egui::Grid::new("ab_table").striped(true).show(ui, |ui| {
        for h in ["round", "mode", "CPU µs/MiB", "syscalls/s", "kernel copied", "reap latency"] {
            ui.strong(h);
        }
        ui.end_row();
        for r in results {
            ui.label(format!("{}", r.round + 1));
            ui.label(r.path.to_string());
            ui.monospace(format!("{:.0}", r.cpu_us_per_mib));
            ui.monospace(format!("{:.0}", r.syscalls_per_s));
            ui.monospace(human_bytes(r.copied_bytes));
            ui.monospace(format!("{:.0} µs", r.latency_us));
            ui.end_row();
        }
    });
}

/// Bytes as cells, 64 to a row: valid bytes in the signal colour, gaps hatched apart,
/// packet starts marked with a bar.
fn raw_view(ui: &mut egui::Ui, raw: &RawSnapshot) {
    let path = raw.path.map_or("?".to_string(), |p| p.to_string());
    ui.label(format!(
        "URB {} ({path}): {} bytes in {} packets, {} gap bytes. Gaps hold {}.",
        raw.urb_id,
        raw.buffer.len(),
        raw.packets.len(),
        raw.gap_bytes(),
        match raw.path {
            Some(TransferPath::Copy) =>
                "zeros (the kernel zeroed its bounce buffer) or what a failed packet left",
            _ => "stale bytes from an earlier transfer (the DMA pages are reused as they are)",
        }
    ));
    let cols = 64usize;
    let cell = 9.0f32;
    let rows = raw.buffer.len().div_ceil(cols).min(64);
    let (rect, _) =
        ui.allocate_exact_size(egui::vec2(cols as f32 * cell, rows as f32 * cell), egui::Sense::hover());
    let p = ui.painter_at(rect);
    for (i, &b) in raw.buffer.iter().enumerate().take(rows * cols) {
        let (r, c) = (i / cols, i % cols);
        let min = rect.min + egui::vec2(c as f32 * cell, r as f32 * cell);
        let cr = egui::Rect::from_min_size(min, egui::vec2(cell - 1.0, cell - 1.0));
        let v = b as f32 / 255.0;
        let color = if raw.is_gap(i) {
            egui::Color32::from_rgb((120.0 + 135.0 * v) as u8, 40, 40)
        } else {
            egui::Color32::from_rgb(30, (60.0 + 160.0 * v) as u8, (90.0 + 120.0 * v) as u8)
        };
        p.rect_filled(cr, 0.0, color);
    }
    for pk in &raw.packets {
        let i = pk.offset;
        if i >= rows * cols {
            continue;
        }
        let (r, c) = (i / cols, i % cols);
        let x = rect.min.x + c as f32 * cell;
        let y = rect.min.y + r as f32 * cell;
        p.line_segment(
            [egui::pos2(x, y - 1.0), egui::pos2(x, y + cell)],
            egui::Stroke::new(2.0, ui.visuals().strong_text_color()),
        );
    }
    ui.horizontal(|ui| {
        for (name, color) in
            [("signal", egui::Color32::from_rgb(30, 200, 200)), ("gap", egui::Color32::from_rgb(220, 40, 40))]
        {
            let (r, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
            ui.painter().rect_filled(r, 2.0, color);
            ui.label(name);
        }
        ui.label("| packet start");
    });
    egui::CollapsingHeader::new("packet descriptors").show(ui, |ui| {
        egui::Grid::new("pkts").striped(true).show(ui, |ui| {
            for h in ["#", "offset", "requested", "actual", "status"] {
                ui.strong(h);
            }
            ui.end_row();
            for (i, pk) in raw.packets.iter().enumerate() {
                ui.monospace(i.to_string());
                ui.monospace(pk.offset.to_string());
                ui.monospace(pk.requested.to_string());
                ui.monospace(pk.actual.to_string());
                ui.monospace(if pk.status == 0 { "ok".into() } else { format!("errno {}", -pk.status) });
                ui.end_row();
            }
        });
    });
}
