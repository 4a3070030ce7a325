//! USB Audio Class stream setup: which alt setting to stream from for a requested
//! rate/format/channels, and setting the sample rate (UAC1: SET_CUR on the endpoint;
//! UAC2: SET_CUR on the clock source, whose GET RANGE lists the rates).

use nix::errno::Errno;

use super::descriptors::{AudioStream, ClockEntity, Rates, UacVersion};
use super::ControlTransfer;
use crate::dsp::SampleFormat;

/// bRequest values (UAC1 uses 0x01 SET_CUR / 0x81 GET_CUR; UAC2 uses CUR = 0x01 and
/// RANGE = 0x02 in both directions).
const SET_CUR: u8 = 0x01;
const UAC1_GET_CUR: u8 = 0x81;
const UAC2_CUR: u8 = 0x01;
const UAC2_RANGE: u8 = 0x02;
/// UAC1 SAMPLING_FREQ_CONTROL / UAC2 CS_SAM_FREQ_CONTROL, in wValue's high byte.
const SAMPLING_FREQ: u16 = 0x0100;
/// UAC2 CX_CLOCK_SELECTOR_CONTROL, in wValue's high byte (one byte: the 1-based input pin).
const CLOCK_SELECTOR: u16 = 0x0100;

/// Rates worth offering from a continuous range.
pub const STANDARD_RATES: [u32; 13] =
    [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000, 352800, 384000];

/// What the user asked for; `None` lets isoscope choose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamRequest {
    pub rate: Option<u32>,
    pub channels: Option<u16>,
    pub sample: Option<SampleFormat>,
}

/// Why a stream could not be chosen or set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UacError {
    #[error("no audio stream matches {wanted}; the device offers: {offered}")]
    NoMatch { wanted: String, offered: String },
    #[error("the device has no audio capture stream (no audio streaming interface with an iso IN endpoint)")]
    NoStream,
    #[error("{op} failed: {errno}{hint}")]
    Control { op: &'static str, errno: Errno, hint: &'static str },
    #[error("the device answered {op} with {got} bytes, expected {need}")]
    ShortReply { op: &'static str, got: usize, need: usize },
    #[error("clock selector {selector} says its input is pin {pin}, but it has {inputs} inputs")]
    BadSelectorPin { selector: u8, pin: u8, inputs: usize },
    #[error("the clock entities starting at {start} form a loop or lead nowhere; no clock source found")]
    NoClockSource { start: u8 },
}

fn control_err(op: &'static str, errno: Errno) -> UacError {
    let hint = match errno {
        Errno::EPIPE => " (the device stalled: it does not support this request)",
        Errno::ETIMEDOUT => " (the device did not answer within 1 s)",
        _ => "",
    };
    UacError::Control { op, errno, hint }
}

/// A UAC2 RANGE subrange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RateRange {
    pub min: u32,
    pub max: u32,
    pub res: u32,
}

/// UAC2 GET RANGE of the clock source's sampling frequency.
pub fn uac2_rates(
    dev: &mut impl ControlTransfer,
    ac_interface: u8,
    clock: u8,
) -> Result<Vec<RateRange>, UacError> {
    let index = u16::from(clock) << 8 | u16::from(ac_interface);
    let mut head = [0u8; 2];
    let n = dev
        .control_in(0xA1, UAC2_RANGE, SAMPLING_FREQ, index, &mut head)
        .map_err(|e| control_err("GET RANGE", e))?;
    if n < 2 {
        return Err(UacError::ShortReply { op: "GET RANGE", got: n, need: 2 });
    }
    let count = usize::from(u16::from_le_bytes(head)).min(64);
    let mut buf = vec![0u8; 2 + 12 * count];
    let n = dev
        .control_in(0xA1, UAC2_RANGE, SAMPLING_FREQ, index, &mut buf)
        .map_err(|e| control_err("GET RANGE", e))?;
    let got = (n.min(buf.len()).saturating_sub(2)) / 12;
    Ok(buf[2..2 + got * 12]
        .chunks_exact(12)
        .map(|c| RateRange {
            min: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            max: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            res: u32::from_le_bytes([c[8], c[9], c[10], c[11]]),
        })
        .collect())
}

