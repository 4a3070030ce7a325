//! The virtual USB Audio Class capture device behind `isoscope virtual-device`, apart from
//! any wire transport: its descriptors (UAC2 at high speed, or UAC1 at full speed), the
//! standard and class control requests a host driver sends, configuration and alt setting
//! state, its iso IN stream, which follows the in-process simulator's signal and fault
//! schedule so a capture can be verified, and its status interrupts (the audio control
//! interface's interrupt IN endpoint, which reports a change of the sample clock). The transports ([`super::usbip`] for vhci-hcd,
//! [`super::usbredir`] for QEMU's emulated host controllers) carry it and pace it; neither
//! knows the other.

use nix::libc;

use crate::dsp::{PcmFormat, SampleFormat};
use crate::sim::{Faults, PacketPlan, Schedule, Signal, SimConfig, SimDevice, SimError};
pub use crate::usb::descriptors::UacVersion;
use crate::usb::Speed;

/// pid.codes' test VID and a PID from its test range.
pub const VENDOR_ID: u16 = 0x1209;
pub const PRODUCT_ID: u16 = 0x0001;
/// The clock source entity (UAC2) and terminals.
const CLOCK_ID: u8 = 0x10;
const INPUT_TERMINAL_ID: u8 = 0x01;
const OUTPUT_TERMINAL_ID: u8 = 0x02;
/// The audio streaming interface (interface 0 is audio control).
pub const AS_INTERFACE: u8 = 1;
/// The iso IN endpoint of the streaming interface's alt settings.
pub const ISO_ENDPOINT: u8 = 0x81;
/// The interrupt IN endpoint of the audio control interface (UAC's status endpoint).
pub const STATUS_ENDPOINT: u8 = 0x82;
/// Status messages the device keeps for a host that has no transfer waiting on the status
/// endpoint; older ones are dropped (they describe a state that has changed since).
const STATUS_QUEUE: usize = 4;
/// Sample rates offered.
pub const RATES: [u32; 2] = [48_000, 96_000];
/// Sample formats of alt settings 1, 2, ...
pub const ALT_FORMATS: [SampleFormat; 2] = [SampleFormat::S16Le, SampleFormat::S24_3Le];

/// How the virtual device behaves.
#[derive(Clone, Debug)]
pub struct VirtualDeviceConfig {
    pub uac: UacVersion,
    pub channels: u16,
    pub signal: Signal,
    pub faults: Faults,
    pub seed: u64,
}

impl Default for VirtualDeviceConfig {
    fn default() -> Self {
        VirtualDeviceConfig {
            uac: UacVersion::V2,
            channels: 2,
            signal: Signal::default(),
            faults: Faults::default(),
            seed: 1,
        }
    }
}

impl VirtualDeviceConfig {
    pub fn speed(&self) -> Speed {
        match self.uac {
            UacVersion::V1 => Speed::Full,
            UacVersion::V2 => Speed::High,
        }
    }

    /// The in-process twin of the stream for `sample` at `rate`: the same signal, packet
    /// sizes and fault schedule. `isoscope capture --verify` builds the same one to check
    /// a capture of this device.
    pub fn stream_twin(&self, sample: SampleFormat, rate: u32) -> Result<SimDevice, SimError> {
        SimDevice::new(SimConfig {
            signal: self.signal.clone(),
            format: PcmFormat { sample, channels: self.channels, rate },
            speed: self.speed(),
            interval: 1,
            faults: self.faults,
            realtime: true,
            seed: self.seed,
            ..SimConfig::default()
        })
    }
}

/// One status interrupt: UAC2's interrupt data message (6 bytes: bInfo, bAttribute, wValue,
/// wIndex) or UAC1's status word (2 bytes: bStatusType, bOriginator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusMessage {
    bytes: [u8; 6],
    len: u8,
}

impl StatusMessage {
    /// UAC2: the CUR value of control `selector` (channel 0) of entity `entity` changed.
    fn uac2_cur_changed(selector: u8, entity: u8) -> StatusMessage {
        // bInfo 0: class-specific, from an interface (interface 0); bAttribute 1: CUR.
        StatusMessage { bytes: [0x00, 0x01, 0x00, selector, 0x00, entity], len: 6 }
    }

