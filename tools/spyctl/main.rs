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
    let stdin_script = cli.commands.is_empty() && !std::io::stdin().is_terminal();
    let script = stdin_script || !cli.commands.is_empty();
    let mut console = Console::new(dir, cli.wait(), !script);
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
    if !cli.commands.is_empty() {
        script::run(
            &mut console,
            Source::Option,
            cli.commands.iter().map(|c| Ok(c.clone())),
        )
    } else if stdin_script {
        script::run(&mut console, Source::Stdin, script::stdin_lines())
    } else {
        repl::run(&mut console)
    }
}
