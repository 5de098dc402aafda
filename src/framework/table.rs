//! The declarative command table: what a process understands, with which arguments, in which
//! states, where each command leads, and what the framework does around it (reset or refresh
//! the statistics, run it before `exit`, its time limit, who may run it). The runner implements
//! the table once and never looks at a command's name to decide what it means.
//!
//! A table is data ([`CommandInfo`] is what `help --json` returns), so tools such as `spyctl`
//! read a process's commands from the process instead of hard-coding them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ctx::Ctx;
use super::state::{states_text, RunState, States, ANY, INIT_FROM, IN_INIT, IN_PAUSE, IN_RUNNING};
use crate::control::reply::{ErrorKind, Failure};

/// What a handler did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Finished: the reply's text (may be empty or have several lines).
    Text(String),
    /// Still running: the handler called [`Ctx::defer`] and will answer through
    /// [`Ctx::complete`]. The process meanwhile serves every other command.
    Later,
}

impl From<String> for Done {
    fn from(s: String) -> Done {
        Done::Text(s)
    }
}

impl From<&str> for Done {
    fn from(s: &str) -> Done {
        Done::Text(s.to_owned())
    }
}

/// What a handler returns.
pub type Outcome = Result<Done, Failure>;

/// A handler of an application's command.
pub type Handler<A> = fn(&mut A, &mut Ctx, &[String]) -> Outcome;

/// The framework's own commands, which every process has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    Help,
    Set,
    Get,
    Status,
    Events,
    Exit,
}

/// What running a command does.
pub(crate) enum Action<A> {
    /// The daemon's handler.
    Handler(Handler<A>),
    /// Nothing but the transition and the effects: this text is the reply.
    Reply(&'static str),
    /// One of the framework's commands.
    Builtin(Builtin),
}

/// Default time limit of a command (see [`Command::time_limit`]).
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// The process's owner, root, and members of its `--group` (the default).
    Owner,
    /// Any local user (commands that only read, as the region is readable by all).
    Public,
}

/// One row of a command table.
pub struct Command<A> {
    pub(crate) name: &'static str,
    pub(crate) args: &'static str,
    pub(crate) help: &'static str,
    pub(crate) allowed: States,
    pub(crate) next: Option<RunState>,
    pub(crate) min_args: usize,
    pub(crate) max_args: usize,
    pub(crate) action: Action<A>,
    pub(crate) resets_stats: bool,
    pub(crate) refreshes_stats: bool,
    pub(crate) before_exit: bool,
    pub(crate) exits: bool,
    pub(crate) stops: bool,
    pub(crate) time_limit: Duration,
    pub(crate) access: Access,
}

impl<A> std::fmt::Debug for Command<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command").field("name", &self.name).finish()
    }
}