    /// UAC1: the AS endpoint `endpoint` has a pending status (its sampling frequency).
    fn uac1_endpoint_status(endpoint: u8) -> StatusMessage {
        // bStatusType: D7 interrupt pending, D3..0 originator 2 = AS endpoint.
        StatusMessage { bytes: [0x82, endpoint, 0, 0, 0, 0], len: 2 }
    }

    /// The bytes the status endpoint sends.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A USB request that the device refuses (a STALL: -EPIPE on the host).
pub const STALL: i32 = -libc::EPIPE;

/// An active iso IN stream.
struct Stream {
    table: std::sync::Arc<crate::sim::PcmTable>,
    schedule: Schedule,
    frame_bytes: usize,
    /// Stream frame the next packet starts with.
    pos: u64,
}

/// The device's state as the host sets it up.
pub struct VirtualDevice {
    cfg: VirtualDeviceConfig,
    device_descriptor: Vec<u8>,
    config_descriptor: Vec<u8>,
    configuration: u8,
    alt: u8,
    rate: u32,
    stream: Option<Stream>,
    /// Bus (micro)frame counter for start_frame.
    frame: u32,
    /// Rendered streams by (format, rate): SET_INTERFACE and SET_CUR answer without
    /// rendering the signal again.
    twins: Vec<(SampleFormat, u32, SimDevice)>,
    /// Status interrupts not yet sent, oldest first (at most [`STATUS_QUEUE`]).
    status: std::collections::VecDeque<StatusMessage>,
}

impl VirtualDevice {
    pub fn new(cfg: VirtualDeviceConfig) -> Result<VirtualDevice, SimError> {
        if !(1..=8).contains(&cfg.channels) {
            return Err(SimError::Config(format!(
                "the virtual device has 1 to 8 channels, not {}",
                cfg.channels
            )));
        }
        // Render once to validate the signal (a bad WAV path fails here, not mid-stream).
        let first = cfg.stream_twin(ALT_FORMATS[0], RATES[0])?;
        let (device_descriptor, config_descriptor) = descriptors(&cfg);
        Ok(VirtualDevice {
            cfg,
            device_descriptor,
            config_descriptor,
            configuration: 0,
            alt: 0,
            rate: RATES[0],
            stream: None,
            frame: 0,
            twins: vec![(ALT_FORMATS[0], RATES[0], first)],
            status: std::collections::VecDeque::with_capacity(STATUS_QUEUE),
        })
    }

    pub fn config(&self) -> &VirtualDeviceConfig {
        &self.cfg
    }

    /// The full descriptor set as sysfs `descriptors` shows it: device then configuration.
    pub fn descriptor_bytes(&self) -> Vec<u8> {
        [self.device_descriptor.as_slice(), self.config_descriptor.as_slice()].concat()
    }

    /// Writes the device as sysfs shows it (`busnum`, `devnum`, `idVendor`, `idProduct`,
    /// `descriptors`) into `root/1-1`, as if plugged into bus 1: hotplug and discovery tests
    /// plug it into a folder that stands in for `/sys/bus/usb/devices`. Returns the folder
    /// (remove it to unplug).
    pub fn write_sysfs(&self, root: &std::path::Path, devnum: u8) -> std::io::Result<std::path::PathBuf> {
        let d = root.join("1-1");
        std::fs::create_dir_all(&d)?;
        let dd = &self.device_descriptor;
        let id = |at: usize| format!("{:04x}\n", u16::from_le_bytes([dd[at], dd[at + 1]]));
        for (f, v) in [
            ("busnum", "1\n".to_string()),
            ("devnum", format!("{devnum}\n")),
            ("idVendor", id(8)),
            ("idProduct", id(10)),
        ] {
            std::fs::write(d.join(f), v)?;
        }
        std::fs::write(d.join("descriptors"), self.descriptor_bytes())?;
        Ok(d)
    }

    /// The device descriptor (18 bytes).
    pub fn device_descriptor(&self) -> &[u8] {
        &self.device_descriptor
    }

    /// The configuration descriptor with everything below it.
    pub fn config_descriptor(&self) -> &[u8] {
        &self.config_descriptor
    }

    /// The configuration the host selected (0: not configured).
    pub fn configuration(&self) -> u8 {
        self.configuration
    }

    /// The alt setting of `interface` (0 for audio control, and for an unknown interface).
    pub fn alt_setting(&self, interface: u8) -> u8 {
        if interface == AS_INTERFACE {
            self.alt
        } else {
            0
        }
    }

