//! `ticker`: the example process of the framework. While RUNNING_STATE it counts ticks at a
//! settable rate.
//!
//! Variables: `rate` (R/W ticks per second, default 10), `ticks` (R, reset by `start`), `label`
//! (R/W free text), plus the framework's standard and statistics variables. Commands: the
//! standard run-control set `init`, `start`, `pause`, `resume`, `update`, `end`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shvars::region::{IntVar, StrVar, VarSpec};

use crate::framework::stats::{Stats, StatsConfig};
use crate::framework::{App, BoxError, Command, Ctx, Outcome, ProcessSpec, RunState};

/// How the framework runs a ticker.
pub const SPEC: ProcessSpec = ProcessSpec {
    default_name: "ticker",
    stats: Some(StatsConfig {
        upfreq: 10,
        upfreq_l: 100,
        pack_name: "ticks",
    }),
    tick: None,
};

/// The ticker's state.
#[derive(Debug)]
pub struct Ticker {
    ticks: IntVar,
    label: StrVar,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Publishes the ticker's variables and starts its worker thread.
    ///
    /// # Errors
    /// If a variable cannot be published.
    pub fn build(ctx: &mut Ctx) -> Result<Ticker, BoxError> {
        let r = ctx.region();
        let rate = r.add_int(
            VarSpec::int("rate", 10)
                .rw()
                .unit("Hz")
                .range(Some(1.0), Some(1_000_000.0))
                .metric("shvar_ticker_target_rate_hertz")
                .desc("Ticks per second while RUNNING_STATE (the setpoint)"),
        )?;
        let ticks = r.add_int(
            VarSpec::int("ticks", 0)
                .counter()
                .desc("Ticks counted since the last start"),
        )?;
        let label = r.add_str(
            VarSpec::string("label", 64, "")
                .rw()
                .desc("Free text for the operator"),
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = ctx.stats().cloned().ok_or("ticker needs statistics")?;
        let worker = {
            let (ticks, stop, state) = (ticks.clone(), stop.clone(), ctx.runstate_var());
            std::thread::Builder::new()
                .name("ticker".into())
                .spawn(move || work(&rate, &ticks, &state, &stats, &stop))?
        };
        Ok(Ticker {
            ticks,
            label,
            stop,
            worker: Some(worker),
        })
    }
}

/// Counts a tick every 1/rate seconds while the run state is RUNNING_STATE.
fn work(rate: &IntVar, ticks: &IntVar, state: &IntVar, stats: &Stats, stop: &AtomicBool) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if state.get() != RunState::Running as i64 {
            std::thread::sleep(Duration::from_millis(5));
            next = Instant::now();
            continue;
        }
        ticks.add(1);
        stats.count(1, 1, 0);
        stats.end_loop();
        let period = Duration::from_secs_f64(1.0 / rate.get().max(1) as f64);
        next += period;
        let now = Instant::now();
        if next > now {
            // Sleep in short steps so a pause or a new rate takes effect promptly.
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                if state.get() != RunState::Running as i64 {
                    break;
                }
                std::thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
            }
        } else if now - next > Duration::from_secs(1) {
            // Far behind (the machine was busy): do not burst to catch up.
            next = now;
        }
    }
}

fn start(t: &mut Ticker, ctx: &mut Ctx, _: &[String]) -> Outcome {
    t.ticks.set(0);
    let label = t.label.get();
    ctx.log().info(format!(
        "ticking{}",
        if label.is_empty() {
            String::new()
        } else {
            format!(" ({label})")
        }
    ));
    Ok("ticking".into())
}

fn end(t: &mut Ticker, _: &mut Ctx, _: &[String]) -> Outcome {
    Ok(format!("stopped after {} ticks", t.ticks.get()).into())
}

impl App for Ticker {
    fn commands() -> Vec<Command<Self>> {
        vec![
            Command::init("Initialize the process (at start-up and after any error)")
                .reply("initialised"),
            Command::start("Start ticking at `rate` per second; resets ticks").handler(start),
            Command::pause("Stop ticking, keep the count").reply("paused"),
            Command::resume("Tick again").reply("ticking again"),
            Command::update("Update the statistics variables now"),
            Command::end("Stop ticking").handler(end),
        ]
    }

    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        vec![format!("ticks: {}", self.ticks.get())]
    }

    fn shutdown(&mut self, _ctx: &mut Ctx) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
