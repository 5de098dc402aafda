//! Following the variables of a process: what `shvar watch` and spyctl's `watch` print.
//!
//! A [`Watch`] reads the region's change log ([`shvars::region::ChangeReader`]): every change
//! of the watched variables, in the order the owner made them, with the time of each, and a
//! [`Event::Missed`] with the exact count when the watcher fell so far behind that the log was
//! overwritten (camonitor's overrun). While nothing happens it sleeps on the region's futex
//! word; the owner wakes it. It follows a restart of the process (a new owner re-creates the
//! region), picks up variables the owner adds that the patterns select, and reports those it
//! retires. [`WatchOpts`] are the command-line options both tools share; [`Printer`] formats
//! the events the same way for both.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap_complete::engine::ArgValueCompleter;
use serde_json::json;
use shvars::region::{
    AlarmStatus, ChangeEvent, ChangeKind, ChangeReader, OpenError, ReadError, RegionReader, Value,
    VarRef, VarSpec, VarType,
};
use shvars::{ProcName, RuntimeDir};

use super::names::{is_pattern, matches, ResolveError};

/// A time of change (ns since the Unix epoch) as the tools print it: RFC 3339 UTC with
/// milliseconds, `-` for never.
pub fn time_text(ns: u64) -> String {
    if ns == 0 {
        return "-".to_owned();
    }
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// How often [`Watch::next`] looks at the process itself (restart, liveness).
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Which time a line starts with (camonitor's `-t` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeMode {
    /// The time of the change, UTC (RFC 3339, microseconds)
    Abs,
    /// Seconds since the first line of the watch
    Rel,
    /// Seconds since the previous line
    Inc,
    /// No time
    None,
}

/// The options of a watch, shared by `shvar watch` and spyctl's `watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchOpts {
    /// Variables: names or shell-style patterns ('row.*.value'), all of them if none. Variables
    /// added later that a pattern selects are watched from then on
    #[arg(value_name = "VAR", add = ArgValueCompleter::new(super::complete::variable_name))]
    pub vars: Vec<String>,
    /// Timestamps: abs (time of the change, UTC), rel (seconds since the first line), inc
    /// (seconds since the previous line), none
    #[arg(
        short = 't',
        long = "time",
        value_enum,
        default_value = "abs",
        value_name = "MODE"
    )]
    pub time: TimeMode,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
    /// Stop after N values (the current values printed first count too)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// FLOAT variables: print a change only when it differs from the last value printed by
    /// more than X (EPICS MDEL); other changes are not printed
    #[arg(long, value_name = "X", value_parser = parse_deadband)]
    pub deadband: Option<f64>,
    /// Enums as numbers, not labels
    #[arg(long)]
    pub raw: bool,
    /// Do not print the current values first, only changes
    #[arg(long)]
    pub changes_only: bool,
    /// Ignored (kept for old scripts): changes are read from the change log as they happen,
    /// not sampled
    #[arg(short, long, value_name = "DURATION", hide = true)]
    pub interval: Option<String>,
}

fn parse_deadband(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("{s:?} is not a deadband (a number >= 0, e.g. 0.5)")),
    }
}

/// Watching failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The region could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A variable does not exist.
    #[error(transparent)]
    Var(#[from] ReadError),
    /// A name does not resolve.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The region records no changes.
    #[error("{0} keeps no change log (its region was created without one): its changes cannot be watched; read its values with `shvar get`")]
    NoLog(String),
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

/// What a value line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The value when the watch started (or the process restarted).
    Current,
    /// A change.
    Changed,
    /// The variable was just added, with this value.
    Added,
}

/// What a watch reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// A value of a watched variable.
    Value {
        /// Time of the change, ns since the Unix epoch.
        time_ns: u64,
        /// The variable.
        spec: Arc<VarSpec>,
        /// Its value.
        value: Value,
        /// What the line is.
        origin: Origin,
        /// Sequence number of the change in the process's change log (None for current values).
        seq: Option<u64>,
    },
    /// A watched variable was retired by its owner.
    Removed {
        /// When, ns since the Unix epoch.
        time_ns: u64,
        /// The variable.
        spec: Arc<VarSpec>,
    },
    /// The change log was overwritten before these many changes of the process (of any of its
    /// variables, watched or not) were read.
    Missed(u64),
    /// Something happened to the process.
    Note(Note),
}