    /// `(number, class, subclass, protocol)` of each interface of the configuration.
    pub fn interfaces(&self) -> [(u8, u8, u8, u8); 2] {
        let proto = match self.cfg.uac {
            UacVersion::V2 => 0x20,
            UacVersion::V1 => 0,
        };
        [(0, 1, 1, proto), (AS_INTERFACE, 1, 2, proto)]
    }

    /// The bus speed the device runs at.
    pub fn speed(&self) -> Speed {
        self.cfg.speed()
    }

    /// Bytes the iso endpoint may carry per packet in the current alt setting (0 when the
    /// streaming interface is at alt 0).
    pub fn iso_max_packet(&self) -> u16 {
        match self.alt {
            0 => 0,
            alt => max_packet(&self.cfg, ALT_FORMATS[usize::from(alt) - 1]),
        }
    }

    /// wMaxPacketSize of the status endpoint: one message per transfer.
    pub fn status_max_packet(&self) -> u16 {
        match self.cfg.uac {
            UacVersion::V2 => 6,
            UacVersion::V1 => 2,
        }
    }

    /// The oldest status interrupt not yet sent, if any: what the status endpoint answers an
    /// IN transfer with (with none, the endpoint NAKs and the transfer stays pending).
    pub fn take_status(&mut self) -> Option<StatusMessage> {
        self.status.pop_front()
    }

    /// Whether a status interrupt is waiting to be sent.
    pub fn status_pending(&self) -> bool {
        !self.status.is_empty()
    }

    fn push_status(&mut self, m: StatusMessage) {
        if self.status.len() == STATUS_QUEUE {
            self.status.pop_front();
        }
        self.status.push_back(m);
    }

    /// SET_CONFIGURATION: 0 unconfigures, 1 is the one configuration. Puts every
    /// interface back to alt 0 (the stream stops).
    pub fn set_configuration(&mut self, value: u8) -> Result<(), i32> {
        if value > 1 {
            return Err(STALL);
        }
        self.configuration = value;
        self.set_alt(0);
        Ok(())
    }

    /// SET_INTERFACE: alt 0 of either interface, or a streaming alt setting (which starts
    /// the stream at the current rate).
    pub fn set_interface(&mut self, interface: u8, alt: u8) -> Result<(), i32> {
        match (interface, alt) {
            (0, 0) => Ok(()),
            (AS_INTERFACE, alt) if usize::from(alt) <= ALT_FORMATS.len() => {
                self.set_alt(alt);
                Ok(())
            }
            _ => Err(STALL),
        }
    }

    /// Microseconds per iso packet (bInterval 1).
    pub fn packet_us(&self) -> u32 {
        self.cfg.speed().frame_us()
    }

    /// Whether alt setting >= 1 is selected.
    pub fn streaming(&self) -> bool {
        self.stream.is_some()
    }

    /// The current stream format, if streaming.
    pub fn stream_format(&self) -> Option<PcmFormat> {
        self.stream.as_ref().map(|_| PcmFormat {
            sample: ALT_FORMATS[usize::from(self.alt) - 1],
            channels: self.cfg.channels,
            rate: self.rate,
        })
    }

    /// Handles a control transfer on endpoint 0. Returns the IN data (empty for OUT), or
    /// a negative errno (STALL) for a request the device does not support.
    pub fn control(&mut self, setup: [u8; 8], out: &[u8]) -> Result<Vec<u8>, i32> {
        let [rt, req, v0, v1, i0, i1, l0, l1] = setup;
        let (value, index, length) = (
            u16::from_le_bytes([v0, v1]),
            u16::from_le_bytes([i0, i1]),
            usize::from(u16::from_le_bytes([l0, l1])),
        );
        let reply = |mut v: Vec<u8>| {
            v.truncate(length);
            Ok(v)
        };
        match (rt, req) {
            (0x80, 0x06) => match (value >> 8) as u8 {
                1 => reply(self.device_descriptor.clone()),
                2 if value & 0xff == 0 => reply(self.config_descriptor.clone()),
                3 => reply(string_descriptor(value as u8, &self.cfg).ok_or(STALL)?),
                _ => Err(STALL), // no device qualifier, BOS or other-speed config
            },
            (0x00, 0x09) if value <= 1 => self.set_configuration(value as u8).map(|()| Vec::new()),
            (0x80, 0x08) => reply(vec![self.configuration]),
            (0x80..=0x82, 0x00) => reply(vec![0, 0]),
            (0x01, 0x0B) => self.set_interface(index as u8, value as u8).map(|()| Vec::new()),
            (0x81, 0x0A) => match index as u8 {
                0 => reply(vec![0]),
                AS_INTERFACE => reply(vec![self.alt]),
                _ => Err(STALL),
            },
            (0x02, 0x01) => Ok(Vec::new()), // CLEAR_FEATURE(ENDPOINT_HALT)
            _ => self.class_request(rt, req, value, index, out).map(|v| {
                let mut v = v;
                v.truncate(length);
                v
            }),
        }
    }

