//! Who else uses a bus's periodic bandwidth, from sysfs: the other devices on the same bus
//! whose current alt settings have iso or interrupt endpoints, with what each endpoint may
//! move per millisecond. An ENOSPC ("not enough bandwidth") names them, so the user knows
//! what to unplug or move to another port.

use std::path::Path;

/// A periodic (iso or interrupt) endpoint of an interface's current alt setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodicEndpoint {
    /// bEndpointAddress (bit 7: IN).
    pub address: u8,
    /// True for iso, false for interrupt.
    pub iso: bool,
    /// Bytes per service interval: wMaxPacketSize's size times its extra transactions
    /// (high speed); an upper bound of what the endpoint moves.
    pub bytes_per_interval: u32,
    /// The service interval in microseconds (sysfs `interval`).
    pub interval_us: u32,
}

impl PeriodicEndpoint {
    /// Bytes per millisecond the bus reserves for it, at most.
    pub fn bytes_per_ms(&self) -> u64 {
        u64::from(self.bytes_per_interval) * 1000 / u64::from(self.interval_us.max(1))
    }
}

impl std::fmt::Display for PeriodicEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {:#04x}, {} bytes every {}",
            if self.iso { "iso" } else { "interrupt" },
            if self.address & 0x80 != 0 { "IN" } else { "OUT" },
            self.address,
            self.bytes_per_interval,
            if self.interval_us % 1000 == 0 {
                format!("{} ms", self.interval_us / 1000)
            } else {
                format!("{} us", self.interval_us)
            }
        )
    }
}

/// A device on the bus that has periodic endpoints in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusUser {
    /// Its sysfs name (`1-2`, `1-1.4`).
    pub sysfs_name: String,
    /// `vid:pid` and the product string, if sysfs has one.
    pub label: String,
    pub endpoints: Vec<PeriodicEndpoint>,
}

impl BusUser {
    /// Bytes per millisecond its periodic endpoints may take.
    pub fn bytes_per_ms(&self) -> u64 {
        self.endpoints.iter().map(PeriodicEndpoint::bytes_per_ms).sum()
    }
}

impl std::fmt::Display for BusUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): ", self.sysfs_name, self.label)?;
        for (i, e) in self.endpoints.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The devices on bus `busnum` under `root` (normally [`super::discovery::SYSFS_USB_DEVICES`])
/// with iso or interrupt endpoints in their interfaces' current alt settings, except the
/// device `except` (a sysfs name: the one asking). Hubs' status endpoints are left out
/// (every hub has one, and it takes a few bytes). Unreadable entries are skipped: this
/// explains an error, it must not cause one.
pub fn periodic_users(root: &Path, busnum: u8, except: &str) -> Vec<BusUser> {
    let devices = children(root, &format!("{busnum}-"))
        .into_iter()
        .filter(|d| d.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.contains(':') && n != except));
    let mut users = Vec::new();
    for dev in devices {
        if read(&dev, "bDeviceClass").as_deref() == Some("09") {
            continue; // a hub
        }
        let Some(name) = dev.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        let endpoints: Vec<PeriodicEndpoint> = children(&dev, &format!("{name}:"))
            .iter()
            .flat_map(|intf| children(intf, "ep_"))
            .filter_map(|ep| periodic_endpoint(&ep))
            .collect();
        if endpoints.is_empty() {
            continue;
        }
        let vid_pid = format!(
            "{}:{}",
            read(&dev, "idVendor").unwrap_or_else(|| "????".into()),
            read(&dev, "idProduct").unwrap_or_else(|| "????".into())
        );
        let label = match read(&dev, "product") {
            Some(p) => format!("{vid_pid} {p}"),
            None => vid_pid,
        };
        users.push(BusUser { sysfs_name: name, label, endpoints });
    }
    users
}

/// The entries of `dir` whose names start with `prefix`, sorted (none if it cannot be read).
fn children(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(prefix)))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// A sentence for an ENOSPC on bus `busnum`: who else reserves periodic bandwidth there.
pub fn bandwidth_note(root: &Path, busnum: u8, except: &str) -> String {
    let users = periodic_users(root, busnum, except);
    if users.is_empty() {
        return format!(
            " No other device on bus {busnum} has iso or interrupt endpoints in use (per {}): the stream \
             alone needs more than the bus gives periodic transfers; use a lower rate, fewer channels or a \
             smaller alt setting.",
            root.display()
        );
    }
    let total: u64 = users.iter().map(BusUser::bytes_per_ms).sum();
    let list: Vec<String> = users.iter().map(ToString::to_string).collect();
    format!(
        " Other devices on bus {busnum} reserve up to {total} bytes/ms of periodic bandwidth: {}. Unplug or \
         stop one of them, or plug this device into a port of another controller.",
        list.join(" | ")
    )
}

/// A sysfs attribute, trimmed; `None` when missing or empty.
fn read(dir: &Path, file: &str) -> Option<String> {
    super::discovery::read_trim(&dir.join(file)).filter(|s| !s.is_empty())
}

