//! Where the bytes of a buffer live: a [`Storage`] is a byte region plus the liveness locks that
//! go with it.
//!
//! [`FileStorage`] is production: a file (normally in `/dev/shm`) mapped shared with memmap2,
//! the producer's `flock`, and one OFD byte-range lock per lossless reader slot.
//! [`HeapStorage`] runs the same algorithm in one process on heap memory, so that it can be
//! unit-tested (and run under Miri) without files.
//!
//! This module never interprets the bytes beyond what creating and opening need (the file size
//! and the producer pid for error messages): the protocol is in `writer.rs` and `reader.rs`.
//!
//! # Safety
//! A mapped file that someone else truncates makes every access beyond the new end raise
//! `SIGBUS`, which kills the process. Nothing in user space can prevent that short of
//! installing a signal handler; what we do: readers check the size at open (a truncated file is
//! an [`OpenError::Truncated`](super::OpenError)), the producer never shrinks a live file, and a
//! restarted producer re-creates the buffer under a new inode (write a temporary file, then
//! `rename` it over the old one) so that the mappings of old readers stay valid. Only a third
//! party truncating the file by hand can crash a reader.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

use super::error::{CreateError, OpenError};
use super::layout::{DATA_OFFSET, MAGIC, READER_SLOTS};

/// A byte region holding one circular buffer, plus its liveness locks.
///
/// # Safety
/// Implementors promise that [`as_ptr`](Storage::as_ptr) points to [`len`](Storage::len)
/// bytes, 64-byte aligned, that stay valid (mapped, not freed) for as long as the storage value
/// lives, and that may be accessed through atomics and raw pointers concurrently by other
/// handles of the same buffer. `len` is at least [`DATA_OFFSET`] and never changes.
pub unsafe trait Storage {
    /// Start of the region.
    fn as_ptr(&self) -> *mut u8;
    /// Size of the region in bytes.
    fn len(&self) -> usize;
    /// Never true: a storage always holds at least a header. Present for clippy's sake.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A name for messages (the file path).
    fn path(&self) -> &Path;
    /// True if this handle may write to the region (readers of a file they may not write get a
    /// read-only mapping).
    fn writable(&self) -> bool;
    /// Takes the liveness lock of lossless reader slot `slot` for this handle. `Ok(false)` if a
    /// live reader holds it.
    ///
    /// # Errors
    /// The system refused the lock for another reason.
    fn try_lock_reader_slot(&self, slot: usize) -> io::Result<bool>;
    /// Releases the lock taken by [`try_lock_reader_slot`](Storage::try_lock_reader_slot).
    fn unlock_reader_slot(&self, slot: usize);
    /// True if some live handle holds the lock of `slot` (the producer asks this only when a
    /// reader blocks it).
    fn reader_slot_alive(&self, slot: usize) -> bool;
    /// Marks this handle as the producer. For files the lock was taken when the file was
    /// created; `false` if another live producer holds it.
    fn claim_producer(&self) -> bool;
    /// Called when the producer handle goes away cleanly (a file is removed).
    fn release_producer(&self);
    /// True while the producer that created this buffer is alive.
    fn producer_alive(&self) -> bool;
    /// True if the buffer's name now refers to another buffer (a restarted producer re-created
    /// it).
    fn recreated(&self) -> bool;
}

// ------------------------------------------------------------------------------------------
// Heap storage

#[repr(C, align(64))]
struct Line([AtomicU64; 8]);

struct HeapInner {
    mem: Box<[Line]>,
    path: PathBuf,
    slot_locks: [AtomicBool; READER_SLOTS],
    producer: AtomicBool,
}

/// A buffer on the heap of one process: for tests, Miri, and in-process pipelines.
///
/// Cloning gives another handle to the same bytes (one per reader or writer). Reader slot locks
/// are held by whichever handle took them; a handle that is dropped without unlocking (a
/// leaked reader) keeps its slot locked, as a live but stuck process would.
///
/// # Examples
/// ```
/// use shvars::circ::{CircOptions, CircWriter, HeapStorage, SamplingReader, StartAt};
/// let mem = HeapStorage::for_capacity(4096);
/// let mut w = CircWriter::on_storage(mem.clone(), &CircOptions::new(4096)).unwrap();
/// let mut r = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
/// w.write(1, b"hello").unwrap();
/// let mut buf = [0u8; 16];
/// let ev = r.try_read(&mut buf).unwrap();
/// assert_eq!((ev.evnr, &buf[..ev.len]), (1, &b"hello"[..]));
/// ```
#[derive(Clone)]
pub struct HeapStorage {
    inner: Arc<HeapInner>,
}

