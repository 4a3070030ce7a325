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

/// One figure's values in one mode over the rounds: median and range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many phases it is over.
    pub n: usize,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &mut [f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
        Some(Spread { median, min: values[0], max: values[n - 1], n })
    }
}

/// What an A/B run says of one figure: each mode's median and range, and whether the modes
/// differ by more than the rounds differ among themselves.
#[derive(Clone, Debug)]
pub struct AbFigure {
    pub name: &'static str,
    pub zero_copy: Spread,
    pub copy: Spread,
    /// How to show one value (µs/MiB, a byte count, ...).
    pub format: fn(f64) -> String,
}

/// How an A/B figure compares the modes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AbVerdict {
    /// One phase per mode: no spread to compare against.
    OneRound,
    /// The modes' ranges overlap: the difference is within the run-to-run spread.
    WithinSpread,
    /// Every copy phase above every zero-copy phase (or below): a difference beyond the spread.
    CopyHigher,
    CopyLower,
}

impl AbFigure {
    /// Copy's median over zero-copy's; `None` when zero-copy's is 0 (e.g. bytes copied).
    pub fn ratio(&self) -> Option<f64> {
        (self.zero_copy.median > 0.0).then(|| self.copy.median / self.zero_copy.median)
    }

    pub fn verdict(&self) -> AbVerdict {
        let (z, c) = (&self.zero_copy, &self.copy);
        if c.min > z.max {
            // Apart even with one round each when one side is exactly 0 and the other is not
            // (bytes the kernel copied): nothing varies there to make a spread of.
            if z.n > 1 || c.n > 1 || z.max == 0.0 {
                return AbVerdict::CopyHigher;
            }
        } else if c.max < z.min {
            if z.n > 1 || c.n > 1 || c.max == 0.0 {
                return AbVerdict::CopyLower;
            }
        } else if z.n > 1 || c.n > 1 {
            return AbVerdict::WithinSpread;
        }
        AbVerdict::OneRound
    }

    /// The figure in one plain sentence.
    pub fn statement(&self) -> String {
        let f = self.format;
        let ratio = match self.ratio() {
            Some(r) => format!("copy / zero-copy {r:.2}x"),
            None => format!("zero-copy {}, copy {}", f(self.zero_copy.median), f(self.copy.median)),
        };
        let range = |s: &Spread| format!("{}-{}", f(s.min), f(s.max));
        match self.verdict() {
            AbVerdict::OneRound => format!("{}: {ratio} (one round: run more to see the spread)", self.name),
            AbVerdict::WithinSpread => format!(
                "{}: {ratio}, within the run-to-run spread (zero-copy {}, copy {}): no clear difference",
                self.name,
                range(&self.zero_copy),
                range(&self.copy)
            ),
            AbVerdict::CopyHigher => format!("{}: {ratio}, copy higher in every round", self.name),
            AbVerdict::CopyLower => format!("{}: {ratio}, copy lower in every round", self.name),
        }
    }
}

/// The figures of a finished (or partial) run, for the modes that both have phases.
pub fn summary(results: &[AbResult]) -> Vec<AbFigure> {
    type Get = fn(&AbResult) -> f64;
    type Show = fn(f64) -> String;
    let figures: [(&'static str, Get, Show); 4] = [
        ("engine CPU per MiB", |r| r.cpu_us_per_mib, |v| format!("{v:.0} µs")),
        ("syscalls per second", |r| r.syscalls_per_s, |v| format!("{v:.0}")),
        ("bytes the kernel copied", |r| r.copied_bytes as f64, |v| crate::dma::human_bytes(v as u64)),
        ("reap latency", |r| r.latency_us, |v| format!("{v:.0} µs")),
    ];
    let mut out = Vec::new();
    for (name, get, format) in figures {
        let of = |path| results.iter().filter(|r| r.path == path).map(get).collect::<Vec<_>>();
        let (Some(zero_copy), Some(copy)) =
            (Spread::of(&mut of(TransferPath::ZeroCopy)), Spread::of(&mut of(TransferPath::Copy)))
        else {
            return Vec::new();
        };
        out.push(AbFigure { name, zero_copy, copy, format });
    }
    out
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

    fn result(round: usize, path: TransferPath, cpu: f64, copied: u64) -> AbResult {
        AbResult {
            round,
            path,
            cpu_us_per_mib: cpu,
            syscalls_per_s: 100.0,
            copied_bytes: copied,
            latency_us: 500.0,
            seconds: 3.0,
        }
    }

    #[test]
    fn medians_ratio_and_spread_say_when_a_difference_is_within_the_noise() {
        use TransferPath::{Copy, ZeroCopy};
        // CPU per MiB: zero-copy 800..1200, copy 900..1000: the ranges overlap.
        let rs = [
            result(0, ZeroCopy, 1200.0, 0),
            result(0, Copy, 1000.0, 1 << 20),
            result(1, ZeroCopy, 800.0, 0),
            result(1, Copy, 900.0, 1 << 20),
            result(2, ZeroCopy, 1000.0, 0),
            result(2, Copy, 950.0, 1 << 20),
        ];
        let s = summary(&rs);
        let cpu = &s[0];
        assert_eq!((cpu.zero_copy.median, cpu.copy.median), (1000.0, 950.0));
        assert_eq!((cpu.zero_copy.min, cpu.zero_copy.max, cpu.zero_copy.n), (800.0, 1200.0, 3));
        assert!((cpu.ratio().unwrap() - 0.95).abs() < 1e-9);
        assert_eq!(cpu.verdict(), AbVerdict::WithinSpread);
        assert!(
            cpu.statement().contains("0.95x") && cpu.statement().contains("no clear difference"),
            "{}",
            cpu.statement()
        );
        // Bytes copied: 0 against 1 MiB every round, no ratio, beyond any spread.
        let copied = &s[2];
        assert_eq!(copied.ratio(), None);
        assert_eq!(copied.verdict(), AbVerdict::CopyHigher);
        assert!(copied.statement().contains("zero-copy 0 B, copy 1.0 MiB"), "{}", copied.statement());
        // Copy above zero-copy in every round: beyond the spread.
        let apart = [
            result(0, ZeroCopy, 100.0, 0),
            result(0, Copy, 150.0, 0),
            result(1, ZeroCopy, 110.0, 0),
            result(1, Copy, 160.0, 0),
        ];
        let cpu = &summary(&apart)[0];
        assert_eq!(cpu.verdict(), AbVerdict::CopyHigher);
        assert!((cpu.ratio().unwrap() - 155.0 / 105.0).abs() < 1e-9);
        // One round: no spread to judge by.
        let one = [result(0, ZeroCopy, 100.0, 0), result(0, Copy, 150.0, 0)];
        assert_eq!(summary(&one)[0].verdict(), AbVerdict::OneRound);
        assert!(summary(&one)[0].statement().contains("one round"));
        // Before both modes ran: nothing to say.
        assert!(summary(&one[..1]).is_empty());
    }
}
