//! `farmspydaemon`: serves samples of the events of a farm circular buffer (`bcname`) to remote
//! spy daemons over TCP, without ever slowing the data flow: every connection reads the buffer
//! with its own sampling reader on its own thread (as KLOE's did).
//!
//! Commands (KLOE's): `init [bcname]`, `start` (only if the buffer exists and its producer is
//! alive), `pause` (serve no new events, keep connections), `resume`, `update`, `end` (close the
//! listener and every connection), `exit`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shvars::circ::SamplingReader;
use shvars::region::{IntVar, StrVar, VarSpec};

use super::proto::write_error;
use super::serve::{serve, Clients, Counter, End, FarmShared};
use crate::framework::eventlog::EventLog;
use crate::framework::stats::{Stats, StatsConfig};
use crate::framework::{App, BoxError, Command, Ctx, Outcome, ProcessSpec, TICK};

/// How the framework runs a farm spy daemon.
pub const SPEC: ProcessSpec = ProcessSpec {
    default_name: "farmspy",
    stats: Some(StatsConfig {
        upfreq: 100,
        upfreq_l: 1000,
        pack_name: "packets",
    }),
    tick: Some(TICK),
};

/// Default TCP port.
pub const DEFAULT_PORT: i64 = 2115;
/// Default nice value: the farm spy daemon yields to the DAQ processes (KLOE ran it at lower
/// priority).
pub const DEFAULT_NICE: i64 = 10;

#[derive(Debug)]
struct Vars {
    eventnr: IntVar,
    timeout_us: IntVar,
    timeouts: IntVar,
    bcname: StrVar,
    port: IntVar,
    rcvbuf: IntVar,
    sndbuf: IntVar,
    reuseaddr: IntVar,
    clients: IntVar,
    maxclients: IntVar,
    badreqs: IntVar,
    dropped: IntVar,
    skipped: IntVar,
    runnr: IntVar,
    nice: IntVar,
}

struct Running {
    shared: Arc<FarmShared>,
    accept: JoinHandle<()>,
    stop_accept: Arc<AtomicBool>,
    addr: SocketAddr,
}

/// The farm spy daemon.
pub struct Farm {
    vars: Vars,
    running: Option<Running>,
    clients: Arc<Clients>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Farm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Farm").finish_non_exhaustive()
    }
}

