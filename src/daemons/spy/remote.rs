//! `rspydaemon`: gives the monitoring tasks of a node transparent access to the events of a
//! remote farm, through a local circular buffer (`lname`, `circsize`) that a prefetch thread
//! fills from a farm spy daemon.
//!
//! Commands, variables and state rules are those of the KLOE rspydaemon; see
//! `docs/operations.md` for the prefetch policy and its knobs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use shvars::circ::{CircWriter, WriteError};
use shvars::region::{IntVar, StrVar, VarSpec};

use super::client::{SpyClient, SpyError};
use super::proto::{Mode, Status};
use super::session::{Ask, Attempt, Session};
use crate::framework::eventlog::EventLog;
use crate::framework::state::SERVING;
use crate::framework::stats::{Stats, StatsConfig};
use crate::framework::{
    App, BoxError, Command, Ctx, Deferred, Done, Outcome, ProcessSpec, TimerId,
};
use crate::support::backoff::{Backoff, RepeatedFailure};

mod prefetch;
use prefetch::prefetch;

/// How the framework runs a remote spy daemon.
pub const SPEC: ProcessSpec = ProcessSpec {
    default_name: "rspy",
    stats: Some(StatsConfig {
        upfreq: 5,
        upfreq_l: 10,
        pack_name: "packets",
    }),
    tick: None,
};

/// Mode labels of the `mode` variable.
pub const MODE_LABELS: [&str; 3] = ["next", "latest", "push"];

/// A reader counts as active if it read or waited within this window.
const READERS_WINDOW: Duration = Duration::from_secs(2);
/// After this long without readers, fetching starts again from the freshest events.
const FRESH_AFTER: Duration = Duration::from_secs(1);
/// Requests kept in flight in `next` and `latest` modes.
const PIPELINE: usize = 2;
/// The most fetched in one request while readers are being fed at their pace.
const MAX_FETCH: u64 = 8 << 20;
/// First and largest wait between connection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

#[derive(Debug, Clone)]
struct Vars {
    timeout_us: IntVar,
    timeoutcounts: IntVar,
    timeouts: IntVar,
    raddr: StrVar,
    rport: IntVar,
    lname: StrVar,
    circsize: IntVar,
    ignored: IntVar,
    maxevents: IntVar,
    no_conn: IntVar,
    lastevent: IntVar,
    lost: IntVar,
    reconnects: IntVar,
    mode: IntVar,
    packevents: IntVar,
    readers: IntVar,
    lookahead: IntVar,
    maxage_ms: IntVar,
    expired: IntVar,
    circfulls: IntVar,
    lasterror: StrVar,
}

/// What the command side tells the prefetch thread.
#[derive(Debug)]
struct Control {
    /// Where to fetch from; `None`: serve what the buffer holds, fetch nothing.
    target: Mutex<Option<(String, u16)>>,
    /// Bumped to drop the connection and connect again.
    generation: AtomicU64,
    paused: AtomicBool,
    /// Bumped by the prefetch thread each time it finds itself paused with no request in
    /// flight: from then on no event arrives until `resume`.
    drained: AtomicU64,
    stop: AtomicBool,
}

/// How long `pause` waits for the answers to requests already sent.
const PAUSE_DRAIN: Duration = Duration::from_secs(2);

/// The remote spy daemon.
pub struct Remote {
    vars: Vars,
    writer: Option<CircWriter>,
    control: Arc<Control>,
    worker: Option<JoinHandle<Option<CircWriter>>>,
    /// A `pause` waiting for the answers to requests already sent.
    pausing: Option<Pausing>,
}

#[derive(Debug)]
struct Pausing {
    reply: Deferred,
    /// The prefetch thread's count of looks at which it was paused with nothing in flight,
    /// when `pause` began: a look after that saw the pause.
    seen: u64,
    since: Instant,
    timer: TimerId,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").finish_non_exhaustive()
    }
}

