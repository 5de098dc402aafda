//! The variable region of a process (`NAME.shv`): typed shared variables in a memory-mapped
//! file, format 2.
//!
//! The owner ([`VarRegion`]) creates the file, holds an exclusive `flock` on it for its lifetime
//! (that is the liveness test) and is the only writer. Any local process opens it with
//! [`RegionReader`] and reads values without a lock and without making the owner wait: numbers
//! are single atomic words, strings are protected by a seqlock that a reader retries a bounded
//! number of times.
//!
//! Variables come and go while the owner runs: [`VarRegion::add_vars`] adds a row,
//! [`VarRegion::retire_prefix`] retires one. Each slot carries a generation, so a reader that
//! kept a handle to a retired variable is told it was removed ([`ReadError::Removed`]) and never
//! sees the value of a later occupant of the slot. The file grows in chunks when it is full;
//! nothing already in it ever moves, and readers map the new size when they look at the schema
//! again ([`RegionReader::refresh_schema`]). Every write of the owner is also recorded in a
//! bounded change log that [`ChangeReader`] follows, sleeping on a futex word while nothing
//! happens.
//!
//! Nothing read from the file is trusted: a corrupt, truncated, foreign, older or newer file is
//! refused by [`RegionReader::open`] with an [`OpenError`] saying what is wrong.
//!
//! # Examples
//! ```
//! use shvars::region::{VarRegion, RegionReader, VarSpec, CreateOptions};
//! use shvars::{ProcName, RuntimeDir};
//! # let tmp = std::env::temp_dir().join(format!("shvars-doc-{}", std::process::id()));
//! let dir = RuntimeDir::at(&tmp);
//! dir.ensure()?;
//! let name = ProcName::new("t1")?;
//! let owner = VarRegion::create(&dir, &name, &CreateOptions::default())?;
//! let ticks = owner.add_int(VarSpec::int("ticks", 0).desc("ticks counted"))?;
//! ticks.add(5);
//! owner.add_vars(&[VarSpec::int("worker.1.pid", 42), VarSpec::int("worker.1.restarts", 0)])?;
//!
//! let mut reader = RegionReader::open(&dir, &name)?;
//! assert_eq!(reader.int("ticks")?.get(), 5);
//! let pid = reader.int("worker.1.pid")?;
//! assert!(reader.is_alive());
//!
//! assert_eq!(owner.retire_prefix("worker.1.")?, 2);
//! assert!(pid.try_get().is_err()); // the kept handle notices
//! reader.refresh_schema()?;
//! assert!(reader.find("worker.1.pid").unwrap_err().to_string().contains("removed"));
//! # drop(owner); std::fs::remove_dir_all(&tmp)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod layout;
mod log;
mod mapping;
mod schema;
mod squat;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

pub use error::{AddError, CreateError, OpenError, ReadError, RetireError, SetError};
pub use layout::{
    HEADER_SIZE, MAGIC, MAX_FILE_SIZE, MAX_STR_CAP, STATE_CREATING, STATE_LIVE, STATE_STOPPED,
    VERSION,
};
pub use log::{Change, ChangeEvent, ChangeKind, ChangeReader};
pub use schema::{parse_int, Access, AlarmStatus, Severity, Value, VarSpec, VarType};

use crate::dir::{ProcName, RuntimeDir};
use layout::{
    align_up, CHUNK_HEADER, KIND_ADDED, KIND_RETIRED, KIND_STRING, KIND_VALUE, LOG_ENTRY_SIZE,
    MAX_LOG_CAP,
};
use log::LogWriter;
use mapping::{Mapping, SlotErr};

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A time in ns since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), for messages.
pub fn utc_text(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let ms = (ns / 1_000_000) % 1000;
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Sizes of a new region. The schema and data areas are only the first chunks: the file grows
/// when they are full.
#[derive(Debug, Clone, Copy)]
pub struct CreateOptions {
    /// Bytes for the first schema chunk (about 200 per variable).
    pub schema_cap: usize,
    /// Bytes for the first data chunk (24 per number, 32 + capacity per string).
    pub data_cap: usize,
    /// Entries of the change log (a power of two; 0: no change log, writes are not recorded).
    pub log_cap: usize,
}

/// Default number of change-log entries (32 bytes each: 512 KiB).
pub const DEFAULT_LOG_CAP: usize = 16 * 1024;

impl Default for CreateOptions {
    /// 1 MiB each for schema and data, [`DEFAULT_LOG_CAP`] log entries. The file lives in
    /// tmpfs, where pages never touched cost no memory.
    fn default() -> Self {
        CreateOptions {
            schema_cap: 1 << 20,
            data_cap: 1 << 20,
            log_cap: DEFAULT_LOG_CAP,
        }
    }
}

/// Where the pieces of a new file go.
#[derive(Debug, Clone, Copy)]
struct Plan {
    log_off: usize,
    log_cap: usize,
    schema_off: usize,
    schema_cap: usize,
    data_off: usize,
    data_cap: usize,
}

impl Plan {
    fn of(opts: &CreateOptions) -> Result<Plan, CreateError> {
        let schema_cap = align_up(opts.schema_cap);
        let data_cap = align_up(opts.data_cap);
        let log_cap = opts.log_cap;
        if schema_cap < 1024 || data_cap < 1024 || schema_cap + data_cap > (1 << 30) {
            return Err(CreateError::BadSize(format!(
                "schema {schema_cap} and data {data_cap} bytes: each must be at least 1 KiB, together at most 1 GiB"
            )));
        }
        if log_cap != 0 && (!log_cap.is_power_of_two() || log_cap as u64 > MAX_LOG_CAP) {
            return Err(CreateError::BadSize(format!(
                "change log of {log_cap} entries: must be 0 or a power of two up to {MAX_LOG_CAP}"
            )));
        }
        let log_off = HEADER_SIZE;
        let schema_off = log_off + log_cap * LOG_ENTRY_SIZE;
        Ok(Plan {
            log_off,
            log_cap,
            schema_off,
            schema_cap,
            data_off: schema_off + schema_cap,
            data_cap,
        })
    }

    fn total(&self) -> usize {
        self.data_off + self.data_cap
    }
}

struct OwnerState {
    /// The newest mapping, of the whole file.
    map: Arc<Mapping>,
    file_len: usize,
    live: BTreeMap<u32, Arc<VarSpec>>,
    index: HashMap<String, u32>,
    tombs: HashMap<String, u64>,
    next_id: u32,
    schema_len: usize,
    chunk_off: usize,
    chunk_cap: usize,
    chunk_used: usize,
    data_chunk_off: usize,
    data_chunk_cap: usize,
    data_chunk_used: usize,
    data_total: usize,
    free: HashMap<usize, Vec<usize>>,
    data_used: usize,
    retired: u64,
}

/// The owner's side of a region: creates it, adds and retires variables, writes values.
pub struct VarRegion {
    /// The first mapping: the header and the change log, which never move.
    head: Arc<Mapping>,
    // Held open for the exclusive flock (liveness for every reader) and to grow the file.
    file: File,
    path: PathBuf,
    name: ProcName,
    log: Option<Arc<LogWriter>>,
    state: Mutex<OwnerState>,
}

impl std::fmt::Debug for VarRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VarRegion")
            .field("path", &self.path)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ns());
    h.write_u32(std::process::id());
    h.finish()
}

fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// The owner's pid and the time it made the region, from the header (0s if unreadable).
fn recorded_owner(file: &File) -> (u32, u64) {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len < HEADER_SIZE as u64 {
        return (0, 0);
    }
    match Mapping::map(file, HEADER_SIZE, false) {
        Ok(m) if m.header().magic.load(Ordering::Relaxed) == u64::from_ne_bytes(MAGIC) => (
            m.header().owner_pid.load(Ordering::Relaxed),
            m.header().owner_start_ns.load(Ordering::Relaxed),
        ),
        _ => (0, 0),
    }
}

/// Pads a schema line with spaces so that it ends, `\n` included, on a multiple of 8 bytes:
/// the schema is then only ever written a whole fresh word at a time.
fn pad_line(mut line: Vec<u8>) -> Vec<u8> {
    while !(line.len() + 1).is_multiple_of(8) {
        line.push(b' ');
    }
    line.push(b'\n');
    line
}

/// A schema line that retires variable `id`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Tombstone {
    retired: String,
    id: u32,
    time_ns: u64,
}

/// Something that names one variable of the owner's region (its handles).
pub trait VarHandle {
    /// The variable's id (unique in the region's file, never reused).
    fn var_id(&self) -> u32;
}

impl VarRegion {
    /// Creates the region of process `name` in `dir` and becomes its owner.
    ///
    /// A region left by a dead owner (its flock is free) is taken over: a fresh file replaces it
    /// atomically, so readers of the old one never see a half-made region.
    ///
    /// # Errors
    /// [`CreateError::AlreadyRunning`] with the owner's pid if a live process owns the region;
    /// [`CreateError::Io`] if the file cannot be made.
    pub fn create(
        dir: &RuntimeDir,
        name: &ProcName,
        opts: &CreateOptions,
    ) -> Result<VarRegion, CreateError> {
        Self::create_in_state(dir, name, opts, STATE_LIVE)
    }

