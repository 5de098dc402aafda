//! `ticker`: the framework's example process. `ticker -n t1 -c init -c start`.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use daqproc::daemons::ticker::{Ticker, SPEC};

fn main() -> ExitCode {
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    daqproc::framework::run(cli.process, SPEC, Ticker::build)
}
