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
    use crate::sim::{VirtualDevice, VirtualDeviceConfig};
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

/// The Linux USB gadget's UAC1 function (drivers/usb/gadget/function/f_uac1.c: static
/// descriptors, `setup_descriptor()` and `f_audio_bind()`), configured through configfs as a
/// capture-only mono microphone: p_chmask=1, p_srate=44100,48000, p_ssize=2, c_chmask=0,
/// p_mute_present=0, p_volume_present=0 (so no feature unit and no interrupt endpoint).
/// Entity IDs start at 1 (IT 1, OT 2), AS bTerminalLink = OT 2, wMaxPacketSize is
/// UAC1_OUT_EP_MAX_PACKET_SIZE (200, u_uac1.h) with bInterval 4, and EP_GENERAL has the
/// sampling frequency control bit. Device descriptor as a configfs gadget 1d6b:0104 writes
/// it; string indices as allocated after three device strings and one configuration string.
#[rustfmt::skip]
const GADGET_UAC1_MIC: &[u8] = &[
    18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x6b, 0x1d, 0x04, 0x01, 0x00, 0x01, 1, 2, 3, 1,
    9, 2, 103, 0, 2, 1, 4, 0x80, 1,
    9, 4, 0, 0, 0, 1, 1, 0, 5,
    9, 0x24, 0x01, 0x00, 0x01, 30, 0, 1, 1,
    12, 0x24, 0x02, 1, 0x01, 0x02, 0, 1, 0x01, 0x00, 10, 9,
    9, 0x24, 0x03, 2, 0x01, 0x01, 0, 1, 11,
    9, 4, 1, 0, 0, 1, 2, 0, 16,
    9, 4, 1, 1, 1, 1, 2, 0, 17,
    7, 0x24, 0x01, 2, 1, 0x01, 0x00,
    14, 0x24, 0x02, 1, 1, 2, 16, 2, 0x44, 0xac, 0x00, 0x80, 0xbb, 0x00,
    9, 5, 0x81, 0x05, 200, 0, 4, 0, 0,
    7, 0x25, 0x01, 0x01, 0, 0, 0,
];

/// The Linux USB gadget's UAC2 function (drivers/usb/gadget/function/f_uac2.c:
/// `setup_descriptor()`, `setup_headers()`, `afunc_bind()`), capture-only stereo S32 at high
/// speed: p_chmask=3, p_ssize=4, p_srate=48000, p_hs_bint=1, c_chmask=0, no mute/volume.
/// IDs: IT 1 (wTerminalType = c_terminal_type default 0x0201), OT 2, clock source 3
/// (internal fixed, frequency control read/write); AC wTotalLength 46; IAD of 2 interfaces.
/// wMaxPacketSize per `get_max_bw_for_bint`: 48000 * 1.005 (fb_max 5) = 48240 Hz,
/// ceil(48240 / 8000) = 7 frames x 2 ch x 4 bytes = 56 bytes every microframe.
#[rustfmt::skip]
const GADGET_UAC2_HS: &[u8] = &[
    18, 1, 0x00, 0x02, 0xef, 0x02, 0x01, 64, 0x6b, 0x1d, 0x04, 0x01, 0x00, 0x01, 1, 2, 3, 1,
    9, 2, 127, 0, 2, 1, 4, 0x80, 1,
    8, 0x0b, 0, 2, 1, 0, 0x20, 5,
    9, 4, 0, 0, 0, 1, 1, 0x20, 6,
    9, 0x24, 0x01, 0x00, 0x02, 0x08, 46, 0, 0,
    8, 0x24, 0x0a, 3, 0x01, 0x03, 0, 7,
    17, 0x24, 0x02, 1, 0x01, 0x02, 0, 3, 2, 0x03, 0, 0, 0, 12, 0x03, 0x00, 11,
    12, 0x24, 0x03, 2, 0x01, 0x01, 0, 1, 3, 0x03, 0x00, 13,
    9, 4, 1, 0, 0, 1, 2, 0x20, 19,
    9, 4, 1, 1, 1, 1, 2, 0x20, 20,
    16, 0x24, 0x01, 2, 0, 1, 0x01, 0, 0, 0, 2, 0x03, 0, 0, 0, 0,
    6, 0x24, 0x02, 1, 4, 32,
    7, 5, 0x81, 0x05, 56, 0, 1,
    8, 0x25, 0x01, 0, 0, 0, 0, 0,
];

