//! The bounded event log of a process: what it was told, what it did, what went wrong.
//!
//! Every entry is also written to the process's log (stderr, or the log file of a detached
//! daemon), so the same line can be found later with grep. The log holds the last
//! [`EventLog::CAPACITY`] entries; `events [N]` shows them.

use std::collections::VecDeque;
use std::fmt;
use std::time::SystemTime;

use parking_lot::Mutex;

/// How serious an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A command as received.
    Cmd,
    /// Normal operation.
    Info,
    /// Something an operator may want to know.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Cmd => "cmd",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One entry.
#[derive(Debug, Clone)]
pub struct Event {
    /// When.
    pub time: SystemTime,
    /// How serious.
    pub level: Level,
    /// What.
    pub text: String,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:<5} {}",
            humantime::format_rfc3339_millis(self.time),
            self.level.as_str(),
            self.text
        )
    }
}

/// The bounded log; shared by the main loop and the process's threads.
#[derive(Debug)]
pub struct EventLog {
    name: String,
    entries: Mutex<VecDeque<Event>>,
}

impl EventLog {
    /// Entries kept.
    pub const CAPACITY: usize = 1000;

    /// An empty log for process `name`.
    pub fn new(name: &str) -> Self {
        EventLog {
            name: name.to_owned(),
            entries: Mutex::new(VecDeque::with_capacity(64)),
        }
    }

    /// Adds an entry and writes it to stderr.
    pub fn push(&self, level: Level, text: impl Into<String>) {
        let ev = Event {
            time: SystemTime::now(),
            level,
            text: text.into(),
        };
        eprintln!(
            "{} {} {:<5} {}",
            humantime::format_rfc3339_millis(ev.time),
            self.name,
            level.as_str(),
            ev.text
        );
        let mut e = self.entries.lock();
        if e.len() == Self::CAPACITY {
            e.pop_front();
        }
        e.push_back(ev);
    }

    /// Adds an info entry.
    pub fn info(&self, text: impl Into<String>) {
        self.push(Level::Info, text)
    }

    /// Adds a warning.
    pub fn warn(&self, text: impl Into<String>) {
        self.push(Level::Warn, text)
    }

    /// Adds an error.
    pub fn error(&self, text: impl Into<String>) {
        self.push(Level::Error, text)
    }

    /// The last `n` entries, oldest first.
    pub fn last(&self, n: usize) -> Vec<Event> {
        let e = self.entries.lock();
        e.iter().skip(e.len().saturating_sub(n)).cloned().collect()
    }
}
