//! Sizing a capture: packets per URB and URBs in flight from the endpoint's interval, the
//! bus speed and a target latency; and the mode the caller asked for.

use crate::usb::backend::StreamConfig;
use crate::usb::urb::MAX_ISO_PACKETS;

/// Which buffer memory to capture with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeRequest {
    /// Zero-copy if the kernel allows it, else copy mode, said out loud.
    #[default]
    Auto,
    /// Zero-copy or an error.
    #[serde(rename = "zerocopy")]
    ZeroCopy,
    /// Copy mode (heap buffers; the kernel bounces and copies).
    Copy,
}

/// How many URBs of how many packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UrbPlan {
    pub packets_per_urb: usize,
    pub urbs_in_flight: usize,
    /// Extra URBs the engine resubmits before reading a completed one, so the kernel's
    /// queue never runs short while the engine works.
    pub spare_urbs: usize,
}

impl UrbPlan {
    /// Sizes URBs to last `urb_ms` each and keeps `queue_ms` of them queued, unless the
    /// caller fixed the numbers.
    pub fn for_stream(
        stream: &StreamConfig,
        urb_ms: f64,
        queue_ms: f64,
        packets: Option<usize>,
        urbs: Option<usize>,
    ) -> UrbPlan {
        let period_ms = f64::from(stream.packet_period_us()) / 1000.0;
        let packets_per_urb =
            packets.unwrap_or_else(|| (urb_ms / period_ms).round() as usize).clamp(1, MAX_ISO_PACKETS);
        let urb_dur = packets_per_urb as f64 * period_ms;
        let urbs_in_flight = urbs.unwrap_or_else(|| (queue_ms / urb_dur).ceil() as usize).clamp(2, 256);
        UrbPlan { packets_per_urb, urbs_in_flight, spare_urbs: 1 }
    }

    /// Every URB the pool needs a slot for.
    pub fn total_urbs(&self) -> usize {
        self.urbs_in_flight + self.spare_urbs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::{PcmFormat, SampleFormat};
    use crate::usb::Speed;

    fn stream(speed: Speed, interval: u32) -> StreamConfig {
        StreamConfig {
            endpoint: 0x81,
            format: PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 48_000 },
            speed,
            interval,
            packet_len: 196,
        }
    }

    #[test]
    fn urbs_are_sized_by_interval_and_speed() {
        let fs = UrbPlan::for_stream(&stream(Speed::Full, 1), 4.0, 32.0, None, None);
        assert_eq!((fs.packets_per_urb, fs.urbs_in_flight), (4, 8));
        let hs = UrbPlan::for_stream(&stream(Speed::High, 1), 4.0, 32.0, None, None);
        assert_eq!((hs.packets_per_urb, hs.urbs_in_flight), (32, 8));
        let hs4 = UrbPlan::for_stream(&stream(Speed::High, 4), 4.0, 32.0, None, None);
        assert_eq!(hs4.packets_per_urb, 8);
    }

    #[test]
    fn limits_and_overrides_hold() {
        let big = UrbPlan::for_stream(&stream(Speed::High, 1), 100.0, 10.0, None, None);
        assert_eq!(big.packets_per_urb, 128);
        assert_eq!(big.urbs_in_flight, 2);
        let fixed = UrbPlan::for_stream(&stream(Speed::Full, 1), 4.0, 32.0, Some(500), Some(3));
        assert_eq!((fixed.packets_per_urb, fixed.urbs_in_flight, fixed.total_urbs()), (128, 3, 4));
    }
}