impl Remote {
    /// Publishes the daemon's variables (the seed's, with their defaults, and the additions).
    ///
    /// # Errors
    /// If a variable cannot be published.
    pub fn build(ctx: &mut Ctx) -> Result<Remote, BoxError> {
        let r = ctx.region();
        let vars = Vars {
            timeout_us: r.add_int(VarSpec::int("timeout_us", 10_000).rw().unit("us").range(Some(1.0), Some(60e6))
                .desc("Timeout time in microseconds: how long one wait for data lasts"))?,
            timeoutcounts: r.add_int(VarSpec::int("timeoutcounts", 100).rw().range(Some(1.0), None)
                .desc("Number of timeouts in a row that count as one timeout loop"))?,
            timeouts: r.add_int(VarSpec::int("timeouts", 0).counter()
                .desc("Number of timeout loops from the start of serving (reset by start)"))?,
            raddr: r.add_str(VarSpec::string("raddr", 256, "fibm01-f").rw()
                .desc("Name of the remote farm machine"))?,
            rport: r.add_int(VarSpec::int("rport", super::farm::DEFAULT_PORT).rw().range(Some(1.0), Some(65535.0))
                .desc("Port address of the farm spy daemon"))?,
            lname: r.add_str(VarSpec::string("lname", 200, "/tmp/B_1_1").rw()
                .desc("Name of the circular buffer (a name in the runtime directory, or an absolute path)"))?,
            circsize: r.add_int(VarSpec::int("circsize", 1 << 20).rw().unit("bytes").range(Some(4096.0), Some((1u64 << 34) as f64))
                .desc("Size of the circular buffer (applied by init)"))?,
            ignored: r.add_int(VarSpec::int("ignored", 0).counter()
                .desc("Number of events ignored because too large for the buffer (reset by start)"))?,
            maxevents: r.add_int(VarSpec::int("maxevents", -1).rw().range(Some(-1.0), Some(1e6))
                .desc("Maximum number of events per packet; -1 means no limit"))?,
            no_conn: r.add_int(VarSpec::int("no_conn", 1).range(Some(0.0), Some(1.0))
                .desc("0 if the daemon is connected to a farm machine, 1 else"))?,
            lastevent: r.add_int(VarSpec::int("lastevent", 0).desc("Number of the last event received"))?,
            lost: r.add_int(VarSpec::int("lost", 0).counter()
                .desc("Events the farm side skipped for us (overwritten there before they could be sent, or jumped over in latest/push mode)"))?,
            reconnects: r.add_int(VarSpec::int("reconnects", 0).counter()
                .desc("Connections made again after a loss"))?,
            mode: r.add_int(VarSpec::enumeration("mode", &MODE_LABELS, 0).rw()
                .desc("next: every event in order; latest: the freshest on each request; push: the farm streams"))?,
            packevents: r.add_int(VarSpec::int("packevents", 0).desc("Events in the last packet received"))?,
            readers: r.add_int(VarSpec::int("readers", 0)
                .desc("Readers of the local buffer active in the last 2 s (they read or wait for events)"))?,
            lookahead: r.add_int(VarSpec::int("lookahead", 256 << 10).rw().unit("bytes").range(Some(0.0), None)
                .desc("While no reader is active, fetch at most this many bytes beyond what readers consumed"))?,
            maxage_ms: r.add_int(VarSpec::int("maxage_ms", 500).rw().unit("ms").range(Some(0.0), Some(3.6e6))
                .desc("No reader is served an event older than this (since the farm saw it); 0: no bound, old events welcome"))?,
            expired: r.add_int(VarSpec::int("expired", 0).counter()
                .desc("Events expired unread from the local buffer: older than half of maxage_ms since they arrived"))?,
            circfulls: r.add_int(VarSpec::int("circfulls", 0).counter()
                .desc("Times the local buffer was full: an event needed room only overwriting the oldest events gave (KLOE's Circ counter; per buffer: init re-creating it starts again at 0)"))?,
            lasterror: ctx.lasterror_var(),
        };
        Ok(Remote {
            vars,
            writer: None,
            control: Arc::new(Control {
                target: Mutex::new(None),
                generation: AtomicU64::new(0),
                paused: AtomicBool::new(false),
                drained: AtomicU64::new(0),
                stop: AtomicBool::new(false),
            }),
            worker: None,
            pausing: None,
        })
    }

    fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            self.control.stop.store(true, Ordering::Relaxed);
            if let Ok(writer) = w.join() {
                self.writer = writer;
            }
            self.control.stop.store(false, Ordering::Relaxed);
        }
        self.vars.no_conn.set(1);
    }

    fn set_target(&self, args: &[String]) -> Result<(), String> {
        if let Some(a) = args.first() {
            if a != "-" && self.vars.raddr.set(a) {
                return Err(format!(
                    "raddr longer than {} bytes",
                    self.vars.raddr.capacity()
                ));
            }
        }
        if let Some(p) = args.get(1) {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("bad rport {p:?}: a TCP port 1-65535"))?;
            self.vars.rport.set(port as i64);
        }
        let serve_empty = args.first().is_some_and(|a| a == "-");
        *self.control.target.lock() = if serve_empty {
            None
        } else {
            Some((self.vars.raddr.get(), self.vars.rport.get() as u16))
        };
        self.control.generation.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn init(r: &mut Remote, ctx: &mut Ctx, args: &[String]) -> Outcome {
    if let Some(b) = args.first() {
        ctx.dir()
            .producer_buffer_path(b)
            .map_err(|e| e.to_string())?;
        if r.vars.lname.set(b) {
            return Err(
                format!("buffer name longer than {} bytes", r.vars.lname.capacity()).into(),
            );
        }
    }
    let lname = r.vars.lname.get();
    let size = r.vars.circsize.get() as u64;
    // Keep the buffer (and its readers) if nothing about it changed.
    if let Some(w) = &r.writer {
        let same = ctx.dir().buffer_path(&lname).ok().as_deref() == Some(w.path())
            && w.stats().capacity == size;
        if same {
            return Ok(format!("buffer {lname} ({size} bytes) kept").into());
        }
    }
    r.writer = None;
    let w = CircWriter::create_named(ctx.dir(), &lname, size).map_err(|e| e.to_string())?;
    ctx.log().info(format!(
        "created buffer {} ({size} bytes)",
        w.path().display()
    ));
    r.writer = Some(w);
    Ok(format!("buffer {lname} ({size} bytes) ready").into())
}

fn start(r: &mut Remote, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let writer = r.writer.take().ok_or("no local buffer: run init first")?;
    if let Err(e) = r.set_target(args) {
        r.writer = Some(writer);
        return Err(e.into());
    }
    r.vars.timeouts.set(0);
    r.vars.ignored.set(0);
    r.control.paused.store(false, Ordering::Relaxed);
    let stats = ctx.stats().cloned().ok_or("rspydaemon needs statistics")?;
    let (vars, control, log) = (r.vars.clone(), r.control.clone(), ctx.log().clone());
    let worker = std::thread::Builder::new()
        .name("prefetch".into())
        .spawn(move || prefetch(writer, &vars, &control, &stats, &log))
        .map_err(|e| e.to_string())?;
    r.worker = Some(worker);
    Ok(match &*r.control.target.lock() {
        Some((h, p)) => format!("fetching from {h}:{p}"),
        None => "serving with no events".to_owned(),
    }
    .into())
}

