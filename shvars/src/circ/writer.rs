//! The producer side: [`CircWriter`] creates a buffer and writes events into it, either copied
//! in ([`CircWriter::write`]) or filled in place ([`CircWriter::reserve`] -> [`Reservation`]).
//!
//! The writer never waits for sampling readers. It waits for lossless readers only when it is
//! about to overwrite a record one of them has not consumed, and then for at most the
//! configured timeout per reader before it evicts it. Its fast path (a record that needs no new
//! space, or space no lossless reader holds) makes no system call: a futex wake is issued only
//! when a reader has announced that it sleeps.

use std::path::Path;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::error::{CreateError, WriteError};
use super::futex;
use super::layout::{
    encode_event, encode_pad, file_size, fmix64, now_ns, record_size, write_record, CircHeader,
    DATA_OFFSET, MAGIC, MAX_CAPACITY, MIN_CAPACITY, READER_SLOTS, RECORD_HEADER, STATE_CLOSED,
    STATE_READY, VERSION,
};
use super::starts::KeptStarts;
use super::stats::{CircStats, ReaderActivity};
use super::storage::{FileStorage, Storage};
use super::view::View;
use crate::RuntimeDir;

mod expire;
mod wait;

/// Default time a lossless reader may block the producer before it is evicted.
pub const DEFAULT_LOSSLESS_TIMEOUT: Duration = Duration::from_secs(1);

/// How far past the next record the producer prefetches the ring's lines it will write.
const PREFETCH_AHEAD: u64 = 8192;

/// The most lines the producer prefetches per event (8 KiB).
const PREFETCH_LINES: u64 = 128;

/// Options for creating a buffer.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use shvars::circ::CircOptions;
/// let o = CircOptions::new(4 << 20).lossless_timeout(Duration::from_millis(200));
/// assert_eq!(o.capacity, 4 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct CircOptions {
    /// Capacity in bytes: a multiple of 8 from 64 bytes to 16 TiB. Events may have up to half
    /// of it. (The file is 4 KiB of header plus the capacity plus 64 bytes.)
    pub capacity: u64,
    /// The longest a lossless reader may block the producer (per blocking episode) before it is
    /// evicted.
    pub lossless_timeout: Duration,
    /// Permission bits of the file. Readers need write permission to sleep on the futex
    /// (otherwise they poll every millisecond) and to read losslessly.
    pub mode: u32,
    /// Remove the file when the writer is dropped (default true). A producer that dies leaves
    /// the file behind; the next producer of the same name takes it over.
    pub remove_on_drop: bool,
}

impl CircOptions {
    /// Defaults for a buffer of `capacity` bytes: 1 s lossless timeout, mode 0644, removed on
    /// drop.
    pub fn new(capacity: u64) -> Self {
        CircOptions {
            capacity,
            lossless_timeout: DEFAULT_LOSSLESS_TIMEOUT,
            mode: 0o644,
            remove_on_drop: true,
        }
    }

    /// Sets [`lossless_timeout`](CircOptions::lossless_timeout).
    pub fn lossless_timeout(mut self, t: Duration) -> Self {
        self.lossless_timeout = t;
        self
    }

    /// Sets [`mode`](CircOptions::mode).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`remove_on_drop`](CircOptions::remove_on_drop).
    pub fn remove_on_drop(mut self, yes: bool) -> Self {
        self.remove_on_drop = yes;
        self
    }

    fn check(&self, path: &Path) -> Result<(), CreateError> {
        let c = self.capacity;
        let why = if c < MIN_CAPACITY {
            Some(format!("the smallest capacity is {MIN_CAPACITY} bytes"))
        } else if c > MAX_CAPACITY {
            Some(format!("the largest capacity is {MAX_CAPACITY} bytes"))
        } else if !c.is_multiple_of(8) {
            Some(format!(
                "it must be a multiple of 8 (use {} or {})",
                c & !7,
                (c + 7) & !7
            ))
        } else {
            None
        };
        match why {
            Some(why) => Err(CreateError::BadCapacity {
                path: path.to_owned(),
                capacity: c,
                why,
            }),
            None => Ok(()),
        }
    }
}

