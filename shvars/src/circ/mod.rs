//! The circular event buffer ("Circ"): one producer, any number of readers in other processes,
//! variable-size events each carrying a 64-bit event number.
//!
//! - [`CircWriter`] creates the buffer (a file, normally in the runtime directory under
//!   `/dev/shm`) and writes events: copied in with [`CircWriter::write`], or in place with
//!   [`CircWriter::reserve`] -> [`Reservation::buf`] -> [`Reservation::commit`]. Records are
//!   contiguous (a padding record fills the end of the ring), so an event can be filled
//!   straight from a socket.
//! - [`SamplingReader`] (the spy default) never slows the producer; when overtaken it skips to
//!   the oldest valid event and counts what it lost. [`SamplingReader::refresh`] jumps to the
//!   freshest event.
//! - [`LosslessReader`] registers in the buffer's reader table; the producer waits for it, for
//!   at most the lossless timeout, after which (or at once if its process died) it is evicted.
//! - Reads come in families: `read` (blocks), `try_read`, `read_timeout`, and in place
//!   `peek`/`try_peek`/`peek_timeout` returning a [`Peeked`] that must be
//!   [`finish`](Peeked::finish)ed to know whether the bytes were valid.
//!
//! Waiting readers sleep on a futex word in the header; the producer issues the wake system call
//! only when a reader has announced that it sleeps. The format and the protocol (for writing a
//! reader in another language) are in `docs/circ.md`.
//!
//! # Safety
//! The buffer lives in memory shared with other processes, which Rust's type system cannot
//! see. The rules this module follows:
//! - Every header field, reader slot and record header is an atomic (`#[repr(C)]` structs of
//!   `AtomicU64`/`AtomicU32`); they are read and written only through atomic operations.
//! - Event payloads are copied with raw pointer copies. A sampling reader may copy bytes the
//!   producer is overwriting at that moment (when it is being lapped); the producer publishes
//!   `tail` (how far it is about to overwrite) *before* it writes, and the reader re-checks
//!   `tail` *after* copying, behind an acquire fence. A copy that may be torn is discarded.
//!   In the language's terms such a race on plain bytes is a data race; it is the standard
//!   seqlock compromise, confined to `u8` data whose every bit pattern is valid, and its result
//!   is never used.
//! - Everything read from the buffer is untrusted: the header is validated at open (magic,
//!   version, identity checksum, sizes against the file size), positions are reduced modulo
//!   the ring, each record header is bound to its position and checksummed, lengths are clamped.
//!   A damaged record is skipped and counted, never returned.
//! - A mapped file that a third party truncates raises `SIGBUS` on access; that cannot be
//!   prevented without a signal handler. Readers check the size at open; producers never shrink
//!   a live file and re-create a buffer under a new inode (see [`FileStorage`]).

mod error;
pub(crate) mod futex;
mod layout;
mod reader;
mod readers;
mod starts;
mod stats;
mod storage;
mod view;
mod writer;

pub use error::{
    CreateError, Evicted, OpenError, Overrun, ProducerGone, ReadError, ReadTimeoutError, TooSmall,
    TryReadError, WriteError,
};
pub use layout::{
    file_size, fmix64, record_check, record_size, ring_size, CircHeader, DATA_OFFSET, MAGIC,
    MAX_CAPACITY, MIN_CAPACITY, READER_SLOTS, RECORD_ALIGN, RECORD_HEADER, RING_SLACK, VERSION,
};
pub use reader::{EventInfo, Peeked, StartAt};
pub use readers::{LosslessReader, SamplingReader};
pub use stats::{CircStats, ReaderActivity, ReaderStats};
pub use storage::{FileStorage, HeapStorage, Storage, READER_LOCK_BASE};
pub use writer::{CircOptions, CircWriter, Reservation, StopWaiting, DEFAULT_LOSSLESS_TIMEOUT};

#[cfg(test)]
mod tests;
