//! `isectd`: the node supervisor and transaction broker. `isectd -n isd1 --script node.isd`.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use daqproc::daemons::isectd::{Isectd, Options, SPEC};

fn main() -> ExitCode {
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    let script = match &cli.script {
        // The script starts programs: one another local user could have changed is refused.
        Some(p) => match daqproc::support::files::read_trusted_file(p) {
            Ok(s) => s.lines().map(str::to_owned).collect(),
            Err(e) => {
                eprintln!("isectd: error: the script {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
        None => Vec::new(),
    };
    let opts = Options {
        script,
        fresh: cli.fresh,
        key: cli.key.clone(),
        listen: cli.listen.clone(),
        req_port: cli.req_port,
    };
    daqproc::framework::run(cli.process, SPEC, move |ctx| Isectd::build(ctx, &opts))
}