/// The producer of a circular buffer. There is exactly one per buffer; it lives as long as the
/// buffer does (it holds the liveness lock, and by default removes the file when dropped).
///
/// # Examples
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use shvars::circ::{CircWriter, SamplingReader, StartAt};
/// let path = dir.path().join("B_1_1");
/// let mut w = CircWriter::create(&path, 1 << 20).unwrap();
/// w.write(1, b"first").unwrap();
/// let mut ev = w.reserve(2, 6).unwrap();      // in place, e.g. straight from a socket
/// ev.buf().copy_from_slice(b"second");
/// ev.commit();
/// let mut r = SamplingReader::open_with(&path, StartAt::Oldest).unwrap();
/// let mut buf = vec![0u8; 64];
/// assert_eq!(r.try_read(&mut buf).unwrap().evnr, 1);
/// assert_eq!(r.try_read(&mut buf).unwrap().evnr, 2);
/// ```
#[derive(Debug)]
pub struct CircWriter<S: Storage = FileStorage> {
    v: View<S>,
    name: String,
    remove_on_drop: bool,
    ring: u64,
    max_event: u64,
    /// Stream position after the last committed record, and its ring offset.
    head: u64,
    head_off: u64,
    /// Oldest readable record (published as `tail`), and the sequence number of the event
    /// there (or of the next one: `seq` when the ring is empty).
    tail: u64,
    tail_seq: u64,
    /// Stream position of the latest committed record.
    last: u64,
    /// Some of the record starts in the ring, oldest first (private to the producer).
    starts: KeptStarts,
    seq: u64,
    /// The latest event number written (meaningless while `seq` is 0).
    last_evnr: u64,
    bytes: u64,
    overwritten: u64,
    refused: u64,
    /// How far ahead of what it needs the producer reclaims space at once.
    chunk: u64,
    /// How far past the reclaimed space lossless readers must be (see `make_room`).
    gap: u64,
    timeout: Duration,
    /// Registration counter last seen, and the smallest lossless reader position then.
    reg_seen: u64,
    min_reader: u64,
    /// Times the buffer was full: an event needed room that only reclaiming old events (and
    /// waiting for lossless readers behind them) could give.
    circfulls: u64,
    stop_waiting: StopWaiting,
}

/// Makes a producer stop waiting for lossless readers: once [`StopWaiting::stop`] is called,
/// every reader that blocks the producer is evicted at once (within 10 ms if the producer is
/// waiting now), so a producer that is ending never waits out the lossless timeout. Get it
/// from [`CircWriter::stop_waiting`] and call it from another thread.
///
/// # Examples
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use shvars::circ::CircWriter;
/// let w = CircWriter::create(&dir.path().join("B"), 1 << 20).unwrap();
/// let stop = w.stop_waiting();
/// std::thread::spawn(move || stop.stop()).join().unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct StopWaiting(Arc<AtomicBool>);

impl StopWaiting {
    /// From now on the producer waits for no lossless reader.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`StopWaiting::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl CircWriter<FileStorage> {
    /// Creates the buffer file at `path` with `capacity` bytes and default options.
    ///
    /// # Errors
    /// [`CreateError::AlreadyProduced`] if a live producer holds the buffer (a stale buffer, whose
    /// producer died, is taken over), [`CreateError::BadCapacity`], or an I/O error naming the
    /// path.
    pub fn create(path: &Path, capacity: u64) -> Result<Self, CreateError> {
        Self::create_with(path, &CircOptions::new(capacity))
    }

    /// Creates buffer `lname` (a bare name in the runtime directory `dir`, created if needed,
    /// or an absolute path) with `capacity` bytes.
    ///
    /// # Errors
    /// As [`create`](CircWriter::create), plus a bad name or an unusable runtime directory.
    pub fn create_named(dir: &RuntimeDir, lname: &str, capacity: u64) -> Result<Self, CreateError> {
        let path = dir.producer_buffer_path(lname)?;
        if !lname.starts_with('/') {
            dir.ensure()?;
        }
        Self::create(&path, capacity)
    }

    /// Creates the buffer file at `path` with the given options.
    ///
    /// # Errors
    /// As [`create`](CircWriter::create).
    pub fn create_with(path: &Path, opts: &CircOptions) -> Result<Self, CreateError> {
        opts.check(path)?;
        let st = FileStorage::create(path, file_size(opts.capacity), opts.mode, |st| {
            init_header(st, opts);
        })?;
        Ok(Self::from_view(
            View::new_unchecked(st, opts.capacity),
            opts,
        ))
    }
}