    /// Like [`VarRegion::create`], but readers see the region as being created (they wait,
    /// briefly, or get [`OpenError::NotReady`]) until [`VarRegion::publish`]: for an owner
    /// that adds its variables first, so that nobody reads a half-declared process.
    ///
    /// # Errors
    /// As [`VarRegion::create`].
    pub fn create_pending(
        dir: &RuntimeDir,
        name: &ProcName,
        opts: &CreateOptions,
    ) -> Result<VarRegion, CreateError> {
        Self::create_in_state(dir, name, opts, STATE_CREATING)
    }

    /// Makes a region made by [`VarRegion::create_pending`] visible to readers.
    pub fn publish(&self) {
        let h = self.head.header();
        if h.state.load(Ordering::Relaxed) == STATE_CREATING {
            h.state.store(STATE_LIVE, Ordering::Release);
        }
    }

    fn create_in_state(
        dir: &RuntimeDir,
        name: &ProcName,
        opts: &CreateOptions,
        state: u32,
    ) -> Result<VarRegion, CreateError> {
        let plan = Plan::of(opts)?;
        let path = dir.region_path(name);
        let io_err = |source| CreateError::Io {
            path: path.clone(),
            error: source,
        };
        let mut contended = 0;
        for _ in 0..50 {
            match crate::open::open_regular(&path, true) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let (tmp, file) = Self::make_file(&path, name, &plan, state).map_err(io_err)?;
                    // link() refuses to replace: if someone created the region meanwhile we
                    // start over and meet them.
                    let linked = fs::hard_link(&tmp, &path);
                    let _ = fs::remove_file(&tmp);
                    match linked {
                        Ok(()) => {
                            return Self::finish(file, path.clone(), name, &plan).map_err(io_err)
                        }
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(io_err(e)),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    // A FIFO, socket or link where our region goes: ours (or, for root,
                    // anyone's) is removed and the start goes on; another user's stays, and
                    // the error says what and whose it is.
                    let m = fs::symlink_metadata(&path).map_err(io_err)?;
                    let me = nix::unistd::geteuid().as_raw();
                    if m.is_dir() || (m.uid() != me && me != 0) {
                        return Err(io_err(e));
                    }
                    fs::remove_file(&path).map_err(io_err)?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    // Another user's region (this one may only read it): say whether a live
                    // owner has it, or a squatter holds a dead one's.
                    return Err(Self::foreign(&path, name).unwrap_or_else(|| io_err(e)));
                }
                Err(e) => return Err(io_err(e)),
                Ok(old) => {
                    let locked = match old.try_lock() {
                        Ok(()) => true,
                        Err(fs::TryLockError::WouldBlock) => false,
                        Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
                    };
                    let still_there = match (old.metadata(), fs::metadata(&path)) {
                        (Ok(a), Ok(b)) => same_file(&a, &b),
                        _ => false,
                    };
                    if !still_there {
                        continue;
                    }
                    if !locked {
                        // A reader testing liveness holds a shared lock for a moment; only a
                        // lock that stays taken means a live owner.
                        contended += 1;
                        if contended < 5 {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        let (pid, created) = recorded_owner(&old);
                        if squat::owner_pid_alive(pid, created) {
                            return Err(CreateError::AlreadyRunning {
                                name: name.to_string(),
                                pid,
                            });
                        }
                        // The owner is dead, yet someone holds a lock: a squatter (flock
                        // needs only read access). A file of ours goes (the fresh one is then
                        // made with link(), which only one newcomer wins); another user's is
                        // named, with its lockers.
                        let m = old.metadata().map_err(io_err)?;
                        let me = nix::unistd::geteuid().as_raw();
                        if m.uid() == me || me == 0 {
                            match fs::remove_file(&path) {
                                Ok(()) => {}
                                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                                Err(e) => return Err(io_err(e)),
                            }
                            contended = 0;
                            continue;
                        }
                        let holders = squat::lock_holders(&old);
                        return Err(CreateError::Squatted {
                            name: name.to_string(),
                            path: path.clone(),
                            pid,
                            uid: m.uid(),
                            holders: if holders.is_empty() {
                                "another process".to_owned()
                            } else {
                                holders.join(", ")
                            },
                        });
                    }
                    // Stale: we hold the old file's lock, so no other newcomer can be here.
                    let (tmp, file) = Self::make_file(&path, name, &plan, state).map_err(io_err)?;
                    if let Err(e) = fs::rename(&tmp, &path) {
                        let _ = fs::remove_file(&tmp);
                        return Err(io_err(e));
                    }
                    drop(old);
                    return Self::finish(file, path.clone(), name, &plan).map_err(io_err);
                }
            }
        }
        Err(io_err(io::Error::other(
            "the region kept changing under us (another process is starting with the same name?)",
        )))
    }

    /// Why another user's region file at `path`, which we may not replace, is in the way: its
    /// live owner, or the squatter holding the lock of a dead one (`None`: neither).
    fn foreign(path: &Path, name: &ProcName) -> Option<CreateError> {
        let f = crate::open::open_regular(path, false).ok()?;
        // flock needs no write access: an exclusive try tells whether anyone holds any lock.
        if f.try_lock().is_ok() {
            return None;
        }
        let (pid, created) = recorded_owner(&f);
        if squat::owner_pid_alive(pid, created) {
            return Some(CreateError::AlreadyRunning {
                name: name.to_string(),
                pid,
            });
        }
        let holders = squat::lock_holders(&f);
        Some(CreateError::Squatted {
            name: name.to_string(),
            path: path.to_owned(),
            pid,
            uid: f.metadata().ok()?.uid(),
            holders: if holders.is_empty() {
                "another process".to_owned()
            } else {
                holders.join(", ")
            },
        })
    }

    /// Makes and locks a fresh region in a temporary file next to `path`.
    fn make_file(
        path: &Path,
        name: &ProcName,
        plan: &Plan,
        state: u32,
    ) -> io::Result<(PathBuf, File)> {
        let tmp = path.with_extension(format!("shv.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        let fail = |e| {
            let _ = fs::remove_file(&tmp);
            e
        };
        file.try_lock().map_err(|e| fail(io::Error::from(e)))?;
        let total = plan.total();
        file.set_len(total as u64).map_err(fail)?;
        let map = Mapping::map(&file, total, true).map_err(fail)?;
        let h = map.header();
        h.version.store(VERSION, Ordering::Relaxed);
        h.header_size.store(HEADER_SIZE as u32, Ordering::Relaxed);
        h.file_size.store(total as u64, Ordering::Relaxed);
        h.schema_off
            .store(plan.schema_off as u64, Ordering::Relaxed);
        h.schema_cap
            .store(plan.schema_cap as u64, Ordering::Relaxed);
        h.data_off.store(plan.data_off as u64, Ordering::Relaxed);
        h.data_cap.store(plan.data_cap as u64, Ordering::Relaxed);
        h.log_off.store(plan.log_off as u64, Ordering::Relaxed);
        h.log_cap.store(plan.log_cap as u64, Ordering::Relaxed);
        h.owner_pid.store(std::process::id(), Ordering::Relaxed);
        h.state.store(state, Ordering::Relaxed);
        let now = now_ns();
        h.owner_start_ns.store(now, Ordering::Relaxed);
        h.instance_id.store(random_u64(), Ordering::Relaxed);
        h.heartbeat_ns.store(now, Ordering::Relaxed);
        let c = map.chunk(plan.schema_off);
        c.cap.store(plan.schema_cap as u64, Ordering::Relaxed);
        let mut nb = [0u8; 32];
        nb[..name.as_str().len()].copy_from_slice(name.as_str().as_bytes());
        for (i, w) in h.name.iter().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&nb[i * 8..i * 8 + 8]);
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
        // The magic goes last: a file without it is never taken for a region.
        h.magic.store(u64::from_ne_bytes(MAGIC), Ordering::Release);
        Ok((tmp, file))
    }

    fn finish(file: File, path: PathBuf, name: &ProcName, plan: &Plan) -> io::Result<VarRegion> {
        let total = plan.total();
        let map = Arc::new(Mapping::map(&file, total, true)?);
        let log = (plan.log_cap > 0)
            .then(|| Arc::new(LogWriter::new(map.clone(), plan.log_off, plan.log_cap)));
        Ok(VarRegion {
            head: map.clone(),
            file,
            path,
            name: name.clone(),
            log,
            state: Mutex::new(OwnerState {
                map,
                file_len: total,
                live: BTreeMap::new(),
                index: HashMap::new(),
                tombs: HashMap::new(),
                next_id: 0,
                schema_len: 0,
                chunk_off: plan.schema_off,
                chunk_cap: plan.schema_cap,
                chunk_used: 0,
                data_chunk_off: plan.data_off,
                data_chunk_cap: plan.data_cap,
                data_chunk_used: 0,
                data_total: plan.data_cap,
                free: HashMap::new(),
                data_used: 0,
                retired: 0,
            }),
        })
    }

    /// The region's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The process name.
    pub fn name(&self) -> &ProcName {
        &self.name
    }

    /// Whether writes are recorded in a change log.
    pub fn has_change_log(&self) -> bool {
        self.log.is_some()
    }