    fn class_request(&mut self, rt: u8, req: u8, value: u16, index: u16, out: &[u8]) -> Result<Vec<u8>, i32> {
        let (cs, entity) = ((value >> 8) as u8, (index >> 8) as u8);
        match (self.cfg.uac, rt, req) {
            // UAC2 clock source: CUR and RANGE of the sampling frequency, CUR of validity.
            (UacVersion::V2, 0xA1, 0x01) if entity == CLOCK_ID && cs == 0x01 => {
                Ok(self.rate.to_le_bytes().to_vec())
            }
            (UacVersion::V2, 0xA1, 0x01) if entity == CLOCK_ID && cs == 0x02 => Ok(vec![1]),
            (UacVersion::V2, 0xA1, 0x02) if entity == CLOCK_ID && cs == 0x01 => {
                let mut v = (RATES.len() as u16).to_le_bytes().to_vec();
                for r in RATES {
                    for x in [r, r, 0] {
                        v.extend_from_slice(&x.to_le_bytes());
                    }
                }
                Ok(v)
            }
            (UacVersion::V2, 0x21, 0x01) if entity == CLOCK_ID && cs == 0x01 && out.len() >= 4 => {
                self.set_rate(u32::from_le_bytes([out[0], out[1], out[2], out[3]]))
            }
            // UAC1: SAMPLING_FREQ_CONTROL on the endpoint.
            (UacVersion::V1, 0x22, 0x01) if index as u8 == ISO_ENDPOINT && cs == 0x01 && out.len() >= 3 => {
                self.set_rate(u32::from_le_bytes([out[0], out[1], out[2], 0]))
            }
            (UacVersion::V1, 0xA2, 0x81) if index as u8 == ISO_ENDPOINT && cs == 0x01 => {
                Ok(self.rate.to_le_bytes()[..3].to_vec())
            }
            _ => Err(STALL),
        }
    }

    fn set_rate(&mut self, rate: u32) -> Result<Vec<u8>, i32> {
        if !RATES.contains(&rate) {
            return Err(STALL);
        }
        if rate != self.rate {
            // The clock relocks at the new rate: a device says so on its status endpoint
            // (snd-usb-audio turns the UAC2 validity message into an ALSA control event).
            match self.cfg.uac {
                UacVersion::V2 => {
                    self.push_status(StatusMessage::uac2_cur_changed(0x01, CLOCK_ID)); // CS_SAM_FREQ
                    self.push_status(StatusMessage::uac2_cur_changed(0x02, CLOCK_ID));
                    // CS_CLOCK_VALID
                }
                UacVersion::V1 => self.push_status(StatusMessage::uac1_endpoint_status(ISO_ENDPOINT)),
            }
        }
        self.rate = rate;
        if self.alt > 0 {
            self.set_alt(self.alt); // restart the stream at the new rate
        }
        Ok(Vec::new())
    }

    fn set_alt(&mut self, alt: u8) {
        self.alt = alt;
        self.stream = None;
        if alt == 0 {
            return;
        }
        let sample = ALT_FORMATS[usize::from(alt) - 1];
        let rate = self.rate;
        if !self.twins.iter().any(|(s, r, _)| *s == sample && *r == rate) {
            // The configuration was validated in `new`, so a twin builds; if it somehow did
            // not, the stream stays off and the host sees empty packets.
            if let Ok(t) = self.cfg.stream_twin(sample, rate) {
                self.twins.push((sample, rate, t));
            }
        }
        if let Some((_, _, twin)) = self.twins.iter().find(|(s, r, _)| *s == sample && *r == rate) {
            self.stream = Some(Stream {
                table: twin.table(),
                schedule: twin.schedule(),
                frame_bytes: twin.stream().format.frame_bytes(),
                pos: 0,
            });
        }
    }

