//! `evgen`: writes synthetic, self-checking events into a circular buffer.
//! `evgen -n gen1 --size 64-4096 --rate 10000`, then `spycat gen1 --follow --verify`.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use daqproc::daemons::evgen::{Evgen, EvgenConfig, SPEC};

fn main() -> ExitCode {
    let mut cli = daqproc::support::cli::parse::<cli::Cli>();
    let cfg = EvgenConfig {
        buffer: cli.buffer,
        circsize: cli.circsize,
        size: cli.size,
        rate: cli.rate,
        count: cli.count,
        exit_when_done: cli.exit_when_done,
        first: cli.first,
        seed: cli.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        }),
        lossless_timeout: cli.lossless_timeout,
    };
    // A size that cannot fit the buffer is a usage error: say so before anything is created.
    if let Err(e) = cfg.check() {
        eprintln!("evgen: error: {e}");
        return ExitCode::from(2);
    }
    if !cli.wait_start {
        cli.process
            .commands
            .splice(0..0, ["init".to_owned(), "start".to_owned()]);
    }
    daqproc::framework::run(cli.process, SPEC, move |ctx| Evgen::build(ctx, cfg))
}
