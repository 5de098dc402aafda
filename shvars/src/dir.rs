//! The runtime directory and the names of the things in it.
//!
//! This module owns the rules for where a process's files live and for which names are
//! acceptable. A process name ends up in file names, so everything that could escape the runtime
//! directory (`/`, `..`, control characters, an empty name) is refused here, once, for every tool.
//! It never creates anything but the directory itself.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Longest process name, in bytes.
pub const MAX_PROC_NAME: usize = 31;
/// Longest variable name, in bytes.
pub const MAX_VAR_NAME: usize = 63;
/// File name suffix of a variable region.
pub const REGION_SUFFIX: &str = ".shv";
/// File name suffix of a control FIFO.
pub const CTL_SUFFIX: &str = ".ctl";
/// File name suffix of a control socket.
pub const SOCK_SUFFIX: &str = ".sock";

/// A name was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("invalid {what} {shown}: {why}")]
pub struct NameError {
    what: &'static str,
    shown: String,
    why: String,
}

impl NameError {
    fn new(what: &'static str, name: &str, why: impl Into<String>) -> Self {
        NameError {
            what,
            shown: format!("{name:?}"),
            why: why.into(),
        }
    }
}

fn check_name(what: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::new(what, name, "it is empty"));
    }
    if name.len() > max {
        return Err(NameError::new(
            what,
            name,
            format!("it is {} bytes long, the limit is {max}", name.len()),
        ));
    }
    if name == "." || name == ".." {
        return Err(NameError::new(what, name, "it would name a directory"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError::new(
            what,
            name,
            format!("character {c:?} is not allowed (use letters, digits, '_', '.', '-')"),
        ));
    }
    Ok(())
}

/// A validated process name: 1 to 31 characters of `[A-Za-z0-9_.-]`, never `.` or `..`.
///
/// # Examples
/// ```
/// use shvars::ProcName;
/// assert!(ProcName::new("spy1").is_ok());
/// assert!(ProcName::new("../etc/passwd").is_err());
/// assert!(ProcName::new("..").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcName(String);

