//! The data path goes one way (DESIGN.md): `usb` and `dma` know nothing of the engine or
//! anything above it, and the session knows nothing of the window. Checked on the sources,
//! so a stray `use` fails here, not in review.

use std::path::Path;

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
        }
    }
    out
}

fn assert_never_names(dir: &str, forbidden: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let files = sources(&root);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in forbidden {
                assert!(!code.contains(f), "{path}:{}: names {f}: {line}", n + 1);
            }
        }
    }
}

#[test]
fn usb_and_dma_never_reach_up_into_the_engine_or_the_front_ends() {
    let above = ["crate::capture", "crate::session", "crate::ui", "crate::app", "crate::audio"];
    assert_never_names("usb", &above);
    assert_never_names("dma", &above);
}

#[test]
fn the_session_has_no_window_in_it() {
    assert_never_names("session", &["egui", "eframe", "crate::ui", "crate::app"]);
}
