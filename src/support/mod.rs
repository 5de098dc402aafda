//! Small pieces every part of the project shares: backoff, units, command-line helpers, and the
//! checks on files in the shared runtime directory.

pub mod backoff;
pub mod cli;
pub mod files;
#[cfg(test)]
pub mod fuzz;
pub mod man;
pub mod units;
