//! What the device picker offers (auto, the simulated signals, USB audio capture devices with
//! the rates, channels and formats their descriptors allow), what a hotplug change says, and
//! what the session does about one.

use crate::dsp::SampleFormat;
use crate::usb::descriptors::{AudioStream, Rates};
use crate::usb::discovery::UsbDeviceInfo;

/// One entry of the picker.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceEntry {
    pub selector: String,
    pub label: String,
    /// The rates, channel counts and formats the rate/channels/format menus offer for it.
    pub offers: Offers,
}

/// What a device can stream: from its descriptors for a USB device, anything for the
/// simulated one.
#[derive(Clone, Debug, PartialEq)]
pub struct Offers {
    pub rates: Vec<u32>,
    pub channels: Vec<u16>,
    pub formats: Vec<SampleFormat>,
    /// The rates are the common ones because a UAC2 clock says its own only when asked
    /// (at open); the device may refuse some.
    pub rates_from_clock: bool,
}

/// Rates, channel counts and formats the picker offers.
pub const RATES: [u32; 6] = [44_100, 48_000, 88_200, 96_000, 176_400, 192_000];
pub const CHANNELS: [u16; 4] = [1, 2, 4, 8];
pub const FORMATS: [SampleFormat; 4] =
    [SampleFormat::S16Le, SampleFormat::S24_3Le, SampleFormat::S32Le, SampleFormat::F32Le];

impl Offers {
    /// The simulated device's (and "auto"'s) offer.
    pub fn any() -> Offers {
        Offers {
            rates: RATES.to_vec(),
            channels: CHANNELS.to_vec(),
            formats: FORMATS.to_vec(),
            rates_from_clock: false,
        }
    }

    /// The union over a device's audio capture streams (interface alt settings).
    pub fn from_streams(streams: &[AudioStream]) -> Offers {
        let mut o =
            Offers { rates: Vec::new(), channels: Vec::new(), formats: Vec::new(), rates_from_clock: false };
        for st in streams {
            match &st.rates {
                Rates::Discrete(v) => o.rates.extend(v),
                Rates::Continuous { min, max } => {
                    o.rates.extend(RATES.iter().filter(|r| (*min..=*max).contains(r)))
                }
                Rates::FromClock => {
                    o.rates.extend(RATES);
                    o.rates_from_clock = true;
                }
            }
            o.channels.push(st.channels);
            o.formats.extend(st.sample);
        }
        o.rates.sort_unstable();
        o.rates.dedup();
        o.channels.sort_unstable();
        o.channels.dedup();
        o.formats.sort_by_key(|f| f.bytes());
        o.formats.dedup();
        o
    }
}

/// auto and the simulated signals: what the picker shows before (or without) USB.
pub fn builtin_entries() -> Vec<DeviceEntry> {
    let mut v = vec![DeviceEntry {
        selector: "auto".into(),
        label: "auto (first USB device, else simulated)".into(),
        offers: Offers::any(),
    }];
    for (sel, label) in [
        ("sim:sine:1000", "simulated: sine 1 kHz"),
        ("sim:multitone:440,1000,5000", "simulated: three tones"),
        ("sim:chirp:20-20000", "simulated: chirp 20 Hz-20 kHz"),
        ("sim:square:500", "simulated: square 500 Hz"),
        ("sim:noise", "simulated: white noise"),
    ] {
        v.push(DeviceEntry { selector: sel.into(), label: label.into(), offers: Offers::any() });
    }
    v
}

/// The whole picker: the built-in entries, then `usb`.
pub fn picker_entries(usb: &[DeviceEntry]) -> Vec<DeviceEntry> {
    let mut v = builtin_entries();
    v.extend(usb.iter().cloned());
    v
}

/// The USB audio capture devices among `devices`, as picker entries. A device is named by
/// VID:PID when no other device shares it (stable across replugs and restarts, so the saved
/// choice finds it again), else by BUS:DEV.
pub fn usb_entries(devices: &[UsbDeviceInfo]) -> Vec<DeviceEntry> {
    let twins = |v: u16, p: u16| devices.iter().filter(|d| d.vendor_id == v && d.product_id == p).count();
    devices
        .iter()
        .filter_map(|d| {
            let streams = d.audio_streams().ok()?;
            (!streams.is_empty()).then(|| DeviceEntry {
                selector: if twins(d.vendor_id, d.product_id) == 1 {
                    format!("{:04x}:{:04x}", d.vendor_id, d.product_id)
                } else {
                    format!("{}:{}", d.busnum, d.devnum)
                },
                label: d.label(),
                offers: Offers::from_streams(&streams),
            })
        })
        .collect()
}

