//! `farmspydaemon`: serves samples of a farm circular buffer to remote spy daemons over TCP.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use daqproc::spy::farm::{Farm, SPEC};

fn main() -> ExitCode {
    let cli = daqproc::cli_extras::parse::<cli::Cli>();
    daqproc::process::run(cli.process, SPEC, Farm::build)
}
