//! A reader that ran out of events: a short spin on `head`, then a futex sleep on `wake_seq`
//! announced in `waiters`, until an event, the producer's end or the timeout.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Core, EventInfo, Loc};
use crate::circ::error::{ReadTimeoutError, TryReadError};
use crate::circ::futex;
use crate::circ::layout::{now_ns, STATE_CLOSED};
use crate::circ::storage::Storage;

/// Longest single futex sleep: a sleeping reader re-checks the producer's liveness this often.
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// Pauses (about 25 ns each on current x86) of the bounded spin before a reader sleeps.
const SPIN_LIMIT: u32 = 2000;
/// Pauses before a reader that ran out of events looks at `head` again, at first...
const SPIN_FIRST: u32 = 16;
/// ... and at most (the wait doubles between looks).
const SPIN_MAX: u32 = 64;
/// First sleep after a reader announces itself (covers the producer's unfenced commit).
const FIRST_SLICE: Duration = Duration::from_millis(1);
/// A reader that cannot write the header (read-only file) polls this often instead.
const POLL_SLICE: Duration = Duration::from_millis(1);

impl<S: Storage> Core<S> {
    /// True if an event may be waiting (without validating it).
    fn has_data(&self) -> bool {
        self.v.header().head.load(Ordering::SeqCst) > self.rpos
    }

    /// Spins briefly (bounded, some tens of microseconds) for the next commit: cheaper than a futex
    /// round trip when events come back to back. True if something arrived.
    ///
    /// Every look at `head` pulls the producer's commit line away from it, and its next commit
    /// has to fetch it back: a reader that looks after every pause slows the producer down to
    /// the speed of that exchange. So the looks back off (from about 0.4 to 1.6 us apart): a
    /// reader that keeps up then takes the events in small batches, at a cost of a microsecond
    /// of latency at most, and never slows the producer.
    fn spin(&self) -> bool {
        let mut pause = SPIN_FIRST;
        let mut spent = 0;
        while spent < SPIN_LIMIT {
            for _ in 0..pause {
                std::hint::spin_loop();
            }
            spent += pause;
            if self.has_data() {
                return true;
            }
            pause = (pause * 2).min(SPIN_MAX);
        }
        false
    }

    /// Sleeps until the producer commits something past our position, closes, or `limit`
    /// passes (at most WAIT_SLICE, so that liveness gets re-checked).
    ///
    /// The reader announces itself in `waiters`; the producer, seeing a non-zero count after a
    /// commit, resets it, bumps `wake_seq` and wakes everyone sleeping on it. Because the
    /// producer's commit does not fence its head store against its load of `waiters`, an
    /// announcement made in the same instant as a commit may be missed by that commit; the
    /// first sleep after announcing is therefore short (FIRST_SLICE), after which the
    /// announcement is visible to every later commit. Sleeping again is only safe while
    /// `wake_seq` is unchanged (a change means the count was reset: go round and announce
    /// again).
    fn wait(&mut self, limit: Duration) {
        let h = self.v.header();
        let limit = limit.min(WAIT_SLICE);
        if !self.v.st.writable() {
            // Cannot announce ourselves: poll.
            if !self.has_data() {
                let seen = h.wake_seq.load(Ordering::SeqCst);
                futex::wait(&h.wake_seq, seen, limit.min(POLL_SLICE));
            }
            return;
        }
        // (The activity entry was refreshed when the attempt before this wait found nothing.)
        let start = Instant::now();
        h.waiters.fetch_add(1, Ordering::SeqCst);
        let seen = h.wake_seq.load(Ordering::SeqCst);
        if self.has_data() || h.state.load(Ordering::SeqCst) == STATE_CLOSED {
            return;
        }
        if let Some(l) = &self.lossless {
            self.v.slots()[l.slot]
                .active_ns
                .store(now_ns(), Ordering::Relaxed);
        }
        futex::wait(&h.wake_seq, seen, limit.min(FIRST_SLICE));
        if self.has_data() || h.wake_seq.load(Ordering::SeqCst) != seen {
            return;
        }
        if let Some(rest) = limit.checked_sub(start.elapsed()) {
            futex::wait(&h.wake_seq, seen, rest);
        }
        // No decrement: the producer resets the count when it wakes (a stale count costs it one
        // spurious wake, never a missed one).
    }

    /// Reads the next event, waiting at most `timeout` (forever if `None`). The first attempt
    /// is inlined into the caller: a reader that keeps finding events never leaves it (the
    /// result travels in registers, not through memory).
    #[inline]
    pub(crate) fn read_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<EventInfo, ReadTimeoutError> {
        match self.try_read(buf) {
            Err(TryReadError::Empty) => self.until(timeout, |c| c.try_read(buf)),
            r => r.map_err(ReadTimeoutError::from),
        }
    }

    pub(crate) fn locate_timeout(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Loc, ReadTimeoutError> {
        self.until(timeout, Core::try_locate)
    }

    /// Retries `attempt` while it finds no event, spinning briefly then sleeping, until
    /// `timeout` (forever if `None`).
    #[inline(never)]
    fn until<T>(
        &mut self,
        timeout: Option<Duration>,
        mut attempt: impl FnMut(&mut Self) -> Result<T, TryReadError>,
    ) -> Result<T, ReadTimeoutError> {
        // The deadline is taken after the first attempt fails: an event already there costs
        // no clock read.
        let mut deadline: Option<Option<Instant>> = None;
        loop {
            match attempt(self) {
                Err(TryReadError::Empty) => {}
                r => return r.map_err(ReadTimeoutError::from),
            }
            let deadline = *deadline.get_or_insert_with(|| timeout.map(|t| Instant::now() + t));
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(l) if !l.is_zero() => l,
                    _ => return Err(ReadTimeoutError::Timeout),
                },
                None => WAIT_SLICE,
            };
            if !self.spin() {
                self.wait(left);
            }
        }
    }
}
