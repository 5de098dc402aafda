//! `spyctl`: the operator console. Selects a framework process, sends it commands, reads, sets
//! and watches its shared variables; interactively (a prompt showing the process's run state,
//! Tab completion, history) or as a script (`-c CMD`..., or lines on stdin).
#![forbid(unsafe_code)]

mod cli;
mod complete;
mod console;
mod repl;
mod script;
mod verbs;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use cli::Cli;
use console::Console;
use script::Source;

/// Exit status for bad usage.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    shvars::sys::default_sigpipe();
    let cli = daqproc::support::cli::parse::<Cli>();
    let dir = shvars::RuntimeDir::resolve(cli.dir.as_deref());
    let mut commands = cli.commands.clone();
    if !cli.line.is_empty() {
        commands.push(daqproc::control::words::join(&cli.line));
    }
    let stdin_script = commands.is_empty() && !std::io::stdin().is_terminal();
    let script = stdin_script || !commands.is_empty();
    let mut console = Console::new(dir, cli.wait(), !script);
    if cli.no_confirm {
        console.set_confirm(false);
    }
    if let Some(name) = &cli.name {
        if let Err(e) = shvars::ProcName::new(name) {
            eprintln!("spyctl: -n: {e}");
            return ExitCode::from(USAGE);
        }
        if let Err(e) = console.execute(&daqproc::control::words::join(&["open", name.as_str()])) {
            eprintln!("spyctl: {e:#}");
            if script {
                return ExitCode::FAILURE;
            }
        }
    }
    if !commands.is_empty() {
        script::run(&mut console, Source::Option, commands.into_iter().map(Ok))
    } else if stdin_script {
        script::run(&mut console, Source::Stdin, script::stdin_lines())
    } else {
        repl::run(&mut console)
    }
}