impl<A> Command<A> {
    /// A command allowed in any state, without arguments, that answers `ok` and changes
    /// nothing until given a [`handler`](Command::handler) or a [`reply`](Command::reply).
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Command {
            name,
            args: "",
            help,
            allowed: ANY,
            next: None,
            min_args: 0,
            max_args: 0,
            action: Action::Reply(""),
            resets_stats: false,
            refreshes_stats: false,
            before_exit: false,
            exits: false,
            stops: false,
            time_limit: DEFAULT_TIME_LIMIT,
            access: Access::Owner,
        }
    }

    /// `init`: allowed at start-up and again after any error, leads to INIT_STATE.
    pub fn init(help: &'static str) -> Self {
        Command::new("init", help)
            .allowed(INIT_FROM)
            .leads_to(RunState::Init)
    }

    /// `start`: allowed in INIT_STATE, leads to RUNNING_STATE, starts a new statistics interval.
    pub fn start(help: &'static str) -> Self {
        Command::new("start", help)
            .allowed(IN_INIT)
            .leads_to(RunState::Running)
            .resets_stats()
    }

    /// `pause`: allowed in RUNNING_STATE, leads to PAUSE_STATE.
    pub fn pause(help: &'static str) -> Self {
        Command::new("pause", help)
            .allowed(IN_RUNNING)
            .leads_to(RunState::Pause)
    }

    /// `resume`: allowed in PAUSE_STATE, leads to RUNNING_STATE, starts a new statistics
    /// interval.
    pub fn resume(help: &'static str) -> Self {
        Command::new("resume", help)
            .allowed(IN_PAUSE)
            .leads_to(RunState::Running)
            .resets_stats()
    }

    /// `update`: allowed in RUNNING_STATE; refreshes the statistics.
    pub fn update(help: &'static str) -> Self {
        Command::new("update", help)
            .allowed(IN_RUNNING)
            .refreshes_stats()
            .reply("statistics updated")
    }

    /// `end`: allowed in RUNNING_STATE, leads to INIT_STATE, and runs before `exit`.
    pub fn end(help: &'static str) -> Self {
        Command::new("end", help)
            .allowed(IN_RUNNING)
            .leads_to(RunState::Init)
            .before_exit()
    }

    /// The states where it is allowed (empty: any).
    pub fn allowed(mut self, states: States) -> Self {
        self.allowed = states;
        self
    }

    /// The state it leads to when it succeeds.
    pub fn leads_to(mut self, state: RunState) -> Self {
        self.next = Some(state);
        self
    }

    /// Declares the arguments: usage text and how many are accepted.
    pub fn args(mut self, usage: &'static str, min: usize, max: usize) -> Self {
        self.args = usage;
        self.min_args = min;
        self.max_args = max;
        self
    }

    /// The daemon's code for it.
    pub fn handler(mut self, h: Handler<A>) -> Self {
        self.action = Action::Handler(h);
        self
    }

    /// No code: on success (the transition) it answers `text`.
    pub fn reply(mut self, text: &'static str) -> Self {
        self.action = Action::Reply(text);
        self
    }

    /// On success, `sg_*` start a new interval (KLOE: since the last start or resume).
    pub fn resets_stats(mut self) -> Self {
        self.resets_stats = true;
        self
    }

    /// On success, `sg_*` and `sl_*` are refreshed now.
    pub fn refreshes_stats(mut self) -> Self {
        self.refreshes_stats = true;
        self
    }

    /// `exit` (and SIGTERM) runs it first where it is allowed.
    pub fn before_exit(mut self) -> Self {
        self.before_exit = true;
        self
    }

    /// It stops the process or its work (as `exit`, `end` and a supervisor's `halt` do): an
    /// interactive console asks before sending it. `exit` and the `before_exit` row are marked
    /// so already.
    pub fn stops(mut self) -> Self {
        self.stops = true;
        self
    }

    /// How long the command may take before its caller gets a `timeout` error (it may go on
    /// running; its outcome is then in the event log and `lasterror`).
    /// [`DEFAULT_TIME_LIMIT`] unless set.
    pub fn time_limit(mut self, d: Duration) -> Self {
        self.time_limit = d;
        self
    }

    /// Any local user may run it (it only reads).
    pub fn public(mut self) -> Self {
        self.access = Access::Public;
        self
    }

    pub(crate) fn builtin(
        name: &'static str,
        args: &'static str,
        help: &'static str,
        b: Builtin,
    ) -> Self {
        let mut c = Command::new(name, help);
        c.args = args;
        c.action = Action::Builtin(b);
        c
    }

    /// The command word.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether it changes the run state or ends the process: two of these never run at once.
    pub(crate) fn is_transition(&self) -> bool {
        self.next.is_some() || self.exits || self.before_exit
    }

    /// The usage line.
    pub fn usage(&self) -> String {
        if self.args.is_empty() {
            self.name.to_owned()
        } else {
            format!("{} {}", self.name, self.args)
        }
    }

    /// The table row as data.
    pub fn info(&self) -> CommandInfo {
        CommandInfo {
            name: self.name.to_owned(),
            usage: self.usage(),
            help: self.help.to_owned(),
            allowed: self.allowed.iter().map(|s| s.label().to_owned()).collect(),
            next: self.next.map(|s| s.label().to_owned()),
            access: self.access,
            time_limit_ms: self.time_limit.as_millis() as u64,
            resets_stats: self.resets_stats,
            before_exit: self.before_exit,
            stops: self.stops || self.exits || self.before_exit,
        }
    }

    /// Checks the argument count.
    pub(crate) fn check_args(&self, n: usize) -> Result<(), Failure> {
        if n < self.min_args || n > self.max_args {
            Err(Failure::usage(self.usage()))
        } else {
            Ok(())
        }
    }
}

/// A command table row as data, as `help --json` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// The command word.
    pub name: String,
    /// Usage line (`start [raddr [rport]]`).
    pub usage: String,
    /// What it does.
    pub help: String,
    /// Labels of the states where it is allowed (empty: any).
    pub allowed: Vec<String>,
    /// Label of the state it leads to, if any.
    pub next: Option<String>,
    /// Who may run it.
    #[serde(default = "owner_access")]
    pub access: Access,
    /// Its time limit in milliseconds.
    #[serde(default)]
    pub time_limit_ms: u64,
    /// Whether it starts a new statistics interval.
    #[serde(default)]
    pub resets_stats: bool,
    /// Whether `exit` runs it first.
    #[serde(default)]
    pub before_exit: bool,
    /// Whether it stops the process or its work (consoles ask before sending it).
    #[serde(default)]
    pub stops: bool,
}

fn owner_access() -> Access {
    Access::Owner
}

impl CommandInfo {
    /// The allowed states as text.
    pub fn allowed_text(&self) -> String {
        if self.allowed.is_empty() {
            "any".to_owned()
        } else {
            self.allowed.join(", ")
        }
    }

    /// Whether it is allowed in the state labelled `state`.
    pub fn allowed_in(&self, state: &str) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|a| a == state)
    }
}

/// Checks that a command may run in `state`.
///
/// # Errors
/// The refusal, naming the current state and the allowed ones.
pub fn check_state(name: &str, allowed: States, state: RunState) -> Result<(), Failure> {
    if allowed.is_empty() || allowed.contains(&state) {
        Ok(())
    } else {
        Err(Failure::new(
            ErrorKind::State,
            format!(
                "command '{name}' is not allowed in {state} (allowed in: {})",
                states_text(allowed)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_check() {
        let e = check_state("resume", IN_PAUSE, RunState::Running).unwrap_err();
        assert_eq!(e.kind, ErrorKind::State);
        assert_eq!(
            e.text,
            "command 'resume' is not allowed in RUNNING_STATE (allowed in: PAUSE_STATE)"
        );
    }

    #[test]
    fn standard_rows_carry_their_effects_as_data() {
        let start: Command<()> = Command::start("go");
        assert!(start.resets_stats && start.next == Some(RunState::Running));
        let end: Command<()> = Command::end("stop");
        assert!(end.before_exit && !end.resets_stats);
        let upd: Command<()> = Command::update("u");
        assert!(upd.refreshes_stats && upd.next.is_none());
        let info = Command::<()>::init("i").args("[x]", 0, 1).info();
        assert_eq!(info.usage, "init [x]");
        assert_eq!(info.allowed, ["UNDEFINED_STATE", "INIT_STATE"]);
    }
}
