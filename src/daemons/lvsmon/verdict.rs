//! A check's state across probes: HAProxy's `rise`/`fall` (the TODO's "3 strikes and you're
//! out"), a maximum time without success (its "no success for 5 minutes"), the failure count
//! that never wraps, and the edges — the only moments anything is announced.

/// A check's state, as published in `check.NAME.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Status {
    /// No verdict yet (just started, or just added by a reload).
    #[default]
    Unknown = 0,
    /// In service.
    Up = 1,
    /// Out of service.
    Down = 2,
}

/// Labels of `check.NAME.status`, indexed by [`Status`] value.
pub const STATUS_LABELS: [&str; 3] = ["UNKNOWN", "UP", "DOWN"];

impl Status {
    /// The label.
    pub fn label(self) -> &'static str {
        STATUS_LABELS[self as usize]
    }
}

/// Why a check went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The first verdict, or `rise` successes / `fall` failures in a row.
    Streak,
    /// No success for longer than the check's `max_without_success`.
    NoSuccess,
}

/// A change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Before.
    pub old: Status,
    /// After.
    pub new: Status,
    /// Why.
    pub cause: Cause,
}

/// The thresholds of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Successes in a row that bring a DOWN check UP (at least 1).
    pub rise: u32,
    /// Failures in a row that bring an UP check DOWN (at least 1).
    pub fall: u32,
    /// A check UP that has not succeeded for this long goes DOWN; 0: no limit.
    pub max_without_success_ms: u64,
}

/// The state of one check across probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// The current state.
    pub status: Status,
    /// Results in a row that go against the current state (failures while UP, successes while
    /// DOWN).
    pub against: u32,
    /// Failures since the check started; saturates at `u64::MAX` instead of wrapping.
    pub fails: u64,
    /// Probes since the check started (saturating).
    pub probes: u64,
    /// When it last succeeded (ms on the checker's clock); the first probe's start if never.
    pub last_success_ms: u64,
    /// When the current state began (ms on the checker's clock).
    pub since_ms: u64,
}

impl Verdict {
    /// A verdict for a check whose first probe starts at `now_ms`.
    pub fn new(now_ms: u64) -> Verdict {
        Verdict {
            last_success_ms: now_ms,
            since_ms: now_ms,
            ..Verdict::default()
        }
    }

    /// Records one probe's result at `now_ms`; returns the change of state it causes, if any.
    pub fn record(&mut self, ok: bool, now_ms: u64, t: &Thresholds) -> Option<Change> {
        self.probes = self.probes.saturating_add(1);
        if ok {
            self.last_success_ms = now_ms;
        } else {
            self.fails = self.fails.saturating_add(1);
        }
        let old = self.status;
        let (new, cause) = match (old, ok) {
            (Status::Unknown, true) => (Status::Up, Cause::Streak),
            (Status::Unknown, false) => (Status::Down, Cause::Streak),
            (Status::Up, true) | (Status::Down, false) => {
                self.against = 0;
                return None;
            }
            (Status::Up, false) => {
                self.against = self.against.saturating_add(1);
                let starved = t.max_without_success_ms > 0
                    && now_ms.saturating_sub(self.last_success_ms) >= t.max_without_success_ms;
                if self.against >= t.fall.max(1) {
                    (Status::Down, Cause::Streak)
                } else if starved {
                    (Status::Down, Cause::NoSuccess)
                } else {
                    return None;
                }
            }
            (Status::Down, true) => {
                self.against = self.against.saturating_add(1);
                if self.against < t.rise.max(1) {
                    return None;
                }
                (Status::Up, Cause::Streak)
            }
        };
        self.status = new;
        self.against = 0;
        self.since_ms = now_ms;
        Some(Change { old, new, cause })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        rise: 2,
        fall: 3,
        max_without_success_ms: 0,
    };

    fn run(v: &mut Verdict, results: &str, t: &Thresholds) -> Vec<(Status, Status)> {
        let mut out = Vec::new();
        for (i, c) in results.chars().enumerate() {
            if let Some(ch) = v.record(c == '+', i as u64 * 1000, t) {
                out.push((ch.old, ch.new));
            }
        }
        out
    }

    #[test]
    fn rise_and_fall() {
        use Status::*;
        let mut v = Verdict::new(0);
        // First verdict at once; 2 failures are not enough to fall, 3 are; 1 success is not
        // enough to rise, 2 are.
        let edges = run(&mut v, "++--+---+-++", &T);
        assert_eq!(edges, vec![(Unknown, Up), (Up, Down), (Down, Up)]);
        assert_eq!(v.fails, 6);
        assert_eq!(v.probes, 12);
    }

    #[test]
    fn no_success_for_too_long() {
        let t = Thresholds {
            rise: 1,
            fall: 1000,
            max_without_success_ms: 4500,
        };
        let mut v = Verdict::new(0);
        let mut down_at = None;
        for i in 0..10u64 {
            if let Some(c) = v.record(i == 0, i * 1000, &t) {
                if c.new == Status::Down {
                    assert_eq!(c.cause, Cause::NoSuccess);
                    down_at = Some(i);
                }
            }
        }
        assert_eq!(down_at, Some(5));
    }

    #[test]
    fn failures_never_wrap() {
        let mut v = Verdict::new(0);
        v.fails = u64::MAX - 1;
        v.record(false, 0, &T);
        v.record(false, 0, &T);
        assert_eq!(v.fails, u64::MAX);
    }
}
