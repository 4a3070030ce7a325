//! Helpers shared by the integration tests.

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
