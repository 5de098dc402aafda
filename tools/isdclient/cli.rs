use std::path::PathBuf;

use clap::Parser;

/// isectd's client: sends isectd a command and prints its reply as the seed shows it.
///
/// `isdclient -c help` lists the commands; `isdclient -c ""` shows isdData. Exit status: 0 the
/// command succeeded, 1 it failed (or isectd is not there), 2 bad usage.
#[derive(Debug, Parser)]
#[command(name = "isdclient", version)]
pub struct Cli {
    /// The isectd to talk to (its process name)
    #[arg(
        short = 'n',
        long = "name",
        value_name = "NAME",
        default_value = "isectd",
        env = "ISD_NAME"
    )]
    pub name: String,
    /// Runtime directory [default: $SHVAR_DIR, else /dev/shm/shvars, else $XDG_RUNTIME_DIR/shvars]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// A command for isectd (repeatable: run in order, the first failure stops); "" shows isdData
    #[arg(
        short = 'c',
        long = "command",
        value_name = "COMMAND",
        required_unless_present = "service"
    )]
    pub commands: Vec<String>,
    /// Send transactions to SERVICE instead: MESSAGE, or each line of stdin
    #[arg(
        short = 's',
        long = "service",
        value_name = "SERVICE",
        conflicts_with = "commands"
    )]
    pub service: Option<String>,
    /// The transaction (with -s); without it, one transaction per line of stdin
    #[arg(requires = "service")]
    pub message: Option<String>,
    /// isectd's client address (with -s): HOST:PORT or unix:PATH [default: isectd's Unix
    /// socket (xact_socket), else 127.0.0.1 and its req_port]
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Seconds to wait for each reply
    #[arg(short = 'w', long = "wait", value_name = "SECONDS", default_value = "60", value_parser = daqproc::support::cli::parse_secs)]
    pub wait: f64,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