    /// Adds `bytes` at the end of the file (8-aligned) and maps the new size. Returns the
    /// offset of the new space.
    fn grow(&self, st: &mut OwnerState, bytes: usize, what: &str) -> Result<usize, AddError> {
        let off = align_up(st.file_len);
        let new_len = off + align_up(bytes);
        if new_len as u64 > MAX_FILE_SIZE {
            return Err(AddError::Full {
                name: what.to_owned(),
                what: "file (4 GiB at most)",
            });
        }
        let io = |error| AddError::Grow {
            path: self.path.clone(),
            error,
        };
        self.file.set_len(new_len as u64).map_err(io)?;
        st.map = Arc::new(Mapping::map(&self.file, new_len, true).map_err(io)?);
        st.file_len = new_len;
        let h = self.head.header();
        // Published (release) before anything that points into the new space.
        h.file_size.store(new_len as u64, Ordering::Release);
        h.grow_count.fetch_add(1, Ordering::Relaxed);
        Ok(off)
    }

    /// Finds room for a slot of `size` bytes: a retired slot of that size, else the end of the
    /// current data chunk, else a new chunk.
    fn alloc(&self, st: &mut OwnerState, size: usize, name: &str) -> Result<usize, AddError> {
        if let Some(off) = st.free.get_mut(&size).and_then(Vec::pop) {
            return Ok(off);
        }
        if st.data_chunk_used + size > st.data_chunk_cap {
            // Double the data space each time (at least the slot, in whole pages).
            let cap = size.max(st.data_total).next_multiple_of(4096);
            let off = self.grow(st, cap, name)?;
            st.data_chunk_off = off;
            st.data_chunk_cap = cap;
            st.data_chunk_used = 0;
            st.data_total += cap;
        }
        let off = st.data_chunk_off + st.data_chunk_used;
        st.data_chunk_used += size;
        Ok(off)
    }

    /// Appends one padded line to the schema, in a new chunk if the current one is full. Not
    /// yet published: see [`VarRegion::publish_state`].
    fn append_line(&self, st: &mut OwnerState, line: &[u8], name: &str) -> Result<(), AddError> {
        if st.chunk_used + line.len() > st.chunk_cap - CHUNK_HEADER {
            let cap = (line.len() + CHUNK_HEADER)
                .max(st.chunk_cap.saturating_mul(2).min(64 << 20))
                .next_multiple_of(8);
            let off = self.grow(st, cap, name)?;
            let c = st.map.chunk(off);
            c.next.store(0, Ordering::Relaxed);
            c.cap.store(cap as u64, Ordering::Relaxed);
            c.used.store(0, Ordering::Relaxed);
            // The new chunk is complete (header) before the old one points at it.
            st.map
                .chunk(st.chunk_off)
                .next
                .store(off as u64, Ordering::Release);
            st.chunk_off = off;
            st.chunk_cap = cap;
            st.chunk_used = 0;
        }
        st.map
            .copy_in(st.chunk_off + CHUNK_HEADER + st.chunk_used, line);
        st.chunk_used += line.len();
        st.map
            .chunk(st.chunk_off)
            .used
            .store(st.chunk_used as u64, Ordering::Release);
        st.schema_len += line.len();
        Ok(())
    }

    /// Publishes the counts and the schema length: readers see every line appended so far.
    fn publish_state(&self, st: &OwnerState) {
        let h = self.head.header();
        h.data_used.store(st.data_used as u64, Ordering::Relaxed);
        h.nvars.store(st.live.len() as u64, Ordering::Relaxed);
        h.nretired.store(st.retired, Ordering::Relaxed);
        h.schema_len.store(st.schema_len as u64, Ordering::Release);
    }

