//! Snapshots of a buffer's counters ([`CircStats`]) and of one reader's ([`ReaderStats`]).

use std::sync::atomic::Ordering;

use super::layout::{CircHeader, ReaderSlot};

/// The counters of a buffer, as the producer published them (a snapshot: every field is read
/// separately, so fields may be a few events apart from each other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CircStats {
    /// Nominal capacity in bytes.
    pub capacity: u64,
    /// Largest event accepted, in bytes (half the capacity).
    pub max_event: u64,
    /// Pid of the producer of this instance.
    pub producer_pid: u32,
    /// Instance id (changes when the buffer is re-created).
    pub instance: u64,
    /// Events committed since creation.
    pub events_written: u64,
    /// Payload bytes committed since creation.
    pub bytes_written: u64,
    /// Events whose space was reclaimed for newer events.
    pub events_overwritten: u64,
    /// Events refused because they were larger than `max_event`.
    pub events_refused: u64,
    /// Lossless readers evicted (dead, or blocking the producer past the timeout).
    pub readers_evicted: u64,
    /// Lossless readers registered now.
    pub lossless_readers: u32,
    /// Event number of the last event committed, if any.
    pub last_evnr: Option<u64>,
    /// Stream position after the last committed record.
    pub head: u64,
    /// Stream position of the oldest record readers may still read.
    pub tail: u64,
    /// True once the producer closed the buffer cleanly.
    pub closed: bool,
}

impl CircStats {
    pub(crate) fn read(h: &CircHeader, slots: &[ReaderSlot]) -> Self {
        let written = h.events_written.load(Ordering::Acquire);
        CircStats {
            capacity: h.capacity(),
            max_event: h.max_event(),
            producer_pid: h.producer_pid(),
            instance: h.instance(),
            events_written: written,
            bytes_written: h.bytes_written.load(Ordering::Relaxed),
            events_overwritten: h.events_overwritten.load(Ordering::Relaxed),
            events_refused: h.events_refused.load(Ordering::Relaxed),
            readers_evicted: h.readers_evicted.load(Ordering::Relaxed),
            lossless_readers: slots
                .iter()
                .filter(|s| s.token.load(Ordering::Relaxed) != 0)
                .count() as u32,
            last_evnr: (written > 0).then(|| h.last_evnr.load(Ordering::Relaxed)),
            head: h.head.load(Ordering::Acquire),
            tail: h.tail.load(Ordering::Acquire),
            closed: h.is_closed(),
        }
    }
}

/// What one reader has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReaderStats {
    /// Events returned as valid.
    pub events_read: u64,
    /// Payload bytes of those events.
    pub bytes_read: u64,
    /// Events the reader never saw because the producer overwrote them first (a sampling reader
    /// overrun, a lossless reader after an eviction, or records skipped as corrupt). Events
    /// skipped on purpose by `refresh` are not counted.
    pub events_lost: u64,
    /// Times the reader was overrun and skipped to the oldest valid event.
    pub overruns: u64,
    /// Records found damaged (failed checks while not overrun) and skipped.
    pub corrupt_records: u64,
}

/// Who reads a buffer now, from the reader activity table and the lossless reader table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReaderActivity {
    /// Readers that consumed an event or looked for one within the window asked for.
    pub active: u32,
    /// The furthest stream position those readers consumed up to (`None` if none is active).
    pub consumed_to: Option<u64>,
    /// The producer's stream position (what is written).
    pub head: u64,
}

impl ReaderActivity {
    pub(crate) fn read(
        h: &CircHeader,
        slots: &[ReaderSlot],
        act: &[super::layout::ActivitySlot],
        within_ns: u64,
    ) -> Self {
        let now = super::layout::now_ns();
        let recent = |t: u64| now.saturating_sub(t) <= within_ns;
        let mut r = ReaderActivity {
            head: h.head.load(Ordering::Acquire),
            ..Default::default()
        };
        let mut see = |pos: u64| {
            r.active += 1;
            r.consumed_to = Some(r.consumed_to.map_or(pos, |c: u64| c.max(pos)));
        };
        for a in act {
            if a.token.load(Ordering::Relaxed) != 0 && recent(a.active_ns.load(Ordering::Acquire)) {
                see(a.pos.load(Ordering::Relaxed));
            }
        }
        // Lossless readers also hold an activity entry when they could claim one; count the
        // others from their own table.
        let has_entry = |pid: u32| {
            act.iter().any(|a| {
                a.token.load(Ordering::Relaxed) != 0 && a.pid.load(Ordering::Relaxed) == pid
            })
        };
        for s in slots {
            if s.token.load(Ordering::Relaxed) != 0
                && !has_entry(s.pid.load(Ordering::Relaxed))
                && recent(s.active_ns.load(Ordering::Relaxed))
            {
                see(s.pos.load(Ordering::Relaxed));
            }
        }
        r
    }
}
