//! USB descriptors from raw bytes: device, configuration, interface association, interface
//! (every alt setting), endpoint, SuperSpeed companion, and the USB Audio Class 1 and 2
//! class-specific descriptors. Pure and panic-free: truncated or inconsistent input is a
//! typed error naming the byte offset; devices that merely lie about counts get warnings.

use std::fmt::Write as _;

use crate::dsp::SampleFormat;

use super::Speed;

/// The USB Audio Class version an interface speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum UacVersion {
    /// UAC 1.0 (bcdADC 0x0100; interface protocol 0).
    V1,
    /// UAC 2.0 (bcdADC 0x0200; interface protocol 0x20).
    V2,
}

/// Why descriptor bytes could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptorError {
    #[error("empty descriptor data")]
    Empty,
    #[error(
        "descriptor at byte {offset} has bLength {length}: a descriptor is at least 2 bytes \
         (bLength, bDescriptorType)"
    )]
    ZeroLength { offset: usize, length: u8 },
    #[error("descriptor at byte {offset} claims {length} bytes (bLength) but only {available} remain")]
    Truncated { offset: usize, length: usize, available: usize },
    #[error("{name} descriptor at byte {offset} is {got} bytes long; it needs at least {need}")]
    TooShort { offset: usize, name: &'static str, got: usize, need: usize },
    #[error("configuration at byte {offset} has wTotalLength {total}, less than its own 9 bytes")]
    BadTotalLength { offset: usize, total: usize },
    #[error("the first descriptor (byte 0) is of type {0:#04x}; expected a device (0x01) or configuration (0x02) descriptor")]
    UnexpectedStart(u8),
}

/// A descriptor isoscope does not interpret, kept as bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RawDescriptor {
    pub descriptor_type: u8,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceDescriptor {
    pub usb_version: u16,
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
    pub max_packet_size0: u8,
    pub vendor_id: u16,
    pub product_id: u16,
    pub device_version: u16,
    pub manufacturer_index: u8,
    pub product_index: u8,
    pub serial_index: u8,
    pub num_configurations: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InterfaceAssociation {
    pub first_interface: u8,
    pub interface_count: u8,
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
}

/// SuperSpeed endpoint companion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SsCompanion {
    pub max_burst: u8,
    pub attributes: u8,
    pub bytes_per_interval: u16,
}

/// Class-specific audio endpoint descriptor (EP_GENERAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AudioEndpoint {
    /// UAC1: bit 0 sampling frequency control, bit 1 pitch; UAC2: bit 7 MaxPacketsOnly.
    pub attributes: u8,
    pub lock_delay_units: u8,
    pub lock_delay: u16,
}

/// Transfer type of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TransferType {
    Control,
    Isochronous,
    Bulk,
    Interrupt,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    pub address: u8,
    pub attributes: u8,
    /// Raw wMaxPacketSize (bits 11-12: extra transactions per microframe at high speed).
    pub max_packet_size: u16,
    pub interval: u8,
    pub ss_companion: Option<SsCompanion>,
    pub audio: Option<AudioEndpoint>,
}

impl Endpoint {
    pub fn is_in(&self) -> bool {
        self.address & 0x80 != 0
    }

    pub fn transfer_type(&self) -> TransferType {
        match self.attributes & 3 {
            0 => TransferType::Control,
            1 => TransferType::Isochronous,
            2 => TransferType::Bulk,
            _ => TransferType::Interrupt,
        }
    }

    /// Iso synchronization: "none", "async", "adaptive", "sync".
    pub fn sync_type(&self) -> &'static str {
        ["none", "async", "adaptive", "sync"][usize::from((self.attributes >> 2) & 3)]
    }

    /// Iso usage: "data", "feedback", "implicit feedback data".
    pub fn usage_type(&self) -> &'static str {
        ["data", "feedback", "implicit feedback data", "reserved"][usize::from((self.attributes >> 4) & 3)]
    }

    /// Bytes the endpoint moves per service interval at `speed`.
    pub fn bytes_per_interval(&self, speed: Speed) -> u32 {
        let base = u32::from(self.max_packet_size & 0x7ff);
        match speed {
            Speed::Low | Speed::Full => base,
            Speed::High => base * (1 + u32::from((self.max_packet_size >> 11) & 3)),
            Speed::Super | Speed::SuperPlus => match self.ss_companion {
                Some(c) if c.bytes_per_interval > 0 => u32::from(c.bytes_per_interval),
                Some(c) => base * (u32::from(c.max_burst) + 1) * (u32::from(c.attributes & 3) + 1),
                None => base,
            },
        }
    }

    /// Iso interval in (micro)frames: 2^(bInterval-1), bInterval clamped to 1..=16.
    pub fn interval_frames(&self) -> u32 {
        1 << (self.interval.clamp(1, 16) - 1)
    }
}

/// Sample rates as a format descriptor states them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Rates {
    Discrete(Vec<u32>),
    Continuous {
        min: u32,
        max: u32,
    },
    /// UAC2: rates come from the clock source (GET RANGE), not from the descriptors.
    FromClock,
}

impl Rates {
    pub fn contains(&self, rate: u32) -> Option<bool> {
        match self {
            Rates::Discrete(v) => Some(v.contains(&rate)),
            Rates::Continuous { min, max } => Some((*min..=*max).contains(&rate)),
            Rates::FromClock => None,
        }
    }
}

