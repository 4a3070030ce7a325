//! The scope panel: per-channel traces drawn from the min/max pyramid (at most two points
//! per pixel column), timebase and amplitude, the edge trigger (auto/normal/single,
//! position), pause with drag/zoom over the whole history, cursors (dt, dV, 1/dt), and XY.

use eframe::egui;
use std::time::{Duration, Instant};

use egui_plot::{HLine, Line, Plot, PlotBounds, PlotPoint, PlotPoints, Points, VLine};

use crate::dsp::decimate::{MinMax, MinMaxPyramid};
use crate::dsp::trigger::{Edge, TriggerMode, TriggerSettings};

use super::{channel_color, Command, History, Panel, PanelCx, Settings};

/// How long auto mode waits for a trigger before it free-runs.
const AUTO_TIMEOUT: Duration = Duration::from_millis(200);

/// Persisted scope settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ScopeSettings {
    /// Seconds across the screen.
    pub timebase_s: f64,
    /// Half the vertical range (1.0: full scale).
    pub amplitude: f32,
    pub trigger: TriggerSettings,
    pub xy: bool,
    pub cursors: bool,
    /// Hidden channels (by index).
    pub hidden: Vec<usize>,
}

impl Default for ScopeSettings {
    fn default() -> Self {
        ScopeSettings {
            timebase_s: 0.005,
            amplitude: 1.0,
            trigger: TriggerSettings::default(),
            xy: false,
            cursors: false,
            hidden: Vec::new(),
        }
    }
}

/// Timebases offered (seconds across the screen).
pub const TIMEBASES: [f64; 16] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 60.0, 600.0];

/// Summarises absolute samples `[a, b)` of `pyr` as plot points, x in seconds from
/// `origin` (an absolute index): every sample when there are fewer than two per column,
/// else one (min, max) pair per column. Reuses `out` and `buckets`: no allocation once warm.
#[allow(clippy::too_many_arguments)]
pub fn decimated_points(
    pyr: &MinMaxPyramid,
    a: usize,
    b: usize,
    columns: usize,
    origin: f64,
    rate: f64,
    buckets: &mut Vec<MinMax>,
    out: &mut Vec<PlotPoint>,
) {
    out.clear();
    let (a, b) = (a.max(pyr.oldest()), b.min(pyr.total()));
    if a >= b || columns == 0 {
        return;
    }
    if b - a <= 2 * columns {
        for i in a..b {
            if let Some(y) = pyr.get(i).filter(|y| !y.is_nan()) {
                out.push(PlotPoint::new((i as f64 - origin) / rate, y));
            }
        }
        return;
    }
    pyr.buckets(a, b, columns, buckets);
    let span = (b - a) as f64 / columns as f64;
    for (j, m) in buckets.iter().enumerate() {
        if m.is_empty() {
            continue;
        }
        let x = (a as f64 + (j as f64 + 0.5) * span - origin) / rate;
        out.push(PlotPoint::new(x, m.min));
        out.push(PlotPoint::new(x, m.max));
    }
}

/// The scope's runtime state.
#[derive(Default)]
pub struct ScopePanel {
    /// Paused: the plot owns its bounds (drag, zoom, scroll back); x is relative to this.
    pub paused_origin: Option<usize>,
    /// The window shown last frame (absolute frames) and its origin.
    pub shown: Option<(usize, usize, usize)>,
    last_trigger: Option<(usize, Instant)>,
    pub triggers_seen: u64,
    /// Cursor A (primary click) and B (secondary click), in plot coordinates.
    pub cursors: [Option<PlotPoint>; 2],
    set_bounds: bool,
    /// The x bounds (s from the origin) the plot showed last frame while paused.
    paused_bounds: Option<(f64, f64)>,
    buckets: Vec<MinMax>,
    /// The plot points of the last frame, per channel (in XY mode, the pairs in the first).
    pub points: Vec<Vec<PlotPoint>>,
    scratch: Vec<f32>,
}

impl ScopePanel {
    pub fn pause(&mut self) {
        if self.paused_origin.is_none() {
            self.paused_origin = Some(self.shown.map_or(0, |s| s.2));
            self.set_bounds = true;
        }
    }

