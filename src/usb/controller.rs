//! The host controller a USB device hangs on, from sysfs: its driver (xhci_hcd, ehci-pci,
//! uhci_hcd, vhci_hcd, dwc2 ...) and DMA mask, which decide what zero-copy buffers are (DMA
//! coherent memory inside the mask, or plain pages on a controller that does no DMA) and
//! which faults a capture can meet. Shown by `list`, `describe` and the GUI's bug report.

use std::path::Path;

/// A USB host controller as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostController {
    /// The controller's device name: a PCI address (`0000:00:04.0`) or a platform device
    /// (`vhci_hcd.0`, `3f980000.usb`).
    pub device: String,
    /// The bound driver (`xhci_hcd`, `ehci-pci`, `vhci_hcd`), if sysfs names one.
    pub driver: Option<String>,
    /// Bits of the controller's DMA mask (`dma_mask_bits`; PCI devices have it), if known.
    pub dma_mask_bits: Option<u32>,
}

impl HostController {
    /// Whether the controller moves data with DMA (vhci-hcd and other virtual controllers
    /// do not: usbfs mmap() then gives plain pages).
    pub fn does_dma(&self) -> Option<bool> {
        match self.driver.as_deref() {
            Some("vhci_hcd") | Some("dummy_hcd") => Some(false),
            Some(_) => Some(true),
            None => None,
        }
    }
}

impl std::fmt::Display for HostController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.driver.as_deref().unwrap_or("no driver"), self.device)?;
        match (self.dma_mask_bits, self.does_dma()) {
            (Some(bits), _) => write!(f, ", DMA mask {bits} bits"),
            (None, Some(false)) => write!(f, ", no DMA (a virtual controller)"),
            (None, _) => Ok(()),
        }
    }
}

/// The controller of the USB device whose sysfs directory is `device_dir` (e.g.
/// `/sys/bus/usb/devices/1-1`): the parent of its root hub (`usbN`) in the resolved path.
/// `None` when the path does not lead to a root hub (a device that just went away).
pub fn host_controller(device_dir: &Path) -> Option<HostController> {
    let real = std::fs::canonicalize(device_dir).ok()?;
    let root_hub = real.ancestors().find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("usb"))
            .is_some_and(|num| !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()))
    })?;
    let hc = root_hub.parent()?;
    let device = hc.file_name()?.to_string_lossy().into_owned();
    let driver = std::fs::read_link(hc.join("driver"))
        .ok()
        .and_then(|l| l.file_name().map(|f| f.to_string_lossy().into_owned()));
    let dma_mask_bits =
        std::fs::read_to_string(hc.join("dma_mask_bits")).ok().and_then(|s| s.trim().parse().ok());
    Some(HostController { device, driver, dma_mask_bits })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs-like tree: /devices/pci0000:00/0000:00:04.0/usb2/2-1 with the bus's
    /// symlink to it and the controller's driver link and DMA mask.
    fn tree(root: &Path, hc_path: &str, driver: &str, mask: Option<&str>) -> std::path::PathBuf {
        let hc = root.join(hc_path);
        let dev = hc.join("usb2/2-1");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::create_dir_all(root.join("bus/pci/drivers").join(driver)).unwrap();
        symlink(root.join("bus/pci/drivers").join(driver), hc.join("driver")).unwrap();
        if let Some(m) = mask {
            std::fs::write(hc.join("dma_mask_bits"), m).unwrap();
        }
        let link = root.join("bus/usb/devices/2-1");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink(&dev, &link).unwrap();
        link
    }

    #[test]
    fn a_pci_controller_with_its_driver_and_dma_mask() {
        let t = tempfile::tempdir().unwrap();
        let link = tree(t.path(), "devices/pci0000:00/0000:00:04.0", "ehci-pci", Some("32\n"));
        let hc = host_controller(&link).unwrap();
        assert_eq!(
            hc,
            HostController {
                device: "0000:00:04.0".into(),
                driver: Some("ehci-pci".into()),
                dma_mask_bits: Some(32)
            }
        );
        assert_eq!(hc.to_string(), "ehci-pci (0000:00:04.0), DMA mask 32 bits");
        assert_eq!(hc.does_dma(), Some(true));
    }

    #[test]
    fn vhci_has_no_dma_and_a_vanished_device_has_no_controller() {
        let t = tempfile::tempdir().unwrap();
        let link = tree(t.path(), "devices/platform/vhci_hcd.0", "vhci_hcd", None);
        let hc = host_controller(&link).unwrap();
        assert_eq!(hc.to_string(), "vhci_hcd (vhci_hcd.0), no DMA (a virtual controller)");
        assert_eq!(host_controller(&t.path().join("bus/usb/devices/9-9")), None);
        // A path with no root hub above it.
        std::fs::create_dir_all(t.path().join("devices/odd/2-1")).unwrap();
        assert_eq!(host_controller(&t.path().join("devices/odd/2-1")), None);
    }
}
