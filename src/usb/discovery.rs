//! Finding USB devices: enumeration from sysfs (`/sys/bus/usb/devices`), and the device
//! selectors the command line accepts.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::descriptors::{self, AudioStream, DescriptorError};
use super::Speed;

/// Where sysfs lists USB devices.
pub const SYSFS_USB_DEVICES: &str = "/sys/bus/usb/devices";

/// One interface of a device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InterfaceInfo {
    pub number: u8,
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
    /// The bound kernel driver ("snd-usb-audio", "usbfs"), if any.
    pub driver: Option<String>,
}

/// A USB device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsbDeviceInfo {
    /// The sysfs name, e.g. "1-1.4" (the USB/IP bus id too).
    pub sysfs_name: String,
    pub busnum: u8,
    pub devnum: u8,
    pub vendor_id: u16,
    pub product_id: u16,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub serial: Option<String>,
    pub speed: Option<Speed>,
    /// The raw `descriptors` file: the device descriptor, then every configuration.
    #[serde(skip)]
    pub descriptors: Vec<u8>,
    /// The active configuration (sysfs `bConfigurationValue`): `Some(0)` when the device is
    /// not configured, `None` when sysfs does not say.
    pub active_config: Option<u8>,
    pub interfaces: Vec<InterfaceInfo>,
    /// The host controller the device hangs on (driver, DMA mask), if sysfs shows it.
    pub host_controller: Option<super::controller::HostController>,
}

impl UsbDeviceInfo {
    /// The usbfs node: `/dev/bus/usb/BBB/DDD`.
    pub fn dev_node(&self) -> PathBuf {
        PathBuf::from(format!("/dev/bus/usb/{:03}/{:03}", self.busnum, self.devnum))
    }

    /// "001:004 1209:0001 isoscope virtual UAC2 microphone"
    pub fn label(&self) -> String {
        format!(
            "{:03}:{:03} {:04x}:{:04x} {}",
            self.busnum,
            self.devnum,
            self.vendor_id,
            self.product_id,
            self.product.as_deref().unwrap_or("(no product string)")
        )
    }
}

impl UsbDeviceInfo {
    /// The audio streams of the active configuration (all of them if sysfs does not say
    /// which is active).
    pub fn audio_streams(&self) -> Result<Vec<AudioStream>, DescriptorError> {
        Ok(descriptors::parse(&self.descriptors)?.streams_of(self.active_config))
    }
}

/// Why enumeration failed as a whole (single vanished devices are skipped, not errors).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot list {path}: {error}. Is sysfs mounted at /sys?")]
    List { path: PathBuf, error: std::io::Error },
}

pub(super) fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

pub(super) fn read_hex<T: TryFrom<u32>>(p: &Path) -> Option<T> {
    T::try_from(u32::from_str_radix(&read_trim(p)?, 16).ok()?).ok()
}

fn read_dec<T: FromStr>(p: &Path) -> Option<T> {
    read_trim(p)?.parse().ok()
}

/// Lists the devices under `root` (normally [`SYSFS_USB_DEVICES`]), sorted by bus and
/// address. Interface entries (`1-1:1.0`) are folded into their device; entries that
/// vanish or cannot be read mid-scan are skipped.
pub fn list_devices(root: &Path) -> Result<Vec<UsbDeviceInfo>, DiscoveryError> {
    let entries =
        std::fs::read_dir(root).map_err(|error| DiscoveryError::List { path: root.into(), error })?;
    let mut names: Vec<String> =
        entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut devices = Vec::new();
    for name in names.iter().filter(|n| !n.contains(':')) {
        let dir = root.join(name);
        let (Some(busnum), Some(devnum)) = (read_dec(&dir.join("busnum")), read_dec(&dir.join("devnum")))
        else {
            continue;
        };
        let (Some(vendor_id), Some(product_id)) =
            (read_hex(&dir.join("idVendor")), read_hex(&dir.join("idProduct")))
        else {
            continue;
        };
        let prefix = format!("{name}:");
        let mut interfaces: Vec<InterfaceInfo> = names
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .filter_map(|n| {
                let d = root.join(n);
                Some(InterfaceInfo {
                    number: read_hex(&d.join("bInterfaceNumber"))?,
                    class: read_hex(&d.join("bInterfaceClass"))?,
                    subclass: read_hex(&d.join("bInterfaceSubClass")).unwrap_or(0),
                    protocol: read_hex(&d.join("bInterfaceProtocol")).unwrap_or(0),
                    driver: std::fs::read_link(d.join("driver"))
                        .ok()
                        .and_then(|l| l.file_name().map(|f| f.to_string_lossy().into_owned())),
                })
            })
            .collect();
        interfaces.sort_by_key(|i| i.number);
        devices.push(UsbDeviceInfo {
            sysfs_name: name.clone(),
            busnum,
            devnum,
            vendor_id,
            product_id,
            manufacturer: read_trim(&dir.join("manufacturer")),
            product: read_trim(&dir.join("product")),
            serial: read_trim(&dir.join("serial")),
            speed: read_trim(&dir.join("speed")).and_then(|s| Speed::from_sysfs_mbps(&s)),
            descriptors: std::fs::read(dir.join("descriptors")).unwrap_or_default(),
            // An unconfigured device's bConfigurationValue is empty.
            active_config: read_trim(&dir.join("bConfigurationValue"))
                .map(|v| if v.is_empty() { Some(0) } else { v.parse().ok() })
                .unwrap_or(None),
            interfaces,
            host_controller: super::controller::host_controller(&dir),
        });
    }
    devices.sort_by_key(|d| (d.busnum, d.devnum));
    Ok(devices)
}