    pub fn resume(&mut self) {
        self.paused_origin = None;
    }

    pub fn is_paused(&self) -> bool {
        self.paused_origin.is_some()
    }

    /// Picks the window to show live: at the last trigger, or free-running.
    fn live_window(
        &mut self,
        s: &ScopeSettings,
        h: &History,
        single_armed: bool,
        cmds: &mut Vec<Command>,
    ) -> Option<(usize, usize, usize)> {
        let total = h.total();
        let width = ((s.timebase_s * f64::from(h.rate)) as usize).max(16);
        let free = (total.saturating_sub(width), total.max(width), total);
        let t = &s.trigger;
        if !t.enabled && !single_armed {
            return Some(free);
        }
        let pyr = h.channels.get(t.channel).or(h.channels.first())?;
        let post = ((1.0 - t.position.clamp(0.0, 1.0)) as f64 * width as f64) as usize;
        let end = total.saturating_sub(post);
        let start = end.saturating_sub(width.max(h.rate as usize / 20));
        let first = pyr.copy_range(start, end, &mut self.scratch);
        if let Some(i) = t.trigger.find_last(&self.scratch, 1, 0) {
            let at = first + i;
            if self.last_trigger.is_none_or(|(prev, _)| prev != at) {
                self.triggers_seen += 1;
                if single_armed || t.mode == TriggerMode::Single {
                    cmds.push(Command::SingleFired);
                }
            }
            self.last_trigger = Some((at, Instant::now()));
        }
        let mode = if single_armed { TriggerMode::Single } else { t.mode };
        match (self.last_trigger, mode) {
            (Some((at, when)), TriggerMode::Auto) if when.elapsed() < AUTO_TIMEOUT => {
                let (a, b) = t.window_for(at, width);
                Some((a, b, at))
            }
            (_, TriggerMode::Auto) => Some(free),
            (Some((at, _)), _) => {
                let (a, b) = t.window_for(at, width);
                Some((a, b, at))
            }
            (None, _) => None,
        }
    }

