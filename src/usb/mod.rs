//! Talking to USB devices: descriptors, discovery in sysfs (the device, its host controller,
//! the other users of its bus), the usbfs device node and its ioctls, iso URBs, and USB
//! Audio Class stream setup.

pub mod asound;
pub mod backend;
pub mod bus;
pub mod controller;
pub mod descriptors;
pub mod discovery;
pub mod hotplug;
pub mod open;
pub mod uac;
pub mod urb;
pub mod usbfs;
pub mod vhci;
pub mod wake;

/// Bus speed of a device (`USB_SPEED_*` in the kernel's ch9.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Speed {
    Low,
    Full,
    High,
    Super,
    SuperPlus,
}

impl Speed {
    /// Length of one (micro)frame in microseconds: the unit of an iso endpoint's interval.
    pub const fn frame_us(self) -> u32 {
        match self {
            Speed::Low | Speed::Full => 1000,
            Speed::High | Speed::Super | Speed::SuperPlus => 125,
        }
    }

    /// The kernel's `USB_SPEED_*` value (as in `usbdevfs_conninfo_ex.speed` / GET_SPEED).
    pub fn from_kernel(v: u32) -> Option<Speed> {
        Some(match v {
            1 => Speed::Low,
            2 => Speed::Full,
            3 => Speed::High,
            5 => Speed::Super,
            6 => Speed::SuperPlus,
            _ => return None,
        })
    }

    /// sysfs `speed` file values: "1.5", "12", "480", "5000", "10000", "20000".
    pub fn from_sysfs_mbps(s: &str) -> Option<Speed> {
        Some(match s.trim() {
            "1.5" => Speed::Low,
            "12" => Speed::Full,
            "480" => Speed::High,
            "5000" => Speed::Super,
            "10000" | "20000" => Speed::SuperPlus,
            _ => return None,
        })
    }
}

/// An iso interval of `frames` (micro)frames in words: "1 ms (8 microframes)" at high
/// speed, "125 us (1 microframe)", "1 ms (1 frame)" at full speed; without a known speed,
/// "8 (micro)frames" (a frame is 1 ms at full speed, a microframe 125 us at high speed).
pub fn interval_text(speed: Option<Speed>, frames: u32) -> String {
    let plural = if frames == 1 { "" } else { "s" };
    let Some(speed) = speed else {
        return format!("{frames} (micro)frame{plural}");
    };
    let unit = match speed {
        Speed::Low | Speed::Full => "frame",
        Speed::High | Speed::Super | Speed::SuperPlus => "microframe",
    };
    let us = u64::from(frames) * u64::from(speed.frame_us());
    let time = if us < 1000 || us % 1000 != 0 { format!("{us} us") } else { format!("{} ms", us / 1000) };
    format!("{time} ({frames} {unit}{plural})")
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Speed::Low => "low speed (1.5 Mb/s)",
            Speed::Full => "full speed (12 Mb/s)",
            Speed::High => "high speed (480 Mb/s)",
            Speed::Super => "SuperSpeed (5 Gb/s)",
            Speed::SuperPlus => "SuperSpeed+ (10 Gb/s)",
        })
    }
}

/// A device that can do control transfers on endpoint 0 (usbfs `USBDEVFS_CONTROL`, or a
/// simulated device). UAC rate setting is written against this.
pub trait ControlTransfer {
    /// An IN control transfer; returns the bytes received into `data`.
    fn control_in(
        &mut self,
        request_type: u8,
        request: u8,
        value: u16,
        index: u16,
        data: &mut [u8],
    ) -> Result<usize, nix::errno::Errno>;

    /// An OUT control transfer of `data`.
    fn control_out(
        &mut self,
        request_type: u8,
        request: u8,
        value: u16,
        index: u16,
        data: &[u8],
    ) -> Result<(), nix::errno::Errno>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_said_in_time_and_in_the_speeds_own_unit() {
        assert_eq!(interval_text(Some(Speed::High), 8), "1 ms (8 microframes)");
        assert_eq!(interval_text(Some(Speed::High), 1), "125 us (1 microframe)");
        assert_eq!(interval_text(Some(Speed::High), 4), "500 us (4 microframes)");
        assert_eq!(interval_text(Some(Speed::Super), 16), "2 ms (16 microframes)");
        assert_eq!(interval_text(Some(Speed::Full), 1), "1 ms (1 frame)");
        assert_eq!(interval_text(Some(Speed::Full), 8), "8 ms (8 frames)");
        assert_eq!(interval_text(None, 8), "8 (micro)frames");
    }
}
