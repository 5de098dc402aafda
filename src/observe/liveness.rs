//! Whether a process runs: the one [`Liveness`] every tool and the metrics use, computed here
//! once from its region (the owner's lock is the truth; pids are only for people).

use std::fmt;
use std::os::unix::fs::MetadataExt;

use serde::Serialize;
use shvars::region::{OpenError, RegionReader, Value, STATE_STOPPED};
use shvars::{DirError, ProcName, RuntimeDir};

use crate::framework::state::RunState;

/// What a process's region says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Its owner runs.
    Alive,
    /// Its owner is still declaring its variables.
    Starting,
    /// It ended cleanly (`exit`, SIGTERM).
    Stopped,
    /// It died (killed, crashed): its files are stale.
    Stale,
    /// The region a reader holds is no longer the process's: a new owner took the name.
    Replaced,
    /// Its region cannot be read (damaged, not a region, planted).
    Bad,
}

impl Liveness {
    /// The word the tools print (`alive`, `stale`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Starting => "starting",
            Liveness::Stopped => "stopped",
            Liveness::Stale => "stale",
            Liveness::Replaced => "replaced",
            Liveness::Bad => "bad",
        }
    }

    /// Whether the owner runs (alive or starting).
    pub fn is_running(self) -> bool {
        matches!(self, Liveness::Alive | Liveness::Starting)
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The liveness of an open region, and the seconds since its owner's last heartbeat.
pub fn of_reader(r: &RegionReader) -> (Liveness, f64) {
    let info = r.info();
    let l = if r.is_replaced() {
        Liveness::Replaced
    } else if r.is_alive() {
        Liveness::Alive
    } else if info.state == STATE_STOPPED {
        Liveness::Stopped
    } else {
        Liveness::Stale
    };
    let age = shvars::region::now_ns().saturating_sub(info.heartbeat_ns) as f64 / 1e9;
    (l, age)
}

/// What a quick look at a process gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Alive, stopped, ...
    pub liveness: Liveness,
    /// The pid in its region (0 when the region is unreadable).
    pub pid: u32,
    /// The uid its region file belongs to.
    pub uid: u32,
}

/// Looks at process `name` without keeping anything open.
///
/// # Errors
/// The region does not exist or cannot be read and no live owner holds it.
pub fn probe(dir: &RuntimeDir, name: &ProcName) -> Result<Probe, OpenError> {
    let path = dir.region_path(name);
    let uid = std::fs::symlink_metadata(&path)
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    match RegionReader::open(dir, name) {
        Ok(r) => {
            let (liveness, _) = of_reader(&r);
            let liveness = if liveness == Liveness::Replaced {
                // Replaced between our open and our look: it runs again.
                Liveness::Alive
            } else {
                liveness
            };
            Ok(Probe {
                liveness,
                pid: r.info().pid,
                uid,
            })
        }
        // A damaged region does not stop a live owner from taking commands: its lock still
        // says whether it runs.
        Err(
            e @ (OpenError::Corrupt { .. } | OpenError::TooNew { .. } | OpenError::NotReady { .. }),
        ) => match shvars::region::owner_alive(&path) {
            Some(true) => Ok(Probe {
                liveness: if matches!(e, OpenError::NotReady { .. }) {
                    Liveness::Starting
                } else {
                    Liveness::Alive
                },
                pid: 0,
                uid,
            }),
            _ => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// What `shvar list` shows of one process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    /// Name.
    pub name: String,
    /// Pid recorded in its region.
    pub pid: u32,
    /// Alive, stopped, stale, bad...
    pub status: Liveness,
    /// Run state label, if it has a `runstate` variable.
    pub runstate: Option<String>,
    /// Seconds since the last heartbeat of its main loop.
    pub heartbeat_age: Option<f64>,
    /// Why the region is unreadable.
    pub error: Option<String>,
}

/// The label of a `runstate` value.
pub fn runstate_text(v: &Value) -> String {
    match v {
        Value::Int(i) => RunState::from_value(*i)
            .map(|s| s.label().to_owned())
            .unwrap_or_else(|| i.to_string()),
        other => other.to_string(),
    }
}

/// The status of one process.
pub fn process_status(dir: &RuntimeDir, name: &ProcName) -> ProcessStatus {
    match RegionReader::open(dir, name) {
        Err(e) => ProcessStatus {
            name: name.to_string(),
            pid: 0,
            status: match &e {
                OpenError::NotReady { .. } => Liveness::Starting,
                _ => Liveness::Bad,
            },
            runstate: None,
            heartbeat_age: None,
            error: Some(e.to_string()),
        },
        Ok(r) => {
            let (status, age) = of_reader(&r);
            let runstate = r
                .find("runstate")
                .ok()
                .and_then(|v| r.read(&v).ok())
                .map(|v| runstate_text(&v));
            ProcessStatus {
                name: name.to_string(),
                pid: r.info().pid,
                status,
                runstate,
                heartbeat_age: Some(age),
                error: None,
            }
        }
    }
}

/// The status of every process in `dir`.
///
/// # Errors
/// If the directory cannot be read.
pub fn list(dir: &RuntimeDir) -> Result<Vec<ProcessStatus>, DirError> {
    Ok(dir
        .process_names()?
        .iter()
        .map(|n| process_status(dir, n))
        .collect())
}

/// How a process that is not running is started again, from what its region recorded: its
/// supervisor, or its command line and directory. `None` if the region says nothing usable.
pub fn how_to_start(dir: &RuntimeDir, name: &ProcName) -> Option<String> {
    let r = RegionReader::open(dir, name).ok()?;
    let text = |v: &str| {
        r.find(v)
            .ok()
            .and_then(|v| r.read(&v).ok())
            .map(|v| v.to_string())
            .filter(|s| !s.is_empty())
    };
    if let Some(sup) = text("supervisor") {
        return Some(match supervisor_command(&sup) {
            Some((by, cmd)) => format!(
                "it is managed by {by}: `shvar cmd {by} {cmd}` starts it again (or `spyctl launch {name}`)"
            ),
            None => format!("it is managed by {sup}: start it through its supervisor"),
        });
    }
    let cmd = text("cmdline")?;
    Some(match text("cwd") {
        Some(cwd) => format!(
            "start it again with `cd {} && {cmd}` (or `spyctl launch {name}`)",
            crate::control::words::quote(&cwd)
        ),
        None => format!("start it again with `{cmd}` (or `spyctl launch {name}`)"),
    })
}

/// The supervisor and its command that starts a process again, from its `supervisor` variable
/// (`DAQPROC_SUPERVISOR`): `"isd1: start daq"` is `("isd1", "start daq")`. `None` for free text.
pub fn supervisor_command(text: &str) -> Option<(ProcName, String)> {
    let (by, cmd) = text.split_once(": ")?;
    let by = ProcName::new(by.trim()).ok()?;
    let cmd = cmd.trim();
    (!cmd.is_empty()).then(|| (by, cmd.to_owned()))
}