    fn show(
        &mut self,
        ui: &mut egui::Ui,
        s: &mut ScopeSettings,
        h: &History,
        single_armed: bool,
        cmds: &mut Vec<Command>,
    ) {
        self.controls(ui, s, h, single_armed, cmds);
        let columns = (ui.available_width() * ui.ctx().pixels_per_point()).max(16.0) as usize;
        let rate = f64::from(h.rate.max(1));
        let window = match self.paused_origin {
            Some(o) => self.shown.map(|(a, b, _)| (a, b, o)),
            None => self.live_window(s, h, single_armed, cmds),
        };
        if self.paused_origin.is_none() {
            self.shown = window;
        }
        self.points.resize_with(h.channels.len(), Vec::new);

        if s.xy && h.channels.len() >= 2 {
            self.xy_plot(ui, s, h, window);
            return;
        }
        let amp = f64::from(s.amplitude);
        let paused = self.paused_origin.is_some();
        let set_bounds = std::mem::take(&mut self.set_bounds);
        let mut plot = Plot::new("scope")
            .x_axis_label("time (s)")
            .y_axis_label("amplitude (full scale = 1)")
            .legend(egui_plot::Legend::default())
            .allow_drag(paused)
            .allow_zoom(paused)
            .allow_scroll(paused)
            .allow_boxed_zoom(paused)
            .allow_double_click_reset(false)
            .label_formatter(|name, p| scope_hover_text(name, p.x, p.y));
        if !paused {
            plot = plot.auto_bounds(egui::Vec2b::FALSE);
        }
        let hidden = &s.hidden;
        let cursors_on = s.cursors;
        // Points are computed before the plot borrows them; when paused, over the bounds the
        // user dragged or zoomed to last frame.
        let range = window.map(|(a, b, origin)| match self.paused_bounds {
            Some((x0, x1)) if paused && !set_bounds => {
                let lo = (origin as f64 + x0 * rate).max(0.0) as usize;
                let hi = (origin as f64 + x1 * rate).max(0.0) as usize + 1;
                (lo, hi, origin)
            }
            _ => (a, b, origin),
        });
        for (c, pyr) in h.channels.iter().enumerate() {
            self.points[c].clear();
            if let Some((a, b, origin)) = range {
                if !hidden.contains(&c) {
                    decimated_points(
                        pyr,
                        a,
                        b,
                        columns,
                        origin as f64,
                        rate,
                        &mut self.buckets,
                        &mut self.points[c],
                    );
                }
            }
        }
        if paused {
            if let Some(r) = range {
                self.shown = Some(r);
            }
        }
        let points = &self.points;
        let cursors = self.cursors;
        let trigger = s.trigger;
        let resp = plot.show(ui, |pui| {
            let Some((a, b, origin)) = range else {
                return;
            };
            if !paused || set_bounds {
                pui.set_plot_bounds(PlotBounds::from_min_max(
                    [(a as f64 - origin as f64) / rate, -amp],
                    [(b as f64 - origin as f64) / rate, amp],
                ));
            }
            for (c, pts) in points.iter().enumerate() {
                if hidden.contains(&c) {
                    continue;
                }
                pui.line(
                    Line::new(format!("ch {}", c + 1), PlotPoints::Borrowed(pts))
                        .color(channel_color(c))
                        .width(1.0),
                );
            }
            let orange = egui::Color32::from_rgb(230, 160, 0);
            if trigger.enabled && !paused {
                pui.hline(
                    HLine::new("trigger level", f64::from(trigger.trigger.level))
                        .color(orange)
                        .style(egui_plot::LineStyle::dashed_loose()),
                );
                pui.vline(
                    VLine::new("trigger", 0.0).color(orange).style(egui_plot::LineStyle::dashed_loose()),
                );
            }
            if cursors_on {
                for (k, c) in cursors.iter().enumerate() {
                    if let Some(p) = c {
                        let name = if k == 0 { "cursor A" } else { "cursor B" };
                        let col = if k == 0 {
                            egui::Color32::from_rgb(200, 80, 200)
                        } else {
                            egui::Color32::from_rgb(80, 200, 200)
                        };
                        pui.vline(VLine::new(name, p.x).color(col));
                        pui.hline(HLine::new(name, p.y).color(col));
                    }
                }
            }
        });
        if paused {
            let b = resp.transform.bounds();
            self.paused_bounds = Some((b.min()[0], b.max()[0]));
        } else {
            self.paused_bounds = None;
        }
        if cursors_on {
            if let Some(p) = resp.response.hover_pos() {
                let pp = resp.transform.value_from_position(p);
                if resp.response.clicked() {
                    self.cursors[0] = Some(pp);
                } else if resp.response.secondary_clicked() {
                    self.cursors[1] = Some(pp);
                }
            }
        }
    }

    fn xy_plot(
        &mut self,
        ui: &mut egui::Ui,
        s: &ScopeSettings,
        h: &History,
        window: Option<(usize, usize, usize)>,
    ) {
        let amp = f64::from(s.amplitude);
        let Some((a, b, _)) = window else { return };
        let pts = &mut self.points[0];
        pts.clear();
        let (x, y) = (&h.channels[0], &h.channels[1]);
        let step = ((b - a) / 8192).max(1);
        let mut i = a.max(x.oldest());
        while i < b.min(x.total()) {
            if let (Some(xv), Some(yv)) = (x.get(i), y.get(i)) {
                pts.push(PlotPoint::new(xv, yv));
            }
            i += step;
        }
        Plot::new("xy")
            .data_aspect(1.0)
            .x_axis_label("ch 1")
            .y_axis_label("ch 2")
            .auto_bounds(egui::Vec2b::FALSE)
            .show(ui, |pui| {
                pui.set_plot_bounds(PlotBounds::from_min_max([-amp, -amp], [amp, amp]));
                pui.points(
                    Points::new("XY", PlotPoints::Borrowed(&self.points[0]))
                        .radius(1.0)
                        .color(channel_color(0)),
                );
            });
    }

