//! The two public reader handles: [`SamplingReader`] (never slows the producer, skips when
//! overtaken) and [`LosslessReader`] (registered; the producer waits for it, up to a timeout).
//!
//! Both are thin shells over the shared algorithm in `reader.rs`; their API follows the KLOE
//! spy library: `open` (`spy_open`), `try_read` into a caller buffer (`spy_get`: `Empty` when
//! nothing waits, [`TooSmall`](super::TooSmall) with the event's size when the buffer is too
//! small, and the event stays next), `refresh` (`spy_refresh`), `close` (`spy_close`).

use std::path::Path;
use std::time::Duration;

use super::error::{OpenError, ReadError, ReadTimeoutError, TryReadError};
use super::layout::CircHeader;
use super::reader::{timeout_to_read, Core, EventInfo, Peeked, StartAt};
use super::stats::{CircStats, ReaderStats};
use super::storage::{FileStorage, Storage};
use crate::RuntimeDir;

macro_rules! common_reader_api {
    () => {
        /// Reads the next event into `buf`, waiting for one if none is there.
        ///
        /// # Errors
        /// [`ReadError::TooSmall`] (the event stays next; nothing is lost),
        /// [`ReadError::ProducerGone`] once every event of a closed or dead producer was read,
        /// [`ReadError::Evicted`] for an evicted lossless reader.
        #[inline]
        pub fn read(&mut self, buf: &mut [u8]) -> Result<EventInfo, ReadError> {
            self.core.read_timeout(buf, None).map_err(timeout_to_read)
        }

        /// Reads the next event into `buf` if one is waiting.
        ///
        /// # Errors
        /// [`TryReadError::Empty`] if none is waiting, otherwise as [`read`](Self::read).
        #[inline]
        pub fn try_read(&mut self, buf: &mut [u8]) -> Result<EventInfo, TryReadError> {
            self.core.try_read(buf)
        }

        /// Reads the next event into `buf`, waiting at most `timeout` for one.
        ///
        /// # Errors
        /// [`ReadTimeoutError::Timeout`] if none came in time, otherwise as
        /// [`read`](Self::read).
        pub fn read_timeout(
            &mut self,
            buf: &mut [u8],
            timeout: Duration,
        ) -> Result<EventInfo, ReadTimeoutError> {
            self.core.read_timeout(buf, Some(timeout))
        }

        /// Reads the next event into `buf`, growing it to the event's size (no `TooSmall`).
        ///
        /// # Errors
        /// As [`try_read`](Self::try_read), never `TooSmall`.
        pub fn try_read_vec(&mut self, buf: &mut Vec<u8>) -> Result<EventInfo, TryReadError> {
            loop {
                match self.core.try_read(buf.as_mut_slice()) {
                    Err(TryReadError::TooSmall(t)) => buf.resize(t.needed, 0),
                    Ok(ev) => {
                        buf.truncate(ev.len);
                        return Ok(ev);
                    }
                    Err(e) => return Err(e),
                }
            }
        }

        /// Waits for the next event and gives access to it in place (no copy).
        ///
        /// # Errors
        /// As [`read`](Self::read), never `TooSmall`.
        pub fn peek(&mut self) -> Result<Peeked<'_, S>, ReadError> {
            let loc = self.core.locate_timeout(None).map_err(timeout_to_read)?;
            Ok(Peeked::new(&mut self.core, loc))
        }

        /// Gives access in place to the next event if one is waiting.
        ///
        /// # Errors
        /// As [`try_read`](Self::try_read), never `TooSmall`.
        pub fn try_peek(&mut self) -> Result<Peeked<'_, S>, TryReadError> {
            let loc = self.core.try_locate()?;
            Ok(Peeked::new(&mut self.core, loc))
        }

        /// Waits at most `timeout` for the next event and gives access to it in place.
        ///
        /// # Errors
        /// As [`read_timeout`](Self::read_timeout), never `TooSmall`.
        pub fn peek_timeout(
            &mut self,
            timeout: Duration,
        ) -> Result<Peeked<'_, S>, ReadTimeoutError> {
            let loc = self.core.locate_timeout(Some(timeout))?;
            Ok(Peeked::new(&mut self.core, loc))
        }

        /// Skips to the freshest event in the buffer (KLOE's `spy_refresh`): the next read
        /// returns it (or the next one committed). Skipped events are not counted as lost;
        /// their number is returned.
        pub fn refresh(&mut self) -> u64 {
            self.core.refresh()
        }

        /// What this reader has read and lost so far.
        pub fn stats(&self) -> ReaderStats {
            self.core.stats
        }

        /// A snapshot of the buffer's counters.
        pub fn buffer_stats(&self) -> CircStats {
            self.core.buffer_stats()
        }

        /// The buffer's header (identity: pid, instance, capacity).
        pub fn header(&self) -> &CircHeader {
            self.core.v.header()
        }

        /// The buffer's path.
        pub fn path(&self) -> &Path {
            self.core.path()
        }

        /// Closes the reader (same as dropping it; KLOE's `spy_close`).
        pub fn close(self) {}
    };
}

