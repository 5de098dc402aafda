//! Errors of the variable region, one type per operation.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Creating (owning) a region failed.
#[derive(Debug, Error)]
pub enum CreateError {
    /// Another live process owns the region.
    #[error(
        "{name} is already running as pid {pid} (stop it first, or pick another name with -n)"
    )]
    AlreadyRunning {
        /// The process name.
        name: String,
        /// The live owner's pid (0 if its header could not be read).
        pid: u32,
    },
    /// The file system refused.
    #[error("cannot create the region {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (in the message; not a `source`, which `{:#}` would print twice).
        error: io::Error,
    },
    /// The requested capacities are unusable.
    #[error("bad region size: {0}")]
    BadSize(String),
    /// The region of a dead owner is locked by someone else (a squatter), in a file this user
    /// may not replace.
    #[error(
        "{name} cannot start: its region {} is locked by {holders}, not by a live {name} (its \
         last owner, pid {pid}, is gone), and the file belongs to uid {uid}, so we may not \
         replace it. Ask that user or root to stop the locker and remove the file, or use \
         another name (-n) or runtime directory (--dir)",
        path.display()
    )]
    Squatted {
        /// The process name.
        name: String,
        /// The region file.
        path: PathBuf,
        /// The dead owner recorded in it.
        pid: u32,
        /// The file's owner.
        uid: u32,
        /// Who holds a lock on it, from /proc/locks.
        holders: String,
    },
}

/// Opening a region for reading failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// There is no region file.
    #[error("no process named {name} in {dir} (`shvar list` shows the processes there)")]
    NotFound {
        /// The process name.
        name: String,
        /// The runtime directory.
        dir: String,
    },
    /// The file could not be opened or mapped.
    #[error("cannot open the region {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (in the message; not a `source`, which `{:#}` would print twice).
        error: io::Error,
    },
    /// The file is not a region, is damaged or truncated.
    #[error("{} is not a usable variable region: {why} (remove it with `shvar cleanup` if its owner is dead)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The file was written by a newer version of the framework.
    #[error("{} has region format version {found}, this tool reads up to {supported}: use a newer shvar", path.display())]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// Ours.
        supported: u32,
    },
    /// The file was written by an older version of the framework.
    #[error("{} has region format version {found}, this tool reads only version {supported}: the process runs an older framework; restart it with the current one, or read it with the shvar of its version", path.display())]
    TooOld {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// Ours.
        supported: u32,
    },
    /// The owner is still creating it.
    #[error("{} is still being created by its owner; try again", path.display())]
    NotReady {
        /// The file.
        path: PathBuf,
    },
}

/// Reading a value failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// No variable of that name.
    #[error("{process} has no variable {var}{hint}")]
    NoSuchVar {
        /// The process.
        process: String,
        /// The name asked for.
        var: String,
        /// A suggestion.
        hint: String,
    },
    /// The owner retired the variable.
    #[error("variable {var} was removed by its owner{}", removed_text(*removed_ns))]
    Removed {
        /// The variable.
        var: String,
        /// When, ns since the epoch (0 if unknown).
        removed_ns: u64,
    },
    /// A string kept changing during every retry.
    #[error("variable {0} is being rewritten too often to read a stable value; try again")]
    Busy(String),
    /// The slot holds something impossible.
    #[error("variable {var} is damaged: {why}")]
    Corrupt {
        /// The variable.
        var: String,
        /// What is wrong.
        why: String,
    },
}

/// A value was refused by the owner.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SetError {
    /// No variable of that name.
    #[error("no variable {var}{hint}")]
    NoSuchVar {
        /// The name asked for.
        var: String,
        /// A suggestion.
        hint: String,
    },
    /// The variable is read-only.
    #[error("variable {0} is read-only (R): only the process itself changes it")]
    ReadOnly(String),
    /// The text is not a value of the variable's type.
    #[error("bad value {value:?} for {var}: {why}")]
    BadValue {
        /// The variable.
        var: String,
        /// The text given.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// The value is outside the variable's limits.
    #[error("value {value} for {var} is out of range ({})", range_text(*min, *max))]
    OutOfRange {
        /// The variable.
        var: String,
        /// The text given.
        value: String,
        /// Lower limit.
        min: Option<f64>,
        /// Upper limit.
        max: Option<f64>,
    },
    /// The variable cannot be changed now.
    #[error("variable {var} cannot be changed in {state}: {why}")]
    NotNow {
        /// The variable.
        var: String,
        /// The current run state.
        state: String,
        /// Why.
        why: String,
    },
}

fn removed_text(ns: u64) -> String {
    if ns == 0 {
        String::new()
    } else {
        format!(" at {}", super::utc_text(ns))
    }
}

fn range_text(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("allowed {a} to {b}"),
        (Some(a), None) => format!("must be at least {a}"),
        (None, Some(b)) => format!("must be at most {b}"),
        (None, None) => "no limits".to_owned(),
    }
}

/// Adding a variable to a region failed.
#[derive(Debug, Error)]
pub enum AddError {
    /// A variable of that name exists.
    #[error("variable {0} already exists")]
    Duplicate(String),
    /// The spec is inconsistent.
    #[error("bad variable spec: {0}")]
    BadSpec(String),
    /// The region is full.
    #[error("region full: no room for variable {name} ({what}); create the region with larger capacities")]
    Full {
        /// The variable.
        name: String,
        /// Which area ran out.
        what: &'static str,
    },
    /// The file could not grow.
    #[error("cannot grow the region {}: {error}", path.display())]
    Grow {
        /// The file.
        path: PathBuf,
        /// The cause (in the message; not a `source`, which `{:#}` would print twice).
        error: io::Error,
    },
    /// The variable exists with another type.
    #[error("variable {name} is {found}, not {wanted}")]
    WrongType {
        /// The variable.
        name: String,
        /// Its type.
        found: &'static str,
        /// The type asked for.
        wanted: &'static str,
    },
}

/// Retiring a variable failed.
#[derive(Debug, Error)]
pub enum RetireError {
    /// No live variable of that name (or handle).
    #[error("no variable {0} to retire (never added, or already retired)")]
    NoSuchVar(String),
    /// The schema could not grow to record the retirement.
    #[error(transparent)]
    Region(#[from] AddError),
}
