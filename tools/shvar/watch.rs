//! `shvar watch`: a line per change, like camonitor (the logic is `daqproc::observe::watch`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use daqproc::observe::watch::Watch;
use shvars::{ProcName, RuntimeDir};

use crate::cli::WatchArgs;
use crate::util::{time_text, value_text};

pub fn run(dir: &RuntimeDir, a: &WatchArgs) -> anyhow::Result<ExitCode> {
    let name = ProcName::new(&a.name)?;
    let mut w = Watch::open(dir, &name, &a.vars)?;
    let interval = Duration::from_secs_f64(a.interval);
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        let mut out = stdout.lock();
        let mut done = false;
        w.poll(|c| {
            writeln!(
                out,
                "{} {} {} {}",
                time_text(c.time_ns),
                name,
                c.spec.name,
                value_text(c.spec, c.value, a.raw)
            )
            .context("writing to stdout")?;
            printed += 1;
            done = a.count.is_some_and(|n| printed >= n);
            Ok::<_, anyhow::Error>(!done)
        })?;
        out.flush().ok();
        drop(out);
        if done {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(interval);
        if let Some(note) = w.check()? {
            eprintln!("shvar: {name} {note}");
        }
    }
}
