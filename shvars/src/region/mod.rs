//! The variable region of a process (`NAME.shv`): typed shared variables in a memory-mapped
//! file.
//!
//! The owner ([`VarRegion`]) creates the file, holds an exclusive `flock` on it for its lifetime
//! (that is the liveness test) and is the only writer. Any local process opens it with
//! [`RegionReader`] and reads values without a lock and without making the owner wait: numbers
//! are single atomic words, strings are protected by a seqlock that a reader retries a bounded
//! number of times. The schema is append-only, so an owner may add variables while readers look
//! ([`RegionReader::refresh_schema`]).
//!
//! Nothing read from the file is trusted: a corrupt, truncated, foreign or newer file is refused
//! by [`RegionReader::open`] with an [`OpenError`] saying what is wrong.
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
//!
//! let reader = RegionReader::open(&dir, &name)?;
//! assert_eq!(reader.int("ticks")?.get(), 5);
//! assert!(reader.is_alive());
//! # drop(owner); std::fs::remove_dir_all(&tmp)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod layout;
mod mapping;
mod schema;
mod squat;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

pub use error::{AddError, CreateError, OpenError, ReadError, SetError};
pub use layout::{
    HEADER_SIZE, MAGIC, MAX_STR_CAP, STATE_CREATING, STATE_LIVE, STATE_STOPPED, VERSION,
};
pub use schema::{parse_int, Access, Value, VarSpec, VarType};

use crate::dir::{ProcName, RuntimeDir};
use layout::align_up;
use mapping::Mapping;

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Sizes of a new region.
#[derive(Debug, Clone, Copy)]
pub struct CreateOptions {
    /// Bytes for the schema (about 200 per variable).
    pub schema_cap: usize,
    /// Bytes for the values (16 per number, 24 + capacity per string).
    pub data_cap: usize,
}

impl Default for CreateOptions {
    /// 1 MiB each: room for thousands of variables. The file lives in tmpfs, where pages never
    /// touched cost no memory.
    fn default() -> Self {
        CreateOptions {
            schema_cap: 1 << 20,
            data_cap: 1 << 20,
        }
    }
}

struct OwnerState {
    specs: Vec<Arc<VarSpec>>,
    index: HashMap<String, usize>,
    schema_len: usize,
    data_used: usize,
}