/// The same UAC2 gadget function at SuperSpeed (`ss_audio_desc`): bcdUSB 3.20 and
/// bMaxPacketSize0 9 (2^9) as the composite core writes them at SuperSpeed; the iso IN
/// endpoint is followed by its companion (bMaxBurst 0, bmAttributes 0, wBytesPerInterval =
/// wMaxPacketSize = 56).
#[rustfmt::skip]
const GADGET_UAC2_SS: &[u8] = &[
    18, 1, 0x20, 0x03, 0xef, 0x02, 0x01, 9, 0x6b, 0x1d, 0x04, 0x01, 0x00, 0x01, 1, 2, 3, 1,
    9, 2, 133, 0, 2, 1, 4, 0x80, 1,
    8, 0x0b, 0, 2, 1, 0, 0x20, 5,
    9, 4, 0, 0, 0, 1, 1, 0x20, 6,
    9, 0x24, 0x01, 0x00, 0x02, 0x08, 46, 0, 0,
    8, 0x24, 0x0a, 3, 0x01, 0x03, 0, 7,
    17, 0x24, 0x02, 1, 0x01, 0x02, 0, 3, 2, 0x03, 0, 0, 0, 12, 0x03, 0x00, 11,
    12, 0x24, 0x03, 2, 0x01, 0x01, 0, 1, 3, 0x03, 0x00, 13,
    9, 4, 1, 0, 0, 1, 2, 0x20, 19,
    9, 4, 1, 1, 1, 1, 2, 0x20, 20,
    16, 0x24, 0x01, 2, 0, 1, 0x01, 0, 0, 0, 2, 0x03, 0, 0, 0, 0,
    6, 0x24, 0x02, 1, 4, 32,
    7, 5, 0x81, 0x05, 56, 0, 1,
    6, 0x30, 0, 0, 56, 0,
    8, 0x25, 0x01, 0, 0, 0, 0, 0,
];

/// Two VideoStreaming alt settings of a Minoru 3D webcam, from the byte-annotated dump in
/// saki4510t/UVCCamera issue #23: alt 4 with 1 x 1024 bytes and alt 5 with wMaxPacketSize
/// 0x0b00 (2 transactions of 768 bytes per microframe), both EP 0x82 async, bInterval 1.
/// Only the configuration header wrapping them is ours (a lone configuration blob).
#[rustfmt::skip]
const MINORU_HIGH_BANDWIDTH: &[u8] = &[
    9, 2, 41, 0, 1, 1, 0, 0x80, 250,
    9, 4, 1, 4, 1, 0x0e, 2, 0, 0,
    7, 5, 0x82, 0x05, 0x00, 0x04, 1,
    9, 4, 1, 5, 1, 0x0e, 2, 0, 0,
    7, 5, 0x82, 0x05, 0x00, 0x0b, 1,
];

#[test]
fn the_uac1_gadget_microphone_offers_two_discrete_rates_mono() {
    let d = parse(GADGET_UAC1_MIC).unwrap();
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let s = d.audio_streams();
    assert_eq!(s.len(), 1);
    let s = &s[0];
    assert_eq!((s.interface, s.alt, s.uac, s.terminal_link), (1, 1, UacVersion::V1, 2));
    assert_eq!((s.sample, s.channels), (Some(SampleFormat::S16Le), 1));
    assert_eq!(s.rates, Rates::Discrete(vec![44_100, 48_000]));
    assert_eq!((s.ac_interface, s.clock_source), (Some(0), None));
    assert_eq!(s.endpoint.bytes_per_interval(Speed::Full), 200);
    assert_eq!(s.endpoint.interval_frames(), 8, "bInterval 4 = 2^3 (micro)frames");
    assert_eq!(s.endpoint.audio.map(|a| a.attributes), Some(0x01));
    // A high-speed gadget: bInterval 4 is 8 microframes, 1 ms.
    let text = d.render_with(&d.audio_streams(), Some(Speed::High), None);
    for needle in [
        "idVendor         0x1d6b",
        "HEADER (V1) bcdADC 1.00 wTotalLength 30 baInterfaceNr [1]",
        "INPUT_TERMINAL bTerminalID 1 wTerminalType 0x0201 bNrChannels 1",
        "AS_GENERAL bTerminalLink 2 bDelay 1 wFormatTag 0x0001",
        "bInterval                4",
        "interface 1 alt 1: EP 0x81 IN iso async, S16_LE 1 ch, 44100/48000 Hz, 200 B/packet every 1 ms (8 microframes)",
    ] {
        assert!(text.contains(needle), "'{needle}' not in\n{text}");
    }
}

