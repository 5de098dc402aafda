//! The bytes of a circular buffer: the fixed header, the reader table, the record header.
//!
//! This file owns the on-disk/in-memory format (docs/circ.md describes it for other languages).
//! Everything here is plain data: `#[repr(C)]` structs of atomics and the pure functions that
//! encode, decode and check records. It never decides anything about the protocol.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// `"KLOECIRC"` in little-endian byte order: the first 8 bytes of every buffer file.
pub const MAGIC: u64 = u64::from_le_bytes(*b"KLOECIRC");
/// The format version this code writes and reads. A file with a larger version is refused.
pub const VERSION: u32 = 1;
/// Byte offset of the record area (the ring) in the file. The header and the reader table fit
/// below it.
pub const DATA_OFFSET: usize = 4096;
/// Byte offset of the reader table in the file.
pub const SLOTS_OFFSET: usize = 1024;
/// Number of lossless reader slots in the reader table.
pub const READER_SLOTS: usize = 32;
/// Size of one reader slot (one cache line).
pub const SLOT_SIZE: usize = 64;
/// Offset of the reader activity table (every reader that can write the file, sampling or
/// lossless, announces there that it reads; producers use it to know whether anybody does).
pub const ACTIVITY_OFFSET: usize = 3072;
/// Number of entries in the activity table.
pub const ACTIVITY_SLOTS: usize = 32;
/// Size of one activity entry.
pub const ACTIVITY_SIZE: usize = 32;
/// Size of a record header; every record starts with one.
pub const RECORD_HEADER: usize = 32;
/// Records start at multiples of this many bytes (relative to the start of the ring).
pub const RECORD_ALIGN: usize = 8;
/// The ring is this many bytes larger than the nominal capacity, so that an event of half the
/// capacity plus the padding record before it always fits in the ring without overlapping
/// itself (see docs/circ.md, "Sizes").
pub const RING_SLACK: u64 = 2 * RECORD_HEADER as u64;
/// Smallest accepted capacity in bytes.
pub const MIN_CAPACITY: u64 = 64;
/// Largest accepted capacity in bytes (16 TiB).
pub const MAX_CAPACITY: u64 = 1 << 44;
/// Flag in a record's length word marking a padding record (the rest of the ring is skipped).
pub const PAD_FLAG: u32 = 1 << 31;

/// `state` value while the producer initialises the file (never visible under the final name).
pub const STATE_INIT: u32 = 0;
/// `state` value while the producer writes.
pub const STATE_READY: u32 = 1;
/// `state` value after the producer closed the buffer cleanly.
pub const STATE_CLOSED: u32 = 2;

/// The fixed header at offset 0 of every circular buffer (320 bytes, five cache lines).
///
/// Every field is an atomic, because the producer and readers in other processes access it
/// concurrently. Line 0 is written once before the file gets its final name; line 1 by the
/// producer when it reclaims space; line 2 by the producer on every commit; lines 3 and 4 hold
/// the words waiters sleep on. The exact offsets are in docs/circ.md; a unit test pins them.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct CircHeader {
    // --- line 0: identity, immutable after creation
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) header_size: AtomicU32,
    pub(crate) capacity: AtomicU64,
    pub(crate) max_event: AtomicU64,
    pub(crate) instance: AtomicU64,
    pub(crate) producer_pid: AtomicU32,
    pub(crate) reader_slots: AtomicU32,
    pub(crate) created_ns: AtomicU64,
    pub(crate) ident_check: AtomicU64,
    // --- line 1: producer control and counters updated when space is reclaimed
    pub(crate) state: AtomicU32,
    pub(crate) _flags: AtomicU32,
    pub(crate) tail: AtomicU64,
    pub(crate) lossless_timeout_ns: AtomicU64,
    pub(crate) events_overwritten: AtomicU64,
    pub(crate) events_refused: AtomicU64,
    pub(crate) readers_evicted: AtomicU64,
    pub(crate) _pad1: [u64; 2],
    // --- line 2: the commit line, written on every event
    pub(crate) head: AtomicU64,
    pub(crate) last: AtomicU64,
    pub(crate) events_written: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) last_evnr: AtomicU64,
    pub(crate) _pad2: [u64; 3],
    // --- line 3: readers waiting for events
    pub(crate) wake_seq: AtomicU32,
    pub(crate) waiters: AtomicU32,
    pub(crate) _pad3: [u64; 7],
    // --- line 4: the producer waiting for lossless readers
    pub(crate) space_seq: AtomicU32,
    pub(crate) producer_waiting: AtomicU32,
    pub(crate) reg_seq: AtomicU64,
    /// The position every lossless reader must reach before the waiting producer goes on.
    pub(crate) space_target: AtomicU64,
    pub(crate) _pad4: [u64; 5],
}