impl std::fmt::Display for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rates::Discrete(v) => {
                let s: Vec<String> = v.iter().map(u32::to_string).collect();
                write!(f, "{} Hz", s.join("/"))
            }
            Rates::Continuous { min, max } => write!(f, "{min}-{max} Hz"),
            Rates::FromClock => f.write_str("rates from the clock source"),
        }
    }
}

/// A class-specific audio interface descriptor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum AudioDescriptor {
    AcHeader {
        uac: UacVersion,
        adc: u16,
        total_length: u16,
        interfaces: Vec<u8>,
        category: Option<u8>,
    },
    ClockSource {
        id: u8,
        attributes: u8,
        controls: u8,
        assoc_terminal: u8,
    },
    ClockSelector {
        id: u8,
        sources: Vec<u8>,
    },
    ClockMultiplier {
        id: u8,
        source: u8,
    },
    InputTerminal {
        id: u8,
        terminal_type: u16,
        channels: u8,
        clock_source: Option<u8>,
    },
    OutputTerminal {
        id: u8,
        terminal_type: u16,
        source_id: u8,
        clock_source: Option<u8>,
    },
    FeatureUnit {
        id: u8,
        source_id: u8,
    },
    /// UAC1: bTerminalLink, bDelay, wFormatTag. UAC2: bTerminalLink, bmControls, bFormatType,
    /// bmFormats, bNrChannels, bmChannelConfig.
    AsGeneral {
        terminal_link: u8,
        delay: Option<u8>,
        format_tag: Option<u16>,
        controls: Option<u8>,
        format_type: Option<u8>,
        formats: Option<u32>,
        channels: Option<u8>,
        channel_config: Option<u32>,
    },
    FormatTypeI {
        channels: Option<u8>,
        subslot_size: u8,
        bit_resolution: u8,
        rates: Rates,
    },
    Other {
        subtype: u8,
        bytes: Vec<u8>,
    },
}

/// One alt setting of one interface.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InterfaceAlt {
    pub number: u8,
    pub alt: u8,
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
    pub num_endpoints: u8,
    pub endpoints: Vec<Endpoint>,
    pub audio: Vec<AudioDescriptor>,
    pub extra: Vec<RawDescriptor>,
}

impl InterfaceAlt {
    /// The audio class version this interface speaks: protocol 0 is UAC1, 0x20
    /// (IP_VERSION_02_00) UAC2. `None` for non-audio interfaces and for other protocols
    /// (UAC3 is 0x30), whose class descriptors isoscope keeps raw instead of misreading.
    pub fn uac(&self) -> Option<UacVersion> {
        match (self.class, self.protocol) {
            (1, 0x00) => Some(UacVersion::V1),
            (1, 0x20) => Some(UacVersion::V2),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigDescriptor {
    pub value: u8,
    pub attributes: u8,
    pub max_power_ma: u16,
    pub num_interfaces: u8,
    pub interfaces: Vec<InterfaceAlt>,
    pub associations: Vec<InterfaceAssociation>,
}

/// A device's whole descriptor set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceDescriptors {
    pub device: Option<DeviceDescriptor>,
    pub configs: Vec<ConfigDescriptor>,
    /// Inconsistencies real devices have (wrong counts, stray descriptors): not fatal.
    pub warnings: Vec<String>,
}

/// An audio streaming alt setting with an iso IN data endpoint: something to capture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AudioStream {
    /// The bConfigurationValue of the configuration the stream belongs to: a device streams
    /// only from its active configuration.
    pub configuration: u8,
    pub interface: u8,
    pub alt: u8,
    pub uac: UacVersion,
    pub endpoint: Endpoint,
    pub sample: Option<SampleFormat>,
    pub channels: u16,
    pub rates: Rates,
    /// Where `rates` came from when not from the descriptors: "from clock source 3 (GET
    /// RANGE)", "from snd-usb-audio, /proc/asound/card1/stream0".
    pub rates_from: Option<String>,
    pub terminal_link: u8,
    /// UAC2: the clock source feeding the linked terminal, found by following clock
    /// multipliers and selectors (a selector at its first input; see [`ClockEntity`]).
    pub clock_source: Option<u8>,
    /// UAC2: the clock entity the linked terminal names (bCSourceID): a source, selector or
    /// multiplier.
    pub terminal_clock: Option<u8>,
    /// UAC2: the function's clock entities, for resolving selectors at run time.
    pub clocks: Vec<ClockEntity>,
    /// The audio control interface of the function.
    pub ac_interface: Option<u8>,
}

impl AudioStream {
    /// One line about the stream; the endpoint's interval in time when the bus `speed` is
    /// known ("every 1 ms (8 microframes)"), else in (micro)frames.
    pub fn summary(&self, speed: Option<Speed>) -> String {
        format!(
            "interface {} alt {}: EP {:#04x} IN iso {}, {} {} ch, {}{}, {} B/packet every {}",
            self.interface,
            self.alt,
            self.endpoint.address,
            self.endpoint.sync_type(),
            self.sample.map_or("unsupported format", SampleFormat::name),
            self.channels,
            self.rates,
            self.rates_from.as_ref().map(|f| format!(" ({f})")).unwrap_or_default(),
            self.endpoint.max_packet_size & 0x7ff,
            super::interval_text(speed, self.endpoint.interval_frames())
        )
    }
}

impl std::fmt::Display for AudioStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary(None))
    }
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u24le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], 0])
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn need(d: &[u8], offset: usize, name: &'static str, n: usize) -> Result<(), DescriptorError> {
    if d.len() < n {
        Err(DescriptorError::TooShort { offset, name, got: d.len(), need: n })
    } else {
        Ok(())
    }
}

