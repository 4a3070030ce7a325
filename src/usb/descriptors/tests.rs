//! Descriptor parser tests on whole descriptor sets, truncations and garbage.

use super::*;

/// A UAC1 full-speed capture function in the layout of a TI PCM2902 codec (08bb:2902):
/// AC header with one streaming interface, microphone input terminal, USB-streaming output
/// terminal; AS interface 1 with a zero-bandwidth alt 0, alt 1 = S16 stereo and alt 2 =
/// S16 mono at 8/16/32/44.1/48 kHz, async iso IN endpoint 0x84 of 192 bytes.
#[rustfmt::skip]
const UAC1_FS: &[u8] = &[
    18, 1, 0x10, 0x01, 0, 0, 0, 8, 0xbb, 0x08, 0x02, 0x29, 0x00, 0x01, 1, 2, 0, 1,
    9, 2, 0x9b, 0x00, 2, 1, 0, 0x80, 50,
    9, 4, 0, 0, 0, 1, 1, 0, 0,
    9, 0x24, 0x01, 0x00, 0x01, 30, 0x00, 1, 1,
    12, 0x24, 0x02, 2, 0x01, 0x02, 0, 2, 0x03, 0x00, 0, 0,
    9, 0x24, 0x03, 3, 0x01, 0x01, 0, 2, 0,
    9, 4, 1, 0, 0, 1, 2, 0, 0,
    9, 4, 1, 1, 1, 1, 2, 0, 0,
    7, 0x24, 0x01, 3, 1, 0x01, 0x00,
    23, 0x24, 0x02, 1, 2, 2, 16, 5,
        0x40, 0x1f, 0x00, 0x80, 0x3e, 0x00, 0x00, 0x7d, 0x00, 0x44, 0xac, 0x00, 0x80, 0xbb, 0x00,
    9, 5, 0x84, 0x05, 0xc0, 0x00, 1, 0, 0,
    7, 0x25, 0x01, 0x01, 0, 0, 0,
    9, 4, 1, 2, 1, 1, 2, 0, 0,
    7, 0x24, 0x01, 3, 1, 0x01, 0x00,
    11, 0x24, 0x02, 1, 1, 2, 16, 1, 0x80, 0xbb, 0x00,
    9, 5, 0x84, 0x05, 0x60, 0x00, 1, 0, 0,
    7, 0x25, 0x01, 0x01, 0, 0, 0,
];

/// A UAC2 high-speed capture function: IAD, AC interface (protocol 0x20) with a
/// programmable clock source (ID 1, attributes 0x07, controls 0x07), input terminal,
/// output terminal linked to the clock; AS interface 2 with alt 1 = S24_3 stereo and
/// alt 2 = S32 stereo, async iso IN endpoint 0x81, 2 x 8 x 4 + 8 = 72 bytes, bInterval 1.
#[rustfmt::skip]
const UAC2_HS: &[u8] = &[
    18, 1, 0x00, 0x02, 0xef, 0x02, 0x01, 64, 0x2a, 0x26, 0xda, 0x11, 0x01, 0x00, 1, 2, 0, 1,
    9, 2, 0xad, 0x00, 2, 1, 0, 0x80, 50,
    8, 0x0b, 1, 2, 1, 0, 0x20, 0,
    9, 4, 1, 0, 0, 1, 1, 0x20, 0,
    9, 0x24, 0x01, 0x00, 0x02, 10, 46, 0x00, 0,
    8, 0x24, 0x0a, 1, 0x07, 0x07, 0, 0,
    17, 0x24, 0x02, 2, 0x01, 0x06, 0, 1, 2, 0x03, 0, 0, 0, 0, 0, 0, 0,
    12, 0x24, 0x03, 3, 0x01, 0x01, 0, 2, 1, 0, 0, 0,
    9, 4, 2, 0, 0, 1, 2, 0x20, 0,
    9, 4, 2, 1, 1, 1, 2, 0x20, 0,
    16, 0x24, 0x01, 3, 0, 1, 0x01, 0, 0, 0, 2, 0x03, 0, 0, 0, 0,
    6, 0x24, 0x02, 1, 3, 24,
    7, 5, 0x81, 0x05, 0x48, 0x00, 1,
    8, 0x25, 0x01, 0, 0, 0, 0, 0,
    9, 4, 2, 2, 1, 1, 2, 0x20, 0,
    16, 0x24, 0x01, 3, 0, 1, 0x01, 0, 0, 0, 2, 0x03, 0, 0, 0, 0,
    6, 0x24, 0x02, 1, 4, 32,
    7, 5, 0x81, 0x05, 0x48, 0x00, 1,
    8, 0x25, 0x01, 0, 0, 0, 0, 0,
];

