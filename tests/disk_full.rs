//! Recording to a disk that fills up mid-way: a small tmpfs mounted for the test (the tests
//! run as root here and in CI; a failed mount fails the test, it does not skip). The
//! recording stops with an error that names the file, the disk being full (ENOSPC) and what
//! to do; the WAV up to there is valid (its header says the frames it holds); the capture
//! and its other consumers (the scope's ring; the verifier in `isoscope capture`) go on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use isoscope::capture::{Capture, CaptureConfig, Sink};
use isoscope::record::{Kept, RecordError, Recording, WavSamples};
use isoscope::sim::{SimConfig, SimDevice};
use ringbuf::traits::{Consumer, Split};
use ringbuf::HeapRb;

/// A tmpfs of a few KiB, unmounted (and its folder removed) on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(kib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().expect("a temporary folder for the mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k,mode=0700"), "tmpfs"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => SmallDisk { dir },
            Ok(o) => panic!(
                "this test fills a {kib} KiB tmpfs and must mount one (as root, or with CAP_SYS_ADMIN): \
                 `mount -t tmpfs` failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("this test fills a {kib} KiB tmpfs and must run `mount` (util-linux): {e}"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The file is a valid WAV (hound reads every sample) holding exactly `frames` frames,
/// with nothing after them. Returns its samples.
fn valid_wav(path: &Path, frames: u64) -> Vec<i16> {
    let mut r =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("{} is not a valid WAV: {e}", path.display()));
    assert_eq!(u64::from(r.duration()), frames, "the header's frames");
    let spec = r.spec();
    let samples: Vec<i16> = r.samples::<i16>().collect::<Result<_, _>>().expect("every sample reads");
    assert_eq!(samples.len() as u64, frames * u64::from(spec.channels));
    let len = std::fs::metadata(path).unwrap().len();
    assert_eq!(len, 44 + frames * u64::from(spec.channels) * 2, "bytes after the data");
    samples
}

fn assert_names_file_and_disk_full(msg: &str, path: &Path) {
    for want in [path.to_str().unwrap(), "disk is full", "ENOSPC", "Free space", "the capture goes on"] {
        assert!(msg.contains(want), "'{want}' missing from: {msg}");
    }
}

/// The GUI's and `isoscope monitor`'s recording (a [`Recording`] beside a capture).
#[test]
fn a_recording_stops_at_a_full_disk_with_a_valid_file_while_the_capture_and_scope_go_on() {
    let disk = SmallDisk::mount(64);
    let path: PathBuf = disk.path().join("full.wav");
    let dev = SimDevice::new(SimConfig::default()).unwrap(); // paced: 48 kHz stereo S16
    let format = dev.stream().format;
    let (scope_p, mut scope_c) = HeapRb::<f32>::new(1 << 20).split();
    let (rec_p, rec_c) = Recording::ring(format, 2.0);
    let rec = Recording::start(rec_c, &path, format, WavSamples::Native).unwrap();
    let cap = Capture::start(
        dev.backend(),
        dev.stream(),
        &CaptureConfig::default(),
        vec![Sink::Frames(scope_p), Sink::Bytes(rec_p)],
    )
    .unwrap();
    let mut scope = Vec::new();
    let mut buf = vec![0f32; 1 << 16];
    let mut drain = |scope: &mut Vec<f32>| {
        let n = scope_c.pop_slice(&mut buf);
        scope.extend_from_slice(&buf[..n]);
    };
    // 64 KiB of 192 kB/s: the disk is full within a second.
    let t = Instant::now();
    while !rec.is_finished() {
        assert!(t.elapsed() < Duration::from_secs(10), "the recording never hit the full disk");
        drain(&mut scope);
        std::thread::sleep(Duration::from_millis(5));
    }
    let (urbs_then, scope_then) = (cap.stats().urbs, scope.len());
    while t.elapsed() < Duration::from_secs(2) || cap.stats().urbs < urbs_then + 20 {
        assert!(t.elapsed() < Duration::from_secs(20), "the capture stopped with the recording");
        drain(&mut scope);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!cap.is_finished(), "the capture ended with the recording");
    let (_, failure) = cap.stop();
    assert!(failure.is_none(), "{failure:?}");
    drain(&mut scope);
    assert!(
        scope.len() > scope_then + 2 * 4800,
        "the scope stopped getting frames: {} then {}",
        scope_then,
        scope.len()
    );

    let err = rec.stop().expect_err("a full disk is an error");
    let frames = match &err {
        RecordError::DiskFull { path: p, errno, frames, kept: Kept::Valid, .. } => {
            assert_eq!((p, *errno), (&path, "ENOSPC"));
            *frames
        }
        other => panic!("want DiskFull with a valid file, got {other:?}"),
    };
    assert_names_file_and_disk_full(&err.to_string(), &path);
    assert!(frames > 4800, "only {frames} frames fitted on 64 KiB");
    // The file holds the stream's first frames, exactly as the scope saw them.
    let samples = valid_wav(&path, frames);
    assert!(scope.len() >= samples.len());
    for (i, (&w, &s)) in samples.iter().zip(&scope).enumerate() {
        assert_eq!(f32::from(w) / 32768.0, s, "sample {i}");
    }
}

/// `isoscope capture --wav` onto the full disk: the error at the end names the file, the
/// capture ran its whole time and verified every frame, the WAV is valid up to the full disk.
#[test]
fn capture_onto_a_full_disk_keeps_capturing_and_says_so() {
    let disk = SmallDisk::mount(64);
    let other = tempfile::tempdir().unwrap();
    let (wav, json) = (disk.path().join("cli.wav"), other.path().join("s.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_isoscope"))
        .args(["capture", "--device", "sim", "--seconds", "1.5", "--quiet", "--wav"])
        .arg(&wav)
        .arg("--stats-json")
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .expect("isoscope runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a full disk must fail the command: {stderr}");
    assert_names_file_and_disk_full(&stderr, &wav);
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let (frames, wav_frames) = (s["frames"].as_u64().unwrap(), s["wav_frames"].as_u64().unwrap());
    assert!(frames >= 48_000, "the capture did not run its 1.5 s: {s}");
    assert_eq!(s["frames_verified"], s["frames"], "the verifier stopped with the WAV");
    assert!(wav_frames > 4800 && wav_frames < frames / 4, "{wav_frames} of {frames} in the file");
    valid_wav(&wav, wav_frames);
}