    fn controls(
        &mut self,
        ui: &mut egui::Ui,
        s: &mut ScopeSettings,
        h: &History,
        single_armed: bool,
        cmds: &mut Vec<Command>,
    ) {
        ui.horizontal_wrapped(|ui| {
            egui::ComboBox::from_id_salt("timebase")
                .selected_text(format!("{} / screen", fmt_seconds(s.timebase_s)))
                .show_ui(ui, |ui| {
                    for t in TIMEBASES {
                        ui.selectable_value(&mut s.timebase_s, t, fmt_seconds(t));
                    }
                });
            ui.label("±");
            ui.add(egui::DragValue::new(&mut s.amplitude).range(0.001..=2.0).speed(0.01).max_decimals(3))
                .on_hover_text("Vertical half-range (1 = full scale)");
            ui.separator();
            ui.checkbox(&mut s.trigger.enabled, "Trigger");
            ui.add_enabled_ui(s.trigger.enabled, |ui| {
                egui::ComboBox::from_id_salt("edge")
                    .selected_text(match s.trigger.trigger.edge {
                        Edge::Rising => "↗ rising",
                        Edge::Falling => "↘ falling",
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut s.trigger.trigger.edge, Edge::Rising, "↗ rising");
                        ui.selectable_value(&mut s.trigger.trigger.edge, Edge::Falling, "↘ falling");
                    });
                egui::ComboBox::from_id_salt("trigmode")
                    .selected_text(format!("{:?}", s.trigger.mode))
                    .show_ui(ui, |ui| {
                        for m in [TriggerMode::Auto, TriggerMode::Normal, TriggerMode::Single] {
                            ui.selectable_value(&mut s.trigger.mode, m, format!("{m:?}"));
                        }
                    });
                ui.label("level");
                ui.add(
                    egui::DragValue::new(&mut s.trigger.trigger.level)
                        .range(-1.0..=1.0)
                        .speed(0.005)
                        .max_decimals(3),
                );
                ui.label("hyst");
                ui.add(
                    egui::DragValue::new(&mut s.trigger.trigger.hysteresis)
                        .range(0.0..=0.5)
                        .speed(0.002)
                        .max_decimals(3),
                );
                ui.label("pos");
                ui.add(
                    egui::DragValue::new(&mut s.trigger.position)
                        .range(0.0..=1.0)
                        .speed(0.01)
                        .max_decimals(2),
                );
                let n = h.channels.len().max(1);
                egui::ComboBox::from_id_salt("trigch")
                    .selected_text(format!("ch {}", s.trigger.channel + 1))
                    .show_ui(ui, |ui| {
                        for c in 0..n {
                            ui.selectable_value(&mut s.trigger.channel, c, format!("ch {}", c + 1));
                        }
                    });
            });
            if single_armed {
                ui.colored_label(egui::Color32::from_rgb(230, 160, 0), "armed: waiting for a trigger");
            }
            ui.separator();
            let paused = self.is_paused();
            if ui
                .selectable_label(paused, "⏸ Pause")
                .on_hover_text("Freeze the view; drag and zoom over the history (P)")
                .clicked()
            {
                cmds.push(Command::TogglePause);
            }
            ui.checkbox(&mut s.xy, "XY");
            ui.checkbox(&mut s.cursors, "Cursors");
            if ui
                .add_enabled(self.shown.is_some(), egui::Button::new("CSV"))
                .on_hover_text("Save the samples in view as CSV (time, one column per channel)")
                .clicked()
            {
                cmds.push(Command::ExportCsv);
            }
            for c in 0..h.channels.len() {
                let mut on = !s.hidden.contains(&c);
                if ui
                    .checkbox(&mut on, egui::RichText::new(format!("ch {}", c + 1)).color(channel_color(c)))
                    .changed()
                {
                    if on {
                        s.hidden.retain(|&x| x != c);
                    } else {
                        s.hidden.push(c);
                    }
                }
            }
        });
        if s.cursors {
            ui.horizontal(|ui| {
                ui.label("Click: cursor A, right-click: cursor B.");
                if let [Some(a), Some(b)] = self.cursors {
                    let dt = b.x - a.x;
                    let inv = if dt.abs() > 0.0 { format!("{:.3} Hz", 1.0 / dt.abs()) } else { "-".into() };
                    ui.monospace(format!("dt = {}   dV = {:.4}   1/dt = {inv}", fmt_seconds(dt), b.y - a.y));
                }
                if ui.small_button("clear").clicked() {
                    self.cursors = [None, None];
                }
            });
        }
    }
}

