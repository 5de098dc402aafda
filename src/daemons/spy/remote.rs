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

/// The prefetch thread: keeps the local buffer filled from the farm, reconnecting with capped
/// backoff when the farm side goes away. Returns the writer when told to stop.
fn prefetch(
    writer: CircWriter,
    vars: &Vars,
    control: &Control,
    stats: &Stats,
    log: &EventLog,
) -> Option<CircWriter> {
    let path = writer.path().to_owned();
    let capacity = writer.stats().capacity;
    // The farm followed across connections: requests in flight, the position to resume
    // from (the local buffer's last event, and the farm buffer that numbering belongs to, as
    // the farm told it: the same buffer reached by another address is the same farm), the
    // backoff between attempts.
    let mut session = Session::new(
        "",
        0,
        Duration::from_secs(1),
        Backoff::new(BACKOFF.0, BACKOFF.1),
    );
    let mut generation = u64::MAX;
    // A failure that repeats is logged once, then with its count (every minute at most).
    let mut failures = RepeatedFailure::new(Duration::from_secs(60));
    let mut waits = 0i64;
    let mut last_evnr = writer.stats().last_evnr.unwrap_or(0);
    session.took(last_evnr);
    let max_event = writer.max_event();
    let mut writer = Some(writer);
    // Stream position of the local buffer that readers had consumed when last seen.
    let mut consumed_mark = writer.as_ref().map_or(0, |w| w.stats().head);
    let mut idle_since: Option<Instant> = None;
    let mut fresh_start = false;
    // Freshness: when each packet's events arrived (and the buffer position after them), the
    // last arrival, how much to fetch at a time, the mean event size, the last packet's skips.
    let mut fresh = Freshness::new();
    while !control.stop.load(Ordering::Relaxed) {
        if writer.is_none() {
            // The buffer could not be re-created: try again every second.
            std::thread::sleep(Duration::from_secs(1));
            writer = CircWriter::create(&path, capacity).ok();
            continue;
        }
        let g = control.generation.load(Ordering::Relaxed);
        let target = control.target.lock().clone();
        if g != generation {
            generation = g;
            let dropped = match &target {
                Some((host, port)) => session.retarget(host, *port),
                None => session.reset(),
            };
            if dropped {
                log.info("connection dropped");
            }
            vars.no_conn.set(1);
        }
        // The age bound holds whatever the connection does (paused, disconnected, retrying).
        let maxage_ms = vars.maxage_ms.get().clamp(0, u32::MAX as i64) as u32;
        fresh.set_bound(maxage_ms);
        if let Some(w) = writer.as_mut() {
            let n = fresh.expire(w, consumed_mark, Instant::now());
            if n > 0 {
                vars.expired.add(n as i64);
            }
        }
        let paused = control.paused.load(Ordering::SeqCst);
        let Some((host, port)) = target else {
            if paused {
                control.drained.fetch_add(1, Ordering::SeqCst);
            }
            idle_wait(vars, stats, &mut waits);
            continue;
        };
        let mode = Mode::from_u16(vars.mode.get().clamp(0, 2) as u16).unwrap_or_default();
        if paused && mode == Mode::Push && session.in_flight() > 0 {
            // Push streams whatever we do: drop the stream while paused (and connect again
            // below, asking nothing).
            session.disconnect();
        }
        if !session.is_connected() {
            if paused {
                // Not connected: nothing in flight, so nothing more arrives until `resume`.
                control.drained.fetch_add(1, Ordering::SeqCst);
            }
            match session.connect_if_due() {
                Attempt::Connected => {
                    if session.backoff().failures() == 0 {
                        log.info(format!("connected to {host}:{port}"));
                    }
                    if session.connects() > 1 {
                        vars.reconnects.add(1);
                    }
                    vars.no_conn.set(0);
                    waits = 0;
                }
                Attempt::Wait(w) => {
                    std::thread::sleep(w.min(Duration::from_millis(20)));
                    continue;
                }
                Attempt::Failed(e, _) => {
                    fail_log(&mut failures, &e.to_string(), vars, log);
                    vars.no_conn.set(1);
                    continue;
                }
            }
        }
        let in_flight = session.in_flight();
        if paused && (mode == Mode::Push || in_flight == 0) {
            // Paused: connected (reconnect connects in PAUSE_STATE too), asking nothing.
            control.drained.fetch_add(1, Ordering::SeqCst);
            idle_wait(vars, stats, &mut waits);
            continue;
        }
        // Low load: with nobody reading, stop after a small look-ahead; when readers come back
        // after a while, start again from the freshest events. With readers and an age bound,
        // fetch about what they consume: a request when less than half of `fetch_size` is
        // left unread, `fetch_size` doubling while readers drain each packet quickly and
        // halving when events expire unread.
        let mut wanted = true;
        let mut lookahead_left = u64::MAX;
        if let Some(w) = writer.as_ref() {
            let act = w.reader_activity(READERS_WINDOW);
            vars.readers.set(act.active as i64);
            if let Some(pos) = act.consumed_to {
                consumed_mark = pos;
            }
            let ahead = act.head.saturating_sub(consumed_mark);
            let lookahead = vars.lookahead.get().max(0) as u64;
            if act.active > 0 && maxage_ms > 0 {
                wanted = fresh.wanted(ahead, Instant::now());
            } else {
                wanted = act.active > 0 || ahead < lookahead;
            }
            if act.active == 0 {
                lookahead_left = lookahead.saturating_sub(ahead);
            }
            if !wanted {
                idle_since.get_or_insert_with(Instant::now);
                if in_flight == 0 || mode == Mode::Push {
                    if mode == Mode::Push && act.active == 0 {
                        session.disconnect();
                    }
                    idle_wait(vars, stats, &mut waits);
                    continue;
                }
            } else if let Some(t) = idle_since.take() {
                fresh_start = t.elapsed() > FRESH_AFTER && act.active > 0;
            }
        }
        // After a while without events (or none yet), what the farm holds after our position
        // is old: start from its freshest.
        if fresh.stale(Instant::now()) {
            fresh_start = true;
        }
        let maxev = vars.maxevents.get();
        let max_events = if maxev <= 0 { 0 } else { maxev as u32 };
        // With no reader active, ask only for what the look-ahead still allows.
        let mut max_bytes = (max_event as u64 / 2)
            .clamp(4096, 8 << 20)
            .min(lookahead_left.max(1));
        if maxage_ms > 0 && lookahead_left == u64::MAX {
            max_bytes = max_bytes.min(fresh.fetch_size().max(1));
        }
        let max_bytes = max_bytes as u32;
        let farm_maxage = maxage_ms.div_ceil(2);
        let ask = Ask {
            mode,
            max_events,
            max_bytes,
            maxage_ms: farm_maxage,
        };
        // Readers that do not take every event are sampling anyway: give them the freshest.
        let sampling = fresh.sampling();
        let sent = if mode == Mode::Push {
            // One stream, asked for again when its limits change.
            session.stream(ask)
        } else {
            let mut r = Ok(());
            // One request at a time while only the look-ahead is being filled, or while
            // readers take little.
            let depth = if lookahead_left == u64::MAX && fresh.pipelined() {
                PIPELINE
            } else {
                1
            };
            while !paused && wanted && session.in_flight() < depth && r.is_ok() {
                let m = if fresh_start || sampling {
                    Mode::Latest
                } else {
                    mode
                };
                fresh_start = false;
                r = session.request(Ask { mode: m, ..ask });
            }
            r
        };
        let got = sent.and_then(|()| {
            session.receive_header(Duration::from_micros(vars.timeout_us.get().max(1) as u64))
        });
        if let Some(before) = session.take_proven() {
            // The farm answered: the connection works.
            if before > 0 {
                log.info(format!(
                    "connected to {host}:{port} after {before} failed attempt{}",
                    if before == 1 { "" } else { "s" }
                ));
            }
            if let Some(line) = failures.succeeded() {
                log.info(line);
            }
        }
        let failed = match got {
            Ok(Some(header)) if matches!(header.status, Status::Ok | Status::Stream) => {
                waits = 0;
                // Events go straight from the socket into the local buffer.
                let c = session.client().expect("a packet came on it");
                let r = take_packet(c, &mut writer, max_event, vars, log, &mut last_evnr);
                // Skipped by the farm, and sent but overwritten there while in flight
                // (abandoned here, never committed).
                let end = c.packet_end();
                session.took(last_evnr);
                vars.lost.add(end.skipped as i64);
                let ((n, bytes), failed) = match r {
                    Ok(x) => (x, None),
                    Err((x, e)) => (x, Some(e)),
                };
                vars.packevents.set(end.events as i64);
                if n > 0 {
                    vars.lastevent.set(last_evnr as i64);
                }
                if let Some(w) = writer.as_ref() {
                    fresh.packet(
                        n,
                        bytes,
                        max_bytes,
                        end.skipped,
                        w.position(),
                        Instant::now(),
                    );
                }
                if let Some(w) = writer.as_ref() {
                    vars.circfulls.set(w.circfulls() as i64);
                }
                stats.count(n, 1, bytes);
                stats.end_loop();
                failed
            }
            Ok(Some(header)) => {
                vars.lost.add(header.skipped as i64);
                count_wait(vars, stats, &mut waits);
                None
            }
            Ok(None) => {
                count_wait(vars, stats, &mut waits);
                None
            }
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            // Whatever went wrong on this connection (the events taken before stay), drop it
            // and reconnect with backoff: a farm that accepts and then refuses backs off as
            // much as one that refuses to connect.
            session.failed();
            fail_log(&mut failures, &e.to_string(), vars, log);
            vars.no_conn.set(1);
        }
    }
    vars.no_conn.set(1);
    writer
}