    /// Publishes new variables with their default values and returns their handles, in order:
    /// a row of a table at once (`worker.3.state`, `worker.3.pid`, ...). The file grows when
    /// its space is used up; slots of retired variables are reused.
    ///
    /// # Errors
    /// [`AddError`] if a name exists, a spec is inconsistent, or the file cannot grow. The
    /// variables before the one that failed are added.
    pub fn add_vars(&self, specs: &[VarSpec]) -> Result<Vec<Var>, AddError> {
        let mut seen = HashSet::new();
        for s in specs {
            s.validate().map_err(AddError::BadSpec)?;
            if !seen.insert(s.name.as_str()) {
                return Err(AddError::Duplicate(s.name.clone()));
            }
        }
        let mut st = self.state.lock();
        if let Some(s) = specs.iter().find(|s| st.index.contains_key(&s.name)) {
            return Err(AddError::Duplicate(s.name.clone()));
        }
        let mut out = Vec::with_capacity(specs.len());
        let mut res = Ok(());
        for s in specs {
            match self.add_one(&mut st, s.clone()) {
                Ok(v) => out.push(v),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        self.publish_state(&st);
        // The additions in the change log, after they are in the schema and before anything
        // else can be logged of them (a retirement takes the state lock first).
        if let Some(log) = &self.log {
            let mut g = log.lock();
            for v in &out {
                let (value, t) = v.log_value();
                g.append(v.id, KIND_ADDED, value, t);
            }
        }
        drop(st);
        res.map(|()| out)
    }

    fn add_one(&self, st: &mut OwnerState, mut spec: VarSpec) -> Result<Var, AddError> {
        let size = spec.ty.slot_size();
        let id = st.next_id;
        if id == u32::MAX {
            return Err(AddError::Full {
                name: spec.name,
                what: "variable ids (2^32 per file)",
            });
        }
        let off = self.alloc(st, size, &spec.name)?;
        spec.id = id;
        spec.offset = off;
        let line =
            pad_line(serde_json::to_vec(&spec).map_err(|e| AddError::BadSpec(e.to_string()))?);
        let var = Var {
            map: st.map.clone(),
            off,
            id,
            tag: u64::from(id) + 1,
            spec: Arc::new(spec),
            log: self.log.clone(),
        };
        // The slot is free (generation 0): write the default, then claim it. The fence orders
        // the earlier `gen = 0` of a retired occupant before our stores (see `retire_ids`).
        fence(Ordering::Release);
        var.init_value(now_ns());
        st.map.word(off).store(var.tag, Ordering::Release);
        if let Err(e) = self.append_line(st, &line, &var.spec.name) {
            // Give the slot back: nobody can know of it.
            st.map.word(off).store(0, Ordering::Release);
            st.free.entry(size).or_default().push(off);
            return Err(e);
        }
        st.next_id += 1;
        st.data_used += size;
        st.tombs.remove(&var.spec.name);
        st.index.insert(var.spec.name.clone(), id);
        st.live.insert(id, var.spec.clone());
        Ok(var)
    }

    /// Publishes a new variable with its default value and returns a handle to it.
    ///
    /// # Errors
    /// [`AddError`] if the name exists, the spec is inconsistent, or the file cannot grow.
    pub fn add(&self, spec: VarSpec) -> Result<Var, AddError> {
        let mut v = self.add_vars(std::slice::from_ref(&spec))?;
        Ok(v.remove(0))
    }

    fn typed(&self, spec: VarSpec, wanted: &'static str, ok: bool) -> Result<Var, AddError> {
        if !ok {
            return Err(AddError::WrongType {
                name: spec.name.clone(),
                found: spec.ty.name(),
                wanted,
            });
        }
        self.add(spec)
    }

    /// Adds an INTEGER or ENUM variable and returns its typed handle.
    ///
    /// # Errors
    /// As [`VarRegion::add`], and [`AddError::WrongType`] for other types.
    pub fn add_int(&self, spec: VarSpec) -> Result<IntVar, AddError> {
        let ok = matches!(spec.ty, VarType::Integer | VarType::Enum { .. });
        Ok(self
            .typed(spec, "INTEGER", ok)?
            .into_int()
            .expect("checked"))
    }

    /// Adds a FLOAT variable and returns its typed handle.
    ///
    /// # Errors
    /// As [`VarRegion::add`], and [`AddError::WrongType`] for other types.
    pub fn add_float(&self, spec: VarSpec) -> Result<FloatVar, AddError> {
        let ok = matches!(spec.ty, VarType::Float);
        Ok(self
            .typed(spec, "FLOAT", ok)?
            .into_float()
            .expect("checked"))
    }

    /// Adds a STRING variable and returns its typed handle.
    ///
    /// # Errors
    /// As [`VarRegion::add`], and [`AddError::WrongType`] for other types.
    pub fn add_str(&self, spec: VarSpec) -> Result<StrVar, AddError> {
        let ok = matches!(spec.ty, VarType::String { .. });
        Ok(self.typed(spec, "STRING", ok)?.into_str().expect("checked"))
    }

    /// Retires the variable of handle `h`: it vanishes from listings, readers that kept it
    /// are told it was removed (and when), and its slot is reused by a later addition. Writes
    /// through any handle of it are ignored from now on.
    ///
    /// In a region with a change log, a write through a handle in another thread at the same
    /// time lands before the retirement or not at all. Without a change log, retire a variable
    /// only once no other thread of the owner writes it any more.
    ///
    /// # Errors
    /// [`RetireError::NoSuchVar`] if it is already retired; [`RetireError::Region`] if the
    /// schema cannot grow to record it.
    pub fn retire(&self, h: &impl VarHandle) -> Result<(), RetireError> {
        let id = h.var_id();
        let mut st = self.state.lock();
        if !st.live.contains_key(&id) {
            return Err(RetireError::NoSuchVar(format!("id {id}")));
        }
        self.retire_ids(&mut st, &[id]).map_err(RetireError::Region)
    }

    /// Retires variable `name` (see [`VarRegion::retire`]).
    ///
    /// # Errors
    /// As [`VarRegion::retire`].
    pub fn retire_name(&self, name: &str) -> Result<(), RetireError> {
        let mut st = self.state.lock();
        let Some(&id) = st.index.get(name) else {
            return Err(RetireError::NoSuchVar(name.to_owned()));
        };
        self.retire_ids(&mut st, &[id]).map_err(RetireError::Region)
    }

    /// Retires every variable whose name starts with `prefix` (a row: `worker.3.`). Returns how
    /// many.
    ///
    /// # Errors
    /// [`RetireError::Region`] if the schema cannot grow to record it.
    pub fn retire_prefix(&self, prefix: &str) -> Result<usize, RetireError> {
        let mut st = self.state.lock();
        let ids: Vec<u32> = st
            .live
            .values()
            .filter(|s| s.name.starts_with(prefix))
            .map(|s| s.id)
            .collect();
        self.retire_ids(&mut st, &ids)
            .map_err(RetireError::Region)?;
        Ok(ids.len())
    }

    fn retire_ids(&self, st: &mut OwnerState, ids: &[u32]) -> Result<(), AddError> {
        // With a change log every owner write holds its lock: taken here, no write through a
        // handle of these variables is half done while their generation goes to 0, and every
        // later one sees it (and does nothing).
        let mut g = self.log.as_ref().map(|l| l.lock());
        let now = now_ns();
        let mut done = Vec::with_capacity(ids.len());
        let mut res = Ok(());
        for &id in ids {
            let Some(spec) = st.live.get(&id).cloned() else {
                continue;
            };
            let line = pad_line(
                serde_json::to_vec(&Tombstone {
                    retired: spec.name.clone(),
                    id,
                    time_ns: now,
                })
                .map_err(|e| AddError::BadSpec(e.to_string()))?,
            );
            if let Err(e) = self.append_line(st, &line, &spec.name) {
                res = Err(e);
                break;
            }
            st.live.remove(&id);
            st.index.remove(&spec.name);
            st.tombs.insert(spec.name.clone(), now);
            // Generation 0: every handle of it stops reading (readers) and writing (owner).
            st.map.word(spec.offset).store(0, Ordering::Release);
            // The time of retirement in the change-time word, for readers with a kept handle.
            st.map.word(spec.offset + 16).store(now, Ordering::Release);
            let size = spec.ty.slot_size();
            st.free.entry(size).or_default().push(spec.offset);
            st.data_used -= size;
            st.retired += 1;
            done.push(id);
        }
        self.publish_state(st);
        if let Some(g) = &mut g {
            for id in done {
                g.append(id, KIND_RETIRED, 0, now);
            }
        }
        res
    }

    /// The handle of variable `name`.
    pub fn var(&self, name: &str) -> Option<Var> {
        let st = self.state.lock();
        let spec = st.live.get(st.index.get(name)?)?.clone();
        Some(Var {
            map: st.map.clone(),
            off: spec.offset,
            id: spec.id,
            tag: u64::from(spec.id) + 1,
            spec,
            log: self.log.clone(),
        })
    }

    /// When variable `name` was retired (ns since the epoch), if it was and was not added again.
    pub fn retired_at(&self, name: &str) -> Option<u64> {
        self.state.lock().tombs.get(name).copied()
    }

    /// Every live variable's spec, in the order they were added.
    pub fn specs(&self) -> Vec<Arc<VarSpec>> {
        self.state.lock().live.values().cloned().collect()
    }

    /// Names close to `name`, for "did you mean" hints; when it was retired, when.
    pub fn suggest(&self, name: &str) -> String {
        let st = self.state.lock();
        if let Some(&t) = st.tombs.get(name) {
            return format!(" (it was removed at {})", utc_text(t));
        }
        suggest(name, st.live.values().map(|s| s.name.as_str()))
    }

    /// Records a heartbeat of the owner's main loop in the header.
    pub fn beat(&self) {
        self.head
            .header()
            .heartbeat_ns
            .store(now_ns(), Ordering::Relaxed);
    }

    /// Marks the region stopped (the owner exits cleanly). The file stays for post-mortem
    /// reading until `shvar cleanup` or a new owner. Watchers sleeping on the change log are
    /// woken so that they notice.
    pub fn mark_stopped(&self) {
        self.head
            .header()
            .state
            .store(STATE_STOPPED, Ordering::Release);
        if let Some(log) = &self.log {
            log.wake_all();
        }
    }
}

/// Whether a live process holds the owner's lock on the region file at `path`, without reading
/// the file (which may be damaged). `None` if the file cannot be opened.
///
/// A lock alone proves nothing (any reader may hold one: a squatter): when the file has a
/// region header, the owner recorded in it must also be running.
pub fn owner_alive(path: &Path) -> Option<bool> {
    let f = crate::open::open_regular(path, false).ok()?;
    match f.try_lock_shared() {
        Ok(()) => {
            let _ = f.unlock();
            Some(false)
        }
        // A file without a readable region header (another kind of file, such as a circular
        // buffer, or a damaged region) has only its lock to go by.
        Err(_) => {
            let pid = recorded_owner(&f).0;
            Some(pid == 0 || squat::pid_runs(pid))
        }
    }
}

/// Builds a "did you mean" hint from the names that share a prefix or are within a small edit
/// distance of `name`.
pub fn suggest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> String {
    let mut close: Vec<&str> = names
        .filter(|n| n.starts_with(name) || name.starts_with(*n) || edit_distance(n, name) <= 2)
        .collect();
    close.sort();
    close.truncate(5);
    if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", close.join(", "))
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// An untyped handle to a variable of the owner's region.
#[derive(Debug, Clone)]
pub struct Var {
    map: Arc<Mapping>,
    off: usize,
    id: u32,
    tag: u64,
    spec: Arc<VarSpec>,
    log: Option<Arc<LogWriter>>,
}

impl VarHandle for Var {
    fn var_id(&self) -> u32 {
        self.id
    }
}

impl Var {
    /// What the variable is.
    pub fn spec(&self) -> &VarSpec {
        &self.spec
    }

    /// Whether it is still in the region (not retired).
    pub fn is_live(&self) -> bool {
        self.map.word(self.off).load(Ordering::Relaxed) == self.tag
    }

    /// Its value.
    pub fn get(&self) -> Value {
        // The owner's own mapping: a string can only be busy while one of our threads writes it.
        read_value(&self.map, self.off, self.tag, &self.spec).unwrap_or(match self.spec.ty {
            VarType::String { .. } => Value::Str(String::new()),
            VarType::Float => Value::Float(0.0),
            _ => Value::Int(0),
        })
    }

    /// Writes a value already checked by [`VarSpec::parse_value`]. Returns the old value.
    /// Does nothing once the variable is retired.
    pub fn set(&self, v: &Value) -> Value {
        let old = self.get();
        self.write_value(v, now_ns());
        old
    }

    /// The typed handle, if it is an INTEGER or ENUM.
    pub fn into_int(self) -> Option<IntVar> {
        matches!(self.spec.ty, VarType::Integer | VarType::Enum { .. }).then(|| IntVar {
            map: self.map,
            off: self.off,
            id: self.id,
            tag: self.tag,
            log: self.log,
        })
    }

    /// The typed handle, if it is a FLOAT.
    pub fn into_float(self) -> Option<FloatVar> {
        matches!(self.spec.ty, VarType::Float).then(|| FloatVar {
            map: self.map,
            off: self.off,
            id: self.id,
            tag: self.tag,
            log: self.log,
        })
    }

    /// The typed handle, if it is a STRING.
    pub fn into_str(self) -> Option<StrVar> {
        match self.spec.ty {
            VarType::String { cap } => Some(StrVar {
                map: self.map,
                off: self.off,
                id: self.id,
                tag: self.tag,
                log: self.log,
                cap,
            }),
            _ => None,
        }
    }

    /// Writes the default into a slot not yet claimed (no generation check, no log entry).
    fn init_value(&self, now: u64) {
        self.store_value(&self.spec.default.clone(), now);
    }

    /// What the change log records of the current value: the bits of a number or the sequence
    /// of a string, and the time of the last change.
    fn log_value(&self) -> (u64, u64) {
        let t = self.changed_ns();
        match self.spec.ty {
            VarType::String { .. } => (self.map.str_slot(self.off).seq.load(Ordering::Relaxed), t),
            _ => (self.map.num_slot(self.off).value.load(Ordering::Relaxed), t),
        }
    }

    fn store_value(&self, v: &Value, now: u64) -> (u32, u64) {
        match (&self.spec.ty, v) {
            (VarType::String { cap }, Value::Str(s)) => {
                let mut n = s.len().min(*cap);
                while !s.is_char_boundary(n) {
                    n -= 1;
                }
                let seq = self.map.write_str(self.off, &s.as_bytes()[..n], now);
                (KIND_STRING, seq)
            }
            (VarType::Float, Value::Float(f)) => {
                let slot = self.map.num_slot(self.off);
                slot.value.store(f.to_bits(), Ordering::Release);
                slot.changed_ns.store(now, Ordering::Release);
                (KIND_VALUE, f.to_bits())
            }
            (VarType::Float, Value::Int(i)) => self.store_value(&Value::Float(*i as f64), now),
            (VarType::Integer | VarType::Enum { .. }, Value::Int(i)) => {
                let slot = self.map.num_slot(self.off);
                slot.value.store(*i as u64, Ordering::Release);
                slot.changed_ns.store(now, Ordering::Release);
                (KIND_VALUE, *i as u64)
            }
            // Mismatched types never reach here: values come from `parse_value` of this spec.
            _ => {
                debug_assert!(false, "value {v:?} does not fit {:?}", self.spec.ty);
                (KIND_VALUE, 0)
            }
        }
    }

    fn write_value(&self, v: &Value, now: u64) {
        let mut g = self.log.as_ref().map(|l| l.lock());
        if !self.is_live() {
            return;
        }
        let (kind, bits) = self.store_value(v, now);
        if let Some(g) = &mut g {
            g.append(self.id, kind, bits, now);
        }
    }

    /// Time of the last change, ns since the Unix epoch.
    pub fn changed_ns(&self) -> u64 {
        changed_ns(&self.map, self.off)
    }
}

/// The change time of the slot at `off` (the third word of number and string slots alike).
fn changed_ns(map: &Mapping, off: usize) -> u64 {
    map.word(off + 16).load(Ordering::Acquire)
}

fn read_value(map: &Mapping, off: usize, tag: u64, spec: &VarSpec) -> Result<Value, SlotErr> {
    Ok(match &spec.ty {
        VarType::Integer | VarType::Enum { .. } => Value::Int(map.read_num(off, tag)? as i64),
        VarType::Float => Value::Float(f64::from_bits(map.read_num(off, tag)?)),
        VarType::String { cap } => {
            let mut buf = Vec::new();
            map.read_str(off, *cap, tag, &mut buf)?;
            Value::Str(String::from_utf8(buf).map_err(|_| SlotErr::Damaged)?)
        }
    })
}

/// When the slot at `off` was retired, if it is free now (0 if unknown).
fn removed_at(map: &Mapping, off: usize) -> u64 {
    if map.word(off).load(Ordering::Acquire) == 0 {
        changed_ns(map, off)
    } else {
        0
    }
}

/// Owner's handle to an INTEGER (or ENUM) variable. Cloning is cheap; threads share it.
#[derive(Debug, Clone)]
pub struct IntVar {
    map: Arc<Mapping>,
    off: usize,
    id: u32,
    tag: u64,
    log: Option<Arc<LogWriter>>,
}

impl VarHandle for IntVar {
    fn var_id(&self) -> u32 {
        self.id
    }
}

impl IntVar {
    /// The value.
    #[inline]
    pub fn get(&self) -> i64 {
        self.map.num_slot(self.off).value.load(Ordering::Acquire) as i64
    }

    /// Sets the value and the time of change (only if it changed). Ignored once retired.
    #[inline]
    pub fn set(&self, v: i64) {
        let slot = self.map.num_slot(self.off);
        match &self.log {
            None => {
                if slot.gen.load(Ordering::Relaxed) != self.tag {
                    return;
                }
                if slot.value.swap(v as u64, Ordering::Release) != v as u64 {
                    slot.changed_ns.store(now_ns(), Ordering::Release);
                }
            }
            Some(log) => {
                // Every owner write of a logged region holds the log lock: value and entry
                // are in the same order.
                let mut g = log.lock();
                if slot.gen.load(Ordering::Relaxed) != self.tag
                    || slot.value.load(Ordering::Relaxed) == v as u64
                {
                    return;
                }
                slot.value.store(v as u64, Ordering::Release);
                let t = now_ns();
                slot.changed_ns.store(t, Ordering::Release);
                g.append(self.id, KIND_VALUE, v as u64, t);
            }
        }
    }

    /// Adds `d` (wrapping) and returns the new value. Ignored once retired.
    #[inline]
    pub fn add(&self, d: i64) -> i64 {
        let slot = self.map.num_slot(self.off);
        match &self.log {
            None => {
                if slot.gen.load(Ordering::Relaxed) != self.tag {
                    return self.get();
                }
                let old = slot.value.fetch_add(d as u64, Ordering::AcqRel) as i64;
                if d != 0 {
                    slot.changed_ns.store(now_ns(), Ordering::Release);
                }
                old.wrapping_add(d)
            }
            Some(log) => {
                let mut g = log.lock();
                let old = slot.value.load(Ordering::Relaxed) as i64;
                if slot.gen.load(Ordering::Relaxed) != self.tag || d == 0 {
                    return old;
                }
                let new = old.wrapping_add(d);
                slot.value.store(new as u64, Ordering::Release);
                let t = now_ns();
                slot.changed_ns.store(t, Ordering::Release);
                g.append(self.id, KIND_VALUE, new as u64, t);
                new
            }
        }
    }
}

/// Owner's handle to a FLOAT variable.
#[derive(Debug, Clone)]
pub struct FloatVar {
    map: Arc<Mapping>,
    off: usize,
    id: u32,
    tag: u64,
    log: Option<Arc<LogWriter>>,
}

impl VarHandle for FloatVar {
    fn var_id(&self) -> u32 {
        self.id
    }
}

impl FloatVar {
    /// The value.
    #[inline]
    pub fn get(&self) -> f64 {
        f64::from_bits(self.map.num_slot(self.off).value.load(Ordering::Acquire))
    }

    /// Sets the value and the time of change (only if it changed). Ignored once retired.
    #[inline]
    pub fn set(&self, v: f64) {
        let slot = self.map.num_slot(self.off);
        let bits = v.to_bits();
        let mut g = self.log.as_ref().map(|l| l.lock());
        if slot.gen.load(Ordering::Relaxed) != self.tag
            || slot.value.swap(bits, Ordering::Release) == bits
        {
            return;
        }
        let t = now_ns();
        slot.changed_ns.store(t, Ordering::Release);
        if let Some(g) = &mut g {
            g.append(self.id, KIND_VALUE, bits, t);
        }
    }
}

/// Owner's handle to a STRING variable.
#[derive(Debug, Clone)]
pub struct StrVar {
    map: Arc<Mapping>,
    off: usize,
    id: u32,
    tag: u64,
    log: Option<Arc<LogWriter>>,
    cap: usize,
}

impl VarHandle for StrVar {
    fn var_id(&self) -> u32 {
        self.id
    }
}

impl StrVar {
    /// The value ("" once retired).
    pub fn get(&self) -> String {
        let mut buf = Vec::new();
        match self.map.read_str(self.off, self.cap, self.tag, &mut buf) {
            Ok(_) => String::from_utf8(buf).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    fn write(&self, s: &str, only_if_changed: bool) -> bool {
        let mut n = s.len().min(self.cap);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        if only_if_changed && self.get().as_bytes() == &s.as_bytes()[..n] {
            return n < s.len();
        }
        let mut g = self.log.as_ref().map(|l| l.lock());
        if self.map.word(self.off).load(Ordering::Relaxed) != self.tag {
            return n < s.len();
        }
        let t = now_ns();
        let seq = self.map.write_str(self.off, &s.as_bytes()[..n], t);
        if let Some(g) = &mut g {
            g.append(self.id, KIND_STRING, seq, t);
        }
        n < s.len()
    }

    /// Sets the value, cut to the capacity at a character boundary. Returns whether it was cut.
    pub fn set(&self, s: &str) -> bool {
        self.write(s, true)
    }

    /// Writes the value, cut to the capacity at a character boundary, without first reading the
    /// current one: unlike [`StrVar::set`] it never allocates (for a loop that must not), and it
    /// always updates the time of change. Returns whether it was cut.
    pub fn store(&self, s: &str) -> bool {
        self.write(s, false)
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }
}

/// Summary of a region's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    /// Process name recorded in the header.
    pub name: String,
    /// Owner pid.
    pub pid: u32,
    /// [`STATE_LIVE`] or [`STATE_STOPPED`] as recorded (check [`RegionReader::is_alive`]).
    pub state: u32,
    /// When the owner created the region, ns since the Unix epoch.
    pub started_ns: u64,
    /// Last heartbeat, ns since the Unix epoch.
    pub heartbeat_ns: u64,
    /// Incarnation id.
    pub instance_id: u64,
    /// Number of live variables.
    pub nvars: u64,
    /// Number of variables retired so far.
    pub retired: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
}

/// A reader's view of a region. Opening parses the schema once; reads take no lock.
pub struct RegionReader {
    map: Arc<Mapping>,
    file: File,
    path: PathBuf,
    name: String,
    log_off: usize,
    log_cap: usize,
    schema_seen: usize,
    chunk: usize,
    chunk_pos: usize,
    specs: Vec<Arc<VarSpec>>,
    index: HashMap<String, usize>,
    by_id: HashMap<u32, usize>,
    /// Retired variables by id, with the time they were retired.
    gone: HashMap<u32, (Arc<VarSpec>, u64)>,
    /// Retired names (not added again) and when.
    tombs: HashMap<String, u64>,
    /// The only names this reader looks for ([`RegionReader::open_only`]); `None`: all.
    only: Option<Only>,
    /// Schema entries of variables skipped so far (a reader with `only`), so that entry numbers
    /// in errors count every entry, as a full reader's do.
    skipped: usize,
}

/// The names a reader made by [`RegionReader::open_only`] looks for, as the searchers of their
/// JSON strings (`"NAME"`).
#[derive(Clone)]
struct Only {
    quoted: Vec<memchr::memmem::Finder<'static>>,
}

impl Only {
    fn new(names: &[&str]) -> Only {
        Only {
            quoted: names
                .iter()
                .map(|n| memchr::memmem::Finder::new(&format!("\"{n}\"")).into_owned())
                .collect(),
        }
    }
}

impl std::fmt::Debug for RegionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionReader")
            .field("path", &self.path)
            .field("vars", &self.specs.len())
            .finish_non_exhaustive()
    }
}

impl RegionReader {
    /// Opens the region of process `name` in `dir`.
    ///
    /// # Errors
    /// [`OpenError::NotFound`] if there is none; [`OpenError::Corrupt`], [`OpenError::TooNew`],
    /// [`OpenError::TooOld`] if the file is not a region this code can read.
    pub fn open(dir: &RuntimeDir, name: &ProcName) -> Result<RegionReader, OpenError> {
        let path = dir.region_path(name);
        match crate::open::open_regular(&path, false) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(OpenError::NotFound {
                name: name.to_string(),
                dir: dir.to_string(),
            }),
            Err(source) => Err(OpenError::Io {
                path,
                error: source,
            }),
            Ok(f) => Self::from_file_waiting(f, path, None),
        }
    }

    /// Like [`RegionReader::open`], but reads only the schema entries of the variables `names`
    /// (plain names, no patterns): a short-lived reader of a few variables, such as a cold
    /// `shvar get`, skips parsing the entries of all the others.
    ///
    /// For those names everything is as with a full reader (values, specs, retirements,
    /// [`RegionReader::refresh_schema`], errors in their entries), and every bound of the file is
    /// checked as always. The reader knows no other variable: [`RegionReader::specs`] lists
    /// only the wanted ones, and [`RegionReader::find`] of any other name is
    /// [`ReadError::NoSuchVar`] with suggestions among the wanted ones only; open the region
    /// with [`RegionReader::open`] for the error with every suggestion. Damage in the entries of
    /// other variables is not looked at (a full reader refuses the file for it), and an entry so
    /// damaged that it no longer names its variable leaves that one unknown.
    ///
    /// # Errors
    /// As [`RegionReader::open`].
    pub fn open_only(
        dir: &RuntimeDir,
        name: &ProcName,
        names: &[&str],
    ) -> Result<RegionReader, OpenError> {
        let path = dir.region_path(name);
        let only = Only::new(names);
        match crate::open::open_regular(&path, false) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(OpenError::NotFound {
                name: name.to_string(),
                dir: dir.to_string(),
            }),
            Err(source) => Err(OpenError::Io {
                path,
                error: source,
            }),
            Ok(f) => Self::from_file_waiting(f, path, Some(only)),
        }
    }