#[test]
fn the_uac2_gadget_streams_s32_stereo_from_clock_3() {
    let d = parse(GADGET_UAC2_HS).unwrap();
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.configs[0].associations[0].interface_count, 2);
    let s = d.audio_streams();
    assert_eq!(s.len(), 1);
    let s = &s[0];
    assert_eq!(
        (s.uac, s.sample, s.channels, s.rates.clone()),
        (UacVersion::V2, Some(SampleFormat::S32Le), 2, Rates::FromClock)
    );
    assert_eq!(
        (s.terminal_link, s.terminal_clock, s.clock_source, s.ac_interface),
        (2, Some(3), Some(3), Some(0))
    );
    assert_eq!(s.endpoint.bytes_per_interval(Speed::High), 56);
    assert_eq!(s.endpoint.interval_frames(), 1);
    let ac = &d.configs[0].interfaces[0];
    assert!(ac.audio.contains(&AudioDescriptor::AcHeader {
        uac: UacVersion::V2,
        adc: 0x0200,
        total_length: 46,
        interfaces: vec![],
        category: Some(8)
    }));
    let as_general = d.configs[0].interfaces[2].audio[0].clone();
    assert_eq!(
        as_general,
        AudioDescriptor::AsGeneral {
            terminal_link: 2,
            delay: None,
            format_tag: None,
            controls: Some(0),
            format_type: Some(1),
            formats: Some(1),
            channels: Some(2),
            channel_config: Some(3),
        }
    );
    let text = d.render();
    for needle in [
        "bcdUSB              2.00",
        "CLOCK_SOURCE bClockID 3 bmAttributes 0x01 bmControls 0x03 bAssocTerminal 0",
        "OUTPUT_TERMINAL bTerminalID 2 wTerminalType 0x0101 bSourceID 1 bCSourceID 3",
        "wMaxPacketSize     0x0038  1x 56 bytes",
        "interface 1 alt 1: EP 0x81 IN iso async, S32_LE 2 ch, rates from the clock source, 56 B/packet every 1 (micro)frame",
    ] {
        assert!(text.contains(needle), "'{needle}' not in\n{text}");
    }
}

#[test]
fn superspeed_companion_belongs_to_the_endpoint_before_it() {
    let d = parse(GADGET_UAC2_SS).unwrap();
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let s = &d.audio_streams()[0];
    assert_eq!(
        s.endpoint.ss_companion,
        Some(SsCompanion { max_burst: 0, attributes: 0, bytes_per_interval: 56 })
    );
    assert_eq!(s.endpoint.bytes_per_interval(Speed::Super), 56);
    assert_eq!(
        s.endpoint.audio.map(|a| a.attributes),
        Some(0),
        "EP_GENERAL after the companion still attaches"
    );
    assert!(d.render().contains("SuperSpeed Companion: bMaxBurst 0 bmAttributes 0x00 wBytesPerInterval 56"));
}

#[test]
fn high_bandwidth_webcam_endpoint_moves_two_transactions_per_microframe() {
    let d = parse(MINORU_HIGH_BANDWIDTH).unwrap();
    assert!(d.device.is_none());
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let alts = &d.configs[0].interfaces;
    let (a4, a5) = (&alts[0].endpoints[0], &alts[1].endpoints[0]);
    assert_eq!((a4.bytes_per_interval(Speed::High), a5.bytes_per_interval(Speed::High)), (1024, 1536));
    assert_eq!(a5.bytes_per_interval(Speed::Full), 768, "no extra transactions below high speed");
    assert!(d.audio_streams().is_empty(), "video is not audio");
    let text = d.render();
    assert!(text.contains("wMaxPacketSize     0x0b00  2x 768 bytes"), "{text}");
}

