//! Local peers (the default): peers of one machine meet in the runtime directory.
//!
//! - The board is the peers' own regions: every svcshare publishes `share`, `queue`, `want`,
//!   `force` and `asked_ns`; a peer reads those of every live process of the same share whose
//!   region belongs to the same user (a region planted by another user is never a peer).
//! - The right to run is a lease kept in one small file, `SHARE.svcshare.lock`: a fencing
//!   counter that only grows, the holder's name and pid, and when the lease ends (CLOCK_MONOTONIC,
//!   which every process of the machine shares). The file is read and changed only under an
//!   exclusive `flock`, held for the few microseconds of a read-modify-write, never while running.
//!   A grant increments the counter: the new value is the grant's fencing token. A holder renews
//!   its lease every third of the TTL; a peer may take the lease over once it has ended, or at
//!   once when the holder's process is dead (its region's liveness lock is free).
//! - The file must be a regular file of ours, mode 0600, with one name: one planted by another
//!   user, or a link, is refused with an error that says so.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use shvars::region::{IntReader, RegionReader, StrReader};
use shvars::{ProcName, RuntimeDir};

use super::policy::{Board, Entry, Force};
use crate::support::files::{euid, kind_text, user_text, NOFOLLOW};

/// Nanoseconds of CLOCK_MONOTONIC (shared by every process of the machine).
pub fn mono_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there on Linux");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Size of the record in the lock file (one padded text line).
const RECORD: usize = 128;

/// What the lock file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The fencing counter: the token of the latest grant; it never goes down.
    pub counter: u64,
    /// The holder's name ("" when free).
    pub holder: String,
    /// The holder's pid.
    pub pid: u32,
    /// When the holder's lease ends (CLOCK_MONOTONIC ns).
    pub expiry_ns: u64,
}

impl Record {
    fn parse(b: &[u8], path: &Path) -> io::Result<Record> {
        let text = std::str::from_utf8(b).unwrap_or("");
        let text = text.trim_end_matches(['\0', ' ', '\n']);
        if text.is_empty() {
            return Ok(Record::default());
        }
        let w: Vec<&str> = text.split(' ').collect();
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: not a svcshare lock record ({text:?}); is another program using this name? Remove it only when no peer runs",
                    path.display()
                ),
            )
        };
        if w.len() != 5 || w[0] != "svcshare1" {
            return Err(bad());
        }
        Ok(Record {
            counter: w[1].parse().map_err(|_| bad())?,
            holder: if w[2] == "-" {
                String::new()
            } else {
                w[2].to_owned()
            },
            pid: w[3].parse().map_err(|_| bad())?,
            expiry_ns: w[4].parse().map_err(|_| bad())?,
        })
    }

    fn bytes(&self) -> [u8; RECORD] {
        let s = format!(
            "svcshare1 {} {} {} {}",
            self.counter,
            if self.holder.is_empty() {
                "-"
            } else {
                &self.holder
            },
            self.pid,
            self.expiry_ns
        );
        let mut b = [b' '; RECORD];
        b[..s.len()].copy_from_slice(s.as_bytes());
        b[RECORD - 1] = b'\n';
        b
    }
}

/// A lease taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The fencing token.
    pub token: u64,
    /// When the lease ends in the file (CLOCK_MONOTONIC ns).
    pub expiry_ns: u64,
}

/// Why a lease was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// Another live peer holds it until its lease ends.
    HeldBy(String),
}

/// The lease file of one share.
#[derive(Debug)]
pub struct LocalLock {
    file: File,
    path: PathBuf,
    me: String,
    pid: u32,
    ttl: Duration,
}

