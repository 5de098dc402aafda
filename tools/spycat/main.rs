//! `spycat`: read a circular buffer, or a farm spy daemon, from the command line.
//! `spycat gen1 --follow --verify`, `spycat 'remote://farm1:2115?mode=push' --stats`.
#![forbid(unsafe_code)]

mod cat;
mod cli;
mod file;
mod local;
mod remote;
mod report;
mod source;
mod uri;

use std::process::ExitCode;

fn main() -> ExitCode {
    shvars::sys::default_sigpipe();
    let mut cli = daqproc::support::cli::parse::<cli::Cli>();
    if let Err(e) = cli.resolve() {
        eprintln!("spycat: error: {e}");
        return ExitCode::from(2);
    }
    match cat::run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spycat: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
