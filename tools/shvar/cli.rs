use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use clap_complete::engine::ArgValueCompleter;
use daqproc::observe::complete;
use daqproc::support::cli::parse_secs;

/// Exit status of `get` when the values come from a process that is not running.
pub const EXIT_NOT_RUNNING: u8 = 3;

/// Read and change the shared variables of framework processes; send them commands.
///
/// Exit status: 0 ok, 1 the operation failed (the process refused, is not running, did not
/// answer...), 2 bad usage, 3 `get` printed the last values of a process that is not running.
#[derive(Debug, Parser)]
#[command(name = "shvar", version)]
pub struct Cli {
    /// Runtime directory [default: $SHVAR_DIR, else /dev/shm/shvars, else $XDG_RUNTIME_DIR/shvars]
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How long `cmd` and `set` wait for the process's reply [default: 5s]
    #[arg(short = 'w', long = "wait", value_name = "DURATION", value_parser = parse_secs)]
    pub wait: Option<f64>,
    #[command(subcommand)]
    pub verb: Verb,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}

impl Cli {
    /// The reply wait: the subcommand's `-w`, else the one before it, else 5 s.
    pub fn wait(&self, sub: Option<f64>) -> Duration {
        Duration::from_secs_f64(sub.or(self.wait).unwrap_or(5.0))
    }
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Every process in the runtime directory: name, pid, alive or stale, runstate, heartbeat age
    List(ListArgs),
    /// Every variable of a process: name, type, access, value, unit, last change, description
    Dump(DumpArgs),
    /// Values only, one per line, for scripts
    Get(GetArgs),
    /// Change a R/W variable through its owner (checked there); prints VAR: old -> new
    Set(SetArgs),
    /// Print every change of the variables, in order, with its time (like camonitor)
    Watch(WatchArgs),
    /// Send a command to a process and print its reply
    Cmd(CmdArgs),
    /// Remove the regions, FIFOs and leftovers of dead processes (never a live one's)
    Cleanup(CleanupArgs),
    /// Print the numeric variables of every process for monitoring (Prometheus text or JSON)
    Export(ExportArgs),
    /// Serve the same over HTTP at /metrics for Prometheus, read afresh at each scrape
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Process name
    #[arg(add = ArgValueCompleter::new(complete::process_name))]
    pub name: String,
    /// Only the variables these names or shell-style patterns select ('check.*', 'worker.?.pid')
    #[arg(value_name = "VAR", add = ArgValueCompleter::new(complete::variable_name))]
    pub vars: Vec<String>,
    /// Show table TABLE (variables TABLE.ROW.COLUMN) as a table: a line per row, a column per
    /// last name part
    #[arg(long, value_name = "TABLE", conflicts_with = "json")]
    pub table: Option<String>,
    /// Print JSON (the variables, and their values as nested objects for structured names)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Process name
    #[arg(add = ArgValueCompleter::new(complete::process_name))]
    pub name: String,
    /// Variables: names, or shell-style patterns ('worker.*.state'), each then printed with its name
    #[arg(required = true, value_name = "VAR", add = ArgValueCompleter::new(complete::variable_name))]
    pub vars: Vec<String>,
    /// Add the time of the last change and the alarm status and severity (NO_ALARM, MINOR,
    /// MAJOR), tab separated
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Enums as numbers, not labels
    #[arg(long)]
    pub raw: bool,
    /// Print JSON: {"VAR": value, ...} (with -a: {"VAR": {"value": v, "changed": t, "status": s,
    /// "severity": s}})
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// How long to wait for the process's reply [default: 5s]
    #[arg(short = 'w', long = "wait", value_name = "DURATION", value_parser = parse_secs)]
    pub wait: Option<f64>,
    /// Process name
    #[arg(add = ArgValueCompleter::new(complete::process_name))]
    pub name: String,
    /// Variable
    #[arg(add = ArgValueCompleter::new(complete::variable_name))]
    pub var: String,
    /// New value (several words are joined with spaces)
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    pub value: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Process name
    #[arg(add = ArgValueCompleter::new(complete::process_name))]
    pub name: String,
    #[command(flatten)]
    pub opts: daqproc::observe::watch::WatchOpts,
}