impl LocalLock {
    /// Opens (or creates) `DIR/SHARE.svcshare.lock`.
    ///
    /// # Errors
    /// The file cannot be opened, or is not a lock file of ours (another user's, a link, a
    /// file with other names, or readable by others): the message says which and what to do.
    pub fn open(dir: &Path, share: &str, me: &str, ttl: Duration) -> Result<LocalLock, String> {
        let path = dir.join(format!("{share}.svcshare.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(c) if c == nix::errno::Errno::ELOOP as i32 => format!(
                    "{} is a symbolic link: refusing it as the lease file of share {share} (planted by someone? remove it)",
                    path.display()
                ),
                _ => format!("cannot open the lease file {}: {e}", path.display()),
            })?;
        let m = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !m.file_type().is_file() {
            return Err(format!(
                "{} is {}, not a regular file: refusing it as the lease file of share {share}",
                path.display(),
                kind_text(m.file_type())
            ));
        }
        if m.uid() != euid() {
            return Err(format!(
                "{} belongs to {}, not to us ({}): refusing a lease file another user planted (remove it as root, or use another --share or --dir)",
                path.display(),
                user_text(m.uid()),
                user_text(euid())
            ));
        }
        if m.nlink() != 1 {
            return Err(format!(
                "{} has {} names (hard links): refusing it as a lease file",
                path.display(),
                m.nlink()
            ));
        }
        if m.mode() & 0o077 != 0 {
            return Err(format!(
                "{} has mode {:o}: a lease file must be the owner's alone (chmod 600 it, or remove it when no peer runs)",
                path.display(),
                m.mode() & 0o777
            ));
        }
        Ok(LocalLock {
            file,
            path,
            me: me.to_owned(),
            pid: std::process::id(),
            ttl,
        })
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> io::Result<Record> {
        let mut b = [0u8; RECORD];
        let n = self.file.read_at(&mut b, 0)?;
        Record::parse(&b[..n], &self.path)
    }

    fn write(&self, r: &Record) -> io::Result<()> {
        self.file.write_all_at(&r.bytes(), 0)
    }

    /// Runs `f` on the record under the exclusive lock; writes it back if `f` says so. The
    /// lock is never waited for: a peer stopped (SIGSTOP) inside its few microseconds of
    /// critical section must not stop the others' loops. Busy: `WouldBlock`, try next round.
    fn update<T>(&self, f: impl FnOnce(&mut Record) -> (bool, T)) -> io::Result<T> {
        self.try_lock(false)?;
        let out = (|| {
            let mut r = self.read()?;
            let (changed, t) = f(&mut r);
            if changed {
                self.write(&r)?;
            }
            Ok(t)
        })();
        let _ = self.file.unlock();
        out
    }

    /// Takes the lock without waiting more than a few tries.
    fn try_lock(&self, shared: bool) -> io::Result<()> {
        for _ in 0..50 {
            let r = if shared {
                self.file.try_lock_shared()
            } else {
                self.file.try_lock()
            };
            match r {
                Ok(()) => return Ok(()),
                Err(std::fs::TryLockError::WouldBlock) => std::thread::yield_now(),
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "{}: another peer holds the lock (busy, or stopped inside it): trying again next round",
                self.path.display()
            ),
        ))
    }

    /// The record as it is (under a shared lock).
    ///
    /// # Errors
    /// The file cannot be read or holds something else, or the lock is busy (`WouldBlock`).
    pub fn current(&self) -> io::Result<Record> {
        self.try_lock(true)?;
        let r = self.read();
        let _ = self.file.unlock();
        r
    }

    /// Takes the lease if it is free, ended, or its holder is dead (`alive(name, pid)` says
    /// whether a holder still runs). A grant increments the counter.
    ///
    /// # Errors
    /// The file cannot be read or written.
    pub fn acquire(&self, alive: impl Fn(&str, u32) -> bool) -> io::Result<Result<Lease, Busy>> {
        let ttl = self.ttl.as_nanos() as u64;
        self.update(|r| {
            let now = mono_ns();
            let free = r.holder.is_empty()
                || now >= r.expiry_ns
                || (r.holder == self.me && r.pid == self.pid)
                || !alive(&r.holder, r.pid);
            if !free {
                return (false, Err(Busy::HeldBy(r.holder.clone())));
            }
            r.counter += 1;
            r.holder = self.me.clone();
            r.pid = self.pid;
            r.expiry_ns = now + ttl;
            (
                true,
                Ok(Lease {
                    token: r.counter,
                    expiry_ns: r.expiry_ns,
                }),
            )
        })
    }

    /// Extends the lease of grant `token`; `None` if it is no longer ours (ended and taken).
    ///
    /// # Errors
    /// The file cannot be read or written.
    pub fn renew(&self, token: u64) -> io::Result<Option<Lease>> {
        let ttl = self.ttl.as_nanos() as u64;
        self.update(|r| {
            let now = mono_ns();
            if r.counter != token || r.holder != self.me || r.pid != self.pid || now >= r.expiry_ns
            {
                return (false, None);
            }
            r.expiry_ns = now + ttl;
            (
                true,
                Some(Lease {
                    token,
                    expiry_ns: r.expiry_ns,
                }),
            )
        })
    }

    /// Gives grant `token` back (nothing if it is no longer ours).
    ///
    /// # Errors
    /// The file cannot be read or written.
    pub fn release(&self, token: u64) -> io::Result<bool> {
        self.update(|r| {
            if r.counter == token && r.holder == self.me && r.pid == self.pid {
                r.holder.clear();
                r.pid = 0;
                r.expiry_ns = 0;
                (true, true)
            } else {
                (false, false)
            }
        })
    }
}

