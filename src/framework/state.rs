//! The run-state machine every process shares: UNDEFINED_STATE -> INIT_STATE -> RUNNING_STATE
//! <-> PAUSE_STATE, with KLOE's names.
//!
//! The states and the standard transitions live here as data; the command table
//! ([`super::table`]) says which command is allowed where and where it leads.

use std::fmt;

/// A run state. The numeric values are what the `runstate` ENUM variable holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunState {
    /// Started, not initialised.
    Undefined = 0,
    /// Initialised, not serving.
    Init = 1,
    /// Serving / running.
    Running = 2,
    /// Paused: connections kept, no new work.
    Pause = 3,
}

/// The labels of the `runstate` ENUM, indexed by value.
pub const RUNSTATE_LABELS: [&str; 4] = [
    "UNDEFINED_STATE",
    "INIT_STATE",
    "RUNNING_STATE",
    "PAUSE_STATE",
];

impl RunState {
    /// Every state, in value order.
    pub const ALL: [RunState; 4] = [
        RunState::Undefined,
        RunState::Init,
        RunState::Running,
        RunState::Pause,
    ];

    /// The KLOE label (`RUNNING_STATE`, ...).
    pub fn label(self) -> &'static str {
        RUNSTATE_LABELS[self as usize]
    }

    /// The state of a `runstate` value, if valid.
    pub fn from_value(v: i64) -> Option<RunState> {
        usize::try_from(v)
            .ok()
            .and_then(|i| RunState::ALL.get(i).copied())
    }

    /// The state named by a label (case-insensitive, `_STATE` optional).
    pub fn from_label(s: &str) -> Option<RunState> {
        let up = s.to_ascii_uppercase();
        let up = up.strip_suffix("_STATE").unwrap_or(&up);
        RunState::ALL
            .into_iter()
            .find(|st| st.label().strip_suffix("_STATE") == Some(up))
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// States where a command may run. Empty means any state.
pub type States = &'static [RunState];

/// Any state.
pub const ANY: States = &[];
/// `init`: at start-up and again after any error.
pub const INIT_FROM: States = &[RunState::Undefined, RunState::Init];
/// Only in INIT_STATE (`start`).
pub const IN_INIT: States = &[RunState::Init];
/// Only in RUNNING_STATE (`pause`, `update`, `end`).
pub const IN_RUNNING: States = &[RunState::Running];
/// Only in PAUSE_STATE (`resume`).
pub const IN_PAUSE: States = &[RunState::Pause];
/// RUNNING_STATE or PAUSE_STATE (`reconnect`, `disconnect`).
pub const SERVING: States = &[RunState::Running, RunState::Pause];

/// Formats a list of states for an error message.
pub fn states_text(states: States) -> String {
    if states.is_empty() {
        "any state".to_owned()
    } else {
        states
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(RunState::from_value(2), Some(RunState::Running));
        assert_eq!(RunState::from_value(7), None);
        assert_eq!(RunState::from_label("pause"), Some(RunState::Pause));
        assert_eq!(RunState::from_label("INIT_STATE"), Some(RunState::Init));
        assert_eq!(states_text(SERVING), "RUNNING_STATE, PAUSE_STATE");
    }
}
