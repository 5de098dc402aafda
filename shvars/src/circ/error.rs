//! Errors of the circular buffer, named by operation like crossbeam's (`read` -> [`ReadError`],
//! `try_read` -> [`TryReadError`], `read_timeout` -> [`ReadTimeoutError`]).
//!
//! Every message says what failed, on which buffer, and what to do about it.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Creating a buffer failed ([`CircWriter::create`](super::CircWriter::create)).
#[derive(Debug, Error)]
pub enum CreateError {
    /// Another live process produces this buffer.
    #[error("buffer {} is already produced by pid {pid} (stop that producer first, or choose another buffer name)", path.display())]
    AlreadyProduced {
        /// The buffer.
        path: PathBuf,
        /// The producer holding the buffer (0 if its header could not be read).
        pid: u32,
    },
    /// The capacity is out of range or not a multiple of 8.
    #[error("buffer {}: capacity {capacity} bytes is not usable: {why}", path.display())]
    BadCapacity {
        /// The buffer.
        path: PathBuf,
        /// The capacity asked for.
        capacity: u64,
        /// Which rule it breaks.
        why: String,
    },
    /// Something that is not a stale buffer of ours is at the path: it is never replaced.
    #[error("refusing to create buffer {}: {what} is already there, and only a circular buffer whose producer is dead may be replaced (remove it yourself if it is yours to remove, or choose another buffer name)", path.display())]
    NotABuffer {
        /// The path.
        path: PathBuf,
        /// What is there ("a FIFO", "a regular file that is not a circular buffer", ...).
        what: String,
    },
    /// The buffer name is not acceptable.
    #[error(transparent)]
    Name(#[from] crate::NameError),
    /// The runtime directory could not be made.
    #[error(transparent)]
    Dir(#[from] crate::DirError),
    /// A system call on the buffer file failed.
    #[error("buffer {}: cannot {what}: {source}", path.display())]
    Io {
        /// The buffer.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error of the system.
        #[source]
        source: io::Error,
    },
}

/// Opening a buffer for reading failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// No buffer of this name exists.
    #[error("buffer {} does not exist (is its producer running? check the name and --dir)", path.display())]
    NotFound {
        /// The buffer.
        path: PathBuf,
    },
    /// The file is shorter than its header says, or shorter than a header.
    #[error("buffer {} is truncated: the file has {len} bytes, {expected} are needed (the file was damaged; restart its producer to re-create it)", path.display())]
    Truncated {
        /// The buffer.
        path: PathBuf,
        /// Bytes in the file.
        len: u64,
        /// Bytes needed.
        expected: u64,
    },
    /// The file is not a circular buffer at all.
    #[error("{} is not a circular event buffer (bad magic number {magic:#018x})", path.display())]
    NotACircBuffer {
        /// The file.
        path: PathBuf,
        /// The first 8 bytes found.
        magic: u64,
    },
    /// The buffer was written by a newer version of this software.
    #[error("buffer {} has format version {found}, this program reads up to version {supported} (upgrade this program)", path.display())]
    UnsupportedVersion {
        /// The buffer.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this code reads.
        supported: u32,
    },
    /// The header carries the magic number but is inconsistent.
    #[error("buffer {} has a corrupt header: {why} (restart its producer to re-create it)", path.display())]
    Corrupt {
        /// The buffer.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Every lossless reader slot is held by a live reader.
    #[error("buffer {}: all {slots} lossless reader slots are in use (close a lossless reader, or read in sampling mode)", path.display())]
    NoFreeSlot {
        /// The buffer.
        path: PathBuf,
        /// Number of slots.
        slots: usize,
    },
    /// Something that is not a stale buffer of ours is at the path: it is never replaced.
    #[error("refusing to create buffer {}: {what} is already there, and only a circular buffer whose producer is dead may be replaced (remove it yourself if it is yours to remove, or choose another buffer name)", path.display())]
    NotABuffer {
        /// The path.
        path: PathBuf,
        /// What is there ("a FIFO", "a regular file that is not a circular buffer", ...).
        what: String,
    },
    /// The buffer name is not acceptable.
    #[error(transparent)]
    Name(#[from] crate::NameError),
    /// A system call on the buffer file failed.
    #[error("buffer {}: cannot {what}: {source}", path.display())]
    Io {
        /// The buffer.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error of the system.
        #[source]
        source: io::Error,
    },
}

/// Writing an event failed. Nothing was written; the buffer is unchanged except for the
/// `events_refused` counter of a too-large event.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The event is larger than half the capacity (counted in `events_refused`).
    #[error("event {evnr} of {len} bytes is too large for buffer {buffer} (at most {max} bytes per event: create the buffer with at least twice the largest event)")]
    TooLarge {
        /// The buffer.
        buffer: String,
        /// The event number.
        evnr: u64,
        /// The event's size.
        len: usize,
        /// The largest event accepted.
        max: u64,
    },
    /// An event must have at least one byte.
    #[error("event {evnr} for buffer {buffer} is empty (events carry 1 byte or more)")]
    Empty {
        /// The buffer.
        buffer: String,
        /// The event number.
        evnr: u64,
    },
    /// Event numbers must increase.
    #[error("event number {evnr} for buffer {buffer} does not increase (the last event written was {last})")]
    NotIncreasing {
        /// The buffer.
        buffer: String,
        /// The refused event number.
        evnr: u64,
        /// The last event number written.
        last: u64,
    },
}

/// Why the producer side of a buffer is gone.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("buffer {}: its producer (pid {pid}) {}{}", path.display(),
    if *.closed { "closed it" } else { "died" },
    if *.recreated { " and a new producer re-created it (reopen to follow the new one)" } else { "" })]