/// What we read of one peer's region.
struct PeerView {
    name: String,
    reader: RegionReader,
    queue: IntReader,
    want: IntReader,
    force: IntReader,
    asked: IntReader,
}

/// The peers of one share in the runtime directory, read from their regions. New peers are
/// found by a scanner thread (opening a region of a process still starting waits for it, which
/// the main loop must never do); the board itself is read on the main loop, lock-free.
pub struct LocalBoard {
    dir: RuntimeDir,
    me: String,
    peers: Vec<PeerView>,
    found: Receiver<PeerView>,
    stop: Arc<AtomicBool>,
    scanner: Option<std::thread::JoinHandle<()>>,
    holder: Option<String>,
    /// A peer whose heartbeat is older than this (ns) is frozen (stopped): not a candidate.
    frozen_after_ns: u64,
}

impl std::fmt::Debug for LocalBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBoard")
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

/// How often the directory is scanned for new peers.
const SCAN_EVERY: Duration = Duration::from_millis(250);

/// The scanner's side: which region files it has looked at for good.
struct Scanner {
    dir: RuntimeDir,
    share: String,
    me: String,
    /// Region files (name, device, inode) handed over or found not to be peers. A region file
    /// is never reused: a new incarnation of a process makes a new file.
    seen: HashSet<(String, u64, u64)>,
    out: Sender<PeerView>,
}

impl Scanner {
    fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.scan();
            let t0 = std::time::Instant::now();
            while t0.elapsed() < SCAN_EVERY && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn scan(&mut self) {
        let Ok(names) = self.dir.process_names() else {
            return;
        };
        let uid = euid();
        for n in names {
            let name = n.as_str();
            if name == self.me {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(self.dir.region_path(&n)) else {
                continue;
            };
            // A region of another user is never a peer: it could claim any queue.
            if meta.uid() != uid || !meta.file_type().is_file() {
                continue;
            }
            let key = (name.to_owned(), meta.dev(), meta.ino());
            if self.seen.contains(&key) {
                continue;
            }
            // Not readable yet (a process starting): try again next scan.
            let Ok(reader) = RegionReader::open(&self.dir, &n) else {
                continue;
            };
            self.seen.insert(key);
            if let Some(p) = Self::peer(name, reader, &self.share) {
                if self.out.send(p).is_err() {
                    return;
                }
            }
        }
    }

    fn peer(name: &str, reader: RegionReader, share: &str) -> Option<PeerView> {
        if !reader.is_alive() {
            return None;
        }
        let s: StrReader = reader.string("share").ok()?;
        if s.get().ok()? != share {
            return None;
        }
        Some(PeerView {
            name: name.to_owned(),
            queue: reader.int("queue").ok()?,
            want: reader.int("want").ok()?,
            force: reader.int("force").ok()?,
            asked: reader.int("asked_ns").ok()?,
            reader,
        })
    }
}

impl Drop for LocalBoard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.scanner.take() {
            let _ = t.join();
        }
    }
}