impl CircHeader {
    /// The buffer's nominal capacity in bytes (the ring is [`RING_SLACK`] bytes larger).
    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }
    /// The largest event accepted, in bytes (half the capacity).
    pub fn max_event(&self) -> u64 {
        self.max_event.load(Ordering::Relaxed)
    }
    /// Format version of the buffer.
    pub fn version(&self) -> u32 {
        self.version.load(Ordering::Relaxed)
    }
    /// Process id of the producer that created this instance.
    pub fn producer_pid(&self) -> u32 {
        self.producer_pid.load(Ordering::Relaxed)
    }
    /// Random id of this instance; a re-created buffer has another one.
    pub fn instance(&self) -> u64 {
        self.instance.load(Ordering::Relaxed)
    }
    /// Creation time, nanoseconds since the Unix epoch.
    pub fn created_ns(&self) -> u64 {
        self.created_ns.load(Ordering::Relaxed)
    }
    /// True once the producer closed the buffer cleanly.
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == STATE_CLOSED
    }

    /// The identity checksum over line 0 as stored now (see [`ident_check`]).
    pub(crate) fn computed_ident_check(&self) -> u64 {
        ident_check(&[
            self.magic.load(Ordering::Relaxed),
            u64::from(self.version.load(Ordering::Relaxed))
                | u64::from(self.header_size.load(Ordering::Relaxed)) << 32,
            self.capacity.load(Ordering::Relaxed),
            self.max_event.load(Ordering::Relaxed),
            self.instance.load(Ordering::Relaxed),
            u64::from(self.producer_pid.load(Ordering::Relaxed))
                | u64::from(self.reader_slots.load(Ordering::Relaxed)) << 32,
            self.created_ns.load(Ordering::Relaxed),
        ])
    }
}

/// One entry of the lossless reader table (one cache line).
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct ReaderSlot {
    /// 0 when free; otherwise the registered reader's token.
    pub(crate) token: AtomicU64,
    /// Stream position up to which the reader has consumed everything.
    pub(crate) pos: AtomicU64,
    pub(crate) pid: AtomicU32,
    pub(crate) _flags: AtomicU32,
    pub(crate) registered_ns: AtomicU64,
    /// Last time the reader consumed or waited, ns since the Unix epoch.
    pub(crate) active_ns: AtomicU64,
    pub(crate) events_read: AtomicU64,
    pub(crate) _pad: [u64; 2],
}

/// One entry of the reader activity table.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ActivitySlot {
    /// 0 when free; otherwise the reader's random token.
    pub(crate) token: AtomicU64,
    /// Last time the reader consumed an event or looked for one, ns since the Unix epoch.
    pub(crate) active_ns: AtomicU64,
    /// Stream position up to which the reader has consumed.
    pub(crate) pos: AtomicU64,
    pub(crate) pid: AtomicU32,
    pub(crate) _flags: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<ActivitySlot>() == ACTIVITY_SIZE);
const _: () = assert!(SLOTS_OFFSET + READER_SLOTS * SLOT_SIZE <= ACTIVITY_OFFSET);
const _: () = assert!(ACTIVITY_OFFSET + ACTIVITY_SLOTS * ACTIVITY_SIZE <= DATA_OFFSET);
const _: () = assert!(std::mem::size_of::<CircHeader>() == 320);
const _: () = assert!(std::mem::size_of::<CircHeader>() <= SLOTS_OFFSET);
const _: () = assert!(std::mem::size_of::<ReaderSlot>() == SLOT_SIZE);
const _: () = assert!(SLOTS_OFFSET + READER_SLOTS * SLOT_SIZE <= DATA_OFFSET);

/// The murmur3 64-bit finaliser: the mixing step of every checksum in the format.
#[inline]
pub const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Checksum of the identity line: `h = 0; for w in words { h = fmix64(h ^ w) }`.
pub fn ident_check(words: &[u64]) -> u64 {
    words.iter().fold(0, |h, &w| fmix64(h ^ w))
}

/// Salt of the record checksum (`"CIRCRECD"` little-endian).
pub const RECORD_SALT: u64 = u64::from_le_bytes(*b"CIRCRECD");