    /// A region still being created by a live owner is waited for, up to about a second.
    fn from_file_waiting(
        file: File,
        path: PathBuf,
        only: Option<Only>,
    ) -> Result<RegionReader, OpenError> {
        let mut file = file;
        for _ in 0..100 {
            match Self::from_file(file, path.clone(), only.clone()) {
                Err(OpenError::NotReady { .. }) if owner_alive(&path) == Some(true) => {
                    std::thread::sleep(Duration::from_millis(10));
                    file = crate::open::open_regular(&path, false).map_err(|source| {
                        OpenError::Io {
                            path: path.clone(),
                            error: source,
                        }
                    })?;
                }
                r => return r,
            }
        }
        Err(OpenError::NotReady { path })
    }

    /// Opens a region file by path.
    ///
    /// # Errors
    /// As [`RegionReader::open`].
    pub fn open_path(path: &Path) -> Result<RegionReader, OpenError> {
        let f = crate::open::open_regular(path, false).map_err(|source| OpenError::Io {
            path: path.to_owned(),
            error: source,
        })?;
        Self::from_file_waiting(f, path.to_owned(), None)
    }

    fn corrupt(&self, why: String) -> OpenError {
        OpenError::Corrupt {
            path: self.path.clone(),
            why,
        }
    }

    fn from_file(file: File, path: PathBuf, only: Option<Only>) -> Result<RegionReader, OpenError> {
        let corrupt = |why: String| OpenError::Corrupt {
            path: path.clone(),
            why,
        };
        let meta = file.metadata().map_err(|source| OpenError::Io {
            path: path.clone(),
            error: source,
        })?;
        if !meta.is_file() {
            return Err(corrupt("not a regular file".to_owned()));
        }
        let actual = meta.len();
        if actual < HEADER_SIZE as u64 {
            return Err(corrupt(format!(
                "only {actual} bytes long, shorter than the {HEADER_SIZE}-byte header (truncated?)"
            )));
        }
        let head = Mapping::map(&file, HEADER_SIZE, false).map_err(|source| OpenError::Io {
            path: path.clone(),
            error: source,
        })?;
        let h = head.header();
        if h.magic.load(Ordering::Acquire) != u64::from_ne_bytes(MAGIC) {
            return Err(corrupt("bad magic number: not a shvars region".to_owned()));
        }
        let version = h.version.load(Ordering::Relaxed);
        if version > VERSION {
            return Err(OpenError::TooNew {
                path,
                found: version,
                supported: VERSION,
            });
        }
        if version == 0 {
            return Err(corrupt("format version 0".to_owned()));
        }
        if version < VERSION {
            return Err(OpenError::TooOld {
                path,
                found: version,
                supported: VERSION,
            });
        }
        let hs = h.header_size.load(Ordering::Relaxed) as usize;
        if hs != HEADER_SIZE {
            return Err(corrupt(format!("header size {hs}, expected {HEADER_SIZE}")));
        }
        let fsize = h.file_size.load(Ordering::Acquire);
        if fsize > actual {
            return Err(corrupt(format!(
                "header says {fsize} bytes but the file has {actual} (truncated)"
            )));
        }
        if fsize > MAX_FILE_SIZE || fsize < HEADER_SIZE as u64 {
            return Err(corrupt(format!("impossible file size {fsize}")));
        }
        let in_file = |off: u64, len: u64| {
            off >= HEADER_SIZE as u64
                && off.is_multiple_of(8)
                && off.checked_add(len).is_some_and(|e| e <= fsize)
        };
        let schema_off = h.schema_off.load(Ordering::Relaxed);
        let schema_cap = h.schema_cap.load(Ordering::Relaxed);
        let data_off = h.data_off.load(Ordering::Relaxed);
        let data_cap = h.data_cap.load(Ordering::Relaxed);
        let log_off = h.log_off.load(Ordering::Relaxed);
        let log_cap = h.log_cap.load(Ordering::Relaxed);
        let areas_ok = schema_cap >= CHUNK_HEADER as u64
            && in_file(schema_off, schema_cap)
            && in_file(data_off, data_cap)
            && (log_cap == 0
                || (log_cap.is_power_of_two()
                    && log_cap <= MAX_LOG_CAP
                    && in_file(log_off, log_cap * LOG_ENTRY_SIZE as u64)));
        if !areas_ok {
            return Err(corrupt(format!(
                "inconsistent areas (log {log_off}+{log_cap} entries, schema {schema_off}+{schema_cap}, data {data_off}+{data_cap}, file {fsize})"
            )));
        }
        let state = h.state.load(Ordering::Relaxed);
        if state == STATE_CREATING {
            return Err(OpenError::NotReady { path });
        }
        let name = read_name(h);
        drop(head);
        let map = Mapping::map(&file, fsize as usize, false).map_err(|source| OpenError::Io {
            path: path.clone(),
            error: source,
        })?;
        let mut r = RegionReader {
            map: Arc::new(map),
            file,
            path,
            name,
            log_off: log_off as usize,
            log_cap: log_cap as usize,
            schema_seen: 0,
            chunk: schema_off as usize,
            chunk_pos: 0,
            specs: Vec::new(),
            index: HashMap::new(),
            by_id: HashMap::new(),
            gone: HashMap::new(),
            tombs: HashMap::new(),
            only,
            skipped: 0,
        };
        r.refresh_schema()?;
        Ok(r)
    }

