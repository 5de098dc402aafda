//! `shvar watch`: a line per change, like camonitor (the logic is `daqproc::observe::watch`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use daqproc::observe::watch::{Event, Printer, Watch};
use shvars::{ProcName, RuntimeDir};

use crate::cli::WatchArgs;

pub fn run(dir: &RuntimeDir, a: &WatchArgs) -> anyhow::Result<ExitCode> {
    let name = ProcName::new(&a.name)?;
    let mut w = Watch::open(dir, &name, &a.opts)?;
    for p in w.unmatched() {
        eprintln!(
            "shvar: note: no variable of {name} matches {p:?} yet: waiting for it to be added"
        );
    }
    if !w.alive() {
        eprintln!(
            "shvar: note: {name} is not running: its values will not change until it restarts"
        );
    }
    let mut printer = Printer::new(&a.opts, Some(name.as_str()));
    let mut printed = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        // What is ready first; the output is flushed before waiting for more.
        let ev = match w.next(Duration::ZERO)? {
            Some(ev) => ev,
            None => {
                out.flush().context("writing to stdout")?;
                match w.next(Duration::from_secs(3600))? {
                    Some(ev) => ev,
                    None => continue,
                }
            }
        };
        if let Event::Note(note) = &ev {
            out.flush().context("writing to stdout")?;
            eprintln!("shvar: {name} {note}");
            continue;
        }
        if let Some(line) = printer.line(&ev) {
            writeln!(out, "{line}").context("writing to stdout")?;
        }
        if matches!(ev, Event::Value { .. }) {
            printed += 1;
            if a.opts.count.is_some_and(|n| printed >= n) {
                out.flush().context("writing to stdout")?;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}
