//! Copy vs zero-copy: live figures for the running mode (engine CPU per MiB, syscalls/s,
//! bytes the kernel copied, reap latency), the A/B run and its chart, and the raw buffer
//! of one URB with packet boundaries and gaps marked.

use eframe::egui;
use egui_plot::{Bar, BarChart, Plot};

use crate::capture::{ModeRequest, RawSnapshot, StatsSnapshot};
use crate::dma::{human_bytes, TransferPath};

use crate::session::ab::{summary, AbResult, AbSettings, AbState, AbVerdict};

use super::{Command, Panel, PanelCx, Settings};

/// The copy vs zero-copy tab.
#[derive(Default)]
pub struct ComparePanel {
    ab_text: AbText,
}

/// What the A/B chart and summary say, made once per set of results rather than every frame.
#[derive(Default)]
struct AbText {
    /// The results it was made from.
    results: Vec<AbResult>,
    /// Each phase's bar label ("r2 copy").
    labels: Vec<String>,
    /// Each figure's sentence, and whether it states a clear difference.
    statements: Vec<(String, bool)>,
}

impl AbText {
    fn update(&mut self, results: &[AbResult]) -> &AbText {
        if self.results != results {
            self.results = results.to_vec();
            self.labels = phase_labels(results);
            self.statements = summary(results)
                .iter()
                .map(|f| (f.statement(), matches!(f.verdict(), AbVerdict::CopyHigher | AbVerdict::CopyLower)))
                .collect();
        }
        self
    }
}

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
            ab_text: self.ab_text.update(&v.ab.results),
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
    ab_text: &'a AbText,
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
                ab_chart(ui, &self.ab.results, self.ab_text);
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