/// A UAC2 function whose terminal names a clock selector (ID 40) choosing between an
/// internal clock (41) and an S/PDIF clock (42) through a multiplier (43): the shape of
/// Focusrite and RME interfaces, where SET_CUR on the selector itself stalls. Synthetic.
#[rustfmt::skip]
const UAC2_CLOCK_SELECTOR: &[u8] = &[
    9, 2, 134, 0, 2, 1, 0, 0x80, 50,
    8, 0x0b, 0, 2, 1, 0, 0x20, 0,
    9, 4, 0, 0, 0, 1, 1, 0x20, 0,
    9, 0x24, 0x01, 0x00, 0x02, 0x08, 70, 0, 0,
    8, 0x24, 0x0a, 41, 0x03, 0x07, 0, 0,
    8, 0x24, 0x0a, 42, 0x00, 0x05, 0, 0,
    7, 0x24, 0x0c, 43, 42, 0x00, 0,
    9, 0x24, 0x0b, 40, 2, 41, 43, 0x03, 0,
    17, 0x24, 0x02, 1, 0x01, 0x02, 0, 40, 2, 0x03, 0, 0, 0, 0, 0, 0, 0,
    12, 0x24, 0x03, 2, 0x01, 0x01, 0, 1, 40, 0, 0, 0,
    9, 4, 1, 1, 1, 1, 2, 0x20, 0,
    16, 0x24, 0x01, 2, 0, 1, 0x01, 0, 0, 0, 2, 0x03, 0, 0, 0, 0,
    6, 0x24, 0x02, 1, 3, 24,
    7, 5, 0x81, 0x05, 0x38, 0x01, 1,
];

#[test]
fn a_clock_selector_is_followed_to_a_source_not_taken_for_one() {
    let d = parse(UAC2_CLOCK_SELECTOR).unwrap();
    let s = &d.audio_streams()[0];
    assert_eq!((s.terminal_clock, s.clock_source), (Some(40), Some(41)), "selector 40, first input 41");
    assert_eq!(static_clock_source(&s.clocks, 43), Some(42), "a multiplier leads to its source");
    assert_eq!(static_clock_source(&s.clocks, 99), Some(99), "an undescribed id is taken as is");
    let looped = [ClockEntity::Multiplier { id: 1, source: 2 }, ClockEntity::Multiplier { id: 2, source: 1 }];
    assert_eq!(static_clock_source(&looped, 1), None);
    assert!(d.render().contains("CLOCK_SELECTOR bClockID 40 sources [41, 43]"));
}

#[test]
fn uac3_and_midi_class_descriptors_are_kept_not_misread() {
    // USB MIDI 1.0 spec appendix B.4: MS interface, MS header, bulk OUT endpoint and its
    // 5-byte class endpoint descriptor (MS_GENERAL, subtype 1 like EP_GENERAL).
    #[rustfmt::skip]
    let midi: &[u8] = &[
        9, 2, 39, 0, 1, 1, 0, 0x80, 50,
        9, 4, 1, 0, 1, 1, 3, 0, 0,
        7, 0x24, 0x01, 0x00, 0x01, 14, 0,
        9, 5, 0x01, 0x02, 64, 0, 0, 0, 0,
        5, 0x25, 0x01, 1, 1,
    ];
    let d = parse(midi).unwrap();
    assert_eq!(d.configs[0].interfaces[0].extra.len(), 1, "MS_GENERAL kept raw");
    // A UAC3 (protocol 0x30) AS interface with a 23-byte AS header: not a UAC1 layout.
    #[rustfmt::skip]
    let uac3: &[u8] = &[
        9, 2, 57, 0, 1, 1, 0, 0x80, 50,
        9, 4, 1, 1, 1, 1, 2, 0x30, 0,
        23, 0x24, 0x01, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        9, 5, 0x81, 0x05, 0x60, 0, 4, 0, 0,
        7, 0x25, 0x01, 0, 0, 0, 0,
    ];
    let d = parse(uac3).unwrap();
    assert!(d.audio_streams().is_empty());
    assert_eq!(d.configs[0].interfaces[0].extra.len(), 2);
    assert!(d.warnings.iter().any(|w| w.contains("protocol 0x30")), "{:?}", d.warnings);
}

