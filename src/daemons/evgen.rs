//! `evgen`: a framework process that writes synthetic, self-checking events ([`super::payload`])
//! into a circular buffer, as a DAQ event builder would.
//!
//! It owns one [`CircWriter`] (on its worker thread) and publishes `events`, `bytes`, `lastevnr`,
//! `rate` (FLOAT, events/s measured over the last second), `refused`, `readers` (lossless readers
//! registered), `buffer` (the buffer's path) and the R/W `target_rate` (events/s, 0 = unlimited),
//! plus the framework's standard and `sg_*`/`sl_*` variables.
//!
//! Production follows the run state: it produces only in RUNNING_STATE. `start` and `resume`
//! start it, `pause` and `end` stop it and answer only once the worker has stopped, so the
//! counters in the reply are final (they answer later: the process keeps serving meanwhile). Event numbers keep increasing over the whole life of the
//! process (the buffer refuses anything else). With a `count`, production stops for good after
//! that many events (and the process exits if `exit_when_done`).
//!
//! This module never touches the buffer's memory itself: everything goes through `shvars::circ`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shvars::circ::{CircOptions, CircWriter, StopWaiting, WriteError};
use shvars::region::{FloatVar, IntVar, StrVar, VarSpec};

use super::payload;
use crate::framework::stats::{Stats, StatsConfig};
use crate::framework::{
    App, BoxError, Command, Ctx, Deferred, Done, Outcome, ProcessSpec, RunState, TimerId, TICK,
};
pub use crate::support::units::parse_bytes;

/// How the framework runs an evgen.
pub const SPEC: ProcessSpec = ProcessSpec {
    default_name: "evgen",
    stats: Some(StatsConfig {
        upfreq: 100,
        upfreq_l: 1000,
        pack_name: "batches",
    }),
    tick: Some(TICK),
};

/// Default buffer capacity (4 MiB).
pub const DEFAULT_CIRCSIZE: u64 = 4 << 20;

/// Events written per worker loop at most (between two looks at the run flag and the pacing).
const BATCH: u64 = 256;
/// How long `pause`/`end` wait for the worker to stop (it may be blocked by a lossless reader).
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Event sizes: one size, or a uniform random size in an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    /// Smallest size in bytes.
    pub min: usize,
    /// Largest size in bytes.
    pub max: usize,
}

impl FromStr for SizeRange {
    type Err = String;

    /// `N` or `MIN-MAX`, each a byte count with an optional K/M/G suffix (powers of 1024), at
    /// least the payload header.
    fn from_str(s: &str) -> Result<Self, String> {
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (parse_bytes(a)?, parse_bytes(b)?),
            None => {
                let n = parse_bytes(s)?;
                (n, n)
            }
        };
        if min > max {
            return Err(format!(
                "{s:?}: the smallest size is larger than the largest"
            ));
        }
        if min < payload::MIN_LEN as u64 {
            return Err(format!(
                "{s:?}: events need at least {} bytes (the payload header: event number, length, checksum)",
                payload::MIN_LEN
            ));
        }
        if max > payload::MAX_LEN as u64 {
            return Err(format!(
                "{s:?}: events have at most {} bytes",
                payload::MAX_LEN
            ));
        }
        Ok(SizeRange {
            min: min as usize,
            max: max as usize,
        })
    }
}

impl fmt::Display for SizeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// What to generate, from the command line.
#[derive(Debug, Clone)]
pub struct EvgenConfig {
    /// Buffer name (bare, in the runtime directory) or absolute path; `None`: the process name.
    pub buffer: Option<String>,
    /// Buffer capacity in bytes.
    pub circsize: u64,
    /// Event sizes.
    pub size: SizeRange,
    /// Initial `target_rate` (events/s, 0 = unlimited).
    pub rate: u64,
    /// Events to write in all (0 = no limit).
    pub count: u64,
    /// Exit (code 0) once `count` events are written.
    pub exit_when_done: bool,
    /// First event number.
    pub first: u64,
    /// Seed of the size generator.
    pub seed: u64,
    /// How long a lossless reader may block the producer before it is evicted.
    pub lossless_timeout: Duration,
}

impl EvgenConfig {
    /// Checks what can be checked before anything is created: sizes against the buffer.
    ///
    /// # Errors
    /// A message saying which option to change.
    pub fn check(&self) -> Result<(), String> {
        let max_event = self.circsize / 2;
        if self.size.max as u64 > max_event {
            return Err(format!(
                "--size {}: events of up to {} bytes do not fit a buffer of {} bytes (--circsize), which takes events of at most {max_event} bytes (half its capacity): use --circsize {} or more, or smaller events",
                self.size,
                self.size.max,
                self.circsize,
                (self.size.max as u64 * 2).next_multiple_of(8)
            ));
        }
        if self.first == 0 {
            return Err("--first 0: event numbers start at 1".to_owned());
        }
        Ok(())
    }
}

