//! What snd-usb-audio found: the capture alt settings and rates it lists in
//! `/proc/asound/cardN/streamM` (printed by the kernel's sound/usb/proc.c), for a device whose
//! interfaces it holds (so isoscope may not ask the clock itself). The card of a USB device
//! is the one whose `usbbus` file says "BBB/DDD".

use std::path::{Path, PathBuf};

use super::descriptors::Rates;

/// Where ALSA's proc files live.
pub const PROC_ASOUND: &str = "/proc/asound";

/// One capture alt setting as snd-usb-audio lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcAltset {
    pub interface: u8,
    pub alt: u8,
    pub rates: Rates,
}

/// The capture alt settings of a `streamM` file's text. The kernel prints a "Playback:"
/// and/or "Capture:" section; in each, per format, "  Interface N", "    Altset N", and
/// "    Rates: 44100, 48000" or "    Rates: 8000 - 96000 (continuous)". Lines it does not
/// know are skipped; an altset without a readable Rates line is left out.
pub fn parse_stream(text: &str) -> Vec<ProcAltset> {
    let mut out = Vec::new();
    let (mut capture, mut interface, mut alt) = (false, None, None);
    for line in text.lines() {
        let t = line.trim();
        if !line.starts_with(' ') && t.ends_with(':') {
            capture = t == "Capture:";
            (interface, alt) = (None, None);
            continue;
        }
        if !capture {
            continue;
        }
        if let Some(v) = t.strip_prefix("Interface ") {
            (interface, alt) = (v.trim().parse().ok(), None);
        } else if let Some(v) = t.strip_prefix("Altset ") {
            alt = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("Rates:") {
            if let (Some(interface), Some(alt), Some(rates)) = (interface, alt, parse_rates(v)) {
                out.push(ProcAltset { interface, alt, rates });
            }
        }
    }
    out
}

fn parse_rates(v: &str) -> Option<Rates> {
    let v = v.trim();
    if let Some(range) = v.strip_suffix("(continuous)") {
        let (min, max) = range.split_once('-')?;
        return Some(Rates::Continuous { min: min.trim().parse().ok()?, max: max.trim().parse().ok()? });
    }
    let rates: Option<Vec<u32>> = v.split(',').map(|r| r.trim().parse().ok()).collect();
    rates.filter(|r| !r.is_empty()).map(Rates::Discrete)
}

/// The entries of `dir` whose names start with `prefix`, sorted; none if it cannot be read.
fn entries_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)));
    v.sort();
    v
}

/// The card directory (`root/cardN`) of the USB device at `busnum`/`devnum`, if ALSA has one.
pub fn card_of(root: &Path, busnum: u8, devnum: u8) -> Option<PathBuf> {
    let want = format!("{busnum:03}/{devnum:03}");
    entries_named(root, "card")
        .into_iter()
        .find(|c| std::fs::read_to_string(c.join("usbbus")).is_ok_and(|b| b.trim() == want))
}

/// The rates snd-usb-audio lists for capture `interface`/`alt` of the card at `card`, and
/// the `streamM` file that says so.
pub fn capture_rates(card: &Path, interface: u8, alt: u8) -> Option<(Rates, PathBuf)> {
    entries_named(card, "stream").into_iter().find_map(|path| {
        let text = std::fs::read_to_string(&path).ok()?;
        let found = parse_stream(&text).into_iter().find(|a| a.interface == interface && a.alt == alt)?;
        Some((found.rates, path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/asound/card1/stream0 of a UAC2 interface with playback and two capture alt
    /// settings, as sound/usb/proc.c prints it.
    const STREAM0: &str = "\
Focusrite Scarlett Solo USB at usb-0000:00:14.0-2, high speed : USB Audio

Playback:
  Status: Stop
  Interface 1
    Altset 1
    Format: S32_LE
    Channels: 2
    Endpoint: 0x01 (1 OUT) (ASYNC)
    Rates: 44100, 48000, 88200, 96000, 176400, 192000
    Data packet interval: 125 us
    Bits: 24
    Channel map: FL FR
    Sync Endpoint: 0x81 (1 IN)
    Sync EP Interface: 2
    Sync EP Altset: 1
    Implicit Feedback Mode: No

Capture:
  Status: Stop
  Interface 2
    Altset 1
    Format: S32_LE
    Channels: 2
    Endpoint: 0x82 (2 IN) (ASYNC)
    Rates: 44100, 48000
    Data packet interval: 125 us
    Bits: 24
  Interface 2
    Altset 2
    Format: S16_LE
    Channels: 2
    Endpoint: 0x82 (2 IN) (ASYNC)
    Rates: 8000 - 96000 (continuous)
    Data packet interval: 125 us
    Bits: 16
";

    #[test]
    fn the_capture_section_is_read_per_altset() {
        assert_eq!(
            parse_stream(STREAM0),
            vec![
                ProcAltset { interface: 2, alt: 1, rates: Rates::Discrete(vec![44_100, 48_000]) },
                ProcAltset { interface: 2, alt: 2, rates: Rates::Continuous { min: 8000, max: 96_000 } },
            ]
        );
        assert!(parse_stream("Playback:\n  Interface 1\n    Altset 1\n    Rates: 48000\n").is_empty());
        assert!(parse_stream("Capture:\n  Interface 1\n    Altset 1\n    Rates: lots\n").is_empty());
        assert!(parse_stream("").is_empty());
    }

    #[test]
    fn the_card_is_found_by_its_usb_bus_and_device() {
        let t = tempfile::tempdir().unwrap();
        for (card, bus) in [("card0", "001/002\n"), ("card1", "003/007\n")] {
            std::fs::create_dir_all(t.path().join(card)).unwrap();
            std::fs::write(t.path().join(card).join("usbbus"), bus).unwrap();
        }
        std::fs::write(t.path().join("card1/stream0"), STREAM0).unwrap();
        let card = card_of(t.path(), 3, 7).unwrap();
        assert_eq!(card, t.path().join("card1"));
        assert_eq!(card_of(t.path(), 3, 8), None);
        assert_eq!(card_of(&t.path().join("missing"), 3, 7), None);
        let (rates, path) = capture_rates(&card, 2, 1).unwrap();
        assert_eq!((rates, path), (Rates::Discrete(vec![44_100, 48_000]), t.path().join("card1/stream0")));
        assert_eq!(capture_rates(&card, 2, 9), None);
    }
}