impl std::fmt::Debug for HeapStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapStorage")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl HeapStorage {
    /// Zeroed heap memory for a buffer of `capacity` bytes (header and slack included).
    pub fn for_capacity(capacity: u64) -> Self {
        Self::with_len(super::layout::file_size(capacity) as usize)
    }

    /// Zeroed heap memory of `len` bytes (rounded up to 64, at least the header size).
    pub fn with_len(len: usize) -> Self {
        let lines = len.max(DATA_OFFSET).div_ceil(64);
        let mem: Box<[Line]> = (0..lines)
            .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        HeapStorage {
            inner: Arc::new(HeapInner {
                mem,
                path: PathBuf::from("<heap>"),
                slot_locks: std::array::from_fn(|_| AtomicBool::new(false)),
                producer: AtomicBool::new(false),
            }),
        }
    }
}

// SAFETY: the pointer comes from a boxed slice of 64-aligned cache lines of atomics (interior
// mutability, so writes through it are allowed), kept alive by the Arc as long as any handle
// lives; its length never changes and is at least DATA_OFFSET.
unsafe impl Storage for HeapStorage {
    fn as_ptr(&self) -> *mut u8 {
        self.inner.mem.as_ptr() as *mut u8
    }
    fn len(&self) -> usize {
        self.inner.mem.len() * 64
    }
    fn path(&self) -> &Path {
        &self.inner.path
    }
    fn writable(&self) -> bool {
        true
    }
    fn try_lock_reader_slot(&self, slot: usize) -> io::Result<bool> {
        Ok(self.inner.slot_locks[slot]
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok())
    }
    fn unlock_reader_slot(&self, slot: usize) {
        self.inner.slot_locks[slot].store(false, Ordering::Release);
    }
    fn reader_slot_alive(&self, slot: usize) -> bool {
        self.inner.slot_locks[slot].load(Ordering::Acquire)
    }
    fn claim_producer(&self) -> bool {
        self.inner
            .producer
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
    fn release_producer(&self) {
        self.inner.producer.store(false, Ordering::Release);
    }
    fn producer_alive(&self) -> bool {
        self.inner.producer.load(Ordering::Acquire)
    }
    fn recreated(&self) -> bool {
        false
    }
}

// ------------------------------------------------------------------------------------------
// File storage

/// Byte offset (far beyond any file's end) of the OFD lock byte of reader slot 0; slot `i`
/// locks byte `READER_LOCK_BASE + i`. Locks past the end of a file are allowed and touch no data.
pub const READER_LOCK_BASE: i64 = 1 << 62;

/// A buffer file mapped shared.
///
/// Liveness: the producer holds an exclusive `flock` on the file for its lifetime; a reader
/// that can take a shared `flock` knows the producer is dead. A lossless reader holds an
/// exclusive OFD lock (`F_OFD_SETLK`) on byte `READER_LOCK_BASE + slot`; the producer asks
/// `F_OFD_GETLK` for that byte when the reader blocks it. Both kinds of lock are released by the
/// kernel when the process dies, whatever the pid becomes later (no pid-reuse problem), and the
/// two kinds do not interact on Linux.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    map: MmapRaw,
    path: PathBuf,
    dev: u64,
    ino: u64,
    writable: bool,
    producer: bool,
}

fn io_create<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> CreateError + 'a {
    move |source| CreateError::Io {
        path: path.to_owned(),
        what,
        source,
    }
}

fn io_open<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> OpenError + 'a {
    move |source| OpenError::Io {
        path: path.to_owned(),
        what,
        source,
    }
}

/// Reads the producer pid from a file that may or may not be a buffer (0 if it is not).
fn pid_in(file: &File) -> u32 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 48];
    match file.read_exact_at(&mut b, 0) {
        Ok(()) if u64::from_le_bytes(b[0..8].try_into().unwrap()) == MAGIC => {
            u32::from_le_bytes(b[40..44].try_into().unwrap())
        }
        _ => 0,
    }
}