/// Writes a fresh header into zeroed storage.
fn init_header<S: Storage>(st: &S, opts: &CircOptions) {
    // SAFETY: the storage holds at least DATA_OFFSET bytes, 64-aligned; CircHeader is all
    // atomics and fits in them.
    let h = unsafe { &*(st.as_ptr() as *const CircHeader) };
    let pid = std::process::id();
    let created = now_ns();
    let local = 0u8;
    let instance = fmix64(created ^ u64::from(pid) << 32 ^ (&local as *const u8 as u64)) | 1;
    h.magic.store(MAGIC, Ordering::Relaxed);
    h.version.store(VERSION, Ordering::Relaxed);
    h.header_size.store(DATA_OFFSET as u32, Ordering::Relaxed);
    h.capacity.store(opts.capacity, Ordering::Relaxed);
    h.max_event.store(opts.capacity / 2, Ordering::Relaxed);
    h.instance.store(instance, Ordering::Relaxed);
    h.producer_pid.store(pid, Ordering::Relaxed);
    h.reader_slots.store(READER_SLOTS as u32, Ordering::Relaxed);
    h.created_ns.store(created, Ordering::Relaxed);
    h.ident_check
        .store(h.computed_ident_check(), Ordering::Relaxed);
    h.lossless_timeout_ns.store(
        opts.lossless_timeout.as_nanos().min(u64::MAX as u128) as u64,
        Ordering::Relaxed,
    );
    h.state.store(STATE_READY, Ordering::Release);
}

impl<S: Storage> CircWriter<S> {
    /// Creates a buffer in any storage (for example [`HeapStorage`](super::HeapStorage)), which
    /// must be zeroed and at least `file_size(capacity)` bytes long.
    ///
    /// # Errors
    /// [`CreateError::BadCapacity`] for a bad capacity or a storage that is too small,
    /// [`CreateError::AlreadyProduced`] if the storage already has a producer.
    pub fn on_storage(st: S, opts: &CircOptions) -> Result<Self, CreateError> {
        opts.check(st.path())?;
        if (st.len() as u64) < file_size(opts.capacity) {
            return Err(CreateError::BadCapacity {
                path: st.path().to_owned(),
                capacity: opts.capacity,
                why: format!(
                    "the storage has {} bytes, {} are needed",
                    st.len(),
                    file_size(opts.capacity)
                ),
            });
        }
        if !st.claim_producer() {
            // SAFETY: as in init_header.
            let h = unsafe { &*(st.as_ptr() as *const CircHeader) };
            return Err(CreateError::AlreadyProduced {
                path: st.path().to_owned(),
                pid: h.producer_pid(),
            });
        }
        init_header(&st, opts);
        Ok(Self::from_view(
            View::new_unchecked(st, opts.capacity),
            opts,
        ))
    }

    fn from_view(v: View<S>, opts: &CircOptions) -> Self {
        let ring = v.ring;
        CircWriter {
            name: v.path().display().to_string(),
            max_event: v.max_event,
            v,
            remove_on_drop: opts.remove_on_drop,
            ring,
            head: 0,
            head_off: 0,
            tail: 0,
            tail_seq: 0,
            last: 0,
            starts: KeptStarts::new(ring),
            seq: 0,
            last_evnr: 0,
            bytes: 0,
            overwritten: 0,
            refused: 0,
            chunk: (ring / 16) & !7,
            gap: (ring / 8).min(1 << 20) & !7,
            timeout: opts.lossless_timeout,
            reg_seen: 0,
            min_reader: u64::MAX,
            circfulls: 0,
            stop_waiting: StopWaiting::default(),
        }
    }

    /// The buffer's path.
    pub fn path(&self) -> &Path {
        self.v.path()
    }

    /// The buffer's header (identity and counters).
    pub fn header(&self) -> &CircHeader {
        self.v.header()
    }

    /// A snapshot of the buffer's counters.
    pub fn stats(&self) -> CircStats {
        CircStats::read(self.v.header(), self.v.slots())
    }

