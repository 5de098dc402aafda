//! `spycat`: read a circular buffer from the command line. `spycat gen1 --follow --verify`.
#![forbid(unsafe_code)]

mod cat;
mod cli;
mod report;

use std::process::ExitCode;

fn main() -> ExitCode {
    shvars::sys::default_sigpipe();
    let cli = daqproc::cli_extras::parse::<cli::Cli>();
    match cat::run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spycat: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
