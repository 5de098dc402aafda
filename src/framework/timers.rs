//! The timers a process arms: one-shot or periodic, any period. The runner asks for the next
//! deadline (the event loop sleeps until then) and for the timers that are due.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// A timer armed by a daemon, as given to [`crate::framework::App::timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub(crate) u64);

/// Who a timer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The daemon.
    App,
    /// The framework's heartbeat.
    Heartbeat,
    /// The daemon's `tick`.
    Tick,
}

#[derive(Debug, Clone, Copy)]
struct Armed {
    owner: Owner,
    period: Option<Duration>,
    /// Bumped on every re-arm, so stale heap entries are ignored.
    generation: u64,
}

/// The armed timers of one process.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, u64)>>,
    armed: HashMap<u64, Armed>,
    next_id: u64,
}

impl Timers {
    pub(crate) fn arm(&mut self, owner: Owner, at: Instant, period: Option<Duration>) -> TimerId {
        self.next_id += 1;
        let id = self.next_id;
        self.armed.insert(
            id,
            Armed {
                owner,
                period: period.map(|p| p.max(Duration::from_micros(1))),
                generation: 0,
            },
        );
        self.heap.push(Reverse((at, id, 0)));
        TimerId(id)
    }

    pub(crate) fn cancel(&mut self, id: TimerId) -> bool {
        self.armed.remove(&id.0).is_some()
    }

    pub(crate) fn is_armed(&self, id: TimerId) -> bool {
        self.armed.contains_key(&id.0)
    }

    /// The earliest deadline of an armed timer.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, id, generation))) = self.heap.peek().copied() {
            match self.armed.get(&id) {
                Some(a) if a.generation == generation => return Some(at),
                _ => {
                    self.heap.pop();
                }
            }
        }
        None
    }

    /// Takes the next timer due at `now`; re-arms it if periodic (never in a burst: a periodic
    /// timer that fell behind fires once and continues from now).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TimerId, Owner)> {
        loop {
            let Reverse((at, id, generation)) = *self.heap.peek()?;
            let Some(a) = self.armed.get_mut(&id) else {
                self.heap.pop();
                continue;
            };
            if a.generation != generation {
                self.heap.pop();
                continue;
            }
            if at > now {
                return None;
            }
            self.heap.pop();
            let owner = a.owner;
            match a.period {
                Some(p) => {
                    let mut next = at + p;
                    if next <= now {
                        next = now + p;
                    }
                    a.generation += 1;
                    let g = a.generation;
                    self.heap.push(Reverse((next, id, g)));
                }
                None => {
                    self.armed.remove(&id);
                }
            }
            return Some((TimerId(id), owner));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_periodic_and_cancel() {
        let mut t = Timers::default();
        let t0 = Instant::now();
        let a = t.arm(Owner::App, t0 + Duration::from_millis(30), None);
        let b = t.arm(
            Owner::App,
            t0 + Duration::from_millis(10),
            Some(Duration::from_millis(10)),
        );
        let c = t.arm(Owner::App, t0 + Duration::from_millis(5), None);
        assert!(t.cancel(c));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None);
        let now = t0 + Duration::from_millis(30);
        let mut fired = Vec::new();
        while let Some((id, _)) = t.pop_due(now) {
            fired.push(id);
        }
        // b was due at 10 and again at 20 and 30: a periodic timer that fell behind fires once,
        // never in a burst; a fires at 30.
        assert!(fired.contains(&a));
        assert_eq!(fired.iter().filter(|i| **i == b).count(), 1);
        assert!(!t.is_armed(a));
        assert!(t.is_armed(b));
        // A periodic timer far behind fires once, then continues from now.
        assert_eq!(t.next_deadline(), Some(now + Duration::from_millis(10)));
        let late = now + Duration::from_secs(10);
        assert_eq!(t.pop_due(late).map(|x| x.0), Some(b));
        assert_eq!(t.pop_due(late), None);
        assert_eq!(t.next_deadline(), Some(late + Duration::from_millis(10)));
    }
}
