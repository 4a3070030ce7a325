//! Integration tests of the capture engine on the in-process simulated device, in both
//! copy and zero-copy mode: bit-exact capture under faults, no stale byte ever delivered,
//! the usbfs cap and the auto fallback, disconnect, the URB and region rules, full rings.

use std::time::{Duration, Instant};

use isoscope::capture::{Capture, CaptureConfig, CaptureError, ModeRequest, Sink, StatsSnapshot};
use isoscope::dma::TransferPath;
use isoscope::dsp::{decode_into, PcmFormat, SampleFormat};
use isoscope::sim::{Faults, SimConfig, SimDevice};
use nix::errno::Errno;
use ringbuf::traits::{Consumer, Split};
use ringbuf::HeapRb;

fn sim(faults: Faults) -> SimDevice {
    SimDevice::new(SimConfig { faults, realtime: false, ..SimConfig::default() }).unwrap()
}

struct Run {
    info: isoscope::capture::CaptureInfo,
    stats: StatsSnapshot,
    failure: Option<CaptureError>,
    bytes: Vec<u8>,
}

/// Captures until `packets` packets were seen (or the capture ends), then stops.
fn capture(
    dev: &SimDevice,
    cfg: &CaptureConfig,
    packets: u64,
    ring_bytes: usize,
) -> Result<Run, CaptureError> {
    let (prod, mut cons) = HeapRb::<u8>::new(ring_bytes).split();
    let cap = Capture::start(dev.backend(), dev.stream(), cfg, vec![Sink::Bytes(prod)])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while cap.stats().packets < packets && !cap.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let info = cap.info().clone();
    let (stats, failure) = cap.stop();
    let mut bytes = vec![0u8; ring_bytes];
    let n = cons.pop_slice(&mut bytes);
    bytes.truncate(n);
    Ok(Run { info, stats, failure, bytes })
}

fn mode_cfg(mode: ModeRequest) -> CaptureConfig {
    CaptureConfig { mode, ..CaptureConfig::default() }
}

#[test]
fn a_known_signal_is_captured_bit_exactly_through_short_packets_and_errors() {
    let dev = sim(Faults { short_ratio: 0.3, error_ratio: 0.02, disconnect_after_s: None });
    for (mode, path) in
        [(ModeRequest::ZeroCopy, TransferPath::ZeroCopy), (ModeRequest::Copy, TransferPath::Copy)]
    {
        let run = capture(&dev, &mode_cfg(mode), 100_000, 32 << 20).unwrap();
        let s = &run.stats;
        assert!(run.failure.is_none(), "{:?}", run.failure);
        assert_eq!(run.info.path, path);
        assert!(s.packets >= 100_000);
        assert!(s.short_packets > s.packets / 5, "{s:?}");
        assert!(s.packet_errors > s.packets / 100, "{s:?}");
        assert_eq!(s.ring_drops, 0);
        assert_eq!(s.bytes, run.bytes.len() as u64);
        let mut v = dev.verifier();
        v.feed(&run.bytes);
        assert_eq!(v.mismatched(), 0, "{mode:?}");
        assert_eq!(v.verified(), s.frames, "{mode:?}");
        match path {
            TransferPath::ZeroCopy => assert_eq!((s.urbs_zerocopy, s.urbs_copy), (s.urbs, 0)),
            TransferPath::Copy => {
                assert_eq!((s.urbs_copy, s.urbs_zerocopy), (s.urbs, 0));
                assert_eq!(s.kernel_copied_bytes, s.urbs * run.info.memory.urb_bytes as u64);
            }
        }
    }
}

#[test]
fn no_stale_byte_of_a_prefilled_pool_reaches_the_output() {
    // 0x7F7F as a sample is +0.996 full scale; the 0.5-amplitude sine never gets there, so
    // any leaked canary shows up as an out-of-range sample as well as a verifier mismatch.
    let dev = sim(Faults { short_ratio: 0.5, error_ratio: 0.05, disconnect_after_s: None });
    for mode in [ModeRequest::ZeroCopy, ModeRequest::Copy] {
        let cfg = CaptureConfig { prefill: Some(vec![0x7F; 8]), ..mode_cfg(mode) };
        let run = capture(&dev, &cfg, 120_000, 32 << 20).unwrap();
        assert!(run.stats.packets >= 120_000);
        let mut samples = vec![0f32; run.bytes.len() / 2];
        decode_into(SampleFormat::S16Le, &run.bytes, &mut samples);
        let worst = samples.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(worst <= 0.5 + 1e-4, "{mode:?}: a stale byte leaked (|sample| = {worst})");
        assert!(!run.bytes.windows(4).any(|w| w == [0x7F; 4]), "{mode:?}: canary in output");
        let mut v = dev.verifier();
        v.feed(&run.bytes);
        assert_eq!((v.mismatched(), v.verified()), (0, run.stats.frames), "{mode:?}");
    }
}