fn pause(r: &mut Remote, ctx: &mut Ctx, _: &[String]) -> Outcome {
    // Stop asking, then wait for the answers to the requests already sent: when `pause` has
    // answered, the buffer no longer grows. (A count taken after the store below can only be
    // bumped by a look that saw the pause.) The wait is a timer: the process keeps serving.
    let c = &r.control;
    c.paused.store(true, Ordering::SeqCst);
    let seen = c.drained.load(Ordering::SeqCst);
    if r.worker.is_none() {
        return Ok("paused: no new events".into());
    }
    let reply = ctx.defer();
    let timer = ctx.timer_every(Duration::from_millis(1));
    r.pausing = Some(Pausing {
        reply,
        seen,
        since: Instant::now(),
        timer,
    });
    Ok(Done::Later)
}

impl Remote {
    fn look_at_pause(&mut self, ctx: &mut Ctx) {
        let Some(p) = &self.pausing else { return };
        let drained =
            self.worker.is_none() || self.control.drained.load(Ordering::SeqCst) != p.seen;
        if !drained && p.since.elapsed() < PAUSE_DRAIN {
            return;
        }
        let p = self.pausing.take().expect("checked above");
        ctx.cancel_timer(p.timer);
        ctx.complete(
            p.reply,
            Ok(if drained {
                "paused: no new events".to_owned()
            } else {
                format!(
                    "paused, but requests sent before got no answer within {} s: their events may still arrive",
                    PAUSE_DRAIN.as_secs()
                )
            }),
        );
    }
}

fn resume(r: &mut Remote, _: &mut Ctx, _: &[String]) -> Outcome {
    r.control.paused.store(false, Ordering::Relaxed);
    Ok("receiving events again".into())
}

fn reconnect(r: &mut Remote, _: &mut Ctx, args: &[String]) -> Outcome {
    r.set_target(args)?;
    Ok(match &*r.control.target.lock() {
        Some((h, p)) => format!("reconnecting to {h}:{p}"),
        None => "disconnected, serving with no events".to_owned(),
    }
    .into())
}

fn disconnect(r: &mut Remote, _: &mut Ctx, _: &[String]) -> Outcome {
    *r.control.target.lock() = None;
    r.control.generation.fetch_add(1, Ordering::Relaxed);
    Ok("disconnected; serving what the buffer holds".into())
}

fn end(r: &mut Remote, _: &mut Ctx, _: &[String]) -> Outcome {
    r.stop_worker();
    Ok("stopped serving".into())
}

impl App for Remote {
    fn commands() -> Vec<Command<Self>> {
        vec![
            Command::init("Initialize: create the local buffer lname of circsize bytes; the argument sets lname")
                .args("[circbuf]", 0, 1)
                .handler(init),
            Command::start("Connect to the farm spy daemon and start serving; raddr '-': serve with no events")
                .args("[raddr [rport]]", 0, 2)
                .handler(start),
            Command::pause("Pause receiving new events; answers once the requests already sent are answered")
                .handler(pause),
            Command::resume("Resume receiving new events").handler(resume),
            Command::new("reconnect", "Drop the connection and connect to another farm spy daemon")
                .allowed(SERVING)
                .args("[raddr [rport]]", 0, 2)
                .handler(reconnect),
            Command::new("disconnect", "Drop the connection, but continue serving empty")
                .allowed(SERVING)
                .handler(disconnect),
            Command::update("Update the shared variables now"),
            Command::end("End serving").handler(end),
        ]
    }

    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        let target = match &*self.control.target.lock() {
            Some((h, p)) => format!("{h}:{p}"),
            None => "-".to_owned(),
        };
        vec![
            format!(
                "farm: {target} ({})",
                if self.vars.no_conn.get() == 0 {
                    "connected"
                } else {
                    "not connected"
                }
            ),
            format!("buffer: {}", self.vars.lname.get()),
            format!(
                "mode: {}",
                MODE_LABELS[self.vars.mode.get().clamp(0, 2) as usize]
            ),
        ]
    }

    fn timer(&mut self, ctx: &mut Ctx, _id: TimerId) {
        self.look_at_pause(ctx);
    }

    fn shutdown(&mut self, _ctx: &mut Ctx) {
        self.stop_worker();
    }
}

#[cfg(test)]
mod tests;