/// Splits `bytes` into descriptors, checking every bLength.
fn split(bytes: &[u8], base: usize) -> Result<Vec<(usize, &[u8])>, DescriptorError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = bytes[at];
        if len < 2 {
            // A lone trailing zero byte is padding some devices add; anything else is broken.
            if at + 1 == bytes.len() && len == 0 {
                break;
            }
            return Err(DescriptorError::ZeroLength { offset: base + at, length: len });
        }
        let len = usize::from(len);
        if at + len > bytes.len() {
            return Err(DescriptorError::Truncated {
                offset: base + at,
                length: len,
                available: bytes.len() - at,
            });
        }
        out.push((base + at, &bytes[at..at + len]));
        at += len;
    }
    Ok(out)
}

/// The one descriptor starting at `bytes[at]`, its bLength checked against what remains.
/// `bytes` must hold at least two bytes from `at`.
fn framed(bytes: &[u8], at: usize) -> Result<&[u8], DescriptorError> {
    let rest = bytes.get(at..).unwrap_or_default();
    let len = rest.first().copied().unwrap_or(0);
    if len < 2 {
        return Err(DescriptorError::ZeroLength { offset: at, length: len });
    }
    rest.get(..usize::from(len)).ok_or(DescriptorError::Truncated {
        offset: at,
        length: usize::from(len),
        available: rest.len(),
    })
}

/// Parses a device's descriptor set: an 18-byte device descriptor followed by its
/// configuration(s) (sysfs `descriptors`), or configuration descriptors alone.
pub fn parse(bytes: &[u8]) -> Result<DeviceDescriptors, DescriptorError> {
    if bytes.len() < 2 {
        return Err(DescriptorError::Empty);
    }
    let mut warnings = Vec::new();
    let mut at = 0;
    let mut device = None;
    if bytes[1] == 1 {
        let d = framed(bytes, 0)?;
        need(d, 0, "device", 18)?;
        device = Some(DeviceDescriptor {
            usb_version: u16le(d, 2),
            class: d[4],
            subclass: d[5],
            protocol: d[6],
            max_packet_size0: d[7],
            vendor_id: u16le(d, 8),
            product_id: u16le(d, 10),
            device_version: u16le(d, 12),
            manufacturer_index: d[14],
            product_index: d[15],
            serial_index: d[16],
            num_configurations: d[17],
        });
        at = d.len();
    } else if bytes[1] != 2 {
        return Err(DescriptorError::UnexpectedStart(bytes[1]));
    }
    let mut configs = Vec::new();
    while at < bytes.len() {
        if bytes.len() - at < 9 || bytes[at + 1] != 2 {
            if bytes[at..].iter().all(|&b| b == 0) {
                break; // padding
            }
            need(&bytes[at..], at, "configuration", 9)?;
            let d = framed(bytes, at)?;
            warnings.push(format!(
                "byte {at}: descriptor of type {:#04x} outside any configuration skipped",
                d[1]
            ));
            at += d.len();
            continue;
        }
        let total = usize::from(u16le(bytes, at + 2));
        if total < 9 {
            return Err(DescriptorError::BadTotalLength { offset: at, total });
        }
        let end = if at + total > bytes.len() {
            warnings.push(format!(
                "configuration at byte {at}: wTotalLength {total} runs past the data ({} bytes); parsed what is there",
                bytes.len() - at
            ));
            bytes.len()
        } else {
            at + total
        };
        configs.push(parse_config(&bytes[at..end], at, &mut warnings)?);
        at = end;
    }
    Ok(DeviceDescriptors { device, configs, warnings })
}