struct Watched {
    var: VarRef,
    /// The last value printed, for the deadband.
    last: Option<f64>,
}

/// The variables of one process being followed.
pub struct Watch {
    dir: RuntimeDir,
    name: ProcName,
    patterns: Vec<String>,
    deadband: Option<f64>,
    reader: RegionReader,
    changes: ChangeReader,
    watched: HashMap<u32, Watched>,
    queue: VecDeque<Event>,
    /// The schema was read since the last resync.
    schema_moved: bool,
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

impl Watch {
    /// Starts following the variables `opts.vars` selects of process `name`; unless
    /// `opts.changes_only`, their current values are the first events.
    ///
    /// # Errors
    /// If the region cannot be read, keeps no change log, or a plain name is not a variable
    /// (with a hint at close names).
    pub fn open(dir: &RuntimeDir, name: &ProcName, opts: &WatchOpts) -> Result<Watch, WatchError> {
        let reader = RegionReader::open(dir, name)?;
        let changes = reader
            .changes()
            .ok_or_else(|| WatchError::NoLog(name.to_string()))?;
        let mut w = Watch {
            dir: dir.clone(),
            name: name.clone(),
            patterns: opts.vars.clone(),
            deadband: opts.deadband,
            alive: reader.is_alive(),
            reader,
            changes,
            watched: HashMap::new(),
            queue: VecDeque::new(),
            schema_moved: false,
            last_check: Instant::now(),
        };
        w.select(!opts.changes_only)?;
        Ok(w)
    }

    /// The variables the patterns select now, in region order; their current values queued.
    fn select(&mut self, current: bool) -> Result<(), WatchError> {
        for p in self.patterns.iter().filter(|p| !is_pattern(p)) {
            self.reader.find(p)?;
        }
        self.watched.clear();
        let specs: Vec<Arc<VarSpec>> = self
            .reader
            .specs()
            .iter()
            .filter(|s| self.selects(&s.name))
            .cloned()
            .collect();
        for spec in specs {
            let Ok(var) = self.reader.find(&spec.name) else {
                continue;
            };
            let mut w = Watched { var, last: None };
            if current {
                if let Ok(value) = self.reader.read(&w.var) {
                    w.last = number(&value);
                    self.queue.push_back(Event::Value {
                        time_ns: self.reader.changed_ns(&w.var),
                        spec: spec.clone(),
                        value,
                        origin: Origin::Current,
                        seq: None,
                    });
                }
            }
            self.watched.insert(spec.id, w);
        }
        Ok(())
    }