/// A 192 kHz 8-channel S32 device: big packets, so pools are big enough to meet a 1 MiB cap.
fn wide_sim(usbfs_memory_mb: u32) -> SimDevice {
    SimDevice::new(SimConfig {
        format: PcmFormat { sample: SampleFormat::S32Le, channels: 8, rate: 192_000 },
        usbfs_memory_mb,
        realtime: false,
        ..SimConfig::default()
    })
    .unwrap()
}

#[test]
fn over_the_usbfs_cap_zero_copy_fails_before_streaming_and_auto_falls_back_visibly() {
    let dev = wide_sim(1);
    // Find a URB shape whose zero-copy pool (in flight + 1 spare slot, mapped for the whole
    // capture) is over 1 MiB while copy mode's bounce buffers (in flight only) still fit.
    let starts = |mode, packets, urbs| {
        let cfg = CaptureConfig { packets_per_urb: Some(packets), urbs: Some(urbs), ..mode_cfg(mode) };
        Capture::start(dev.backend(), dev.stream(), &cfg, vec![]).is_ok()
    };
    let (packets, urbs) = (64..=128)
        .flat_map(|p| (2..40).map(move |n| (p, n)))
        .find(|&(p, n)| !starts(ModeRequest::ZeroCopy, p, n) && starts(ModeRequest::Copy, p, n))
        .expect("some URB shape fits copy mode but not zero-copy");
    let cfg = CaptureConfig { packets_per_urb: Some(packets), urbs: Some(urbs), ..CaptureConfig::default() };

    let err = Capture::start(
        dev.backend(),
        dev.stream(),
        &CaptureConfig { mode: ModeRequest::ZeroCopy, ..cfg.clone() },
        vec![],
    )
    .err()
    .expect("zero-copy must be refused");
    let msg = err.to_string();
    assert!(matches!(err, CaptureError::Budget { .. }), "{msg}");
    assert!(msg.contains("usbfs_memory_mb is 1 MiB"), "{msg}");
    // The remedy is the error's fix kind, which the command line says with its flags.
    let fix = err.fix().expect("a remedy").for_cli();
    for needle in ["/sys/module/usbcore/parameters/usbfs_memory_mb", "usbcore.usbfs_memory_mb=", "--urbs"] {
        assert!(fix.contains(needle), "'{needle}' missing from: {fix}");
    }

    let run = capture(&dev, &cfg, 2_000, 8 << 20).unwrap();
    assert_eq!(run.info.path, TransferPath::Copy);
    let why = run.info.fallback.expect("auto mode says why it fell back");
    assert!(why.contains("usbfs_memory_mb"), "{why}");
    assert!(run.stats.packets >= 2_000 && run.stats.urbs_copy == run.stats.urbs);
    let mut v = dev.verifier();
    v.feed(&run.bytes);
    assert_eq!(v.mismatched(), 0);
}

#[test]
fn a_failing_mmap_errors_in_zerocopy_mode_and_falls_back_in_auto() {
    for (errno, needle) in [(Errno::ENOMEM, "ENOMEM"), (Errno::EPERM, "read-write")] {
        let dev =
            SimDevice::new(SimConfig { mmap_error: Some(errno), realtime: false, ..SimConfig::default() })
                .unwrap();
        let err = Capture::start(dev.backend(), dev.stream(), &mode_cfg(ModeRequest::ZeroCopy), vec![])
            .err()
            .unwrap();
        assert!(matches!(err, CaptureError::ZeroCopyUnavailable { .. }));
        assert!(err.to_string().contains(needle), "{err}");
        assert_eq!(err.fix(), Some(isoscope::fix::Fix::CopyMode), "{err}");
        assert!(isoscope::fix::Fix::CopyMode.for_cli().contains("--mode auto"));
        let run = capture(&dev, &mode_cfg(ModeRequest::Auto), 1_000, 1 << 20).unwrap();
        assert_eq!(run.info.path, TransferPath::Copy);
        assert!(run.info.fallback.unwrap().contains(needle));
    }
    let dev = SimDevice::new(SimConfig { can_mmap: false, realtime: false, ..SimConfig::default() }).unwrap();
    let err =
        Capture::start(dev.backend(), dev.stream(), &mode_cfg(ModeRequest::ZeroCopy), vec![]).err().unwrap();
    assert!(err.to_string().contains("CAP_MMAP"), "{err}");
}