impl FileStorage {
    /// Creates a new buffer file of `len` bytes at `path` and holds the producer lock on it.
    /// `init` fills the header while the file still has a temporary name; the file appears
    /// under `path` only afterwards, complete. A stale file (its producer died) is replaced; a
    /// file whose producer lives is refused.
    pub(crate) fn create(
        path: &Path,
        len: u64,
        mode: u32,
        init: impl FnOnce(&FileStorage),
    ) -> Result<FileStorage, CreateError> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let fname = path
            .file_name()
            .ok_or_else(|| CreateError::Io {
                path: path.to_owned(),
                what: "use this path",
                source: io::Error::new(io::ErrorKind::InvalidInput, "it names no file"),
            })?
            .to_string_lossy()
            .into_owned();
        let tmp = dir.unwrap_or(Path::new(".")).join(format!(
            ".{fname}.{}.{}.tmp",
            std::process::id(),
            super::layout::now_ns()
        ));
        // Build the complete new file under a temporary name.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_create(path, "create the buffer file"))?;
        let cleanup = |e: CreateError| {
            let _ = fs::remove_file(&tmp);
            e
        };
        // The umask may have removed bits the readers need.
        use std::os::unix::fs::PermissionsExt;
        let _ = file.set_permissions(fs::Permissions::from_mode(mode));
        file.set_len(len)
            .map_err(io_create(path, "size the buffer file"))
            .map_err(cleanup)?;
        file.try_lock()
            .map_err(|e| io::Error::other(e.to_string()))
            .map_err(io_create(path, "lock the new buffer file"))
            .map_err(cleanup)?;
        let meta = file
            .metadata()
            .map_err(io_create(path, "stat the buffer file"))
            .map_err(cleanup)?;
        let map = MmapOptions::new()
            .map_raw(&file)
            .map_err(io_create(path, "map the buffer file"))
            .map_err(cleanup)?;
        let st = FileStorage {
            file,
            map,
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            writable: true,
            producer: true,
        };
        init(&st);
        // Publish it under its name: take over a stale buffer, refuse a live one.
        for _attempt in 0..200 {
            match open_existing(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // No buffer yet: link() fails if someone else was quicker.
                    match fs::hard_link(&tmp, path) {
                        Ok(()) => {
                            let _ = fs::remove_file(&tmp);
                            return Ok(st);
                        }
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(cleanup(io_create(path, "name the buffer file")(e))),
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(cleanup(CreateError::NotABuffer {
                        path: path.to_owned(),
                        what: "a symbolic link".into(),
                    }))
                }
                Err(e) => return Err(cleanup(io_create(path, "open the old buffer file")(e))),
                Ok(old) => {
                    if let Some(what) = not_a_buffer(&old) {
                        return Err(cleanup(CreateError::NotABuffer {
                            path: path.to_owned(),
                            what,
                        }));
                    }
                    match old.try_lock() {
                        Ok(()) => {
                            // Stale (its producer died) unless the name moved on meanwhile.
                            let same = match (old.metadata(), fs::metadata(path)) {
                                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                                _ => false,
                            };
                            if !same {
                                continue;
                            }
                            fs::rename(&tmp, path)
                                .map_err(io_create(path, "replace the stale buffer file"))
                                .map_err(cleanup)?;
                            drop(old);
                            return Ok(st);
                        }
                        Err(std::fs::TryLockError::WouldBlock) => {
                            // Live producer, or a reader testing liveness for a moment, or the
                            // name just moved to a new producer's file: look again shortly.
                            let pid = pid_in(&old);
                            if _attempt >= 20 {
                                return Err(cleanup(CreateError::AlreadyProduced {
                                    path: path.to_owned(),
                                    pid,
                                }));
                            }
                            std::thread::sleep(std::time::Duration::from_millis(2));
                        }
                        Err(std::fs::TryLockError::Error(e)) => {
                            return Err(cleanup(io_create(path, "lock the old buffer file")(e)))
                        }
                    }
                }
            }
        }
        Err(cleanup(CreateError::Io {
            path: path.to_owned(),
            what: "name the buffer file",
            source: io::Error::other("other producers kept replacing it"),
        }))
    }

    /// Opens an existing buffer file: read-write if `want_write` (and permitted), else, or if
    /// writing is not permitted and `need_write` is false, read-only. The size is checked
    /// against `min_len` (the header) and then against `expected_len(header bytes)`.
    pub(crate) fn open(path: &Path, want_write: bool, need_write: bool) -> Result<Self, OpenError> {
        // Without blocking: a FIFO planted at a buffer path would block an open until a
        // writer came; it is refused below as not a regular file.
        let ro = || {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
        };
        let file = if want_write {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
            {
                Ok(f) => Ok((f, true)),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied && !need_write => {
                    ro().map(|f| (f, false))
                }
                Err(e) => Err(e),
            }
        } else {
            ro().map(|f| (f, false))
        };
        let (file, writable) = file.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OpenError::NotFound {
                path: path.to_owned(),
            },
            _ => io_open(path, "open the buffer file")(e),
        })?;
        let meta = file
            .metadata()
            .map_err(io_open(path, "stat the buffer file"))?;
        if !meta.is_file() {
            return Err(OpenError::NotACircBuffer {
                path: path.to_owned(),
                magic: 0,
            });
        }
        if meta.len() < DATA_OFFSET as u64 {
            // Tell "not ours" from "ours but cut short" by the magic, if there is one.
            if pid_magic(&file) != Some(MAGIC) {
                return Err(OpenError::NotACircBuffer {
                    path: path.to_owned(),
                    magic: pid_magic(&file).unwrap_or(0),
                });
            }
            return Err(OpenError::Truncated {
                path: path.to_owned(),
                len: meta.len(),
                expected: DATA_OFFSET as u64,
            });
        }
        let mut opts = MmapOptions::new();
        opts.len(meta.len() as usize);
        let map = if writable {
            opts.map_raw(&file)
        } else {
            opts.map_raw_read_only(&file)
        }
        .map_err(io_open(path, "map the buffer file"))?;
        Ok(FileStorage {
            file,
            map,
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            writable,
            producer: false,
        })
    }

    fn ofd_lock(
        &self,
        slot: usize,
        cmd: libc::c_int,
        ty: libc::c_short,
    ) -> io::Result<libc::flock> {
        // SAFETY: an all-zero flock is a valid value of this plain C struct.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = ty;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = READER_LOCK_BASE + slot as i64;
        fl.l_len = 1;
        // SAFETY: `fl` is a valid flock that lives across the call; the fd is open.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
        if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(fl)
        }
    }
}

