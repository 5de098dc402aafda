//! `cagateway`: every variable of every live local framework process served as an EPICS
//! Channel Access process variable. See docs/ca.md.

pub mod proto;