#[test]
fn a_disconnect_mid_capture_ends_cleanly_and_keeps_what_was_captured() {
    for mode in [ModeRequest::ZeroCopy, ModeRequest::Copy] {
        let dev = sim(Faults { short_ratio: 0.2, error_ratio: 0.0, disconnect_after_s: Some(0.5) });
        let run = capture(&dev, &mode_cfg(mode), u64::MAX, 8 << 20).unwrap();
        let err = run.failure.expect("the capture reports the disconnect");
        assert!(matches!(err, CaptureError::Disconnected { .. }), "{err}");
        assert!(err.to_string().contains("disconnected"));
        // 0.5 s of 125 us packets, less the URB that straddles the unplug.
        assert!((3_900..=4_000).contains(&run.stats.packets), "{:?}", run.stats);
        let mut v = dev.verifier();
        v.feed(&run.bytes);
        assert_eq!((v.mismatched(), v.verified()), (0, run.stats.frames));
    }
}

#[test]
fn every_urb_of_a_multi_region_zero_copy_pool_takes_the_mmap_path() {
    let dev = wide_sim(64);
    let cfg = CaptureConfig { packets_per_urb: Some(200), urbs: Some(24), ..mode_cfg(ModeRequest::ZeroCopy) };
    let run = capture(&dev, &cfg, 20_000, 64 << 20).unwrap();
    assert_eq!(run.info.plan.packets_per_urb, 128, "the kernel's 128-packet limit");
    assert!(run.info.memory.region_bytes.len() > 1, "{:?}", run.info.memory);
    assert!(run.info.memory.region_bytes.iter().all(|&b| b <= 1 << 20));
    assert_eq!(run.stats.urbs_copy, 0);
    assert_eq!(run.stats.urbs_zerocopy, run.stats.urbs);
}