/// What `--device` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSelector {
    /// The first device isoscope can capture from, else the simulated device.
    Auto,
    /// The simulated device, with an optional signal (`sim:sine:440`).
    Sim(Option<String>),
    BusDev(u8, u8),
    VidPid(u16, u16),
    Path(PathBuf),
}

/// A `--device` value that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot understand device '{0}': use auto, sim, sim:SIGNAL, BUS:DEV (decimal, e.g. 1:4), \
     VID:PID (4 hex digits each, e.g. 0d8c:0014), or a /dev/bus/usb/BBB/DDD path"
)]
pub struct SelectorError(pub String);

impl FromStr for DeviceSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, SelectorError> {
        let bad = || SelectorError(s.to_string());
        if s == "auto" {
            return Ok(DeviceSelector::Auto);
        }
        if s == "sim" {
            return Ok(DeviceSelector::Sim(None));
        }
        if let Some(sig) = s.strip_prefix("sim:") {
            return Ok(DeviceSelector::Sim(Some(sig.to_string())));
        }
        if s.starts_with('/') {
            return Ok(DeviceSelector::Path(PathBuf::from(s)));
        }
        let (a, b) = s.split_once(':').ok_or_else(bad)?;
        let hex4 = |x: &str| x.len() == 4 && x.chars().all(|c| c.is_ascii_hexdigit());
        if hex4(a) && hex4(b) {
            // Four hex digits on both sides: VID:PID (BUS:DEV is at most 3 digits each).
            let v = u16::from_str_radix(a, 16).map_err(|_| bad())?;
            let p = u16::from_str_radix(b, 16).map_err(|_| bad())?;
            return Ok(DeviceSelector::VidPid(v, p));
        }
        let dec = |x: &str| (1..=3).contains(&x.len()) && x.chars().all(|c| c.is_ascii_digit());
        if dec(a) && dec(b) {
            let bus = a.parse::<u8>().map_err(|_| bad())?;
            let dev = b.parse::<u8>().map_err(|_| bad())?;
            if bus == 0 || dev == 0 {
                return Err(bad());
            }
            return Ok(DeviceSelector::BusDev(bus, dev));
        }
        Err(bad())
    }
}