    /// Maps the file again if the owner has grown it.
    fn remap(&mut self) -> Result<(), OpenError> {
        let fsize = self.map.header().file_size.load(Ordering::Acquire);
        if fsize as usize <= self.map.len() {
            return Ok(());
        }
        if fsize > MAX_FILE_SIZE {
            return Err(self.corrupt(format!("impossible file size {fsize}")));
        }
        let actual = self
            .file
            .metadata()
            .map_err(|error| OpenError::Io {
                path: self.path.clone(),
                error,
            })?
            .len();
        if fsize > actual {
            return Err(self.corrupt(format!(
                "header says {fsize} bytes but the file has {actual} (truncated)"
            )));
        }
        let map =
            Mapping::map(&self.file, fsize as usize, false).map_err(|error| OpenError::Io {
                path: self.path.clone(),
                error,
            })?;
        // Handles made before keep the old mapping, which stays valid: the file never shrinks.
        self.map = Arc::new(map);
        Ok(())
    }

    /// Follows the owner: maps the file again if it grew, reads variables added and retired
    /// since the last look. Returns whether anything changed.
    ///
    /// # Errors
    /// [`OpenError::Corrupt`] if the new part of the schema is damaged.
    pub fn refresh_schema(&mut self) -> Result<bool, OpenError> {
        let len = self.map.header().schema_len.load(Ordering::Acquire) as usize;
        if len == self.schema_seen {
            return Ok(false);
        }
        if len < self.schema_seen || !len.is_multiple_of(8) || len as u64 > MAX_FILE_SIZE {
            return Err(self.corrupt(format!(
                "schema length {len} is impossible (seen {})",
                self.schema_seen
            )));
        }
        self.remap()?;
        let mut bytes = Vec::new();
        let mut part = Vec::new();
        while self.schema_seen < len {
            let c_off = self.chunk;
            if !self.map.check(c_off, CHUNK_HEADER) {
                return Err(self.corrupt(format!("schema chunk at {c_off} is outside the file")));
            }
            let c = self.map.chunk(c_off);
            let cap = c.cap.load(Ordering::Relaxed) as usize;
            let used = c.used.load(Ordering::Acquire) as usize;
            if cap < CHUNK_HEADER
                || !self.map.check(c_off, cap)
                || used > cap - CHUNK_HEADER
                || used < self.chunk_pos
                || !used.is_multiple_of(8)
            {
                return Err(self.corrupt(format!(
                    "schema chunk at {c_off} is damaged (size {cap}, used {used})"
                )));
            }
            if self.chunk_pos < used {
                let n = (used - self.chunk_pos).min(len - self.schema_seen);
                self.map
                    .copy_out(c_off + CHUNK_HEADER + self.chunk_pos, n, &mut part);
                bytes.extend_from_slice(&part);
                self.chunk_pos += n;
                self.schema_seen += n;
            } else {
                let next = c.next.load(Ordering::Acquire) as usize;
                if next == 0 {
                    return Err(self.corrupt(format!(
                        "schema length {len} but its chunks hold only {}",
                        self.schema_seen
                    )));
                }
                if next <= c_off || !next.is_multiple_of(8) {
                    return Err(
                        self.corrupt(format!("schema chunk at {c_off} points back to {next}"))
                    );
                }
                self.chunk = next;
                self.chunk_pos = 0;
            }
        }
        self.parse_lines(&bytes)?;
        Ok(true)
    }

