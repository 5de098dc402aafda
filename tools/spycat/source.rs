//! Where events come from: a local circular buffer ([`crate::local`]) or a farm spy daemon
//! ([`crate::remote`]). The consumer ([`crate::cat`]) sees only this interface, so both print,
//! verify and count events the same way.

use std::time::Duration;

use crate::report::Losses;

/// One step of a source.
#[derive(Debug)]
pub enum Next<'a> {
    /// An event: its number and its bytes (valid until the next call).
    Event(u64, &'a [u8]),
    /// Nothing within the wait; more may come. The consumer asks again.
    Idle,
    /// Event numbers start over here (a new producer, a rejoin, a new connection): the next
    /// event may carry a lower number than the last one.
    Restart,
    /// Nothing more will come (without --follow: everything there was has been read).
    End,
}

/// A source of events.
pub trait Source {
    /// The next event, waiting at most `wait` for one (`Duration::ZERO`: only what is there).
    ///
    /// # Errors
    /// A failure that ends spycat (exit 1), saying what failed on which source.
    fn next_event(&mut self, wait: Duration) -> anyhow::Result<Next<'_>>;

    /// Events lost so far.
    fn losses(&self) -> Losses;
}
