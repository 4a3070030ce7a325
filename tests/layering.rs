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

/// Library files, except the one that renders remedies for the command line.
fn library_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    sources(&root)
        .into_iter()
        .filter(|(p, _)| {
            !(p.contains("/src/cli/") || p.ends_with("/src/main.rs") || p.ends_with("/src/fix.rs"))
        })
        .collect()
}

/// The lines of `text` outside `#[cfg(test)]` modules and `tests.rs` files, without comments.
fn shipped_code(path: &str, text: &str) -> Vec<(usize, String)> {
    if path.ends_with("/tests.rs") {
        return Vec::new();
    }
    let end = text.find("#[cfg(test)]\nmod ").unwrap_or(text.len());
    text[..end]
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(n, l)| (n + 1, l.to_string()))
        .collect()
}

/// Flags that are cargo's, not isoscope's (the build hint for a missing sound host).
const CARGO_FLAGS: [&str; 2] = ["--release", "--features"];

#[test]
fn library_text_names_no_command_line_flag() {
    // Remedies are `fix::Fix` kinds that each front end says in its own words.
    for (path, text) in library_sources() {
        for (n, line) in shipped_code(&path, &text) {
            let Some(quoted) = line.find('"').map(|i| &line[i..]) else { continue };
            let mut rest = quoted;
            while let Some(i) = rest.find("--") {
                let flag: String =
                    rest[i..].chars().take_while(|c| *c == '-' || c.is_ascii_lowercase()).collect();
                if flag.len() > 2 && !CARGO_FLAGS.contains(&flag.as_str()) {
                    panic!("{path}:{n}: {flag} in library text (give the error a fix::Fix instead): {line}");
                }
                rest = &rest[i + 2..];
            }
        }
    }
}

#[test]
fn library_errors_say_each_cause_once() {
    // thiserror makes a field named `source`, or a `#[from]`, the error's `source()`: its
    // message must not print it too (the command line prints the chain).
    for (path, text) in library_sources() {
        let lines = shipped_code(&path, &text);
        for (i, (n, line)) in lines.iter().enumerate() {
            if line.contains("#[error(") {
                let attr: String = lines[i..].iter().take(6).map(|(_, l)| l.as_str()).collect();
                let attr = &attr[..attr.find(")]").unwrap_or(attr.len())];
                assert!(!attr.contains("{source"), "{path}:{n}: prints its source: {line}");
            }
            if line.contains("#[from]") || line.contains("#[source]") {
                let above = if i > 0 { lines[i - 1].1.as_str() } else { "" };
                assert!(
                    above.contains("#[error(transparent)]") || line.contains("#[error(transparent)]"),
                    "{path}:{n}: a source whose message is not transparent (say it, or return it, not both): {line}"
                );
            }
        }
    }
}
