//! Plot preparation for 10 s of 192 kHz stereo drawn 1920 px wide: the min/max pyramid
//! (at most two points per pixel column) against handing egui_plot every sample, in the
//! same run. Each "frame" case runs a whole headless egui frame with the plot and
//! tessellates it, as the app's frame would.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use eframe::egui;
use egui_plot::{Line, Plot, PlotPoint, PlotPoints};
use isoscope::ui::scope::decimated_points;
use isoscope::ui::History;

const RATE: u32 = 192_000;
const SECONDS: usize = 10;
const COLUMNS: usize = 1920;

fn history() -> History {
    let mut h = History::new(RATE, 2, SECONDS as f64);
    let n = RATE as usize * SECONDS;
    let frames: Vec<f32> = (0..n)
        .flat_map(|i| {
            let t = i as f32 / RATE as f32;
            let s = (std::f32::consts::TAU * 997.0 * t).sin() * 0.5;
            [s, (std::f32::consts::TAU * 5003.0 * t).cos() * 0.3]
        })
        .collect();
    h.push_interleaved(&frames);
    h
}

fn prepare(h: &History, buckets: &mut Vec<isoscope::dsp::decimate::MinMax>, out: &mut [Vec<PlotPoint>]) {
    let total = h.total();
    for (c, pyr) in h.channels.iter().enumerate() {
        decimated_points(pyr, 0, total, COLUMNS, 0.0, f64::from(RATE), buckets, &mut out[c]);
    }
}

fn every_point(h: &History, out: &mut [Vec<PlotPoint>]) {
    let rate = f64::from(RATE);
    for (c, pyr) in h.channels.iter().enumerate() {
        out[c].clear();
        for i in pyr.oldest()..pyr.total() {
            out[c].push(PlotPoint::new(i as f64 / rate, f64::from(pyr.get(i).unwrap_or(0.0))));
        }
    }
}

/// One egui frame, 1920x1080, drawing `lines` in a plot, tessellated.
fn frame(ctx: &egui::Context, lines: &[Vec<PlotPoint>]) -> usize {
    let input = egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1920.0, 1080.0))),
        ..Default::default()
    };
    let out = ctx.run(input, |ctx| {
        egui::CentralPanel::default().frame(egui::Frame::NONE).show(ctx, |ui| {
            Plot::new("bench").show(ui, |pui| {
                for (c, pts) in lines.iter().enumerate() {
                    pui.line(Line::new(format!("ch {c}"), PlotPoints::Borrowed(pts)));
                }
            });
        });
    });
    ctx.tessellate(out.shapes, out.pixels_per_point).len()
}

fn bench(c: &mut Criterion) {
    let h = history();
    let mut buckets = Vec::new();
    let mut dec = vec![Vec::new(), Vec::new()];
    let mut all = vec![Vec::new(), Vec::new()];
    let ctx = egui::Context::default();
    let mut g = c.benchmark_group("plot_10s_192k_stereo_1920px");
    g.sample_size(10);
    g.bench_function("prepare_pyramid", |b| {
        b.iter(|| {
            prepare(&h, &mut buckets, &mut dec);
            black_box(dec[0].len() + dec[1].len())
        })
    });
    g.bench_function("prepare_every_point", |b| {
        b.iter(|| {
            every_point(&h, &mut all);
            black_box(all[0].len() + all[1].len())
        })
    });
    g.bench_function("frame_pyramid", |b| {
        b.iter(|| {
            prepare(&h, &mut buckets, &mut dec);
            black_box(frame(&ctx, &dec))
        })
    });
    g.bench_function("frame_every_point", |b| {
        b.iter(|| {
            every_point(&h, &mut all);
            black_box(frame(&ctx, &all))
        })
    });
    g.finish();

    // The whole app's frame (every panel of the scope tab, meters, spectrum analysis, status)
    // with a live simulated capture at 192 kHz stereo, tessellated, 1920x1080.
    let opts =
        isoscope::app::GuiOptions { device: Some("sim:sine:1000".into()), fresh: true, ..Default::default() };
    let settings = isoscope::app::Settings { rate: Some(RATE), history_s: 60.0, ..Default::default() };
    let mut app = isoscope::app::IsoscopeApp::new(settings, opts, None);
    let ctx = egui::Context::default();
    let ui_frame = |app: &mut isoscope::app::IsoscopeApp| {
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1920.0, 1080.0))),
            ..Default::default()
        };
        let out = ctx.run(input, |ctx| app.ui(ctx));
        ctx.tessellate(out.shapes, out.pixels_per_point).len()
    };
    // Two seconds of capture first, so the history and the trigger have data.
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(2) {
        ui_frame(&mut app);
        std::thread::sleep(std::time::Duration::from_millis(15));
    }
    assert!(app.running(), "the simulated capture runs: {:?}", app.view.error);
    let mut g = c.benchmark_group("app_frame_live_192k_stereo");
    g.sample_size(30);
    g.bench_function("scope_tab_1920x1080", |b| b.iter(|| black_box(ui_frame(&mut app))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