#[test]
fn uac1_full_speed_capture_interface() {
    let d = parse(UAC1_FS).unwrap();
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let dev = d.device.as_ref().unwrap();
    assert_eq!((dev.vendor_id, dev.product_id, dev.usb_version), (0x08bb, 0x2902, 0x0110));
    assert_eq!(d.configs[0].interfaces.len(), 4);
    let s = d.audio_streams();
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].interface, s[0].alt, s[0].uac), (1, 1, UacVersion::V1));
    assert_eq!((s[0].sample, s[0].channels), (Some(SampleFormat::S16Le), 2));
    assert_eq!(s[0].rates, Rates::Discrete(vec![8000, 16000, 32000, 44100, 48000]));
    assert_eq!(s[0].endpoint.address, 0x84);
    assert_eq!(s[0].endpoint.bytes_per_interval(Speed::Full), 192);
    assert_eq!(s[0].endpoint.interval_frames(), 1);
    assert_eq!(s[0].endpoint.audio.unwrap().attributes & 1, 1, "sampling frequency control");
    assert_eq!(s[0].ac_interface, Some(0));
    assert_eq!((s[1].channels, s[1].rates.contains(48_000)), (1, Some(true)));
    let text = d.render();
    for needle in [
        "idVendor         0x08bb",
        "INPUT_TERMINAL",
        "FORMAT_TYPE I",
        "EP 4 IN",
        "1x 192 bytes",
        "interface 1 alt 1: EP 0x84 IN iso async, S16_LE 2 ch, 8000/16000/32000/44100/48000 Hz",
    ] {
        assert!(text.contains(needle), "'{needle}' not in\n{text}");
    }
}

#[test]
fn uac2_high_speed_capture_interface() {
    let d = parse(UAC2_HS).unwrap();
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let s = d.audio_streams();
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].uac, s[0].sample, s[0].channels), (UacVersion::V2, Some(SampleFormat::S24_3Le), 2));
    assert_eq!((s[1].sample, s[1].rates.clone()), (Some(SampleFormat::S32Le), Rates::FromClock));
    assert_eq!((s[0].clock_source, s[0].ac_interface, s[0].terminal_link), (Some(1), Some(1), 3));
    assert_eq!(s[0].endpoint.bytes_per_interval(Speed::High), 72);
    let ac = &d.configs[0].interfaces[0];
    assert!(ac.audio.iter().any(|a| matches!(a, AudioDescriptor::ClockSource { id: 1, controls: 7, .. })));
    assert!(d.render().contains("CLOCK_SOURCE bClockID 1"));
}

#[test]
fn high_bandwidth_and_superspeed_endpoints() {
    // 3 x 1024 bytes per microframe; bInterval 4 -> every 8 microframes.
    let hb = Endpoint {
        address: 0x81,
        attributes: 0x05,
        max_packet_size: 0x1400,
        interval: 4,
        ss_companion: None,
        audio: None,
    };
    assert_eq!(hb.bytes_per_interval(Speed::High), 3 * 1024);
    assert_eq!(hb.bytes_per_interval(Speed::Full), 1024);
    assert_eq!(hb.interval_frames(), 8);
    #[rustfmt::skip]
    let ss: &[u8] = &[
        9, 2, 31, 0, 1, 1, 0, 0x80, 50,
        9, 4, 0, 0, 1, 0xff, 0, 0, 0,
        7, 5, 0x81, 0x05, 0x00, 0x04, 1,
        6, 0x30, 15, 2, 0x00, 0xc0,
    ];
    let d = parse(ss).unwrap();
    let ep = &d.configs[0].interfaces[0].endpoints[0];
    assert_eq!(
        ep.ss_companion,
        Some(SsCompanion { max_burst: 15, attributes: 2, bytes_per_interval: 49152 })
    );
    assert_eq!(ep.bytes_per_interval(Speed::Super), 49152);
    let no_bpi = Endpoint {
        ss_companion: Some(SsCompanion { max_burst: 3, attributes: 1, bytes_per_interval: 0 }),
        ..ep.clone()
    };
    assert_eq!(no_bpi.bytes_per_interval(Speed::Super), 1024 * 4 * 2);
    assert!(d.audio_streams().is_empty(), "vendor class is not audio");
}

