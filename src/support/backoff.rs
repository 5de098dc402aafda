//! Waiting longer after each failure: the one capped exponential backoff of the project (spy
//! reconnections, restarts of supervised workers), and [`RepeatedFailure`], which logs a failure
//! that repeats once with a count instead of once per attempt.

use std::time::{Duration, Instant};

/// A capped exponential backoff: `first`, then twice as long after each failure, at most `max`.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use daqproc::support::backoff::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(b.failed(), Duration::from_millis(100));
/// assert_eq!(b.failed(), Duration::from_millis(200));
/// for _ in 0..10 { b.failed(); }
/// assert_eq!(b.failed(), Duration::from_secs(1));
/// b.succeeded();
/// assert_eq!(b.failed(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max: max.max(first),
            next: first,
            failures: 0,
        }
    }

    /// Records a failure; returns how long to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        self.failures = self.failures.saturating_add(1);
        d
    }

    /// Records a success: the next failure waits `first` again.
    pub fn succeeded(&mut self) {
        self.next = self.first;
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The wait the next failure will give.
    pub fn next_wait(&self) -> Duration {
        self.next
    }
}

/// Tells when a failure is worth a log line: the first time a message is seen, then once every
/// `every` while it repeats (with the count of repeats), and once when it stops.
#[derive(Debug)]
pub struct RepeatedFailure {
    every: Duration,
    last: Option<String>,
    repeats: u64,
    logged_at: Option<Instant>,
}

impl RepeatedFailure {
    /// Repeats are summarised at most once every `every`.
    pub fn new(every: Duration) -> RepeatedFailure {
        RepeatedFailure {
            every,
            last: None,
            repeats: 0,
            logged_at: None,
        }
    }

    /// A failure with message `msg`: returns the line to log, if one is due.
    pub fn failed(&mut self, msg: &str) -> Option<String> {
        let now = Instant::now();
        if self.last.as_deref() != Some(msg) {
            let mut line = msg.to_owned();
            if self.repeats > 0 {
                line.push_str(&format!(
                    " (the previous failure repeated {} more time{})",
                    self.repeats,
                    if self.repeats == 1 { "" } else { "s" }
                ));
            }
            self.last = Some(msg.to_owned());
            self.repeats = 0;
            self.logged_at = Some(now);
            return Some(line);
        }
        self.repeats += 1;
        if self
            .logged_at
            .is_some_and(|t| now.duration_since(t) >= self.every)
        {
            let n = std::mem::take(&mut self.repeats);
            self.logged_at = Some(now);
            return Some(format!(
                "{msg} (again, {n} more time{} since the last report)",
                if n == 1 { "" } else { "s" }
            ));
        }
        None
    }

    /// The failure stopped: returns a closing line if repeats were not reported yet.
    pub fn succeeded(&mut self) -> Option<String> {
        let last = self.last.take()?;
        let n = std::mem::take(&mut self.repeats);
        self.logged_at = None;
        (n > 0).then(|| {
            format!(
                "{last}: repeated {n} more time{} before it stopped",
                if n == 1 { "" } else { "s" }
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_are_logged_once_with_a_count() {
        let mut r = RepeatedFailure::new(Duration::from_secs(3600));
        assert_eq!(r.failed("refused").as_deref(), Some("refused"));
        for _ in 0..47 {
            assert_eq!(r.failed("refused"), None);
        }
        assert_eq!(
            r.failed("timeout").as_deref(),
            Some("timeout (the previous failure repeated 47 more times)")
        );
        assert_eq!(r.failed("timeout"), None);
        assert_eq!(
            r.succeeded().as_deref(),
            Some("timeout: repeated 1 more time before it stopped")
        );
        assert_eq!(r.succeeded(), None);
    }
}
