//! `shvar`: list processes, read and watch their shared variables, set them and send commands
//! through their owners, and clean up after dead processes.
#![forbid(unsafe_code)]
// The C `main` is shvars' (`shvars::lean`): Rust's runtime set-up is a sixth of a cold start.
// (Not in the unit-test build, whose main is the test harness's.)
#![cfg_attr(not(test), no_main)]

mod cleanup;
mod cli;
mod cmd;
mod dump;
mod export;
mod get;
mod list;
mod serve;
mod set;
mod util;
mod watch;

use std::process::ExitCode;

use cli::{Cli, Verb};

#[cfg(not(test))]
shvars::lean_main!(shvar_main);

#[cfg_attr(test, allow(dead_code))]
fn shvar_main() -> ExitCode {
    shvars::sys::default_sigpipe();
    // `shvar get` is what scripts run in loops: its plain forms skip building the whole
    // command-line parser (half of a cold start), with exactly the same results.
    if let Some(a) = cli::fast_get(std::env::args_os()) {
        let dir = shvars::RuntimeDir::resolve(None);
        return finish(get::run(&dir, &a));
    }
    let cli = daqproc::support::cli::parse::<Cli>();
    let dir = shvars::RuntimeDir::resolve(cli.dir.as_deref());
    let result = match &cli.verb {
        Verb::List(a) => list::run(&dir, a),
        Verb::Dump(a) => dump::run(&dir, a),
        Verb::Get(a) => get::run(&dir, a),
        Verb::Set(a) => set::run(&dir, a, cli.wait(a.wait)),
        Verb::Watch(a) => watch::run(&dir, a),
        Verb::Cmd(a) => cmd::run(&dir, a, cli.wait(a.wait)),
        Verb::Cleanup(a) => cleanup::run(&dir, a),
        Verb::Export(a) => export::run(&dir, a),
        Verb::Serve(a) => serve::run(&dir, a),
    };
    finish(result)
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shvar: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
