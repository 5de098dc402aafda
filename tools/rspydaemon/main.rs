//! `rspydaemon`: fills a local circular buffer with events fetched from a farm spy daemon.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use daqproc::daemons::spy::remote::{Remote, SPEC};

fn main() -> ExitCode {
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    daqproc::framework::run(cli.process, SPEC, Remote::build)
}
