//! The framework every daemon stands on: a process with a region of shared variables, a control
//! FIFO and socket, a run-state machine driven by a declarative command table, KLOE's statistics
//! cadence, an event log, systemd notifications, and one event loop that waits on everything a
//! daemon needs (commands, signals, timers, descriptors, its threads' mailbox).
//!
//! A daemon supplies an [`App`]: its command table and the callbacks it needs. Everything else —
//! `help`, `set`, `get`, `status`, `events`, `exit`, refusing a command in the wrong state or
//! while another state change runs, deferred replies and their time limits, the event log,
//! `lastcmd`/`lasterror`, the heartbeat — is done here once.

pub mod app;
mod builtins;
pub mod ctx;
mod event_loop;
pub mod eventlog;
mod guard;
pub mod lifecycle;
pub mod notify;
pub mod runner;
mod server;
pub mod state;
pub mod stats;
pub mod table;
pub mod testing;
pub mod timers;

#[cfg(test)]
mod tests;

pub use app::{App, Hangup, ProcessSpec, TICK};
pub use ctx::{Ctx, Deferred, FdToken, Interest, Mailbox, Readiness};
pub use lifecycle::{run, run_sized, BoxError, ProcessArgs};
pub use state::RunState;
pub use table::{Command, CommandInfo, Done, Outcome};
pub use timers::TimerId;