/// The rates the clock feeding UAC2 `stream` offers right now (GET RANGE on the clock source,
/// found as [`find_clock_source`] does), with that clock's id; `None` when the stream names
/// no control interface or clock. The control interface must be claimed (or claimable).
pub fn clock_rates(
    dev: &mut impl ControlTransfer,
    stream: &AudioStream,
) -> Result<Option<(u8, Vec<u32>)>, UacError> {
    let Some(ac) = stream.ac_interface else { return Ok(None) };
    let Some(clock) = find_clock_source(dev, stream)? else { return Ok(None) };
    let ranges = uac2_rates(dev, ac, clock)?;
    Ok(Some((clock, rates_from_ranges(&ranges))))
}

/// The rates a set of UAC2 ranges offers: each fixed rate, and the standard rates inside
/// each continuous range (on its resolution grid).
pub fn rates_from_ranges(ranges: &[RateRange]) -> Vec<u32> {
    let mut v: Vec<u32> = Vec::new();
    for r in ranges {
        if r.min == r.max {
            v.push(r.min);
        } else {
            v.extend(
                STANDARD_RATES
                    .iter()
                    .copied()
                    .filter(|&x| (r.min..=r.max).contains(&x) && (r.res == 0 || (x - r.min) % r.res == 0)),
            );
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn offered_rates(rates: &Rates) -> Vec<u32> {
    match rates {
        Rates::Discrete(v) => v.clone(),
        Rates::Continuous { min, max } => {
            STANDARD_RATES.iter().copied().filter(|r| (*min..=*max).contains(r)).collect()
        }
        Rates::FromClock => Vec::new(),
    }
}

/// Chooses the stream and rate to capture. UAC2 streams must have had their rates resolved
/// from the clock (see [`uac2_rates`]) into `Rates::Discrete` first.
///
/// The rule: only streams with a known sample format qualify, filtered by the request.
/// The rate is the requested one, else 48 kHz, else 44.1 kHz, else the highest offered.
/// Among streams offering that rate, the widest sample format wins (a scope wants the
/// resolution), then the most channels, then the lowest alt setting.
pub fn select_stream(streams: &[AudioStream], req: &StreamRequest) -> Result<(AudioStream, u32), UacError> {
    if streams.is_empty() {
        return Err(UacError::NoStream);
    }
    let fits = |s: &&AudioStream| {
        s.sample.is_some()
            && req.sample.is_none_or(|f| s.sample == Some(f))
            && req.channels.is_none_or(|c| s.channels == c)
            && req.rate.is_none_or(|r| offered_rates(&s.rates).contains(&r))
    };
    let candidates: Vec<&AudioStream> = streams.iter().filter(fits).collect();
    let rate_pref = |s: &AudioStream| -> Option<u32> {
        let offered = offered_rates(&s.rates);
        req.rate
            .or_else(|| [48_000, 44_100].into_iter().find(|r| offered.contains(r)))
            .or_else(|| offered.iter().copied().max())
    };
    let best = candidates.iter().filter_map(|s| Some((*s, rate_pref(s)?))).max_by_key(|(s, rate)| {
        let rate_rank = match *rate {
            48_000 => 2,
            44_100 => 1,
            _ => 0,
        };
        (rate_rank, s.sample.map_or(0, SampleFormat::bits), s.channels, std::cmp::Reverse(s.alt))
    });
    match best {
        Some((s, rate)) => Ok((s.clone(), rate)),
        None => Err(UacError::NoMatch {
            wanted: format!(
                "{} {} {}",
                req.sample.map_or("any format".to_string(), |f| f.to_string()),
                req.channels.map_or("any channels".to_string(), |c| format!("{c} ch")),
                req.rate.map_or("any rate".to_string(), |r| format!("{r} Hz"))
            ),
            offered: streams.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; "),
        }),
    }
}

/// The UAC2 clock source feeding `stream`'s terminal right now, as Linux's
/// `__uac_clock_find_source` finds it: multipliers are followed to their source, a selector
/// with one input to that input, and a selector with several is asked which input it uses
/// (GET_CUR of CX_CLOCK_SELECTOR_CONTROL). `None` when the stream names no clock.
pub fn find_clock_source(
    dev: &mut impl ControlTransfer,
    stream: &AudioStream,
) -> Result<Option<u8>, UacError> {
    let (Some(start), Some(ac)) = (stream.terminal_clock, stream.ac_interface) else {
        return Ok(stream.clock_source);
    };
    let mut id = start;
    for _ in 0..=stream.clocks.len() {
        id = match stream.clocks.iter().find(|c| c.id() == id) {
            None | Some(ClockEntity::Source { .. }) => return Ok(Some(id)),
            Some(ClockEntity::Multiplier { source, .. }) => *source,
            Some(ClockEntity::Selector { sources, .. }) if sources.len() == 1 => sources[0],
            Some(ClockEntity::Selector { id, sources }) => selected_input(dev, ac, *id, sources)?,
        };
    }
    Err(UacError::NoClockSource { start })
}

/// The input a clock selector uses: GET_CUR returns the 1-based pin.
fn selected_input(
    dev: &mut impl ControlTransfer,
    ac: u8,
    selector: u8,
    sources: &[u8],
) -> Result<u8, UacError> {
    let index = u16::from(selector) << 8 | u16::from(ac);
    let mut pin = [0u8; 1];
    let n = dev
        .control_in(0xA1, UAC2_CUR, CLOCK_SELECTOR, index, &mut pin)
        .map_err(|e| control_err("GET_CUR clock selector", e))?;
    if n < 1 {
        return Err(UacError::ShortReply { op: "GET_CUR clock selector", got: n, need: 1 });
    }
    let bad = UacError::BadSelectorPin { selector, pin: pin[0], inputs: sources.len() };
    usize::from(pin[0]).checked_sub(1).and_then(|i| sources.get(i).copied()).ok_or(bad)
}

/// Sets the sample rate for `stream` and reads it back (UAC1: on the endpoint, if it has
/// a sampling frequency control; UAC2: on its clock source). Returns the rate in effect;
/// a device that cannot report it is taken at its word.
pub fn set_sample_rate(
    dev: &mut impl ControlTransfer,
    stream: &AudioStream,
    rate: u32,
) -> Result<u32, UacError> {
    match stream.uac {
        UacVersion::V1 => {
            // As Linux's set_sample_rate_v1: without the endpoint's sampling frequency
            // control there is nothing to set (the device runs at its one rate).
            if stream.endpoint.audio.is_none_or(|a| a.attributes & 0x01 == 0) {
                return Ok(rate);
            }
            let ep = u16::from(stream.endpoint.address);
            let b = rate.to_le_bytes();
            dev.control_out(0x22, SET_CUR, SAMPLING_FREQ, ep, &b[..3])
                .map_err(|e| control_err("SET_CUR sampling frequency", e))?;
            let mut back = [0u8; 3];
            match dev.control_in(0xA2, UAC1_GET_CUR, SAMPLING_FREQ, ep, &mut back) {
                Ok(3) => Ok(u32::from_le_bytes([back[0], back[1], back[2], 0])),
                _ => Ok(rate),
            }
        }
        UacVersion::V2 => {
            let Some(ac) = stream.ac_interface else {
                return Ok(rate); // no control interface: the device's rate is what it is
            };
            let Some(clock) = find_clock_source(dev, stream)? else {
                return Ok(rate); // no clock entity found: the device's rate is what it is
            };
            let index = u16::from(clock) << 8 | u16::from(ac);
            dev.control_out(0x21, UAC2_CUR, SAMPLING_FREQ, index, &rate.to_le_bytes())
                .map_err(|e| control_err("SET_CUR clock frequency", e))?;
            let mut back = [0u8; 4];
            match dev.control_in(0xA1, UAC2_CUR, SAMPLING_FREQ, index, &mut back) {
                Ok(4) => Ok(u32::from_le_bytes(back)),
                _ => Ok(rate),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{VirtualDevice, VirtualDeviceConfig};
    use crate::usb::descriptors;

    /// The virtual UAC device answering control transfers, recording what was asked.
    struct Fake {
        dev: VirtualDevice,
        log: Vec<(u8, u8, u16, u16)>,
        stall_get: bool,
    }

    fn setup(rt: u8, req: u8, value: u16, index: u16, len: usize) -> [u8; 8] {
        let ([v0, v1], [i0, i1], [l0, l1]) =
            (value.to_le_bytes(), index.to_le_bytes(), (len as u16).to_le_bytes());
        [rt, req, v0, v1, i0, i1, l0, l1]
    }

    impl ControlTransfer for Fake {
        fn control_in(
            &mut self,
            rt: u8,
            req: u8,
            value: u16,
            index: u16,
            data: &mut [u8],
        ) -> Result<usize, Errno> {
            self.log.push((rt, req, value, index));
            if self.stall_get {
                return Err(Errno::EPIPE);
            }
            let setup = setup(rt, req, value, index, data.len());
            let v = self.dev.control(setup, &[]).map_err(|e| Errno::from_raw(-e))?;
            data[..v.len()].copy_from_slice(&v);
            Ok(v.len())
        }

        fn control_out(&mut self, rt: u8, req: u8, value: u16, index: u16, data: &[u8]) -> Result<(), Errno> {
            self.log.push((rt, req, value, index));
            let setup = setup(rt, req, value, index, data.len());
            self.dev.control(setup, data).map(|_| ()).map_err(|e| Errno::from_raw(-e))
        }
    }

    fn fake(uac: UacVersion) -> (Fake, Vec<AudioStream>) {
        let dev = VirtualDevice::new(VirtualDeviceConfig { uac, ..VirtualDeviceConfig::default() }).unwrap();
        let streams = descriptors::parse(&dev.descriptor_bytes()).unwrap().audio_streams();
        (Fake { dev, log: Vec::new(), stall_get: false }, streams)
    }

    #[test]
    fn uac2_rates_come_from_the_clock_and_the_rate_is_set_there() {
        let (mut f, mut streams) = fake(UacVersion::V2);
        let ranges = uac2_rates(&mut f, 0, 0x10).unwrap();
        assert_eq!(rates_from_ranges(&ranges), vec![48_000, 96_000]);
        for s in &mut streams {
            s.rates = Rates::Discrete(rates_from_ranges(&ranges));
        }
        let (s, rate) =
            select_stream(&streams, &StreamRequest { rate: Some(96_000), ..Default::default() }).unwrap();
        assert_eq!((s.sample, rate), (Some(SampleFormat::S24_3Le), 96_000));
        assert_eq!(set_sample_rate(&mut f, &s, 96_000).unwrap(), 96_000);
        assert!(f.log.contains(&(0x21, 0x01, 0x0100, 0x1000)), "{:?}", f.log);
        assert_eq!(set_sample_rate(&mut f, &s, 44_100).unwrap_err().to_string(), "SET_CUR clock frequency failed: EPIPE: Broken pipe (the device stalled: it does not support this request)");
    }

    #[test]
    fn clock_rates_name_the_clock_asked() {
        let (mut f, streams) = fake(UacVersion::V2);
        assert_eq!(clock_rates(&mut f, &streams[0]), Ok(Some((0x10, vec![48_000, 96_000]))));
        let mut no_ac = streams[0].clone();
        no_ac.ac_interface = None;
        assert_eq!(clock_rates(&mut f, &no_ac), Ok(None));
    }

    #[test]
    fn uac1_rate_is_set_on_the_endpoint_and_read_back() {
        let (mut f, streams) = fake(UacVersion::V1);
        let (s, rate) = select_stream(&streams, &StreamRequest::default()).unwrap();
        assert_eq!(
            (s.sample, s.alt, rate),
            (Some(SampleFormat::S24_3Le), 2, 48_000),
            "widest format at 48 kHz"
        );
        assert_eq!(set_sample_rate(&mut f, &s, 96_000).unwrap(), 96_000);
        assert!(
            f.log.contains(&(0x22, 0x01, 0x0100, 0x81)) && f.log.contains(&(0xA2, 0x81, 0x0100, 0x81)),
            "{:?}",
            f.log
        );
        // A device that stalls GET_CUR is taken at its word.
        f.stall_get = true;
        assert_eq!(set_sample_rate(&mut f, &s, 48_000).unwrap(), 48_000);
    }

    #[test]
    fn selection_honours_the_request_and_explains_a_mismatch() {
        let (_, streams) = fake(UacVersion::V1);
        let req = StreamRequest { sample: Some(SampleFormat::S16Le), ..Default::default() };
        assert_eq!(select_stream(&streams, &req).unwrap().0.alt, 1);
        let err =
            select_stream(&streams, &StreamRequest { rate: Some(44_100), ..Default::default() }).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("44100 Hz") && msg.contains("48000/96000 Hz"), "{msg}");
        assert_eq!(select_stream(&[], &StreamRequest::default()), Err(UacError::NoStream));
    }

    /// bmRequestType, bRequest, wValue, wIndex.
    type Setup = (u8, u8, u16, u16);

    /// A device that answers from a script of (bmRequestType, bRequest, wValue, wIndex) ->
    /// reply bytes or errno, and records every request with its OUT data.
    #[derive(Default)]
    struct Scripted {
        answers: Vec<(Setup, Result<Vec<u8>, Errno>)>,
        log: Vec<(u8, u8, u16, u16, Vec<u8>)>,
    }

    impl Scripted {
        fn answer(&self, key: Setup) -> Result<Vec<u8>, Errno> {
            self.answers.iter().find(|(k, _)| *k == key).map_or(Err(Errno::EPIPE), |(_, a)| a.clone())
        }
    }

    impl ControlTransfer for Scripted {
        fn control_in(
            &mut self,
            rt: u8,
            req: u8,
            value: u16,
            index: u16,
            data: &mut [u8],
        ) -> Result<usize, Errno> {
            self.log.push((rt, req, value, index, Vec::new()));
            let reply = self.answer((rt, req, value, index))?;
            let n = reply.len().min(data.len());
            data[..n].copy_from_slice(&reply[..n]);
            Ok(n)
        }

        fn control_out(&mut self, rt: u8, req: u8, value: u16, index: u16, data: &[u8]) -> Result<(), Errno> {
            self.log.push((rt, req, value, index, data.to_vec()));
            self.answer((rt, req, value, index)).map(|_| ())
        }
    }

    /// Interface 1 of a UAC2 function whose clock is selector 40 (inputs: clock source 41,
    /// multiplier 43 of source 42); AC interface 0. The terminals are left out, so the
    /// terminal's clock is filled in by hand.
    fn selector_stream() -> AudioStream {
        let streams = descriptors::parse(&[
            9, 2, 97, 0, 2, 1, 0, 0x80, 50, 9, 4, 0, 0, 0, 1, 1, 0x20, 0, 9, 0x24, 1, 0, 2, 8, 41, 0, 0, 8,
            0x24, 0x0a, 41, 3, 7, 0, 0, 8, 0x24, 0x0a, 42, 0, 5, 0, 0, 7, 0x24, 0x0c, 43, 42, 0, 0, 9, 0x24,
            0x0b, 40, 2, 41, 43, 3, 0, 9, 4, 1, 1, 1, 1, 2, 0x20, 0, 16, 0x24, 1, 2, 0, 1, 1, 0, 0, 0, 2, 3,
            0, 0, 0, 0, 6, 0x24, 2, 1, 3, 24, 7, 5, 0x81, 5, 0x38, 1, 1,
        ])
        .unwrap()
        .audio_streams();
        let mut s = streams[0].clone();
        s.terminal_clock = Some(40);
        s.clock_source = descriptors::static_clock_source(&s.clocks, 40);
        s
    }

    #[test]
    fn a_clock_selector_is_asked_for_its_input_before_the_rate_is_set() {
        let s = selector_stream();
        assert_eq!((s.clock_source, s.ac_interface), (Some(41), Some(0)));
        let mut dev = Scripted::default();
        // Selector 40 (wIndex 40 << 8 | AC 0) is on pin 2 = multiplier 43 -> source 42.
        dev.answers.push(((0xA1, 0x01, 0x0100, 0x2800), Ok(vec![2])));
        dev.answers.push(((0x21, 0x01, 0x0100, 0x2a00), Ok(vec![])));
        dev.answers.push(((0xA1, 0x01, 0x0100, 0x2a00), Ok(44_100u32.to_le_bytes().to_vec())));
        assert_eq!(find_clock_source(&mut dev, &s), Ok(Some(42)));
        assert_eq!(set_sample_rate(&mut dev, &s, 44_100), Ok(44_100));
        assert!(
            dev.log.contains(&(0x21, 0x01, 0x0100, 0x2a00, 44_100u32.to_le_bytes().to_vec())),
            "{:?}",
            dev.log
        );
        // A pin the selector does not have is an error, not an index out of bounds.
        dev.answers[0].1 = Ok(vec![3]);
        assert_eq!(
            find_clock_source(&mut dev, &s),
            Err(UacError::BadSelectorPin { selector: 40, pin: 3, inputs: 2 })
        );
        dev.answers[0].1 = Ok(vec![0]);
        assert!(find_clock_source(&mut dev, &s).is_err(), "pins count from 1");
    }

    #[test]
    fn a_stalled_range_or_selector_request_says_the_device_stalled() {
        let mut dev = Scripted::default();
        let e = uac2_rates(&mut dev, 0, 41).unwrap_err();
        assert_eq!(e, UacError::Control { op: "GET RANGE", errno: Errno::EPIPE, hint: e_hint() });
        assert!(e.to_string().contains("the device stalled"), "{e}");
        let e = find_clock_source(&mut dev, &selector_stream()).unwrap_err();
        assert!(e.to_string().starts_with("GET_CUR clock selector failed: EPIPE"), "{e}");
    }

    fn e_hint() -> &'static str {
        " (the device stalled: it does not support this request)"
    }

    #[test]
    fn uac2_range_replies_are_read_as_subranges_and_short_ones_are_errors() {
        let mut dev = Scripted::default();
        let mut reply = vec![2, 0];
        for (min, max, res) in [(44_100u32, 44_100u32, 0u32), (48_000, 96_000, 48_000)] {
            reply.extend([min, max, res].iter().flat_map(|v| v.to_le_bytes()));
        }
        dev.answers.push(((0xA1, 0x02, 0x0100, 0x0300), Ok(reply)));
        let ranges = uac2_rates(&mut dev, 0, 3).unwrap();
        assert_eq!(rates_from_ranges(&ranges), vec![44_100, 48_000, 96_000]);
        dev.answers[0].1 = Ok(vec![1]);
        assert_eq!(
            uac2_rates(&mut dev, 0, 3),
            Err(UacError::ShortReply { op: "GET RANGE", got: 1, need: 2 })
        );
    }

    #[test]
    fn a_uac1_endpoint_without_the_sampling_frequency_control_is_left_alone() {
        let (_, streams) = fake(UacVersion::V1);
        let mut s = streams[0].clone();
        if let Some(a) = s.endpoint.audio.as_mut() {
            a.attributes = 0;
        }
        let mut dev = Scripted::default();
        assert_eq!(set_sample_rate(&mut dev, &s, 48_000), Ok(48_000));
        assert!(dev.log.is_empty(), "{:?}", dev.log);
    }

    #[test]
    fn continuous_ranges_offer_the_standard_rates_on_their_grid() {
        let r = [RateRange { min: 44_100, max: 96_000, res: 0 }, RateRange { min: 8000, max: 8000, res: 0 }];
        assert_eq!(rates_from_ranges(&r), vec![8000, 44_100, 48_000, 88_200, 96_000]);
        let grid = [RateRange { min: 48_000, max: 192_000, res: 48_000 }];
        assert_eq!(rates_from_ranges(&grid), vec![48_000, 96_000, 192_000]);
    }
}
