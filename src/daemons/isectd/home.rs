//! isectd's own directory `DIR/NAME.isd/` (mode 0700) and what it keeps there: the saved state
//! (`state.json`, written atomically), the workers' log files (`worker.N.log`, rotated to
//! `worker.N.log.1`) and the notify socket (`notify.sock`). The runtime directory may be shared
//! by every local user: the directory is made ours alone, and every file in it is opened
//! without following links and refused unless it is ours.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use shvars::{ProcName, RuntimeDir};

use crate::support::files::{euid, kind_text, open_log, user_text, NOFOLLOW};

/// isectd's directory.
#[derive(Debug, Clone)]
pub struct Home {
    path: PathBuf,
}

fn refused(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: {why}", path.display()),
    )
}

impl Home {
    /// Makes (or checks) `DIR/NAME.isd/`: a directory of ours, mode 0700, not a link.
    ///
    /// # Errors
    /// If something else is in its place (named in the message).
    pub fn open(dir: &RuntimeDir, name: &ProcName) -> io::Result<Home> {
        let path = dir.path().join(format!("{name}.isd"));
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
        let m = fs::symlink_metadata(&path)?;
        if !m.is_dir() {
            return Err(refused(
                &path,
                format!(
                    "is {}, not isectd's directory: remove it",
                    kind_text(m.file_type())
                ),
            ));
        }
        if m.uid() != euid() {
            return Err(refused(
                &path,
                format!(
                    "belongs to {}, not to us ({}): another user has taken the name; use another -n or --dir",
                    user_text(m.uid()),
                    user_text(euid())
                ),
            ));
        }
        if m.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
        }
        Ok(Home { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file in it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The log file of worker `id`.
    pub fn log_path(&self, id: u32) -> PathBuf {
        self.file(&format!("worker.{id}.log"))
    }

    /// Opens worker `id`'s log for appending (as [`open_log`]: no links, ours, one name).
    ///
    /// # Errors
    /// If it cannot be opened safely.
    pub fn open_log(&self, id: u32) -> io::Result<File> {
        open_log(&self.log_path(id))
    }

    /// Opens log file `name` in the directory for appending (as [`open_log`]).
    ///
    /// # Errors
    /// If it cannot be opened safely.
    pub fn open_log_named(&self, name: &str) -> io::Result<File> {
        open_log(&self.file(name))
    }

    /// The last `lines` lines of log file `name`.
    ///
    /// # Errors
    /// If it cannot be read.
    pub fn tail_named(&self, name: &str, lines: usize) -> io::Result<String> {
        tail_of(&self.file(name), lines)
    }

    /// Rotates worker `id`'s log once it is larger than `max` bytes: its content goes to
    /// `worker.N.log.1` (replacing the older one) and it is truncated. The worker keeps writing
    /// (its descriptor appends); what it writes between the copy and the truncation is lost.
    /// Returns whether it rotated.
    ///
    /// # Errors
    /// If the files cannot be read or written.
    pub fn rotate_log(&self, id: u32, max: u64) -> io::Result<bool> {
        let path = self.log_path(id);
        let mut f = match open_checked(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if f.metadata()?.len() <= max {
            return Ok(false);
        }
        let old = self.file(&format!("worker.{id}.log.1"));
        let tmp = self.file(&format!("worker.{id}.log.1.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(NOFOLLOW)
            .open(&tmp)?;
        io::copy(&mut f, &mut out)?;
        fs::rename(&tmp, &old)?;
        drop(f);
        OpenOptions::new()
            .write(true)
            .custom_flags(NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&path)?
            .set_len(0)?;
        Ok(true)
    }

    /// The last `lines` lines of worker `id`'s log (at most 64 KiB of it).
    pub fn tail(&self, id: u32, lines: usize) -> io::Result<String> {
        tail_of(&self.log_path(id), lines)
    }

    /// Writes `data` as file `name`, atomically: a reader (or a restarted isectd) sees the old
    /// content or the new, never a part.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn write_atomic(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let tmp = self.file(&format!("{name}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(NOFOLLOW)
            .open(&tmp)?;
        f.write_all(data)?;
        drop(f);
        fs::rename(&tmp, self.file(name))
    }

    /// Reads file `name` if it exists, refusing anything but a regular file of ours with one
    /// name.
    ///
    /// # Errors
    /// If it is not what it should be, or cannot be read.
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match open_checked(&self.file(name)) {
            Ok(f) => {
                let mut v = Vec::new();
                f.take(64 << 20).read_to_end(&mut v)?;
                Ok(Some(v))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes file `name` (gone already is fine).
    pub fn remove(&self, name: &str) {
        let _ = fs::remove_file(self.file(name));
    }
}

fn tail_of(path: &Path, lines: usize) -> io::Result<String> {
    let mut f = match open_checked(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let from = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let mut all: Vec<&str> = text.lines().collect();
    if from > 0 && !all.is_empty() {
        all.remove(0); // cut in the middle
    }
    let start = all.len().saturating_sub(lines);
    Ok(all[start..].join("\n"))
}

/// Opens a file read-only without following a link, and checks it is a regular file of ours
/// with a single name.
fn open_checked(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
                refused(path, "is a symbolic link: refusing it")
            } else {
                e
            }
        })?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(refused(
            path,
            format!("is {}, not a regular file", kind_text(m.file_type())),
        ));
    }
    if m.uid() != euid() {
        return Err(refused(
            path,
            format!("belongs to {}, not to us", user_text(m.uid())),
        ));
    }
    if m.nlink() != 1 {
        return Err(refused(path, "has several names (hard links): refusing it"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_ours_and_written_whole() {
        let d = tempfile::tempdir().unwrap();
        let h = Home::open(&RuntimeDir::at(d.path()), &ProcName::new("isd1").unwrap()).unwrap();
        h.write_atomic("state.json", b"{}").unwrap();
        assert_eq!(h.read("state.json").unwrap().unwrap(), b"{}");
        std::os::unix::fs::symlink("/etc/passwd", h.file("evil")).unwrap();
        assert!(h
            .read("evil")
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        assert_eq!(h.read("none").unwrap(), None);
        let mut f = h.open_log(3).unwrap();
        for i in 0..100 {
            writeln!(f, "line {i}").unwrap();
        }
        assert_eq!(h.tail(3, 2).unwrap(), "line 98\nline 99");
        assert!(h.rotate_log(3, 100).unwrap());
        writeln!(f, "after").unwrap();
        assert_eq!(h.tail(3, 5).unwrap(), "after");
        let old = fs::read_to_string(h.file("worker.3.log.1")).unwrap();
        assert!(old.ends_with("line 99\n"));
    }
}
