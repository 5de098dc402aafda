//! `isectd`: the node supervisor and transaction broker of seed 001, on the framework.
//!
//! It keeps **services** (names that clients ask for and workers serve) and **workers** (the
//! programs that do the work, on this host or, through `isdexecd`, on another), starts and
//! stops their processes, restarts those that die unasked (with a capped backoff after quick
//! deaths, up to a FAILED state), notices a death at once (SIGCHLD for its children, a pidfd for
//! workers it adopted from a predecessor), tells when a worker is ready (a framework process:
//! its region and socket; any program: `READY=1` on the `NOTIFY_SOCKET` it is given, or being up
//! long enough), puts each on the seed's LAZY / IDLE / BUSY queues, and fans run-control
//! commands out to them in service order (`send all start`).
//!
//! Everything it knows is a variable (the isdData fields, `service.NAME.*`, `worker.N.*`). Its
//! configuration and its workers' identities are saved in its own directory, so a new isectd
//! of the same name adopts the workers of one that was killed.
//!
//! Files: [`model`] (what is configured, states and queues), `vars.rs` (the variables),
//! `supervise.rs` (processes: start, death, restart, stop, readiness, adoption),
//! `commands.rs` (the command language), `send.rs` (run-control fan-out), `saved.rs` (the
//! saved state), [`home`] (isectd's directory and files), [`notify`], [`procfs`], [`events`];
//! workers on other hosts: [`exec_proto`] (the wire format), [`conn`], `remote.rs` (isectd's
//! side), [`execd`] (isdexecd); transactions: [`xproto`] (the wire format), `broker.rs`
//! (routing), [`xlib`] (client and worker libraries).

mod broker;
mod commands;
pub mod conn;
pub mod events;
pub mod exec_proto;
pub mod execd;
pub mod home;
pub mod model;
pub mod notify;
pub mod procfs;
mod remote;
mod saved;
mod send;
pub mod stream;
mod supervise;
mod vars;
pub mod xlib;
pub mod xproto;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shvars::region::VarSpec;
use shvars::ProcName;

use crate::framework::{
    App, BoxError, Ctx, Deferred, FdToken, Interest, ProcessSpec, Readiness, TimerId,
};
use crate::support::backoff::Backoff;

use events::{Buckets, Events};
use home::Home;
use model::{WState, WorkerSpec};
use notify::NotifySocket;
use vars::{IsdVars, Policy, ServiceVars, WorkerVars};

/// How the framework runs isectd.
pub const SPEC: ProcessSpec = ProcessSpec::new("isectd");

/// What isectd's command line adds to the framework's options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Commands to run at start-up, from `--script FILE` (one per line, `#` comments).
    pub script: Vec<String>,
    /// Ignore a saved state (start afresh, adopting nothing).
    pub fresh: bool,
    /// The key shared with the isdexecd of other hosts.
    pub key: Option<std::path::PathBuf>,
    /// Address to listen on for clients and transaction workers.
    pub listen: String,
    /// The client port (0: any free one, shown in `req_port`).
    pub req_port: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            script: Vec::new(),
            fresh: false,
            key: None,
            listen: "127.0.0.1".into(),
            req_port: 0,
        }
    }
}

/// A service.
#[derive(Debug)]
pub struct Service {
    /// Its id (1, 2, ... in configuration order).
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Whether `start` was given (workers configured into it start at once).
    pub started: bool,
    v: ServiceVars,
}

/// How isectd watches a worker's process.
#[derive(Debug)]
pub enum Watch {
    /// Its own child: SIGCHLD and waitpid.
    Child,
    /// Adopted from a predecessor: a pidfd in the event loop.
    Pidfd {
        /// The pidfd.
        fd: OwnedFd,
        /// Its token in the loop.
        token: FdToken,
    },
    /// On another host: its isdexecd reports.
    Remote,
}

