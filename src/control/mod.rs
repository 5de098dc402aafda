//! The control protocol in one place: the words of a command line ([`words`]), the bytes on
//! the FIFO and the socket ([`wire`]), the typed [`reply::Reply`], the owner's FIFO and socket
//! files ([`fifo`]) and the client side ([`client`]). `docs/control.md` describes it for
//! writers of clients in other languages.

pub mod client;
pub mod fifo;
pub mod reply;
pub mod wire;
pub mod words;

pub use reply::{ErrorKind, Failure, Reply};
