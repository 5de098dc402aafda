//! `cagateway`: the Channel Access gateway. `cagateway -n ca1 --access /etc/ca.acf`.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use daqproc::daemons::cagateway::{Gateway, Options, SPEC};

fn main() -> ExitCode {
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    let opts = Options {
        access: cli.access.clone(),
        pvlist: cli.pvlist.clone(),
        port: cli.port,
        beacon_port: cli.beacon_port,
        tick_us: Some(cli.tick_us),
        echo_secs: cli.echo_secs,
    };
    if let Err(e) = daqproc::daemons::cagateway::config(&opts, |k| std::env::var(k).ok()) {
        eprintln!("cagateway: error: {e}");
        return ExitCode::from(2);
    }
    daqproc::framework::run(cli.process, SPEC, move |ctx| Gateway::build(ctx, opts))
}