fn parse_config(
    bytes: &[u8],
    base: usize,
    warnings: &mut Vec<String>,
) -> Result<ConfigDescriptor, DescriptorError> {
    let descs = split(bytes, base)?;
    let (_, c) = descs[0];
    need(c, base, "configuration", 9)?;
    let mut cfg = ConfigDescriptor {
        value: c[5],
        attributes: c[7],
        max_power_ma: u16::from(c[8]) * 2,
        num_interfaces: c[4],
        interfaces: Vec::new(),
        associations: Vec::new(),
    };
    for &(offset, d) in &descs[1..] {
        match d[1] {
            0x0B => {
                need(d, offset, "interface association", 8)?;
                cfg.associations.push(InterfaceAssociation {
                    first_interface: d[2],
                    interface_count: d[3],
                    class: d[4],
                    subclass: d[5],
                    protocol: d[6],
                });
            }
            0x04 => {
                need(d, offset, "interface", 9)?;
                cfg.interfaces.push(InterfaceAlt {
                    number: d[2],
                    alt: d[3],
                    num_endpoints: d[4],
                    class: d[5],
                    subclass: d[6],
                    protocol: d[7],
                    endpoints: Vec::new(),
                    audio: Vec::new(),
                    extra: Vec::new(),
                });
            }
            0x05 => {
                need(d, offset, "endpoint", 7)?;
                let Some(intf) = cfg.interfaces.last_mut() else {
                    warnings.push(format!("byte {offset}: endpoint before any interface skipped"));
                    continue;
                };
                intf.endpoints.push(Endpoint {
                    address: d[2],
                    attributes: d[3],
                    max_packet_size: u16le(d, 4),
                    interval: d[6],
                    ss_companion: None,
                    audio: None,
                });
            }
            0x30 => {
                need(d, offset, "SuperSpeed endpoint companion", 6)?;
                if let Some(ep) = cfg.interfaces.last_mut().and_then(|i| i.endpoints.last_mut()) {
                    ep.ss_companion = Some(SsCompanion {
                        max_burst: d[2],
                        attributes: d[3],
                        bytes_per_interval: u16le(d, 4),
                    });
                }
            }
            0x24 => {
                let Some(intf) = cfg.interfaces.last_mut() else {
                    warnings.push(format!(
                        "byte {offset}: class-specific descriptor before any interface skipped"
                    ));
                    continue;
                };
                match intf.uac() {
                    Some(uac) => {
                        let a = parse_audio_interface(d, offset, intf.subclass, uac)?;
                        intf.audio.push(a);
                    }
                    None => intf.extra.push(RawDescriptor { descriptor_type: d[1], bytes: d.to_vec() }),
                }
            }
            0x25 => {
                let Some(intf) = cfg.interfaces.last_mut() else { continue };
                let v2 = intf.uac() == Some(UacVersion::V2);
                // Only audio streaming endpoints carry EP_GENERAL in this layout (MIDI
                // streaming's MS_GENERAL shares the subtype but not the layout).
                let audio_streaming = intf.uac().is_some() && intf.subclass == 2;
                if let (true, Some(ep)) = (audio_streaming, intf.endpoints.last_mut()) {
                    if d.len() >= 3 && d[2] == 0x01 {
                        let n = if v2 { 8 } else { 7 };
                        need(d, offset, "audio endpoint", n)?;
                        ep.audio = Some(if v2 {
                            AudioEndpoint {
                                attributes: d[3],
                                lock_delay_units: d[5],
                                lock_delay: u16le(d, 6),
                            }
                        } else {
                            AudioEndpoint {
                                attributes: d[3],
                                lock_delay_units: d[4],
                                lock_delay: u16le(d, 5),
                            }
                        });
                        continue;
                    }
                }
                intf.extra.push(RawDescriptor { descriptor_type: d[1], bytes: d.to_vec() });
            }
            t => {
                if let Some(intf) = cfg.interfaces.last_mut() {
                    intf.extra.push(RawDescriptor { descriptor_type: t, bytes: d.to_vec() });
                }
            }
        }
    }
    for i in &cfg.interfaces {
        if i.class == 1 && i.uac().is_none() && !i.extra.is_empty() {
            warnings.push(format!(
                "interface {} alt {} speaks audio class protocol {:#04x} (UAC3 is 0x30), which isoscope does not \
                 interpret: its class-specific descriptors are kept raw",
                i.number, i.alt, i.protocol
            ));
        }
        if i.endpoints.len() != usize::from(i.num_endpoints) {
            warnings.push(format!(
                "interface {} alt {} says {} endpoints but has {}",
                i.number,
                i.alt,
                i.num_endpoints,
                i.endpoints.len()
            ));
        }
    }
    let mut numbers: Vec<u8> = cfg.interfaces.iter().map(|i| i.number).collect();
    numbers.dedup();
    if numbers.len() != usize::from(cfg.num_interfaces) {
        warnings.push(format!(
            "configuration {} says {} interfaces but has {}",
            cfg.value,
            cfg.num_interfaces,
            numbers.len()
        ));
    }
    Ok(cfg)
}

