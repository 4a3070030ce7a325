//! The A/B run: the same device captured in zero-copy then copy mode, phase after phase,
//! each phase's engine figures kept, and the mode the user had restored at the end.

use crate::capture::{ModeRequest, StatsSnapshot};
use crate::dma::TransferPath;

/// One A/B phase's result.
#[derive(Clone, Debug, PartialEq)]
pub struct AbResult {
    pub round: usize,
    pub path: TransferPath,
    pub cpu_us_per_mib: f64,
    pub syscalls_per_s: f64,
    pub copied_bytes: u64,
    pub latency_us: f64,
    pub seconds: f64,
}

impl AbResult {
    pub fn from_stats(round: usize, path: TransferPath, s: &StatsSnapshot) -> AbResult {
        let secs = s.elapsed_ns as f64 / 1e9;
        AbResult {
            round,
            path,
            cpu_us_per_mib: s.cpu_us_per_mib(),
            syscalls_per_s: if secs > 0.0 { s.syscalls as f64 / secs } else { 0.0 },
            copied_bytes: s.kernel_copied_bytes,
            latency_us: s.reap_latency_mean_us(),
            seconds: secs,
        }
    }
}

/// The A/B run in progress or done.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AbState {
    pub running: bool,
    pub round: usize,
    pub phase: Option<ModeRequest>,
    pub results: Vec<AbResult>,
    pub error: Option<String>,
}

/// Persisted A/B settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AbSettings {
    pub seconds: f64,
    pub rounds: usize,
}

impl Default for AbSettings {
    fn default() -> Self {
        AbSettings { seconds: 3.0, rounds: 2 }
    }
}

impl AbState {
    /// A run that starts with zero-copy in round 0.
    pub fn begin() -> AbState {
        AbState { running: true, round: 0, phase: Some(ModeRequest::ZeroCopy), ..AbState::default() }
    }

    /// Records the phase that just ended and moves on: the mode of the next phase, or
    /// `None` when all `rounds` are done (the run is then no longer running).
    pub fn advance(
        &mut self,
        path: TransferPath,
        stats: &StatsSnapshot,
        rounds: usize,
    ) -> Option<ModeRequest> {
        self.results.push(AbResult::from_stats(self.round, path, stats));
        let next = match self.phase {
            Some(ModeRequest::ZeroCopy) => Some(ModeRequest::Copy),
            _ if self.round + 1 < rounds => {
                self.round += 1;
                Some(ModeRequest::ZeroCopy)
            }
            _ => None,
        };
        self.phase = next;
        self.running = next.is_some();
        next
    }

    /// Ends the run early, saying why.
    pub fn fail(&mut self, why: String) {
        self.running = false;
        self.phase = None;
        self.error = Some(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_alternate_zero_copy_and_copy_for_the_rounds_asked() {
        let mut ab = AbState::begin();
        let st = StatsSnapshot::default();
        let mut modes = vec![ab.phase.unwrap()];
        while let Some(m) = ab.advance(TransferPath::ZeroCopy, &st, 2) {
            modes.push(m);
        }
        use ModeRequest::{Copy, ZeroCopy};
        assert_eq!(modes, vec![ZeroCopy, Copy, ZeroCopy, Copy]);
        assert_eq!(ab.results.len(), 4);
        assert!(!ab.running && ab.phase.is_none());
        assert_eq!(ab.results.iter().map(|r| r.round).collect::<Vec<_>>(), vec![0, 0, 1, 1]);
    }
}
