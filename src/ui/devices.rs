//! The device panel: the picker (simulated signals and USB audio capture devices, kept up
//! to date by a hotplug watcher), format and rate from the descriptors, capture mode,
//! run/stop/single. Devices are opened by [`crate::source::open`].

use eframe::egui;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::capture::ModeRequest;
use crate::dsp::SampleFormat;
use crate::usb::discovery;

use super::Command;

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
    pub fn from_streams(streams: &[crate::usb::descriptors::AudioStream]) -> Offers {
        use crate::usb::descriptors::Rates;
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

/// What the picker offers: auto, the simulated signals, and USB audio capture devices.
pub fn available() -> Vec<DeviceEntry> {
    let mut v = available_without_usb();
    v.extend(usb_entries(Path::new(discovery::SYSFS_USB_DEVICES)));
    v
}

/// auto and the simulated signals.
fn available_without_usb() -> Vec<DeviceEntry> {
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

/// The USB audio capture devices under the sysfs folder `root`, as picker entries. A device
/// is named by VID:PID when no other device shares it (stable across replugs and restarts,
/// so the saved choice finds it again), else by BUS:DEV.
pub fn usb_entries(root: &Path) -> Vec<DeviceEntry> {
    discovery::list_devices(root)
        .map(|devices| {
            let twins =
                |v: u16, p: u16| devices.iter().filter(|d| d.vendor_id == v && d.product_id == p).count();
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
        })
        .unwrap_or_default()
}

/// Hotplug: a thread that reads the USB devices in sysfs every `every` and sends the list
/// of audio capture devices whenever it changes (devices appear and vanish without a
/// restart). sysfs is read off the UI thread; the UI only polls a channel.
pub struct DeviceWatcher {
    updates: Receiver<Vec<DeviceEntry>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DeviceWatcher {
    /// Watches `root` (normally `/sys/bus/usb/devices`). The first list is sent at once.
    pub fn start(root: PathBuf, every: Duration) -> DeviceWatcher {
        let (tx, updates) = crossbeam_channel::bounded(4);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("isoscope-hotplug".into())
            .spawn(move || {
                let mut last: Option<Vec<DeviceEntry>> = None;
                while !flag.load(Relaxed) {
                    let now = usb_entries(&root);
                    if last.as_ref() != Some(&now) {
                        if tx.send(now.clone()).is_err() {
                            return;
                        }
                        last = Some(now);
                    }
                    let mut slept = Duration::ZERO;
                    while slept < every && !flag.load(Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                        slept += Duration::from_millis(50);
                    }
                }
            })
            .ok();
        DeviceWatcher { updates, stop, thread }
    }

    /// The newest list, if it changed since the last call.
    pub fn poll(&self) -> Option<Vec<DeviceEntry>> {
        self.updates.try_iter().last()
    }
}

impl Drop for DeviceWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

/// Rates, channel counts and formats the picker offers.
pub const RATES: [u32; 6] = [44_100, 48_000, 88_200, 96_000, 176_400, 192_000];
pub const CHANNELS: [u16; 4] = [1, 2, 4, 8];
pub const FORMATS: [SampleFormat; 4] =
    [SampleFormat::S16Le, SampleFormat::S24_3Le, SampleFormat::S32Le, SampleFormat::F32Le];

/// The picker's state: the list, kept up to date by the hotplug watcher (sysfs is never
/// read on the UI thread per frame).
#[derive(Default)]
pub struct DevicesPanel {
    pub entries: Vec<DeviceEntry>,
    /// USB entries as last seen (the hotplug baseline).
    usb: Option<Vec<DeviceEntry>>,
    watcher: Option<DeviceWatcher>,
    /// The last hotplug change, for the screen.
    pub hotplug: Option<String>,
}

/// What the device bar shows and edits.
pub struct DeviceBar<'a> {
    pub device: &'a mut String,
    pub rate: &'a mut Option<u32>,
    pub channels: &'a mut Option<u16>,
    pub sample: &'a mut Option<String>,
    pub mode: &'a mut ModeRequest,
    pub running: bool,
    /// The running capture is the simulated device (so "auto" moves to a USB device that
    /// is plugged in).
    pub simulated: bool,
    /// The last capture ended because its device was unplugged (so it starts again when
    /// the device comes back).
    pub unplugged: bool,
}

impl DevicesPanel {
    /// A panel watching `root` for hotplug (the app uses sysfs; tests use a fake tree).
    pub fn watching(root: PathBuf, every: Duration) -> DevicesPanel {
        DevicesPanel { watcher: Some(DeviceWatcher::start(root, every)), ..DevicesPanel::default() }
    }

    /// Takes a new list from the watcher; says what changed, and asks for a restart when
    /// "auto" shows the simulated device and a USB device appeared, or when the device in
    /// use vanished (the capture reports the disconnect itself).
    pub fn hotplug(&mut self, bar: &DeviceBar<'_>, cmds: &mut Vec<Command>) {
        let Some(new) = self.watcher.as_ref().and_then(DeviceWatcher::poll) else { return };
        if let Some(old) = &self.usb {
            self.hotplug = describe_changes(old, &new);
            let appeared = new.iter().any(|e| !old.iter().any(|o| o.selector == e.selector));
            if appeared && bar.device.as_str() == "auto" && bar.running && bar.simulated {
                cmds.push(Command::Restart);
            }
            let back = new
                .iter()
                .any(|e| e.selector == *bar.device && !old.iter().any(|o| o.selector == e.selector));
            if back && !bar.running && bar.unplugged {
                cmds.push(Command::Start);
            }
        }
        let mut entries = available_without_usb();
        entries.extend(new.iter().cloned());
        self.entries = entries;
        self.usb = Some(new);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, bar: DeviceBar<'_>, cmds: &mut Vec<Command>) {
        if self.watcher.is_none() {
            self.watcher = Some(DeviceWatcher::start(
                PathBuf::from(discovery::SYSFS_USB_DEVICES),
                Duration::from_secs(1),
            ));
        }
        self.hotplug(&bar, cmds);
        if self.entries.is_empty() {
            self.entries = available_without_usb();
        }
        let current = self
            .entries
            .iter()
            .find(|e| e.selector == *bar.device)
            .map_or_else(|| bar.device.clone(), |e| e.label.clone());
        let mut changed = false;
        egui::ComboBox::from_id_salt("device").width(230.0).selected_text(current).show_ui(ui, |ui| {
            for e in &self.entries {
                changed |= ui.selectable_value(bar.device, e.selector.clone(), &e.label).changed();
            }
        });
        if ui
            .button("⟳")
            .on_hover_text("Read the device list again (it also follows hotplug by itself)")
            .clicked()
        {
            self.entries = available();
        }
        static ANY: std::sync::LazyLock<Offers> = std::sync::LazyLock::new(Offers::any);
        if changed {
            // A new device: keep only the choices it offers.
            if let Some(e) = self.entries.iter().find(|e| e.selector == *bar.device) {
                let o = &e.offers;
                bar.rate.take_if(|r| !o.rates.contains(r));
                bar.channels.take_if(|c| !o.channels.contains(c));
                bar.sample.take_if(|f| !o.formats.iter().any(|x| x.name() == f.as_str()));
            }
        }
        let offers = self.entries.iter().find(|e| e.selector == *bar.device).map_or(&*ANY, |e| &e.offers);
        let rate_text = bar.rate.map_or("rate: default".to_string(), |r| format!("{r} Hz"));
        let rates = egui::ComboBox::from_id_salt("rate").selected_text(rate_text).show_ui(ui, |ui| {
            changed |= ui.selectable_value(bar.rate, None, "default").changed();
            for &r in &offers.rates {
                changed |= ui.selectable_value(bar.rate, Some(r), format!("{r} Hz")).changed();
            }
        });
        if offers.rates_from_clock {
            rates.response.on_hover_text(
                "A UAC2 device says its rates only when asked: isoscope asks its clock when it opens it \
                 and says so if the rate is refused.",
            );
        }
        let ch_text = bar.channels.map_or("channels: default".to_string(), |c| format!("{c} ch"));
        egui::ComboBox::from_id_salt("channels").selected_text(ch_text).show_ui(ui, |ui| {
            changed |= ui.selectable_value(bar.channels, None, "default").changed();
            for &c in &offers.channels {
                changed |= ui.selectable_value(bar.channels, Some(c), format!("{c} ch")).changed();
            }
        });
        let fmt_text = bar.sample.clone().unwrap_or_else(|| "format: default".into());
        egui::ComboBox::from_id_salt("format").selected_text(fmt_text).show_ui(ui, |ui| {
            changed |= ui.selectable_value(bar.sample, None, "default").changed();
            for &f in &offers.formats {
                changed |= ui.selectable_value(bar.sample, Some(f.name().to_string()), f.name()).changed();
            }
        });
        let mode_text = mode_name(*bar.mode);
        egui::ComboBox::from_id_salt("mode").selected_text(mode_text).show_ui(ui, |ui| {
            for m in [ModeRequest::Auto, ModeRequest::ZeroCopy, ModeRequest::Copy] {
                changed |= ui.selectable_value(bar.mode, m, mode_name(m)).changed();
            }
        });
        if changed && bar.running {
            cmds.push(Command::Restart);
        }
        ui.separator();
        if bar.running {
            if ui.button("⏹ Stop").on_hover_text("Stop the capture (Space)").clicked() {
                cmds.push(Command::Stop);
            }
        } else if ui.button("▶ Run").on_hover_text("Start the capture (Space)").clicked() {
            cmds.push(Command::Start);
        }
        if ui.button("Single").on_hover_text("Capture until one trigger, then stop (S)").clicked() {
            cmds.push(Command::Single);
        }
    }
}

pub fn mode_name(m: ModeRequest) -> &'static str {
    match m {
        ModeRequest::Auto => "mode: auto",
        ModeRequest::ZeroCopy => "mode: zero-copy",
        ModeRequest::Copy => "mode: copy",
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

    #[test]
    fn hotplug_changes_are_said_by_label() {
        let e =
            |s: &str| DeviceEntry { selector: s.into(), label: format!("dev {s}"), offers: Offers::any() };
        assert_eq!(describe_changes(&[e("1:2")], &[e("1:2")]), None);
        assert_eq!(
            describe_changes(&[e("1:2")], &[e("1:3")]).as_deref(),
            Some("plugged in: dev 1:3; unplugged: dev 1:2")
        );
    }
}
