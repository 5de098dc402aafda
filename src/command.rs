//! The declarative command table: what a process understands, in which states, and where each
//! command leads. Also the one tokenizer and quoting rule every client and owner share.
//!
//! A table is data ([`CommandInfo`] is what `help --json` returns), so tools such as `spyctl`
//! read a process's commands from the process instead of hard-coding them.

use serde::{Deserialize, Serialize};

use crate::process::Ctx;
use crate::state::{states_text, RunState, States, INIT_FROM, IN_INIT, IN_PAUSE, IN_RUNNING};

/// What a handler returns: a one-line (or multi-line) message for the reply, or an error.
pub type Outcome = Result<String, String>;

/// A handler of an application's command.
pub type Handler<A> = fn(&mut A, &mut Ctx, &[String]) -> Outcome;

/// One row of a command table.
pub struct Command<A> {
    /// The command word.
    pub name: &'static str,
    /// Arguments, as shown in usage (`[raddr [rport]]`).
    pub args: &'static str,
    /// What it does, one line.
    pub help: &'static str,
    /// States where it is allowed (empty: any).
    pub allowed: States,
    /// State it leads to when the handler succeeds.
    pub next: Option<RunState>,
    /// Fewest arguments.
    pub min_args: usize,
    /// Most arguments.
    pub max_args: usize,
    /// The code.
    pub handler: Handler<A>,
}

impl<A> std::fmt::Debug for Command<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command").field("name", &self.name).finish()
    }
}

impl<A> Command<A> {
    /// A command with no arguments.
    pub fn new(
        name: &'static str,
        help: &'static str,
        allowed: States,
        next: Option<RunState>,
        handler: Handler<A>,
    ) -> Self {
        Command {
            name,
            args: "",
            help,
            allowed,
            next,
            min_args: 0,
            max_args: 0,
            handler,
        }
    }

    /// `init`: allowed at start-up and again after any error, leads to INIT_STATE.
    pub fn init(help: &'static str, handler: Handler<A>) -> Self {
        Command::new("init", help, INIT_FROM, Some(RunState::Init), handler)
    }

    /// `start`: allowed in INIT_STATE, leads to RUNNING_STATE.
    pub fn start(help: &'static str, handler: Handler<A>) -> Self {
        Command::new("start", help, IN_INIT, Some(RunState::Running), handler)
    }

    /// `pause`: allowed in RUNNING_STATE, leads to PAUSE_STATE.
    pub fn pause(help: &'static str, handler: Handler<A>) -> Self {
        Command::new("pause", help, IN_RUNNING, Some(RunState::Pause), handler)
    }

    /// `resume`: allowed in PAUSE_STATE, leads to RUNNING_STATE.
    pub fn resume(help: &'static str, handler: Handler<A>) -> Self {
        Command::new("resume", help, IN_PAUSE, Some(RunState::Running), handler)
    }

    /// `update`: allowed in RUNNING_STATE; the framework refreshes the statistics after it.
    pub fn update(help: &'static str, handler: Handler<A>) -> Self {
        Command::new("update", help, IN_RUNNING, None, handler)
    }

    /// `end`: allowed in RUNNING_STATE, leads to INIT_STATE (and runs before `exit`).
    pub fn end(help: &'static str, handler: Handler<A>) -> Self {
        Command::new("end", help, IN_RUNNING, Some(RunState::Init), handler)
    }

    /// Declares the arguments: usage text and how many are accepted.
    pub fn args(mut self, usage: &'static str, min: usize, max: usize) -> Self {
        self.args = usage;
        self.min_args = min;
        self.max_args = max;
        self
    }

    /// The table row as data.
    pub fn info(&self) -> CommandInfo {
        CommandInfo::new(self.name, self.args, self.help, self.allowed, self.next)
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
}

impl CommandInfo {
    /// Builds a row.
    pub fn new(
        name: &str,
        args: &str,
        help: &str,
        allowed: States,
        next: Option<RunState>,
    ) -> Self {
        let usage = if args.is_empty() {
            name.to_owned()
        } else {
            format!("{name} {args}")
        };
        CommandInfo {
            name: name.to_owned(),
            usage,
            help: help.to_owned(),
            allowed: allowed.iter().map(|s| s.label().to_owned()).collect(),
            next: next.map(|s| s.label().to_owned()),
        }
    }

    /// The allowed states as text.
    pub fn allowed_text(&self) -> String {
        if self.allowed.is_empty() {
            "any".to_owned()
        } else {
            self.allowed.join(", ")
        }
    }
}

/// Checks that a command may run in `state`.
///
/// # Errors
/// The refusal text naming the current state and the allowed ones.
pub fn check_state(name: &str, allowed: States, state: RunState) -> Result<(), String> {
    if allowed.is_empty() || allowed.contains(&state) {
        Ok(())
    } else {
        Err(format!(
            "command '{name}' is not allowed in {state} (allowed in: {})",
            states_text(allowed)
        ))
    }
}

/// Splits a command line into words. Words are separated by blanks; `"..."` and `'...'` group,
/// and a backslash escapes the next character outside single quotes.
///
/// # Errors
/// A message for an unterminated quote or a trailing backslash.
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated ' quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err("backslash at end of line".to_owned()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \" quote".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("backslash at end of line".to_owned()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Quotes a word so that [`tokenize`] gives it back unchanged.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '\'' | '"' | '\\'));
    if plain {
        return word.to_owned();
    }
    let mut s = String::with_capacity(word.len() + 2);
    s.push('"');
    for c in word.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// Joins words into a command line, quoting where needed.
pub fn join(words: &[impl AsRef<str>]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizing() {
        assert_eq!(
            tokenize("  start farm1  2115 ").unwrap(),
            ["start", "farm1", "2115"]
        );
        assert_eq!(
            tokenize(r#"set label "hello world" x\ y 'a"b'"#).unwrap(),
            ["set", "label", "hello world", "x y", "a\"b"]
        );
        assert_eq!(tokenize("set label \"\"").unwrap(), ["set", "label", ""]);
        assert!(tokenize("set label \"oops").is_err());
        assert!(tokenize("x \\").is_err());
    }

    #[test]
    fn quoting_roundtrips() {
        for w in [
            "plain",
            "two words",
            "",
            "a\"b",
            "back\\slash",
            "it's",
            "tab\there",
        ] {
            assert_eq!(tokenize(&quote(w)).unwrap(), [w], "{w}");
        }
        assert_eq!(join(&["set", "label", "a b"]), "set label \"a b\"");
    }

    #[test]
    fn state_check() {
        use crate::state::IN_PAUSE;
        let e = check_state("resume", IN_PAUSE, RunState::Running).unwrap_err();
        assert_eq!(
            e,
            "command 'resume' is not allowed in RUNNING_STATE (allowed in: PAUSE_STATE)"
        );
    }
}
