//! `ticker`: the framework's example process. `ticker -n t1 -c init -c start`.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use daqproc::ticker::{Ticker, SPEC};

fn main() -> ExitCode {
    let cli = daqproc::cli_extras::parse::<cli::Cli>();
    daqproc::process::run(cli.process, SPEC, Ticker::build)
}