/// An `ep_XX` directory's endpoint, if it is iso or interrupt.
fn periodic_endpoint(ep: &Path) -> Option<PeriodicEndpoint> {
    let iso = match read(ep, "type")?.as_str() {
        "Isoc" => true,
        "Interrupt" => false,
        _ => return None,
    };
    let address: u8 = super::discovery::read_hex(&ep.join("bEndpointAddress"))?;
    let wmax: u16 = super::discovery::read_hex(&ep.join("wMaxPacketSize"))?;
    let bytes_per_interval = u32::from(wmax & 0x7ff) * (1 + u32::from((wmax >> 11) & 3));
    let interval_us = parse_interval(&read(ep, "interval")?)?;
    Some(PeriodicEndpoint { address, iso, bytes_per_interval, interval_us })
}

/// sysfs `interval`: "125us", "1ms", "32ms".
fn parse_interval(s: &str) -> Option<u32> {
    if let Some(us) = s.strip_suffix("us") {
        us.parse().ok()
    } else {
        s.strip_suffix("ms")?.parse::<u32>().ok()?.checked_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endpoint directory: (name, type, bEndpointAddress, wMaxPacketSize, interval).
    type Ep<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

    /// Writes a sysfs-like device directory with its files and its interfaces' endpoints.
    fn device(root: &Path, name: &str, files: &[(&str, &str)], intfs: &[(&str, &[Ep])]) {
        let dev = root.join(name);
        std::fs::create_dir_all(&dev).unwrap();
        for (f, v) in files {
            std::fs::write(dev.join(f), format!("{v}\n")).unwrap();
        }
        for (intf, eps) in intfs {
            for (ep, ty, addr, wmax, interval) in *eps {
                let d = dev.join(intf).join(ep);
                std::fs::create_dir_all(&d).unwrap();
                for (f, v) in [
                    ("type", ty),
                    ("bEndpointAddress", addr),
                    ("wMaxPacketSize", wmax),
                    ("interval", interval),
                ] {
                    std::fs::write(d.join(f), format!("{v}\n")).unwrap();
                }
            }
        }
    }

    #[test]
    fn lists_the_other_devices_periodic_endpoints_on_the_same_bus() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // The webcam: iso IN, high bandwidth (2 extra transactions of 1024 bytes).
        device(
            root,
            "1-2",
            &[
                ("idVendor", "046d"),
                ("idProduct", "0825"),
                ("product", "Webcam C270"),
                ("bDeviceClass", "ef"),
            ],
            &[
                ("1-2:1.0", &[("ep_87", "Interrupt", "87", "0010", "8ms")]),
                ("1-2:1.1", &[("ep_81", "Isoc", "81", "1400", "125us")]),
            ],
        );
        // The device asking, a hub, a bulk-only disk, a device on another bus.
        device(
            root,
            "1-1",
            &[("idVendor", "1209")],
            &[("1-1:1.1", &[("ep_81", "Isoc", "81", "0138", "125us")])],
        );
        device(
            root,
            "1-3",
            &[("bDeviceClass", "09")],
            &[("1-3:1.0", &[("ep_81", "Interrupt", "81", "0001", "256ms")])],
        );
        device(
            root,
            "1-4",
            &[("idVendor", "0781"), ("idProduct", "5581")],
            &[("1-4:1.0", &[("ep_81", "Bulk", "81", "0200", "0ms")])],
        );
        device(
            root,
            "2-1",
            &[("idVendor", "0d8c")],
            &[("2-1:1.1", &[("ep_82", "Isoc", "82", "00c8", "1ms")])],
        );
        std::fs::create_dir_all(root.join("usb1")).unwrap();

        let users = periodic_users(root, 1, "1-1");
        assert_eq!(users.len(), 1, "{users:?}");
        let cam = &users[0];
        assert_eq!((cam.sysfs_name.as_str(), cam.label.as_str()), ("1-2", "046d:0825 Webcam C270"));
        assert_eq!(
            cam.endpoints,
            [
                PeriodicEndpoint { address: 0x87, iso: false, bytes_per_interval: 16, interval_us: 8000 },
                PeriodicEndpoint { address: 0x81, iso: true, bytes_per_interval: 3072, interval_us: 125 },
            ]
        );
        assert_eq!(cam.bytes_per_ms(), 2 + 3072 * 8);
        let note = bandwidth_note(root, 1, "1-1");
        assert!(
            note.contains("1-2 (046d:0825 Webcam C270): interrupt IN 0x87, 16 bytes every 8 ms; iso IN 0x81, 3072 bytes every 125 us")
                && note.contains("24578 bytes/ms")
                && note.contains("another controller"),
            "{note}"
        );
        // Bus 2 has only the one device; bus 3 nothing: the stream alone is too much.
        assert!(bandwidth_note(root, 2, "2-1").contains("No other device on bus 2"));
        assert!(periodic_users(&root.join("missing"), 1, "1-1").is_empty());
    }

    #[test]
    fn intervals_and_packet_sizes_read_as_sysfs_writes_them() {
        assert_eq!(parse_interval("125us"), Some(125));
        assert_eq!(parse_interval("32ms"), Some(32_000));
        assert_eq!(parse_interval("0ms"), Some(0));
        assert_eq!(parse_interval("fast"), None);
        assert_eq!(parse_interval(""), None);
        let e = PeriodicEndpoint { address: 0x02, iso: true, bytes_per_interval: 192, interval_us: 0 };
        assert_eq!(e.bytes_per_ms(), 192_000, "a zero interval is taken as 1 us, not a division by zero");
        assert_eq!(e.to_string(), "iso OUT 0x02, 192 bytes every 0 ms");
    }
}
