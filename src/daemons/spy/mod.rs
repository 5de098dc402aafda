//! The spy daemons: `farmspydaemon` serves samples of a farm buffer over TCP, `rspydaemon`
//! fetches them into a local buffer on a monitoring node. [`proto`] is the wire protocol,
//! [`client`] its client side, [`session`] a client following a farm across connections,
//! [`serve`] one server connection.

pub mod client;
pub mod datafile;
pub mod farm;
pub mod proto;
pub mod remote;
pub mod serve;
pub mod session;
pub mod ybos;
