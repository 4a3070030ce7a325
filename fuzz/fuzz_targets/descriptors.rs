//! Fuzzes the descriptor parser: any bytes (a device's sysfs `descriptors`, a file given to
//! `isoscope describe --file`) must parse or fail with an error, never panic.
#![no_main]

use isoscope::usb::descriptors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = descriptors::parse(data) {
        let _ = d.audio_streams();
        let _ = d.render();
    }
});