    fn selects(&self, name: &str) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| matches(p, name))
    }

    /// The patterns that select no variable now (a table whose rows are not there yet).
    pub fn unmatched(&self) -> Vec<String> {
        self.patterns
            .iter()
            .filter(|p| {
                !self
                    .watched
                    .values()
                    .any(|w| matches(p, &w.var.spec().name))
            })
            .cloned()
            .collect()
    }

    /// Whether the owner ran at the last look.
    pub fn alive(&self) -> bool {
        self.alive
    }

    /// Entries of the process's change log.
    pub fn log_capacity(&self) -> u64 {
        self.changes.capacity()
    }

    /// The next event, waiting for it up to `timeout` (sleeping on the region's futex word);
    /// `None` if nothing happened meanwhile.
    ///
    /// # Errors
    /// [`WatchError::Lost`] if the process restarted without a variable named plainly.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Event>, WatchError> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Ok(Some(e));
            }
            if let Some(ev) = self.changes.next_event() {
                self.take(ev);
                continue;
            }
            if let Some(note) = self.check()? {
                return Ok(Some(Event::Note(note)));
            }
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            let check_in = (self.last_check + CHECK_EVERY).saturating_duration_since(now);
            self.changes
                .wait((until - now).min(check_in).max(Duration::from_millis(1)));
        }
    }

    /// Turns a log entry into the events it means for this watch.
    fn take(&mut self, ev: ChangeEvent) {
        let ch = match ev {
            ChangeEvent::Missed(n) => {
                self.queue.push_back(Event::Missed(n));
                self.resync();
                return;
            }
            ChangeEvent::Change(ch) => ch,
        };
        if ch.kind == ChangeKind::Added {
            // The schema has it already (the entry follows the schema line).
            if self.reader.refresh_schema().unwrap_or(false) {
                self.schema_moved = true;
            }
            let Some(spec) = self.reader.spec_by_id(ch.id).cloned() else {
                return;
            };
            if !self.selects(&spec.name) {
                return;
            }
            let Ok(var) = self.reader.find(&spec.name) else {
                // Retired again already: its retirement entry follows.
                return;
            };
            self.watched.insert(ch.id, Watched { var, last: None });
        }
        let Some(w) = self.watched.get_mut(&ch.id) else {
            return;
        };
        let spec = w.var.spec().clone();
        let spec = Arc::new(spec);
        if ch.kind == ChangeKind::Retired {
            self.watched.remove(&ch.id);
            self.queue.push_back(Event::Removed {
                time_ns: ch.time_ns,
                spec,
            });
            return;
        }
        let value = match &spec.ty {
            VarType::Integer | VarType::Enum { .. } => Value::Int(ch.raw as i64),
            VarType::Float => Value::Float(f64::from_bits(ch.raw)),
            // The text is in the slot (the entry has its version): what it holds now.
            VarType::String { .. } => match self.reader.read(&w.var) {
                Ok(v) => v,
                Err(_) => return,
            },
        };
        if let (Some(db), VarType::Float, Some(x)) = (self.deadband, &spec.ty, number(&value)) {
            if let Some(last) = w.last {
                if (x - last).abs() <= db && ch.kind != ChangeKind::Added {
                    return;
                }
            }
        }
        w.last = number(&value);
        self.queue.push_back(Event::Value {
            time_ns: ch.time_ns,
            spec,
            value,
            origin: if ch.kind == ChangeKind::Added {
                Origin::Added
            } else {
                Origin::Changed
            },
            seq: Some(ch.seq),
        });
    }

    /// After missed changes: what was added or retired meanwhile is not in what was read, so
    /// the selection is made again from the schema; variables that came are reported with
    /// their current values, those that went as removed.
    fn resync(&mut self) {
        let changed = self.reader.refresh_schema().unwrap_or(false);
        if !(changed || std::mem::take(&mut self.schema_moved)) {
            return;
        }
        let gone: Vec<u32> = self
            .watched
            .keys()
            .filter(|id| {
                self.reader
                    .spec_by_id(**id)
                    .is_none_or(|s| self.reader.spec(&s.name).is_none_or(|l| l.id != **id))
            })
            .copied()
            .collect();
        for id in gone {
            if let Some(w) = self.watched.remove(&id) {
                let spec = Arc::new(w.var.spec().clone());
                self.queue.push_back(Event::Removed {
                    time_ns: self.reader.removed(&spec.name).unwrap_or(0),
                    spec,
                });
            }
        }
        let new: Vec<Arc<VarSpec>> = self
            .reader
            .specs()
            .iter()
            .filter(|s| !self.watched.contains_key(&s.id) && self.selects(&s.name))
            .cloned()
            .collect();
        for spec in new {
            let Ok(var) = self.reader.find(&spec.name) else {
                continue;
            };
            let Ok(value) = self.reader.read(&var) else {
                continue;
            };
            self.queue.push_back(Event::Value {
                time_ns: self.reader.changed_ns(&var),
                spec: spec.clone(),
                value: value.clone(),
                origin: Origin::Added,
                seq: None,
            });
            self.watched.insert(
                spec.id,
                Watched {
                    var,
                    last: number(&value),
                },
            );
        }
    }

    /// At most every [`CHECK_EVERY`]: follows a restart of the process and notices it stopping
    /// or running again.
    ///
    /// # Errors
    /// [`WatchError::Lost`] if the process restarted without a variable named plainly. (A
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
                if let Some(p) = self
                    .patterns
                    .iter()
                    .find(|p| !is_pattern(p) && r.find(p).is_err())
                {
                    return Err(WatchError::Lost {
                        process: self.name.to_string(),
                        pid,
                        missing: r.find(p).unwrap_err(),
                    });
                }
                let Some(changes) = r.changes() else {
                    return Err(WatchError::NoLog(self.name.to_string()));
                };
                self.alive = r.is_alive();
                self.reader = r;
                self.changes = changes;
                self.select(true)?;
                return Ok(Some(Note::Restarted(pid)));
            }
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

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(_) => None,
    }
}