pub struct ProducerGone {
    /// The buffer.
    pub path: PathBuf,
    /// The producer's pid.
    pub pid: u32,
    /// True if the producer closed the buffer cleanly; false if it died.
    pub closed: bool,
    /// True if the buffer path now names a buffer of another producer.
    pub recreated: bool,
}

/// The caller's buffer is too small for the next event. Nothing was consumed: the event stays
/// next.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("event {evnr} has {needed} bytes, the read buffer only {given} (nothing was lost: read again with a larger buffer)")]
pub struct TooSmall {
    /// The event number of the waiting event.
    pub evnr: u64,
    /// Its size in bytes.
    pub needed: usize,
    /// The size of the buffer given.
    pub given: usize,
}

/// A lossless reader was evicted by the producer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("lossless reader of buffer {} was evicted by the producer (it blocked the producer longer than the timeout, or looked dead); call rejoin() to continue from the oldest event still in the buffer", path.display())]
pub struct Evicted {
    /// The buffer.
    pub path: PathBuf,
}

/// A blocking read failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    /// See [`TooSmall`].
    #[error(transparent)]
    TooSmall(#[from] TooSmall),
    /// See [`Evicted`].
    #[error(transparent)]
    Evicted(#[from] Evicted),
    /// No more events will come: the producer is gone and every event was read.
    #[error(transparent)]
    ProducerGone(#[from] ProducerGone),
}

/// A non-blocking read failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TryReadError {
    /// No event is waiting now (KLOE's `EMPTY`).
    #[error("no event is waiting")]
    Empty,
    /// See [`TooSmall`].
    #[error(transparent)]
    TooSmall(#[from] TooSmall),
    /// See [`Evicted`].
    #[error(transparent)]
    Evicted(#[from] Evicted),
    /// See [`ProducerGone`].
    #[error(transparent)]
    ProducerGone(#[from] ProducerGone),
}

/// A read with a time limit failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadTimeoutError {
    /// No event arrived within the time limit.
    #[error("no event arrived within the time limit")]
    Timeout,
    /// See [`TooSmall`].
    #[error(transparent)]
    TooSmall(#[from] TooSmall),
    /// See [`Evicted`].
    #[error(transparent)]
    Evicted(#[from] Evicted),
    /// See [`ProducerGone`].
    #[error(transparent)]
    ProducerGone(#[from] ProducerGone),
}

/// The event of an in-place read was overwritten while it was in use: whatever was computed
/// from its bytes must be thrown away. The reader has moved on to the oldest valid event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("event {evnr} of buffer {} was overwritten by the producer while it was in use (discard what was computed from it; the reader skipped ahead)", path.display())]
pub struct Overrun {
    /// The buffer.
    pub path: PathBuf,
    /// The event number of the event that was overwritten.
    pub evnr: u64,
}

impl From<TryReadError> for ReadTimeoutError {
    fn from(e: TryReadError) -> Self {
        match e {
            TryReadError::Empty => ReadTimeoutError::Timeout,
            TryReadError::TooSmall(x) => x.into(),
            TryReadError::Evicted(x) => x.into(),
            TryReadError::ProducerGone(x) => x.into(),
        }
    }
}