fn parse_audio_interface(
    d: &[u8],
    offset: usize,
    subclass: u8,
    uac: UacVersion,
) -> Result<AudioDescriptor, DescriptorError> {
    need(d, offset, "class-specific audio", 3)?;
    let v2 = uac == UacVersion::V2;
    let subtype = d[2];
    Ok(match (subclass, subtype) {
        (1, 0x01) => {
            // The header's own bcdADC decides the layout (some UAC2 devices say protocol 0).
            need(d, offset, "AC header", 8)?;
            let adc = u16le(d, 3);
            if adc >= 0x0200 {
                need(d, offset, "AC header (UAC2)", 9)?;
                AudioDescriptor::AcHeader {
                    uac: UacVersion::V2,
                    adc,
                    total_length: u16le(d, 6),
                    interfaces: Vec::new(),
                    category: Some(d[5]),
                }
            } else {
                let n = usize::from(d[7]);
                need(d, offset, "AC header", 8 + n)?;
                AudioDescriptor::AcHeader {
                    uac: UacVersion::V1,
                    adc,
                    total_length: u16le(d, 5),
                    interfaces: d[8..8 + n].to_vec(),
                    category: None,
                }
            }
        }
        (1, 0x02) if v2 => {
            need(d, offset, "input terminal (UAC2)", 17)?;
            AudioDescriptor::InputTerminal {
                id: d[3],
                terminal_type: u16le(d, 4),
                channels: d[8],
                clock_source: Some(d[7]),
            }
        }
        (1, 0x02) => {
            need(d, offset, "input terminal", 12)?;
            AudioDescriptor::InputTerminal {
                id: d[3],
                terminal_type: u16le(d, 4),
                channels: d[7],
                clock_source: None,
            }
        }
        (1, 0x03) if v2 => {
            need(d, offset, "output terminal (UAC2)", 12)?;
            AudioDescriptor::OutputTerminal {
                id: d[3],
                terminal_type: u16le(d, 4),
                source_id: d[7],
                clock_source: Some(d[8]),
            }
        }
        (1, 0x03) => {
            need(d, offset, "output terminal", 9)?;
            AudioDescriptor::OutputTerminal {
                id: d[3],
                terminal_type: u16le(d, 4),
                source_id: d[7],
                clock_source: None,
            }
        }
        (1, 0x06) => {
            need(d, offset, "feature unit", 5)?;
            AudioDescriptor::FeatureUnit { id: d[3], source_id: d[4] }
        }
        (1, 0x0A) if v2 => {
            need(d, offset, "clock source", 8)?;
            AudioDescriptor::ClockSource { id: d[3], attributes: d[4], controls: d[5], assoc_terminal: d[6] }
        }
        (1, 0x0B) if v2 => {
            need(d, offset, "clock selector", 5)?;
            let n = usize::from(d[4]);
            need(d, offset, "clock selector", 5 + n)?;
            AudioDescriptor::ClockSelector { id: d[3], sources: d[5..5 + n].to_vec() }
        }
        (1, 0x0C) if v2 => {
            need(d, offset, "clock multiplier", 5)?;
            AudioDescriptor::ClockMultiplier { id: d[3], source: d[4] }
        }
        (2, 0x01) if v2 => {
            need(d, offset, "AS general (UAC2)", 16)?;
            AudioDescriptor::AsGeneral {
                terminal_link: d[3],
                delay: None,
                format_tag: None,
                controls: Some(d[4]),
                format_type: Some(d[5]),
                formats: Some(u32le(d, 6)),
                channels: Some(d[10]),
                channel_config: Some(u32le(d, 11)),
            }
        }
        (2, 0x01) => {
            need(d, offset, "AS general", 7)?;
            AudioDescriptor::AsGeneral {
                terminal_link: d[3],
                delay: Some(d[4]),
                format_tag: Some(u16le(d, 5)),
                controls: None,
                format_type: None,
                formats: None,
                channels: None,
                channel_config: None,
            }
        }
        (2, 0x02) if d.len() > 3 && d[3] == 1 => {
            if v2 {
                need(d, offset, "format type I (UAC2)", 6)?;
                AudioDescriptor::FormatTypeI {
                    channels: None,
                    subslot_size: d[4],
                    bit_resolution: d[5],
                    rates: Rates::FromClock,
                }
            } else {
                need(d, offset, "format type I", 8)?;
                let n = usize::from(d[7]);
                let rates = if n == 0 {
                    need(d, offset, "format type I (continuous rates)", 14)?;
                    Rates::Continuous { min: u24le(d, 8), max: u24le(d, 11) }
                } else {
                    need(d, offset, "format type I (discrete rates)", 8 + 3 * n)?;
                    Rates::Discrete((0..n).map(|i| u24le(d, 8 + 3 * i)).collect())
                };
                AudioDescriptor::FormatTypeI {
                    channels: Some(d[4]),
                    subslot_size: d[5],
                    bit_resolution: d[6],
                    rates,
                }
            }
        }
        _ => AudioDescriptor::Other { subtype, bytes: d.to_vec() },
    })
}

/// Which Type I encodings an AS interface names: UAC1 wFormatTag (1 PCM, 2 PCM8, 3
/// IEEE_FLOAT) or UAC2 bmFormats (bit 0 PCM, bit 1 PCM8, bit 2 IEEE_FLOAT).
#[derive(Clone, Copy)]
struct Encodings {
    pcm: bool,
    pcm8: bool,
    float: bool,
}

impl Encodings {
    fn new(tag: Option<u16>, formats: Option<u32>) -> Encodings {
        let bit = |b: u32| formats.is_some_and(|f| f & (1 << b) != 0);
        Encodings {
            pcm: tag == Some(1) || bit(0),
            pcm8: tag == Some(2) || bit(1),
            float: tag == Some(3) || (bit(2) && !bit(0)),
        }
    }
}

/// The sample format a Type I format's subslot size and bit resolution describe. One-byte
/// subslots follow Linux's snd-usb-audio (sound/usb/format.c): PCM is S8, PCM8 is U8.
fn sample_format(subslot: u8, bits: u8, enc: Encodings) -> Option<SampleFormat> {
    Some(match (subslot, bits, enc.float) {
        (4, 32, true) => SampleFormat::F32Le,
        (1, _, false) if enc.pcm => SampleFormat::S8,
        (1, _, false) if enc.pcm8 => SampleFormat::U8,
        (2, 9..=16, false) => SampleFormat::S16Le,
        (3, 17..=24, false) => SampleFormat::S24_3Le,
        (4, 17..=24, false) => SampleFormat::S24_4Le,
        (4, 25..=32, false) => SampleFormat::S32Le,
        _ => return None,
    })
}

/// What an AS alt setting's AS_GENERAL and FORMAT_TYPE descriptors say.
struct StreamFormat {
    terminal_link: u8,
    sample: Option<SampleFormat>,
    channels: u16,
    rates: Rates,
}

