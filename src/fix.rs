//! What a user can do about an error. Library errors say what happened (device, operation,
//! errno) and carry a [`Fix`] kind where there is a standard remedy; each front end says it
//! in its own words: the command line with commands to paste, the GUI with menus and
//! buttons. One cause, one fix, said once.

/// The udev rule isoscope ships (also in the .deb).
pub const UDEV_RULE: &str = "assets/60-isoscope.rules";

/// A standard remedy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fix {
    /// This user may not open the device node read-write.
    UdevRule,
    /// Another program or kernel driver holds the device or its interface.
    CloseOtherProgram,
    /// The device named is not connected.
    PickDevice,
    /// USB devices are found through sysfs, which is not there.
    NoSysfs,
}

impl Fix {
    /// For a terminal: what to run.
    pub fn for_cli(self) -> String {
        match self {
            Fix::UdevRule => format!(
                "install the udev rule and replug the device: sudo cp {UDEV_RULE} /etc/udev/rules.d/ && \
                 sudo udevadm control --reload && sudo udevadm trigger (or run isoscope as root)"
            ),
            Fix::CloseOtherProgram => "close the other program (a sound server or DAW using the device, or \
                 one with it open through libusb), or let isoscope detach the kernel driver"
                .into(),
            Fix::PickDevice => "`isoscope list` shows what is connected; plug the device in or name another \
                 with --device"
                .into(),
            Fix::NoSysfs => "mount sysfs at /sys, or use the simulated device: --device sim".into(),
        }
    }

    /// For the window: what to do, in its terms.
    pub fn for_gui(self) -> String {
        match self {
            Fix::UdevRule => format!(
                "Install the udev rule ({UDEV_RULE}): sudo cp {UDEV_RULE} /etc/udev/rules.d/ && sudo udevadm \
                 control --reload && sudo udevadm trigger, then replug the device."
            ),
            Fix::CloseOtherProgram => {
                "Another program holds the device: close it (e.g. a sound server using it) and press Run.".into()
            }
            Fix::PickDevice => "Pick a device from the list, or plug it in.".into(),
            Fix::NoSysfs => {
                "USB devices are found through sysfs (/sys/bus/usb/devices); without it, pick a simulated device."
                    .into()
            }
        }
    }
}
