//! `ybosspydaemon`: fills a local circular buffer by replaying a spy data file.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use daqproc::daemons::spy::ybos::{Ybos, SPEC};

fn main() -> ExitCode {
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    daqproc::framework::run(cli.process, SPEC, Ybos::build)
}