fn stream_format(intf: &InterfaceAlt) -> StreamFormat {
    let (mut link, mut tag, mut formats, mut as_channels) = (0, None, None, None);
    let (mut subslot, mut bits, mut fmt_channels, mut rates) = (0, 0, None, Rates::FromClock);
    for a in &intf.audio {
        match a {
            AudioDescriptor::AsGeneral { terminal_link, format_tag, formats: f, channels, .. } => {
                (link, tag, formats, as_channels) = (*terminal_link, *format_tag, *f, *channels);
            }
            AudioDescriptor::FormatTypeI { channels, subslot_size, bit_resolution, rates: r } => {
                (subslot, bits, fmt_channels, rates) = (*subslot_size, *bit_resolution, *channels, r.clone());
            }
            _ => {}
        }
    }
    StreamFormat {
        terminal_link: link,
        sample: sample_format(subslot, bits, Encodings::new(tag, formats)),
        channels: u16::from(fmt_channels.or(as_channels).unwrap_or(0)),
        rates,
    }
}

fn interface_range(a: &InterfaceAssociation) -> std::ops::Range<u8> {
    a.first_interface..a.first_interface.saturating_add(a.interface_count)
}

/// The audio control interface of the function `intf` belongs to: the one whose UAC1
/// header lists it (baInterfaceNr), else the one in the same interface association, else
/// the configuration's first.
fn control_interface_for(cfg: &ConfigDescriptor, intf: u8) -> Option<&InterfaceAlt> {
    let controls = || cfg.interfaces.iter().filter(|i| i.uac().is_some() && i.subclass == 1);
    let listed = controls().find(|i| {
        i.audio
            .iter()
            .any(|a| matches!(a, AudioDescriptor::AcHeader { interfaces, .. } if interfaces.contains(&intf)))
    });
    let iad = cfg.associations.iter().find(|a| interface_range(a).contains(&intf));
    let associated = || iad.and_then(|a| controls().find(|i| interface_range(a).contains(&i.number)));
    listed.or_else(associated).or_else(|| controls().next())
}

/// A UAC2 clock entity: where a terminal's sample clock comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum ClockEntity {
    Source {
        id: u8,
    },
    /// Its current input is a run-time setting (GET_CUR of the clock selector control).
    Selector {
        id: u8,
        sources: Vec<u8>,
    },
    Multiplier {
        id: u8,
        source: u8,
    },
}

impl ClockEntity {
    pub fn id(&self) -> u8 {
        match self {
            ClockEntity::Source { id }
            | ClockEntity::Selector { id, .. }
            | ClockEntity::Multiplier { id, .. } => *id,
        }
    }
}

fn clock_entities(ac: &InterfaceAlt) -> Vec<ClockEntity> {
    ac.audio
        .iter()
        .filter_map(|a| match a {
            AudioDescriptor::ClockSource { id, .. } => Some(ClockEntity::Source { id: *id }),
            AudioDescriptor::ClockSelector { id, sources } => {
                Some(ClockEntity::Selector { id: *id, sources: sources.clone() })
            }
            AudioDescriptor::ClockMultiplier { id, source } => {
                Some(ClockEntity::Multiplier { id: *id, source: *source })
            }
            _ => None,
        })
        .collect()
}

/// Follows multipliers and selectors from `start` to a clock source, as far as the
/// descriptors alone tell: a selector is taken at its first input (its live input is
/// asked for by [`crate::usb::uac::find_clock_source`]). An id naming no clock entity is
/// returned as is (the device may simply not describe its clock); a loop yields `None`.
pub fn static_clock_source(clocks: &[ClockEntity], start: u8) -> Option<u8> {
    let mut id = start;
    for _ in 0..=clocks.len() {
        id = match clocks.iter().find(|c| c.id() == id) {
            None | Some(ClockEntity::Source { .. }) => return Some(id),
            Some(ClockEntity::Multiplier { source, .. }) => *source,
            Some(ClockEntity::Selector { sources, .. }) => *sources.first()?,
        };
    }
    None
}

/// The bCSourceID of the terminal with id `link` in `ac`.
fn terminal_clock(ac: &InterfaceAlt, link: u8) -> Option<u8> {
    ac.audio.iter().find_map(|a| match a {
        AudioDescriptor::OutputTerminal { id, clock_source, .. }
        | AudioDescriptor::InputTerminal { id, clock_source, .. }
            if *id == link =>
        {
            *clock_source
        }
        _ => None,
    })
}

/// The iso IN data endpoint of an AS alt setting (not an explicit feedback endpoint).
fn capture_endpoint(intf: &InterfaceAlt) -> Option<&Endpoint> {
    intf.endpoints
        .iter()
        .find(|e| e.is_in() && e.transfer_type() == TransferType::Isochronous && e.usage_type() != "feedback")
}

fn audio_stream(cfg: &ConfigDescriptor, intf: &InterfaceAlt, uac: UacVersion, ep: &Endpoint) -> AudioStream {
    let format = stream_format(intf);
    let ac = control_interface_for(cfg, intf.number);
    let clocks = ac.map(clock_entities).unwrap_or_default();
    let terminal_clock = ac.and_then(|ac| terminal_clock(ac, format.terminal_link));
    AudioStream {
        configuration: cfg.value,
        interface: intf.number,
        alt: intf.alt,
        uac,
        endpoint: ep.clone(),
        sample: format.sample,
        channels: format.channels,
        rates: format.rates,
        rates_from: None,
        terminal_link: format.terminal_link,
        clock_source: terminal_clock.and_then(|c| static_clock_source(&clocks, c)),
        terminal_clock,
        clocks,
        ac_interface: ac.map(|a| a.number),
    }
}

