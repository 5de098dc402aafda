//! The binary layout of a variable region (format 2): header, change log, schema chunks, value
//! slots.
//!
//! Every field that another process may read or write while we look at it is an atomic, so no
//! read of shared memory is a data race in the Rust memory model, whatever the other side does.
//! The full description of the format is in `docs/region.md`.

use std::sync::atomic::{AtomicU32, AtomicU64};

/// First eight bytes of every region file.
pub const MAGIC: [u8; 8] = *b"SHVREG\0\x01";
/// Format version written by this code. Readers refuse any other.
pub const VERSION: u32 = 2;
/// Size of the fixed header in bytes.
pub const HEADER_SIZE: usize = 256;
/// Alignment of every chunk, slot and log entry.
pub const ALIGN: usize = 8;
/// Size of the slot of an INTEGER, FLOAT or ENUM variable (generation, value, change time).
pub const NUM_SLOT_SIZE: usize = 24;
/// Size of the fixed part of a STRING slot (generation, sequence, change time, length).
pub const STR_SLOT_HEADER: usize = 32;
/// Longest string capacity a variable may declare.
pub const MAX_STR_CAP: usize = 64 * 1024;
/// Size of the header of a schema chunk (next, cap, used).
pub const CHUNK_HEADER: usize = 24;
/// Size of one change-log entry.
pub const LOG_ENTRY_SIZE: usize = 32;
/// Largest file a region may grow to (and a reader accepts).
pub const MAX_FILE_SIZE: u64 = 4 << 30;
/// Longest change log, in entries.
pub const MAX_LOG_CAP: u64 = 1 << 24;

/// `state` field: the owner is still writing the schema.
pub const STATE_CREATING: u32 = 0;
/// `state` field: the owner runs (check the flock to know whether it is still alive).
pub const STATE_LIVE: u32 = 1;
/// `state` field: the owner exited cleanly.
pub const STATE_STOPPED: u32 = 2;

/// Change-log entry kind: a number's new value (the 64 bits of the i64 or f64).
pub const KIND_VALUE: u32 = 0;
/// Change-log entry kind: a string changed; the value is the slot's sequence after the write.
pub const KIND_STRING: u32 = 1;
/// Change-log entry kind: the variable was added (value as for VALUE or STRING).
pub const KIND_ADDED: u32 = 2;
/// Change-log entry kind: the variable was retired (value 0).
pub const KIND_RETIRED: u32 = 3;

/// `stamp` of a log entry the owner is writing right now.
pub const STAMP_BUSY: u64 = u64::MAX;

/// The fixed header at offset 0 of a region file. `#[repr(C)]`, native (little) endian, 256 bytes.
#[repr(C)]
#[derive(Debug)]
pub struct Header {
    /// [`MAGIC`], as a native-endian u64.
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// [`HEADER_SIZE`].
    pub header_size: AtomicU32,
    /// Size of the file in bytes; grows (never shrinks) when the owner adds chunks.
    pub file_size: AtomicU64,
    /// Offset of the first schema chunk.
    pub schema_off: AtomicU64,
    /// Size of the first schema chunk (its header included).
    pub schema_cap: AtomicU64,
    /// Offset of the first data chunk.
    pub data_off: AtomicU64,
    /// Size of the first data chunk.
    pub data_cap: AtomicU64,
    /// Pid of the owner.
    pub owner_pid: AtomicU32,
    /// One of [`STATE_CREATING`], [`STATE_LIVE`], [`STATE_STOPPED`].
    pub state: AtomicU32,
    /// When the owner created the region, ns since the Unix epoch.
    pub owner_start_ns: AtomicU64,
    /// Random id of this incarnation of the region (changes when a new owner takes over).
    pub instance_id: AtomicU64,
    /// Last heartbeat of the owner's main loop, ns since the Unix epoch.
    pub heartbeat_ns: AtomicU64,
    /// Bytes of schema lines published so far, over every chunk (append-only).
    pub schema_len: AtomicU64,
    /// Number of live variables.
    pub nvars: AtomicU64,
    /// Bytes of slots of live variables.
    pub data_used: AtomicU64,
    /// The process name, NUL padded, as 4 native-endian u64 words.
    pub name: [AtomicU64; 4],
    /// Offset of the change log (entries of [`LOG_ENTRY_SIZE`] bytes).
    pub log_off: AtomicU64,
    /// Entries in the change log: a power of two, or 0 for none.
    pub log_cap: AtomicU64,
    /// Sequence number of the next change-log entry (= entries ever written).
    pub log_head: AtomicU64,
    /// Futex word: incremented (and waiters woken) after a log append while `waiters != 0`.
    pub wake: AtomicU32,
    /// Readers sleeping on `wake`, or about to.
    pub waiters: AtomicU32,
    /// Variables retired so far.
    pub nretired: AtomicU64,
    /// Times the file has grown.
    pub grow_count: AtomicU64,
    /// Reserved, zero.
    pub reserved: [AtomicU64; 8],
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);

/// The header of a schema chunk; `cap - CHUNK_HEADER` bytes of JSON lines follow it.
#[repr(C)]
#[derive(Debug)]
pub struct ChunkHeader {
    /// Offset of the next schema chunk, 0 while this is the last one.
    pub next: AtomicU64,
    /// Size of this chunk in bytes, header included.
    pub cap: AtomicU64,
    /// Bytes of lines written in this chunk.
    pub used: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<ChunkHeader>() == CHUNK_HEADER);

/// The slot of a number (INTEGER, FLOAT, ENUM).
#[repr(C)]
#[derive(Debug)]
pub struct NumSlot {
    /// Generation: `id + 1` of the variable in the slot, 0 while free.
    pub gen: AtomicU64,
    /// The value: an i64 or the bits of an f64.
    pub value: AtomicU64,
    /// Time of the last change, ns since the Unix epoch.
    pub changed_ns: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<NumSlot>() == NUM_SLOT_SIZE);

/// The fixed part of a STRING slot; `cap` bytes of text (rounded up to 8) follow it.
#[repr(C)]
#[derive(Debug)]
pub struct StrSlotHeader {
    /// Generation, as in [`NumSlot`].
    pub gen: AtomicU64,
    /// Seqlock sequence: odd while the owner writes.
    pub seq: AtomicU64,
    /// Time of the last change, ns since the Unix epoch.
    pub changed_ns: AtomicU64,
    /// Length of the text in bytes.
    pub len: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<StrSlotHeader>() == STR_SLOT_HEADER);

/// One entry of the change log.
#[repr(C)]
#[derive(Debug)]
pub struct LogEntry {
    /// `seq + 1` once entry `seq` is complete; [`STAMP_BUSY`] while written; 0 never written.
    pub stamp: AtomicU64,
    /// Variable id (low 32 bits) and kind (high 32 bits, `KIND_*`).
    pub key: AtomicU64,
    /// The new value (see the kinds).
    pub value: AtomicU64,
    /// Time of the change, ns since the Unix epoch.
    pub time_ns: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<LogEntry>() == LOG_ENTRY_SIZE);

/// Rounds `n` up to a multiple of [`ALIGN`].
pub const fn align_up(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// Size of the slot of a string of capacity `cap`.
pub const fn str_slot_size(cap: usize) -> usize {
    STR_SLOT_HEADER + align_up(cap)
}
