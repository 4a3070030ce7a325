//! Fuzzes WAV reading (`--signal wav:PATH`, `isoscope verify-wav FILE`): any bytes must give
//! a table or an error, never a panic, and a table must verify against itself.
#![no_main]

use isoscope::sim::{check_contiguous, PcmTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = PcmTable::from_wav_reader(data, std::path::Path::new("fuzz.wav")) {
        assert_eq!(t.bytes().len(), t.frames() * t.format.frame_bytes());
        if t.frames() <= 4096 {
            let a = check_contiguous(&t, t.bytes()).expect("a table is a run of itself");
            assert_eq!(a.mismatched, 0);
        }
    }
});
