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

mod define;
mod error;
mod handles;
mod layout;
mod log;
mod mapping;
mod reader;
mod schema;
mod squat;

use handles::{changed_ns, read_value, removed_at};
pub use handles::{FloatVar, IntVar, StrVar, Var};
pub use reader::{FloatReader, IntReader, RegionInfo, RegionReader, StrReader, VarRef};

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

#[cfg(test)]
mod tests;
