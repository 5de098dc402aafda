//! The interactive console: a line editor whose prompt shows the selected process and its run
//! state (re-read after every line), Tab completion, and a history kept across sessions in
//! `$XDG_DATA_HOME/daqproc/spyctl_history` (else `~/.local/share/daqproc/spyctl_history`).
//!
//! Ctrl-C clears the line being typed (or ends a `watch`); Ctrl-D or `quit` leaves.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor};

use crate::complete::Completion;
use crate::console::{Console, Flow};

/// Where the history lives: `$XDG_DATA_HOME/daqproc/spyctl_history`, else
/// `$HOME/.local/share/daqproc/spyctl_history`.
fn history_path() -> anyhow::Result<PathBuf> {
    let absolute = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    let data = match std::env::var_os("XDG_DATA_HOME").and_then(absolute) {
        Some(d) => d,
        None => std::env::var_os("HOME")
            .and_then(absolute)
            .map(|h| h.join(".local/share"))
            .ok_or_else(|| anyhow!("neither XDG_DATA_HOME nor HOME is set"))?,
    };
    Ok(data.join("daqproc").join("spyctl_history"))
}

/// Opens the history file (creating its directory); errors say why there will be none.
fn open_history(ed: &mut Editor<Completion, FileHistory>) -> anyhow::Result<PathBuf> {
    let path = history_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match ed.load_history(&path) {
        Ok(()) => {}
        Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    Ok(path)
}

/// Runs the console until Ctrl-D or `quit`.
pub fn run(console: &mut Console) -> ExitCode {
    match run_editor(console) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spyctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_editor(console: &mut Console) -> anyhow::Result<()> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .max_history_size(1000)?
        .history_ignore_dups(true)?
        .auto_add_history(false)
        .build();
    let mut ed: Editor<Completion, FileHistory> =
        Editor::with_config(config).context("cannot start the line editor")?;
    ed.set_helper(Some(Completion::new(console.dir().clone())));
    let history = match open_history(&mut ed) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("spyctl: note: no command history this time: {e:#}");
            None
        }
    };
    loop {
        console.refresh_table(false);
        if let Some(h) = ed.helper_mut() {
            h.update(console.selected().cloned(), console.command_names());
        }
        let line = match ed.readline(&console.prompt()) {
            Ok(line) => line,
            // Ctrl-C: the line is dropped, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(e).context("cannot read the terminal"),
        };
        // A terminal's bracketed paste hands several lines over as one: each runs, in order,
        // shown as if typed at the prompt.
        let lines: Vec<&str> = line
            .split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let several = lines.len() > 1;
        for (i, line) in lines.iter().enumerate() {
            if several && i > 0 {
                console.refresh_table(false);
                println!("{}{line}", console.prompt());
            }
            let _ = ed.add_history_entry(*line);
            if let Some(path) = &history {
                // Appended at once, so a killed console loses nothing.
                if let Err(e) = ed.append_history(path) {
                    eprintln!(
                        "spyctl: note: cannot write history to {}: {e}",
                        path.display()
                    );
                }
            }
            let mut flow = console.execute(line);
            if let Ok(Flow::Confirm { line, question }) = &flow {
                flow = match ed.readline(question) {
                    Ok(ans) if matches!(ans.trim(), "y" | "Y" | "yes" | "YES" | "Yes") => {
                        console.execute_confirmed(line).map(|()| Flow::Continue)
                    }
                    Ok(ans) => {
                        let ans = ans.trim();
                        if ans.is_empty() || matches!(ans, "n" | "N" | "no" | "NO" | "No") {
                            eprintln!("spyctl: '{line}' not sent");
                        } else {
                            eprintln!(
                                "spyctl: '{line}' not sent (answer y to send it); the line '{ans}' was taken as the answer and not run"
                            );
                        }
                        Ok(Flow::Continue)
                    }
                    Err(_) => {
                        eprintln!("spyctl: '{line}' not sent");
                        Ok(Flow::Continue)
                    }
                };
            }
            match flow {
                Ok(Flow::Confirm { .. }) => unreachable!("answered above"),
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => {
                    if i + 1 < lines.len() {
                        eprintln!(
                            "spyctl: quit: the {} pasted line(s) after it were not run",
                            lines.len() - i - 1
                        );
                    }
                    return Ok(());
                }
                Err(e) => eprintln!("spyctl: {e:#}"),
            }
        }
    }
}