    /// Who read (or looked for) events within `within`, and how far they got: what a
    /// prefetching producer needs to fetch only for readers that are there.
    pub fn reader_activity(&self, within: Duration) -> ReaderActivity {
        ReaderActivity::read(
            self.v.header(),
            self.v.slots(),
            self.v.activity(),
            within.as_nanos() as u64,
        )
    }

    /// Times the buffer was full (KLOE's `circfulls`): an event needed room that only
    /// reclaiming the oldest events could give (in a lossless setup, the producer then waits
    /// for the readers behind them).
    pub fn circfulls(&self) -> u64 {
        self.circfulls
    }

    /// Stream position after the last event written: pass it later to
    /// [`CircWriter::expire_before`] to expire everything written up to now.
    pub fn position(&self) -> u64 {
        self.head
    }

    /// A handle that makes this producer stop waiting for lossless readers (see
    /// [`StopWaiting`]).
    pub fn stop_waiting(&self) -> StopWaiting {
        self.stop_waiting.clone()
    }

    /// The largest event accepted, in bytes.
    pub fn max_event(&self) -> usize {
        self.max_event as usize
    }

    /// Copies one event into the buffer and publishes it.
    ///
    /// # Errors
    /// [`WriteError::TooLarge`] (counted in `events_refused`), [`WriteError::Empty`],
    /// [`WriteError::NotIncreasing`]. Nothing is written then.
    #[inline]
    pub fn write(&mut self, evnr: u64, data: &[u8]) -> Result<(), WriteError> {
        let mut r = self.reserve(evnr, data.len())?;
        r.buf().copy_from_slice(data);
        r.commit();
        Ok(())
    }