/// The handshake between the command handlers and the worker.
#[derive(Debug, Default)]
struct Control {
    /// Produce (set by start/resume, cleared by pause/end and when the count is reached).
    run: AtomicBool,
    /// The worker is inside a batch (it checked `run` and is writing).
    busy: AtomicBool,
    /// The count is reached: nothing more will be produced.
    done: AtomicBool,
    /// Stop the worker thread (exit).
    stop: AtomicBool,
}

/// Counters the worker publishes.
#[derive(Debug, Clone)]
struct Vars {
    events: IntVar,
    bytes: IntVar,
    lastevnr: IntVar,
    rate: FloatVar,
    refused: IntVar,
    readers: IntVar,
    circfulls: IntVar,
    target_rate: IntVar,
}

/// An evgen process.
#[derive(Debug)]
pub struct Evgen {
    cfg: EvgenConfig,
    path: PathBuf,
    vars: Vars,
    ctl: Arc<Control>,
    worker: Option<JoinHandle<()>>,
    /// Makes the worker stop waiting for lossless readers (on exit).
    stop_waiting: StopWaiting,
    done_logged: bool,
    /// A `pause` or `end` waiting for the worker to stop: the reply, what it is, since when,
    /// and the timer that looks.
    halting: Option<Halting>,
}

#[derive(Debug)]
struct Halting {
    reply: Deferred,
    what: &'static str,
    since: Instant,
    timer: TimerId,
}

impl Evgen {
    /// Publishes the variables, creates the buffer and starts the (idle) worker thread.
    ///
    /// # Errors
    /// A variable that cannot be published, or a buffer that cannot be created (bad name or
    /// capacity, another live producer, I/O).
    pub fn build(ctx: &mut Ctx, cfg: EvgenConfig) -> Result<Evgen, BoxError> {
        cfg.check()?;
        let lname = cfg
            .buffer
            .clone()
            .unwrap_or_else(|| ctx.name().as_str().to_owned());
        let path = ctx.dir().producer_buffer_path(&lname)?;
        let writer = CircWriter::create_with(
            &path,
            &CircOptions::new(cfg.circsize).lossless_timeout(cfg.lossless_timeout),
        )?;
        let r = ctx.region();
        let vars =
            Vars {
                events: r.add_int(
                    VarSpec::int("events", 0)
                        .counter()
                        .desc("Events written into the buffer"),
                )?,
                bytes: r.add_int(
                    VarSpec::int("bytes", 0)
                        .counter()
                        .unit("B")
                        .desc("Payload bytes written into the buffer"),
                )?,
                lastevnr: r.add_int(
                    VarSpec::int("lastevnr", 0).desc("Event number of the last event written"),
                )?,
                rate: r.add_float(
                    VarSpec::float("rate", 0.0)
                        .unit("Hz")
                        .metric("shvar_evgen_event_rate_hertz")
                        .desc("Events written per second, measured over the last second"),
                )?,
                refused: r.add_int(VarSpec::int("refused", 0).counter().desc(
                    "Events the buffer refused as too large (never with a checked --size)",
                ))?,
                readers: r.add_int(
                    VarSpec::int("readers", 0).desc("Lossless readers registered in the buffer"),
                )?,
                circfulls: r.add_int(VarSpec::int("circfulls", 0).counter().desc(
                    "Times the buffer was full: an event needed room only reclaiming the oldest events gave (KLOE's Circ counter)",
                ))?,
                target_rate: r.add_int(
                    VarSpec::int("target_rate", cfg.rate as i64)
                        .rw()
                        .unit("Hz")
                        .range(Some(0.0), Some(1e9))
                        .metric("shvar_evgen_target_rate_hertz")
                        .desc("Events per second to write (0: as fast as possible)"),
                )?,
            };
        let buffer = r.add_str(
            VarSpec::string("buffer", 256, "").desc("Path of the circular buffer written"),
        )?;
        set_path(&buffer, &path);
        let stats = ctx.stats().cloned().ok_or("evgen needs statistics")?;
        let stop_waiting = writer.stop_waiting();
        let ctl = Arc::new(Control::default());
        let worker = {
            let (ctl, vars, cfg) = (ctl.clone(), vars.clone(), cfg.clone());
            let log = ctx.log().clone();
            std::thread::Builder::new()
                .name("evgen".into())
                .spawn(move || {
                    let mut w = Worker::new(writer, &cfg, vars, stats);
                    w.run(&ctl);
                    if let Some(e) = w.failure {
                        log.error(e);
                    }
                })?
        };
        ctx.log().info(format!(
            "buffer {} ({} bytes), events of {} bytes, first event {}",
            path.display(),
            cfg.circsize,
            cfg.size,
            cfg.first
        ));
        Ok(Evgen {
            cfg,
            path,
            vars,
            ctl,
            worker: Some(worker),
            stop_waiting,
            done_logged: false,
            halting: None,
        })
    }

