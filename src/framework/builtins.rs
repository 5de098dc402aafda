//! The commands every process has: `help`, `set`, `get`, `status`, `events`, `exit`. They are
//! rows of the same table as the daemon's commands (a daemon may replace one by declaring a row
//! of the same name); `exit`'s sequence is in the runner.

use std::time::Duration;

use shvars::region::{Access as VarAccess, SetError};

use super::app::App;
use super::eventlog::EventLog;
use super::runner::Runner;
use super::table::{Builtin, Command, CommandInfo};
use crate::control::reply::{ErrorKind, Failure};

/// The framework's rows.
pub(crate) fn rows<A>() -> Vec<Command<A>> {
    vec![
        Command::builtin(
            "help",
            "[COMMAND | --json]",
            "List the commands, their arguments and the states where they are allowed",
            Builtin::Help,
        )
        .args("[COMMAND | --json]", 0, 1)
        .public(),
        Command::builtin(
            "set",
            "VAR VALUE",
            "Change a R/W variable (checked: type, limits, state); answers VAR: old -> new",
            Builtin::Set,
        )
        .args("VAR VALUE...", 2, usize::MAX),
        Command::builtin(
            "get",
            "VAR...",
            "Show variable values, one per line",
            Builtin::Get,
        )
        .args("VAR...", 1, usize::MAX)
        .public(),
        Command::builtin(
            "status",
            "",
            "Show the process's state, uptime, last command, last error and commands in progress",
            Builtin::Status,
        )
        .public(),
        Command::builtin(
            "events",
            "[N]",
            "Show the last N entries of the event log (default 20)",
            Builtin::Events,
        )
        .args("[N]", 0, 1)
        .public(),
        {
            let mut exit = Command::builtin(
                "exit",
                "",
                "End serving (runs end first where it is allowed) and exit",
                Builtin::Exit,
            );
            exit.exits = true;
            exit.time_limit = Duration::from_secs(30);
            exit
        },
    ]
}

impl<A: App> Runner<A> {
    pub(crate) fn builtin(&mut self, b: Builtin, args: &[String]) -> Result<String, Failure> {
        match b {
            Builtin::Help => self.help(args),
            Builtin::Set => self.set(args),
            Builtin::Get => self.get(args),
            Builtin::Status => Ok(self.status()),
            Builtin::Events => self.events(args),
            Builtin::Exit => unreachable!("exit is run by the runner's exit sequence"),
        }
    }

    fn infos(&self) -> Vec<CommandInfo> {
        self.table().iter().map(Command::info).collect()
    }

    fn help(&self, args: &[String]) -> Result<String, Failure> {
        let infos = self.infos();
        match args.first().map(String::as_str) {
            Some("--json") => serde_json::to_string(&infos)
                .map_err(|e| Failure::new(ErrorKind::Internal, e.to_string())),
            Some(name) => {
                let i = infos.iter().find(|i| i.name == name).ok_or_else(|| {
                    Failure::new(
                        ErrorKind::Unknown,
                        format!(
                            "unknown command '{name}'; known commands: {}",
                            infos
                                .iter()
                                .map(|i| i.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                Ok(format!(
                    "usage: {}\n  {}\n  allowed in: {}{}",
                    i.usage,
                    i.help,
                    i.allowed_text(),
                    i.next
                        .as_ref()
                        .map(|n| format!("\n  leads to: {n}"))
                        .unwrap_or_default()
                ))
            }
            None => {
                let w = infos.iter().map(|i| i.usage.len()).max().unwrap_or(0);
                let state = self.ctx.state.label();
                let mut out = format!("{} in {state} - commands:\n", self.ctx.name);
                for i in &infos {
                    let here = if i.allowed_in(state) { ' ' } else { '-' };
                    out.push_str(&format!(
                        "{here} {:<w$}  {}  [{}{}]\n",
                        i.usage,
                        i.help,
                        i.allowed_text(),
                        i.next
                            .as_ref()
                            .map(|n| format!(" -> {n}"))
                            .unwrap_or_default()
                    ));
                }
                out.push_str("('-': not allowed in the current state)");
                Ok(out)
            }
        }
    }

    fn set(&mut self, args: &[String]) -> Result<String, Failure> {
        let name = &args[0];
        let text = args[1..].join(" ");
        let region = self.ctx.region.clone();
        let var = region.var(name).ok_or_else(|| SetError::NoSuchVar {
            var: name.clone(),
            hint: region.suggest(name),
        })?;
        let spec = var.spec().clone();
        if spec.access != VarAccess::ReadWrite {
            return Err(SetError::ReadOnly(name.clone()).into());
        }
        let value = spec.parse_value(&text)?;
        self.app.check_set(&mut self.ctx, &spec, &value)?;
        let old = var.set(&value);
        self.app.after_set(&mut self.ctx, &spec);
        Ok(format!(
            "{name}: {} -> {}",
            spec.display(&old),
            spec.display(&value)
        ))
    }

    fn get(&self, args: &[String]) -> Result<String, Failure> {
        let mut out = Vec::new();
        for name in args {
            let var = self.ctx.region.var(name).ok_or_else(|| {
                Failure::refused(format!(
                    "no variable {name}{}",
                    self.ctx.region.suggest(name)
                ))
            })?;
            out.push(var.spec().display(&var.get()));
        }
        Ok(out.join("\n"))
    }

    fn status(&self) -> String {
        let c = &self.ctx;
        let up = c.started.elapsed().unwrap_or_default();
        let mut lines = vec![
            format!("{} {}", c.name, c.state.label()),
            format!("pid: {}", std::process::id()),
            format!(
                "uptime: {}",
                humantime::format_duration(Duration::from_secs(up.as_secs()))
            ),
            format!("lastcmd: {}", c.lastcmd.get()),
            format!("lasterror: {}", c.lasterror.get()),
        ];
        let running = self.running();
        if !running.is_empty() {
            lines.push(format!(
                "in progress: {}",
                running
                    .iter()
                    .map(|(w, s)| format!("{w} ({s:.1} s)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        lines.extend(self.app.status(c));
        lines.join("\n")
    }

    fn events(&self, args: &[String]) -> Result<String, Failure> {
        let n = match args {
            [] => 20,
            [n] => n.parse::<usize>().map_err(|_| {
                Failure::new(
                    ErrorKind::Usage,
                    format!("usage: events [N] (N a count, not {n:?})"),
                )
            })?,
            _ => return Err(Failure::usage("events [N]")),
        };
        let evs = self.ctx.log.last(n.min(EventLog::CAPACITY));
        Ok(evs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