/// Opens whatever is at `path` to look at it: without blocking (a FIFO would block an open for
/// reading until a writer comes), without following a symbolic link.
fn open_existing(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// What `file` is if it is not a circular buffer (by its type and magic number); `None` if it
/// is one.
fn not_a_buffer(file: &File) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Some(format!("a file that cannot be examined ({e})")),
    };
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        None
    } else if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_socket() {
        Some("a socket")
    } else if ft.is_char_device() || ft.is_block_device() {
        Some("a device")
    } else {
        Some("a file that is not a regular file")
    };
    if let Some(k) = kind {
        return Some(k.to_owned());
    }
    if pid_magic(file) != Some(MAGIC) {
        return Some(format!(
            "a regular file of {} bytes that is not a circular buffer",
            meta.len()
        ));
    }
    None
}

fn pid_magic(file: &File) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, 0).ok()?;
    Some(u64::from_le_bytes(b))
}

// SAFETY: the pointer is the start of a shared mapping of the whole file (page aligned), which
// lives as long as `self.map`; its length is fixed at map time and at least DATA_OFFSET (checked
// in `open`/`create`). The mapping stays valid unless a third party truncates the file (see the
// module's Safety section).
unsafe impl Storage for FileStorage {
    fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn writable(&self) -> bool {
        self.writable
    }
    fn try_lock_reader_slot(&self, slot: usize) -> io::Result<bool> {
        match self.ofd_lock(slot, libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
    fn unlock_reader_slot(&self, slot: usize) {
        let _ = self.ofd_lock(slot, libc::F_OFD_SETLK, libc::F_UNLCK as libc::c_short);
    }
    fn reader_slot_alive(&self, slot: usize) -> bool {
        match self.ofd_lock(slot, libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short) {
            Ok(fl) => fl.l_type != libc::F_UNLCK as libc::c_short,
            // When in doubt, a reader is alive: the timeout still bounds the wait.
            Err(_) => true,
        }
    }
    fn claim_producer(&self) -> bool {
        self.producer
    }
    fn release_producer(&self) {
        // Remove the name only if it is still ours (not a newer producer's file).
        if let Ok(m) = fs::metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
    fn producer_alive(&self) -> bool {
        if self.producer {
            return true;
        }
        match self.file.try_lock_shared() {
            Ok(()) => {
                let _ = self.file.unlock();
                false
            }
            Err(std::fs::TryLockError::WouldBlock) => true,
            Err(std::fs::TryLockError::Error(_)) => true,
        }
    }
    fn recreated(&self) -> bool {
        match fs::metadata(&self.path) {
            Ok(m) => m.dev() != self.dev || m.ino() != self.ino,
            Err(_) => false,
        }
    }
}
