//! `farmspydaemon`: serves samples of a farm circular buffer to remote spy daemons over TCP.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use daqproc::daemons::spy::farm::{Farm, SPEC};

fn main() -> ExitCode {
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    daqproc::framework::run(cli.process, SPEC, Farm::build)
}
