//! `watch [VAR|PATTERN...] [--time abs|rel|inc|none] [--json] [--count N] [--deadband X]`: every
//! change of the variables, read from the region's change log (the owner is never disturbed),
//! with the options and the line format of `shvar watch` (`daqproc::observe::watch`), until
//! Ctrl-C, which ends the watch and returns to the prompt without ending spyctl.
//!
//! Ctrl-C is caught only while a watch runs: outside one, SIGINT keeps its default action
//! (the interactive line editor reads Ctrl-C as a key, so this only matters while a command
//! waits for its reply or a script runs).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use daqproc::observe::watch::{Event, Printer, Watch, WatchOpts};
use signal_hook::consts::SIGINT;

use crate::console::Console;

/// SIGINT actions, registered once: the default action while `armed`, else set `caught`.
struct SigintFlags {
    armed: Arc<AtomicBool>,
    caught: Arc<AtomicBool>,
}

static SIGINT_FLAGS: OnceLock<Result<SigintFlags, String>> = OnceLock::new();

fn sigint_flags() -> anyhow::Result<&'static SigintFlags> {
    SIGINT_FLAGS
        .get_or_init(|| {
            let armed = Arc::new(AtomicBool::new(true));
            let caught = Arc::new(AtomicBool::new(false));
            // Order matters: while armed, the default action (terminate) runs first.
            signal_hook::flag::register_conditional_default(SIGINT, armed.clone())
                .and_then(|_| signal_hook::flag::register(SIGINT, caught.clone()))
                .map_err(|e| e.to_string())?;
            Ok(SigintFlags { armed, caught })
        })
        .as_ref()
        .map_err(|e| anyhow!("cannot catch Ctrl-C for watch: {e}"))
}

/// Ctrl-C caught while this lives; the default action again once dropped.
struct CatchCtrlC(&'static SigintFlags);

impl CatchCtrlC {
    fn new() -> anyhow::Result<CatchCtrlC> {
        let f = sigint_flags()?;
        f.caught.store(false, Ordering::SeqCst);
        f.armed.store(false, Ordering::SeqCst);
        Ok(CatchCtrlC(f))
    }

    fn pressed(&self) -> bool {
        self.0.caught.load(Ordering::SeqCst)
    }
}

impl Drop for CatchCtrlC {
    fn drop(&mut self) {
        self.0.armed.store(true, Ordering::SeqCst);
    }
}

/// spyctl's `watch` line, parsed with the options `shvar watch` has.
#[derive(Debug, clap::Parser)]
#[command(
    name = "watch",
    about = "Print every change of the variables, in order, with its time"
)]
struct WatchLine {
    #[command(flatten)]
    opts: WatchOpts,
}

/// Runs `watch` until Ctrl-C (or `--count` values).
pub fn run(c: &Console, args: &[String]) -> anyhow::Result<()> {
    let line = match WatchLine::try_parse_from(
        std::iter::once("watch").chain(args.iter().map(String::as_str)),
    ) {
        Ok(l) => l,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp) => {
            print!("{}", e.render());
            return Ok(());
        }
        Err(e) => bail!("{}", e.render().to_string().trim_end()),
    };
    let o = line.opts;
    let name = c.need_selected()?.clone();
    let mut w = Watch::open(c.dir(), &name, &o)?;
    for p in w.unmatched() {
        eprintln!(
            "spyctl: note: no variable of {name} matches {p:?} yet: waiting for it to be added"
        );
    }
    let ctrl_c = CatchCtrlC::new()?;
    let mut printed = 0u64;
    if !w.alive() {
        eprintln!(
            "spyctl: note: {name} is not running: its values will not change until it restarts"
        );
    }
    let mut printer = Printer::new(&o, None);
    let stdout = std::io::stdout();
    loop {
        if ctrl_c.pressed() {
            // The terminal echoed ^C without a newline: end that line.
            if std::io::stdout().is_terminal() {
                println!();
            }
            return Ok(());
        }
        // What is ready first; the output is flushed before waiting (in short waits, so that
        // Ctrl-C ends the watch at once).
        let ev = match w.next(Duration::ZERO)? {
            Some(ev) => ev,
            None => {
                std::io::stdout().flush().ok();
                match w.next(Duration::from_millis(20))? {
                    Some(ev) => ev,
                    None => continue,
                }
            }
        };
        if let Event::Note(note) = &ev {
            eprintln!("spyctl: {name} {note}");
            continue;
        }
        if let Some(l) = printer.line(&ev) {
            let mut out = stdout.lock();
            writeln!(out, "{l}").context("writing to stdout")?;
        }
        if matches!(ev, Event::Value { .. }) {
            printed += 1;
            if o.count.is_some_and(|n| printed >= n) {
                std::io::stdout().flush().ok();
                return Ok(());
            }
        }
    }
}