/// A worker's running process.
#[derive(Debug)]
pub struct Running {
    /// Its pid.
    pub pid: i32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat`), against pid reuse.
    pub ticks: u64,
    /// When isectd started (or adopted) it.
    pub since: Instant,
    /// How its death is noticed.
    pub watch: Watch,
    /// The `worker_busy_poll_us` a transaction worker was started with (`None`: not known,
    /// as for an adopted or remote worker).
    pub busy_poll_us: Option<u64>,
}

/// A worker.
#[derive(Debug)]
pub struct Worker {
    /// Its id.
    pub id: u32,
    /// What it runs.
    pub spec: WorkerSpec,
    v: WorkerVars,
    /// Its process, if one runs.
    pub proc: Option<Running>,
    /// It should run (its service was started, it was not stopped).
    pub wanted: bool,
    /// Paused: no work, no restart.
    pub paused: bool,
    /// Gave up after quick deaths.
    pub failed: bool,
    /// Its process said it is ready (or was recognised ready).
    pub ready: bool,
    /// Commands in flight (`send`).
    pub busy: u32,
    /// When the current piece of work started.
    pub busy_since: Option<Instant>,
    /// Being stopped: the grace timer, and whether SIGKILL went already.
    pub stopping: Option<(TimerId, bool)>,
    /// A restart waits for this timer.
    pub restart_timer: Option<TimerId>,
    backoff: Backoff,
    /// The readiness poll: its timer and current period.
    ready_poll: Option<(TimerId, Duration)>,
    ready_after: Option<TimerId>,
    /// Its framework process name, once recognised.
    pub fwname: Option<ProcName>,
    /// Deleted: its row of variables is retired; the worker is kept (DELETED) only so that a
    /// late message about it is recognised.
    pub deleted: bool,
    /// On a host whose isdexecd cannot be reached now.
    pub lost: bool,
    /// A transaction worker's connection, once it logged in.
    pub conn: Option<FdToken>,
    /// The client whose transaction it serves.
    pub client: Option<u32>,
    /// The login token given to its process.
    pub token: Option<String>,
    /// Clients whose transactions were taken from it (`idle`): a late reply to them is
    /// thrown away.
    pub orphans: Vec<u32>,
    /// Pieces sent to it.
    pub to_count: u64,
    /// Pieces it sent.
    pub from_count: u64,
    xactions: u64,
    resp_total_us: u64,
}

impl Worker {
    /// Its state now.
    pub fn state(&self) -> WState {
        if self.deleted {
            return WState::Deleted;
        }
        if self.lost && (self.proc.is_some() || self.wanted) {
            return WState::Lost;
        }
        match &self.proc {
            Some(_) if self.stopping.is_some() => WState::Stopping,
            Some(_) if !self.ready => WState::Starting,
            Some(_) if self.paused => WState::Paused,
            Some(_) if self.busy > 0 => WState::Busy,
            Some(_) => WState::Idle,
            None if self.failed => WState::Failed,
            None if self.restart_timer.is_some() => WState::Backoff,
            None if self.wanted && self.paused => WState::Paused,
            None => WState::Stopped,
        }
    }

    /// Its policy now.
    pub fn policy(&self) -> Policy {
        self.v.policy.get()
    }

    fn fresh_backoff(p: &Policy) -> Backoff {
        Backoff::new(
            Duration::from_millis(p.backoff_ms.max(0) as u64),
            Duration::from_millis(p.backoff_max_ms.max(0) as u64),
        )
    }
}

/// What a timer of isectd is for.
#[derive(Debug, Clone, Copy)]
enum Due {
    Restart(u32),
    Grace(u32),
    ReadyPoll(u32),
    ReadyAfter(u32),
    Housekeeping,
    Abort,
    Reconnect,
    Closed(u32),
    XControl(u32),
}

/// What a registered descriptor is.
#[derive(Debug, Clone, Copy)]
enum FdUse {
    Notify,
    Pidfd(u32),
    Link,
    WorkerListener,
    ClientListener,
    UnixListener,
    XConn,
}

/// A `stop` (or the `end` before exit) waiting for processes to end.
#[derive(Debug)]
struct PendingStop {
    reply: Deferred,
    workers: Vec<u32>,
    text: &'static str,
}

/// isectd.
#[derive(Debug)]
pub struct Isectd {
    home: Home,
    notify: NotifySocket,
    v: IsdVars,
    services: Vec<Service>,
    workers: BTreeMap<u32, Worker>,
    next_wid: u32,
    timers: HashMap<TimerId, Due>,
    fds: HashMap<FdToken, FdUse>,
    events: Events,
    buckets: Buckets,
    stops: Vec<PendingStop>,
    sends: send::Sends,
    remote: remote::Links,
    key: Option<Vec<u8>>,
    broker: Option<broker::Broker>,
    /// `send` to transaction workers waiting for their CONTROL answer: worker -> (job, who, when).
    x_controls: HashMap<u32, (u64, String, Instant)>,
    /// `halt`: exit without stopping the workers.
    halting: bool,
    /// The saved state needs writing.
    dirty: bool,
}

impl Isectd {
    /// Sets isectd up: its directory, the notify socket, its variables, the saved state of a
    /// predecessor (its workers adopted), the housekeeping timer.
    ///
    /// # Errors
    /// If its directory or socket cannot be made, or a variable cannot be published.
    pub fn build(ctx: &mut Ctx, opts: &Options) -> Result<Isectd, BoxError> {
        let home = Home::open(ctx.dir(), ctx.name())?;
        let notify = NotifySocket::bind(&home.file("notify.sock"))?;
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        let v = IsdVars::add(ctx.region(), &host)?;
        ctx.region().add_int(VarSpec::int("ISDARGMAX", 0).desc(
            "Arguments before a transaction worker's own parameters (none for other programs)",
        ))?;
        let nt = ctx.register_fd(notify.fd(), Interest::Read)?;
        let mut d = Isectd {
            home,
            notify,
            events: Events::new(v.num_events.get() as usize),
            buckets: Buckets::new(v.num_buckets.get() as usize, v.bucket_secs.get() as u64),
            v,
            services: Vec::new(),
            workers: BTreeMap::new(),
            next_wid: 1,
            timers: HashMap::new(),
            fds: HashMap::new(),
            stops: Vec::new(),
            sends: send::Sends::default(),
            remote: remote::Links::default(),
            key: match &opts.key {
                Some(p) => Some(exec_proto::read_key(p)?),
                None => None,
            },
            broker: None,
            x_controls: HashMap::new(),
            halting: false,
            dirty: false,
        };
        d.fds.insert(nt, FdUse::Notify);
        let unix_path = ctx.dir().path().join(format!("{}.xact", ctx.name()));
        let mut b = broker::Broker::new(ctx.region(), &opts.listen, opts.req_port, &unix_path)?;
        for note in std::mem::take(&mut b.notes) {
            ctx.log().warn(&note);
            d.events.push(note);
        }
        let (wfd, cfd) = b.listeners();
        let wt = ctx.register_fd(wfd, Interest::Read)?;
        let ct = ctx.register_fd(cfd, Interest::Read)?;
        d.fds.insert(wt, FdUse::WorkerListener);
        d.fds.insert(ct, FdUse::ClientListener);
        if let Some(ufd) = b.unix_listener() {
            let ut = ctx.register_fd(ufd, Interest::Read)?;
            d.fds.insert(ut, FdUse::UnixListener);
        }
        ctx.log().info(format!(
            "transactions: clients on {}:{}, workers on {}:{}",
            opts.listen, b.req_port, opts.listen, b.port
        ));
        d.broker = Some(b);
        let t = ctx.timer_every(Duration::from_secs(1));
        d.timers.insert(t, Due::Housekeeping);
        let adopted = if opts.fresh {
            d.home.remove(saved::FILE);
            false
        } else {
            d.restore(ctx)?
        };
        if !adopted {
            for line in &opts.script {
                commands::run_script_line(&mut d, ctx, line)
                    .map_err(|e| format!("--script: '{line}': {e}"))?;
            }
        } else if !opts.script.is_empty() {
            ctx.log().warn(
                "--script not run: the saved configuration of the previous isectd was adopted (start with --fresh to run the script instead)",
            );
        }
        d.refresh(ctx);
        Ok(d)
    }

    /// Remembers an event for `listevents` and writes it to the event log.
    fn event(&mut self, ctx: &Ctx, text: String) {
        ctx.log().info(&text);
        self.events.push(text);
        self.v.events.set(self.events.len() as i64);
    }

    fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    fn service_mut(&mut self, name: &str) -> Option<&mut Service> {
        self.services.iter_mut().find(|s| s.name == name)
    }

    /// Adds a service (from `config service` or the saved state).
    fn add_service(&mut self, ctx: &Ctx, name: &str, order: Option<i64>) -> Result<u32, String> {
        model::check_service_name(name)?;
        if self.service(name).is_some() {
            return Err(format!("service {name} already exists"));
        }
        let id = self.services.iter().map(|s| s.id).max().unwrap_or(0) + 1;
        let v = ServiceVars::add(ctx.region(), name, id).map_err(|e| e.to_string())?;
        if let Some(o) = order {
            v.order.set(o);
        }
        self.services.push(Service {
            id,
            name: name.to_owned(),
            started: false,
            v,
        });
        self.v.service_list.set(self.services.len() as i64);
        self.dirty = true;
        Ok(id)
    }

    /// Adds a worker with id `id` (from `config worker`, `clone` or the saved state).
    fn add_worker(
        &mut self,
        ctx: &Ctx,
        id: u32,
        spec: WorkerSpec,
        policy: &Policy,
    ) -> Result<(), String> {
        let v = WorkerVars::add(
            ctx.region(),
            id,
            &spec.service,
            &spec.host,
            &spec.path,
            policy,
        )
        .map_err(|e| format!("cannot publish the variables of worker {id}: {e}"))?;
        if let Some(s) = self.service(&spec.service) {
            s.v.workers.add(1);
        }
        self.workers.insert(
            id,
            Worker {
                id,
                spec,
                v,
                proc: None,
                wanted: false,
                paused: false,
                failed: false,
                ready: false,
                busy: 0,
                busy_since: None,
                stopping: None,
                restart_timer: None,
                backoff: Worker::fresh_backoff(policy),
                ready_poll: None,
                ready_after: None,
                fwname: None,
                deleted: false,
                lost: false,
                conn: None,
                client: None,
                token: None,
                orphans: Vec::new(),
                to_count: 0,
                from_count: 0,
                xactions: 0,
                resp_total_us: 0,
            },
        );
        self.next_wid = self.next_wid.max(id + 1);
        self.v.workers.set(self.live_workers().count() as i64);
        self.dirty = true;
        Ok(())
    }

    fn live_workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values().filter(|w| !w.deleted)
    }

    /// Shows every worker's state, the queue counts, and writes the saved state if it changed.
    fn refresh(&mut self, ctx: &Ctx) {
        let (mut lazy, mut idle, mut busy) = (0, 0, 0);
        for w in self.workers.values() {
            let s = w.state();
            w.v.show(s);
            w.v.pid.set(w.proc.as_ref().map_or(0, |p| i64::from(p.pid)));
            if let Some(t) = w.busy_since {
                w.v.last_resp_us.set(t.elapsed().as_micros() as i64);
            }
            if s == WState::Deleted {
                continue;
            }
            match s.queue() {
                model::Queue::Lazy => lazy += 1,
                model::Queue::Idle => idle += 1,
                model::Queue::Busy => busy += 1,
            }
        }
        self.v.lazy.set(lazy);
        self.v.idle.set(idle);
        self.v.busy.set(busy);
        if self.dirty {
            self.dirty = false;
            // `dirty` is raised by every change of the workers (start, stop, death, failure,
            // delete, config): the changes that can leave a service with no worker to come.
            self.refuse_all_stranded(ctx);
            if let Err(e) = self.save() {
                ctx.error(&format!("cannot save isectd's state: {e}"));
            }
        }
    }

    fn housekeeping(&mut self, ctx: &Ctx) {
        let max = self.v.log_max.get().max(4096) as u64;
        let ids: Vec<u32> = self
            .workers
            .values()
            .filter(|w| w.proc.is_some())
            .map(|w| w.id)
            .collect();
        for id in ids {
            match self.home.rotate_log(id, max) {
                Ok(true) => ctx
                    .log()
                    .info(format!("worker {id}: log rotated (over {max} bytes)")),
                Ok(false) => {}
                Err(e) => ctx.error(&format!("worker {id}: cannot rotate its log: {e}")),
            }
        }
        self.count_done(0);
    }

    /// Counts completed work in the histogram and shows it.
    fn count_done(&mut self, n: u64) {
        if n > 0 {
            // Shown by the housekeeping every second (and by isddata), not per transaction.
            self.buckets.count(n);
            return;
        }
        self.buckets.roll(Instant::now());
        self.v.buckets.set(&self.buckets.text());
        self.v.peak_bucket.set(self.buckets.peak() as i64);
    }
}

impl App for Isectd {
    fn commands() -> Vec<crate::framework::Command<Self>> {
        commands::table()
    }

    fn timer(&mut self, ctx: &mut Ctx, id: TimerId) {
        let Some(due) = self.timers.get(&id).copied() else {
            return;
        };
        if !ctx.timer_armed(id) {
            self.timers.remove(&id);
        }
        match due {
            Due::Restart(w) => self.restart_due(ctx, w),
            Due::Grace(w) => self.grace_over(ctx, w),
            Due::ReadyPoll(w) => self.ready_poll(ctx, w),
            Due::ReadyAfter(w) => self.ready_after(ctx, w),
            Due::Housekeeping => self.housekeeping(ctx),
            Due::Abort => {
                let _ = self.save();
                ctx.log().error("abort: calling abort() as asked");
                std::process::abort();
            }
            Due::Reconnect => self.reconnect_due(ctx),
            Due::Closed(w) => self.closed_due(ctx, w),
            Due::XControl(w) => {
                if let Some((job, who, t0)) = self.x_controls.remove(&w) {
                    let e = crate::control::client::ClientError::BadFile(format!(
                        "no answer within {} ms",
                        self.v.send_timeout_ms.get()
                    ));
                    self.send_answered(ctx, job, w, who, Err(e), t0.elapsed());
                }
            }
        }
        self.refresh(ctx);
    }

    fn ready(&mut self, ctx: &mut Ctx, fd: FdToken, _r: Readiness) {
        match self.fds.get(&fd).copied() {
            Some(FdUse::Notify) => {
                for n in self.notify.drain() {
                    self.notified(ctx, &n);
                }
            }
            Some(FdUse::Pidfd(w)) => self.adopted_died(ctx, w),
            Some(FdUse::Link) => self.link_event(ctx, fd),
            Some(FdUse::WorkerListener) => self.accept_x(ctx, broker::Listener::Workers),
            Some(FdUse::ClientListener) => self.accept_x(ctx, broker::Listener::Clients),
            Some(FdUse::UnixListener) => self.accept_x(ctx, broker::Listener::Unix),
            Some(FdUse::XConn) => self.x_event(ctx, fd),
            None => {}
        }
        self.refresh(ctx);
    }

    fn signal(&mut self, ctx: &mut Ctx, sig: Signal) {
        if sig == Signal::SIGCHLD {
            self.reap(ctx);
            self.refresh(ctx);
        }
    }

    fn after_set(&mut self, ctx: &mut Ctx, var: &VarSpec) {
        if let Some(rest) = var.name.strip_prefix("worker.") {
            if let Some((id, field)) = rest.split_once('.') {
                if let (Ok(id), true) = (id.parse::<u32>(), field.starts_with("backoff")) {
                    if let Some(w) = self.workers.get_mut(&id) {
                        w.backoff = Worker::fresh_backoff(&w.policy());
                    }
                }
            }
        }
        self.dirty = true;
        self.refresh(ctx);
    }

    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        vec![
            format!(
                "services: {}, workers: {} (lazy {}, idle {}, busy {})",
                self.services.len(),
                self.live_workers().count(),
                self.v.lazy.get(),
                self.v.idle.get(),
                self.v.busy.get()
            ),
            format!("directory: {}", self.home.path().display()),
        ]
    }

    fn shutdown(&mut self, ctx: &mut Ctx) {
        let running = self.workers.values().filter(|w| w.proc.is_some()).count();
        if running == 0 && !self.halting {
            // A clean exit: every worker stopped, nothing to adopt.
            self.home.remove(saved::FILE);
            return;
        }
        match self.save() {
            Ok(()) => ctx.log().info(format!(
                "{running} worker processes left running; their identities are saved for the next isectd -n {} to adopt",
                ctx.name()
            )),
            Err(e) => ctx.error(&format!("cannot save isectd's state: {e}")),
        }
    }
}
