//! The binary layout of a variable region: header, schema area, value slots.
//!
//! Every field that another process may read or write while we look at it is an atomic, so no
//! read of shared memory is a data race in the Rust memory model, whatever the other side does.
//! The full description of the format is in `docs/region.md`.

use std::sync::atomic::{AtomicU32, AtomicU64};

/// First eight bytes of every region file.
pub const MAGIC: [u8; 8] = *b"SHVREG\0\x01";
/// Format version written by this code. Readers refuse anything newer.
pub const VERSION: u32 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_SIZE: usize = 256;
/// Alignment of the schema area, the data area and every slot.
pub const ALIGN: usize = 8;
/// Size of the slot of an INTEGER, FLOAT or ENUM variable.
pub const NUM_SLOT_SIZE: usize = 16;
/// Size of the fixed part of a STRING slot (sequence, change time, length).
pub const STR_SLOT_HEADER: usize = 24;
/// Longest string capacity a variable may declare.
pub const MAX_STR_CAP: usize = 64 * 1024;

/// `state` field: the owner is still writing the schema.
pub const STATE_CREATING: u32 = 0;
/// `state` field: the owner runs (check the flock to know whether it is still alive).
pub const STATE_LIVE: u32 = 1;
/// `state` field: the owner exited cleanly.
pub const STATE_STOPPED: u32 = 2;

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
    /// Size of the whole file in bytes.
    pub file_size: AtomicU64,
    /// Offset of the schema area from the start of the file.
    pub schema_off: AtomicU64,
    /// Capacity of the schema area in bytes.
    pub schema_cap: AtomicU64,
    /// Offset of the data (slot) area from the start of the file.
    pub data_off: AtomicU64,
    /// Capacity of the data area in bytes.
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
    /// Bytes of the schema area published so far (JSON lines, append-only).
    pub schema_len: AtomicU64,
    /// Number of variables published so far.
    pub nvars: AtomicU64,
    /// Bytes of the data area allocated so far.
    pub data_used: AtomicU64,
    /// The process name, NUL padded, as 4 native-endian u64 words.
    pub name: [AtomicU64; 4],
    /// Reserved, zero.
    pub reserved: [AtomicU64; 14],
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);

/// The slot of a number (INTEGER, FLOAT, ENUM).
#[repr(C)]
#[derive(Debug)]
pub struct NumSlot {
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
    /// Seqlock sequence: odd while the owner writes.
    pub seq: AtomicU64,
    /// Time of the last change, ns since the Unix epoch.
    pub changed_ns: AtomicU64,
    /// Length of the text in bytes.
    pub len: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<StrSlotHeader>() == STR_SLOT_HEADER);

/// Rounds `n` up to a multiple of [`ALIGN`].
pub const fn align_up(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// Size of the slot of a string of capacity `cap`.
pub const fn str_slot_size(cap: usize) -> usize {
    STR_SLOT_HEADER + align_up(cap)
}