/// The 32-bit check stored in the upper half of a record header's last word.
#[inline]
pub const fn record_check(pos: u64, evnr: u64, seq: u64, lenf: u32) -> u32 {
    let x = pos
        ^ evnr.rotate_left(17)
        ^ seq.rotate_left(31)
        ^ (lenf as u64).rotate_left(47)
        ^ RECORD_SALT;
    let h = fmix64(x);
    (h ^ (h >> 32)) as u32
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    /// An event of `len` payload bytes.
    Event { evnr: u64, seq: u64, len: u32 },
    /// A padding record of `total` bytes (header included) up to the end of the ring.
    Pad { total: u32 },
}

/// The four words of a record header as stored.
pub(crate) type RecordWords = [u64; 4];

/// Encodes an event record header for stream position `pos`.
#[inline]
pub(crate) const fn encode_event(pos: u64, evnr: u64, seq: u64, len: u32) -> RecordWords {
    let check = record_check(pos, evnr, seq, len);
    [pos, evnr, seq, len as u64 | (check as u64) << 32]
}

/// Encodes a padding record header of `total` bytes for stream position `pos`.
#[inline]
pub(crate) const fn encode_pad(pos: u64, seq: u64, total: u32) -> RecordWords {
    let lenf = PAD_FLAG | total;
    let check = record_check(pos, 0, seq, lenf);
    [pos, 0, seq, lenf as u64 | (check as u64) << 32]
}

/// Decodes and checks a record header read at stream position `pos`. `None` for a header that
/// does not belong to this position (stale, torn or junk).
#[inline]
pub(crate) fn decode(words: RecordWords, pos: u64) -> Option<Record> {
    let [p, evnr, seq, w3] = words;
    let lenf = w3 as u32;
    let check = (w3 >> 32) as u32;
    if p != pos || check != record_check(p, evnr, seq, lenf) {
        return None;
    }
    if lenf & PAD_FLAG != 0 {
        Some(Record::Pad {
            total: lenf & !PAD_FLAG,
        })
    } else {
        Some(Record::Event {
            evnr,
            seq,
            len: lenf,
        })
    }
}

/// Bytes a record with `len` payload bytes occupies in the ring.
#[inline]
pub const fn record_size(len: u64) -> u64 {
    RECORD_HEADER as u64 + ((len + RECORD_ALIGN as u64 - 1) & !(RECORD_ALIGN as u64 - 1))
}

/// Ring size (bytes of the record area) for a nominal capacity.
#[inline]
pub const fn ring_size(capacity: u64) -> u64 {
    capacity + RING_SLACK
}

/// Total file size for a nominal capacity.
#[inline]
pub const fn file_size(capacity: u64) -> u64 {
    DATA_OFFSET as u64 + ring_size(capacity)
}

/// Reads the record header at ring offset `off`.
///
/// # Safety
/// `data` must point to the ring (8-aligned, valid for reads of `ring` bytes for the duration of
/// the call) and `off + RECORD_HEADER <= ring`, `off % 8 == 0`.
#[inline]
pub(crate) unsafe fn read_record(data: *const u8, off: usize) -> RecordWords {
    // SAFETY: the caller guarantees the 32 bytes at `off` are inside the ring and 8-aligned;
    // every access to record headers is atomic, so concurrent writes are not a data race.
    unsafe {
        let p = data.add(off) as *const AtomicU64;
        [
            (*p).load(Ordering::Relaxed),
            (*p.add(1)).load(Ordering::Relaxed),
            (*p.add(2)).load(Ordering::Relaxed),
            (*p.add(3)).load(Ordering::Relaxed),
        ]
    }
}

/// Writes a record header at ring offset `off`.
///
/// # Safety
/// As [`read_record`], for writes.
#[inline]
pub(crate) unsafe fn write_record(data: *mut u8, off: usize, words: RecordWords) {
    // SAFETY: the caller guarantees the 32 bytes at `off` are inside the ring and 8-aligned.
    unsafe {
        let p = data.add(off) as *const AtomicU64;
        for (i, w) in words.iter().enumerate() {
            (*p.add(i)).store(*w, Ordering::Relaxed);
        }
    }
}