/// "5 ms", "200 µs", "2 s".
impl Panel for ScopePanel {
    fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings, cx: &mut PanelCx<'_>) {
        self.show(ui, &mut settings.scope, cx.history, cx.single_armed, cx.commands);
    }
}

/// Saves frames `[a, b)` of `h` (clipped to what it holds) as CSV in `dir`; returns the file.
pub fn export_csv(
    h: &History,
    (a, b): (usize, usize),
    dir: &std::path::Path,
) -> Result<std::path::PathBuf, String> {
    let n = h.channels.len();
    let (a, b) = (a.max(h.channels.first().map_or(0, |p| p.oldest())), b.min(h.total()));
    if n == 0 || b <= a {
        return Err("nothing in view to save".into());
    }
    let mut lanes = vec![Vec::new(); n];
    for (c, lane) in lanes.iter_mut().enumerate() {
        h.channels[c].copy_range(a, b, lane);
    }
    let frames = lanes.iter().map(Vec::len).min().unwrap_or(0);
    let mut interleaved = Vec::with_capacity(frames * n);
    for i in 0..frames {
        interleaved.extend(lanes.iter().map(|l| l[i]));
    }
    let millis =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let path = dir.join(format!("isoscope-{millis}.csv"));
    std::fs::File::create(&path)
        .and_then(|f| crate::record::write_csv(std::io::BufWriter::new(f), &interleaved, n, h.rate, a as u64))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// What the pointer's spot on the scope says: the time with its unit, and the amplitude.
fn scope_hover_text(name: &str, t: f64, v: f64) -> String {
    let who = if name.is_empty() { String::new() } else { format!("{name}: ") };
    format!("{who}t = {}, {v:.4} FS", fmt_seconds(t))
}

pub fn fmt_seconds(s: f64) -> String {
    let a = s.abs();
    if a >= 1.0 {
        format!("{s:.3} s").replace(".000 s", " s")
    } else if a >= 1e-3 {
        format!("{:.3} ms", s * 1e3).replace(".000 ms", " ms")
    } else {
        format!("{:.1} µs", s * 1e6).replace(".0 µs", " µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_hover_gives_the_time_with_its_unit() {
        assert_eq!(scope_hover_text("ch 1", 0.0125, 0.5), "ch 1: t = 12.500 ms, 0.5000 FS");
        assert_eq!(scope_hover_text("", 2.0, -1.0), "t = 2 s, -1.0000 FS");
    }

    #[test]
    fn decimated_points_hold_the_envelope_and_are_bounded_by_columns() {
        let mut p = MinMaxPyramid::new(1 << 20);
        let xs: Vec<f32> = (0..500_000).map(|i| ((i as f32) * 0.01).sin()).collect();
        p.push_slice(&xs);
        let (mut b, mut out) = (Vec::new(), Vec::new());
        decimated_points(&p, 0, 500_000, 1000, 0.0, 48_000.0, &mut b, &mut out);
        assert_eq!(out.len(), 2000);
        let top = out.iter().map(|q| q.y).fold(f64::MIN, f64::max);
        assert!((top - 1.0).abs() < 1e-3);
        // Few samples: every sample, in order, at its own time.
        decimated_points(&p, 100, 150, 1000, 100.0, 1.0, &mut b, &mut out);
        assert_eq!(out.len(), 50);
        assert_eq!((out[0].x, out[0].y), (0.0, f64::from(xs[100])));
        assert_eq!(fmt_seconds(0.005), "5 ms");
        assert_eq!(fmt_seconds(2.0), "2 s");
    }
}