#[test]
fn a_uac1_stream_belongs_to_the_control_interface_that_lists_it() {
    // Two UAC1 functions without interface associations: AC 0 lists AS 1, AC 2 lists AS 3.
    #[rustfmt::skip]
    let two: &[u8] = &[
        9, 2, 110, 0, 4, 1, 0, 0x80, 50,
        9, 4, 0, 0, 0, 1, 1, 0, 0,
        9, 0x24, 0x01, 0x00, 0x01, 9, 0, 1, 1,
        9, 4, 1, 1, 1, 1, 2, 0, 0,
        11, 0x24, 0x02, 1, 1, 2, 16, 1, 0x80, 0xbb, 0x00,
        9, 5, 0x81, 0x05, 0x60, 0, 1, 0, 0,
        9, 4, 2, 0, 0, 1, 1, 0, 0,
        9, 0x24, 0x01, 0x00, 0x01, 9, 0, 1, 3,
        9, 4, 3, 1, 1, 1, 2, 0, 0,
        9, 5, 0x82, 0x05, 0x60, 0, 1, 0, 0,
    ];
    let s = parse(two).unwrap().audio_streams();
    let ac: Vec<_> = s.iter().map(|s| (s.interface, s.ac_interface)).collect();
    assert_eq!(ac, [(1, Some(0)), (3, Some(2))]);
}

#[test]
fn every_prefix_of_the_captured_tables_parses_or_fails_cleanly() {
    for table in [GADGET_UAC1_MIC, GADGET_UAC2_HS, GADGET_UAC2_SS, MINORU_HIGH_BANDWIDTH, UAC2_CLOCK_SELECTOR]
    {
        assert!(parse(table).is_ok());
        for cut in 0..table.len() {
            let _ = parse(&table[..cut]).map(|d| (d.audio_streams(), d.render()));
        }
    }
}

