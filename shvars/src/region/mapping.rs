//! The mapped file and the only code that turns offsets into references.
//!
//! Every access to the shared bytes goes through this module: offsets are checked against the
//! mapping length and the alignment before any reference is made, and every reference is to an
//! atomic type, so neither a corrupt file nor a concurrently writing process can cause undefined
//! behaviour here.

use std::fs::File;
use std::io;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use super::layout::{
    ChunkHeader, Header, LogEntry, NumSlot, StrSlotHeader, ALIGN, CHUNK_HEADER, HEADER_SIZE,
    LOG_ENTRY_SIZE, STR_SLOT_HEADER,
};

/// A memory-mapped region file, read-only or read/write.
#[derive(Debug)]
pub(crate) struct Mapping {
    raw: MmapRaw,
    writable: bool,
}

/// Why a slot could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotErr {
    /// A string kept changing during every retry.
    Busy,
    /// The stored length is impossible.
    Damaged,
    /// The slot no longer holds the variable (its generation changed).
    Removed,
}

/// How often a reader retries a string that changes under it before reporting it busy.
pub(crate) const STRING_READ_TRIES: u32 = 200;

impl Mapping {
    /// Maps the first `len` bytes of `file`.
    ///
    /// The caller has checked (with `fstat`) that the file is at least `len` bytes long. If
    /// another process truncates the file later, touching the lost pages raises SIGBUS: the
    /// owner never truncates its region, and the framework documents that nobody else may.
    pub(crate) fn map(file: &File, len: usize, writable: bool) -> io::Result<Mapping> {
        if len < HEADER_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "file too small for a header",
            ));
        }
        let mut opts = MmapOptions::new();
        opts.len(len);
        let raw = if writable {
            opts.map_raw(file)?
        } else {
            opts.map_raw_read_only(file)?
        };
        Ok(Mapping { raw, writable })
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// The header.
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `map` refuses mappings shorter than HEADER_SIZE == size_of::<Header>(); the
        // mapping is page aligned, so offset 0 is aligned for Header (align 8). Header consists
        // only of atomics, for which any bit pattern is valid and concurrent access from other
        // processes is not a data race. The reference lives no longer than `self`, which owns
        // the mapping.
        unsafe { &*(self.raw.as_ptr() as *const Header) }
    }

    /// Checks that `[off, off+size)` lies in the mapping and `off` is 8-byte aligned.
    #[inline]
    pub(crate) fn check(&self, off: usize, size: usize) -> bool {
        off.is_multiple_of(ALIGN) && off.checked_add(size).is_some_and(|end| end <= self.len())
    }

    /// The atomic word at `off`. Panics if the bounds were not checked (a bug, not bad input).
    #[inline]
    pub(crate) fn word(&self, off: usize) -> &AtomicU64 {
        assert!(self.check(off, 8), "word offset {off} outside the mapping");
        // SAFETY: checked just above: 8 bytes at `off` are inside the mapping and `off` is a
        // multiple of 8 (the mapping base is page aligned), so the pointer is valid and aligned
        // for AtomicU64, which accepts any bit pattern; other processes only use atomic accesses
        // on it. The borrow is tied to `self`, which keeps the mapping alive.
        unsafe { &*(self.raw.as_ptr().add(off) as *const AtomicU64) }
    }

    /// The number slot at `off` (bounds checked like [`Mapping::word`]).
    #[inline]
    pub(crate) fn num_slot(&self, off: usize) -> &NumSlot {
        assert!(
            self.check(off, std::mem::size_of::<NumSlot>()),
            "slot offset {off} outside the mapping"
        );
        // SAFETY: as in `word`: in bounds and 8-aligned, checked above; NumSlot is two atomics,
        // valid for any bits and shared safely between processes.
        unsafe { &*(self.raw.as_ptr().add(off) as *const NumSlot) }
    }

    /// The header of the string slot at `off` (bounds checked like [`Mapping::word`]).
    #[inline]
    pub(crate) fn str_slot(&self, off: usize) -> &StrSlotHeader {
        assert!(
            self.check(off, STR_SLOT_HEADER),
            "slot offset {off} outside the mapping"
        );
        // SAFETY: as in `word`: in bounds and 8-aligned, checked above; StrSlotHeader is three
        // atomics.
        unsafe { &*(self.raw.as_ptr().add(off) as *const StrSlotHeader) }
    }

    /// The header of the schema chunk at `off` (bounds checked like [`Mapping::word`]).
    #[inline]
    pub(crate) fn chunk(&self, off: usize) -> &ChunkHeader {
        assert!(
            self.check(off, CHUNK_HEADER),
            "chunk offset {off} outside the mapping"
        );
        // SAFETY: as in `word`: in bounds and 8-aligned, checked above; ChunkHeader is three
        // atomics.
        unsafe { &*(self.raw.as_ptr().add(off) as *const ChunkHeader) }
    }

    /// The change-log entry at `off` (bounds checked like [`Mapping::word`]).
    #[inline]
    pub(crate) fn log_entry(&self, off: usize) -> &LogEntry {
        assert!(
            self.check(off, LOG_ENTRY_SIZE),
            "log entry offset {off} outside the mapping"
        );
        // SAFETY: as in `word`: in bounds and 8-aligned, checked above; LogEntry is four
        // atomics.
        unsafe { &*(self.raw.as_ptr().add(off) as *const LogEntry) }
    }

    /// The value word of the number slot at `off` if the slot still holds generation `tag`
    /// (read between two loads of the generation, so a value of a later occupant is never
    /// returned as this one's).
    #[inline(always)]
    pub(crate) fn read_num(&self, off: usize, tag: u64) -> Result<u64, SlotErr> {
        let slot = self.num_slot(off);
        if slot.gen.load(Ordering::Acquire) != tag {
            return Err(SlotErr::Removed);
        }
        let v = slot.value.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if slot.gen.load(Ordering::Relaxed) != tag {
            return Err(SlotErr::Removed);
        }
        Ok(v)
    }

    /// Copies `len` bytes starting at the 8-aligned `off` out with word-sized atomic loads.
    pub(crate) fn copy_out(&self, off: usize, len: usize, out: &mut Vec<u8>) {
        // Bounds checked once for the whole range, not per word: a schema is thousands of them.
        let words = self.words(off, len.div_ceil(8));
        out.clear();
        out.resize(words.len() * 8, 0);
        for (dst, w) in out.chunks_exact_mut(8).zip(words) {
            dst.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        out.truncate(len);
    }

    /// Stores `bytes` at the 8-aligned `off` with word-sized atomic stores, zero padding the
    /// last word. Only the owner (a writable mapping) calls this.
    pub(crate) fn copy_in(&self, off: usize, bytes: &[u8]) {
        debug_assert!(self.writable);
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(off + i * 8)
                .store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
    }

    /// The `n` atomic words starting at the 8-aligned `off`, bounds checked once.
    #[inline]
    pub(crate) fn words(&self, off: usize, n: usize) -> &[AtomicU64] {
        assert!(
            n.checked_mul(8).is_some_and(|len| self.check(off, len)),
            "words {off}+{n} outside the mapping"
        );
        // SAFETY: checked just above: n*8 bytes at `off` lie inside the mapping and `off` is a
        // multiple of 8, so this is a valid, aligned array of AtomicU64 (any bit pattern valid,
        // only accessed atomically by every process). The borrow is tied to `self`.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().add(off) as *const AtomicU64, n) }
    }

    /// Reads the string slot at `off` of capacity `cap` and generation `tag` into `buf` under
    /// the seqlock. Returns whether the text is plain ASCII (`buf` holds exactly the text).
    #[inline(always)]
    pub(crate) fn read_str(
        &self,
        off: usize,
        cap: usize,
        tag: u64,
        buf: &mut Vec<u8>,
    ) -> Result<bool, SlotErr> {
        let slot = self.str_slot(off);
        let text = self.words(off + STR_SLOT_HEADER, cap.div_ceil(8));
        for attempt in 0..STRING_READ_TRIES {
            if slot.gen.load(Ordering::Acquire) != tag {
                return Err(SlotErr::Removed);
            }
            let s1 = slot.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                backoff(attempt);
                continue;
            }
            let len = slot.len.load(Ordering::Relaxed) as usize;
            let nw = len.min(cap).div_ceil(8);
            if buf.len() != nw * 8 {
                buf.resize(nw * 8, 0);
            }
            let mut high = 0u64;
            for (chunk, w) in buf.chunks_exact_mut(8).zip(&text[..nw]) {
                let w = w.load(Ordering::Relaxed);
                high |= w;
                chunk.copy_from_slice(&w.to_ne_bytes());
            }
            fence(Ordering::Acquire);
            let s2 = slot.seq.load(Ordering::Relaxed);
            if slot.gen.load(Ordering::Relaxed) != tag {
                return Err(SlotErr::Removed);
            }
            if s1 == s2 {
                if len > cap {
                    return Err(SlotErr::Damaged);
                }
                buf.truncate(len);
                // The padding after the text is zero, so no high bit anywhere means ASCII.
                return Ok(high & 0x8080_8080_8080_8080 == 0);
            }
            backoff(attempt);
        }
        Err(SlotErr::Busy)
    }

    /// Writes `text` into the string slot at `off` under the seqlock. Concurrent writers of
    /// the same slot (threads of the owner) serialise on the sequence word. Returns the
    /// sequence after the write.
    pub(crate) fn write_str(&self, off: usize, text: &[u8], now_ns: u64) -> u64 {
        debug_assert!(self.writable);
        let slot = self.str_slot(off);
        let mut s = slot.seq.load(Ordering::Relaxed);
        loop {
            if s & 1 == 1 {
                std::hint::spin_loop();
                s = slot.seq.load(Ordering::Relaxed);
                continue;
            }
            match slot
                .seq
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(cur) => s = cur,
            }
        }
        fence(Ordering::Release);
        slot.len.store(text.len() as u64, Ordering::Relaxed);
        self.copy_in(off + STR_SLOT_HEADER, text);
        slot.changed_ns.store(now_ns, Ordering::Relaxed);
        slot.seq.store(s + 2, Ordering::Release);
        s + 2
    }
}

fn backoff(attempt: u32) {
    if attempt < 20 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}