/// The freshness side of the prefetch policy: with a bound of `maxage_ms`, an event stays
/// readable in the local buffer for half of it after it arrived (the farm serves none older
/// than the other half), and rspydaemon fetches about what readers consume: a request when less
/// than half of the fetch size is left unread, the fetch size doubling while readers drain
/// full packets quickly and quartering when events expire unread.
#[derive(Debug)]
struct Freshness {
    /// Half the bound: how long an event may wait unread in the local buffer (zero: no bound).
    local_age: Duration,
    /// When each packet's events arrived, and the buffer position after them.
    arrivals: VecDeque<(Instant, u64)>,
    last_arrival: Option<Instant>,
    fetch_size: u64,
    avg_event: u64,
    /// Events the farm skipped for us in the last packet.
    last_skipped: u64,
    /// The last packet was as large as asked for (the farm had more).
    last_full: bool,
}

impl Freshness {
    fn new() -> Freshness {
        Freshness {
            local_age: Duration::ZERO,
            arrivals: VecDeque::new(),
            last_arrival: None,
            fetch_size: 64 << 10,
            avg_event: 1024,
            last_skipped: 0,
            last_full: false,
        }
    }

    fn bounded(&self) -> bool {
        !self.local_age.is_zero()
    }

    fn set_bound(&mut self, maxage_ms: u32) {
        self.local_age = Duration::from_millis(maxage_ms as u64 / 2);
        if !self.bounded() {
            self.arrivals.clear();
        }
    }

