//! The reading side of a region: [`RegionReader`] and the handles it gives ([`VarRef`],
//! [`IntReader`], [`FloatReader`], [`StrReader`]). Nothing read from the file is trusted.

use super::*;

mod schema_lines;
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