    /// The next iso IN packet of the stream, at most `limit` bytes (the length the host
    /// asked for, where the transport knows it, else the endpoint's max packet). A packet's
    /// bytes are appended to `data` when it succeeds. With no stream, an empty packet.
    /// Advances the bus (micro)frame counter by one.
    pub fn next_iso_packet(&mut self, limit: u32, data: &mut Vec<u8>) -> IsoPacketOut {
        self.frame = self.frame.wrapping_add(1);
        let Some(s) = &mut self.stream else { return IsoPacketOut::default() };
        let PacketPlan { frames, errno, .. } = s.schedule.next_packet();
        let bytes = frames as usize * s.frame_bytes;
        let out = if errno != 0 {
            IsoPacketOut { actual_length: 0, errno, frames }
        } else if bytes as u32 <= limit {
            let at = data.len();
            data.resize(at + bytes, 0);
            s.table.copy_frames(s.pos, &mut data[at..]);
            IsoPacketOut { actual_length: bytes as u32, errno: 0, frames }
        } else {
            // The host asked for less than the device sends: a babble.
            IsoPacketOut { actual_length: 0, errno: libc::EOVERFLOW, frames }
        };
        s.pos += u64::from(frames);
        out
    }

    /// The bus (micro)frame number of the next packet, 14 bits as a start_frame.
    pub fn frame_number(&self) -> i32 {
        (self.frame & 0x3fff) as i32
    }
}

/// What one iso IN packet carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IsoPacketOut {
    /// Bytes appended to the data (0 for a failed packet).
    pub actual_length: u32,
    /// 0, or the positive errno the packet fails with (its frames are then lost):
    /// EXDEV, EPROTO, EILSEQ from the fault schedule, EOVERFLOW for a packet longer than
    /// the limit.
    pub errno: i32,
    /// Stream frames the packet consumed (sent, or lost with a failed packet).
    pub frames: u32,
}

fn string_descriptor(index: u8, cfg: &VirtualDeviceConfig) -> Option<Vec<u8>> {
    let text = match index {
        0 => return Some(vec![4, 3, 0x09, 0x04]),
        1 => "isoscope".to_string(),
        2 => format!(
            "isoscope virtual {} microphone",
            match cfg.uac {
                UacVersion::V1 => "UAC1",
                UacVersion::V2 => "UAC2",
            }
        ),
        3 => "0001".to_string(),
        _ => return None,
    };
    let mut v = vec![0, 3];
    for u in text.encode_utf16() {
        v.extend_from_slice(&u.to_le_bytes());
    }
    v[0] = v.len() as u8;
    Some(v)
}

/// Bytes per packet an alt setting needs at the highest rate, plus one frame of headroom.
fn max_packet(cfg: &VirtualDeviceConfig, sample: SampleFormat) -> u16 {
    let per_interval =
        (u64::from(RATES[RATES.len() - 1]) * u64::from(cfg.speed().frame_us())).div_ceil(1_000_000);
    ((per_interval + 1) * u64::from(cfg.channels) * sample.bytes() as u64) as u16
}

