//! `daqproc`: a shared-variable process framework for data-acquisition systems, in the style of
//! the KLOE experiment's online software.
//!
//! Every process built on it publishes typed variables in shared memory ([`shvars::region`]),
//! takes commands through a control FIFO and socket ([`control`]) and runs a declarative
//! command table and run-state machine in one event loop ([`framework`]). [`observe`] is what
//! the tools show (liveness, every change of a variable, metrics); [`support`] holds small
//! shared pieces; [`daemons`] are the processes built on all this. The layers never import a
//! daemon: `framework`, `control`, `observe` and `support` stand alone.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod control;
pub mod daemons;
pub mod framework;
pub mod observe;
pub mod support;

pub use shvars;