    /// Stops production; answers at once if the worker is out of its batch, else later (a
    /// timer looks every millisecond, for at most [`STOP_WAIT`]).
    fn halt(&mut self, ctx: &mut Ctx, what: &'static str) -> Outcome {
        self.ctl.run.store(false, Ordering::SeqCst);
        if ctx.exiting() {
            // Exiting: wait for no lossless reader (they are evicted), so exit is prompt.
            self.stop_waiting.stop();
        }
        if !self.ctl.busy.load(Ordering::SeqCst) {
            return Ok(format!("{what} after {}", self.summary()).into());
        }
        let reply = ctx.defer();
        let timer = ctx.timer_every(Duration::from_millis(1));
        self.halting = Some(Halting {
            reply,
            what,
            since: Instant::now(),
            timer,
        });
        Ok(Done::Later)
    }

    fn look_at_halt(&mut self, ctx: &mut Ctx) {
        let Some(h) = &self.halting else { return };
        let stopped = !self.ctl.busy.load(Ordering::SeqCst);
        if !stopped && h.since.elapsed() < STOP_WAIT {
            return;
        }
        let h = self.halting.take().expect("checked above");
        ctx.cancel_timer(h.timer);
        let result = if stopped {
            Ok(format!("{} after {}", h.what, self.summary()))
        } else {
            Err(format!(
                "the producer did not stop within {} s (a lossless reader blocks it?); it stops after its current event",
                STOP_WAIT.as_secs()
            )
            .into())
        };
        ctx.complete(h.reply, result);
    }

    fn summary(&self) -> String {
        format!(
            "{} events, {} bytes, last event {}",
            self.vars.events.get(),
            self.vars.bytes.get(),
            self.vars.lastevnr.get()
        )
    }

    fn go(&self) -> Result<String, String> {
        if self.ctl.done.load(Ordering::SeqCst) {
            return Err(format!(
                "all {} events of --count are written; nothing more to produce (start a new evgen for another run)",
                self.cfg.count
            ));
        }
        self.ctl.run.store(true, Ordering::SeqCst);
        Ok(match self.vars.target_rate.get() {
            0 => "producing as fast as possible".to_owned(),
            r => format!("producing {r} events/s"),
        })
    }
}

fn set_path(var: &StrVar, path: &std::path::Path) {
    var.set(&path.display().to_string());
}

/// The producing thread.
struct Worker {
    w: CircWriter,
    vars: Vars,
    stats: Stats,
    size: SizeRange,
    count: u64,
    evnr: u64,
    written: u64,
    rng: u64,
    failure: Option<String>,
}

impl Worker {
    fn new(w: CircWriter, cfg: &EvgenConfig, vars: Vars, stats: Stats) -> Worker {
        Worker {
            w,
            vars,
            stats,
            size: cfg.size,
            count: cfg.count,
            evnr: cfg.first,
            written: 0,
            rng: cfg.seed | 1,
            failure: None,
        }
    }

    fn next_size(&mut self) -> usize {
        let SizeRange { min, max } = self.size;
        if min == max {
            return min;
        }
        let x = &mut self.rng;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        min + (*x % (max - min + 1) as u64) as usize
    }

