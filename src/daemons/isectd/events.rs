//! What isectd remembers of what it did and why (`listevents`, `config events N`), and the
//! histogram of completed work (`buckets NUM SECS`, `PeakBucket`, `Buckets`).

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

/// The remembered events, most recent last.
#[derive(Debug)]
pub struct Events {
    max: usize,
    list: VecDeque<(SystemTime, String)>,
}

impl Events {
    /// Remembers at most `max`.
    pub fn new(max: usize) -> Events {
        Events {
            max,
            list: VecDeque::new(),
        }
    }

    /// How many are remembered now.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Changes how many are kept (the oldest go).
    pub fn resize(&mut self, max: usize) {
        self.max = max;
        while self.list.len() > max {
            self.list.pop_front();
        }
    }

    /// Remembers one.
    pub fn push(&mut self, text: String) {
        if self.max == 0 {
            return;
        }
        if self.list.len() == self.max {
            self.list.pop_front();
        }
        self.list.push_back((SystemTime::now(), text));
    }

    /// The last `n`, most recent first, one per line with its time.
    pub fn list(&self, n: usize) -> String {
        self.list
            .iter()
            .rev()
            .take(n)
            .map(|(t, s)| format!("{} {s}", humantime::format_rfc3339_millis(*t)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Completed work counted in `num` buckets of `secs` seconds each; bucket 0 is the current one.
#[derive(Debug)]
pub struct Buckets {
    secs: u64,
    counts: VecDeque<u64>,
    current_since: Instant,
    peak: u64,
}

impl Buckets {
    /// `num` empty buckets of `secs` seconds.
    pub fn new(num: usize, secs: u64) -> Buckets {
        Buckets {
            secs: secs.max(1),
            counts: std::iter::repeat_n(0, num.max(1)).collect(),
            current_since: Instant::now(),
            peak: 0,
        }
    }

    /// Seconds per bucket.
    pub fn secs(&self) -> u64 {
        self.secs
    }

    /// Counts `n` completions now.
    pub fn count(&mut self, n: u64) {
        self.roll(Instant::now());
        if let Some(c) = self.counts.front_mut() {
            *c += n;
            self.peak = self.peak.max(*c);
        }
    }

    /// Starts new buckets for the time passed since the current one began.
    pub fn roll(&mut self, now: Instant) {
        let secs = now.duration_since(self.current_since).as_secs();
        let steps = secs / self.secs;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(self.counts.len() as u64) {
            self.counts.pop_back();
            self.counts.push_front(0);
        }
        self.current_since += std::time::Duration::from_secs(steps * self.secs);
    }

    /// The highest bucket since the histogram started.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// The counts, newest first, as the seed prints them (two spaces between).
    pub fn text(&self) -> String {
        self.counts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("  ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn events_keep_the_newest_first() {
        let mut e = Events::new(2);
        for i in 0..3 {
            e.push(format!("e{i}"));
        }
        let l = e.list(10);
        assert!(l.lines().next().unwrap().ends_with(" e2"), "{l}");
        assert_eq!(e.len(), 2);
        e.resize(0);
        e.push("x".into());
        assert!(e.is_empty());
    }

    #[test]
    fn buckets_roll_with_time() {
        let mut b = Buckets::new(3, 5);
        b.count(4);
        assert_eq!(b.text(), "4  0  0");
        let t = b.current_since;
        b.roll(t + Duration::from_secs(11));
        assert_eq!(b.text(), "0  0  4");
        b.roll(t + Duration::from_secs(100));
        assert_eq!(b.text(), "0  0  0");
        assert_eq!(b.peak(), 4);
    }
}