    /// Whether this reader needs schema line `line`: always, unless it looks only for some
    /// names ([`RegionReader::open_only`]). An entry names its variable as a JSON string, and a
    /// JSON string without an escape (`\`) holds its text as it is, between two quotes: a line
    /// with no backslash and no `"NAME"` of a wanted name in it cannot add or retire any of
    /// them. Lines that have one (in a description, say) are parsed and checked as usual.
    fn needs(&self, line: &[u8]) -> bool {
        match &self.only {
            None => true,
            Some(only) => {
                memchr::memchr(b'\\', line).is_some()
                    || only.quoted.iter().any(|f| f.find(line).is_some())
            }
        }
    }

    fn parse_lines(&mut self, bytes: &[u8]) -> Result<(), OpenError> {
        let mut retired = HashSet::new();
        // Retirements skipped in this call: a full reader counts them in `gone` at once.
        let mut skipped_retired = 0;
        let mut start = 0;
        // The lines (as `split` on `\n` gives them, found with SIMD), the last one unended.
        let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
        for end in ends {
            let line = bytes[start..end].trim_ascii();
            start = end + 1;
            if line.is_empty() {
                continue;
            }
            let tomb = line.starts_with(b"{\"retired\"");
            if !self.needs(line) {
                if tomb {
                    skipped_retired += 1;
                } else {
                    self.skipped += 1;
                }
                continue;
            }
            let n = self.specs.len() + self.gone.len() + self.skipped + skipped_retired;
            if tomb {
                let t: Tombstone = serde_json::from_slice(line).map_err(|e| {
                    self.corrupt(format!("schema entry {n} is not a valid retirement: {e}"))
                })?;
                let Some(i) = self.by_id.remove(&t.id) else {
                    return Err(self.corrupt(format!(
                        "schema retires variable id {} ({}), which is not there",
                        t.id, t.retired
                    )));
                };
                let spec = self.specs[i].clone();
                if spec.name != t.retired {
                    return Err(self.corrupt(format!(
                        "schema retires id {} as {}, but it is {}",
                        t.id, t.retired, spec.name
                    )));
                }
                self.index.remove(&spec.name);
                self.tombs.insert(spec.name.clone(), t.time_ns);
                self.gone.insert(t.id, (spec, t.time_ns));
                retired.insert(t.id);
                continue;
            }
            let spec: VarSpec = serde_json::from_slice(line)
                .map_err(|e| self.corrupt(format!("schema entry {n} is not valid JSON: {e}")))?;
            spec.validate()
                .map_err(|e| self.corrupt(format!("schema entry {n}: {e}")))?;
            let size = spec.ty.slot_size();
            if spec.offset < HEADER_SIZE || !self.map.check(spec.offset, size) {
                return Err(self.corrupt(format!(
                    "variable {} has its slot outside the data area",
                    spec.name
                )));
            }
            if self.index.contains_key(&spec.name)
                || self.by_id.contains_key(&spec.id)
                || self.gone.contains_key(&spec.id)
            {
                return Err(self.corrupt(format!("variable {} appears twice", spec.name)));
            }
            self.tombs.remove(&spec.name);
            self.index.insert(spec.name.clone(), self.specs.len());
            self.by_id.insert(spec.id, self.specs.len());
            self.specs.push(Arc::new(spec));
        }
        if !retired.is_empty() {
            self.specs.retain(|s| !retired.contains(&s.id));
            self.index.clear();
            self.by_id.clear();
            for (i, s) in self.specs.iter().enumerate() {
                self.index.insert(s.name.clone(), i);
                self.by_id.insert(s.id, i);
            }
        }
        Ok(())
    }

    /// The region's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The process name recorded in the header.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The header fields.
    pub fn info(&self) -> RegionInfo {
        let h = self.map.header();
        RegionInfo {
            name: self.name.clone(),
            pid: h.owner_pid.load(Ordering::Relaxed),
            state: h.state.load(Ordering::Acquire),
            started_ns: h.owner_start_ns.load(Ordering::Relaxed),
            heartbeat_ns: h.heartbeat_ns.load(Ordering::Relaxed),
            instance_id: h.instance_id.load(Ordering::Relaxed),
            nvars: h.nvars.load(Ordering::Relaxed),
            retired: h.nretired.load(Ordering::Relaxed),
            file_size: h.file_size.load(Ordering::Relaxed),
        }
    }

    /// The owner's last heartbeat, ns since the Unix epoch (as [`RegionReader::info`], without
    /// copying the name: a loop that must not allocate can watch it).
    pub fn heartbeat_ns(&self) -> u64 {
        self.map.header().heartbeat_ns.load(Ordering::Relaxed)
    }

    /// Whether the owner process is alive: it holds the exclusive lock on the file. This is
    /// right even after the pid has been reused by an unrelated process.
    ///
    /// A lock alone proves nothing (any reader may hold one: a squatter): the recorded owner
    /// must also be running.
    pub fn is_alive(&self) -> bool {
        match self.file.try_lock_shared() {
            Ok(()) => {
                let _ = self.file.unlock();
                false
            }
            // (The pid straight from the header: `info` copies the name, and a loop that must
            // not allocate asks this.)
            Err(_) => squat::pid_runs(self.map.header().owner_pid.load(Ordering::Relaxed)),
        }
    }

    /// Whether the path now names another file than the one we opened (a new owner took over).
    pub fn is_replaced(&self) -> bool {
        match (self.file.metadata(), fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => !same_file(&a, &b),
            _ => true,
        }
    }

    /// Every live variable's spec, in the order the owner added them.
    pub fn specs(&self) -> &[Arc<VarSpec>] {
        &self.specs
    }

    /// A follower of the change log from now on; `None` if the region has no change log.
    pub fn changes(&self) -> Option<ChangeReader> {
        (self.log_cap > 0)
            .then(|| ChangeReader::new(self.map.clone(), &self.file, self.log_off, self.log_cap))
    }

    /// The spec of variable `id`, live or retired (for change-log entries).
    pub fn spec_by_id(&self, id: u32) -> Option<&Arc<VarSpec>> {
        match self.by_id.get(&id) {
            Some(&i) => Some(&self.specs[i]),
            None => self.gone.get(&id).map(|(s, _)| s),
        }
    }