    /// Reserves room for an event of `len` bytes, to be filled in place and then committed.
    /// Readers see nothing of it until [`Reservation::commit`]; dropping the reservation
    /// abandons it.
    ///
    /// May wait for lossless readers (at most the lossless timeout per reader).
    ///
    /// # Errors
    /// As [`write`](CircWriter::write).
    #[inline]
    pub fn reserve(&mut self, evnr: u64, len: usize) -> Result<Reservation<'_, S>, WriteError> {
        if (len as u64).wrapping_sub(1) >= self.max_event
            || (evnr <= self.last_evnr && self.seq != 0)
        {
            return Err(self.refuse(evnr, len));
        }
        let rec = record_size(len as u64);
        // The usual case, kept small enough to inline: the record fits before the end of the
        // ring and in space already reclaimed.
        let (pos, off) =
            if rec <= self.ring - self.head_off && self.head + rec <= self.tail + self.ring {
                (self.head, self.head_off)
            } else {
                self.reserve_slow(rec)
            };
        self.prefetch_ahead(off, rec);
        Ok(Reservation {
            w: self,
            evnr,
            pos,
            off,
            len,
        })
    }

    /// Asks the CPU for the lines the producer will write after this record (`prefetcht0`): the
    /// lines of as many bytes as this record, a record and [`PREFETCH_AHEAD`] bytes further on
    /// (at most [`PREFETCH_LINES`] of them). They were last written a lap of the ring ago and
    /// are no longer in this CPU's caches (or not in any, in a ring larger than the last-level
    /// cache); without the hint each of the copy's stores waits for its line, one after
    /// another; with it they are on their way while this record is copied. A hint only: it
    /// changes no byte. (`prefetchw`, which takes the line for writing, was slower with a
    /// reader: a lossless reader a lap behind reads exactly those lines, and lost them to it.)
    #[inline(always)]
    fn prefetch_ahead(&self, off: u64, rec: u64) {
        if rec <= 3 * 64 {
            // A constant count, which the compiler unrolls (a variable one costs a loop and its
            // set-up): the three lines from a record of at most 192 bytes' start reach every
            // line it touches up to the one the next record starts in, which that record's
            // prefetch covers.
            let ahead = off + rec + PREFETCH_AHEAD;
            super::layout::prefetch(self.v.data(), self.ring, ahead, 2 * 64, 3);
            return;
        }
        super::layout::prefetch(
            self.v.data(),
            self.ring,
            off + rec + PREFETCH_AHEAD,
            rec,
            PREFETCH_LINES,
        );
    }

    /// The error for an event `reserve` refuses (counting a too large one).
    #[cold]
    #[inline(never)]
    fn refuse(&mut self, evnr: u64, len: usize) -> WriteError {
        if len == 0 {
            return WriteError::Empty {
                buffer: self.name.clone(),
                evnr,
            };
        }
        if len as u64 > self.max_event {
            self.refused += 1;
            self.v
                .header()
                .events_refused
                .store(self.refused, Ordering::Relaxed);
            return WriteError::TooLarge {
                buffer: self.name.clone(),
                evnr,
                len,
                max: self.max_event,
            };
        }
        WriteError::NotIncreasing {
            buffer: self.name.clone(),
            evnr,
            last: self.last_evnr,
        }
    }

    /// `reserve` for a record of `rec` bytes that wraps (the rest of the ring becomes padding)
    /// or needs space reclaimed: returns its stream position and ring offset.
    #[cold]
    #[inline(never)]
    fn reserve_slow(&mut self, rec: u64) -> (u64, u64) {
        let room = self.ring - self.head_off;
        let (pos, off, pad) = if room >= rec {
            (self.head, self.head_off, 0)
        } else {
            (self.head + room, 0, room)
        };
        let end = pos + rec;
        if end > self.tail + self.ring {
            self.make_room(end - self.ring);
        }
        if pad >= RECORD_HEADER as u64 {
            // SAFETY: head_off is 8-aligned and at least RECORD_HEADER bytes remain before the
            // end of the ring; the space was reclaimed above.
            unsafe {
                write_record(
                    self.v.data(),
                    self.head_off as usize,
                    encode_pad(self.head, self.seq, pad as u32),
                )
            };
        }
        (pos, off)
    }

    /// Reclaims space so that every stream position below `need` may be overwritten: advances
    /// `tail` to a record start (a chunk further than needed, so that this happens rarely),
    /// publishes it, and waits for lossless readers still behind it.
    #[cold]
    fn make_room(&mut self, need: u64) {
        self.circfulls += 1;
        // Reclaim a chunk ahead, but never the latest event unless it must go.
        let target = need.max((need + self.chunk).min(self.last));
        // The first kept record start at or after the target (or the latest event's, or the
        // head). These are private to the producer, so this never reads (untrusted, and by
        // now cold) shared memory; it may reclaim up to `RING/256` bytes more than the target.
        let (t, tseq) = match self.starts.drop_below(target) {
            Some(s) => s,
            None if self.seq > 0 && self.last >= target => (self.last, self.seq - 1),
            None => (self.head, self.seq),
        };
        self.reclaim_to(t, tseq);
        let h = self.v.header();
        // Publish how far we are about to overwrite BEFORE overwriting (readers re-check it
        // after copying), then order every later write to the ring after this store.
        h.tail.store(self.tail, Ordering::SeqCst);
        fence(Ordering::Release);
        let reg = h.reg_seq.load(Ordering::SeqCst);
        // Lossless readers must have consumed everything below the new tail, and `gap` more:
        // the producer then overwrites lines the readers left a while ago (gone from their
        // caches) rather than the ones they have just read, each of which it would first have
        // to take back from the reader's cache. (Never past `head`: readers cannot get there.)
        let target = (self.tail + self.gap).min(self.head);
        if reg != self.reg_seen || self.min_reader < target {
            self.reg_seen = reg;
            self.wait_for_readers(target);
        }
    }

    #[inline(always)]
    fn commit(&mut self, evnr: u64, pos: u64, off: u64, len: usize) {
        let rec = record_size(len as u64);
        let seq = self.seq;
        // SAFETY: off is 8-aligned and the record (header + payload) fits before the end of the
        // ring (checked in reserve).
        unsafe {
            write_record(
                self.v.data(),
                off as usize,
                encode_event(pos, evnr, seq, len as u32),
            )
        };
        let head = pos + rec;
        let head_off = off + rec;
        let bytes = self.bytes + len as u64;
        self.head = head;
        self.head_off = if head_off == self.ring { 0 } else { head_off };
        self.last = pos;
        self.starts.note(pos, seq);
        self.seq = seq + 1;
        self.bytes = bytes;
        self.last_evnr = evnr;
        let h = self.v.header();
        h.last.store(pos, Ordering::Relaxed);
        h.events_written.store(seq + 1, Ordering::Relaxed);
        h.bytes_written.store(bytes, Ordering::Relaxed);
        h.last_evnr.store(evnr, Ordering::Relaxed);
        // Publish (release: the record and the counters become visible with it). This is a
        // plain store on purpose: a sequentially consistent one (a locked instruction on a line
        // the readers keep reading) costs a cache miss per event. Without it the load of
        // `waiters` may overtake the store, so a reader announcing itself in that instant may
        // not be seen; readers cover that window by making their first sleep short (see
        // reader.rs, `wait`), and every later commit sees them.
        h.head.store(head, Ordering::Release);
        if h.waiters.load(Ordering::Relaxed) != 0 {
            self.wake_readers();
        }
    }

    /// Wakes every sleeping reader. Resetting the count first means one wake system call per
    /// sleep, not one per commit until the sleeper has run: a reader that announces itself
    /// after the reset sleeps on the new `wake_seq` value and is counted again.
    #[cold]
    fn wake_readers(&self) {
        let h = self.v.header();
        h.waiters.swap(0, Ordering::SeqCst);
        h.wake_seq.fetch_add(1, Ordering::SeqCst);
        futex::wake_all(&h.wake_seq);
    }

    /// Closes the buffer: readers get every event written so far, then
    /// [`ProducerGone`](super::ProducerGone) with `closed: true`. Same as dropping the writer.
    pub fn close(self) {}
}