/// Builds the device and configuration descriptors.
fn descriptors(cfg: &VirtualDeviceConfig) -> (Vec<u8>, Vec<u8>) {
    let v2 = cfg.uac == UacVersion::V2;
    let ch = cfg.channels as u8;
    let chan_mask: u32 = (1u32 << cfg.channels) - 1;
    let (class, sub, proto) = if v2 { (0xEF, 0x02, 0x01) } else { (0, 0, 0) };
    let [vl, vh] = VENDOR_ID.to_le_bytes();
    let [pl, ph] = PRODUCT_ID.to_le_bytes();
    let device = vec![18, 1, 0x00, 0x02, class, sub, proto, 64, vl, vh, pl, ph, 0x00, 0x01, 1, 2, 3, 1];

    let proto_if = if v2 { 0x20 } else { 0 };
    let mut ac = Vec::new(); // class-specific AC descriptors after the header
    if v2 {
        ac.extend_from_slice(&[8, 0x24, 0x0A, CLOCK_ID, 0x03, 0x07, 0, 0]);
        ac.extend_from_slice(&[17, 0x24, 0x02, INPUT_TERMINAL_ID, 0x01, 0x02, 0, CLOCK_ID, ch]);
        ac.extend_from_slice(&chan_mask.to_le_bytes());
        ac.extend_from_slice(&[0, 0, 0, 0]);
        ac.extend_from_slice(&[
            12,
            0x24,
            0x03,
            OUTPUT_TERMINAL_ID,
            0x01,
            0x01,
            0,
            INPUT_TERMINAL_ID,
            CLOCK_ID,
            0,
            0,
            0,
        ]);
    } else {
        ac.extend_from_slice(&[12, 0x24, 0x02, INPUT_TERMINAL_ID, 0x01, 0x02, 0, ch]);
        ac.extend_from_slice(&(chan_mask as u16).to_le_bytes());
        ac.extend_from_slice(&[0, 0]);
        ac.extend_from_slice(&[9, 0x24, 0x03, OUTPUT_TERMINAL_ID, 0x01, 0x01, 0, INPUT_TERMINAL_ID, 0]);
    }
    let header: Vec<u8> = if v2 {
        let total = (9 + ac.len()) as u16;
        let [tl, th] = total.to_le_bytes();
        vec![9, 0x24, 0x01, 0x00, 0x02, 0x03, tl, th, 0]
    } else {
        let total = (9 + ac.len()) as u16;
        let [tl, th] = total.to_le_bytes();
        vec![9, 0x24, 0x01, 0x00, 0x01, tl, th, 1, AS_INTERFACE]
    };

    let mut body = Vec::new();
    if v2 {
        body.extend_from_slice(&[8, 0x0B, 0, 2, 1, 0x00, 0x20, 0]); // interface association
    }
    body.extend_from_slice(&[9, 4, 0, 0, 1, 1, 1, proto_if, 0]);
    body.extend_from_slice(&header);
    body.extend_from_slice(&ac);
    // The status endpoint: interrupt IN, one message per transfer, polled every 16 ms
    // (high speed: 2^(8-1) microframes; full speed: 16 frames). UAC1's has bRefresh and
    // bSynchAddress too.
    if v2 {
        body.extend_from_slice(&[7, 5, STATUS_ENDPOINT, 0x03, 6, 0, 8]);
    } else {
        body.extend_from_slice(&[9, 5, STATUS_ENDPOINT, 0x03, 2, 0, 16, 0, 0]);
    }
    body.extend_from_slice(&[9, 4, AS_INTERFACE, 0, 0, 1, 2, proto_if, 0]);
    for (i, &sample) in ALT_FORMATS.iter().enumerate() {
        let alt = i as u8 + 1;
        let [ml, mh] = max_packet(cfg, sample).to_le_bytes();
        let (subslot, bits) = (sample.bytes() as u8, sample.bits() as u8);
        body.extend_from_slice(&[9, 4, AS_INTERFACE, alt, 1, 1, 2, proto_if, 0]);
        if v2 {
            body.extend_from_slice(&[16, 0x24, 0x01, OUTPUT_TERMINAL_ID, 0, 1, 1, 0, 0, 0, ch]);
            body.extend_from_slice(&chan_mask.to_le_bytes());
            body.push(0);
            body.extend_from_slice(&[6, 0x24, 0x02, 1, subslot, bits]);
            body.extend_from_slice(&[7, 5, ISO_ENDPOINT, 0x05, ml, mh, 1]);
            body.extend_from_slice(&[8, 0x25, 0x01, 0, 0, 0, 0, 0]);
        } else {
            body.extend_from_slice(&[7, 0x24, 0x01, OUTPUT_TERMINAL_ID, 1, 0x01, 0x00]);
            body.extend_from_slice(&[
                8 + 3 * RATES.len() as u8,
                0x24,
                0x02,
                1,
                ch,
                subslot,
                bits,
                RATES.len() as u8,
            ]);
            for r in RATES {
                body.extend_from_slice(&r.to_le_bytes()[..3]);
            }
            body.extend_from_slice(&[9, 5, ISO_ENDPOINT, 0x05, ml, mh, 1, 0, 0]);
            body.extend_from_slice(&[7, 0x25, 0x01, 0x01, 0, 0, 0]);
        }
    }
    let total = (9 + body.len()) as u16;
    let [tl, th] = total.to_le_bytes();
    let mut config = vec![9, 2, tl, th, 2, 1, 0, 0x80, 50];
    config.extend_from_slice(&body);
    (device, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(rt: u8, req: u8, value: u16, index: u16, len: u16) -> [u8; 8] {
        let [v0, v1] = value.to_le_bytes();
        let [i0, i1] = index.to_le_bytes();
        let [l0, l1] = len.to_le_bytes();
        [rt, req, v0, v1, i0, i1, l0, l1]
    }

    /// Walks a descriptor blob: every descriptor's bLength lands exactly on the end.
    fn walk(blob: &[u8]) -> Vec<(u8, u8)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < blob.len() {
            let len = blob[at] as usize;
            assert!(len >= 2 && at + len <= blob.len(), "bad bLength at {at}");
            out.push((blob[at + 1], *blob.get(at + 2).unwrap_or(&0)));
            at += len;
        }
        out
    }

    #[test]
    fn descriptor_sets_are_well_formed_for_both_versions() {
        for uac in [UacVersion::V1, UacVersion::V2] {
            let d =
                VirtualDevice::new(VirtualDeviceConfig { uac, ..VirtualDeviceConfig::default() }).unwrap();
            let cfg = &d.config_descriptor;
            assert_eq!(u16::from_le_bytes([cfg[2], cfg[3]]) as usize, cfg.len());
            let kinds = walk(cfg);
            let endpoints = kinds.iter().filter(|k| k.0 == 5).count();
            assert_eq!(endpoints, ALT_FORMATS.len() + 1, "{uac:?}");
            // The AC header's wTotalLength covers the class-specific AC descriptors.
            let h = cfg.windows(3).position(|w| w == [9, 0x24, 0x01]).unwrap();
            let total_at = if uac == UacVersion::V2 { h + 6 } else { h + 5 };
            let total = u16::from_le_bytes([cfg[total_at], cfg[total_at + 1]]) as usize;
            assert_eq!(walk(&cfg[h..h + total]).len(), 4 - usize::from(uac == UacVersion::V1));
        }
    }

    #[test]
    fn standard_requests_answer_like_a_device() {
        let mut d = VirtualDevice::new(VirtualDeviceConfig::default()).unwrap();
        assert_eq!(d.control(setup(0x80, 6, 0x0100, 0, 8), &[]).unwrap(), d.device_descriptor[..8].to_vec());
        assert_eq!(d.control(setup(0x80, 6, 0x0200, 0, 9), &[]).unwrap().len(), 9);
        let s = d.control(setup(0x80, 6, 0x0302, 0x0409, 255), &[]).unwrap();
        assert_eq!(s[1], 3);
        assert_eq!(d.control(setup(0x80, 6, 0x0600, 0, 10), &[]), Err(STALL));
        assert_eq!(d.control(setup(0x00, 9, 1, 0, 0), &[]), Ok(vec![]));
        assert_eq!(d.control(setup(0x01, 11, 1, 1, 0), &[]), Ok(vec![]));
        assert!(d.streaming());
        assert_eq!(d.control(setup(0x01, 11, 9, 1, 0), &[]), Err(STALL));
        assert_eq!(d.control(setup(0x01, 11, 0, 1, 0), &[]), Ok(vec![]));
        assert!(!d.streaming());
    }

    #[test]
    fn sample_rate_is_set_on_the_clock_in_uac2_and_the_endpoint_in_uac1() {
        let mut d = VirtualDevice::new(VirtualDeviceConfig::default()).unwrap();
        let range = d.control(setup(0xA1, 0x02, 0x0100, u16::from(CLOCK_ID) << 8, 64), &[]).unwrap();
        assert_eq!(range.len(), 2 + 12 * RATES.len());
        assert_eq!(
            d.control(setup(0x21, 0x01, 0x0100, u16::from(CLOCK_ID) << 8, 4), &96_000u32.to_le_bytes()),
            Ok(vec![])
        );
        assert_eq!(
            d.control(setup(0xA1, 0x01, 0x0100, u16::from(CLOCK_ID) << 8, 4), &[]).unwrap(),
            96_000u32.to_le_bytes()
        );
        assert_eq!(
            d.control(setup(0x21, 0x01, 0x0100, u16::from(CLOCK_ID) << 8, 4), &44_100u32.to_le_bytes()),
            Err(STALL)
        );

        let mut d =
            VirtualDevice::new(VirtualDeviceConfig { uac: UacVersion::V1, ..VirtualDeviceConfig::default() })
                .unwrap();
        assert_eq!(d.control(setup(0x22, 0x01, 0x0100, 0x81, 3), &[0x00, 0x77, 0x01]), Ok(vec![])); // 96000
        assert_eq!(d.control(setup(0xA2, 0x81, 0x0100, 0x81, 3), &[]).unwrap(), vec![0x00, 0x77, 0x01]);
    }

    #[test]
    fn the_iso_stream_is_what_the_in_process_twin_verifies() {
        let cfg = VirtualDeviceConfig {
            faults: Faults { short_ratio: 0.3, error_ratio: 0.05, disconnect_after_s: None },
            ..VirtualDeviceConfig::default()
        };
        let mut d = VirtualDevice::new(cfg.clone()).unwrap();
        d.control(setup(0x01, 11, 2, 1, 0), &[]).unwrap(); // alt 2: S24_3
        let mps = u32::from(max_packet(&cfg, SampleFormat::S24_3Le));
        let mut v = cfg.stream_twin(SampleFormat::S24_3Le, 48_000).unwrap().verifier();
        let mut total = 0;
        for _ in 0..4000 {
            let mut data = Vec::new();
            let p = d.next_iso_packet(mps, &mut data);
            assert_eq!(data.len() as u32, p.actual_length);
            assert_eq!(p.errno != 0, p.actual_length == 0 && p.frames > 0);
            v.feed(&data);
            total += data.len();
        }
        assert!(total > 0);
        assert_eq!((v.mismatched(), v.verified()), (0, total as u64 / 6));
    }

    #[test]
    fn a_rate_change_is_reported_on_the_status_endpoint_and_nothing_else_is() {
        let clock = u16::from(CLOCK_ID) << 8;
        let mut d = VirtualDevice::new(VirtualDeviceConfig::default()).unwrap();
        let ep = walk(&d.config_descriptor).into_iter().filter(|k| k.0 == 5).count();
        assert_eq!(ep, ALT_FORMATS.len() + 1);
        // The endpoint descriptor: interrupt IN, one message per transfer.
        let at = d.config_descriptor.windows(4).position(|w| w == [7, 5, STATUS_ENDPOINT, 0x03]).unwrap();
        assert_eq!(u16::from_le_bytes([d.config_descriptor[at + 4], d.config_descriptor[at + 5]]), 6);
        d.control(setup(0x00, 9, 1, 0, 0), &[]).unwrap();
        d.control(setup(0x01, 11, 1, 1, 0), &[]).unwrap();
        assert_eq!(d.take_status(), None, "nothing changed yet");
        // Setting the rate it already runs at changes nothing.
        d.control(setup(0x21, 0x01, 0x0100, clock, 4), &48_000u32.to_le_bytes()).unwrap();
        assert!(!d.status_pending());
        // A refused rate changes nothing either.
        assert_eq!(d.control(setup(0x21, 0x01, 0x0100, clock, 4), &44_100u32.to_le_bytes()), Err(STALL));
        assert!(!d.status_pending());
        d.control(setup(0x21, 0x01, 0x0100, clock, 4), &96_000u32.to_le_bytes()).unwrap();
        let freq = d.take_status().unwrap();
        let valid = d.take_status().unwrap();
        assert_eq!(freq.as_bytes(), [0x00, 0x01, 0x00, 0x01, 0x00, CLOCK_ID]);
        assert_eq!(valid.as_bytes(), [0x00, 0x01, 0x00, 0x02, 0x00, CLOCK_ID]);
        assert_eq!(d.take_status(), None);
        // A host that never polls: the device keeps the newest few, not an unbounded queue.
        for i in 0..20u32 {
            let rate = RATES[(i % 2) as usize];
            d.control(setup(0x21, 0x01, 0x0100, clock, 4), &rate.to_le_bytes()).unwrap();
        }
        let mut kept = 0;
        while d.take_status().is_some() {
            kept += 1;
        }
        assert_eq!(kept, STATUS_QUEUE);

        let mut d =
            VirtualDevice::new(VirtualDeviceConfig { uac: UacVersion::V1, ..VirtualDeviceConfig::default() })
                .unwrap();
        assert_eq!(d.status_max_packet(), 2);
        d.control(setup(0x22, 0x01, 0x0100, 0x81, 3), &[0x00, 0x77, 0x01]).unwrap();
        assert_eq!(d.take_status().unwrap().as_bytes(), [0x82, ISO_ENDPOINT]);
        assert_eq!(d.take_status(), None);
    }
}