/// Asks the CPU for the ring's lines holding `bytes` bytes from ring offset `off` (an offset
/// past the ring's end is taken modulo its size), at most `max_lines` of them (`prefetcht0`;
/// nothing on other architectures and under Miri). Only a hint: it never faults, reads or writes
/// nothing the program can see, and lines past the end of the ring are merely wasted.
#[inline(always)]
pub(crate) fn prefetch(data: *const u8, ring: u64, off: u64, bytes: u64, max_lines: u64) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // Past the end only near it as a rule: no division then.
        let off = if off < ring { off } else { off % ring };
        let p = data.wrapping_add(off as usize);
        for i in 0..(bytes / 64 + 1).min(max_lines) as usize {
            // SAFETY: a prefetch never faults and reads or writes nothing the program can see,
            // whatever the address; SSE is part of the x86_64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * i) as *const i8) };
        }
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    let _ = (data, ring, off, bytes, max_lines);
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
/// The wall clock at the kernel tick's resolution (a few ms), for bookkeeping on every event:
/// it costs a few nanoseconds where a precise reading costs tens.
pub(crate) fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if r != 0 {
        return now_ns();
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn offsets_match_the_documented_layout() {
        assert_eq!(offset_of!(CircHeader, magic), 0);
        assert_eq!(offset_of!(CircHeader, version), 8);
        assert_eq!(offset_of!(CircHeader, header_size), 12);
        assert_eq!(offset_of!(CircHeader, capacity), 16);
        assert_eq!(offset_of!(CircHeader, max_event), 24);
        assert_eq!(offset_of!(CircHeader, instance), 32);
        assert_eq!(offset_of!(CircHeader, producer_pid), 40);
        assert_eq!(offset_of!(CircHeader, reader_slots), 44);
        assert_eq!(offset_of!(CircHeader, created_ns), 48);
        assert_eq!(offset_of!(CircHeader, ident_check), 56);
        assert_eq!(offset_of!(CircHeader, state), 64);
        assert_eq!(offset_of!(CircHeader, tail), 72);
        assert_eq!(offset_of!(CircHeader, lossless_timeout_ns), 80);
        assert_eq!(offset_of!(CircHeader, events_overwritten), 88);
        assert_eq!(offset_of!(CircHeader, events_refused), 96);
        assert_eq!(offset_of!(CircHeader, readers_evicted), 104);
        assert_eq!(offset_of!(CircHeader, head), 128);
        assert_eq!(offset_of!(CircHeader, last), 136);
        assert_eq!(offset_of!(CircHeader, events_written), 144);
        assert_eq!(offset_of!(CircHeader, bytes_written), 152);
        assert_eq!(offset_of!(CircHeader, last_evnr), 160);
        assert_eq!(offset_of!(CircHeader, wake_seq), 192);
        assert_eq!(offset_of!(CircHeader, waiters), 196);
        assert_eq!(offset_of!(CircHeader, space_seq), 256);
        assert_eq!(offset_of!(CircHeader, producer_waiting), 260);
        assert_eq!(offset_of!(CircHeader, reg_seq), 264);
        assert_eq!(offset_of!(CircHeader, space_target), 272);
        assert_eq!(offset_of!(ReaderSlot, token), 0);
        assert_eq!(offset_of!(ReaderSlot, pos), 8);
        assert_eq!(offset_of!(ReaderSlot, pid), 16);
        assert_eq!(offset_of!(ReaderSlot, registered_ns), 24);
        assert_eq!(offset_of!(ReaderSlot, active_ns), 32);
        assert_eq!(offset_of!(ReaderSlot, events_read), 40);
    }

    #[test]
    fn records_round_trip_and_reject_other_positions() {
        let w = encode_event(4096, 77, 3, 100);
        assert_eq!(
            decode(w, 4096),
            Some(Record::Event {
                evnr: 77,
                seq: 3,
                len: 100
            })
        );
        assert_eq!(
            decode(w, 4096 + 8),
            None,
            "a record is bound to its position"
        );
        let mut torn = w;
        torn[1] ^= 1;
        assert_eq!(decode(torn, 4096), None, "a changed event number is caught");
        let mut torn = w;
        torn[3] ^= 4;
        assert_eq!(decode(torn, 4096), None, "a changed length is caught");
        let p = encode_pad(8, 9, 40);
        assert_eq!(decode(p, 8), Some(Record::Pad { total: 40 }));
        assert_eq!(decode([0; 4], 0), None, "a zeroed ring holds no record");
    }

    #[test]
    fn sizes() {
        assert_eq!(record_size(1), 40);
        assert_eq!(record_size(8), 40);
        assert_eq!(record_size(9), 48);
        assert_eq!(file_size(4096), 4096 + 4096 + 64);
    }
}