/// A reader that never slows the producer: when the producer overtakes it, it skips to the
/// oldest event still valid and counts what it lost ([`ReaderStats::events_lost`]).
///
/// When the producer dies or closes, the reader first returns every event still in the buffer,
/// then [`ProducerGone`](super::ProducerGone) (with `recreated: true` if a new producer has
/// re-created the buffer under the same name: call [`reopen`](SamplingReader::reopen) to follow
/// it; re-attaching is never silent, because the event numbers start again).
///
/// # Examples
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("B_1_1");
/// use shvars::circ::{CircWriter, SamplingReader, TryReadError};
/// let mut w = CircWriter::create(&path, 1 << 16).unwrap();
/// let mut spy = SamplingReader::open(&path).unwrap();        // spy_open
/// let mut buf = [0u8; 4];
/// assert_eq!(spy.try_read(&mut buf), Err(TryReadError::Empty));
/// w.write(10, b"0123456789").unwrap();
/// match spy.try_read(&mut buf) {                              // spy_get
///     Err(TryReadError::TooSmall(t)) => assert_eq!(t.needed, 10), // the event stays next
///     other => panic!("{other:?}"),
/// }
/// let mut buf = vec![0u8; 10];
/// assert_eq!(spy.try_read(&mut buf).unwrap().evnr, 10);
/// spy.refresh();                                              // spy_refresh
/// spy.close();                                                // spy_close
/// ```
#[derive(Debug)]
pub struct SamplingReader<S: Storage = FileStorage> {
    core: Core<S>,
    start: StartAt,
}

impl SamplingReader<FileStorage> {
    /// Opens the buffer at `path`, starting at the freshest event.
    ///
    /// # Errors
    /// [`OpenError`]: missing, truncated, foreign or corrupt file, newer format version.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        Self::open_with(path, StartAt::Latest)
    }

    /// Opens the buffer at `path`, starting at `start`.
    ///
    /// # Errors
    /// As [`open`](SamplingReader::open).
    pub fn open_with(path: &Path, start: StartAt) -> Result<Self, OpenError> {
        let st = FileStorage::open(path, true, false)?;
        Self::on_storage(st, start)
    }

    /// Opens buffer `lname` (a bare name in `dir`, or an absolute path).
    ///
    /// # Errors
    /// As [`open`](SamplingReader::open), plus a bad name.
    pub fn open_named(dir: &RuntimeDir, lname: &str) -> Result<Self, OpenError> {
        Self::open(&dir.buffer_path(lname)?)
    }

    /// Re-opens the buffer by its path (after [`ProducerGone`](super::ProducerGone) with
    /// `recreated`), starting as the reader was first opened. The reader's statistics carry
    /// over.
    ///
    /// # Errors
    /// As [`open`](SamplingReader::open).
    pub fn reopen(&mut self) -> Result<(), OpenError> {
        let stats = self.core.stats;
        let mut n = Self::open_with(self.core.path(), self.start)?;
        n.core.stats = stats;
        *self = n;
        Ok(())
    }
}