/// What changed between two lists of USB entries, said for the screen.
pub fn describe_changes(old: &[DeviceEntry], new: &[DeviceEntry]) -> Option<String> {
    let plugged: Vec<&str> = new
        .iter()
        .filter(|e| !old.iter().any(|o| o.selector == e.selector))
        .map(|e| e.label.as_str())
        .collect();
    let unplugged: Vec<&str> = old
        .iter()
        .filter(|o| !new.iter().any(|e| e.selector == o.selector))
        .map(|e| e.label.as_str())
        .collect();
    let mut parts = Vec::new();
    if !plugged.is_empty() {
        parts.push(format!("plugged in: {}", plugged.join(", ")));
    }
    if !unplugged.is_empty() {
        parts.push(format!("unplugged: {}", unplugged.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Where the capture stands when the USB list changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureState<'a> {
    /// The selector the user chose.
    pub device: &'a str,
    pub running: bool,
    /// The running capture is the simulated device.
    pub simulated: bool,
    /// The last capture ended because its device was unplugged.
    pub unplugged: bool,
}

/// What the session does about a hotplug change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotplugAction {
    /// "auto" runs on the simulated device and a USB device appeared: move to it.
    Restart,
    /// The device whose unplug ended the capture is back: start again.
    Start,
}

/// The session's hotplug rule, given the USB entries before and after a change.
pub fn hotplug_action(
    old: &[DeviceEntry],
    new: &[DeviceEntry],
    st: CaptureState<'_>,
) -> Option<HotplugAction> {
    let appeared = |sel: Option<&str>| {
        new.iter()
            .any(|e| sel.is_none_or(|s| e.selector == s) && !old.iter().any(|o| o.selector == e.selector))
    };
    if st.device == "auto" && st.running && st.simulated && appeared(None) {
        Some(HotplugAction::Restart)
    } else if !st.running && st.unplugged && appeared(Some(st.device)) {
        Some(HotplugAction::Start)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{UacVersion, VirtualDevice, VirtualDeviceConfig};

    fn offers(uac: UacVersion, channels: u16) -> Offers {
        let dev = VirtualDevice::new(VirtualDeviceConfig { uac, channels, ..Default::default() }).unwrap();
        let parsed = crate::usb::descriptors::parse(&dev.descriptor_bytes()).unwrap();
        Offers::from_streams(&parsed.audio_streams())
    }

    #[test]
    fn the_menus_offer_what_the_descriptors_say() {
        // UAC1 lists its rates in the format descriptor.
        let o = offers(UacVersion::V1, 4);
        assert_eq!(o.channels, vec![4]);
        assert_eq!(o.formats, vec![SampleFormat::S16Le, SampleFormat::S24_3Le]);
        assert!(!o.rates_from_clock);
        assert!(o.rates.contains(&48_000) && !o.rates.contains(&44_100), "{:?}", o.rates);
        // UAC2 rates live in the clock: the common ones are offered and marked so.
        let o = offers(UacVersion::V2, 2);
        assert_eq!(o.channels, vec![2]);
        assert!(o.rates_from_clock);
        assert_eq!(o.rates, RATES.to_vec());
    }

    fn e(s: &str) -> DeviceEntry {
        DeviceEntry { selector: s.into(), label: format!("dev {s}"), offers: Offers::any() }
    }

    #[test]
    fn hotplug_changes_are_said_by_label() {
        assert_eq!(describe_changes(&[e("1:2")], &[e("1:2")]), None);
        assert_eq!(
            describe_changes(&[e("1:2")], &[e("1:3")]).as_deref(),
            Some("plugged in: dev 1:3; unplugged: dev 1:2")
        );
    }

    #[test]
    fn auto_moves_to_a_new_device_and_an_unplugged_one_resumes_when_back() {
        let st =
            |device, running, simulated, unplugged| CaptureState { device, running, simulated, unplugged };
        let (none, one) = (vec![], vec![e("1209:0001")]);
        assert_eq!(hotplug_action(&none, &one, st("auto", true, true, false)), Some(HotplugAction::Restart));
        // Not on the simulated device, or not auto: nothing.
        assert_eq!(hotplug_action(&none, &one, st("auto", true, false, false)), None);
        assert_eq!(hotplug_action(&none, &one, st("sim", true, true, false)), None);
        // The unplugged device is back: start; another device: nothing.
        assert_eq!(
            hotplug_action(&none, &one, st("1209:0001", false, false, true)),
            Some(HotplugAction::Start)
        );
        assert_eq!(hotplug_action(&none, &[e("1:9")], st("1209:0001", false, false, true)), None);
        // Stopped by the user (not unplugged): nothing.
        assert_eq!(hotplug_action(&none, &one, st("1209:0001", false, false, false)), None);
        // An unplug is said but changes nothing.
        assert_eq!(hotplug_action(&one, &none, st("1209:0001", true, false, false)), None);
    }
}
