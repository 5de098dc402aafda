//! Expiring events by position (`expire_before`): where the tail goes, found from the record
//! starts the producer keeps and, between them, the record headers.

use std::sync::atomic::{fence, Ordering};

use super::CircWriter;
use crate::circ::layout::{decode, read_record, record_size, Record, RECORD_HEADER};
use crate::circ::starts::Start;
use crate::circ::storage::Storage;

impl<S: Storage> CircWriter<S> {
    /// Makes the events that start before stream position `pos` (a value of
    /// [`CircWriter::position`]) unreadable for sampling readers, without writing anything:
    /// a reader behind skips forward to the first event left and counts the others as lost,
    /// exactly as if they had been overwritten (they are counted in `events_overwritten`).
    /// Used to bound how old a served event can be. Lossless readers are never expired:
    /// events from the first one a lossless reader has not consumed stay. Returns how many
    /// events were expired.
    pub fn expire_before(&mut self, pos: u64) -> u64 {
        let mut target = pos.min(self.head);
        for s in self.v.slots() {
            if s.token.load(Ordering::SeqCst) != 0 {
                target = target.min(s.pos.load(Ordering::SeqCst));
            }
        }
        if target <= self.tail {
            return 0;
        }
        let (t, tseq) = self.exact_start(target);
        if t <= self.tail {
            return 0;
        }
        let n = self.reclaim_to(t, tseq);
        // As in make_room: publish the new tail before anything is written below it.
        self.v.header().tail.store(self.tail, Ordering::SeqCst);
        fence(Ordering::Release);
        n
    }

    /// Moves the tail to the record start `t` (in `(tail, head]`), whose event has sequence
    /// number `tseq`, forgets the starts below it and counts the events dropped; returns how
    /// many. The caller publishes the tail.
    pub(super) fn reclaim_to(&mut self, t: u64, tseq: u64) -> u64 {
        self.starts.drop_below(t);
        let n = tseq.saturating_sub(self.tail_seq);
        self.tail = t.min(self.head).max(self.tail);
        self.tail_seq = tseq.clamp(self.tail_seq, self.seq);
        self.overwritten += n;
        self.v
            .header()
            .events_overwritten
            .store(self.overwritten, Ordering::Relaxed);
        n
    }

    /// The first event start at or after `target` (in `(tail, head]`) with its sequence
    /// number. Positions callers pass are record starts as a rule ([`CircWriter::position`],
    /// a lossless reader's position), checked with one header read; any other is found by
    /// walking the record headers from the latest start kept before it. The headers are in
    /// shared memory: one that fails its check ends the walk at the last start that passed,
    /// so a damaged ring makes this expire less than asked, never more.
    #[cold]
    fn exact_start(&self, target: u64) -> Start {
        if let Some((p, s, _)) = self.event_at(target, self.tail_seq, self.seq) {
            return (p, s);
        }
        let (mut p, mut s) = self
            .starts
            .at_or_before(target)
            .unwrap_or((self.tail, self.tail_seq));
        while let Some((q, sq, rec)) = self.event_at(p, s, s) {
            if q >= target || rec == 0 {
                return (q, sq);
            }
            (p, s) = (q + rec, sq + 1);
        }
        (p, s)
    }

    /// The event record at stream position `p`, or the first one after the end-of-ring
    /// padding at `p`, if its header checks out with a sequence number in `lo..=hi`: its
    /// position, sequence number and record size (`head`, `seq` and 0 at `head`).
    fn event_at(&self, p: u64, lo: u64, hi: u64) -> Option<(u64, u64, u64)> {
        let mut p = p;
        for _ in 0..2 {
            if p >= self.head {
                return (p == self.head && (lo..=hi).contains(&self.seq))
                    .then_some((p, self.seq, 0));
            }
            let off = p % self.ring;
            let room = self.ring - off;
            if room < RECORD_HEADER as u64 {
                // No room for a header: the next record is at the start of the ring.
                p += room;
                continue;
            }
            if !p.is_multiple_of(8) {
                // Record starts are 8-aligned.
                return None;
            }
            // SAFETY: off is below the ring size with RECORD_HEADER bytes after it, and
            // 8-aligned (p is, and so is the ring size).
            let words = unsafe { read_record(self.v.data(), off as usize) };
            match decode(words, p)? {
                Record::Event { seq, len, .. } => {
                    let rec = record_size(u64::from(len));
                    let fits = rec <= room && p + rec <= self.head;
                    return ((lo..=hi).contains(&seq) && seq < self.seq && fits)
                        .then_some((p, seq, rec));
                }
                Record::Pad { total } if u64::from(total) == room && words[2] >= lo => p += room,
                Record::Pad { .. } => return None,
            }
        }
        None
    }
}
