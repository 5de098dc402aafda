//! The command line of `spyctl`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use daqproc::support::cli::parse_secs;

/// The operator console: select a framework process, send it commands (init, start, pause,
/// resume, end, exit, ...), read, set and watch its shared variables.
///
/// With no -c and a terminal on stdin, spyctl opens an interactive console (`help` lists its
/// verbs, Tab completes, Ctrl-D or `quit` leaves; commands that stop a process are confirmed
/// first). With -c, with words after the options (`spyctl list`, `spyctl -n t1 get ticks`: one
/// console line), or with lines on a non-terminal stdin (`#` comments and blank lines skipped),
/// it runs them in order, never asks, and stops at the first failure.
///
/// Exit status: 0 ok, 1 a command failed (refused, process not running, no answer...), 2 bad
/// usage.
#[derive(Debug, Parser)]
#[command(name = "spyctl", version, after_long_help = crate::verbs::verbs_section())]
pub struct Cli {
    /// Runtime directory [default: $SHVAR_DIR, else /dev/shm/shvars, else $XDG_RUNTIME_DIR/shvars]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Process to select at start (as `open NAME`)
    #[arg(short = 'n', long = "name", value_name = "NAME",
          add = clap_complete::engine::ArgValueCompleter::new(daqproc::observe::complete::process_name))]
    pub name: Option<String>,
    /// A console line to run (repeatable: run in order, stop at the first failure)
    #[arg(short = 'c', long = "command", value_name = "CMD")]
    pub commands: Vec<String>,
    /// Do not ask before commands that stop a process (exit, end, ...) in the interactive console
    #[arg(long)]
    pub no_confirm: bool,
    /// One console line to run, then exit (`spyctl list`, `spyctl -n t1 get ticks`)
    #[arg(
        value_name = "LINE",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub line: Vec<String>,
    /// Seconds to wait for a process's reply
    #[arg(short = 'w', long = "wait", value_name = "SECONDS", default_value_t = 5.0,
          value_parser = parse_secs)]
    pub wait: f64,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}

impl Cli {
    /// The reply timeout.
    pub fn wait(&self) -> Duration {
        Duration::from_secs_f64(self.wait)
    }
}