impl ProcName {
    /// Validates `name`.
    ///
    /// # Errors
    /// A [`NameError`] saying which rule the name breaks.
    pub fn new(name: &str) -> Result<Self, NameError> {
        check_name("process name", name, MAX_PROC_NAME)?;
        Ok(ProcName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProcName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ProcName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        ProcName::new(s)
    }
}

/// Validates a variable name: 1 to 63 characters of `[A-Za-z0-9_.-]`.
///
/// # Errors
/// A [`NameError`] saying which rule the name breaks.
pub fn check_var_name(name: &str) -> Result<(), NameError> {
    check_name("variable name", name, MAX_VAR_NAME)
}

/// Validates a bare file name inside the runtime directory (a reply FIFO token, a buffer name):
/// 1 to 100 characters of `[A-Za-z0-9_.-]`, never `.` or `..`.
///
/// # Errors
/// A [`NameError`] saying which rule the name breaks.
pub fn check_file_name(what: &'static str, name: &str) -> Result<(), NameError> {
    check_name(what, name, 100)
}

/// The runtime directory could not be found or made.
#[derive(Debug, Error)]
#[error("runtime directory {}: {source} (set SHVAR_DIR or pass --dir to use another one)", path.display())]
pub struct DirError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// The directory that holds every process's files (`NAME.shv`, `NAME.ctl`) and, by default,
/// the circular buffers named by a bare name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// Uses `path` as the runtime directory.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        RuntimeDir { path: path.into() }
    }

    /// The default runtime directory: `$SHVAR_DIR`, else `/dev/shm/shvars`, else
    /// `$XDG_RUNTIME_DIR/shvars`, else `/tmp/shvars-$UID`.
    pub fn from_env() -> Self {
        if let Some(d) = std::env::var_os("SHVAR_DIR").filter(|d| !d.is_empty()) {
            return RuntimeDir::at(d);
        }
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            return RuntimeDir::at(shm.join("shvars"));
        }
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return RuntimeDir::at(PathBuf::from(d).join("shvars"));
        }
        RuntimeDir::at(format!("/tmp/shvars-{}", nix::unistd::getuid()))
    }

    /// `dir` if given (a `--dir` option), else [`RuntimeDir::from_env`].
    pub fn resolve(dir: Option<&Path>) -> Self {
        match dir {
            Some(d) => RuntimeDir::at(d),
            None => RuntimeDir::from_env(),
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory if it does not exist. The shared default under `/dev/shm` is made
    /// world-writable with the sticky bit (like `/tmp`) so every user's processes and reply FIFOs
    /// fit in it; any other directory is made `0755`.
    ///
    /// # Errors
    /// A [`DirError`] naming the directory when it cannot be created or is not a directory.
    pub fn ensure(&self) -> Result<(), DirError> {
        let err = |source| DirError {
            path: self.path.clone(),
            source,
        };
        match fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists but is not a directory",
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let shared = self.path == Path::new("/dev/shm/shvars");
        let mode = if shared { 0o1777 } else { 0o755 };
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&self.path)
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
        if shared {
            // The umask may have removed bits; a shared directory needs them all.
            let _ = fs::set_permissions(&self.path, fs::Permissions::from_mode(mode));
        }
        Ok(())
    }

    /// Path of the variable region of process `name`.
    pub fn region_path(&self, name: &ProcName) -> PathBuf {
        self.path.join(format!("{name}{REGION_SUFFIX}"))
    }

    /// Path of the control FIFO of process `name`.
    pub fn ctl_path(&self, name: &ProcName) -> PathBuf {
        self.path.join(format!("{name}{CTL_SUFFIX}"))
    }

    /// Path of the control socket of process `name`.
    pub fn sock_path(&self, name: &ProcName) -> PathBuf {
        self.path.join(format!("{name}{SOCK_SUFFIX}"))
    }

    /// Path of a file with a validated bare name in this directory.
    ///
    /// # Errors
    /// A [`NameError`] if `name` is not a bare file name.
    pub fn file_path(&self, what: &'static str, name: &str) -> Result<PathBuf, NameError> {
        check_file_name(what, name)?;
        Ok(self.path.join(name))
    }

    /// Resolves a circular buffer name: an absolute path is used as given, a bare name lives in
    /// this directory.
    ///
    /// # Errors
    /// A [`NameError`] for a relative path with directories in it, or a bad bare name.
    pub fn buffer_path(&self, lname: &str) -> Result<PathBuf, NameError> {
        if lname.starts_with('/') {
            if lname.split('/').any(|c| c == "..") {
                return Err(NameError::new(
                    "buffer path",
                    lname,
                    "'..' is not allowed in a buffer path",
                ));
            }
            return Ok(PathBuf::from(lname));
        }
        self.file_path("buffer name", lname)
    }

    /// Resolves the name of a buffer that a producer is about to create (and may replace, if a
    /// stale buffer is there): as [`RuntimeDir::buffer_path`], and an absolute path must lie
    /// directly in a directory meant for buffers: this runtime directory, `/dev/shm`, `/tmp`,
    /// `$XDG_RUNTIME_DIR`, or one listed in `$SHVAR_BUFFER_DIRS` (colon-separated). So a
    /// command from a `--group` member cannot make a producer create (and, at exit, remove)
    /// files anywhere its owner may write.
    ///
    /// # Errors
    /// A [`NameError`] saying which directories are allowed.
    pub fn producer_buffer_path(&self, lname: &str) -> Result<PathBuf, NameError> {
        let path = self.buffer_path(lname)?;
        if !lname.starts_with('/') {
            return Ok(path);
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        let allowed = self.buffer_dirs();
        let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        let want = canon(parent);
        if allowed.iter().any(|d| canon(d) == want) {
            return Ok(path);
        }
        let list: Vec<String> = allowed.iter().map(|d| d.display().to_string()).collect();
        Err(NameError::new(
            "buffer path",
            lname,
            format!(
                "{} is not a directory for buffers; a producer creates buffers only directly in {} (add a directory to SHVAR_BUFFER_DIRS to allow it)",
                parent.display(),
                list.join(", ")
            ),
        ))
    }

    /// The directories a producer may create buffers in (see
    /// [`RuntimeDir::producer_buffer_path`]).
    pub fn buffer_dirs(&self) -> Vec<PathBuf> {
        let mut v = vec![
            self.path.clone(),
            PathBuf::from("/dev/shm"),
            PathBuf::from("/tmp"),
        ];
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            v.push(PathBuf::from(d));
        }
        if let Some(list) = std::env::var_os("SHVAR_BUFFER_DIRS") {
            v.extend(
                std::env::split_paths(&list)
                    .filter(|p| p.is_absolute())
                    .collect::<Vec<_>>(),
            );
        }
        v
    }

    /// The names of every process with a region in this directory, sorted.
    ///
    /// # Errors
    /// A [`DirError`] if the directory cannot be read. A directory that does not exist yet holds
    /// no process and is not an error.
    pub fn process_names(&self) -> Result<Vec<ProcName>, DirError> {
        let rd = match fs::read_dir(&self.path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(DirError {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let mut names: Vec<ProcName> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let f = e.file_name();
                let f = f.to_str()?;
                let stem = f.strip_suffix(REGION_SUFFIX)?;
                ProcName::new(stem).ok()
            })
            .collect();
        names.sort();
        Ok(names)
    }
}

impl fmt::Display for RuntimeDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["spy1", "B_1_1", "a", "x.y-z", &"a".repeat(31)] {
            assert!(ProcName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a b",
            "é",
            "a\0",
            &"a".repeat(32),
        ] {
            let e = ProcName::new(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid process name"), "{e}");
        }
    }

    #[test]
    fn buffer_paths() {
        let d = RuntimeDir::at("/run/x");
        assert_eq!(d.buffer_path("B_1_1").unwrap(), Path::new("/run/x/B_1_1"));
        assert_eq!(d.buffer_path("/tmp/B").unwrap(), Path::new("/tmp/B"));
        assert!(d.buffer_path("a/b").is_err());
        assert!(d.buffer_path("/tmp/../etc/passwd").is_err());
    }
}
