//! The change log of a region: a bounded ring of the owner's writes, in order, that watchers
//! follow ([`ChangeReader`]) and sleep on (a futex word in the header, woken only while
//! someone waits, so writes nobody watches stay cheap).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::layout::{HEADER_SIZE, KIND_ADDED, KIND_RETIRED, LOG_ENTRY_SIZE, STAMP_BUSY};
use super::mapping::Mapping;
use crate::circ::futex;

/// The owner's side of the change log. All owner writes of a region with a log go through
/// [`LogWriter::lock`], so the values in the slots and the entries are in the same order.
#[derive(Debug)]
pub(crate) struct LogWriter {
    map: Arc<Mapping>,
    off: usize,
    mask: u64,
    locked: AtomicBool,
}

impl LogWriter {
    pub(crate) fn new(map: Arc<Mapping>, off: usize, cap: usize) -> LogWriter {
        debug_assert!(cap.is_power_of_two());
        LogWriter {
            map,
            off,
            mask: cap as u64 - 1,
            locked: AtomicBool::new(false),
        }
    }

    /// Takes the (in-process) writer lock.
    #[inline]
    pub(crate) fn lock(&self) -> LogGuard<'_> {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        LogGuard {
            w: self,
            wake: false,
        }
    }

    /// Wakes every watcher (the owner stops).
    pub(crate) fn wake_all(&self) {
        let h = self.map.header();
        h.wake.fetch_add(1, Ordering::SeqCst);
        futex::wake_all(&h.wake);
    }
}

/// The writer lock of the change log, held while one write and its entry are made.
pub(crate) struct LogGuard<'a> {
    w: &'a LogWriter,
    wake: bool,
}

impl LogGuard<'_> {
    /// Appends an entry (see docs/region.md, "Change log").
    #[inline]
    pub(crate) fn append(&mut self, id: u32, kind: u32, value: u64, time_ns: u64) {
        let map = &self.w.map;
        let h = map.header();
        let seq = h.log_head.load(Ordering::Relaxed);
        let e = map.log_entry(self.w.off + ((seq & self.w.mask) as usize) * LOG_ENTRY_SIZE);
        e.stamp.store(STAMP_BUSY, Ordering::Relaxed);
        fence(Ordering::Release);
        e.key
            .store(u64::from(id) | (u64::from(kind) << 32), Ordering::Relaxed);
        e.value.store(value, Ordering::Relaxed);
        e.time_ns.store(time_ns, Ordering::Relaxed);
        e.stamp.store(seq + 1, Ordering::Release);
        // SeqCst with the waiters' SeqCst increment and head load: either a waiter sees the new
        // head, or we see the waiter (no lost wake-up).
        h.log_head.store(seq + 1, Ordering::SeqCst);
        if h.waiters.load(Ordering::SeqCst) != 0 {
            self.wake = true;
        }
    }
}

impl Drop for LogGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.w.locked.store(false, Ordering::Release);
        if self.wake {
            self.w.wake_all();
        }
    }
}

/// What a change-log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A new value (for a string: read the slot, see [`Change::raw`]).
    Value,
    /// The variable was added (with its default value).
    Added,
    /// The variable was retired.
    Retired,
}

/// One entry of the change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Sequence number of the entry (0 for the region's first write; consecutive).
    pub seq: u64,
    /// The variable ([`super::RegionReader::spec_by_id`]).
    pub id: u32,
    /// What happened.
    pub kind: ChangeKind,
    /// The new value: the i64 or the f64 bits of a number; for a string the slot's sequence
    /// after the write (the text is what the slot holds: exactly this change's text while the
    /// slot's sequence still equals `raw`, [`super::StrReader::seq`]).
    pub raw: u64,
    /// When, ns since the Unix epoch.
    pub time_ns: u64,
}

/// What [`ChangeReader::next_event`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeEvent {
    /// The next change.
    Change(Change),
    /// The log was overwritten before this reader got to these many changes: exactly that
    /// many sequence numbers were skipped.
    Missed(u64),
}