impl<S: Storage> SamplingReader<S> {
    /// Opens a buffer in any storage (for example [`HeapStorage`](super::HeapStorage)).
    ///
    /// # Errors
    /// As [`open`](SamplingReader::open).
    pub fn on_storage(st: S, start: StartAt) -> Result<Self, OpenError> {
        Ok(SamplingReader {
            core: Core::new(st, start, false)?,
            start,
        })
    }

    common_reader_api!();
}

/// A reader the producer waits for: it sees every event, in order, unless it blocks the
/// producer longer than the buffer's lossless timeout (or its process dies), in which case the
/// producer evicts it.
///
/// An evicted reader gets [`Evicted`](super::Evicted) from every read until it calls
/// [`rejoin`](LosslessReader::rejoin), which registers it again at the oldest event still in
/// the buffer; the events it missed are then counted in [`ReaderStats::events_lost`].
///
/// Liveness: the reader holds an OFD lock on a byte of the buffer file that belongs to its
/// slot; the kernel drops it when the process dies, and a blocked producer evicts a slot whose
/// lock is gone at once (no waiting for the timeout). Registration takes a slot of the fixed
/// table (32 slots).
///
/// # Examples
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("B");
/// use shvars::circ::{CircWriter, LosslessReader};
/// let mut w = CircWriter::create(&path, 4096).unwrap();
/// let mut r = LosslessReader::open(&path).unwrap();
/// let mut buf = [0u8; 64];
/// let reader = std::thread::spawn(move || {
///     (1..=1000u64).map(|_| r.read(&mut buf).unwrap().evnr).collect::<Vec<_>>()
/// });
/// for n in 1..=1000u64 {
///     w.write(n, &[n as u8; 64]).unwrap(); // waits for the reader when the buffer is full
/// }
/// assert_eq!(reader.join().unwrap(), (1..=1000).collect::<Vec<_>>());
/// ```
#[derive(Debug)]
pub struct LosslessReader<S: Storage = FileStorage> {
    core: Core<S>,
}

impl LosslessReader<FileStorage> {
    /// Opens the buffer at `path` and registers, starting at the oldest event in it.
    ///
    /// # Errors
    /// As [`SamplingReader::open`], plus [`OpenError::NoFreeSlot`] and a permission error if
    /// the file is not writable by this user.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        Self::open_with(path, StartAt::Oldest)
    }

    /// Opens the buffer at `path` and registers, starting at `start`.
    ///
    /// # Errors
    /// As [`open`](LosslessReader::open).
    pub fn open_with(path: &Path, start: StartAt) -> Result<Self, OpenError> {
        let st = FileStorage::open(path, true, true)?;
        Self::on_storage(st, start)
    }

    /// Opens buffer `lname` (a bare name in `dir`, or an absolute path).
    ///
    /// # Errors
    /// As [`open`](LosslessReader::open), plus a bad name.
    pub fn open_named(dir: &RuntimeDir, lname: &str) -> Result<Self, OpenError> {
        Self::open(&dir.buffer_path(lname)?)
    }

    /// Re-opens the buffer by its path (after [`ProducerGone`](super::ProducerGone) with
    /// `recreated`), registering at the oldest event of the new buffer.
    ///
    /// # Errors
    /// As [`open`](LosslessReader::open).
    pub fn reopen(&mut self) -> Result<(), OpenError> {
        let stats = self.core.stats;
        let path = self.core.path().to_owned();
        self.core.unregister();
        let mut n = Self::open(&path)?;
        n.core.stats = stats;
        *self = n;
        Ok(())
    }
}

impl<S: Storage> LosslessReader<S> {
    /// Registers as a lossless reader of a buffer in any storage.
    ///
    /// # Errors
    /// As [`open`](LosslessReader::open).
    pub fn on_storage(st: S, start: StartAt) -> Result<Self, OpenError> {
        Ok(LosslessReader {
            core: Core::new(st, start, true)?,
        })
    }

    /// Registers again after an eviction, at the oldest event still in the buffer. Does
    /// nothing if the reader was not evicted.
    ///
    /// # Errors
    /// [`OpenError::NoFreeSlot`] or a lock error.
    pub fn rejoin(&mut self) -> Result<(), OpenError> {
        self.core.rejoin()
    }

    common_reader_api!();
}
