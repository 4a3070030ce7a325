//! Helpers shared by the integration tests (each test binary uses a part of them).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Where a child run finds the folder its parent set up.
const ALSA_DIR: &str = "ISOSCOPE_TEST_ALSA_DIR";

/// alsa-lib reads `ALSA_CONFIG_PATH` once per process, and setting the environment of a
/// test binary whose other tests run on other threads is unsound (`set_var` races every
/// `getenv`). So a test that needs its own ALSA configuration runs itself again, alone, in
/// a child process that has the variable from its first instruction.
///
/// In the parent: `setup` makes the folder and writes the configuration (returning both
/// paths), the child runs `test` (`--exact`), and `None` comes back once it passed. In the
/// child: the folder, to run the test in.
pub fn in_alsa_child(test: &str, setup: impl FnOnce() -> (PathBuf, PathBuf)) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(ALSA_DIR) {
        return Some(dir.into());
    }
    // One child at a time: they run in real time (see each test), and children of a test
    // binary's parallel tests would otherwise all run at once.
    static ONE_CHILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_CHILD.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, conf) = setup();
    let status = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(ALSA_DIR, &dir)
        .env("ALSA_CONFIG_PATH", format!("/usr/share/alsa/alsa.conf:{}", conf.display()))
        .status()
        .expect("the test binary runs again");
    assert!(status.success(), "{test} failed in its child process (its output is above)");
    None
}

/// What the machine itself did during a real-time run: the longest time a thread asking to
/// sleep 1 ms was away, and how many times it was away for longer than `limit_ms`.
#[derive(Clone, Copy, Debug)]
pub struct Stalls {
    pub worst_ms: f64,
    pub count: u64,
    pub limit_ms: f64,
}

impl Stalls {
    /// Whether the machine stalled past the limit at all.
    pub fn any(&self) -> bool {
        self.count > 0
    }
}

impl std::fmt::Display for Stalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} machine stalls over {} ms, the longest {:.1} ms",
            self.count, self.limit_ms, self.worst_ms
        )
    }
}

/// A thread that sleeps 1 ms at a time and notes how long it was away, until [`StallProbe::finish`].
pub struct StallProbe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(f64, u64)>,
    limit_ms: f64,
}

impl StallProbe {
    pub fn start(limit_ms: f64) -> StallProbe {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut worst = std::time::Duration::ZERO;
            let mut stalls = 0;
            let mut last = std::time::Instant::now();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(1));
                let now = std::time::Instant::now();
                worst = worst.max(now - last);
                stalls += u64::from((now - last).as_secs_f64() * 1000.0 > limit_ms);
                last = now;
            }
            (worst.as_secs_f64() * 1000.0, stalls)
        });
        StallProbe { stop, thread, limit_ms }
    }

    pub fn finish(self) -> Stalls {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (worst_ms, count) = self.thread.join().expect("the stall probe");
        Stalls { worst_ms, count, limit_ms: self.limit_ms }
    }
}

/// Runs `run` and `check`s it; returns the run and how many glitches were excused (0 for a
/// clean run). `check(r, excused)` passes a run whose glitches are within `excused` stalls'
/// worth. A run passes when its check passes with each glitch beyond the rules matched by
/// one of the stalls the probe saw during that same run (`check(r, stalls)`; a run with no
/// stall must pass on its own). A run that fails even so is run again (up to `runs` in
/// all) only when the machine itself stalled during it (what a stall does can reach past
/// what one glitch stands for: a tone's frequency measured through a resync, say); a failure
/// with no stall fails at once.
pub fn checked_runs<R>(
    what: &str,
    runs: usize,
    run: impl Fn() -> (R, Stalls),
    check: impl Fn(&R, u64) -> Result<(), String>,
) -> (R, u64) {
    for attempt in 1..=runs {
        let (r, stalls) = run();
        let Err(strict) = check(&r, 0) else { return (r, 0) };
        if !stalls.any() {
            panic!("{what}: {strict} (no machine stall in this run)");
        }
        match check(&r, stalls.count) {
            Ok(()) => {
                eprintln!(
                    "{what}: run {attempt} passes with its glitches each matched by one of its {stalls}: {strict}"
                );
                return (r, stalls.count);
            }
            Err(e) if attempt < runs => {
                eprintln!("{what}: run {attempt}: {e}, more than its {stalls} account for: running again")
            }
            Err(e) => panic!("{what}: {e}, more than its {stalls} account for, in each of {runs} runs"),
        }
    }
    unreachable!("the last run returns or panics")
}
