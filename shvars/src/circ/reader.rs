//! The reading algorithm shared by [`SamplingReader`](super::SamplingReader) and
//! [`LosslessReader`](super::LosslessReader), and the in-place read guard [`Peeked`].
//!
//! Everything read from the buffer is untrusted here: positions are reduced modulo the ring,
//! every record header is checked against the position it was read at (its stored position and
//! a checksum), lengths are clamped to the largest event and to the end of the ring, and a
//! record is returned only after the re-check that proves the producer did not overwrite it
//! while it was copied (sampling: `tail` did not pass it; lossless: the reader was not
//! evicted). This module never writes to the buffer except a reader's own slot and the waiter
//! count.

use std::path::PathBuf;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use super::error::{
    Evicted, OpenError, ProducerGone, ReadError, ReadTimeoutError, TooSmall, TryReadError,
};
use super::futex;
use super::layout::{
    decode, fmix64, now_ns, read_record, record_size, Record, RECORD_HEADER, STATE_CLOSED,
};
use super::stats::{CircStats, ReaderStats};
use super::storage::Storage;
use super::view::View;

mod peeked;
mod wait;

pub use peeked::Peeked;

/// A reader that finds less than this many new bytes waits [`BATCH_PAUSES`] pauses for more
/// (see `Core::refresh_head`).
const BATCH_BYTES: u64 = 1024;
/// About 0.4 us.
const BATCH_PAUSES: u32 = 16;
/// How often an idle reader tests whether the producer is alive (a system call).
const LIVENESS_EVERY: Duration = Duration::from_millis(100);

/// A reader this far behind the producer's head prefetches the ring's lines ahead of it.
const READ_PREFETCH_BEHIND: u64 = 64 << 10;
/// How far ahead.
const READ_PREFETCH_AHEAD: u64 = 4096;

/// Where a new reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// The oldest event still in the buffer.
    Oldest,
    /// The freshest event already in the buffer (or the next one if there is none): the spy
    /// default.
    #[default]
    Latest,
    /// The first event committed after opening.
    Next,
}

/// What a read returned: the event number and the number of bytes written to the caller's
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventInfo {
    /// The event number the producer gave.
    pub evnr: u64,
    /// Its size in bytes.
    pub len: usize,
}

/// A located record (not yet validated).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loc {
    off: u64,
    evnr: u64,
    seq: u64,
    len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Lossless {
    slot: usize,
    token: u64,
    evicted: bool,
}

/// The state of one reader (sampling or lossless).
#[derive(Debug)]
pub(crate) struct Core<S: Storage> {
    pub(crate) v: View<S>,
    path: PathBuf,
    ring: u64,
    max_event: u64,
    rpos: u64,
    roff: u64,
    /// The producer's head as last loaded: only re-read when the reader runs out.
    head: u64,
    expected_seq: Option<u64>,
    pub(crate) stats: ReaderStats,
    lossless: Option<Lossless>,
    pid: u32,
    checked_alive: Option<Instant>,
    gone: Option<ProducerGone>,
    /// Our entry in the activity table: index and token.
    act: Option<(usize, u64)>,
    /// Events consumed since the activity entry was last refreshed.
    act_count: u32,
    /// When the activity entry was last refreshed (coarse wall clock, ns).
    act_at: u64,
}

/// A reader refreshes its activity entry at least this often while it reads.
const ACTIVITY_EVERY_NS: u64 = 100_000_000;

/// A non-zero token naming one reader's entry in a table (lossless slot or activity entry):
/// mixed from the time, our pid and `salt`.
fn new_token(salt: u64) -> u64 {
    fmix64(now_ns() ^ (u64::from(std::process::id()) << 32) ^ salt) | 1
}

/// An activity entry untouched this long may be taken over by a new reader.
const ACTIVITY_STALE_NS: u64 = 10_000_000_000;

impl<S: Storage> Core<S> {
    pub(crate) fn new(st: S, start: StartAt, lossless: bool) -> Result<Self, OpenError> {
        let v = View::open(st)?;
        let mut c = Core {
            path: v.path().to_owned(),
            ring: v.ring,
            max_event: v.max_event,
            pid: v.header().producer_pid(),
            v,
            rpos: 0,
            roff: 0,
            head: 0,
            expected_seq: None,
            stats: ReaderStats::default(),
            lossless: None,
            checked_alive: None,
            gone: None,
            act: None,
            act_count: 0,
            act_at: 0,
        };
        c.claim_activity();
        if lossless {
            c.register(start)?;
        } else {
            let p = c.start_pos(start);
            c.set_pos(p);
            c.expected_seq = c.seq_at(p);
        }
        Ok(c)
    }