impl DeviceDescriptors {
    /// Every UAC1/UAC2 audio streaming alt setting with an iso IN data endpoint, in every
    /// configuration (each stream names its own; see [`DeviceDescriptors::streams_of`]).
    pub fn audio_streams(&self) -> Vec<AudioStream> {
        let mut out = Vec::new();
        for cfg in &self.configs {
            for intf in cfg.interfaces.iter().filter(|i| i.subclass == 2) {
                if let (Some(uac), Some(ep)) = (intf.uac(), capture_endpoint(intf)) {
                    out.push(audio_stream(cfg, intf, uac, ep));
                }
            }
        }
        out
    }

    /// The streams of configuration `active` (the device's bConfigurationValue), the only
    /// ones it can stream from; with `None` (not known, e.g. a descriptor file), all of them.
    pub fn streams_of(&self, active: Option<u8>) -> Vec<AudioStream> {
        let mut streams = self.audio_streams();
        if let Some(active) = active {
            streams.retain(|s| s.configuration == active);
        }
        streams
    }

    /// The bus speed the descriptors alone prove: full speed for a USB 1.x device (bcdUSB
    /// below 2.00); otherwise not known.
    pub fn known_speed(&self) -> Option<Speed> {
        self.device.as_ref().filter(|d| d.usb_version < 0x0200).map(|_| Speed::Full)
    }

    /// "configuration 2 (active)" where a stream's configuration needs saying: on a device
    /// with several configurations. `None` for a device with one.
    pub fn configuration_label(&self, configuration: u8, active: Option<u8>) -> Option<String> {
        (self.configs.len() > 1).then(|| match active {
            Some(a) if a == configuration => format!("configuration {configuration} (active)"),
            Some(_) => format!("configuration {configuration} (not active)"),
            None => format!("configuration {configuration}"),
        })
    }

    /// [`DeviceDescriptors::render_with`] with what the descriptors alone say.
    pub fn render(&self) -> String {
        self.render_with(&self.audio_streams(), self.known_speed(), None)
    }

