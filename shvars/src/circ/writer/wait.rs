//! The producer blocked by lossless readers: spin, then sleep on `space_seq`, evicting dead
//! readers at once and live ones after the lossless timeout.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::CircWriter;
use crate::circ::futex;
use crate::circ::layout::READER_SLOTS;
use crate::circ::storage::Storage;

/// Rounds of 32 pauses a blocked producer spends watching `space_seq` between two scans of the
/// reader table (about 13 us at 25 ns per pause).
const SPIN_ROUNDS: u32 = 16;

/// How long a blocked producer spins before it sleeps: about the time a reader takes to
/// consume the chunk the producer reclaims at once, at memory speed.
const SPIN_TIME: Duration = Duration::from_micros(200);

/// First sleep of a blocked producer (covers the readers' unfenced position stores).
const FIRST_SLICE: Duration = Duration::from_millis(1);

/// How often a blocked producer re-checks whether the readers blocking it are alive.
const LIVENESS_POLL: Duration = Duration::from_millis(10);

impl<S: Storage> CircWriter<S> {
    /// Waits until every registered lossless reader has consumed everything below `t`,
    /// evicting dead readers at once and live ones after the timeout.
    #[cold]
    pub(super) fn wait_for_readers(&mut self, t: u64) {
        let h = self.v.header();
        let slots = self.v.slots();
        let mut since: Option<Instant> = None;
        let mut checked_alive: Option<Instant> = None;
        let mut flag_raised = false;
        let mut slept = false;
        loop {
            let mut min = u64::MAX;
            let mut blockers = [0u64; READER_SLOTS];
            let mut nblock = 0;
            for (i, s) in slots.iter().enumerate() {
                let tok = s.token.load(Ordering::SeqCst);
                if tok == 0 {
                    continue;
                }
                let pos = s.pos.load(Ordering::SeqCst);
                if pos < t {
                    blockers[i] = tok;
                    nblock += 1;
                } else {
                    min = min.min(pos);
                }
            }
            if nblock == 0 {
                if flag_raised {
                    h.producer_waiting.store(0, Ordering::SeqCst);
                }
                self.min_reader = min;
                return;
            }
            let now = Instant::now();
            let start = *since.get_or_insert(now);
            let timed_out =
                now.duration_since(start) >= self.timeout || self.stop_waiting.is_stopped();
            let check_alive = checked_alive.is_none_or(|c| now.duration_since(c) >= LIVENESS_POLL);
            if check_alive {
                checked_alive = Some(now);
            }
            let mut evicted = false;
            for (i, &tok) in blockers.iter().enumerate() {
                if tok == 0 {
                    continue;
                }
                if timed_out || (check_alive && !self.v.st.reader_slot_alive(i)) {
                    if slots[i]
                        .token
                        .compare_exchange(tok, 0, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        h.readers_evicted.fetch_add(1, Ordering::SeqCst);
                    }
                    evicted = true;
                }
            }
            if evicted {
                continue;
            }
            let still = || {
                blockers.iter().enumerate().any(|(i, &tok)| {
                    tok != 0
                        && slots[i].token.load(Ordering::SeqCst) == tok
                        && slots[i].pos.load(Ordering::SeqCst) < t
                })
            };
            // Announce what we wait for: a reader that passes `t` bumps `space_seq` (and wakes
            // us if we sleep). Watching that word, on our own cache line, instead of the
            // readers' positions leaves their lines alone while they catch up.
            if !flag_raised {
                h.space_target.store(t, Ordering::SeqCst);
                h.producer_waiting.store(1, Ordering::SeqCst);
                flag_raised = true;
            }
            let seen = h.space_seq.load(Ordering::SeqCst);
            if !still() {
                continue;
            }
            if now.duration_since(start) < SPIN_TIME {
                // Readers usually free the space within some tens of microseconds: spin,
                // re-scanning the table after a bump or every few microseconds (a reader's
                // position store is not fenced against its load of `producer_waiting`, so a
                // reader passing `t` just as we announced may not bump).
                let mut rounds = 0;
                while rounds < SPIN_ROUNDS && h.space_seq.load(Ordering::Relaxed) == seen {
                    for _ in 0..32 {
                        std::hint::spin_loop();
                    }
                    rounds += 1;
                }
                continue;
            }
            // Sleep until a blocking reader passes `t` (it wakes us) or the next liveness
            // check / the timeout is due. The first sleep is short, for the same reason as
            // the re-scans above; by then the announcement is visible to every reader.
            let left = self.timeout.saturating_sub(now.duration_since(start));
            let slice = if slept { LIVENESS_POLL } else { FIRST_SLICE };
            if !slept {
                // From now on a reader that bumps `space_seq` also issues the wake.
                h.producer_waiting.store(2, Ordering::SeqCst);
            }
            futex::wait(&h.space_seq, seen, left.min(slice));
            slept = true;
        }
    }
}