/// Formats watch events as lines, the same way for both tools.
#[derive(Debug)]
pub struct Printer {
    /// The process name, printed after the time (None: not printed).
    pub process: Option<String>,
    /// Which time starts a line.
    pub time: TimeMode,
    /// JSON lines.
    pub json: bool,
    /// Enums as numbers.
    pub raw: bool,
    first_ns: Option<u64>,
    prev_ns: Option<u64>,
}

impl Printer {
    /// A printer for `opts`, naming the process on each line if `process` is given.
    pub fn new(opts: &WatchOpts, process: Option<&str>) -> Printer {
        Printer {
            process: process.map(str::to_owned),
            time: opts.time,
            json: opts.json,
            raw: opts.raw,
            first_ns: None,
            prev_ns: None,
        }
    }

    fn time_field(&mut self, ns: u64) -> Option<String> {
        let first = *self.first_ns.get_or_insert(ns);
        let prev = self.prev_ns.replace(ns).unwrap_or(ns);
        let secs = |a: u64, b: u64| (a as f64 - b as f64) / 1e9;
        match self.time {
            TimeMode::Abs => Some(if ns == 0 {
                "-".to_owned()
            } else {
                humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + Duration::from_nanos(ns))
                    .to_string()
            }),
            TimeMode::Rel => Some(format!("{:.6}", secs(ns, first))),
            TimeMode::Inc => Some(format!("{:.6}", secs(ns, prev))),
            TimeMode::None => None,
        }
    }

    fn value_json(&self, spec: &VarSpec, v: &Value) -> serde_json::Value {
        match v {
            Value::Int(i) => match spec.label(*i).filter(|_| !self.raw) {
                Some(l) => json!(l),
                None => json!(i),
            },
            Value::Float(f) => json!(f),
            Value::Str(s) => json!(s),
        }
    }

    /// The line for `ev` (without the newline); `None` for notes, which go to stderr.
    pub fn line(&mut self, ev: &Event) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        match ev {
            Event::Note(_) => None,
            Event::Value {
                time_ns,
                spec,
                value,
                origin,
                seq,
            } => {
                let alarm = spec.alarm(value);
                let t = self.time_field(*time_ns);
                if self.json {
                    let mut j = json!({
                        "var": spec.name,
                        "value": self.value_json(spec, value),
                        "time_ns": time_ns,
                    });
                    if let Some(t) = t {
                        j["time"] = json!(t);
                    }
                    if let Some(p) = &self.process {
                        j["process"] = json!(p);
                    }
                    if let Some(q) = seq {
                        j["seq"] = json!(q);
                    }
                    if alarm != AlarmStatus::NoAlarm {
                        j["status"] = json!(alarm.as_str());
                        j["severity"] = json!(alarm.severity().as_str());
                    }
                    match origin {
                        Origin::Current => j["current"] = json!(true),
                        Origin::Added => j["added"] = json!(true),
                        Origin::Changed => {}
                    }
                    return Some(j.to_string());
                }
                parts.extend(t);
                parts.extend(self.process.clone());
                parts.push(spec.name.clone());
                parts.push(if self.raw {
                    value.to_string()
                } else {
                    spec.display(value)
                });
                if alarm != AlarmStatus::NoAlarm {
                    parts.push(alarm.as_str().to_owned());
                    parts.push(alarm.severity().as_str().to_owned());
                }
                if *origin == Origin::Added {
                    parts.push("(added)".to_owned());
                }
                Some(parts.join(" "))
            }
            Event::Removed { time_ns, spec } => {
                let t = self.time_field(*time_ns);
                if self.json {
                    let mut j = json!({"var": spec.name, "removed": true, "time_ns": time_ns});
                    if let Some(t) = t {
                        j["time"] = json!(t);
                    }
                    if let Some(p) = &self.process {
                        j["process"] = json!(p);
                    }
                    return Some(j.to_string());
                }
                parts.extend(t);
                parts.extend(self.process.clone());
                parts.push(spec.name.clone());
                parts.push("<removed>".to_owned());
                Some(parts.join(" "))
            }
            Event::Missed(n) => {
                if self.json {
                    let mut j = json!({ "missed": n });
                    if let Some(p) = &self.process {
                        j["process"] = json!(p);
                    }
                    return Some(j.to_string());
                }
                Some(format!(
                    "*** missed {n} change{} of {}: the watcher fell behind the change log",
                    if *n == 1 { "" } else { "s" },
                    self.process.as_deref().unwrap_or("the process")
                ))
            }
        }
    }
}
