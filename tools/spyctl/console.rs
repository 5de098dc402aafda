//! The console's state (runtime directory, selected process, the command tables read from the
//! processes) and the one dispatcher that the interactive console and scripts share: a line is
//! either one of spyctl's own verbs or is sent to the selected process as typed.
//!
//! Nothing here knows a daemon's commands: they come from the process (`help --json`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use daqproc::control::client;
use daqproc::control::words::tokenize;
use daqproc::control::Reply;
use daqproc::framework::CommandInfo;
use daqproc::observe::liveness::Liveness;
use shvars::region::RegionReader;
use shvars::{ProcName, RuntimeDir};

use crate::{verbs, watch};

/// spyctl's own verbs: (name, arguments, what it does). Every other line goes to the process.
pub const VERBS: &[(&str, &str, &str)] = &[
    ("open", "NAME", "Select a process (alias: use)"),
    ("use", "NAME", "Select a process (alias of open)"),
    (
        "list",
        "",
        "Every process in the runtime directory: pid, status, run state",
    ),
    (
        "get",
        "VAR...",
        "Show variables of the selected process (read from its region)",
    ),
    (
        "set",
        "VAR VALUE",
        "Change a R/W variable through its owner, which checks it; shows old -> new",
    ),
    (
        "vars",
        "[PATTERN...]",
        "Every variable (or those the patterns select): type, access, value, unit, limits, description",
    ),
    (
        "watch",
        "[VAR...] [--interval S] [--count N]",
        "A line per change of the variables (all if none), until Ctrl-C",
    ),
    (
        "events",
        "[N]",
        "The last N entries of the process's event log (sent to the process)",
    ),
    (
        "status",
        "",
        "The process's state, uptime, last command and error (sent to the process)",
    ),
    (
        "help",
        "[COMMAND | spyctl]",
        "The selected process's commands and states, or spyctl's verbs",
    ),
    (
        "launch",
        "NAME",
        "Start a framework process that is not running, with the command line it last ran with",
    ),
    (
        "confirm",
        "[on|off]",
        "Whether commands that stop a process (exit, end, ...) are confirmed first",
    ),
    (
        "quit",
        "",
        "Leave spyctl (Ctrl-D too); `exit` is sent to the process and makes it exit",
    ),
];

/// Whether a word is one of spyctl's own verbs (`events` and `status` are the process's).
pub fn is_own_verb(word: &str) -> bool {
    VERBS
        .iter()
        .any(|(v, _, _)| *v == word && !matches!(*v, "events" | "status"))
}

/// What to do after a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Read the next line.
    Continue,
    /// Leave spyctl.
    Quit,
    /// Ask `question`; on yes, run `line` with [`Console::execute_confirmed`].
    Confirm {
        /// The line waiting for confirmation.
        line: String,
        /// What to ask.
        question: String,
    },
}

/// A process's command table as read from it, for one incarnation of the process.
#[derive(Debug)]
struct Table {
    instance: u64,
    infos: Vec<CommandInfo>,
}

/// The console: where processes live, which one is selected, what they understand.
#[derive(Debug)]
pub struct Console {
    dir: RuntimeDir,
    wait: Duration,
    selected: Option<ProcName>,
    /// Whether command tables are read for completion (only the interactive console needs them).
    interactive: bool,
    /// Whether a command that stops the process is confirmed first (interactive only).
    confirm: bool,
    tables: HashMap<String, Table>,
}

impl Console {
    pub fn new(dir: RuntimeDir, wait: Duration, interactive: bool) -> Console {
        Console {
            dir,
            wait,
            selected: None,
            interactive,
            confirm: interactive,
            tables: HashMap::new(),
        }
    }

    pub fn dir(&self) -> &RuntimeDir {
        &self.dir
    }

    /// Turns the confirmation of stopping commands off (`--no-confirm`, `confirm off`) or on
    /// (interactive consoles only).
    pub fn set_confirm(&mut self, on: bool) {
        self.confirm = on && self.interactive;
    }

    /// Whether this is the interactive console (not a script).
    pub fn interactive(&self) -> bool {
        self.interactive
    }

    pub fn selected(&self) -> Option<&ProcName> {
        self.selected.as_ref()
    }

    /// The selected process, or an error saying how to select one.
    pub fn need_selected(&self) -> anyhow::Result<&ProcName> {
        self.selected.as_ref().ok_or_else(|| {
            anyhow!("no process selected: `open NAME` first (`list` shows the processes)")
        })
    }

    /// The region of the selected process.
    pub fn reader(&self) -> anyhow::Result<(ProcName, RegionReader)> {
        let name = self.need_selected()?.clone();
        let r = RegionReader::open(&self.dir, &name)?;
        Ok((name, r))
    }

