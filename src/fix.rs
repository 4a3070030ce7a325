//! What a user can do about an error. Library errors say what happened (device, operation,
//! errno, the numbers) and carry a [`Fix`] kind where there is a remedy; each front end says
//! it in its own words: the command line with flags and commands to paste, the GUI with its
//! menus. No command-line flag appears in library text. One cause, one fix, said once.

use crate::dma::USBFS_MEMORY_MB_PATH;

/// The udev rule isoscope ships (also in the .deb).
pub const UDEV_RULE: &str = "assets/60-isoscope.rules";

/// A remedy.
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
    /// Capture in copy mode (the kernel copies into a buffer of its own, zeroing the gaps).
    CopyMode,
    /// Capture in zero-copy mode (its buffers are allocated once, at start).
    ZeroCopyMode,
    /// Fewer or smaller URBs; and, when the usbfs cap is what is short, raising it to this
    /// many MiB.
    SmallerPlan { raise_cap_mb: Option<u32> },
    /// isoscope's own buffer cap is what is short: fewer or smaller URBs, or a larger cap.
    RaiseAppCap,
    /// Other usbfs programs may hold the shared cap: close them, or raise it to this many MiB.
    FreeUsbfsMemory { raise_cap_mb: u32 },
    /// Fewer packets per URB, or another alt setting (a limit on one URB's layout).
    FewerPackets,
    /// More URBs in flight (submission fell behind the bus).
    MoreUrbs,
    /// Another alt setting: another rate, channel count or sample format.
    OtherAltSetting,
    /// Another audio output of the same sound system.
    PickOutput,
    /// Another sound system: the one named (`pulseaudio`, `alsa`, ...).
    OtherAudioHost { try_host: &'static str },
    /// The sound system asked for does not run: start it, or pick one that does.
    StartSoundServer,
    /// An output that mixes (a sound server, or ALSA's `default`), since this one is taken.
    MixingOutput,
    /// Another address to listen on (and, for usbredir, the same one given to QEMU).
    OtherListenPort { qemu: bool },
    /// Every vhci-hcd port is taken: detach a device.
    DetachVirtualDevice,
}

/// How to raise the usbfs cap to `mb`, for both front ends (shell commands either way).
fn raise_cap(mb: u32) -> String {
    format!(
        "raise the usbfs cap: `echo {mb} | sudo tee {USBFS_MEMORY_MB_PATH}` (until reboot), or boot with \
         usbcore.usbfs_memory_mb={mb} (persistent; or `options usbcore usbfs_memory_mb={mb}` in \
         /etc/modprobe.d/usbfs.conf)"
    )
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
            Fix::CopyMode => {
                "capture in copy mode: --mode copy (or --mode auto, which falls back to it)".into()
            }
            Fix::ZeroCopyMode => "capture in zero-copy mode, whose buffers are allocated once, at start: \
                 --mode zerocopy"
                .into(),
            Fix::SmallerPlan { raise_cap_mb: None } => {
                "use fewer URBs in flight or fewer packets per URB: --urbs N, --packets N".into()
            }
            Fix::SmallerPlan { raise_cap_mb: Some(mb) } => {
                format!("use fewer or smaller URBs (--urbs N, --packets N), or {}", raise_cap(mb))
            }
            Fix::RaiseAppCap => {
                "use fewer or smaller URBs (--urbs N, --packets N), or raise isoscope's cap: --pool-cap-mb N"
                    .into()
            }
            Fix::FreeUsbfsMemory { raise_cap_mb } => format!(
                "close other USB programs (SDR, webcams, libusb tools), or {}",
                raise_cap(raise_cap_mb)
            ),
            Fix::FewerPackets => {
                "use fewer packets per URB (--packets N), or another alt setting (--format, \
                 --channels, --rate)"
                    .into()
            }
            Fix::MoreUrbs => {
                "queue more URBs in flight (--urbs N), or capture on a less loaded machine".into()
            }
            Fix::OtherAltSetting => "pick another alt setting: --rate, --channels or --format (`isoscope \
                 describe --device ...` lists them)"
                .into(),
            Fix::PickOutput => "name another output with --output (`isoscope monitor --list-outputs` lists \
                 them)"
                .into(),
            Fix::OtherAudioHost { try_host } => format!("use another sound system: --host {try_host}"),
            Fix::StartSoundServer => "start it, or pick a sound system that runs with --host (`isoscope \
                 monitor --list-outputs` lists what runs here)"
                .into(),
            Fix::MixingOutput => "close the program playing to it, or pick an output that mixes: --host \
                 pipewire or --host pulseaudio, or ALSA's 'default'"
                .into(),
            Fix::OtherListenPort { qemu: false } => "pick another port with --listen ADDR:PORT".into(),
            Fix::OtherListenPort { qemu: true } => {
                "pick another port with --listen ADDR:PORT, and give QEMU the same port".into()
            }
            Fix::DetachVirtualDevice => {
                "detach a device first: `isoscope detach --port N` (`usbip port` lists them)".into()
            }
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
            Fix::CopyMode => "Choose \"mode: copy\" (or \"mode: auto\") in the device bar and press Run.".into(),
            Fix::ZeroCopyMode => {
                "Choose \"mode: zero-copy\" in the device bar (its buffers are allocated once, at start) and \
                 press Run."
                    .into()
            }
            Fix::SmallerPlan { raise_cap_mb } => {
                let cap = raise_cap_mb.map(|mb| format!(" Or {}.", raise_cap(mb))).unwrap_or_default();
                format!(
                    "The window uses isoscope's default URB plan; capture with fewer or smaller URBs from the \
                     command line (isoscope capture --urbs N --packets N).{cap}"
                )
            }
            Fix::RaiseAppCap => "The window's buffer cap is its setting pool_cap_mb: capture from the command \
                 line with fewer or smaller URBs or a larger --pool-cap-mb."
                .into(),
            Fix::FreeUsbfsMemory { raise_cap_mb } => format!(
                "Close other USB programs (SDR, webcams, libusb tools) and press Run, or {}.",
                raise_cap(raise_cap_mb)
            ),
            Fix::FewerPackets | Fix::OtherAltSetting => {
                "Pick another rate, channel count or format in the device bar and press Run.".into()
            }
            Fix::MoreUrbs => {
                "The machine was too busy for the URBs queued: close busy programs, or capture from the command \
                 line with more URBs in flight (isoscope capture --urbs N)."
                    .into()
            }
            Fix::PickOutput => "Pick another output in the Audio panel.".into(),
            Fix::OtherAudioHost { try_host } => format!("Pick {try_host} as the sound system in the Audio panel."),
            Fix::StartSoundServer => "Start it, or pick a sound system that runs in the Audio panel.".into(),
            Fix::MixingOutput => "Close the program playing to it, or pick an output that mixes in the Audio \
                 panel (PipeWire, PulseAudio, or ALSA's 'default')."
                .into(),
            Fix::OtherListenPort { .. } => "Pick another port for the virtual device.".into(),
            Fix::DetachVirtualDevice => "Detach a virtual device (isoscope detach --port N).".into(),
        }
    }
}