    /// Expires what waited longer than allowed; returns how many events readers never read
    /// (what the furthest reader, at `consumed`, had read goes quietly).
    fn expire(&mut self, w: &mut CircWriter, consumed: u64, now: Instant) -> u64 {
        let mut mark = None;
        while let Some(&(t, pos)) = self.arrivals.front() {
            if now.saturating_duration_since(t) < self.local_age {
                break;
            }
            mark = Some(pos);
            self.arrivals.pop_front();
        }
        let Some(pos) = mark else { return 0 };
        w.expire_before(consumed.min(pos));
        let n = w.expire_before(pos);
        if n > 0 {
            // Readers did not take all we fetched: fetch less at a time.
            self.fetch_size = (self.fetch_size / 4).max(self.avg_event);
        }
        n
    }

    /// Whether to ask for more, with `ahead` bytes unread by the furthest reader.
    fn wanted(&mut self, ahead: u64, now: Instant) -> bool {
        // Readers took all of a full packet within a quarter of the time it may stay: more.
        if ahead == 0
            && self.last_full
            && self
                .last_arrival
                .is_some_and(|t| now.saturating_duration_since(t) < self.local_age / 4)
        {
            self.fetch_size = (self.fetch_size * 2).min(MAX_FETCH);
            self.last_full = false;
        }
        // Readers that take everything at full size: full speed, as without a bound.
        self.fetch_size >= MAX_FETCH || ahead < self.fetch_size / 2 + 1
    }

