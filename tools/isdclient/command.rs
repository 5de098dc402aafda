//! `-c COMMAND`: one command over isectd's control socket, its reply printed as it comes.

use std::process::ExitCode;
use std::time::Duration;

use daqproc::control::client::{ClientError, Connection};
use daqproc::control::reply::{ErrorKind, Reply};
use shvars::{ProcName, RuntimeDir};

use crate::cli::Cli;

/// What the command line's words become on the wire: the empty command is `isddata`, `help`
/// is the table as data (formatted here as the seed prints it).
fn wire(cmd: &str) -> String {
    match cmd.trim() {
        "" => "isddata".to_owned(),
        "help" => "help --json".to_owned(),
        other => other.to_owned(),
    }
}

pub fn run(cli: &Cli) -> ExitCode {
    let name = match ProcName::new(&cli.name) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("isdclient: error: {e}");
            return ExitCode::from(2);
        }
    };
    let dir = RuntimeDir::resolve(cli.dir.as_deref());
    let wait = Duration::from_secs_f64(cli.wait);
    let mut conn = match Connection::open(&dir, &name) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    for cmd in &cli.commands {
        let reply = match conn.call(&wire(cmd), wait) {
            Ok(r) => r,
            Err(e) => return fail(&e),
        };
        match reply {
            Reply::Ok { text } => {
                let text = if cmd.trim() == "help" {
                    match crate::help::seed_format(&text) {
                        Ok(t) => t,
                        Err(e) => {
                            eprintln!("isdclient: error: {name} sent a command table that cannot be read: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                } else {
                    text
                };
                if !text.is_empty() {
                    println!("{text}");
                }
            }
            Reply::Error(f) if f.kind == ErrorKind::Unknown => {
                eprintln!(
                    "isdclient: {name}: unknown command '{}'",
                    cmd.split_whitespace().next().unwrap_or("")
                );
                if let Ok(Reply::Ok { text }) = conn.call("help --json", wait) {
                    if let Ok(t) = crate::help::seed_format(&text) {
                        println!("{t}");
                    }
                }
                return ExitCode::FAILURE;
            }
            Reply::Error(f) => {
                eprintln!("isdclient: {name}: {}", f.text);
                return ExitCode::from(if f.kind == ErrorKind::Usage { 2 } else { 1 });
            }
        }
    }
    ExitCode::SUCCESS
}

fn fail(e: &ClientError) -> ExitCode {
    eprintln!("isdclient: error: {e}");
    ExitCode::FAILURE
}