/// The remedy for `err` or the first of its causes that knows one: the one place that knows
/// which library errors carry a [`Fix`], so each front end asks here.
pub fn find(err: &(dyn std::error::Error + 'static)) -> Option<Fix> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(fix) = of(e) {
            return Some(fix);
        }
        next = e.source();
    }
    None
}

/// The remedy `e` itself carries, if it is a library error that has one.
fn of(e: &(dyn std::error::Error + 'static)) -> Option<Fix> {
    macro_rules! try_types {
        ($($t:ty),* $(,)?) => {
            $(if let Some(e) = e.downcast_ref::<$t>() {
                return e.fix();
            })*
        };
    }
    try_types!(
        crate::source::SourceError,
        crate::usb::open::OpenError,
        crate::usb::usbfs::UsbfsError,
        crate::usb::backend::BackendError,
        crate::usb::vhci::VhciError,
        crate::capture::CaptureError,
        crate::dma::BudgetError,
        crate::sim::usbip::server::ServerError,
        crate::sim::usbredir::server::ServerError,
    );
    #[cfg(feature = "audio")]
    try_types!(crate::audio::OutputError, crate::audio::MonitorError);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind, so a new one is rendered by both front ends (the match is exhaustive
    /// inside the crate) and neither rendering is empty.
    const ALL: [Fix; 19] = [
        Fix::UdevRule,
        Fix::CloseOtherProgram,
        Fix::PickDevice,
        Fix::NoSysfs,
        Fix::CopyMode,
        Fix::ZeroCopyMode,
        Fix::SmallerPlan { raise_cap_mb: None },
        Fix::SmallerPlan { raise_cap_mb: Some(64) },
        Fix::RaiseAppCap,
        Fix::FreeUsbfsMemory { raise_cap_mb: 32 },
        Fix::FewerPackets,
        Fix::MoreUrbs,
        Fix::OtherAltSetting,
        Fix::PickOutput,
        Fix::OtherAudioHost { try_host: "alsa" },
        Fix::StartSoundServer,
        Fix::MixingOutput,
        Fix::OtherListenPort { qemu: true },
        Fix::DetachVirtualDevice,
    ];

    #[test]
    fn each_kind_is_said_by_both_front_ends() {
        for f in ALL {
            assert!(f.for_cli().len() > 20, "{f:?}: {}", f.for_cli());
            assert!(f.for_gui().len() > 20, "{f:?}: {}", f.for_gui());
            assert_ne!(f.for_cli(), f.for_gui(), "{f:?}: the window speaks its own words");
        }
        assert!(Fix::SmallerPlan { raise_cap_mb: Some(64) }.for_cli().contains("echo 64 | sudo tee"));
        assert!(Fix::CopyMode.for_cli().contains("--mode copy"));
        assert!(!Fix::CopyMode.for_gui().contains("--mode"));
    }

    #[test]
    fn find_walks_the_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] crate::dma::BudgetError);
        let inner =
            crate::dma::BudgetError::OverAppCap { need: 2 << 20, cap: 1 << 20, plan: "2 URBs".into() };
        assert_eq!(find(&Outer(inner)), Some(Fix::RaiseAppCap));
        assert_eq!(find(&std::io::Error::other("x")), None);
    }
}