/// The A/B run's phases as bars (labelled by round and mode), each figure's medians, ratio
/// and spread in a sentence, and the table of every phase.
fn ab_chart(ui: &mut egui::Ui, results: &[AbResult], text: &AbText) {
    let labels = &text.labels;
    ui.horizontal_wrapped(|ui| {
        type Get = fn(&AbResult) -> f64;
        let charts: [(&str, Get); 3] = [
            ("engine CPU per MiB (µs)", |r| r.cpu_us_per_mib),
            ("syscalls per second", |r| r.syscalls_per_s),
            ("bytes the kernel copied (KiB)", |r| r.copied_bytes as f64 / 1024.0),
        ];
        for (title, value) in charts {
            ui.vertical(|ui| {
                ui.label(title);
                let mut zc = Vec::new();
                let mut cp = Vec::new();
                for (i, r) in results.iter().enumerate() {
                    let bar = Bar::new(i as f64, value(r)).width(0.7).name(&labels[i]);
                    match r.path {
                        TransferPath::ZeroCopy => zc.push(bar),
                        TransferPath::Copy => cp.push(bar),
                    }
                }
                Plot::new(title)
                    .width(ui.available_width().clamp(200.0, 380.0))
                    .height(170.0)
                    .legend(egui_plot::Legend::default())
                    .allow_drag(false)
                    .allow_zoom(false)
                    .allow_scroll(false)
                    .x_grid_spacer(egui_plot::uniform_grid_spacer(|_| [1.0, 1.0, 1.0]))
                    .x_axis_formatter(move |mark, _| {
                        let i = mark.value.round();
                        if (mark.value - i).abs() > 1e-6 || i < 0.0 {
                            return String::new();
                        }
                        labels.get(i as usize).cloned().unwrap_or_default()
                    })
                    .show(ui, |pui| {
                        pui.bar_chart(
                            BarChart::new("zero-copy", zc).color(egui::Color32::from_rgb(60, 160, 90)),
                        );
                        pui.bar_chart(BarChart::new("copy", cp).color(egui::Color32::from_rgb(210, 110, 50)));
                    });
            });
        }
    });
    if !text.statements.is_empty() {
        ui.strong("Summary (medians over the rounds)");
        for (statement, clear) in &text.statements {
            let colour =
                if *clear { ui.visuals().strong_text_color() } else { ui.visuals().weak_text_color() };
            ui.colored_label(colour, statement);
        }
    }
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

/// Byte `i` of the URB and the 16 around it, in hex, with its packet.
fn hex_tooltip(ui: &mut egui::Ui, raw: &RawSnapshot, i: usize) {
    let b = raw.buffer[i];
    let what = if raw.is_gap(i) { "gap (never read as signal)" } else { "signal" };
    ui.monospace(format!("byte {i} (0x{i:04x}) = 0x{b:02x}: {what}"));
    if let Some(k) = raw.packet_at(i) {
        let pk = &raw.packets[k];
        let status = if pk.status == 0 { "ok".to_string() } else { format!("errno {}", -pk.status) };
        ui.monospace(format!("packet {k}: asked {} bytes, got {}, {status}", pk.requested, pk.actual));
    }
    let start = i & !15;
    let end = (start + 16).min(raw.buffer.len());
    let hex: Vec<String> = (start..end)
        .map(|j| if j == i { format!("[{:02x}]", raw.buffer[j]) } else { format!("{:02x}", raw.buffer[j]) })
        .collect();
    ui.monospace(format!("{start:04x}: {}", hex.join(" ")));
}

/// What the bars' axis says under each phase: its round and mode ("r2 copy").
fn phase_labels(results: &[AbResult]) -> Vec<String> {
    results
        .iter()
        .map(|r| {
            let mode = if r.path == TransferPath::ZeroCopy { "zero-copy" } else { "copy" };
            format!("r{} {mode}", r.round + 1)
        })
        .collect()
}

/// The colours of the raw view: signal by value (teal), gap bytes holding 0 (dark red) and
/// gap bytes holding anything else (stale data: orange to yellow by value).
fn byte_colour(b: u8, gap: bool) -> egui::Color32 {
    let v = f32::from(b) / 255.0;
    match (gap, b) {
        (false, _) => egui::Color32::from_rgb(30, (60.0 + 160.0 * v) as u8, (90.0 + 120.0 * v) as u8),
        (true, 0) => egui::Color32::from_rgb(80, 24, 24),
        (true, _) => egui::Color32::from_rgb(235, (90.0 + 150.0 * v) as u8, 30),
    }
}

/// What the raw view's caption says of the gaps: counted, zero against non-zero.
fn gap_caption(raw: &RawSnapshot) -> String {
    let (zero, stale) = raw.gap_census();
    format!("gap bytes: {zero} zero, {stale} non-zero")
}

/// Bytes as cells, 64 to a row, coloured by value: signal teal, gaps that hold 0 dark red,
/// gaps that hold stale bytes orange; packet starts marked with a bar; a hex view of the
/// row under the pointer.
fn raw_view(ui: &mut egui::Ui, raw: &RawSnapshot) {
    let path = raw.path.map_or("?".to_string(), |p| p.to_string());
    ui.label(format!(
        "URB {} ({path}): {} bytes in {} packets; {}.",
        raw.urb_id,
        raw.buffer.len(),
        raw.packets.len(),
        gap_caption(raw)
    ));
    ui.small(match raw.path {
        Some(TransferPath::Copy) => {
            "Copy mode: the kernel zeroes its bounce buffer at submit, so a gap reads 0 (or what a failed \
             packet left)."
        }
        _ => {
            "Zero-copy: the DMA pages are reused as they are, so a gap keeps stale bytes of an earlier transfer. \
             isoscope never reads a gap as signal."
        }
    });
    let cols = 64usize;
    let cell = 9.0f32;
    let rows = raw.buffer.len().div_ceil(cols).min(64);
    let (rect, response) =
        ui.allocate_exact_size(egui::vec2(cols as f32 * cell, rows as f32 * cell), egui::Sense::hover());
    let p = ui.painter_at(rect);
    for (i, &b) in raw.buffer.iter().enumerate().take(rows * cols) {
        let (r, c) = (i / cols, i % cols);
        let min = rect.min + egui::vec2(c as f32 * cell, r as f32 * cell);
        let cr = egui::Rect::from_min_size(min, egui::vec2(cell - 1.0, cell - 1.0));
        p.rect_filled(cr, 0.0, byte_colour(b, raw.is_gap(i)));
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
    if let Some(pos) = response.hover_pos() {
        let (c, r) = (((pos.x - rect.min.x) / cell) as usize, ((pos.y - rect.min.y) / cell) as usize);
        let i = r * cols + c.min(cols - 1);
        if i < raw.buffer.len() {
            response.on_hover_ui_at_pointer(|ui| hex_tooltip(ui, raw, i));
        }
    }
    ui.horizontal(|ui| {
        for (name, color) in [
            ("signal", byte_colour(200, false)),
            ("gap holding 0", byte_colour(0, true)),
            ("gap holding stale bytes", byte_colour(200, true)),
        ] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_labelled_by_round_and_mode() {
        let r = |round, path| AbResult {
            round,
            path,
            cpu_us_per_mib: 1.0,
            syscalls_per_s: 1.0,
            copied_bytes: 0,
            latency_us: 1.0,
            seconds: 1.0,
        };
        let rs = [r(0, TransferPath::ZeroCopy), r(0, TransferPath::Copy), r(1, TransferPath::ZeroCopy)];
        assert_eq!(phase_labels(&rs), ["r1 zero-copy", "r1 copy", "r2 zero-copy"]);
    }
}