    /// Runs one line: a verb of spyctl's own, or a command sent to the selected process.
    ///
    /// # Errors
    /// What failed, on what, and what to do; a refusal by the process is an error too.
    pub fn execute(&mut self, line: &str) -> anyhow::Result<Flow> {
        let line = line.trim();
        let words = tokenize(line).map_err(|e| anyhow!("cannot read the line: {e}"))?;
        let Some((verb, args)) = words.split_first() else {
            return Ok(Flow::Continue);
        };
        match verb.as_str() {
            "quit" if args.is_empty() => return Ok(Flow::Quit),
            "quit" => bail!("usage: quit (`exit` makes the process exit)"),
            "open" | "use" => verbs::open(self, args)?,
            "list" => verbs::list(self, args)?,
            "get" => verbs::get(self, args)?,
            "set" => verbs::set(self, args)?,
            "vars" => verbs::vars(self, args)?,
            "watch" => watch::run(self, args)?,
            "help" => verbs::help(self, args)?,
            "confirm" => match args {
                [] => println!("confirm {}", if self.confirm { "on" } else { "off" }),
                [w] if w == "on" || w == "off" => self.set_confirm(w == "on"),
                _ => bail!("usage: confirm [on|off]"),
            },
            "launch" => verbs::launch(self, args)?,
            other => {
                if self.confirm {
                    if let Some(q) = self.stop_question(other, line) {
                        return Ok(Flow::Confirm {
                            line: line.to_owned(),
                            question: q,
                        });
                    }
                }
                self.execute_confirmed(line)?;
            }
        }
        Ok(Flow::Continue)
    }

    /// Sends a line that needed no confirmation, or was confirmed.
    ///
    /// # Errors
    /// As [`Console::send`].
    pub fn execute_confirmed(&mut self, line: &str) -> anyhow::Result<()> {
        let reply = self.send(line)?;
        print_reply(&reply);
        if line.split_whitespace().next() == Some("exit") {
            self.wait_for_exit();
        }
        Ok(())
    }

    /// The question to ask before sending `word` (its table says it stops the process), if any.
    fn stop_question(&mut self, word: &str, line: &str) -> Option<String> {
        self.refresh_table(false);
        let name = self.selected.as_ref()?;
        let info = self
            .tables
            .get(name.as_str())?
            .infos
            .iter()
            .find(|i| i.name == word)?;
        if !info.stops {
            return None;
        }
        let pid = client::process_status(&self.dir, name).pid;
        let what = if info.before_exit {
            "ends its run"
        } else {
            "stops it"
        };
        Some(format!(
            "'{line}' {what}: {name} (pid {pid}). Send it? [y/N] "
        ))
    }

    /// Selects process `name` (its region must exist) and reads its command table.
    pub fn select(&mut self, name: ProcName) {
        self.selected = Some(name);
        self.refresh_table(true);
    }

    /// Sends `line` to the selected process; a refusal is an error naming the command.
    pub fn send(&self, line: &str) -> anyhow::Result<Reply> {
        let name = self.need_selected()?;
        let reply = client::send(&self.dir, name, line, self.wait)
            .with_context(|| format!("cannot send '{line}' to {name}"))?;
        if !reply.is_ok() {
            bail!("{name} refused '{line}': {}", reply.text());
        }
        Ok(reply)
    }

    /// After `exit` was accepted: waits (up to the reply timeout) for the process to be gone, so
    /// the next prompt already says so.
    fn wait_for_exit(&self) {
        let Some(name) = &self.selected else { return };
        let Ok(r) = RegionReader::open(&self.dir, name) else {
            return;
        };
        let deadline = Instant::now() + self.wait;
        while r.is_alive() && !r.is_replaced() {
            if Instant::now() >= deadline {
                eprintln!(
                    "spyctl: note: {name} accepted exit but is still running after {} s",
                    self.wait.as_secs_f64()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The prompt: the selected process and its run state, read now.
    pub fn prompt(&self) -> String {
        let Some(name) = &self.selected else {
            return "spyctl> ".to_owned();
        };
        let st = client::process_status(&self.dir, name);
        match (st.status, st.runstate) {
            (Liveness::Alive, Some(state)) => format!("{name} {state}> "),
            (Liveness::Alive, None) => format!("{name}> "),
            _ => format!("{name} (not running)> "),
        }
    }

    /// Reads the command table of the selected process (`help --json`) if it is not known for
    /// the running incarnation, or always with `force`. A process that cannot answer gets an
    /// empty table, tried again when it restarts or on the next `open`.
    pub fn refresh_table(&mut self, force: bool) {
        if !self.interactive {
            return;
        }
        let Some(name) = &self.selected else { return };
        let Ok(r) = RegionReader::open(&self.dir, name) else {
            return;
        };
        if !r.is_alive() {
            return;
        }
        let instance = r.info().instance_id;
        let known = self
            .tables
            .get(name.as_str())
            .is_some_and(|t| t.instance == instance);
        if known && !force {
            return;
        }
        let infos = client::send(&self.dir, name, "help --json", self.wait)
            .ok()
            .filter(|r| r.is_ok())
            .and_then(|r| serde_json::from_str::<Vec<CommandInfo>>(r.text()).ok())
            .unwrap_or_default();
        self.tables
            .insert(name.to_string(), Table { instance, infos });
    }

    /// The command names of the selected process, as last read from it.
    pub fn command_names(&self) -> Vec<String> {
        self.selected
            .as_ref()
            .and_then(|n| self.tables.get(n.as_str()))
            .map(|t| t.infos.iter().map(|i| i.name.clone()).collect())
            .unwrap_or_default()
    }
}

/// Prints a process's answer to stdout (nothing for an empty `ok`).
pub fn print_reply(reply: &Reply) {
    let text = reply.text();
    if !text.is_empty() {
        println!("{text}");
    }
}
