//! [`Peeked`]: an event read in place, valid only once [`Peeked::finish`] says so.

use std::sync::atomic::{fence, Ordering};

use super::{Core, EventInfo, Loc};
use crate::circ::error::Overrun;
use crate::circ::layout::RECORD_HEADER;
use crate::circ::storage::Storage;

/// An event read in place: its bytes stay in the buffer until [`finish`](Peeked::finish)
/// validates and consumes it.
///
/// For a sampling reader the producer may overwrite the bytes while you look at them;
/// [`finish`](Peeked::finish) then returns [`Overrun`] and whatever you computed from
/// [`bytes`](Peeked::bytes) must be discarded. (A lossless reader's bytes stay put unless it
/// blocks the producer past the timeout and is evicted; `finish` reports that as `Overrun`
/// too.) Dropping a `Peeked` without `finish` leaves the event unconsumed: the next read
/// returns it again.
///
/// # Examples
/// ```
/// use shvars::circ::{CircOptions, CircWriter, HeapStorage, SamplingReader, StartAt};
/// let mem = HeapStorage::for_capacity(4096);
/// let mut w = CircWriter::on_storage(mem.clone(), &CircOptions::new(4096)).unwrap();
/// let mut r = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
/// w.write(7, b"payload").unwrap();
/// let ev = r.try_peek().unwrap();
/// let sum: u32 = ev.bytes().iter().map(|&b| u32::from(b)).sum();
/// ev.finish().expect("not overwritten"); // only now is `sum` known to be of a valid event
/// assert!(sum > 0);
/// ```
///
/// The bytes cannot be used after `finish` (nor the reader before it):
/// ```compile_fail
/// use shvars::circ::{CircOptions, CircWriter, HeapStorage, SamplingReader, StartAt};
/// let mem = HeapStorage::for_capacity(4096);
/// let mut w = CircWriter::on_storage(mem.clone(), &CircOptions::new(4096)).unwrap();
/// let mut r = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
/// w.write(7, b"payload").unwrap();
/// let ev = r.try_peek().unwrap();
/// let bytes = ev.bytes();
/// ev.finish().unwrap();
/// println!("{bytes:?}"); // error: `ev` was moved by finish()
/// ```
#[derive(Debug)]
#[must_use = "finish() tells whether the bytes were valid"]
pub struct Peeked<'r, S: Storage> {
    core: &'r mut Core<S>,
    loc: Loc,
}

impl<'r, S: Storage> Peeked<'r, S> {
    pub(crate) fn new(core: &'r mut Core<S>, loc: Loc) -> Self {
        Peeked { core, loc }
    }

    /// The event's bytes, in place in the shared buffer. Only trustworthy once
    /// [`finish`](Peeked::finish) returned `Ok`.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the range lies inside the ring (clamped in `locate`) and the mapping lives as
        // long as the reader this guard borrows. The bytes are u8, so any value the producer
        // may write concurrently (when this reader is overrun) is a valid u8; such a read is
        // detected and reported by `finish`, which the #[must_use] guard asks for.
        unsafe {
            std::slice::from_raw_parts(
                self.core
                    .v
                    .data()
                    .add(self.loc.off as usize + RECORD_HEADER),
                self.loc.len,
            )
        }
    }

    /// The event number.
    pub fn evnr(&self) -> u64 {
        self.loc.evnr
    }

    /// The event's size in bytes.
    pub fn len(&self) -> usize {
        self.loc.len
    }

    /// Always false: events have at least one byte.
    pub fn is_empty(&self) -> bool {
        self.loc.len == 0
    }

    /// Validates and consumes the event.
    ///
    /// # Errors
    /// [`Overrun`] if the producer overwrote (or may have overwritten) the event while it was
    /// in use. The reader has then moved on; discard the results.
    pub fn finish(self) -> Result<EventInfo, Overrun> {
        fence(Ordering::Acquire);
        match self.core.overrun() {
            Ok(false) => {
                self.core.consume(&self.loc);
                Ok(EventInfo {
                    evnr: self.loc.evnr,
                    len: self.loc.len,
                })
            }
            Ok(true) | Err(_) => Err(Overrun {
                path: self.core.path.clone(),
                evnr: self.loc.evnr,
            }),
        }
    }
}