    /// When variable `name` was retired (ns since the epoch), if it was (as far as this reader
    /// has seen: [`RegionReader::refresh_schema`]) and has not been added again.
    pub fn removed(&self, name: &str) -> Option<u64> {
        self.tombs.get(name).copied()
    }

    /// Resolves variable `name` once; read it many times with [`RegionReader::read`].
    ///
    /// # Errors
    /// [`ReadError::Removed`] if it was retired, else [`ReadError::NoSuchVar`] with a hint at
    /// close names.
    pub fn find(&self, name: &str) -> Result<VarRef, ReadError> {
        match self.index.get(name) {
            Some(&i) => Ok(VarRef {
                spec: self.specs[i].clone(),
                off: self.specs[i].offset,
                tag: u64::from(self.specs[i].id) + 1,
            }),
            None => match self.tombs.get(name) {
                Some(&t) => Err(ReadError::Removed {
                    var: name.to_owned(),
                    removed_ns: t,
                }),
                None => Err(ReadError::NoSuchVar {
                    process: self.name.clone(),
                    var: name.to_owned(),
                    hint: suggest(name, self.specs.iter().map(|s| s.name.as_str())),
                }),
            },
        }
    }

    /// The spec of variable `name`.
    pub fn spec(&self, name: &str) -> Option<&VarSpec> {
        self.index.get(name).map(|&i| &*self.specs[i])
    }

    fn slot_err(&self, e: SlotErr, spec: &VarSpec, off: usize) -> ReadError {
        slot_error(
            e,
            spec,
            &self.map,
            off,
            self.gone.get(&spec.id).map(|g| g.1),
        )
    }

    /// The current value of a resolved variable.
    ///
    /// # Errors
    /// [`ReadError::Removed`] if the owner retired it since it was resolved,
    /// [`ReadError::Busy`] if a string kept changing during every retry,
    /// [`ReadError::Corrupt`] if the slot holds something impossible.
    pub fn read(&self, v: &VarRef) -> Result<Value, ReadError> {
        read_value(&self.map, v.off, v.tag, &v.spec).map_err(|e| self.slot_err(e, &v.spec, v.off))
    }

    /// The time of the last change of a resolved variable, ns since the Unix epoch.
    pub fn changed_ns(&self, v: &VarRef) -> u64 {
        changed_ns(&self.map, v.off)
    }

    /// A fast handle to an INTEGER or ENUM variable.
    ///
    /// # Errors
    /// [`ReadError::NoSuchVar`], or [`ReadError::Corrupt`] if it is another type.
    pub fn int(&self, name: &str) -> Result<IntReader, ReadError> {
        let v = self.find(name)?;
        match v.spec.ty {
            VarType::Integer | VarType::Enum { .. } => Ok(IntReader {
                map: self.map.clone(),
                off: v.off,
                tag: v.tag,
                spec: v.spec,
            }),
            _ => Err(wrong_type(&v.spec, "INTEGER")),
        }
    }

    /// A fast handle to a FLOAT variable.
    ///
    /// # Errors
    /// [`ReadError::NoSuchVar`], or [`ReadError::Corrupt`] if it is another type.
    pub fn float(&self, name: &str) -> Result<FloatReader, ReadError> {
        let v = self.find(name)?;
        match v.spec.ty {
            VarType::Float => Ok(FloatReader {
                map: self.map.clone(),
                off: v.off,
                tag: v.tag,
                spec: v.spec,
            }),
            _ => Err(wrong_type(&v.spec, "FLOAT")),
        }
    }

    /// A fast handle to a STRING variable.
    ///
    /// # Errors
    /// [`ReadError::NoSuchVar`], or [`ReadError::Corrupt`] if it is another type.
    pub fn string(&self, name: &str) -> Result<StrReader, ReadError> {
        let v = self.find(name)?;
        match v.spec.ty {
            VarType::String { cap } => Ok(StrReader {
                map: self.map.clone(),
                off: v.off,
                tag: v.tag,
                cap,
                spec: v.spec,
            }),
            _ => Err(wrong_type(&v.spec, "STRING")),
        }
    }
}

fn slot_error(
    e: SlotErr,
    spec: &VarSpec,
    map: &Mapping,
    off: usize,
    known: Option<u64>,
) -> ReadError {
    match e {
        SlotErr::Busy => ReadError::Busy(spec.name.clone()),
        SlotErr::Damaged => ReadError::Corrupt {
            var: spec.name.clone(),
            why: "stored length exceeds the capacity, or the text is not UTF-8".to_owned(),
        },
        SlotErr::Removed => ReadError::Removed {
            var: spec.name.clone(),
            removed_ns: known.unwrap_or_else(|| removed_at(map, off)),
        },
    }
}

fn wrong_type(spec: &VarSpec, wanted: &str) -> ReadError {
    ReadError::Corrupt {
        var: spec.name.clone(),
        why: format!("it is {}, not {wanted}", spec.ty.name()),
    }
}

fn read_name(h: &layout::Header) -> String {
    let mut b = Vec::with_capacity(32);
    for w in &h.name {
        b.extend_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
    }
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A variable resolved by [`RegionReader::find`].
#[derive(Debug, Clone)]
pub struct VarRef {
    spec: Arc<VarSpec>,
    off: usize,
    tag: u64,
}

impl VarRef {
    /// What the variable is.
    pub fn spec(&self) -> &VarSpec {
        &self.spec
    }
}

/// Reader's handle to an INTEGER or ENUM variable: a few loads per read, no lock.
#[derive(Debug, Clone)]
pub struct IntReader {
    map: Arc<Mapping>,
    off: usize,
    tag: u64,
    spec: Arc<VarSpec>,
}

impl IntReader {
    /// The value, or 0 once the variable is retired ([`IntReader::try_get`] tells).
    #[inline]
    pub fn get(&self) -> i64 {
        self.try_get().unwrap_or(0)
    }

    /// The value.
    ///
    /// # Errors
    /// [`ReadError::Removed`] once the owner retired the variable.
    #[inline]
    pub fn try_get(&self) -> Result<i64, ReadError> {
        self.map
            .read_num(self.off, self.tag)
            .map(|v| v as i64)
            .map_err(|e| slot_error(e, &self.spec, &self.map, self.off, None))
    }

    /// Time of the last change, ns since the Unix epoch.
    pub fn changed_ns(&self) -> u64 {
        changed_ns(&self.map, self.off)
    }
}

/// Reader's handle to a FLOAT variable.
#[derive(Debug, Clone)]
pub struct FloatReader {
    map: Arc<Mapping>,
    off: usize,
    tag: u64,
    spec: Arc<VarSpec>,
}

impl FloatReader {
    /// The value, or NaN once the variable is retired ([`FloatReader::try_get`] tells).
    #[inline]
    pub fn get(&self) -> f64 {
        self.try_get().unwrap_or(f64::NAN)
    }

    /// The value.
    ///
    /// # Errors
    /// [`ReadError::Removed`] once the owner retired the variable.
    #[inline]
    pub fn try_get(&self) -> Result<f64, ReadError> {
        self.map
            .read_num(self.off, self.tag)
            .map(f64::from_bits)
            .map_err(|e| slot_error(e, &self.spec, &self.map, self.off, None))
    }
}

/// Reader's handle to a STRING variable.
#[derive(Debug, Clone)]
pub struct StrReader {
    map: Arc<Mapping>,
    off: usize,
    tag: u64,
    cap: usize,
    spec: Arc<VarSpec>,
}

impl StrReader {
    /// Reads the value into `buf` (reused across reads, so no allocation) and returns it.
    ///
    /// # Errors
    /// [`ReadError::Busy`] if the owner rewrote it during every retry, [`ReadError::Corrupt`]
    /// if the stored text is impossible, [`ReadError::Removed`] once it is retired.
    #[inline(always)]
    pub fn read_into<'b>(&self, buf: &'b mut Vec<u8>) -> Result<&'b str, ReadError> {
        match self.map.read_str(self.off, self.cap, self.tag, buf) {
            Ok(true) => {
                debug_assert!(buf.is_ascii());
                // SAFETY: `read_str` returns true only when no byte of the text has its high bit
                // set, i.e. all of it is ASCII, which is valid UTF-8. (The common case: this
                // saves a second pass over the text.)
                Ok(unsafe { std::str::from_utf8_unchecked(buf) })
            }
            Ok(false) => std::str::from_utf8(buf).map_err(|_| ReadError::Corrupt {
                var: self.spec.name.clone(),
                why: "text is not valid UTF-8".to_owned(),
            }),
            Err(e) => Err(slot_error(e, &self.spec, &self.map, self.off, None)),
        }
    }

    /// Reads the value into a new `String`.
    ///
    /// # Errors
    /// As [`StrReader::read_into`].
    pub fn get(&self) -> Result<String, ReadError> {
        let mut buf = Vec::with_capacity(self.cap);
        self.read_into(&mut buf).map(str::to_owned)
    }

    /// The sequence of the slot (even when stable; it changes with every write).
    pub fn seq(&self) -> u64 {
        self.map.str_slot(self.off).seq.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests;
