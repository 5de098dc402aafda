//! `daqproc`: a shared-variable process framework for data-acquisition systems, in the style of
//! the KLOE experiment's online software.
//!
//! Every process built on it publishes typed variables in shared memory ([`shvars::region`]),
//! takes commands from a control FIFO ([`ctl`]) through a run-state machine ([`state`],
//! [`command`]), and keeps KLOE's statistics cadence ([`stats`]); [`process`] ties these together
//! so a daemon only writes its own commands and threads. [`client`] is the other side: what
//! `shvar` and `spyctl` use to list processes and send commands.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli_extras;
pub mod client;
pub mod command;
pub mod ctl;
pub mod eventlog;
pub mod evgen;
pub mod metrics;
pub mod notify;
pub mod payload;
pub mod process;
pub mod spy;
pub mod state;
pub mod stats;
pub mod ticker;
pub mod watch;

pub use shvars;
