//! What spycat counts and how it reports it (stderr): once a second with --follow --stats, and a
//! summary at the end.

use std::time::{Duration, Instant};

/// Events a source lost, over everything it read (every buffer instance, every connection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Losses {
    /// Events that were never delivered to spycat.
    pub lost: u64,
    /// How they were lost, for the summary: `3 overruns, 0 corrupt records`.
    pub detail: String,
}

/// Totals over everything spycat read.
#[derive(Debug)]
pub struct Tally {
    pub events: u64,
    pub bytes: u64,
    pub last_evnr: Option<u64>,
    started: Instant,
    tick: Instant,
    tick_events: u64,
    tick_bytes: u64,
    tick_lost: u64,
}

const MB: f64 = 1e6;

impl Tally {
    pub fn new() -> Tally {
        let now = Instant::now();
        Tally {
            events: 0,
            bytes: 0,
            last_evnr: None,
            started: now,
            tick: now,
            tick_events: 0,
            tick_bytes: 0,
            tick_lost: 0,
        }
    }

    /// The line of the last second, if a second has passed.
    pub fn per_second(&mut self, name: &str, losses: &Losses) -> Option<String> {
        let now = Instant::now();
        let dt = now.duration_since(self.tick);
        if dt < Duration::from_secs(1) {
            return None;
        }
        let secs = dt.as_secs_f64();
        let lost = losses.lost;
        let line = format!(
            "spycat: {name}: {:.0} events/s, {:.2} MB/s, {} lost in the last {:.1} s; total {} events, {} lost",
            (self.events - self.tick_events) as f64 / secs,
            (self.bytes - self.tick_bytes) as f64 / MB / secs,
            lost - self.tick_lost,
            secs,
            self.events,
            lost
        );
        self.tick = now;
        self.tick_events = self.events;
        self.tick_bytes = self.bytes;
        self.tick_lost = lost;
        Some(line)
    }

    /// The summary at the end.
    pub fn summary(&self, name: &str, losses: &Losses) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        format!(
            "spycat: {name}: {} events, {} bytes in {:.2} s ({:.0} events/s, {:.2} MB/s); lost {} ({}); last event {}",
            self.events,
            self.bytes,
            secs,
            self.events as f64 / secs,
            self.bytes as f64 / MB / secs,
            losses.lost,
            losses.detail,
            self.last_evnr
                .map_or_else(|| "none".to_owned(), |e| e.to_string())
        )
    }
}