#[test]
fn the_virtual_devices_descriptors_parse_back_to_what_it_streams() {
    use crate::sim::usbip::{VirtualDevice, VirtualDeviceConfig};
    for (uac, speed) in [(UacVersion::V1, Speed::Full), (UacVersion::V2, Speed::High)] {
        let dev =
            VirtualDevice::new(VirtualDeviceConfig { uac, channels: 2, ..VirtualDeviceConfig::default() })
                .unwrap();
        let d = parse(&dev.descriptor_bytes()).unwrap();
        assert!(d.warnings.is_empty(), "{uac:?}: {:?}", d.warnings);
        let s = d.audio_streams();
        let samples: Vec<_> = s.iter().map(|s| s.sample).collect();
        assert_eq!(samples, [Some(SampleFormat::S16Le), Some(SampleFormat::S24_3Le)], "{uac:?}");
        assert!(s.iter().all(|s| s.uac == uac && s.channels == 2 && s.ac_interface == Some(0)));
        match uac {
            UacVersion::V1 => assert_eq!(s[0].rates, Rates::Discrete(vec![48_000, 96_000])),
            UacVersion::V2 => assert_eq!(s[0].clock_source, Some(0x10)),
        }
        // 96 kHz S24 stereo + one frame fits the packet at this speed.
        let per = (96_000 * speed.frame_us()).div_ceil(1_000_000) + 1;
        assert_eq!(s[1].endpoint.bytes_per_interval(speed), per * 6);
    }
}

#[test]
fn every_prefix_and_random_garbage_parse_or_fail_cleanly() {
    for table in [UAC1_FS, UAC2_HS] {
        for cut in 0..table.len() {
            let _ = parse(&table[..cut]).map(|d| (d.audio_streams(), d.render()));
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..10_000 {
        let mut junk = vec![0u8; (seed % 200) as usize + 2];
        for b in &mut junk {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        if seed % 3 == 0 {
            junk[1] = 2; // start like a configuration to get past the first check
        }
        let _ = parse(&junk).map(|d| (d.audio_streams(), d.render()));
    }
}

#[test]
fn errors_name_the_offset_and_what_was_expected() {
    assert_eq!(parse(&[]), Err(DescriptorError::Empty));
    assert_eq!(parse(&[9, 7, 0]), Err(DescriptorError::UnexpectedStart(7)));
    let mut t = UAC1_FS.to_vec();
    t[18 + 9] = 0; // the AC interface descriptor's bLength
    let e = parse(&t).unwrap_err();
    assert_eq!(e, DescriptorError::ZeroLength { offset: 27, length: 0 });
    // A well-framed AC header that is shorter than its fixed part.
    let short_header = [9, 2, 25, 0, 1, 1, 0, 0x80, 50, 9, 4, 0, 0, 0, 1, 1, 0, 0, 7, 0x24, 1, 0, 1, 16, 0];
    let e = parse(&short_header).unwrap_err();
    assert_eq!(e, DescriptorError::TooShort { offset: 18, name: "AC header", got: 7, need: 8 });
    assert!(e.to_string().contains("byte 18"), "{e}");
    let d = parse(&UAC1_FS[..UAC1_FS.len() - 7]).unwrap();
    assert!(d.warnings.iter().any(|w| w.contains("wTotalLength")), "{:?}", d.warnings);
}
