//! `watch VAR... [--interval S] [--count N]`: a line per change of the variables, read from the
//! region (the owner is never disturbed), until Ctrl-C, which ends the watch and returns to the
//! prompt without ending spyctl.
//!
//! Ctrl-C is caught only while a watch runs: outside one, SIGINT keeps its default action
//! (the interactive line editor reads Ctrl-C as a key, so this only matters while a command
//! waits for its reply or a script runs).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use daqproc::observe::watch::Watch;
use signal_hook::consts::SIGINT;

use crate::console::Console;
use crate::verbs::time_text;
use daqproc::support::cli::parse_secs;

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

struct Options {
    vars: Vec<String>,
    interval: Duration,
    count: Option<u64>,
}

const USAGE: &str = "usage: watch [VAR...] [--interval S] [--count N]";

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        vars: Vec::new(),
        interval: Duration::from_millis(100),
        count: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--interval" | "-i" => {
                let v = it.next().ok_or_else(|| anyhow!("{USAGE}"))?;
                o.interval = Duration::from_secs_f64(
                    parse_secs(v).map_err(|e| anyhow!("watch --interval: {e}"))?,
                );
            }
            "--count" | "-c" => {
                let v = it.next().ok_or_else(|| anyhow!("{USAGE}"))?;
                let n = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow!("watch --count: {v:?} is not a positive count"))?;
                o.count = Some(n);
            }
            s if s.starts_with('-') => bail!("watch: unknown option {s}; {USAGE}"),
            _ => o.vars.push(a.clone()),
        }
    }
    Ok(o)
}

/// Runs `watch` until Ctrl-C (or `--count` lines).
pub fn run(c: &Console, args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let name = c.need_selected()?.clone();
    let mut w = Watch::open(c.dir(), &name, &o.vars)?;
    let ctrl_c = CatchCtrlC::new()?;
    let mut printed = 0u64;
    if !w.alive() {
        eprintln!(
            "spyctl: note: {name} is not running: its values will not change until it restarts"
        );
    }
    let stdout = std::io::stdout();
    loop {
        let mut out = stdout.lock();
        let mut done = false;
        w.poll(|ch| {
            writeln!(
                out,
                "{} {} {}",
                time_text(ch.time_ns),
                ch.spec.name,
                ch.spec.display(ch.value)
            )
            .context("writing to stdout")?;
            printed += 1;
            done = o.count.is_some_and(|n| printed >= n);
            Ok::<_, anyhow::Error>(!done)
        })?;
        out.flush().ok();
        drop(out);
        if done {
            return Ok(());
        }
        // Sleep in short steps so Ctrl-C ends the watch at once.
        let until = Instant::now() + o.interval;
        loop {
            if ctrl_c.pressed() {
                // The terminal echoed ^C without a newline: end that line.
                if std::io::stdout().is_terminal() {
                    println!();
                }
                return Ok(());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
        if let Some(note) = w.check()? {
            eprintln!("spyctl: {name} {note}");
        }
    }
}
