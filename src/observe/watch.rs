//! Following the variables of a process: what `shvar watch` and spyctl's `watch` print.
//!
//! A [`Watch`] polls the region (reads never disturb the owner), reports each value that changed
//! since the last look with the time of its change, follows a restart of the process (a new
//! owner re-creates the region), and, when watching every variable, picks up variables the
//! owner adds later.

use std::time::{Duration, Instant};

use shvars::region::{OpenError, ReadError, RegionReader, Value, VarRef, VarSpec};
use shvars::{ProcName, RuntimeDir};

/// A time of change (ns since the Unix epoch) as the tools print it: RFC 3339 UTC with
/// milliseconds, `-` for never.
pub fn time_text(ns: u64) -> String {
    if ns == 0 {
        return "-".to_owned();
    }
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// How often [`Watch::check`] looks at the process itself.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Opening a watch failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The region could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A variable does not exist.
    #[error(transparent)]
    Var(#[from] ReadError),
    /// The process restarted without a variable being watched.
    #[error("{process} restarted (pid {pid}): {missing}; see what it has now with `shvar list {process}`")]
    Lost {
        /// The process.
        process: String,
        /// Its new pid.
        pid: u32,
        /// Which variable is missing.
        missing: ReadError,
    },
}

/// A value that changed.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// Time of the change, ns since the Unix epoch.
    pub time_ns: u64,
    /// What the variable is.
    pub spec: &'a VarSpec,
    /// Its new value.
    pub value: &'a Value,
}

/// What [`Watch::check`] noticed about the process. Displays as what follows the process
/// name in a message: `restarted (pid 42)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// A new process took the name over (its pid).
    Restarted(u32),
    /// The owner runs again (its pid).
    Alive(u32),
    /// The owner stopped running (its last pid).
    Gone(u32),
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::Restarted(pid) => write!(f, "restarted (pid {pid})"),
            Note::Alive(pid) => write!(f, "(pid {pid}) is alive again"),
            Note::Gone(pid) => write!(f, "(pid {pid}) is no longer running"),
        }
    }
}

struct Watched {
    var: VarRef,
    last: Option<(Value, u64)>,
}

/// The variables of one process being followed.
pub struct Watch {
    dir: RuntimeDir,
    name: ProcName,
    names: Vec<String>,
    reader: RegionReader,
    watched: Vec<Watched>,
    alive: bool,
    last_check: Instant,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn resolve(r: &RegionReader, names: &[String]) -> Result<Vec<Watched>, ReadError> {
    let refs = if names.is_empty() {
        r.specs()
            .iter()
            .map(|s| r.find(&s.name))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        names
            .iter()
            .map(|n| r.find(n))
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(refs
        .into_iter()
        .map(|var| Watched { var, last: None })
        .collect())
}

impl Watch {
    /// Starts following variables `names` of process `name` (every variable if empty).
    ///
    /// # Errors
    /// If the region cannot be read or a variable does not exist (with a hint at close names).
    pub fn open(dir: &RuntimeDir, name: &ProcName, names: &[String]) -> Result<Watch, WatchError> {
        let reader = RegionReader::open(dir, name)?;
        let watched = resolve(&reader, names)?;
        Ok(Watch {
            dir: dir.clone(),
            name: name.clone(),
            names: names.to_vec(),
            alive: reader.is_alive(),
            reader,
            watched,
            last_check: Instant::now(),
        })
    }

    /// Whether the owner ran at the last look.
    pub fn alive(&self) -> bool {
        self.alive
    }

    /// Calls `f` for every variable whose value (or time of change) differs from the last
    /// poll — every variable on the first. Stops early when `f` returns false.
    ///
    /// # Errors
    /// The first error `f` returns.
    pub fn poll<E>(&mut self, mut f: impl FnMut(Change<'_>) -> Result<bool, E>) -> Result<(), E> {
        for w in &mut self.watched {
            let Ok(v) = self.reader.read(&w.var) else {
                continue;
            };
            let t = self.reader.changed_ns(&w.var);
            if w.last.as_ref().is_some_and(|(lv, lt)| *lv == v && *lt == t) {
                continue;
            }
            let go_on = f(Change {
                time_ns: t,
                spec: w.var.spec(),
                value: &v,
            })?;
            w.last = Some((v, t));
            if !go_on {
                break;
            }
        }
        Ok(())
    }

    /// At most every [`CHECK_EVERY`]: follows a restart of the process, notices it stopping or
    /// running again, and picks up new variables when watching all of them.
    ///
    /// # Errors
    /// [`WatchError::Lost`] if the process restarted without a variable being watched. (A
    /// region that cannot be opened yet, while the new owner creates it, is looked at again
    /// next time.)
    pub fn check(&mut self) -> Result<Option<Note>, WatchError> {
        if self.last_check.elapsed() < CHECK_EVERY {
            return Ok(None);
        }
        self.last_check = Instant::now();
        if self.reader.is_replaced() {
            if let Ok(r) = RegionReader::open(&self.dir, &self.name) {
                let pid = r.info().pid;
                self.watched = resolve(&r, &self.names).map_err(|missing| WatchError::Lost {
                    process: self.name.to_string(),
                    pid,
                    missing,
                })?;
                self.alive = r.is_alive();
                self.reader = r;
                return Ok(Some(Note::Restarted(pid)));
            }
        }
        if self.names.is_empty() && self.reader.refresh_schema().unwrap_or(false) {
            // The schema only grows, and `watched` follows it in order: the new variables are
            // the ones past the end of what is watched.
            let new: Vec<Watched> = self.reader.specs()[self.watched.len()..]
                .iter()
                .filter_map(|s| self.reader.find(&s.name).ok())
                .map(|var| Watched { var, last: None })
                .collect();
            self.watched.extend(new);
        }
        let now = self.reader.is_alive();
        if now != self.alive {
            self.alive = now;
            let pid = self.reader.info().pid;
            return Ok(Some(if now {
                Note::Alive(pid)
            } else {
                Note::Gone(pid)
            }));
        }
        Ok(None)
    }
}
