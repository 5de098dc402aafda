//! A validated view of one buffer in a [`Storage`]: the typed header, the reader table and the
//! ring, with the checks that make it safe to use untrusted bytes.
//!
//! Opening validates everything that later code relies on for memory safety (magic, version,
//! sizes, the identity checksum, the region length); after that the only untrusted things left
//! are the positions and records, which the reader checks on every use.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::error::OpenError;
use super::layout::{
    file_size, ring_size, ActivitySlot, CircHeader, ReaderSlot, ACTIVITY_OFFSET, ACTIVITY_SLOTS,
    DATA_OFFSET, MAGIC, MAX_CAPACITY, MIN_CAPACITY, READER_SLOTS, SLOTS_OFFSET, STATE_INIT,
    VERSION,
};
use super::storage::Storage;

/// A storage whose header has been checked (or just written by the producer).
#[derive(Debug)]
pub(crate) struct View<S: Storage> {
    pub(crate) st: S,
    base: *mut u8,
    /// Ring size in bytes.
    pub(crate) ring: u64,
    /// Largest payload.
    pub(crate) max_event: u64,
}

// SAFETY: the raw pointer points into memory owned by `st` (which moves with the view) and is
// only used through atomics and raw copies designed for concurrent access from any thread.
unsafe impl<S: Storage + Send> Send for View<S> {}

impl<S: Storage> View<S> {
    /// Wraps a storage whose header the producer has just initialised.
    pub(crate) fn new_unchecked(st: S, capacity: u64) -> Self {
        let base = st.as_ptr();
        View {
            st,
            base,
            ring: ring_size(capacity),
            max_event: capacity / 2,
        }
    }

    /// Checks the header of an existing buffer.
    pub(crate) fn open(st: S) -> Result<Self, OpenError> {
        let path = st.path().to_owned();
        let corrupt = |why: String| OpenError::Corrupt {
            path: path.clone(),
            why,
        };
        // `Storage` guarantees at least DATA_OFFSET bytes, so the header can be read.
        let base = st.as_ptr();
        let v = View {
            st,
            base,
            ring: 0,
            max_event: 0,
        };
        let h = v.header();
        let magic = h.magic.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(OpenError::NotACircBuffer { path, magic });
        }
        let version = h.version();
        if version > VERSION || version == 0 {
            return Err(OpenError::UnsupportedVersion {
                path,
                found: version,
                supported: VERSION,
            });
        }
        if h.state.load(Ordering::Acquire) == STATE_INIT {
            return Err(corrupt(
                "its producer never finished creating it".to_owned(),
            ));
        }
        if h.computed_ident_check() != h.ident_check.load(Ordering::Relaxed) {
            return Err(corrupt("the identity checksum does not match".to_owned()));
        }
        let hs = h.header_size.load(Ordering::Relaxed);
        if hs as usize != DATA_OFFSET {
            return Err(corrupt(format!("header size {hs}, expected {DATA_OFFSET}")));
        }
        let slots = h.reader_slots.load(Ordering::Relaxed);
        if slots as usize != READER_SLOTS {
            return Err(corrupt(format!(
                "{slots} reader slots, expected {READER_SLOTS}"
            )));
        }
        let cap = h.capacity();
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) || !cap.is_multiple_of(8) {
            return Err(corrupt(format!("capacity {cap} is out of range")));
        }
        if h.max_event() != cap / 2 {
            return Err(corrupt(format!(
                "largest event {} does not match capacity {cap}",
                h.max_event()
            )));
        }
        let need = file_size(cap);
        if (v.st.len() as u64) < need {
            return Err(OpenError::Truncated {
                path,
                len: v.st.len() as u64,
                expected: need,
            });
        }
        Ok(View {
            ring: ring_size(cap),
            max_event: cap / 2,
            ..v
        })
    }

    /// The header.
    #[inline]
    pub(crate) fn header(&self) -> &CircHeader {
        // SAFETY: the storage holds at least DATA_OFFSET bytes, 64-aligned, for as long as self
        // lives; CircHeader is all atomics (any bit pattern is valid) and fits below
        // SLOTS_OFFSET.
        unsafe { &*(self.base as *const CircHeader) }
    }

    /// The lossless reader table.
    #[inline]
    pub(crate) fn slots(&self) -> &[ReaderSlot] {
        // SAFETY: the table lies at SLOTS_OFFSET, 64-aligned, below DATA_OFFSET (compile-time
        // asserted in layout.rs), inside the storage; ReaderSlot is all atomics.
        unsafe {
            std::slice::from_raw_parts(
                self.base.add(SLOTS_OFFSET) as *const ReaderSlot,
                READER_SLOTS,
            )
        }
    }

    /// The reader activity table.
    #[inline]
    pub(crate) fn activity(&self) -> &[ActivitySlot] {
        // SAFETY: the table lies at ACTIVITY_OFFSET, 32-aligned (the storage is page aligned),
        // between the reader slots and DATA_OFFSET (compile-time asserted in layout.rs), inside
        // the storage; ActivitySlot is all atomics.
        unsafe {
            std::slice::from_raw_parts(
                self.base.add(ACTIVITY_OFFSET) as *const ActivitySlot,
                ACTIVITY_SLOTS,
            )
        }
    }

    /// Start of the ring.
    #[inline]
    pub(crate) fn data(&self) -> *mut u8 {
        // SAFETY: DATA_OFFSET is inside the storage (at least DATA_OFFSET + ring bytes long).
        unsafe { self.base.add(DATA_OFFSET) }
    }

    /// The buffer's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        self.st.path()
    }
}