#[derive(Debug, Args)]
pub struct CmdArgs {
    /// How long to wait for the process's reply [default: 5s]
    #[arg(short = 'w', long = "wait", value_name = "DURATION", value_parser = parse_secs)]
    pub wait: Option<f64>,
    /// Process name
    #[arg(add = ArgValueCompleter::new(complete::process_name))]
    pub name: String,
    /// Command and its arguments
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
    pub command: Vec<String>,
    /// Send without waiting for a reply (like `echo CMD > NAME.ctl`)
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Only say what would be removed
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// Prometheus text exposition format
    Prometheus,
    /// JSON
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "prometheus")]
    pub format: ExportFormat,
    /// Print JSON (as --format json)
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: IP:PORT or HOST:PORT (port 0: any free port, printed at start)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464",
          value_parser = daqproc::observe::metrics::http::parse_listen)]
    pub listen: std::net::SocketAddr,
}

/// The arguments of a plain `shvar get` (`get NAME VAR... [-a|--all] [--raw] [--json]`, in any
/// order), recognised without building the parser; `None` for anything else (another verb, any
/// other flag, `--`, a missing variable, text that is not UTF-8, a shell asking for completions),
/// which then goes through the parser as always. The two must agree: tests compare them.
pub fn fast_get<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> Option<GetArgs> {
    if std::env::var_os("COMPLETE").is_some() {
        return None;
    }
    let mut args = args.into_iter().skip(1);
    if args.next()? != "get" {
        return None;
    }
    let mut a = GetArgs {
        name: String::new(),
        vars: Vec::new(),
        all: false,
        raw: false,
        json: false,
    };
    let mut name = None;
    for arg in args {
        let arg = arg.into_string().ok()?;
        match arg.as_str() {
            // A flag given twice is an error of the parser's: leave it to say so.
            "-a" | "--all" if !a.all => a.all = true,
            "--raw" if !a.raw => a.raw = true,
            "--json" if !a.json => a.json = true,
            s if s.starts_with('-') || s.is_empty() => return None,
            _ if name.is_none() => name = Some(arg),
            _ => a.vars.push(arg),
        }
    }
    a.name = name?;
    if a.vars.is_empty() {
        return None;
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path takes exactly what the parser would take, with the same meaning.
    #[test]
    fn fast_get_agrees_with_the_parser() {
        let cases: &[&[&str]] = &[
            &["get", "t1", "runstate"],
            &["get", "t1", "a", "b", "worker.*.state"],
            &["get", "-a", "t1", "runstate"],
            &["get", "t1", "--json", "runstate", "--raw"],
            &["get", "t1", "runstate", "--all", "--json", "--raw"],
            &["get", "t1", "runstate", "-a", "-a"],
            &["get", "t1"],
            &["get"],
            &["get", "--", "t1", "x"],
            &["get", "-x", "t1", "x"],
            &["get", "--dir", "/tmp", "t1", "x"],
            &["--dir", "/tmp", "get", "t1", "x"],
            &["get", "t1", "x", "--help"],
            &["get", "t1", ""],
            &["list"],
            &["dump", "t1"],
        ];
        for case in cases {
            let argv = std::iter::once("shvar").chain(case.iter().copied());
            let fast = fast_get(argv.clone().map(Into::into));
            let parsed = Cli::try_parse_from(argv);
            if let Some(f) = fast {
                let Ok(Cli {
                    verb: Verb::Get(p),
                    dir: None,
                    wait: None,
                    ..
                }) = parsed
                else {
                    panic!("{case:?}: the fast path took what the parser does not: {parsed:?}");
                };
                assert_eq!(
                    (f.name, f.vars, f.all, f.raw, f.json),
                    (p.name, p.vars, p.all, p.raw, p.json),
                    "{case:?}"
                );
            }
        }
        // And it does take the plain forms.
        assert!(fast_get(["shvar", "get", "t1", "runstate"].map(Into::into)).is_some());
        assert!(fast_get(["shvar", "get", "t1", "x", "--json", "-a"].map(Into::into)).is_some());
    }
}
