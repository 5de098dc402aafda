//! `rspydaemon`: fills a local circular buffer with events fetched from a farm spy daemon.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use daqproc::spy::remote::{Remote, SPEC};

fn main() -> ExitCode {
    let cli = daqproc::cli_extras::parse::<cli::Cli>();
    daqproc::process::run(cli.process, SPEC, Remote::build)
}
