//! `lvsmon`: the health-check daemon. `lvsmon -n mon1 --file checks.conf --interval 10`.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use daqproc::daemons::lvsmon::{self, Lvsmon, Options, SPEC};

// Counts each thread's allocations: the checker publishes its own in `loop_allocs` (0 once its
// loop runs, which is the seed's promise).
#[global_allocator]
static ALLOC: shvars::alloc::CountingAlloc = shvars::alloc::CountingAlloc;

/// The seed's runaway guard: an lvsmon that stops on an error waits this long before it exits,
/// so a supervisor restarting it in a loop cannot spin.
const RUNAWAY_PAUSE: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    let mut cli = daqproc::support::cli::parse::<cli::Cli>();
    let interval_ms = match cli.interval_ms() {
        Ok(ms) => ms,
        Err(e) => {
            eprintln!("lvsmon: error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.process.commands.is_empty() {
        cli.process.commands = vec!["init".to_owned(), "start".to_owned()];
    }
    let opts = Options {
        file: cli.file.clone(),
        interval_ms,
        user: cli.user.clone(),
    };
    let sizes = lvsmon::region_sizes(lvsmon::count_checks(&cli.file));
    let code = daqproc::framework::run_sized(cli.process, SPEC, sizes, move |ctx| {
        Lvsmon::build(ctx, opts)
    });
    if code != ExitCode::SUCCESS {
        std::thread::sleep(RUNAWAY_PAUSE);
    }
    code
}