impl LocalBoard {
    /// The board of share `share`, seen by peer `me`; a peer whose main loop has not beaten
    /// for `frozen_after` (the lease's TTL) is left out: it is stopped or stuck, and would win
    /// elections it cannot use.
    ///
    /// # Errors
    /// The scanner thread cannot start.
    pub fn new(
        dir: RuntimeDir,
        share: &str,
        me: &str,
        frozen_after: Duration,
    ) -> Result<LocalBoard, String> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let scanner = Scanner {
            dir: dir.clone(),
            share: share.to_owned(),
            me: me.to_owned(),
            seen: HashSet::new(),
            out: tx,
        };
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("svcshare-scan".into())
            .spawn(move || scanner.run(&st))
            .map_err(|e| format!("cannot start the peer scanner thread: {e}"))?;
        Ok(LocalBoard {
            frozen_after_ns: frozen_after.as_nanos() as u64,
            dir,
            me: me.to_owned(),
            peers: Vec::new(),
            found: rx,
            stop,
            scanner: Some(thread),
            holder: None,
        })
    }

    /// The board: `mine` (this peer's own entry) and every live peer's, with the holder.
    pub fn read(&mut self, mine: Entry, lock: &LocalLock) -> Board {
        let now = mono_ns();
        while let Ok(p) = self.found.try_recv() {
            // A new incarnation of a peer replaces the old one.
            self.peers.retain(|q| q.name != p.name);
            self.peers.push(p);
        }
        self.peers
            .retain(|p| p.reader.is_alive() && !p.reader.is_replaced());
        let mut entries = vec![mine];
        let wall = shvars::region::now_ns();
        for p in &self.peers {
            if wall.saturating_sub(p.reader.heartbeat_ns()) > self.frozen_after_ns {
                continue;
            }
            entries.push(Entry {
                name: p.name.clone(),
                queue: p.queue.get(),
                want: p.want.get() != 0,
                force: Force::from_i64(p.force.get()),
                asked_ns: p.asked.get(),
            });
        }
        // A busy lock file: the holder as last seen (acquiring checks again under the lock).
        if let Ok(r) = lock.current() {
            let live = !r.holder.is_empty()
                && now < r.expiry_ns
                && (r.holder == self.me || self.alive(&r.holder, r.pid));
            self.holder = live.then_some(r.holder);
        }
        Board {
            entries,
            holder: self.holder.clone(),
        }
    }

    /// Whether peer `name` with pid `pid` still runs (its region's owner is alive).
    pub fn alive(&self, name: &str, pid: u32) -> bool {
        if let Some(p) = self.peers.iter().find(|p| p.name == name) {
            return p.reader.is_alive() && p.reader.info().pid == pid;
        }
        match ProcName::new(name) {
            Ok(n) => {
                RegionReader::open(&self.dir, &n).is_ok_and(|r| r.is_alive() && r.info().pid == pid)
            }
            Err(_) => false,
        }
    }

    /// How many peers (besides this one) are seen.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_only_grows_and_a_live_holder_keeps_the_lease() {
        let d = tempfile::tempdir().unwrap();
        let a = LocalLock::open(d.path(), "s", "a", Duration::from_secs(5)).unwrap();
        let b = LocalLock::open(d.path(), "s", "b", Duration::from_secs(5)).unwrap();
        let la = a.acquire(|_, _| true).unwrap().unwrap();
        assert_eq!(la.token, 1);
        assert_eq!(
            b.acquire(|_, _| true).unwrap(),
            Err(Busy::HeldBy("a".into()))
        );
        assert_eq!(a.current().unwrap().counter, 1);
        // A dead holder's lease is taken over at once, with a higher token.
        let lb = b.acquire(|_, _| false).unwrap().unwrap();
        assert_eq!(lb.token, 2);
        assert_eq!(a.renew(1).unwrap(), None);
        assert!(!a.release(1).unwrap());
        assert!(b.release(2).unwrap());
        assert_eq!(a.acquire(|_, _| true).unwrap().unwrap().token, 3);
    }

    #[test]
    fn an_ended_lease_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let a = LocalLock::open(d.path(), "s", "a", Duration::from_millis(1)).unwrap();
        let b = LocalLock::open(d.path(), "s", "b", Duration::from_secs(5)).unwrap();
        a.acquire(|_, _| true).unwrap().unwrap();
        let t0 = mono_ns();
        while mono_ns() < t0 + 2_000_000 {
            std::hint::spin_loop();
        }
        assert_eq!(b.acquire(|_, _| true).unwrap().unwrap().token, 2);
    }

    #[test]
    fn planted_or_loose_lock_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("elsewhere");
        std::fs::write(&target, b"").unwrap();
        std::os::unix::fs::symlink(&target, d.path().join("l.svcshare.lock")).unwrap();
        let e = LocalLock::open(d.path(), "l", "a", Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        let p = d.path().join("m.svcshare.lock");
        std::fs::write(&p, b"").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = LocalLock::open(d.path(), "m", "a", Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("mode 666"), "{e}");
        std::fs::write(d.path().join("g.svcshare.lock"), b"garbage here").unwrap();
        std::fs::set_permissions(
            d.path().join("g.svcshare.lock"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let g = LocalLock::open(d.path(), "g", "a", Duration::from_secs(1)).unwrap();
        let e = g.acquire(|_, _| true).unwrap_err().to_string();
        assert!(e.contains("not a svcshare lock record"), "{e}");
    }
}