impl DeviceSelector {
    /// The device `self` names among `devices` (for USB selectors).
    pub fn find<'a>(&self, devices: &'a [UsbDeviceInfo]) -> Option<&'a UsbDeviceInfo> {
        devices.iter().find(|d| match self {
            DeviceSelector::BusDev(b, n) => d.busnum == *b && d.devnum == *n,
            DeviceSelector::VidPid(v, p) => d.vendor_id == *v && d.product_id == *p,
            DeviceSelector::Path(p) => d.dev_node() == *p,
            DeviceSelector::Auto | DeviceSelector::Sim(_) => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, files: &[(&str, &str)]) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (f, v) in files {
            std::fs::write(d.join(f), v).unwrap();
        }
    }

    #[test]
    fn a_fake_sysfs_tree_is_read_with_interfaces_and_drivers() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        write(
            root,
            "usb1",
            &[
                ("busnum", "1\n"),
                ("devnum", "1\n"),
                ("idVendor", "1d6b\n"),
                ("idProduct", "0002\n"),
                ("speed", "480\n"),
            ],
        );
        write(
            root,
            "1-1",
            &[
                ("busnum", "1\n"),
                ("devnum", "4\n"),
                ("idVendor", "0d8c\n"),
                ("idProduct", "0014\n"),
                ("speed", "12\n"),
                ("product", "USB Audio Device\n"),
                ("descriptors", "\x12\x01"),
            ],
        );
        write(
            root,
            "1-1:1.0",
            &[("bInterfaceNumber", "00\n"), ("bInterfaceClass", "01\n"), ("bInterfaceSubClass", "01\n")],
        );
        write(
            root,
            "1-1:1.1",
            &[("bInterfaceNumber", "01\n"), ("bInterfaceClass", "01\n"), ("bInterfaceSubClass", "02\n")],
        );
        let drv = root.join("drivers/snd-usb-audio");
        std::fs::create_dir_all(&drv).unwrap();
        std::os::unix::fs::symlink(&drv, root.join("1-1:1.0/driver")).unwrap();
        write(root, "2-3", &[("busnum", "2\n")]); // vanished half-way: skipped
        let devs = list_devices(root).unwrap();
        assert_eq!(devs.len(), 2);
        let d = &devs[1];
        assert_eq!((d.busnum, d.devnum, d.vendor_id, d.product_id), (1, 4, 0x0d8c, 0x0014));
        assert_eq!(d.speed, Some(Speed::Full));
        assert_eq!(d.manufacturer, None);
        assert_eq!(d.descriptors, b"\x12\x01");
        assert_eq!(d.interfaces.len(), 2);
        assert_eq!(d.interfaces[0].driver.as_deref(), Some("snd-usb-audio"));
        assert_eq!(d.interfaces[1].driver, None);
        assert_eq!(d.dev_node(), PathBuf::from("/dev/bus/usb/001/004"));
        assert_eq!(DeviceSelector::BusDev(1, 4).find(&devs).unwrap().sysfs_name, "1-1");
        assert_eq!(DeviceSelector::VidPid(0x0d8c, 0x14).find(&devs).unwrap().devnum, 4);
        assert!(list_devices(&root.join("missing")).unwrap_err().to_string().contains("sysfs"));
    }

    /// A virtual device's descriptors with a second configuration (bConfigurationValue 2)
    /// of the other UAC version appended.
    fn two_configurations() -> Vec<u8> {
        use crate::sim::{UacVersion, VirtualDevice, VirtualDeviceConfig};
        let dev = |uac| VirtualDevice::new(VirtualDeviceConfig { uac, ..Default::default() }).unwrap();
        let mut t = dev(UacVersion::V1).descriptor_bytes();
        t[17] = 2;
        let mut c2 = dev(UacVersion::V2).descriptor_bytes()[18..].to_vec();
        c2[5] = 2;
        t.extend(c2);
        t
    }

    #[test]
    fn the_active_configuration_decides_the_streams_and_an_inactive_one_is_explained() {
        let t = tempfile::tempdir().unwrap();
        let descriptors = two_configurations();
        let files = |active: &'static str| {
            let mut f =
                vec![("busnum", "1\n"), ("devnum", "4\n"), ("idVendor", "1209\n"), ("idProduct", "0001\n")];
            if active != "-" {
                f.push(("bConfigurationValue", active));
            }
            f
        };
        let mut seen = Vec::new();
        for (name, active, want) in [("1-1", "2\n", Some(2)), ("1-2", "\n", Some(0)), ("1-3", "-", None)] {
            write(t.path(), name, &files(active));
            std::fs::write(t.path().join(name).join("descriptors"), &descriptors).unwrap();
            let d = list_devices(t.path()).unwrap().into_iter().find(|d| d.sysfs_name == name).unwrap();
            assert_eq!(d.active_config, want, "{name}");
            seen.push(d);
        }
        let streams = seen[0].audio_streams().unwrap();
        assert_eq!(streams.len(), 2);
        assert!(streams
            .iter()
            .all(|s| s.configuration == 2 && s.uac == crate::usb::descriptors::UacVersion::V2));
        assert!(seen[1].audio_streams().unwrap().is_empty(), "not configured");
        assert_eq!(seen[2].audio_streams().unwrap().len(), 4, "not known: all");
        // A capture of a device whose active configuration has no stream says how to switch.
        let mut other = seen[0].clone();
        other.active_config = Some(3);
        let e = crate::usb::open::open_capture(&other, &Default::default()).unwrap_err().to_string();
        assert!(
            e.contains("configuration [1, 2], but configuration 3 is active")
                && e.contains("echo 1 > /sys/bus/usb/devices/1-1/bConfigurationValue"),
            "{e}"
        );
    }

    #[test]
    fn selectors_parse_every_documented_form_and_nothing_else() {
        assert_eq!("auto".parse(), Ok(DeviceSelector::Auto));
        assert_eq!("sim".parse(), Ok(DeviceSelector::Sim(None)));
        assert_eq!("sim:sine:440".parse(), Ok(DeviceSelector::Sim(Some("sine:440".into()))));
        assert_eq!("1:4".parse(), Ok(DeviceSelector::BusDev(1, 4)));
        assert_eq!("001:004".parse(), Ok(DeviceSelector::BusDev(1, 4)));
        assert_eq!("0d8c:0014".parse(), Ok(DeviceSelector::VidPid(0x0d8c, 0x0014)));
        assert_eq!("1209:0001".parse(), Ok(DeviceSelector::VidPid(0x1209, 0x0001)));
        assert_eq!("/dev/bus/usb/001/004".parse(), Ok(DeviceSelector::Path("/dev/bus/usb/001/004".into())));
        for bad in ["", "999:1", "zz:zz", "1:", ":4", "0:0", "12345:1", "usb", "1:2:3"] {
            let e = bad.parse::<DeviceSelector>().unwrap_err().to_string();
            assert!(e.contains("VID:PID"), "{bad}: {e}");
        }
    }
}
