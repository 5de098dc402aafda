//! The processes built on the framework: the example `ticker`, the event generator `evgen`
//! (with the self-checking event [`payload`]), and the spy daemons ([`spy`]).

pub mod evgen;
pub mod lvsmon;
pub mod payload;
pub mod spy;
pub mod ticker;
