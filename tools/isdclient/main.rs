//! `isdclient`: isectd's client. `isdclient -n isd1 -c "config service echo"`.
#![forbid(unsafe_code)]

mod cli;
mod command;
mod help;
mod transact;

use std::process::ExitCode;

fn main() -> ExitCode {
    shvars::sys::default_sigpipe();
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    if cli.service.is_some() {
        transact::run(&cli)
    } else {
        command::run(&cli)
    }
}
