//! The processes built on the framework: the example `ticker`, the event generator `evgen`
//! (with the self-checking event [`payload`]), the spy daemons ([`spy`]), and the node supervisor
//! and transaction broker [`isectd`].

pub mod cagateway;
pub mod evgen;
pub mod isectd;
pub mod lvsmon;
pub mod payload;
pub mod spy;
pub mod svcshare;
pub mod ticker;