    /// A listing close to `lsusb -v`, then one line per stream of `streams` (this device's,
    /// perhaps with rates asked of the device), grouped by configuration when there are
    /// several (`active`: the device's bConfigurationValue).
    pub fn render_with(&self, streams: &[AudioStream], speed: Option<Speed>, active: Option<u8>) -> String {
        let mut s = String::new();
        if let Some(d) = &self.device {
            let _ = writeln!(s, "Device Descriptor:");
            let _ =
                writeln!(s, "  bcdUSB              {:x}.{:02x}", d.usb_version >> 8, d.usb_version & 0xff);
            let _ = writeln!(s, "  bDeviceClass        {:3}", d.class);
            let _ = writeln!(s, "  bDeviceSubClass     {:3}", d.subclass);
            let _ = writeln!(s, "  bDeviceProtocol     {:3}", d.protocol);
            let _ = writeln!(s, "  bMaxPacketSize0     {:3}", d.max_packet_size0);
            let _ = writeln!(s, "  idVendor         0x{:04x}", d.vendor_id);
            let _ = writeln!(s, "  idProduct        0x{:04x}", d.product_id);
            let _ = writeln!(
                s,
                "  bcdDevice           {:x}.{:02x}",
                d.device_version >> 8,
                d.device_version & 0xff
            );
            let _ = writeln!(s, "  bNumConfigurations  {:3}", d.num_configurations);
        }
        for c in &self.configs {
            let _ = writeln!(s, "  Configuration Descriptor:");
            let _ = writeln!(s, "    bNumInterfaces      {:3}", c.num_interfaces);
            let _ = writeln!(s, "    bConfigurationValue {:3}", c.value);
            let _ = writeln!(s, "    bmAttributes       0x{:02x}", c.attributes);
            let _ = writeln!(s, "    MaxPower          {:4}mA", c.max_power_ma);
            for a in &c.associations {
                let _ = writeln!(s, "    Interface Association:");
                let _ = writeln!(s, "      bFirstInterface   {:3}", a.first_interface);
                let _ = writeln!(s, "      bInterfaceCount   {:3}", a.interface_count);
                let _ = writeln!(s, "      bFunctionClass    {:3}", a.class);
                let _ = writeln!(s, "      bFunctionProtocol {:3}", a.protocol);
            }
            for i in &c.interfaces {
                render_interface(&mut s, i);
            }
        }
        let mut heading = None;
        for st in streams {
            let label = self.configuration_label(st.configuration, active);
            if heading != Some(label.clone()) {
                let _ = match &label {
                    Some(l) => writeln!(s, "Audio streams (iso IN) of {l}:"),
                    None => writeln!(s, "Audio streams (iso IN):"),
                };
                heading = Some(label);
            }
            let _ = writeln!(s, "  {}", st.summary(speed));
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }
}

fn render_interface(s: &mut String, i: &InterfaceAlt) {
    let kind = match (i.class, i.subclass) {
        (1, 1) => " Audio Control",
        (1, 2) => " Audio Streaming",
        (1, 3) => " MIDI Streaming",
        _ => "",
    };
    let _ = writeln!(s, "    Interface Descriptor:");
    let _ = writeln!(s, "      bInterfaceNumber    {:3}", i.number);
    let _ = writeln!(s, "      bAlternateSetting   {:3}", i.alt);
    let _ = writeln!(s, "      bNumEndpoints       {:3}", i.num_endpoints);
    let _ =
        writeln!(s, "      bInterfaceClass     {:3}{}", i.class, if i.class == 1 { " Audio" } else { "" });
    let _ = writeln!(s, "      bInterfaceSubClass  {:3}{kind}", i.subclass);
    let _ = writeln!(s, "      bInterfaceProtocol  {:3}", i.protocol);
    for a in &i.audio {
        let line = match a {
            AudioDescriptor::AcHeader { uac, adc, total_length, interfaces, category } => format!(
                "AudioControl Interface Descriptor: HEADER ({uac:?}) bcdADC {:x}.{:02x} wTotalLength {total_length}{}{}",
                adc >> 8,
                adc & 0xff,
                category.map(|c| format!(" bCategory {c}")).unwrap_or_default(),
                if interfaces.is_empty() { String::new() } else { format!(" baInterfaceNr {interfaces:?}") }
            ),
            AudioDescriptor::ClockSource { id, attributes, controls, assoc_terminal } => {
                format!("AudioControl Interface Descriptor: CLOCK_SOURCE bClockID {id} bmAttributes 0x{attributes:02x} bmControls 0x{controls:02x} bAssocTerminal {assoc_terminal}")
            }
            AudioDescriptor::ClockSelector { id, sources } => {
                format!("AudioControl Interface Descriptor: CLOCK_SELECTOR bClockID {id} sources {sources:?}")
            }
            AudioDescriptor::ClockMultiplier { id, source } => {
                format!("AudioControl Interface Descriptor: CLOCK_MULTIPLIER bClockID {id} bCSourceID {source}")
            }
            AudioDescriptor::InputTerminal { id, terminal_type, channels, clock_source } => format!(
                "AudioControl Interface Descriptor: INPUT_TERMINAL bTerminalID {id} wTerminalType 0x{terminal_type:04x} bNrChannels {channels}{}",
                clock_source.map(|c| format!(" bCSourceID {c}")).unwrap_or_default()
            ),
            AudioDescriptor::OutputTerminal { id, terminal_type, source_id, clock_source } => format!(
                "AudioControl Interface Descriptor: OUTPUT_TERMINAL bTerminalID {id} wTerminalType 0x{terminal_type:04x} bSourceID {source_id}{}",
                clock_source.map(|c| format!(" bCSourceID {c}")).unwrap_or_default()
            ),
            AudioDescriptor::FeatureUnit { id, source_id } => {
                format!("AudioControl Interface Descriptor: FEATURE_UNIT bUnitID {id} bSourceID {source_id}")
            }
            AudioDescriptor::AsGeneral { terminal_link, delay, format_tag, controls, format_type, formats, channels, channel_config } => format!(
                "AudioStreaming Interface Descriptor: AS_GENERAL bTerminalLink {terminal_link}{}{}{}{}{}{}{}",
                delay.map(|d| format!(" bDelay {d}")).unwrap_or_default(),
                format_tag.map(|t| format!(" wFormatTag 0x{t:04x}")).unwrap_or_default(),
                controls.map(|c| format!(" bmControls 0x{c:02x}")).unwrap_or_default(),
                format_type.map(|t| format!(" bFormatType {t}")).unwrap_or_default(),
                formats.map(|f| format!(" bmFormats 0x{f:08x}")).unwrap_or_default(),
                channels.map(|c| format!(" bNrChannels {c}")).unwrap_or_default(),
                channel_config.map(|c| format!(" bmChannelConfig 0x{c:08x}")).unwrap_or_default()
            ),
            AudioDescriptor::FormatTypeI { channels, subslot_size, bit_resolution, rates } => format!(
                "AudioStreaming Interface Descriptor: FORMAT_TYPE I{} bSubslotSize {subslot_size} bBitResolution {bit_resolution} {rates}",
                channels.map(|c| format!(" bNrChannels {c}")).unwrap_or_default()
            ),
            AudioDescriptor::Other { subtype, bytes } => {
                format!("Audio Interface Descriptor: subtype 0x{subtype:02x}, {} bytes", bytes.len())
            }
        };
        let _ = writeln!(s, "      {line}");
    }
    for e in &i.endpoints {
        let mps = e.max_packet_size;
        let extra = (mps >> 11) & 3;
        let _ = writeln!(s, "      Endpoint Descriptor:");
        let _ = writeln!(
            s,
            "        bEndpointAddress     0x{:02x}  EP {} {}",
            e.address,
            e.address & 0xf,
            if e.is_in() { "IN" } else { "OUT" }
        );
        let _ = writeln!(
            s,
            "        bmAttributes           {:3}  {:?}{}",
            e.attributes,
            e.transfer_type(),
            if e.transfer_type() == TransferType::Isochronous {
                format!(" {} {}", e.sync_type(), e.usage_type())
            } else {
                String::new()
            }
        );
        let _ = writeln!(s, "        wMaxPacketSize     0x{mps:04x}  {}x {} bytes", extra + 1, mps & 0x7ff);
        let _ = writeln!(s, "        bInterval              {:3}", e.interval);
        if let Some(c) = e.ss_companion {
            let _ = writeln!(
                s,
                "        SuperSpeed Companion: bMaxBurst {} bmAttributes 0x{:02x} wBytesPerInterval {}",
                c.max_burst, c.attributes, c.bytes_per_interval
            );
        }
        if let Some(a) = e.audio {
            let _ = writeln!(
                s,
                "        AudioStreaming Endpoint Descriptor: EP_GENERAL bmAttributes 0x{:02x} bLockDelayUnits {} wLockDelay {}",
                a.attributes, a.lock_delay_units, a.lock_delay
            );
        }
    }
}

#[cfg(test)]
mod tests;