#[test]
fn a_full_ring_drops_and_counts_without_stalling_the_engine() {
    let dev = sim(Faults::default());
    let (bytes, _keep_cons) = HeapRb::<u8>::new(4096).split();
    let (frames, _keep_frames) = HeapRb::<f32>::new(1 << 20).split();
    let cap = Capture::start(
        dev.backend(),
        dev.stream(),
        &mode_cfg(ModeRequest::ZeroCopy),
        vec![Sink::Bytes(bytes), Sink::Frames(frames)],
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cap.stats().packets < 50_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (s, failure) = cap.stop();
    assert!(failure.is_none());
    assert!(s.packets >= 50_000, "the engine kept going: {s:?}");
    // The byte ring took 1024 frames and dropped the rest; the frame ring took them all.
    assert_eq!(s.ring_drops, s.frames - 1024);
}

#[test]
fn real_time_pacing_delivers_at_the_device_rate() {
    let dev = SimDevice::new(SimConfig::default()).unwrap();
    let (prod, _cons) = HeapRb::<u8>::new(1 << 20).split();
    let cap = Capture::start(dev.backend(), dev.stream(), &CaptureConfig::default(), vec![Sink::Bytes(prod)])
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (s, _) = cap.stop();
    let rate = s.frames as f64 / (s.elapsed_ns as f64 / 1e9);
    assert!((40_000.0..52_000.0).contains(&rate), "{rate} frames/s from a 48 kHz device: {s:?}");
}

/// A backend that reproduces the USB/IP teardown race: after the discard, the first URB
/// comes back empty (the device completed it while its unlink was in flight) and the next
/// still carries data. Every packet carries one 4-byte frame: a running counter.
struct RacyTeardown {
    queue: std::collections::VecDeque<isoscope::usb::urb::IsoUrb>,
    counter: u32,
    discarded: bool,
    returned_after_discard: usize,
}

impl isoscope::capture::Backend for RacyTeardown {
    fn info(&self) -> isoscope::capture::BackendInfo {
        isoscope::capture::BackendInfo {
            name: "racy".into(),
            speed: isoscope::usb::Speed::High,
            can_mmap: false,
            simulated: true,
        }
    }
    fn memory_limit(&self, app_cap_bytes: u64) -> isoscope::dma::MemoryLimit {
        isoscope::dma::MemoryLimit { usbfs_memory_mb: Some(0), app_cap_bytes }
    }
    fn map_dma(&mut self, _len: usize) -> Result<isoscope::dma::Region, Errno> {
        Err(Errno::ENOSYS)
    }
    fn submit(
        &mut self,
        urb: isoscope::usb::urb::IsoUrb,
    ) -> Result<(), (isoscope::usb::urb::IsoUrb, isoscope::capture::BackendError)> {
        self.queue.push_back(urb);
        Ok(())
    }
    fn reap(
        &mut self,
        _timeout: Duration,
        _wake: Option<&isoscope::capture::Wake>,
    ) -> Result<Option<isoscope::usb::urb::IsoUrb>, isoscope::capture::BackendError> {
        let Some(mut urb) = self.queue.pop_front() else { return Ok(None) };
        let empty = self.discarded && self.returned_after_discard == 0;
        if self.discarded {
            self.returned_after_discard += 1;
        }
        let (descs, buf) = urb.device_view();
        for (i, d) in descs.iter_mut().enumerate() {
            if empty {
                self.counter += 1; // the device sent this frame; it was lost with the unlink
                d.actual_length = 0;
            } else {
                buf[i * 4..i * 4 + 4].copy_from_slice(&self.counter.to_le_bytes());
                self.counter += 1;
                d.actual_length = 4;
            }
            d.status = 0;
        }
        urb.complete(0, 0);
        Ok(Some(urb))
    }
    fn discard_all(&mut self) {
        self.discarded = true;
    }
    fn in_flight(&self) -> usize {
        self.queue.len()
    }
    fn syscalls(&self) -> u64 {
        0
    }
}

#[test]
fn a_hole_at_teardown_ends_the_stream_instead_of_leaving_a_gap_in_it() {
    let stream = isoscope::capture::StreamConfig {
        endpoint: 0x81,
        format: PcmFormat { sample: SampleFormat::S16Le, channels: 2, rate: 48_000 },
        speed: isoscope::usb::Speed::High,
        interval: 1,
        packet_len: 4,
    };
    let backend =
        RacyTeardown { queue: Default::default(), counter: 0, discarded: false, returned_after_discard: 0 };
    let (prod, mut cons) = HeapRb::<u8>::new(128 << 10).split();
    let cfg = CaptureConfig {
        mode: ModeRequest::Copy,
        packets_per_urb: Some(8),
        urbs: Some(4),
        ..CaptureConfig::default()
    };
    let (_, stats) = Capture::run_blocking(backend, stream, &cfg, vec![Sink::Bytes(prod)], 10).unwrap();
    let mut out = vec![0u8; 1 << 20];
    let n = cons.pop_slice(&mut out);
    let frames: Vec<u32> =
        out[..n].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(frames.len() as u64, stats.frames);
    assert!(frames.len() >= 80, "ten URBs of 8 frames before the stop: {}", frames.len());
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(*f, i as u32, "the delivered stream has a gap at frame {i}");
    }
}

