//! Fuzzes the USB/IP message parser: any byte stream a client can send must parse or be
//! rejected with an error, never panic or allocate past the limits.
#![no_main]

use isoscope::sim::usbip::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::read_op_request(&mut &data[..]);
    let mut rest = data;
    // A connection after import: a stream of commands until the first error.
    for _ in 0..64 {
        if wire::read_command(&mut rest).is_err() {
            break;
        }
    }
    let _ = wire::read_import_reply(&mut &data[..]);
});