/// Follows the change log of a region from a position on ([`super::RegionReader::changes`]).
#[derive(Debug)]
pub struct ChangeReader {
    map: Arc<Mapping>,
    off: usize,
    cap: u64,
    pos: u64,
    /// The header mapped writable, to say that we wait; None when the file is not writable
    /// for us (another user's process): then [`ChangeReader::wait`] sleeps in short steps.
    wait_map: Option<Mapping>,
}

/// How long [`ChangeReader::wait`] sleeps per step when it cannot use the futex.
pub const FALLBACK_STEP: Duration = Duration::from_micros(500);

impl ChangeReader {
    pub(crate) fn new(map: Arc<Mapping>, file: &File, off: usize, cap: usize) -> ChangeReader {
        // The same file again, for writing (the waiter count): only when we may.
        let wait_map = OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .ok()
            .and_then(|f| Mapping::map(&f, HEADER_SIZE, true).ok());
        let pos = map.header().log_head.load(Ordering::Acquire);
        ChangeReader {
            map,
            off,
            cap: cap as u64,
            pos,
            wait_map,
        }
    }

    /// The sequence number of the next change this reader returns.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The sequence number the owner writes next.
    pub fn head(&self) -> u64 {
        self.map.header().log_head.load(Ordering::Acquire)
    }

    /// Entries in the log (how far a reader may fall behind before it misses changes).
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Whether waiting sleeps on the futex (else it polls every 0.5 ms: a reader that may not
    /// open the file for writing cannot use the futex word).
    pub fn uses_futex(&self) -> bool {
        self.wait_map.is_some()
    }

    /// The next change, or how many were lost, without waiting; `None` when there is nothing
    /// new.
    pub fn next_event(&mut self) -> Option<ChangeEvent> {
        let head = self.head();
        if head == self.pos {
            return None;
        }
        if head < self.pos {
            // Only a damaged header goes back; start again from where it is.
            self.pos = head;
            return None;
        }
        if head - self.pos > self.cap {
            let missed = head - self.cap - self.pos;
            self.pos = head - self.cap;
            return Some(ChangeEvent::Missed(missed));
        }
        let e = self
            .map
            .log_entry(self.off + ((self.pos & (self.cap - 1)) as usize) * LOG_ENTRY_SIZE);
        let s1 = e.stamp.load(Ordering::Acquire);
        if s1 == self.pos + 1 {
            let key = e.key.load(Ordering::Relaxed);
            let raw = e.value.load(Ordering::Relaxed);
            let time_ns = e.time_ns.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if e.stamp.load(Ordering::Relaxed) == s1 {
                let seq = self.pos;
                self.pos += 1;
                let kind = (key >> 32) as u32;
                return Some(ChangeEvent::Change(Change {
                    seq,
                    id: key as u32,
                    kind: match kind {
                        KIND_ADDED => ChangeKind::Added,
                        KIND_RETIRED => ChangeKind::Retired,
                        _ => ChangeKind::Value,
                    },
                    raw,
                    time_ns,
                }));
            }
        }
        // The entry was overwritten (or is being) by a later lap: it is lost.
        self.pos += 1;
        Some(ChangeEvent::Missed(1))
    }

    /// Appends to `out` every event since the position, at most `max`; returns how many.
    pub fn poll(&mut self, out: &mut Vec<ChangeEvent>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(e) = self.next_event() else { break };
            out.push(e);
            n += 1;
        }
        n
    }

    /// Sleeps until the owner writes a change this reader has not read, or `timeout` passes
    /// (the owner stopping also wakes it). Returns whether there is something to read.
    pub fn wait(&self, timeout: Duration) -> bool {
        if self.head() != self.pos {
            return true;
        }
        match &self.wait_map {
            Some(wm) => {
                let h = wm.header();
                h.waiters.fetch_add(1, Ordering::SeqCst);
                let w = h.wake.load(Ordering::SeqCst);
                if h.log_head.load(Ordering::SeqCst) == self.pos {
                    futex::wait(&h.wake, w, timeout);
                }
                h.waiters.fetch_sub(1, Ordering::SeqCst);
            }
            None => {
                let start = std::time::Instant::now();
                while self.head() == self.pos && start.elapsed() < timeout {
                    std::thread::sleep(FALLBACK_STEP.min(timeout));
                }
            }
        }
        self.head() != self.pos
    }
}
