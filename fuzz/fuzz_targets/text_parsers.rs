//! Fuzzes the parsers of text from the user and the kernel: `--signal` (then a render of it),
//! `--device` selectors, `--channel-map`, `--format`, vhci-hcd's `status` file and
//! `/proc/asound/cardN/streamM`. The first byte picks the parser; any text must parse or
//! fail with an error, never panic.
#![no_main]

use isoscope::dsp::ChannelMap;
use isoscope::dsp::{PcmFormat, SampleFormat};
use isoscope::sim::{PcmTable, Signal};
use isoscope::usb::discovery::DeviceSelector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match which % 6 {
        0 => {
            if let Ok(signal) = text.parse::<Signal>() {
                let _ = signal.to_string();
                // A small format keeps a render cheap; WAV paths are not opened here.
                if !matches!(signal, Signal::Wav(_)) {
                    let format = PcmFormat { sample: SampleFormat::S16Le, channels: 1, rate: 1000 };
                    let t = PcmTable::render(&signal, format).expect("a parsed signal renders");
                    assert!(t.frames() > 0);
                }
            }
        }
        1 => {
            let _ = text.parse::<DeviceSelector>();
        }
        2 => {
            let channels = u16::from(rest.first().copied().unwrap_or(0) % 70);
            if let Ok(map) = ChannelMap::parse(text, channels) {
                let _ = format!("{map:?}");
            }
        }
        3 => {
            let _ = SampleFormat::parse(text);
        }
        4 => {
            let _ = isoscope::usb::vhci::parse_status(text);
        }
        _ => {
            let _ = isoscope::usb::asound::parse_stream(text);
        }
    }
});
