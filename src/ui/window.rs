//! The native window: its icon and options, eframe's run loop, and screenshots saved as PNG.

use eframe::egui;
use std::path::{Path, PathBuf};

use crate::app::{GuiOptions, IsoscopeApp, ScreenshotOutcome};

/// Writes an egui screenshot as PNG.
pub fn save_png(image: &egui::ColorImage, path: &Path) -> Result<(), String> {
    let [w, h] = image.size;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    image::save_buffer(path, &bytes, w as u32, h as u32, image::ExtendedColorType::Rgba8)
        .map_err(|e| format!("cannot save the screenshot to {}: {e}", path.display()))
}

/// The window icon (assets/icon.png).
pub fn icon() -> Option<egui::IconData> {
    let img = image::load_from_memory(include_bytes!("../../assets/icon.png")).ok()?.into_rgba8();
    let (w, h) = img.dimensions();
    Some(egui::IconData { rgba: img.into_raw(), width: w, height: h })
}

/// Opens the window and runs until it closes. With a screenshot plan, returns where the
/// PNG was saved.
pub fn run(opts: GuiOptions) -> Result<Option<PathBuf>, String> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("isoscope")
        .with_app_id("isoscope")
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([800.0, 500.0]);
    if let Some(i) = icon() {
        viewport = viewport.with_icon(i);
    }
    let native = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Glow,
        persist_window: opts.screenshot.is_none(),
        ..Default::default()
    };
    let outcome = ScreenshotOutcome::default();
    let shared = outcome.clone();
    let shot = opts.screenshot.is_some();
    eframe::run_native(
        "isoscope",
        native,
        Box::new(move |cc| {
            let mut app = IsoscopeApp::from_creation(cc, opts);
            app.outcome = shared;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| {
        format!(
            "cannot open the window: {}. Run it in a desktop session (DISPLAY or WAYLAND_DISPLAY set), \
             or use the headless commands: isoscope capture, isoscope monitor (see isoscope --help)",
            e.to_string().trim_end_matches('.')
        )
    })?;
    if !shot {
        return Ok(None);
    }
    let r = outcome.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    match r {
        Some(Ok(p)) => Ok(Some(p)),
        Some(Err(e)) => Err(e),
        None => Err("the window closed before the screenshot was taken".into()),
    }
}
