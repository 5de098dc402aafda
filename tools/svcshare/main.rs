//! `svcshare`: shares one resource among peers. `svcshare -n peer1 --listen 127.0.0.1:8999
//! --upstream server:80` (see docs/svcshare.md).
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use daqproc::daemons::svcshare::{Svcshare, SPEC};

fn main() -> ExitCode {
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    let opts = match cli.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("svcshare: error: {e}");
            return ExitCode::from(2);
        }
    };
    daqproc::framework::run(cli.process, SPEC, move |ctx| Svcshare::build(ctx, opts))
}