    /// The sequence number the event at stream position `p` has (or, at the head, will have),
    /// so that losses count from the start. `None` if it cannot be told (the record is being
    /// overwritten).
    fn seq_at(&self, p: u64) -> Option<u64> {
        let p = align8(p);
        let h = self.v.header();
        let written = h.events_written.load(Ordering::Acquire);
        if p >= h.head.load(Ordering::Acquire) {
            return Some(written);
        }
        let mut p = p;
        let mut off = p % self.ring;
        for _ in 0..2 {
            let room = self.ring - off;
            if room < RECORD_HEADER as u64 {
                p += room;
                off = 0;
                continue;
            }
            // SAFETY: off is 8-aligned and RECORD_HEADER bytes remain in the ring.
            let words = unsafe { read_record(self.v.data(), off as usize) };
            return match decode(words, p) {
                Some(Record::Event { seq, .. }) => Some(seq),
                Some(Record::Pad { .. }) => Some(words[2]),
                None => None,
            };
        }
        None
    }

    fn start_pos(&self, start: StartAt) -> u64 {
        let h = self.v.header();
        let head = h.head.load(Ordering::Acquire);
        let tail = h.tail.load(Ordering::Acquire);
        match start {
            StartAt::Oldest => tail.min(head),
            StartAt::Next => head,
            StartAt::Latest => {
                if h.events_written.load(Ordering::Acquire) == 0 {
                    head
                } else {
                    h.last.load(Ordering::Acquire).max(tail).min(head)
                }
            }
        }
    }

    /// Moves to stream position `p`, which may come from the shared header (damaged, or
    /// written by a hostile reader with write access): rounded up to a multiple of 8, so that a
    /// record header is never read at an unaligned offset (a position that is not a record
    /// start then fails `decode` like any stale one).
    #[inline]
    fn set_pos(&mut self, p: u64) {
        let p = align8(p);
        self.rpos = p;
        self.roff = p % self.ring;
    }

    #[inline]
    fn advance(&mut self, n: u64) {
        self.rpos += n;
        self.roff += n;
        if self.roff >= self.ring {
            self.roff -= self.ring;
        }
    }