/// Drains `cons` into `out` until `until` or until the producer is gone.
fn drain_for(cons: &mut ringbuf::HeapCons<u8>, out: &mut Vec<u8>, until: Instant) {
    use ringbuf::traits::Observer;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = cons.pop_slice(&mut buf);
        out.extend_from_slice(&buf[..n]);
        if n == 0 {
            if Instant::now() >= until || !cons.write_is_held() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn sinks_attached_mid_capture_get_an_unbroken_stream_and_are_let_go_with_their_consumer() {
    use ringbuf::traits::Observer;
    // Short packets (but no failed ones, which drop frames) so the stream stays one signal.
    let dev = SimDevice::new(SimConfig {
        faults: Faults { short_ratio: 0.2, error_ratio: 0.0, disconnect_after_s: None },
        ..SimConfig::default()
    })
    .unwrap();
    let (main_prod, mut main_cons) = HeapRb::<u8>::new(8 << 20).split();
    let cap =
        Capture::start(dev.backend(), dev.stream(), &CaptureConfig::default(), vec![Sink::Bytes(main_prod)])
            .unwrap();
    std::thread::sleep(Duration::from_millis(150));

    // A consumer that comes and goes, as a recording started from the UI.
    let (prod, mut cons) = HeapRb::<u8>::new(128 << 10).split();
    cap.attach(Sink::Bytes(prod)).unwrap();
    let mut first = Vec::new();
    drain_for(&mut cons, &mut first, Instant::now() + Duration::from_millis(300));
    drop(cons);
    // Long enough that a ring still fed after its consumer left would fill up and drop.
    std::thread::sleep(Duration::from_millis(1200));

    let (prod, mut cons) = HeapRb::<u8>::new(128 << 10).split();
    cap.attach(Sink::Bytes(prod)).unwrap();
    let mut second = Vec::new();
    drain_for(&mut cons, &mut second, Instant::now() + Duration::from_millis(200));
    let (stats, failure) = cap.stop();
    assert!(failure.is_none(), "{failure:?}");
    // After the capture ends the producer is gone, and what was buffered is still there.
    assert!(!cons.write_is_held(), "the consumer must learn that the capture ended");
    drain_for(&mut cons, &mut second, Instant::now());

    assert_eq!(stats.ring_drops, 0, "a detached sink was still fed: {stats:?}");
    for (name, bytes) in [("first", &first), ("second", &second)] {
        let fb = dev.stream().format.frame_bytes();
        assert!(bytes.len() > 48_000 / 10 * fb, "{name}: only {} bytes", bytes.len());
        assert_eq!(bytes.len() % fb, 0, "{name}: whole frames only");
        let a = isoscope::sim::check_contiguous(&dev.table(), bytes).expect("the signal");
        assert_eq!(a.mismatched, 0, "{name}: {a:?}");
    }
    let mut all = vec![0u8; 8 << 20];
    let n = main_cons.pop_slice(&mut all);
    assert_eq!(n as u64, stats.bytes, "the first sink got everything");
}

#[test]
fn a_device_whose_every_packet_fails_ends_the_capture_with_no_data() {
    let dev = sim(Faults { short_ratio: 0.0, error_ratio: 1.0, disconnect_after_s: None });
    let cfg = CaptureConfig { no_data_timeout: Some(Duration::from_millis(300)), ..CaptureConfig::default() };
    let run = capture(&dev, &cfg, u64::MAX, 1 << 20).unwrap();
    let Some(CaptureError::NoData { packets, failed, errno: Some(errno), .. }) = run.failure.clone() else {
        panic!("{:?}", run.failure);
    };
    assert!(packets > 0 && failed == packets, "{packets} {failed}");
    use nix::libc;
    assert!([libc::EXDEV, libc::EPROTO, libc::EILSEQ, libc::EOVERFLOW].contains(&errno), "{errno}");
    let msg = run.failure.unwrap().to_string();
    assert!(msg.contains("no valid data for 0.") && msg.contains("most with -E"), "{msg}");
    assert!(run.bytes.is_empty());
    // Healthy data resets the window: faults short of all keep the capture going.
    let dev = sim(Faults { short_ratio: 0.0, error_ratio: 0.9, disconnect_after_s: None });
    let run = capture(&dev, &cfg, 200_000, 1 << 20).unwrap();
    assert!(run.failure.is_none(), "{:?}", run.failure);
}

#[test]
fn a_stop_on_the_simulator_ends_its_wait_for_the_next_urb_at_once() {
    // Full speed, a packet every 16 ms, 8 packets per URB: each URB is due 128 ms after the
    // last, so the capture thread is nearly always waiting when the stop comes.
    let dev =
        SimDevice::new(SimConfig { speed: isoscope::usb::Speed::Full, interval: 16, ..SimConfig::default() })
            .unwrap();
    let cfg = CaptureConfig { packets_per_urb: Some(8), urbs: Some(2), ..CaptureConfig::default() };
    let mut took = Vec::new();
    for wait_ms in [30, 75, 110] {
        let cap = Capture::start(dev.backend(), dev.stream(), &cfg, Vec::new()).unwrap();
        std::thread::sleep(Duration::from_millis(wait_ms));
        let t = Instant::now();
        let (_, failure) = cap.stop();
        took.push(t.elapsed());
        assert!(failure.is_none(), "{failure:?}");
    }
    eprintln!("stop latencies on the simulator: {took:?}");
    assert!(took.iter().all(|t| *t < Duration::from_millis(50)), "{took:?}");
}
