//! What the tools show of processes, by reading their regions (never disturbing them): whether
//! they run ([`liveness`]), every change of their variables ([`watch`]), and the numbers for
//! monitoring systems ([`metrics`]).

pub mod complete;
pub mod liveness;
pub mod metrics;
pub mod names;
pub mod vartable;
pub mod watch;