/// The owner's side of a region: creates it, adds variables, writes values.
pub struct VarRegion {
    map: Arc<Mapping>,
    // Held open for the exclusive flock: liveness for every reader.
    _lock: File,
    path: PathBuf,
    name: ProcName,
    schema_off: usize,
    schema_cap: usize,
    data_off: usize,
    data_cap: usize,
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
        let h = self.map.header();
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
        let schema_cap = align_up(opts.schema_cap);
        let data_cap = align_up(opts.data_cap);
        if schema_cap < 1024 || data_cap < 1024 || schema_cap + data_cap > (1 << 30) {
            return Err(CreateError::BadSize(format!(
                "schema {schema_cap} and data {data_cap} bytes: each must be at least 1 KiB, together at most 1 GiB"
            )));
        }
        let path = dir.region_path(name);
        let io_err = |source| CreateError::Io {
            path: path.clone(),
            error: source,
        };
        let mut contended = 0;
        for _ in 0..50 {
            match crate::open::open_regular(&path, true) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let (tmp, file) = Self::make_file(&path, name, schema_cap, data_cap, state)
                        .map_err(io_err)?;
                    // link() refuses to replace: if someone created the region meanwhile we
                    // start over and meet them.
                    let linked = fs::hard_link(&tmp, &path);
                    let _ = fs::remove_file(&tmp);
                    match linked {
                        Ok(()) => {
                            return Self::finish(file, path.clone(), name, schema_cap, data_cap)
                                .map_err(io_err)
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
                    let (tmp, file) = Self::make_file(&path, name, schema_cap, data_cap, state)
                        .map_err(io_err)?;
                    if let Err(e) = fs::rename(&tmp, &path) {
                        let _ = fs::remove_file(&tmp);
                        return Err(io_err(e));
                    }
                    drop(old);
                    return Self::finish(file, path.clone(), name, schema_cap, data_cap)
                        .map_err(io_err);
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
        schema_cap: usize,
        data_cap: usize,
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
        let total = HEADER_SIZE + schema_cap + data_cap;
        file.set_len(total as u64).map_err(fail)?;
        let map = Mapping::map(&file, total, true).map_err(fail)?;
        let h = map.header();
        h.version.store(VERSION, Ordering::Relaxed);
        h.header_size.store(HEADER_SIZE as u32, Ordering::Relaxed);
        h.file_size.store(total as u64, Ordering::Relaxed);
        h.schema_off.store(HEADER_SIZE as u64, Ordering::Relaxed);
        h.schema_cap.store(schema_cap as u64, Ordering::Relaxed);
        h.data_off
            .store((HEADER_SIZE + schema_cap) as u64, Ordering::Relaxed);
        h.data_cap.store(data_cap as u64, Ordering::Relaxed);
        h.owner_pid.store(std::process::id(), Ordering::Relaxed);
        h.state.store(state, Ordering::Relaxed);
        let now = now_ns();
        h.owner_start_ns.store(now, Ordering::Relaxed);
        h.instance_id.store(random_u64(), Ordering::Relaxed);
        h.heartbeat_ns.store(now, Ordering::Relaxed);
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

    fn finish(
        file: File,
        path: PathBuf,
        name: &ProcName,
        schema_cap: usize,
        data_cap: usize,
    ) -> io::Result<VarRegion> {
        let total = HEADER_SIZE + schema_cap + data_cap;
        let map = Arc::new(Mapping::map(&file, total, true)?);
        Ok(VarRegion {
            map,
            _lock: file,
            path,
            name: name.clone(),
            schema_off: HEADER_SIZE,
            schema_cap,
            data_off: HEADER_SIZE + schema_cap,
            data_cap,
            state: Mutex::new(OwnerState {
                specs: Vec::new(),
                index: HashMap::new(),
                schema_len: 0,
                data_used: 0,
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

    /// Publishes a new variable with its default value and returns a handle to it.
    ///
    /// # Errors
    /// [`AddError`] if the name exists, the spec is inconsistent, or the region is full.
    pub fn add(&self, mut spec: VarSpec) -> Result<Var, AddError> {
        spec.validate().map_err(AddError::BadSpec)?;
        let mut st = self.state.lock();
        if st.index.contains_key(&spec.name) {
            return Err(AddError::Duplicate(spec.name));
        }
        let size = spec.ty.slot_size();
        let off = align_up(st.data_used);
        if off + size > self.data_cap {
            return Err(AddError::Full {
                name: spec.name,
                what: "data area",
            });
        }
        spec.offset = off;
        let mut line = serde_json::to_vec(&spec).map_err(|e| AddError::BadSpec(e.to_string()))?;
        // Pad with spaces so every line ends on a word boundary: the schema area is then only
        // ever written a whole fresh word at a time.
        while (line.len() + 1) % 8 != 0 {
            line.push(b' ');
        }
        line.push(b'\n');
        if st.schema_len + line.len() > self.schema_cap {
            return Err(AddError::Full {
                name: spec.name,
                what: "schema area",
            });
        }
        let var = Var {
            map: self.map.clone(),
            off: self.data_off + off,
            spec: Arc::new(spec),
        };
        var.write_value(&var.spec.default.clone(), now_ns());
        self.map.copy_in(self.schema_off + st.schema_len, &line);
        st.schema_len += line.len();
        st.data_used = off + size;
        let h = self.map.header();
        h.data_used.store(st.data_used as u64, Ordering::Relaxed);
        h.nvars.store(st.specs.len() as u64 + 1, Ordering::Relaxed);
        h.schema_len.store(st.schema_len as u64, Ordering::Release);
        let i = st.specs.len();
        st.index.insert(var.spec.name.clone(), i);
        st.specs.push(var.spec.clone());
        Ok(var)
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
        let v = self.typed(spec, "INTEGER", ok)?;
        Ok(IntVar {
            map: v.map,
            off: v.off,
        })
    }

    /// Adds a FLOAT variable and returns its typed handle.
    ///
    /// # Errors
    /// As [`VarRegion::add`], and [`AddError::WrongType`] for other types.
    pub fn add_float(&self, spec: VarSpec) -> Result<FloatVar, AddError> {
        let ok = matches!(spec.ty, VarType::Float);
        let v = self.typed(spec, "FLOAT", ok)?;
        Ok(FloatVar {
            map: v.map,
            off: v.off,
        })
    }

    /// Adds a STRING variable and returns its typed handle.
    ///
    /// # Errors
    /// As [`VarRegion::add`], and [`AddError::WrongType`] for other types.
    pub fn add_str(&self, spec: VarSpec) -> Result<StrVar, AddError> {
        let cap = match spec.ty {
            VarType::String { cap } => cap,
            _ => 0,
        };
        let v = self.typed(spec, "STRING", cap > 0)?;
        Ok(StrVar {
            map: v.map,
            off: v.off,
            cap,
        })
    }

    /// The handle of variable `name`.
    pub fn var(&self, name: &str) -> Option<Var> {
        let st = self.state.lock();
        let spec = st.specs.get(*st.index.get(name)?)?.clone();
        Some(Var {
            map: self.map.clone(),
            off: self.data_off + spec.offset,
            spec,
        })
    }

    /// Every variable's spec, in the order they were added.
    pub fn specs(&self) -> Vec<Arc<VarSpec>> {
        self.state.lock().specs.clone()
    }

    /// Names close to `name`, for "did you mean" hints.
    pub fn suggest(&self, name: &str) -> String {
        let st = self.state.lock();
        suggest(name, st.specs.iter().map(|s| s.name.as_str()))
    }

    /// Records a heartbeat of the owner's main loop in the header.
    pub fn beat(&self) {
        self.map
            .header()
            .heartbeat_ns
            .store(now_ns(), Ordering::Relaxed);
    }

    /// Marks the region stopped (the owner exits cleanly). The file stays for post-mortem
    /// reading until `shvar cleanup` or a new owner.
    pub fn mark_stopped(&self) {
        self.map
            .header()
            .state
            .store(STATE_STOPPED, Ordering::Release);
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
    spec: Arc<VarSpec>,
}

impl Var {
    /// What the variable is.
    pub fn spec(&self) -> &VarSpec {
        &self.spec
    }

    /// Its value.
    pub fn get(&self) -> Value {
        // The owner's own mapping: a string can only be busy while one of our threads writes it.
        read_value(&self.map, self.off, &self.spec).unwrap_or(Value::Str(String::new()))
    }

    /// Writes a value already checked by [`VarSpec::parse_value`]. Returns the old value.
    pub fn set(&self, v: &Value) -> Value {
        let old = self.get();
        self.write_value(v, now_ns());
        old
    }

    fn write_value(&self, v: &Value, now: u64) {
        match (&self.spec.ty, v) {
            (VarType::String { cap }, Value::Str(s)) => {
                let mut n = s.len().min(*cap);
                while !s.is_char_boundary(n) {
                    n -= 1;
                }
                self.map.write_str(self.off, &s.as_bytes()[..n], now);
            }
            (VarType::Float, Value::Float(f)) => {
                let slot = self.map.num_slot(self.off);
                slot.value.store(f.to_bits(), Ordering::Release);
                slot.changed_ns.store(now, Ordering::Release);
            }
            (VarType::Float, Value::Int(i)) => {
                self.write_value(&Value::Float(*i as f64), now);
            }
            (VarType::Integer | VarType::Enum { .. }, Value::Int(i)) => {
                let slot = self.map.num_slot(self.off);
                slot.value.store(*i as u64, Ordering::Release);
                slot.changed_ns.store(now, Ordering::Release);
            }
            // Mismatched types never reach here: values come from `parse_value` of this spec.
            _ => debug_assert!(false, "value {v:?} does not fit {:?}", self.spec.ty),
        }
    }

    /// Time of the last change, ns since the Unix epoch.
    pub fn changed_ns(&self) -> u64 {
        changed_ns(&self.map, self.off, &self.spec)
    }
}

fn changed_ns(map: &Mapping, off: usize, spec: &VarSpec) -> u64 {
    match spec.ty {
        VarType::String { .. } => map.str_slot(off).changed_ns.load(Ordering::Acquire),
        _ => map.num_slot(off).changed_ns.load(Ordering::Acquire),
    }
}

fn read_value(map: &Mapping, off: usize, spec: &VarSpec) -> Result<Value, ReadError> {
    Ok(match &spec.ty {
        VarType::Integer | VarType::Enum { .. } => {
            Value::Int(map.num_slot(off).value.load(Ordering::Acquire) as i64)
        }
        VarType::Float => Value::Float(f64::from_bits(
            map.num_slot(off).value.load(Ordering::Acquire),
        )),
        VarType::String { cap } => {
            let mut buf = Vec::new();
            match map.read_str(off, *cap, &mut buf) {
                Ok(_) => Value::Str(String::from_utf8(buf).map_err(|_| ReadError::Corrupt {
                    var: spec.name.clone(),
                    why: "text is not valid UTF-8".to_owned(),
                })?),
                Err(true) => return Err(ReadError::Busy(spec.name.clone())),
                Err(false) => {
                    return Err(ReadError::Corrupt {
                        var: spec.name.clone(),
                        why: "stored length exceeds the capacity".to_owned(),
                    })
                }
            }
        }
    })
}

/// Owner's handle to an INTEGER (or ENUM) variable. Cloning is cheap; threads share it.
#[derive(Debug, Clone)]
pub struct IntVar {
    map: Arc<Mapping>,
    off: usize,
}

impl IntVar {
    /// The value.
    #[inline]
    pub fn get(&self) -> i64 {
        self.map.num_slot(self.off).value.load(Ordering::Acquire) as i64
    }

    /// Sets the value and the time of change (only if it changed).
    #[inline]
    pub fn set(&self, v: i64) {
        let slot = self.map.num_slot(self.off);
        if slot.value.swap(v as u64, Ordering::Release) != v as u64 {
            slot.changed_ns.store(now_ns(), Ordering::Release);
        }
    }

    /// Adds `d` (wrapping) and returns the new value.
    #[inline]
    pub fn add(&self, d: i64) -> i64 {
        let slot = self.map.num_slot(self.off);
        let old = slot.value.fetch_add(d as u64, Ordering::AcqRel) as i64;
        if d != 0 {
            slot.changed_ns.store(now_ns(), Ordering::Release);
        }
        old.wrapping_add(d)
    }
}

/// Owner's handle to a FLOAT variable.
#[derive(Debug, Clone)]
pub struct FloatVar {
    map: Arc<Mapping>,
    off: usize,
}

impl FloatVar {
    /// The value.
    #[inline]
    pub fn get(&self) -> f64 {
        f64::from_bits(self.map.num_slot(self.off).value.load(Ordering::Acquire))
    }

    /// Sets the value and the time of change (only if it changed).
    #[inline]
    pub fn set(&self, v: f64) {
        let slot = self.map.num_slot(self.off);
        if slot.value.swap(v.to_bits(), Ordering::Release) != v.to_bits() {
            slot.changed_ns.store(now_ns(), Ordering::Release);
        }
    }
}

/// Owner's handle to a STRING variable.
#[derive(Debug, Clone)]
pub struct StrVar {
    map: Arc<Mapping>,
    off: usize,
    cap: usize,
}

impl StrVar {
    /// The value.
    pub fn get(&self) -> String {
        let mut buf = Vec::new();
        match self.map.read_str(self.off, self.cap, &mut buf) {
            Ok(_) => String::from_utf8(buf).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Sets the value, cut to the capacity at a character boundary. Returns whether it was cut.
    pub fn set(&self, s: &str) -> bool {
        let mut n = s.len().min(self.cap);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        if self.get().as_bytes() != &s.as_bytes()[..n] {
            self.map.write_str(self.off, &s.as_bytes()[..n], now_ns());
        }
        n < s.len()
    }

    /// Writes the value, cut to the capacity at a character boundary, without first reading the
    /// current one: unlike [`StrVar::set`] it never allocates (for a loop that must not), and it
    /// always updates the time of change. Returns whether it was cut.
    pub fn store(&self, s: &str) -> bool {
        let mut n = s.len().min(self.cap);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.map.write_str(self.off, &s.as_bytes()[..n], now_ns());
        n < s.len()
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
    /// Number of variables.
    pub nvars: u64,
}

/// A reader's view of a region. Opening parses the schema once; reads take no lock.
pub struct RegionReader {
    map: Arc<Mapping>,
    file: File,
    path: PathBuf,
    name: String,
    schema_off: usize,
    schema_cap: usize,
    data_off: usize,
    data_cap: usize,
    schema_seen: usize,
    specs: Vec<Arc<VarSpec>>,
    index: HashMap<String, usize>,
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
    /// [`OpenError::NotFound`] if there is none; [`OpenError::Corrupt`], [`OpenError::TooNew`]
    /// if the file is not a region this code can read.
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
            Ok(f) => Self::from_file_waiting(f, path),
        }
    }

    /// A region still being created by a live owner is waited for, up to about a second.
    fn from_file_waiting(file: File, path: PathBuf) -> Result<RegionReader, OpenError> {
        let mut file = file;
        for _ in 0..100 {
            match Self::from_file(file, path.clone()) {
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
        Self::from_file_waiting(f, path.to_owned())
    }

    fn from_file(file: File, path: PathBuf) -> Result<RegionReader, OpenError> {
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
        let hs = h.header_size.load(Ordering::Relaxed) as usize;
        if hs != HEADER_SIZE {
            return Err(corrupt(format!("header size {hs}, expected {HEADER_SIZE}")));
        }
        let fsize = h.file_size.load(Ordering::Relaxed);
        if fsize > actual {
            return Err(corrupt(format!(
                "header says {fsize} bytes but the file has {actual} (truncated)"
            )));
        }
        let schema_off = h.schema_off.load(Ordering::Relaxed);
        let schema_cap = h.schema_cap.load(Ordering::Relaxed);
        let data_off = h.data_off.load(Ordering::Relaxed);
        let data_cap = h.data_cap.load(Ordering::Relaxed);
        let areas_ok = schema_off == HEADER_SIZE as u64
            && schema_cap % 8 == 0
            && data_cap % 8 == 0
            && schema_off.checked_add(schema_cap) == Some(data_off)
            && data_off.checked_add(data_cap) == Some(fsize)
            && fsize <= (2 << 30);
        if !areas_ok {
            return Err(corrupt(format!(
                "inconsistent areas (schema {schema_off}+{schema_cap}, data {data_off}+{data_cap}, file {fsize})"
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
            schema_off: schema_off as usize,
            schema_cap: schema_cap as usize,
            data_off: data_off as usize,
            data_cap: data_cap as usize,
            schema_seen: 0,
            specs: Vec::new(),
            index: HashMap::new(),
        };
        r.refresh_schema()?;
        Ok(r)
    }

    /// Reads variables the owner added since the last look. Returns whether there were any.
    ///
    /// # Errors
    /// [`OpenError::Corrupt`] if the new part of the schema is damaged.
    pub fn refresh_schema(&mut self) -> Result<bool, OpenError> {
        let h = self.map.header();
        let len = h.schema_len.load(Ordering::Acquire) as usize;
        if len == self.schema_seen {
            return Ok(false);
        }
        let corrupt = |why: String| OpenError::Corrupt {
            path: self.path.clone(),
            why,
        };
        if len < self.schema_seen || len > self.schema_cap || !len.is_multiple_of(8) {
            return Err(corrupt(format!(
                "schema length {len} is impossible (capacity {}, seen {})",
                self.schema_cap, self.schema_seen
            )));
        }
        let mut bytes = Vec::new();
        self.map.copy_out(
            self.schema_off + self.schema_seen,
            len - self.schema_seen,
            &mut bytes,
        );
        let mut new_specs = Vec::new();
        for line in bytes.split(|b| *b == b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let n = self.specs.len() + new_specs.len();
            let spec: VarSpec = serde_json::from_slice(line)
                .map_err(|e| corrupt(format!("schema entry {n} is not valid JSON: {e}")))?;
            spec.validate()
                .map_err(|e| corrupt(format!("schema entry {n}: {e}")))?;
            let size = spec.ty.slot_size();
            if !spec.offset.is_multiple_of(8)
                || spec
                    .offset
                    .checked_add(size)
                    .is_none_or(|e| e > self.data_cap)
            {
                return Err(corrupt(format!(
                    "variable {} has its slot outside the data area",
                    spec.name
                )));
            }
            if self.index.contains_key(&spec.name)
                || new_specs.iter().any(|s: &VarSpec| s.name == spec.name)
            {
                return Err(corrupt(format!("variable {} appears twice", spec.name)));
            }
            new_specs.push(spec);
        }
        for s in new_specs {
            self.index.insert(s.name.clone(), self.specs.len());
            self.specs.push(Arc::new(s));
        }
        self.schema_seen = len;
        Ok(true)
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

    /// Every variable's spec, in the order the owner added them.
    pub fn specs(&self) -> &[Arc<VarSpec>] {
        &self.specs
    }

    /// Resolves variable `name` once; read it many times with [`RegionReader::read`].
    ///
    /// # Errors
    /// [`ReadError::NoSuchVar`] with a hint at close names.
    pub fn find(&self, name: &str) -> Result<VarRef, ReadError> {
        match self.index.get(name) {
            Some(&i) => Ok(VarRef {
                spec: self.specs[i].clone(),
                off: self.data_off + self.specs[i].offset,
            }),
            None => Err(ReadError::NoSuchVar {
                process: self.name.clone(),
                var: name.to_owned(),
                hint: suggest(name, self.specs.iter().map(|s| s.name.as_str())),
            }),
        }
    }

    /// The spec of variable `name`.
    pub fn spec(&self, name: &str) -> Option<&VarSpec> {
        self.index.get(name).map(|&i| &*self.specs[i])
    }

    /// The current value of a resolved variable.
    ///
    /// # Errors
    /// [`ReadError::Busy`] if a string kept changing during every retry,
    /// [`ReadError::Corrupt`] if the slot holds something impossible.
    pub fn read(&self, v: &VarRef) -> Result<Value, ReadError> {
        read_value(&self.map, v.off, &v.spec)
    }

    /// The time of the last change of a resolved variable, ns since the Unix epoch.
    pub fn changed_ns(&self, v: &VarRef) -> u64 {
        changed_ns(&self.map, v.off, &v.spec)
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
                cap,
                name: v.spec.name.clone(),
            }),
            _ => Err(wrong_type(&v.spec, "STRING")),
        }
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
}

impl VarRef {
    /// What the variable is.
    pub fn spec(&self) -> &VarSpec {
        &self.spec
    }
}

/// Reader's handle to an INTEGER or ENUM variable: one atomic load per read.
#[derive(Debug, Clone)]
pub struct IntReader {
    map: Arc<Mapping>,
    off: usize,
}

impl IntReader {
    /// The value.
    #[inline]
    pub fn get(&self) -> i64 {
        self.map.num_slot(self.off).value.load(Ordering::Acquire) as i64
    }

    /// Time of the last change, ns since the Unix epoch.
    pub fn changed_ns(&self) -> u64 {
        self.map
            .num_slot(self.off)
            .changed_ns
            .load(Ordering::Acquire)
    }
}

/// Reader's handle to a FLOAT variable.
#[derive(Debug, Clone)]
pub struct FloatReader {
    map: Arc<Mapping>,
    off: usize,
}

impl FloatReader {
    /// The value.
    #[inline]
    pub fn get(&self) -> f64 {
        f64::from_bits(self.map.num_slot(self.off).value.load(Ordering::Acquire))
    }
}

/// Reader's handle to a STRING variable.
#[derive(Debug, Clone)]
pub struct StrReader {
    map: Arc<Mapping>,
    off: usize,
    cap: usize,
    name: String,
}

impl StrReader {
    /// Reads the value into `buf` (reused across reads, so no allocation) and returns it.
    ///
    /// # Errors
    /// [`ReadError::Busy`] if the owner rewrote it during every retry, [`ReadError::Corrupt`]
    /// if the stored text is impossible.
    #[inline(always)]
    pub fn read_into<'b>(&self, buf: &'b mut Vec<u8>) -> Result<&'b str, ReadError> {
        match self.map.read_str(self.off, self.cap, buf) {
            Ok(true) => {
                debug_assert!(buf.is_ascii());
                // SAFETY: `read_str` returns true only when no byte of the text has its high bit
                // set, i.e. all of it is ASCII, which is valid UTF-8. (The common case: this
                // saves a second pass over the text.)
                Ok(unsafe { std::str::from_utf8_unchecked(buf) })
            }
            Ok(_) => std::str::from_utf8(buf).map_err(|_| ReadError::Corrupt {
                var: self.name.clone(),
                why: "text is not valid UTF-8".to_owned(),
            }),
            Err(true) => Err(ReadError::Busy(self.name.clone())),
            Err(false) => Err(ReadError::Corrupt {
                var: self.name.clone(),
                why: "stored length exceeds the capacity".to_owned(),
            }),
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
}

#[cfg(test)]
mod tests;