    /// After a while without events (or none yet), what the farm holds after our position is
    /// old: the next request should ask for the freshest.
    fn stale(&self, now: Instant) -> bool {
        self.bounded()
            && self
                .last_arrival
                .is_none_or(|t| now.saturating_duration_since(t) > self.local_age)
    }

    /// Readers that do not take every event are sampling anyway: give them the freshest.
    fn sampling(&self) -> bool {
        self.bounded() && self.last_skipped > 0
    }

    /// Whether two requests may be in flight.
    fn pipelined(&self) -> bool {
        !self.bounded() || self.fetch_size >= 1 << 20
    }

    fn fetch_size(&self) -> u64 {
        self.fetch_size
    }

    /// A packet of `n` events, `bytes` bytes, arrived (asked for at most `asked` bytes; the farm
    /// skipped `skipped` for us); the buffer is at `pos` after them.
    fn packet(&mut self, n: u64, bytes: u64, asked: u32, skipped: u64, pos: u64, now: Instant) {
        self.last_skipped = skipped;
        if n == 0 {
            return;
        }
        self.last_arrival = Some(now);
        self.avg_event = bytes.checked_div(n).unwrap_or(self.avg_event).max(1);
        self.last_full = bytes + self.avg_event > u64::from(asked) / 2;
        if self.bounded() {
            self.arrivals.push_back((now, pos));
        }
    }
}

/// Logs a failure to fetch (once while it repeats, then with its count) and shows it in
/// `lasterror`.
fn fail_log(failures: &mut RepeatedFailure, msg: &str, vars: &Vars, log: &EventLog) {
    if let Some(line) = failures.failed(msg) {
        log.warn(format!(
            "{line}; retrying with backoff (up to {} s between attempts)",
            BACKOFF.1.as_secs()
        ));
    }
    vars.lasterror.set(msg);
}

/// Reads the events of the packet whose header was just received straight into the local
/// buffer. Returns the events and bytes written; on a connection or protocol error, those and
/// the error.
#[allow(clippy::type_complexity)]
fn take_packet(
    c: &mut SpyClient,
    writer: &mut Option<CircWriter>,
    max_event: usize,
    vars: &Vars,
    log: &EventLog,
    last_evnr: &mut u64,
) -> Result<(u64, u64), ((u64, u64), SpyError)> {
    let (mut n, mut bytes) = (0u64, 0u64);
    loop {
        let (evnr, len) = match c.next_event() {
            Ok(Some(x)) => x,
            Ok(None) => return Ok((n, bytes)),
            Err(e) => return Err(((n, bytes), e)),
        };
        // An event not taken is skipped by the next `next_event`.
        if len > max_event || writer.is_none() {
            vars.ignored.add(1);
            continue;
        }
        let mut attempt = 0;
        loop {
            let w = writer.as_mut().expect("checked above");
            match w.reserve(evnr, len) {
                Ok(mut r) => {
                    match c.read_body(r.buf()) {
                        // Dropped uncommitted: nothing half-received reaches readers.
                        Err(e) => return Err(((n, bytes), e)),
                        // Overwritten at the farm while in flight: dropped uncommitted too
                        // (counted lost from the packet's end).
                        Ok(false) => break,
                        Ok(true) => {}
                    }
                    r.commit();
                    n += 1;
                    bytes += len as u64;
                    *last_evnr = evnr;
                    break;
                }
                Err(WriteError::NotIncreasing { .. }) if attempt == 0 => {
                    attempt += 1;
                    match recreate(writer.take().expect("checked above"), log) {
                        Ok(w) => *writer = Some(w),
                        Err(msg) => {
                            log.error(&msg);
                            vars.lasterror.set(&msg);
                            vars.ignored.add(1);
                            break;
                        }
                    }
                }
                Err(e) => {
                    log.warn(e.to_string());
                    vars.ignored.add(1);
                    break;
                }
            }
        }
    }
}