/// Hostile framing: every case is a typed error naming where, never a panic.
#[test]
fn hostile_lengths_are_typed_errors() {
    // A device descriptor whose bLength is 0 (the hardening issue's file).
    let e = parse(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x2c, 0x02]).unwrap_err();
    assert_eq!(e, DescriptorError::ZeroLength { offset: 0, length: 0 });
    assert!(e.to_string().contains("byte 0") && e.to_string().contains("bLength"), "{e}");
    assert_eq!(parse(&[1, 1, 0]), Err(DescriptorError::ZeroLength { offset: 0, length: 1 }));
    // A device descriptor claiming more bytes than there are.
    assert_eq!(
        parse(&[18, 1, 0, 2]),
        Err(DescriptorError::Truncated { offset: 0, length: 18, available: 4 })
    );
    // A device descriptor shorter than its 18 fixed bytes.
    assert_eq!(
        parse(&[4, 1, 0, 2]),
        Err(DescriptorError::TooShort { offset: 0, name: "device", got: 4, need: 18 })
    );
    // After the device descriptor: a stray descriptor with bLength 0 or 1, or past the end.
    let mut t = UAC1_FS[..18].to_vec();
    t.extend([0, 5, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(parse(&t), Err(DescriptorError::ZeroLength { offset: 18, length: 0 }));
    t[18] = 1;
    assert_eq!(parse(&t), Err(DescriptorError::ZeroLength { offset: 18, length: 1 }));
    t[18] = 40;
    assert_eq!(parse(&t), Err(DescriptorError::Truncated { offset: 18, length: 40, available: 10 }));
    // wTotalLength below 9.
    let mut t = UAC1_FS.to_vec();
    t[20] = 5;
    t[21] = 0;
    assert_eq!(parse(&t), Err(DescriptorError::BadTotalLength { offset: 18, total: 5 }));
}

/// Class descriptors whose counts (bNrInPins, bInCollection, bSamFreqType) run past their
/// bLength, and endpoints or interfaces shorter than their fixed fields.
#[test]
fn counts_past_the_descriptor_are_typed_errors() {
    let config = |body: &[u8]| {
        let mut t = vec![9, 2, 0, 0, 1, 1, 0, 0x80, 50];
        t.extend_from_slice(body);
        let total = t.len() as u16;
        t[2..4].copy_from_slice(&total.to_le_bytes());
        t
    };
    let ac1 = [9, 4, 0, 0, 0, 1, 1, 0, 0];
    let ac2 = [9, 4, 0, 0, 0, 1, 1, 0x20, 0];
    let as1 = [9, 4, 1, 1, 1, 1, 2, 0, 0];
    let cases: [(Vec<u8>, &str); 7] = [
        // UAC1 AC header: bInCollection 5, but only one interface number follows.
        ([&ac1[..], &[9, 0x24, 1, 0, 1, 30, 0, 5, 1]].concat(), "AC header"),
        // UAC2 clock selector: bNrInPins 4, one pin present.
        ([&ac2[..], &[6, 0x24, 0x0b, 40, 4, 41]].concat(), "clock selector"),
        // UAC1 format type I: bSamFreqType 3, one rate present.
        (
            [&as1[..], &[11, 0x24, 2, 1, 2, 2, 16, 3, 0x80, 0xbb, 0]].concat(),
            "format type I (discrete rates)",
        ),
        // UAC1 format type I: continuous (bSamFreqType 0) without its two rates.
        ([&as1[..], &[8, 0x24, 2, 1, 2, 2, 16, 0]].concat(), "format type I (continuous rates)"),
        // An endpoint descriptor of 4 bytes.
        ([&as1[..], &[4, 5, 0x81, 5]].concat(), "endpoint"),
        // An interface descriptor of 3 bytes.
        (vec![3, 4, 0], "interface"),
        // A UAC1 AS general of 5 bytes.
        ([&as1[..], &[5, 0x24, 1, 1, 0]].concat(), "AS general"),
    ];
    for (body, name) in cases {
        match parse(&config(&body)) {
            Err(DescriptorError::TooShort { name: n, .. }) => assert_eq!(n, name, "{body:?}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// A small deterministic PRNG (xorshift64) for the mutation test.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A quick stand-in for the fuzz target: 20 000 mutations (byte flips, the lengths set to
/// 0, 1 or 255, bytes cut out or repeated) of every captured table, each parsed, its
/// streams listed and rendered. Reaching the end is the assertion: nothing panicked.
#[test]
fn mutations_of_the_captured_tables_never_panic() {
    let tables = [
        UAC1_FS,
        UAC2_HS,
        GADGET_UAC1_MIC,
        GADGET_UAC2_HS,
        GADGET_UAC2_SS,
        MINORU_HIGH_BANDWIDTH,
        UAC2_CLOCK_SELECTOR,
    ];
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
    let mut parsed = 0;
    for i in 0..20_000 {
        let mut t = tables[i % tables.len()].to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(t.len());
            match rng.below(6) {
                0 => t[at] = rng.next() as u8,
                1 => t[at] = [0, 1, 2, 255][rng.below(4)],
                2 => t[at] ^= 1 << rng.below(8),
                3 => {
                    let n = rng.below(8).min(t.len() - at);
                    t.drain(at..at + n);
                }
                4 => {
                    let end = (at + rng.below(12)).min(t.len());
                    let piece = t[at..end].to_vec();
                    t.splice(at..at, piece);
                }
                _ => t.truncate(at),
            }
            if t.is_empty() {
                break;
            }
        }
        if let Ok(d) = parse(&t) {
            parsed += 1;
            let _ = (d.audio_streams(), d.render());
        }
    }
    assert!(parsed > 1000, "the mutations should leave many tables parseable, got {parsed}");
}

/// 8-bit PCM as Linux's snd-usb-audio reads it (sound/usb/format.c,
/// `parse_audio_format_i_type`): PCM with a 1-byte subslot is S8, PCM8 is U8.
#[test]
fn eight_bit_pcm_is_s8_and_pcm8_is_u8() {
    // UAC1 alt 1 of UAC1_FS: wFormatTag at bytes 89-90, bSubslotSize at 96, bBitResolution at 97.
    let uac1 = |tag: u8| {
        let mut t = UAC1_FS.to_vec();
        (t[89], t[96], t[97]) = (tag, 1, 8);
        parse(&t).unwrap().audio_streams()[0].sample
    };
    assert_eq!(uac1(1), Some(SampleFormat::S8), "PCM, 1-byte subslot");
    assert_eq!(uac1(2), Some(SampleFormat::U8), "PCM8");
    // UAC2 alt 1 of UAC2_HS: bmFormats at bytes 114-117, bSubslotSize at 128, bBitResolution at 129.
    let uac2 = |formats: u8| {
        let mut t = UAC2_HS.to_vec();
        (t[114], t[128], t[129]) = (formats, 1, 8);
        parse(&t).unwrap().audio_streams()[0].sample
    };
    assert_eq!(uac2(0b01), Some(SampleFormat::S8), "PCM bit, 1-byte subslot");
    assert_eq!(uac2(0b10), Some(SampleFormat::U8), "PCM8 bit");
}

/// A device with two configurations: configuration 1 the UAC1 function of [`UAC1_FS`],
/// configuration 2 the UAC2 function of [`UAC2_HS`] (bConfigurationValue 2).
fn two_configurations(second: &[u8]) -> Vec<u8> {
    let mut t = UAC1_FS.to_vec();
    t[17] = 2; // bNumConfigurations
    let mut c2 = second[18..].to_vec();
    c2[5] = 2; // bConfigurationValue
    t.extend(c2);
    t
}

#[test]
fn streams_come_from_the_active_configuration_and_say_which_it_is() {
    let d = parse(&two_configurations(UAC2_HS)).unwrap();
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.configs.iter().map(|c| c.value).collect::<Vec<_>>(), [1, 2]);
    let all = d.streams_of(None);
    assert_eq!(
        all.iter().map(|s| (s.configuration, s.uac)).collect::<Vec<_>>(),
        [(1, UacVersion::V1), (1, UacVersion::V1), (2, UacVersion::V2), (2, UacVersion::V2)]
    );
    assert!(d.streams_of(Some(1)).iter().all(|s| s.configuration == 1 && s.uac == UacVersion::V1));
    assert!(d.streams_of(Some(2)).iter().all(|s| s.configuration == 2 && s.uac == UacVersion::V2));
    assert_eq!(d.streams_of(Some(2)).len(), 2);
    assert!(d.streams_of(Some(0)).is_empty(), "an unconfigured device streams nothing");
    // The UAC2 function's control interface is found in its own configuration.
    assert_eq!(d.streams_of(Some(2))[0].ac_interface, Some(1));
    let live = d.render_with(&d.audio_streams(), Some(Speed::Full), Some(2));
    assert!(
        live.contains("Audio streams (iso IN) of configuration 1 (not active):\n  interface 1 alt 1")
            && live.contains("Audio streams (iso IN) of configuration 2 (active):\n  interface 2 alt 1"),
        "{live}"
    );
    let file = d.render();
    assert!(file.contains("of configuration 1:") && file.contains("of configuration 2:"), "{file}");
    // Two identical configurations: the streams of each are told apart by configuration.
    let d = parse(&two_configurations(UAC1_FS)).unwrap();
    let second = d.streams_of(Some(2));
    assert_eq!((second.len(), second[0].configuration, second[0].ac_interface), (2, 2, Some(0)));
    // One configuration: no labels.
    assert!(parse(UAC1_FS).unwrap().render().contains("Audio streams (iso IN):\n"));
}

#[test]
fn intervals_are_printed_as_time_at_the_devices_speed() {
    let d = parse(UAC2_HS).unwrap();
    let hs = d.render_with(&d.audio_streams(), Some(Speed::High), None);
    assert!(hs.contains("72 B/packet every 125 us (1 microframe)"), "{hs}");
    let mut s = d.audio_streams()[0].clone();
    s.endpoint.interval = 4;
    assert!(
        s.summary(Some(Speed::High)).ends_with("every 1 ms (8 microframes)"),
        "{}",
        s.summary(Some(Speed::High))
    );
    // UAC1_FS is a USB 1.1 device: full speed without being told.
    let fs = parse(UAC1_FS).unwrap().render();
    assert!(fs.contains("192 B/packet every 1 ms (1 frame)"), "{fs}");
}
