//! `isdexecd`: starts isectd's workers on another host.
//! `isdexecd -n x1 --listen 10.0.0.5:5502 --key /etc/isectd/key --allow /usr/bin/evgen`.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use daqproc::daemons::isectd::execd::{ExecOptions, Execd, SPEC};

fn main() -> ExitCode {
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    let o = ExecOptions {
        listen: cli.listen,
        key: cli.key,
        allow: cli.allow,
    };
    daqproc::framework::run(cli.process, SPEC, move |ctx| Execd::build(ctx, &o))
}
