//! `isdbench`: isectd against its peers, in one run. `isdbench restart`, `isdbench pause`.
//!
//! With `ISDBENCH_REPORT=HOST:PORT` in its environment the binary is instead the measured
//! worker: it sends its pid and the monotonic clock at its start to that UDP address, then
//! waits to be killed (every supervisor runs the same program).
#![forbid(unsafe_code)]

mod child;
mod cli;
mod pause;
mod restart;
mod stats;
mod xact;

use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(addr) = std::env::var_os("ISDBENCH_REPORT") {
        child::run(&addr.to_string_lossy());
    }
    if std::env::var_os("ISDBENCH_DIRECT").is_some() {
        xact::direct_server_main();
    }
    shvars::sys::default_sigpipe();
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    let r = match cli.what {
        cli::What::Restart {
            kills,
            up,
            skip_missing,
        } => restart::run(kills, up, skip_missing),
        cli::What::Pause { workers, rounds } => pause::run(workers, rounds),
        cli::What::Xact(a) => xact::run(&a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("isdbench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
