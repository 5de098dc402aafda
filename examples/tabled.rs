//! `tabled`: a framework daemon that publishes a table whose rows come and go, for the tests
//! of region format 2 (and as a model for daemons that publish tables).
//!
//! - `add N`: a thread adds N rows, one at a time: `row.K.value` (K), `row.K.check` (7·K) and
//!   `row.K.name` ("row-K"), so a reader can tell a consistent row from a torn or foreign one;
//!   `rows_added` counts them.
//! - `retire-odd`: a thread retires every live row with an odd K (`rows_retired` counts them);
//!   the next rows added reuse their slots.
//! - `burst HZ SECS`: a thread adds 1 to `counter` HZ times a second for SECS seconds, then
//!   sets `burst_done` to the number of writes.
//! - `temp`: a R/W FLOAT with alarm limits (LOLO 0, LOW 10, HIGH 40, HIHI 60) and precision 1.
//!
//! `--log-cap N` sets the size of the region's change log (a power of two; small on purpose
//! to see a watcher miss changes).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use daqproc::framework::{App, BoxError, Command, Ctx, Outcome, ProcessArgs, ProcessSpec};
use shvars::region::{CreateOptions, IntVar, VarRegion, VarSpec};

/// A framework daemon with a table whose rows come and go.
#[derive(Debug, Parser)]
#[command(name = "tabled")]
struct Cli {
    #[command(flatten)]
    process: ProcessArgs,
    /// Entries of the region's change log (a power of two)
    #[arg(long, default_value_t = shvars::region::DEFAULT_LOG_CAP)]
    log_cap: usize,
}

struct Tabled {
    region: Arc<VarRegion>,
    next_row: Arc<std::sync::atomic::AtomicU64>,
    counter: IntVar,
    burst_done: IntVar,
    rows_added: IntVar,
    rows_retired: IntVar,
    busy: Arc<AtomicBool>,
}

fn row_specs(k: u64) -> Vec<VarSpec> {
    vec![
        VarSpec::int(&format!("row.{k}.value"), k as i64).desc("K"),
        VarSpec::int(&format!("row.{k}.check"), 7 * k as i64).desc("7 K"),
        VarSpec::string(&format!("row.{k}.name"), 24, &format!("row-{k}")).desc("row-K"),
    ]
}

fn count(args: &[String], what: &str) -> Result<u64, String> {
    args[0]
        .parse()
        .map_err(|_| format!("{what} {:?} is not a whole number", args[0]))
}

fn claim(t: &Tabled) -> Result<(), String> {
    if t.busy.swap(true, Ordering::AcqRel) {
        return Err("busy with an earlier add or retire-odd; wait for it".into());
    }
    Ok(())
}

fn add(t: &mut Tabled, _: &mut Ctx, args: &[String]) -> Outcome {
    let n = count(args, "row count")?;
    claim(t)?;
    let (region, next, added, busy) = (
        t.region.clone(),
        t.next_row.clone(),
        t.rows_added.clone(),
        t.busy.clone(),
    );
    std::thread::spawn(move || {
        for _ in 0..n {
            let k = next.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = region.add_vars(&row_specs(k)) {
                eprintln!("tabled: adding row {k}: {e}");
                break;
            }
            added.add(1);
            std::thread::yield_now();
        }
        busy.store(false, Ordering::Release);
    });
    Ok(format!("adding {n} rows").into())
}

fn retire_odd(t: &mut Tabled, _: &mut Ctx, _: &[String]) -> Outcome {
    claim(t)?;
    let (region, retired, busy) = (t.region.clone(), t.rows_retired.clone(), t.busy.clone());
    let rows: Vec<u64> = region
        .specs()
        .iter()
        .filter_map(|s| {
            s.name
                .strip_prefix("row.")?
                .strip_suffix(".value")?
                .parse()
                .ok()
        })
        .filter(|k| k % 2 == 1)
        .collect();
    let n = rows.len();
    std::thread::spawn(move || {
        for k in rows {
            match region.retire_prefix(&format!("row.{k}.")) {
                Ok(3) => {
                    retired.add(1);
                }
                Ok(m) => eprintln!("tabled: row {k} had {m} variables, not 3"),
                Err(e) => eprintln!("tabled: retiring row {k}: {e}"),
            }
            std::thread::yield_now();
        }
        busy.store(false, Ordering::Release);
    });
    Ok(format!("retiring {n} rows").into())
}

fn burst(t: &mut Tabled, _: &mut Ctx, args: &[String]) -> Outcome {
    let hz = count(&args[..1], "rate")?.max(1);
    let secs: f64 = args[1]
        .parse()
        .map_err(|_| format!("duration {:?} is not a number of seconds", args[1]))?;
    let n = (hz as f64 * secs).round() as u64;
    let (counter, done) = (t.counter.clone(), t.burst_done.clone());
    done.set(0);
    std::thread::spawn(move || {
        let start = Instant::now();
        for i in 1..=n {
            let due = start + Duration::from_secs_f64(i as f64 / hz as f64);
            loop {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                if due - now > Duration::from_micros(300) {
                    std::thread::sleep(due - now - Duration::from_micros(200));
                } else {
                    std::hint::spin_loop();
                }
            }
            counter.add(1);
        }
        done.set(n as i64);
    });
    Ok(format!("{n} writes at {hz} Hz").into())
}

impl App for Tabled {
    fn commands() -> Vec<Command<Self>> {
        vec![
            Command::new("add", "Add N rows of the table row.K.*, one at a time")
                .args("N", 1, 1)
                .handler(add),
            Command::new("retire-odd", "Retire every row with an odd K").handler(retire_odd),
            Command::new(
                "burst",
                "Add 1 to counter HZ times a second for SECS seconds",
            )
            .args("HZ SECS", 2, 2)
            .handler(burst),
        ]
    }

    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        vec![format!(
            "rows added {}, retired {}",
            self.rows_added.get(),
            self.rows_retired.get()
        )]
    }
}

fn build(ctx: &mut Ctx) -> Result<Tabled, BoxError> {
    let r = ctx.region().clone();
    r.add_float(
        VarSpec::float("temp", 20.0)
            .rw()
            .unit("C")
            .alarms(Some(0.0), Some(10.0), Some(40.0), Some(60.0))
            .precision(1)
            .desc("A temperature with alarm limits"),
    )?;
    Ok(Tabled {
        counter: r.add_int(
            VarSpec::int("counter", 0)
                .counter()
                .desc("Written by burst"),
        )?,
        burst_done: r
            .add_int(VarSpec::int("burst_done", 0).desc("Writes of the last burst, once done"))?,
        rows_added: r.add_int(VarSpec::int("rows_added", 0).counter().desc("Rows added"))?,
        rows_retired: r.add_int(
            VarSpec::int("rows_retired", 0)
                .counter()
                .desc("Rows retired"),
        )?,
        next_row: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        busy: Arc::new(AtomicBool::new(false)),
        region: r,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sizes = CreateOptions {
        log_cap: cli.log_cap,
        ..CreateOptions::default()
    };
    daqproc::framework::run_sized(cli.process, ProcessSpec::new("tabled"), sizes, build)
}