impl Farm {
    /// Publishes the daemon's variables.
    ///
    /// # Errors
    /// If a variable cannot be published.
    pub fn build(ctx: &mut Ctx) -> Result<Farm, BoxError> {
        let r = ctx.region();
        let int = |name: &str, def: i64, desc: &str| r.add_int(VarSpec::int(name, def).desc(desc));
        let vars = Vars {
            eventnr: int("eventnr", 1, "Number of the last event served")?,
            timeout_us: r.add_int(
                VarSpec::int("timeout_us", 10_000)
                    .rw()
                    .unit("us")
                    .range(Some(0.0), Some(60e6))
                    .desc("How long a request waits for an event before answering no data"),
            )?,
            timeouts: r.add_int(
                VarSpec::int("timeouts", 0)
                    .counter()
                    .desc("Requests answered with no data after waiting (reset on start/resume)"),
            )?,
            bcname: r.add_str(
                VarSpec::string("bcname", 200, "/tmp/BUILD")
                    .rw()
                    .desc("The farm circular buffer served (a name in the runtime directory, or an absolute path)"),
            )?,
            port: r.add_int(
                VarSpec::int("port", DEFAULT_PORT)
                    .rw()
                    .range(Some(0.0), Some(65535.0))
                    .desc("TCP port to listen on (0: any free port; set before start)"),
            )?,
            rcvbuf: r.add_int(
                VarSpec::int("rcvbuf", 0).rw().unit("bytes").range(Some(0.0), Some(1e9))
                    .desc("Socket receive buffer of new connections; 0: the system's, autotuned (KLOE used 32768, far too small for today's rates)"),
            )?,
            sndbuf: r.add_int(
                VarSpec::int("sndbuf", 0).rw().unit("bytes").range(Some(0.0), Some(1e9))
                    .desc("Socket send buffer of new connections; 0: the system's, autotuned (KLOE used 32768, far too small for today's rates)"),
            )?,
            reuseaddr: r.add_int(
                VarSpec::int("reuseaddr", 1).rw().range(Some(0.0), Some(1.0))
                    .desc("1: set SO_REUSEADDR on the listening socket"),
            )?,
            clients: int("clients", 0, "Connections served now")?,
            maxclients: r.add_int(
                VarSpec::int("maxclients", 16).rw().range(Some(1.0), Some(10000.0))
                    .desc("Most connections served at once; more are refused with an error"),
            )?,
            badreqs: r.add_int(
                VarSpec::int("badreqs", 0).counter()
                    .desc("Connections dropped for bad requests (garbage, wrong magic, silence)"),
            )?,
            dropped: r.add_int(
                VarSpec::int("dropped", 0).counter()
                    .desc("Connections dropped for not reading their packets within 5 s, or evicted while idle for a new client"),
            )?,
            skipped: r.add_int(
                VarSpec::int("skipped", 0).counter()
                    .desc("Events skipped for clients: overwritten before they could be sent"),
            )?,
            runnr: r.add_int(VarSpec::int("runnr", 0).rw().range(Some(0.0), None)
                .desc("Run number, set by run control (`set runnr N` before start): the farm buffer carries none"))?,
            nice: r.add_int(VarSpec::int("nice", DEFAULT_NICE).rw().range(Some(-20.0), Some(19.0))
                .desc("Nice value the daemon runs at, applied by start: below the DAQ processes, as KLOE ran it (lowering it needs CAP_SYS_NICE)"))?,
        };
        Ok(Farm {
            vars,
            running: None,
            clients: Arc::new(Clients::default()),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The address listened on while running.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().map(|r| r.addr)
    }

    fn stop(&mut self, log: &EventLog) {
        if let Some(r) = self.running.take() {
            r.shared.stop.store(true, Ordering::Relaxed);
            r.stop_accept.store(true, Ordering::Relaxed);
            let _ = r.accept.join();
            // Shut every connection down: whatever its thread is blocked in (a write to a
            // client that does not read, a read) returns at once, and the thread ends.
            self.clients.close_all();
            log.info(format!("stopped listening on {}", r.addr));
        }
        self.vars.clients.set(self.clients.len() as i64);
    }

    fn sync_counters(&self) {
        if let Some(r) = &self.running {
            let s = &r.shared;
            self.vars
                .timeouts
                .set(s.timeouts.load(Ordering::Relaxed) as i64);
            self.vars
                .badreqs
                .set(s.badreqs.load(Ordering::Relaxed) as i64);
            self.vars
                .skipped
                .set(s.skipped.load(Ordering::Relaxed) as i64);
            self.vars
                .dropped
                .set(self.dropped.load(Ordering::Relaxed) as i64);
            let ev = s.eventnr.load(Ordering::Relaxed);
            if ev > 0 {
                self.vars.eventnr.set(ev as i64);
            }
            s.timeout_us
                .store(self.vars.timeout_us.get(), Ordering::Relaxed);
        }
        self.vars.clients.set(self.clients.len() as i64);
    }
}

struct StatsCounter(Stats);

impl Counter for StatsCounter {
    fn packet(&self, events: u64, bytes: u64) {
        self.0.count(events, 1, bytes);
        self.0.end_loop();
    }
    fn idle(&self) {
        self.0.end_loop();
    }
}

/// Runs the daemon at nice value `want` (this thread, and so every thread it starts).
fn apply_nice(want: i32, log: &EventLog) -> Result<(), String> {
    let now = shvars::sys::thread_nice().map_err(|e| format!("cannot read the nice value: {e}"))?;
    if now == want {
        return Ok(());
    }
    shvars::sys::set_thread_nice(want).map_err(|e| {
        format!(
            "cannot change the nice value from {now} to {want}: {e} (lowering it needs CAP_SYS_NICE; `set nice {now}` or higher)"
        )
    })?;
    log.info(format!("running at nice {want} (was {now})"));
    Ok(())
}

fn listen(port: u16, reuse: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_reuse_address(reuse)?;
    let addr: SocketAddr = ([0, 0, 0, 0], port).into();
    s.bind(&addr.into())?;
    s.listen(64)?;
    let l: TcpListener = s.into();
    l.set_nonblocking(true)?;
    Ok(l)
}

fn tune(sock: &TcpStream, rcv: i64, snd: i64) {
    let s = socket2::SockRef::from(sock);
    if rcv > 0 {
        let _ = s.set_recv_buffer_size(rcv as usize);
    }
    if snd > 0 {
        let _ = s.set_send_buffer_size(snd as usize);
    }
}

fn init(f: &mut Farm, ctx: &mut Ctx, args: &[String]) -> Outcome {
    if let Some(b) = args.first() {
        ctx.dir().buffer_path(b).map_err(|e| e.to_string())?;
        if f.vars.bcname.set(b) {
            return Err(
                format!("buffer name longer than {} bytes", f.vars.bcname.capacity()).into(),
            );
        }
    }
    Ok(format!("serving buffer {}", f.vars.bcname.get()).into())
}

fn start(f: &mut Farm, ctx: &mut Ctx, _: &[String]) -> Outcome {
    let bcname = f.vars.bcname.get();
    let path = ctx.dir().buffer_path(&bcname).map_err(|e| e.to_string())?;
    // Refuse unless the buffer exists and its producer is alive.
    let probe = SamplingReader::open(&path).map_err(|e| format!("cannot serve {bcname}: {e}"))?;
    if shvars::region::owner_alive(&path) != Some(true) {
        return Err(format!(
            "cannot serve {bcname}: its producer (pid {}) is not running (start the producer first)",
            probe.buffer_stats().producer_pid
        )
        .into());
    }
    drop(probe);
    apply_nice(f.vars.nice.get() as i32, ctx.log())?;
    let port = f.vars.port.get();
    let listener = listen(port as u16, f.vars.reuseaddr.get() != 0).map_err(|e| {
        format!("cannot listen on port {port}: {e} (another process uses it? `set port N` to move)")
    })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if port == 0 {
        f.vars.port.set(addr.port() as i64);
    }
    let shared = Arc::new(FarmShared {
        bcname: path,
        serving: AtomicBool::new(true),
        stop: AtomicBool::new(false),
        timeout_us: AtomicI64::new(f.vars.timeout_us.get()),
        timeouts: AtomicU64::new(0),
        badreqs: AtomicU64::new(f.vars.badreqs.get() as u64),
        skipped: AtomicU64::new(f.vars.skipped.get() as u64),
        eventnr: AtomicU64::new(0),
    });
    f.vars.timeouts.set(0);
    let stop_accept = Arc::new(AtomicBool::new(false));
    let stats = ctx
        .stats()
        .cloned()
        .ok_or("farmspydaemon needs statistics")?;
    let counter = Arc::new(StatsCounter(stats));
    let accept = {
        let shared = shared.clone();
        let stop = stop_accept.clone();
        let conns = f.clients.clone();
        let dropped = f.dropped.clone();
        let maxclients = f.vars.maxclients.clone();
        let (rcv, snd) = (f.vars.rcvbuf.clone(), f.vars.sndbuf.clone());
        let log = ctx.log().clone();
        std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || {
                accept_loop(
                    &listener,
                    &shared,
                    &stop,
                    &conns,
                    &dropped,
                    &maxclients,
                    (&rcv, &snd),
                    &log,
                    &counter,
                )
            })
            .map_err(|e| e.to_string())?
    };
    f.running = Some(Running {
        shared,
        accept,
        stop_accept,
        addr,
    });
    ctx.log().info(format!(
        "listening on {addr}, serving {bcname} (run {})",
        f.vars.runnr.get()
    ));
    Ok(format!("listening on port {}", addr.port()).into())
}

#[allow(clippy::too_many_arguments)]
fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<FarmShared>,
    stop: &AtomicBool,
    conns: &Arc<Clients>,
    dropped: &Arc<AtomicU64>,
    maxclients: &IntVar,
    bufs: (&IntVar, &IntVar),
    log: &Arc<EventLog>,
    counter: &Arc<StatsCounter>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut sock, peer)) => {
                let _ = sock.set_nonblocking(false);
                let max = maxclients.get().max(1) as usize;
                let slot = match conns.join(&sock, peer, max) {
                    Ok(Some((slot, evicted))) => {
                        if let Some(old) = evicted {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            log.warn(format!(
                                "client {old} dropped: idle, its slot given to {peer} (maxclients {max} reached)"
                            ));
                        }
                        slot
                    }
                    Ok(None) => {
                        let _ = sock.set_write_timeout(Some(Duration::from_secs(1)));
                        let _ = write_error(
                            &mut sock,
                            &format!(
                                "too many clients: this daemon serves at most {max} (maxclients)"
                            ),
                        );
                        log.warn(format!("refused {peer}: maxclients {max} reached"));
                        continue;
                    }
                    Err(e) => {
                        log.error(format!("cannot serve {peer}: {e}"));
                        continue;
                    }
                };
                tune(&sock, bufs.0.get(), bufs.1.get());
                let (shared, dropped, log2, counter) = (
                    shared.clone(),
                    dropped.clone(),
                    log.clone(),
                    counter.clone(),
                );
                let spawned = std::thread::Builder::new()
                    .name(format!("client {peer}"))
                    .spawn(move || {
                        let log = log2;
                        log.info(format!("client {peer} connected"));
                        let end = serve(sock, &shared, &*counter, &slot);
                        drop(slot);
                        match end {
                            End::Normal => log.info(format!("client {peer} disconnected")),
                            End::BadRequest(why) => {
                                shared.badreqs.fetch_add(1, Ordering::Relaxed);
                                log.warn(format!("client {peer} dropped: {why}"));
                            }
                            End::NotReading(why) => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                                log.warn(format!("client {peer} dropped: {why}"));
                            }
                            End::Buffer(why) => log.error(format!("client {peer}: {why}")),
                            End::Io(e) => log.warn(format!("client {peer}: {e}")),
                        }
                    });
                if spawned.is_err() {
                    log.error(format!("cannot start a thread for {peer}"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                log.warn(format!("accept: {e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn pause(f: &mut Farm, _: &mut Ctx, _: &[String]) -> Outcome {
    if let Some(r) = &f.running {
        r.shared.serving.store(false, Ordering::Relaxed);
    }
    Ok("paused: connections kept, no new events served".into())
}

fn resume(f: &mut Farm, _: &mut Ctx, _: &[String]) -> Outcome {
    if let Some(r) = &f.running {
        r.shared.serving.store(true, Ordering::Relaxed);
        r.shared.timeouts.store(0, Ordering::Relaxed);
    }
    f.vars.timeouts.set(0);
    Ok("serving".into())
}

fn update(f: &mut Farm, _: &mut Ctx, _: &[String]) -> Outcome {
    f.sync_counters();
    Ok("variables updated".into())
}

fn end(f: &mut Farm, ctx: &mut Ctx, _: &[String]) -> Outcome {
    f.stop(ctx.log());
    Ok("listener and connections closed".into())
}

impl App for Farm {
    fn commands() -> Vec<Command<Self>> {
        vec![
            Command::init("Initialize; the argument sets bcname (the farm buffer)")
                .args("[bcname]", 0, 1)
                .handler(init),
            Command::start("Listen on `port` and serve bcname (its producer must be running)")
                .handler(start),
            Command::pause("Stop serving new events; keep the connections").handler(pause),
            Command::resume("Serve new events again").handler(resume),
            Command::update("Update the shared variables now").handler(update),
            Command::end("Close the listener and every connection").handler(end),
        ]
    }

    fn tick(&mut self, _ctx: &mut Ctx) {
        self.sync_counters();
    }

    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        let mut v = vec![format!("bcname: {}", self.vars.bcname.get())];
        match &self.running {
            Some(r) => v.push(format!("listening on {}", r.addr)),
            None => v.push("not listening".into()),
        }
        v.push(format!(
            "clients: {} of {}",
            self.clients.len(),
            self.vars.maxclients.get()
        ));
        v
    }

    fn shutdown(&mut self, ctx: &mut Ctx) {
        self.stop(ctx.log());
    }
}