    fn run(&mut self, ctl: &Control) {
        // Pacing: `paced` events written since `pace_t0` at `pace_rate`.
        let mut pace_rate = u64::MAX;
        let mut pace_t0 = Instant::now();
        let mut paced = 0u64;
        let mut rate_t = Instant::now();
        let mut rate_n = 0u64;
        let mut readers_t = Instant::now();
        while !ctl.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let dt = now.duration_since(rate_t);
            if dt >= Duration::from_secs(1) {
                self.vars.rate.set(rate_n as f64 / dt.as_secs_f64());
                rate_n = 0;
                rate_t = now;
            }
            if now.duration_since(readers_t) >= Duration::from_millis(100) {
                self.vars
                    .readers
                    .set(i64::from(self.w.stats().lossless_readers));
                readers_t = now;
            }
            ctl.busy.store(true, Ordering::SeqCst);
            if !ctl.run.load(Ordering::SeqCst) {
                ctl.busy.store(false, Ordering::SeqCst);
                pace_rate = u64::MAX;
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let target = self.vars.target_rate.get().max(0) as u64;
            if target != pace_rate {
                pace_rate = target;
                pace_t0 = now;
                paced = 0;
            }
            let mut n = BATCH;
            if target > 0 {
                let due = (now.duration_since(pace_t0).as_secs_f64() * target as f64) as u64 + 1;
                let allowed = due.saturating_sub(paced);
                if allowed == 0 {
                    ctl.busy.store(false, Ordering::SeqCst);
                    let at = pace_t0 + Duration::from_secs_f64(paced as f64 / target as f64);
                    let wait = at.saturating_duration_since(now);
                    std::thread::sleep(
                        wait.clamp(Duration::from_micros(50), Duration::from_millis(20)),
                    );
                    continue;
                }
                if allowed > target.max(BATCH) {
                    // More than a second behind (the machine was busy): do not burst.
                    pace_t0 = now;
                    paced = 0;
                }
                n = n.min(allowed);
            }
            if self.count > 0 {
                n = n.min(self.count - self.written);
            }
            let done = self.batch(n);
            ctl.busy.store(false, Ordering::SeqCst);
            paced += done;
            rate_n += done;
            if self.failure.is_some() {
                ctl.run.store(false, Ordering::SeqCst);
                ctl.done.store(true, Ordering::SeqCst);
                return;
            }
            if self.count > 0 && self.written >= self.count {
                ctl.run.store(false, Ordering::SeqCst);
                ctl.done.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Writes up to `n` events; returns how many were attempted.
    fn batch(&mut self, n: u64) -> u64 {
        let (mut events, mut bytes, mut refused) = (0i64, 0u64, 0i64);
        let mut i = 0;
        while i < n {
            let size = self.next_size();
            let evnr = self.evnr;
            match self.w.reserve(evnr, size) {
                Ok(mut r) => {
                    payload::fill(evnr, r.buf());
                    r.commit();
                    events += 1;
                    bytes += size as u64;
                }
                Err(WriteError::TooLarge { .. }) => refused += 1,
                Err(e) => {
                    self.failure = Some(format!("writing stopped: {e}"));
                    break;
                }
            }
            self.evnr += 1;
            self.written += 1;
            i += 1;
        }
        if events > 0 {
            self.vars.events.add(events);
            self.vars.bytes.add(bytes as i64);
            self.vars.lastevnr.set(self.evnr as i64 - 1);
        }
        if refused > 0 {
            self.vars.refused.add(refused);
        }
        self.vars.circfulls.set(self.w.circfulls() as i64);
        self.stats.count(events as u64, 1, bytes);
        self.stats.end_loop();
        i
    }
}

fn start(g: &mut Evgen, ctx: &mut Ctx, _: &[String]) -> Outcome {
    let msg = g.go()?;
    ctx.log().info(format!("start: {msg}"));
    Ok(msg.into())
}

fn resume(g: &mut Evgen, _: &mut Ctx, _: &[String]) -> Outcome {
    Ok(g.go()?.into())
}

fn pause(g: &mut Evgen, ctx: &mut Ctx, _: &[String]) -> Outcome {
    g.halt(ctx, "paused")
}

fn end(g: &mut Evgen, ctx: &mut Ctx, _: &[String]) -> Outcome {
    g.halt(ctx, "stopped")
}

impl App for Evgen {
    fn commands() -> Vec<Command<Self>> {
        vec![
            Command::init("Initialize the process (at start-up and after any error)")
                .reply("initialised"),
            Command::start("Start writing events at target_rate (event numbers continue)")
                .handler(start),
            Command::pause("Stop writing; answers once the producer has stopped").handler(pause),
            Command::resume("Write again").handler(resume),
            Command::update("Update the statistics variables now"),
            Command::end("Stop writing (the buffer stays; start continues the numbering)")
                .allowed(&[RunState::Running, RunState::Pause])
                .handler(end),
        ]
    }

    fn timer(&mut self, ctx: &mut Ctx, _id: TimerId) {
        self.look_at_halt(ctx);
    }

    fn tick(&mut self, ctx: &mut Ctx) {
        if self.ctl.done.load(Ordering::SeqCst) && !self.done_logged {
            self.done_logged = true;
            match &self.worker {
                Some(w) if w.is_finished() => {
                    ctx.error("the producer stopped on an error (see the event log)")
                }
                _ => ctx
                    .log()
                    .info(format!("--count reached: {}", self.summary())),
            }
            if self.cfg.exit_when_done {
                ctx.log().info("exiting (--exit-when-done)");
                ctx.request_exit();
            }
        }
    }

    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        let mut v = vec![
            format!(
                "buffer: {} ({} bytes)",
                self.path.display(),
                self.cfg.circsize
            ),
            format!("written: {}", self.summary()),
            format!("rate: {:.1} events/s", self.vars.rate.get()),
        ];
        if self.cfg.count > 0 {
            v.push(format!(
                "count: {}{}",
                self.cfg.count,
                if self.ctl.done.load(Ordering::SeqCst) {
                    " (done)"
                } else {
                    ""
                }
            ));
        }
        v
    }

    fn shutdown(&mut self, _ctx: &mut Ctx) {
        self.stop_waiting.stop();
        self.ctl.run.store(false, Ordering::SeqCst);
        self.ctl.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
