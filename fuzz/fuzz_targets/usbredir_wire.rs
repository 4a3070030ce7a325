//! Fuzzes the usbredir message parser (usb-host side): any byte stream a usb-guest can send,
//! before and after the hellos (32- and 64-bit ids, with and without the optional fields),
//! must parse, ask for more bytes or be rejected with an error, never panic, and never take
//! more bytes than it was given.
#![no_main]

use isoscope::sim::usbredir::wire::{self, Caps, Link, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let links = [
        Link::new(Caps::DEVICE),
        Link::new(Caps::DEVICE).with_peer(Caps(0xff)),
        Link::new(Caps(0xff)).with_peer(Caps(0xff)),
        Link::new(Caps::DEVICE).with_peer(Caps::EMPTY),
    ];
    for link in &links {
        // A connection: a stream of messages until the first incomplete one or error, skipping
        // resyncable errors as a server loop would.
        let mut rest = data;
        for _ in 0..64 {
            match wire::parse(rest, link) {
                Ok(Parsed::Message(f)) => {
                    assert!(f.consumed <= rest.len());
                    rest = &rest[f.consumed..];
                }
                Ok(Parsed::Incomplete { needed }) => {
                    assert!(needed > rest.len());
                    break;
                }
                Err(e) => {
                    let Some(h) = wire::Header::parse(rest, link) else { panic!("error without a header: {e}") };
                    let skip = h.frame_len(link);
                    if !e.resyncable() || skip > rest.len() as u64 {
                        break;
                    }
                    rest = &rest[skip as usize..];
                }
            }
        }
    }
});