/// Replaces the local buffer by a new instance of the same name and size (the farm's event
/// numbers went back: another farm, or its producer restarted). Readers re-attach to it.
fn recreate(old: CircWriter, log: &EventLog) -> Result<CircWriter, String> {
    let path = old.path().to_owned();
    let cap = old.stats().capacity;
    let last = old.stats().last_evnr.unwrap_or(0);
    drop(old);
    let w = CircWriter::create(&path, cap)
        .map_err(|e| format!("cannot re-create buffer {}: {e}", path.display()))?;
    log.warn(format!(
        "event numbers went back below {last}: buffer {} re-created, readers re-attach",
        path.display()
    ));
    Ok(w)
}

/// A wait for data gave up after `timeout_us`; `timeoutcounts` of them in a row count one
/// `timeouts`, a timeout loop, which counts as a loop for the statistics' cadence
/// (`upfreq`, `upfreq_l`): the `sg_*`/`sl_*` keep their cadence while no data comes.
fn count_wait(vars: &Vars, stats: &Stats, waits: &mut i64) {
    *waits += 1;
    if *waits >= vars.timeoutcounts.get().max(1) {
        vars.timeouts.add(1);
        stats.end_loop();
        *waits = 0;
    }
}

/// Nothing to ask for now (paused, no reader, disconnected): wait one `timeout_us`, which
/// counts as a wait for data.
fn idle_wait(vars: &Vars, stats: &Stats, waits: &mut i64) {
    let t = Duration::from_micros(vars.timeout_us.get().max(1) as u64);
    std::thread::sleep(t.min(Duration::from_millis(20)));
    count_wait(vars, stats, waits);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_expires_unread_events_and_fetches_what_readers_take() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = CircWriter::create(&dir.path().join("L"), 1 << 20).unwrap();
        let mut f = Freshness::new();
        f.set_bound(400);
        let t0 = Instant::now();
        for n in 1..=10 {
            w.write(n, &[0u8; 1000]).unwrap();
        }
        f.packet(10, 10_000, 10_000, 0, w.position(), t0);
        assert!(!f.stale(t0 + Duration::from_millis(100)));
        // Within half the bound nothing expires; after it, what nobody read does.
        assert_eq!(f.expire(&mut w, 0, t0 + Duration::from_millis(150)), 0);
        let before = f.fetch_size();
        assert_eq!(f.expire(&mut w, 0, t0 + Duration::from_millis(250)), 10);
        assert_eq!(f.fetch_size(), (before / 4).max(1000));
        assert!(f.stale(t0 + Duration::from_millis(250)));
        // What the reader had read goes quietly.
        for n in 11..=20 {
            w.write(n, &[0u8; 1000]).unwrap();
        }
        let t1 = t0 + Duration::from_millis(300);
        f.packet(10, 10_000, 10_000, 0, w.position(), t1);
        let consumed = w.position();
        assert_eq!(
            f.expire(&mut w, consumed, t1 + Duration::from_millis(200)),
            0
        );
        // A full packet drained quickly doubles the fetch size; readers with data left do
        // not ask.
        let s = f.fetch_size();
        f.packet(2, 2000, 2000, 0, w.position(), t1);
        assert!(f.wanted(0, t1 + Duration::from_millis(10)));
        assert_eq!(f.fetch_size(), s * 2);
        assert!(!f.wanted(f.fetch_size(), t1 + Duration::from_millis(20)));
        // Skipped events mean sampling: ask for the freshest.
        assert!(!f.sampling());
        f.packet(1, 1000, 1000, 5, w.position(), t1);
        assert!(f.sampling());
        // No bound: nothing of this applies.
        f.set_bound(0);
        assert!(!f.stale(t1 + Duration::from_secs(10)) && !f.sampling() && f.pipelined());
    }
}
