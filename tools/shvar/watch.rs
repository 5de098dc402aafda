//! `shvar watch`: a line per change, like camonitor. Polls the region (reads never disturb the
//! owner) and follows a restart of the process.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use shvars::region::{RegionReader, Value, VarRef};
use shvars::RuntimeDir;

use crate::cli::WatchArgs;
use crate::util::{open, time_text, value_text};

struct Watched {
    var: VarRef,
    last: Option<(Value, u64)>,
}

fn resolve(r: &RegionReader, names: &[String]) -> anyhow::Result<Vec<Watched>> {
    let refs = if names.is_empty() {
        r.specs()
            .iter()
            .map(|s| r.find(&s.name))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        names
            .iter()
            .map(|n| r.find(n))
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(refs
        .into_iter()
        .map(|var| Watched { var, last: None })
        .collect())
}

pub fn run(dir: &RuntimeDir, a: &WatchArgs) -> anyhow::Result<ExitCode> {
    let (name, mut r) = open(dir, &a.name)?;
    let mut watched = resolve(&r, &a.vars)?;
    let interval = Duration::from_secs_f64(a.interval);
    let mut printed = 0u64;
    let mut alive = r.is_alive();
    let mut last_check = Instant::now();
    let stdout = std::io::stdout();
    loop {
        let mut out = stdout.lock();
        for w in &mut watched {
            let Ok(v) = r.read(&w.var) else { continue };
            let t = r.changed_ns(&w.var);
            let changed = match &w.last {
                None => true,
                Some((lv, lt)) => *lv != v || *lt != t,
            };
            if changed {
                writeln!(
                    out,
                    "{} {} {} {}",
                    time_text(t),
                    name,
                    w.var.spec().name,
                    value_text(w.var.spec(), &v, a.raw)
                )
                .context("writing to stdout")?;
                w.last = Some((v, t));
                printed += 1;
                if a.count.is_some_and(|c| printed >= c) {
                    out.flush().ok();
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        out.flush().ok();
        drop(out);
        std::thread::sleep(interval);
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            let now_alive = r.is_alive();
            if r.is_replaced() {
                if let Ok((_, nr)) = open(dir, &a.name) {
                    eprintln!("shvar: {name} restarted (pid {})", nr.info().pid);
                    r = nr;
                    watched = resolve(&r, &a.vars)?;
                    alive = r.is_alive();
                    continue;
                }
            } else if now_alive != alive {
                eprintln!(
                    "shvar: {name} (pid {}) {}",
                    r.info().pid,
                    if now_alive {
                        "is alive again"
                    } else {
                        "is no longer running"
                    }
                );
                alive = now_alive;
            }
            if a.vars.is_empty() && r.refresh_schema().unwrap_or(false) {
                let known: Vec<String> =
                    watched.iter().map(|w| w.var.spec().name.clone()).collect();
                for s in r.specs() {
                    if !known.contains(&s.name) {
                        watched.push(Watched {
                            var: r.find(&s.name)?,
                            last: None,
                        });
                    }
                }
            }
        }
    }
}