impl<S: Storage> Drop for CircWriter<S> {
    fn drop(&mut self) {
        let h = self.v.header();
        h.state.store(STATE_CLOSED, Ordering::SeqCst);
        h.wake_seq.fetch_add(1, Ordering::SeqCst);
        futex::wake_all(&h.wake_seq);
        if self.remove_on_drop {
            self.v.st.release_producer();
        }
    }
}

/// Room for one event, reserved by [`CircWriter::reserve`]: fill [`buf`](Reservation::buf), then
/// [`commit`](Reservation::commit). Dropping it abandons the event (readers never see it).
///
/// The reservation borrows the writer, so nothing else can be written before it is committed
/// or dropped:
/// ```compile_fail
/// use shvars::circ::{CircOptions, CircWriter, HeapStorage};
/// let mut w = CircWriter::on_storage(HeapStorage::for_capacity(4096), &CircOptions::new(4096)).unwrap();
/// let mut r = w.reserve(1, 4).unwrap();
/// w.write(2, b"x").unwrap(); // error: `w` is borrowed by the reservation
/// r.commit();
/// ```
#[derive(Debug)]
#[must_use = "an event is only published by commit()"]
pub struct Reservation<'w, S: Storage = FileStorage> {
    w: &'w mut CircWriter<S>,
    evnr: u64,
    pos: u64,
    off: u64,
    len: usize,
}

impl<S: Storage> Reservation<'_, S> {
    /// The event's bytes, to fill in place (their previous content is unspecified).
    #[inline]
    pub fn buf(&mut self) -> &mut [u8] {
        // SAFETY: the payload area [off+HDR, off+HDR+len) lies inside the ring (checked in
        // reserve) and below the space the producer reclaimed; lossless readers do not read it
        // and sampling readers that still look at the old bytes detect it through `tail`, which
        // was published before this call. Only this writer writes to the ring, and the
        // reservation borrows the writer mutably, so no other &mut exists.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.w.v.data().add(self.off as usize + RECORD_HEADER),
                self.len,
            )
        }
    }

    /// The event number.
    pub fn evnr(&self) -> u64 {
        self.evnr
    }

    /// The reserved size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: reservations have at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Publishes the event with its full reserved size.
    #[inline(always)]
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len);
    }

    /// Publishes the event with only its first `len` bytes (for a socket read that returned
    /// less than reserved).
    ///
    /// # Panics
    /// If `len` is 0 or larger than the reserved size.
    #[inline(always)]
    pub fn commit_len(self, len: usize) {
        assert!(
            len >= 1 && len <= self.len,
            "commit_len({len}) outside 1..={}",
            self.len
        );
        let (evnr, pos, off) = (self.evnr, self.pos, self.off);
        self.w.commit(evnr, pos, off, len);
    }
}