    /// Registers in the lossless reader table.
    fn register(&mut self, start: StartAt) -> Result<(), OpenError> {
        if !self.v.st.writable() {
            return Err(OpenError::Io {
                path: self.path.clone(),
                what: "register as a lossless reader",
                source: std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the buffer file is not writable by this user (read in sampling mode, or ask the producer for mode 0666)",
                ),
            });
        }
        let h = self.v.header();
        let slots = self.v.slots();
        for (i, s) in slots.iter().enumerate() {
            match self.v.st.try_lock_reader_slot(i) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(source) => {
                    return Err(OpenError::Io {
                        path: self.path.clone(),
                        what: "lock a lossless reader slot",
                        source,
                    })
                }
            }
            // We hold the slot's lock: any previous owner is dead. Block the producer (pos 0)
            // until our real position is set.
            s.pos.store(0, Ordering::SeqCst);
            let old = s.token.load(Ordering::SeqCst);
            let token = new_token(i as u64);
            match s
                .token
                .compare_exchange(old, token, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) if old != 0 => {
                    // A dead reader's slot, taken over: it counts as evicted.
                    h.readers_evicted.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(_) => {
                    // The producer evicted the dead owner meanwhile; the slot is free now.
                    if s.token
                        .compare_exchange(0, token, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                    {
                        self.v.st.unlock_reader_slot(i);
                        continue;
                    }
                }
            }
            s.pid.store(std::process::id(), Ordering::Relaxed);
            s.registered_ns.store(now_ns(), Ordering::Relaxed);
            s.active_ns.store(now_ns(), Ordering::Relaxed);
            let mut p = self.start_pos(start);
            s.pos.store(p, Ordering::SeqCst);
            // Announce the registration, then chase `tail`: either the producer sees the
            // registration counter change and rescans the table, or we see its new tail.
            h.reg_seq.fetch_add(1, Ordering::SeqCst);
            loop {
                let t = h.tail.load(Ordering::SeqCst);
                if t <= p {
                    break;
                }
                p = t;
                s.pos.store(p, Ordering::SeqCst);
            }
            self.set_pos(p);
            self.head = p;
            if self.expected_seq.is_none() {
                self.expected_seq = self.seq_at(p);
            }
            self.lossless = Some(Lossless {
                slot: i,
                token,
                evicted: false,
            });
            self.notify_producer();
            return Ok(());
        }
        Err(OpenError::NoFreeSlot {
            path: self.path.clone(),
            slots: slots.len(),
        })
    }

    /// Leaves the reader table.
    pub(crate) fn unregister(&mut self) {
        if let Some(l) = self.lossless.take() {
            let s = &self.v.slots()[l.slot];
            let _ = s
                .token
                .compare_exchange(l.token, 0, Ordering::SeqCst, Ordering::SeqCst);
            self.v.st.unlock_reader_slot(l.slot);
            self.notify_producer_leaving();
        }
    }

    /// Re-registers an evicted lossless reader at the oldest event in the buffer.
    pub(crate) fn rejoin(&mut self) -> Result<(), OpenError> {
        if let Some(l) = self.lossless {
            if !l.evicted {
                return Ok(());
            }
            self.unregister();
        }
        self.register(StartAt::Oldest)
    }

    fn evicted_err(&self) -> Evicted {
        Evicted {
            path: self.path.clone(),
        }
    }

    /// Wakes the producer if it sleeps waiting for lossless readers and this reader's
    /// position reached what it waits for.
    #[inline]
    fn notify_producer(&self) {
        let h = self.v.header();
        let waiting = h.producer_waiting.load(Ordering::Relaxed);
        if waiting != 0 && self.rpos >= h.space_target.load(Ordering::Relaxed) {
            h.space_seq.fetch_add(1, Ordering::SeqCst);
            // 1: the producer spins watching `space_seq`; 2: it may sleep on it. (A producer
            // that goes from 1 to 2 after this load read `space_seq` before our bump, so its
            // sleep returns at once.)
            if waiting != 1 {
                futex::wake_all(&h.space_seq);
            }
        }
    }

    /// Wakes the producer unconditionally if it waits (a reader leaving the table).
    fn notify_producer_leaving(&self) {
        let h = self.v.header();
        if h.producer_waiting.load(Ordering::SeqCst) != 0 {
            h.space_seq.fetch_add(1, Ordering::SeqCst);
            futex::wake_all(&h.space_seq);
        }
    }

    /// After reading record bytes (and an acquire fence): were they possibly overwritten?
    /// A sampling reader then skips to the oldest valid record (`Ok(true)`); a lossless reader
    /// that was evicted gets the error.
    #[inline]
    fn overrun(&mut self) -> Result<bool, Evicted> {
        match &mut self.lossless {
            None => {
                let t = self.v.header().tail.load(Ordering::Relaxed);
                if t > self.rpos {
                    self.stats.overruns += 1;
                    self.set_pos(t);
                    return Ok(true);
                }
                Ok(false)
            }
            Some(l) => {
                if l.evicted || self.v.slots()[l.slot].token.load(Ordering::Relaxed) != l.token {
                    l.evicted = true;
                    return Err(self.evicted_err());
                }
                Ok(false)
            }
        }
    }

    /// Re-reads the producer's head. If only a little has been added since our position, the
    /// producer is probably adding more right now: wait a moment and look once more, so that
    /// a reader that keeps up takes events in batches. Following the producer event by event
    /// would cost it a cache miss per event (the commit line, and the line shared by the end of
    /// one record and the start of the next, both pulled away by the reader after each commit)
    /// and slow it down several times over for small events.
    #[inline]
    fn refresh_head(&mut self) {
        let h = self.v.header();
        let mut head = h.head.load(Ordering::Acquire);
        if head > self.rpos && head - self.rpos < BATCH_BYTES {
            for _ in 0..BATCH_PAUSES {
                std::hint::spin_loop();
            }
            head = h.head.load(Ordering::Acquire);
        }
        self.head = head;
    }

    /// Finds the next record at or after the reader's position. `Ok(None)`: none committed yet.
    #[inline(always)]
    fn locate(&mut self) -> Result<Option<Loc>, Evicted> {
        if let Some(l) = &self.lossless {
            if l.evicted {
                return Err(self.evicted_err());
            }
        }
        let data = self.v.data();
        loop {
            if self.rpos >= self.head {
                self.refresh_head();
                if self.rpos >= self.head {
                    return Ok(None);
                }
            }
            let room = self.ring - self.roff;
            if room < RECORD_HEADER as u64 {
                self.advance(room);
                continue;
            }
            // SAFETY: roff < ring is 8-aligned (positions only move by multiples of 8 and the
            // ring size is a multiple of 8), and RECORD_HEADER bytes remain before its end.
            let words = unsafe { read_record(data, self.roff as usize) };
            match decode(words, self.rpos) {
                Some(Record::Event { evnr, seq, len })
                    if len >= 1
                        && u64::from(len) <= self.max_event
                        && record_size(len.into()) <= room =>
                {
                    return Ok(Some(Loc {
                        off: self.roff,
                        evnr,
                        seq,
                        len: len as usize,
                    }));
                }
                Some(Record::Pad { total }) if u64::from(total) == room => {
                    self.advance(room);
                }
                _ => {
                    // Stale, torn or junk. Overwritten under us, or really damaged?
                    fence(Ordering::Acquire);
                    if self.overrun()? {
                        continue;
                    }
                    self.stats.corrupt_records += 1;
                    let head = self.v.header().head.load(Ordering::Acquire);
                    self.head = head;
                    self.set_pos(head);
                    self.publish_pos();
                }
            }
        }
    }

    /// Publishes a lossless reader's position (everything below it consumed).
    #[inline]
    fn publish_pos(&mut self) {
        if let Some(l) = &self.lossless {
            let s = &self.v.slots()[l.slot];
            // Release: the producer may reuse the space below once it sees this. Not SeqCst (a
            // locked instruction per event); the producer's first sleep covers the window in
            // which it may miss this store (see writer.rs, `wait_for_readers`).
            s.pos.store(self.rpos, Ordering::Release);
            self.notify_producer();
        }
    }

    /// Takes an entry in the activity table (if the file is writable and one is free, or
    /// one was left untouched for 10 s by a reader that went away).
    fn claim_activity(&mut self) {
        if !self.v.st.writable() {
            return;
        }
        let now = now_ns();
        let token = new_token(0xAC71);
        let slots = self.v.activity();
        let pick = slots
            .iter()
            .position(|s| s.token.load(Ordering::Relaxed) == 0)
            .or_else(|| {
                slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| {
                        now.saturating_sub(s.active_ns.load(Ordering::Relaxed)) > ACTIVITY_STALE_NS
                    })
                    .min_by_key(|(_, s)| s.active_ns.load(Ordering::Relaxed))
                    .map(|(i, _)| i)
            });
        if let Some(i) = pick {
            let s = &slots[i];
            let old = s.token.load(Ordering::Relaxed);
            if s.token
                .compare_exchange(old, token, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                s.pid.store(std::process::id(), Ordering::Relaxed);
                s.pos.store(self.rpos, Ordering::Relaxed);
                s.active_ns.store(now, Ordering::Release);
                self.act = Some((i, token));
            }
        }
    }

    /// Tells producers that this reader reads, and how far it got.
    fn note_activity(&mut self) {
        self.act_count = 0;
        self.act_at = super::layout::coarse_now_ns();
        if let Some((i, token)) = self.act {
            let s = &self.v.activity()[i];
            if s.token.load(Ordering::Relaxed) != token {
                // Taken over while we were silent for long: find another entry.
                self.act = None;
                self.claim_activity();
                return;
            }
            s.pos.store(self.rpos, Ordering::Relaxed);
            s.active_ns.store(now_ns(), Ordering::Release);
        }
    }

    /// Leaves the activity table.
    fn release_activity(&mut self) {
        if let Some((i, token)) = self.act.take() {
            let _ = self.v.activity()[i].token.compare_exchange(
                token,
                0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// Marks the located record consumed.
    #[inline(always)]
    fn consume(&mut self, loc: &Loc) {
        self.act_count += 1;
        // Every 256 events, and for a slow reader once 100 ms have passed: a producer counting
        // readers active in the last seconds counts a reader of one event a second too. The
        // clock is read only at the 1st, 2nd, 4th ... 128th event after a refresh (8 reads
        // per 256 events instead of 255: it was a quarter of a fast reader's time), so a
        // reader refreshes at most 200 ms late.
        if self.act_count >= 256
            || (self.act_count.is_power_of_two()
                && super::layout::coarse_now_ns().saturating_sub(self.act_at) >= ACTIVITY_EVERY_NS)
        {
            self.note_activity();
        }
        if let Some(exp) = self.expected_seq {
            if loc.seq > exp {
                self.stats.events_lost += loc.seq - exp;
            }
        }
        self.expected_seq = Some(loc.seq + 1);
        self.stats.events_read += 1;
        self.stats.bytes_read += loc.len as u64;
        let rec = record_size(loc.len as u64);
        self.advance(rec);
        // A reader well behind the head asks for the lines of the records ahead of it (as many
        // as this record's, 4 KiB on): they are committed and stay put. One close behind does
        // not: it would pull lines the producer is still writing away from it.
        if self.head.saturating_sub(self.rpos) > READ_PREFETCH_BEHIND {
            let ahead = self.roff + READ_PREFETCH_AHEAD;
            super::layout::prefetch(self.v.data(), self.ring, ahead, rec, 64);
        }
        if let Some(l) = &self.lossless {
            if self.stats.events_read.is_multiple_of(1024) {
                let s = &self.v.slots()[l.slot];
                s.events_read
                    .store(self.stats.events_read, Ordering::Relaxed);
                s.active_ns.store(now_ns(), Ordering::Relaxed);
            }
        }
        self.publish_pos();
    }

    /// Copies the next event into `buf` and validates it.
    #[inline(always)]
    pub(crate) fn try_read(&mut self, buf: &mut [u8]) -> Result<EventInfo, TryReadError> {
        loop {
            let Some(loc) = self.locate()? else {
                return Err(self.empty_or_gone());
            };
            if buf.len() < loc.len {
                fence(Ordering::Acquire);
                if self.overrun()? {
                    continue;
                }
                return Err(TooSmall {
                    evnr: loc.evnr,
                    needed: loc.len,
                    given: buf.len(),
                }
                .into());
            }
            // SAFETY: the payload [off+HDR, off+HDR+len) lies inside the ring (len was clamped
            // against the room left in the ring in `locate`), `buf` has at least len bytes and
            // does not overlap the shared mapping. The producer may be overwriting these bytes
            // concurrently (sampling reader being lapped): the copy is then discarded by the
            // re-check below.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.v.data().add(loc.off as usize + RECORD_HEADER),
                    buf.as_mut_ptr(),
                    loc.len,
                );
            }
            fence(Ordering::Acquire);
            if self.overrun()? {
                continue;
            }
            self.consume(&loc);
            return Ok(EventInfo {
                evnr: loc.evnr,
                len: loc.len,
            });
        }
    }

    /// Locates the next record for an in-place read.
    pub(crate) fn try_locate(&mut self) -> Result<Loc, TryReadError> {
        match self.locate()? {
            Some(l) => Ok(l),
            None => Err(self.empty_or_gone()),
        }
    }

    /// Nothing to read: is more coming? `Empty`, or the producer is gone for good.
    fn empty_or_gone(&mut self) -> TryReadError {
        if let Some(g) = &mut self.gone {
            // A new producer may have re-created the buffer since we noticed.
            if !g.recreated {
                g.recreated = self.v.st.recreated();
            }
            return TryReadError::ProducerGone(g.clone());
        }
        let h = self.v.header();
        let closed = h.state.load(Ordering::Acquire) == STATE_CLOSED;
        let dead = !closed && {
            let now = Instant::now();
            let due = self
                .checked_alive
                .is_none_or(|c| now.duration_since(c) >= LIVENESS_EVERY);
            if due {
                self.checked_alive = Some(now);
                !self.v.st.producer_alive()
            } else {
                false
            }
        };
        if !(closed || dead) {
            self.note_activity();
            return TryReadError::Empty;
        }
        // The producer's last head store precedes its close / its death: one more look.
        if h.head.load(Ordering::Acquire) > self.rpos {
            return TryReadError::Empty;
        }
        let g = ProducerGone {
            path: self.path.clone(),
            pid: self.pid,
            closed,
            recreated: self.v.st.recreated(),
        };
        self.gone = Some(g.clone());
        TryReadError::ProducerGone(g)
    }

    /// Jumps to the freshest event (KLOE's `spy_refresh`); skipped events are not counted lost.
    /// Returns how many events were skipped.
    pub(crate) fn refresh(&mut self) -> u64 {
        let before = self.expected_seq;
        let p = self.start_pos(StartAt::Latest).max(self.rpos);
        self.set_pos(p);
        self.head = p;
        self.expected_seq = self.seq_at(p);
        self.publish_pos();
        match (before, self.expected_seq) {
            (Some(b), Some(a)) => a.saturating_sub(b),
            _ => 0,
        }
    }

    pub(crate) fn buffer_stats(&self) -> CircStats {
        CircStats::read(self.v.header(), self.v.slots())
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl<S: Storage> Drop for Core<S> {
    fn drop(&mut self) {
        self.release_activity();
        self.unregister();
    }
}

pub(crate) fn timeout_to_read(e: ReadTimeoutError) -> ReadError {
    match e {
        ReadTimeoutError::TooSmall(x) => x.into(),
        ReadTimeoutError::Evicted(x) => x.into(),
        ReadTimeoutError::ProducerGone(x) => x.into(),
        // Without a deadline the loop never times out.
        ReadTimeoutError::Timeout => unreachable!("a read without a time limit timed out"),
    }
}

/// `p` rounded up to a multiple of 8 (record starts are; a position read from the shared header
/// may not be).
#[inline]
fn align8(p: u64) -> u64 {
    p.saturating_add(7) & !7
}
