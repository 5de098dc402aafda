//! `lvsmon`: the health-check daemon (seed 003, LVSmon). It probes services (TCP, HTTP, banner,
//! UDP, other framework processes) from one checker thread with a poll loop of its own
//! ([`engine`]), keeps a row of variables per check (`check.NAME.status`, ...), and announces
//! only edges: a line in the event log, the notify command, the LVS table change.
//!
//! The main thread (the framework's loop) owns the configuration and everything that may
//! allocate or block: parsing and reloading the file, resolving names, opening other processes'
//! regions, running commands on edges. The checker owns the probes and never allocates. See
//! docs/lvsmon.md.

pub mod actions;
pub mod config;
pub mod engine;
pub mod plan;
pub mod probe;
pub mod reason;
pub mod rows;
pub mod verdict;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shvars::region::{CreateOptions, IntVar, StrVar, VarSpec};
use shvars::ProcName;

use self::actions::{Actions, EdgeInfo};
use self::config::{fmt_ms, ConfigError, Defaults};
use self::engine::{CheckerVars, Engine, FromChecker, Handle, Table, ToChecker};
use self::plan::{Condition, Probe, Target, Watched};
use self::rows::{Row, Rows};
use self::verdict::{Cause, Status};
use crate::control::reply::{ErrorKind, Failure};
use crate::framework::state::ANY;
use crate::framework::{
    App, BoxError, Command, Ctx, FdToken, Hangup, Interest, Outcome, ProcessSpec, Readiness,
    TimerId,
};

/// How the framework runs lvsmon: a tick every second for the watchdog, name resolution and
/// children.
pub const SPEC: ProcessSpec = ProcessSpec {
    default_name: "lvsmon",
    stats: None,
    tick: Some(Duration::from_secs(1)),
};

/// The command line's own options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The checks file.
    pub file: PathBuf,
    /// Default probe interval.
    pub interval_ms: u64,
    /// Whom to become after start-up (when started as root).
    pub user: Option<String>,
}

/// The checker thread is taken as frozen when its heartbeat has not moved for this long.
const STALL: Duration = Duration::from_secs(5);

/// Region sizes for a file of `checks` checks, with room to double at reloads.
pub fn region_sizes(checks: usize) -> CreateOptions {
    let rows = 2 * checks + 64;
    let d = CreateOptions::default();
    CreateOptions {
        schema_cap: d.schema_cap.max(rows * rows::COLUMNS.len() * 320),
        data_cap: d.data_cap.max(rows * 256),
        log_cap: d.log_cap,
    }
}

/// Counts the checks of a file (for the region's size); 0 if it cannot be read or is refused
/// (the load that follows says why). Read as the load reads it: a FIFO planted as the checks
/// file must not hang start-up here.
pub fn count_checks(path: &std::path::Path) -> usize {
    crate::support::files::read_trusted_file(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("check").and_then(|c| c.as_table()).map(|c| c.len()))
        .unwrap_or(0)
}

/// What the main thread keeps of each check of a load.
#[derive(Debug)]
struct Meta {
    name: Arc<str>,
    kind: &'static str,
    summary: String,
    interval_ms: u64,
    actions: plan::Actions,
    row: Row,
    /// `host:port` of a target that did not resolve at load.
    unresolved: Option<String>,
    /// The watched process and its conditions (framework checks).
    watched: Option<(ProcName, Vec<Condition>)>,
}

/// The daemon's own variables.
#[derive(Debug)]
struct Vars {
    nchecks: IntVar,
    up: IntVar,
    down: IntVar,
    reloads: IntVar,
    edges: IntVar,
    config_error: StrVar,
    stalled: IntVar,
    beat: IntVar,
}

/// The daemon.
#[derive(Debug)]
pub struct Lvsmon {
    opts: Options,
    defaults: Defaults,
    rows: Rows,
    handle: Handle,
    checker: Option<JoinHandle<()>>,
    wake: FdToken,
    gen: u32,
    metas: BTreeMap<u32, Vec<Meta>>,
    states: HashMap<Arc<str>, Status>,
    actions: Actions,
    vars: Vars,
    checking: bool,
    beat_seen: (i64, Instant),
    resolving: HashSet<(u32, u32)>,
    last_resolve: HashMap<(u32, u32), Instant>,
    drop_timer: Option<TimerId>,
    loaded_at: SystemTime,
}

impl Lvsmon {
    /// Publishes the variables, reads the file (refusing a bad one with its line and reason),
    /// starts the checker (paused until `start`).
    ///
    /// # Errors
    /// A bad file, a region too small, a checker that cannot start.
    pub fn build(ctx: &mut Ctx, opts: Options) -> Result<Lvsmon, BoxError> {
        let r = ctx.region().clone();
        let int = |name: &str, desc: &str| r.add_int(VarSpec::int(name, 0).desc(desc));
        let counter =
            |name: &str, desc: &str| r.add_int(VarSpec::int(name, 0).counter().desc(desc));
        r.add_str(
            VarSpec::string("file", 256, &opts.file.display().to_string()).desc("The checks file"),
        )?;
        r.add_int(
            VarSpec::int("interval", (opts.interval_ms / 1000) as i64)
                .unit("s")
                .desc("Default probe interval (--interval)"),
        )?;
        let vars = Vars {
            nchecks: int("nchecks", "Checks loaded")?,
            up: int("up", "Checks UP")?,
            down: int("down", "Checks DOWN")?,
            reloads: counter("reloads", "Successful reloads of the checks file")?,
            edges: counter("edges", "State changes announced (one per edge)")?,
            config_error: r.add_str(
                VarSpec::string("config_error", 256, "")
                    .desc("Why the last reload was refused (empty once one succeeds)"),
            )?,
            stalled: int(
                "checker_stalled",
                "1 if the checker thread's heartbeat has not moved for 5 s",
            )?,
            beat: counter(
                "checker_heartbeat",
                "Turns of the checker's loop (at least 10 per second while it runs)",
            )?,
        };
        let checker_vars = CheckerVars {
            done: counter(
                "checks_done_since_start",
                "Probes completed since lvsmon started",
            )?,
            beat: vars.beat.clone(),
            allocs: int(
                "loop_allocs",
                "Heap allocations by the checker thread since its loop started (-1: not counted)",
            )?,
            in_flight: int("in_flight", "Probes under way")?,
        };
        let actions = Actions::new(
            ctx.name().as_str(),
            counter("notify_failures", "Notify commands that failed")?,
            counter("ipvs_failures", "ipvsadm runs that failed")?,
            counter("notifications", "Notify commands started")?,
        );
        let defaults = Defaults::with_interval(opts.interval_ms);
        let mut rows = Rows::default();
        let cfg = config::load(&opts.file, &defaults, ctx.dir(), &mut rows, &r)?;
        if opts.user.is_some() && cfg.checks.iter().any(|c| c.actions.ipvs.is_some()) {
            return Err(format!(
                "--user {}: ipvs actions need root (ipvsadm changes the kernel's tables); drop --user or the ipvs actions",
                opts.user.as_deref().unwrap_or("")
            )
            .into());
        }
        let (engine, handle) = Engine::new(checker_vars, cfg.checks.len())?;
        let wake = ctx.register_fd(handle.wake_rx.as_raw_fd(), Interest::Read)?;
        let checker = engine.spawn()?;
        let mut m = Lvsmon {
            opts,
            defaults,
            rows,
            handle,
            checker: Some(checker),
            wake,
            gen: 0,
            metas: BTreeMap::new(),
            states: HashMap::new(),
            actions,
            vars,
            checking: false,
            beat_seen: (0, Instant::now()),
            resolving: HashSet::new(),
            last_resolve: HashMap::new(),
            drop_timer: None,
            loaded_at: SystemTime::now(),
        };
        m.actions.set_ipvsadm(cfg.ipvsadm.clone());
        let n = cfg.checks.len();
        m.install(ctx, cfg.checks);
        ctx.log().info(format!(
            "loaded {} checks from {} (default interval {})",
            n,
            m.opts.file.display(),
            fmt_ms(m.opts.interval_ms)
        ));
        if m.opts.user.is_some() {
            // After start-up: the region, FIFO and socket exist by the first timer.
            m.drop_timer = Some(ctx.timer_after(Duration::ZERO));
        }
        Ok(m)
    }

    fn current(&self) -> &[Meta] {
        self.metas.get(&self.gen).map_or(&[], Vec::as_slice)
    }

    /// Hands `checks` to the checker as the new table.
    fn install(&mut self, ctx: &mut Ctx, checks: Vec<plan::CheckDef>) -> InstallReport {
        let old = self.metas.get(&self.gen).map_or(&[][..], Vec::as_slice);
        let carry: Vec<Option<u32>> = checks
            .iter()
            .map(|c| old.iter().position(|m| m.name == c.name).map(|j| j as u32))
            .collect();
        let mut report = InstallReport::default();
        for (c, k) in checks.iter().zip(&carry) {
            match k {
                Some(j) if old[*j as usize].summary == c.summary => {
                    report.kept.push(c.name.to_string())
                }
                Some(_) => report.changed.push(c.name.to_string()),
                None => report.added.push(c.name.to_string()),
            }
        }
        let removed: Vec<Arc<str>> = old
            .iter()
            .filter(|m| !checks.iter().any(|c| c.name == m.name))
            .map(|m| m.name.clone())
            .collect();
        for name in &removed {
            report.removed.push(name.to_string());
            let was = self.states.remove(name).unwrap_or_default();
            if let Some(m) = old.iter().find(|m| &m.name == name) {
                if let Err(e) = self.rows.retire(ctx.region(), name) {
                    ctx.error(&e);
                }
                if let (Some(ipvs), Status::Up) = (&m.actions.ipvs, was) {
                    self.actions.ipvs(name, ipvs.remove_args(), ctx.log());
                }
            }
            ctx.log()
                .info(format!("check {name}: removed from the checks file"));
        }
        let metas: Vec<Meta> = checks
            .iter()
            .map(|c| Meta {
                name: c.name.clone(),
                kind: c.probe.kind(),
                summary: c.summary.clone(),
                interval_ms: c.interval_ms,
                actions: c.actions.clone(),
                row: c.row.clone(),
                unresolved: match c.probe.target() {
                    Some(Target::Unresolved { host, .. }) => Some(host.clone()),
                    _ => None,
                },
                watched: match &c.probe {
                    Probe::Framework(f) => Some((f.process.clone(), f.conditions.clone())),
                    _ => None,
                },
            })
            .collect();
        for (m, k) in metas.iter().zip(&carry) {
            if k.is_none() {
                self.states.insert(m.name.clone(), Status::Unknown);
                m.row.status.set(Status::Unknown as i64);
            }
        }
        self.gen += 1;
        self.vars.nchecks.set(metas.len() as i64);
        self.metas.insert(self.gen, metas);
        self.count_states();
        self.handle.send(ToChecker::Load {
            table: Table::new(self.gen, checks),
            carry,
        });
        if self.checking {
            self.handle.send(ToChecker::Resume);
        }
        self.loaded_at = SystemTime::now();
        report
    }

    fn count_states(&self) {
        let up = self.states.values().filter(|s| **s == Status::Up).count();
        let down = self.states.values().filter(|s| **s == Status::Down).count();
        self.vars.up.set(up as i64);
        self.vars.down.set(down as i64);
    }

    /// Reads the file again; a bad one leaves the running set as it is.
    fn reload(&mut self, ctx: &mut Ctx, file: Option<PathBuf>) -> Result<String, ConfigError> {
        let path = file.unwrap_or_else(|| self.opts.file.clone());
        let region = ctx.region().clone();
        let cfg = match config::load(&path, &self.defaults, ctx.dir(), &mut self.rows, &region) {
            Ok(c) => c,
            Err(e) => {
                let text = format!(
                    "{e}; still running the {} checks loaded from {}",
                    self.current().len(),
                    self.opts.file.display()
                );
                self.vars.config_error.set(&text);
                ctx.error(&format!("reload refused: {text}"));
                return Err(e);
            }
        };
        if self.opts.user.is_some() && cfg.checks.iter().any(|c| c.actions.ipvs.is_some()) {
            let e = ConfigError {
                path: path.clone(),
                line: None,
                msg: "ipvs actions need root, and lvsmon dropped root (--user)".into(),
            };
            self.vars.config_error.set(&e.to_string());
            return Err(e);
        }
        self.actions.set_ipvsadm(cfg.ipvsadm.clone());
        self.opts.file = path;
        let n = cfg.checks.len();
        let rep = self.install(ctx, cfg.checks);
        self.vars.reloads.add(1);
        self.vars.config_error.set("");
        let text = format!(
            "reloaded {}: {n} checks ({})",
            self.opts.file.display(),
            rep.summary()
        );
        ctx.log().info(&text);
        Ok(text)
    }

    /// Reads what the checker sent.
    fn drain(&mut self, ctx: &mut Ctx) {
        let mut buf = [0u8; 256];
        while let Ok(n) = (&self.handle.wake_rx).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        while let Ok(m) = self.handle.rx.try_recv() {
            match m {
                FromChecker::Edge(e) => self.edge(ctx, &e),
                FromChecker::Reopen { gen, idx } => {
                    let watched = self
                        .metas
                        .get(&gen)
                        .and_then(|ms| ms.get(idx as usize))
                        .and_then(|m| m.watched.as_ref())
                        .and_then(|(p, conds)| Watched::open(ctx.dir(), p, conds))
                        .map(Box::new);
                    self.handle.send(ToChecker::Watched { gen, idx, watched });
                }
                FromChecker::Retired(t) => {
                    if t.gen != self.gen {
                        self.metas.remove(&t.gen);
                    }
                    drop(t);
                }
            }
        }
    }

    /// One edge: the log line, the variables, the notify command, the LVS table.
    fn edge(&mut self, ctx: &mut Ctx, e: &engine::Edge) {
        let Some(m) = self.metas.get(&e.gen).and_then(|ms| ms.get(e.idx as usize)) else {
            return;
        };
        let (old, new) = (e.change.old, e.change.new);
        let why = match (new, e.change.cause) {
            (Status::Up, _) => String::new(),
            (_, Cause::NoSuccess) => format!(
                " ({}; no success for longer than max_without_success; {} failures so far)",
                e.text.as_str(),
                e.fails
            ),
            _ => format!(" ({}; {} failures so far)", e.text.as_str(), e.fails),
        };
        let line = format!(
            "check {}: {} -> {}{} [{}]",
            m.name,
            old.label(),
            new.label(),
            why,
            m.summary
        );
        if new == Status::Down {
            ctx.log().warn(line);
        } else {
            ctx.log().info(line);
        }
        self.vars.edges.add(1);
        // An edge of the previous table that arrives after a reload still counts for a check
        // the new table carries on (the checker carried its state after the edge).
        if let Some(s) = self.states.get_mut(&m.name) {
            *s = new;
            self.count_states();
        }
        let info = EdgeInfo {
            check: m.name.to_string(),
            kind: m.kind,
            target: m.summary.clone(),
            old: old.label(),
            new: new.label(),
            reason: e.text.as_str().to_owned(),
            fails: e.fails,
            since: e.at_ns / 1_000_000_000,
        };
        let (notify, ipvs) = (m.actions.notify.clone(), m.actions.ipvs.clone());
        if let Some(argv) = notify {
            self.actions.notify(&argv, &info, ctx.log());
        }
        if let Some(ipvs) = ipvs {
            let args = match new {
                Status::Up => ipvs.add_args(),
                _ if old == Status::Up || old == Status::Unknown => ipvs.remove_args(),
                _ => return,
            };
            self.actions.ipvs(&info.check, args, ctx.log());
        }
    }

    /// Tries again, off the main thread, the names that did not resolve.
    fn resolve_again(&mut self, ctx: &mut Ctx) {
        let now = Instant::now();
        let gen = self.gen;
        let todo: Vec<(u32, String, u64)> = self
            .current()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((i as u32, m.unresolved.clone()?, m.interval_ms)))
            .collect();
        for (idx, host, interval) in todo {
            let key = (gen, idx);
            let every = Duration::from_millis(interval.max(5000));
            if self.resolving.contains(&key)
                || self
                    .last_resolve
                    .get(&key)
                    .is_some_and(|t| now.duration_since(*t) < every)
            {
                continue;
            }
            self.resolving.insert(key);
            self.last_resolve.insert(key, now);
            let mb = ctx.mailbox::<Lvsmon>();
            let spawned = std::thread::Builder::new()
                .name("lvsmon-resolve".into())
                .spawn(move || {
                    let target = Target::resolve(&host);
                    mb.post(move |m: &mut Lvsmon, ctx| m.resolved(ctx, gen, idx, target));
                });
            if spawned.is_err() {
                self.resolving.remove(&key);
            }
        }
    }

    fn resolved(&mut self, ctx: &mut Ctx, gen: u32, idx: u32, target: Target) {
        self.resolving.remove(&(gen, idx));
        if let Target::Addr(a) = target {
            if let Some(m) = self
                .metas
                .get_mut(&gen)
                .and_then(|ms| ms.get_mut(idx as usize))
            {
                ctx.log().info(format!(
                    "check {}: {} resolves now, to {a}",
                    m.name,
                    m.unresolved.as_deref().unwrap_or("")
                ));
                m.unresolved = None;
                self.handle.send(ToChecker::Resolved { gen, idx, target });
            }
        }
    }

    /// The watchdog: is the checker thread alive and moving?
    fn watch_checker(&mut self, ctx: &mut Ctx) {
        if self.checker.as_ref().is_some_and(JoinHandle::is_finished) {
            ctx.error("the checker thread ended unexpectedly: exiting (restart lvsmon)");
            self.checker = None;
            ctx.set_exit_code(1);
            ctx.request_exit();
            return;
        }
        let beat = self.vars.beat.get();
        if beat != self.beat_seen.0 {
            self.beat_seen = (beat, Instant::now());
            if self.vars.stalled.get() != 0 {
                self.vars.stalled.set(0);
                ctx.log().info("the checker thread moves again");
            }
        } else if self.beat_seen.1.elapsed() > STALL && self.vars.stalled.get() == 0 {
            self.vars.stalled.set(1);
            ctx.error(&format!(
                "the checker thread's heartbeat has not moved for {} s: checks are frozen",
                STALL.as_secs()
            ));
        }
    }

    fn drop_privileges(&mut self) -> Result<String, String> {
        use nix::unistd::{setgid, setgroups, setuid, User};
        let name = self.opts.user.clone().unwrap_or_default();
        let u = User::from_name(&name)
            .map_err(|e| format!("--user {name}: {e}"))?
            .ok_or_else(|| format!("--user {name}: no such user"))?;
        if !nix::unistd::geteuid().is_root() {
            return Err(format!(
                "--user {name}: lvsmon is not running as root, so it cannot become another user"
            ));
        }
        // The region, FIFO and socket stay root's: clients check that the socket's peer (whose
        // credentials are those of the listen(), root's) owns the files. They are open already,
        // so the process goes on serving them as USER.
        setgroups(&[u.gid]).map_err(|e| format!("--user {name}: setgroups: {e}"))?;
        setgid(u.gid).map_err(|e| format!("--user {name}: setgid: {e}"))?;
        setuid(u.uid).map_err(|e| format!("--user {name}: setuid: {e}"))?;
        Ok(format!(
            "dropped root: now uid {} gid {} ({name})",
            u.uid, u.gid
        ))
    }

    /// The `checks` table, or one check's row.
    fn table(&self, only: Option<&str>) -> Result<String, Failure> {
        let ms: Vec<&Meta> = self
            .current()
            .iter()
            .filter(|m| only.is_none_or(|o| *m.name == *o))
            .collect();
        if let (Some(o), true) = (only, ms.is_empty()) {
            let names: Vec<&str> = self.current().iter().map(|m| &*m.name).collect();
            return Err(Failure::new(
                ErrorKind::Failed,
                format!(
                    "no check named {o}; checks: {}",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
        let w = ms.iter().map(|m| m.name.len()).max().unwrap_or(4).max(4);
        let mut out = format!(
            "{:w$}  {:9}  {:7}  {:20}  {:>8}  {:>8}  {:>9}  REASON",
            "NAME", "TYPE", "STATUS", "SINCE", "FAILS", "PROBES", "LAST_MS"
        );
        for m in ms {
            let since = m.row.since.get();
            let since = if since > 0 {
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(since as u64))
                    .to_string()
            } else {
                "-".to_owned()
            };
            let status = verdict::STATUS_LABELS
                .get(m.row.status.get() as usize)
                .copied()
                .unwrap_or("?");
            out.push_str(&format!(
                "\n{:w$}  {:9}  {:7}  {:20}  {:>8}  {:>8}  {:>9.3}  {}",
                m.name,
                m.kind,
                status,
                since,
                m.row.fails.get(),
                m.row.checks.get(),
                m.row.last_ms.get(),
                m.row.reason.get()
            ));
        }
        Ok(out)
    }
}

/// What a reload changed.
#[derive(Debug, Default)]
struct InstallReport {
    added: Vec<String>,
    changed: Vec<String>,
    removed: Vec<String>,
    kept: Vec<String>,
}

impl InstallReport {
    fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (what, v) in [
            ("added", &self.added),
            ("changed", &self.changed),
            ("removed", &self.removed),
        ] {
            if !v.is_empty() {
                parts.push(format!("{} {what}: {}", v.len(), v.join(", ")));
            }
        }
        parts.push(format!("{} unchanged", self.kept.len()));
        parts.join("; ")
    }
}

fn start(m: &mut Lvsmon, _ctx: &mut Ctx, _: &[String]) -> Outcome {
    m.checking = true;
    m.handle.send(ToChecker::Resume);
    Ok(format!(
        "checking {} services (default interval {})",
        m.current().len(),
        fmt_ms(m.opts.interval_ms)
    )
    .into())
}

fn stop(m: &mut Lvsmon, _ctx: &mut Ctx, _: &[String]) -> Outcome {
    m.checking = false;
    m.handle.send(ToChecker::Pause);
    Ok("checks stopped".into())
}

fn pause(m: &mut Lvsmon, ctx: &mut Ctx, a: &[String]) -> Outcome {
    stop(m, ctx, a)?;
    Ok("paused: no probes until resume (states kept)".into())
}

fn resume(m: &mut Lvsmon, ctx: &mut Ctx, a: &[String]) -> Outcome {
    start(m, ctx, a)
}

fn reload(m: &mut Lvsmon, ctx: &mut Ctx, args: &[String]) -> Outcome {
    match m.reload(ctx, args.first().map(PathBuf::from)) {
        Ok(t) => Ok(t.into()),
        Err(e) => Err(Failure::new(
            ErrorKind::Failed,
            format!(
                "{e}; nothing changed: still running the {} checks loaded from {}",
                m.current().len(),
                m.opts.file.display()
            ),
        )),
    }
}

fn checks(m: &mut Lvsmon, _ctx: &mut Ctx, args: &[String]) -> Outcome {
    m.table(args.first().map(String::as_str)).map(Into::into)
}

impl App for Lvsmon {
    fn commands() -> Vec<Command<Self>> {
        vec![
            Command::init("Initialize (the checks file is read at start-up)").reply("initialised"),
            Command::start("Start probing every check").handler(start),
            Command::pause("Stop probing, keep every check's state").handler(pause),
            Command::resume("Probe again").handler(resume),
            Command::end("Stop probing").handler(stop),
            Command::new(
                "reload",
                "Read the checks file again (or FILE from now on); a bad file changes nothing",
            )
            .args("[FILE]", 0, 1)
            .allowed(ANY)
            .handler(reload),
            Command::new(
                "checks",
                "The checks: status, since, failures, last probe, reason",
            )
            .args("[NAME]", 0, 1)
            .allowed(ANY)
            .public()
            .handler(checks),
        ]
    }

    fn tick(&mut self, ctx: &mut Ctx) {
        self.watch_checker(ctx);
        self.actions.reap(ctx.log());
        if self.checking {
            self.resolve_again(ctx);
        }
    }

    fn timer(&mut self, ctx: &mut Ctx, id: TimerId) {
        if Some(id) == self.drop_timer {
            self.drop_timer = None;
            match self.drop_privileges() {
                Ok(t) => ctx.log().info(t),
                Err(e) => {
                    ctx.error(&format!("{e}: exiting"));
                    ctx.set_exit_code(1);
                    ctx.request_exit();
                }
            }
        }
    }

    fn ready(&mut self, ctx: &mut Ctx, fd: FdToken, _r: Readiness) {
        if fd == self.wake {
            self.drain(ctx);
        }
    }

    fn signal(&mut self, ctx: &mut Ctx, sig: nix::sys::signal::Signal) {
        if sig == nix::sys::signal::Signal::SIGCHLD {
            self.actions.reap(ctx.log());
        }
    }

    fn hangup(&mut self, ctx: &mut Ctx) -> Hangup {
        ctx.log().info("SIGHUP received: reloading the checks file");
        let _ = self.reload(ctx, None);
        Hangup::Handled
    }

    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        let n = self.current().len();
        let up = self.vars.up.get();
        let down = self.vars.down.get();
        vec![
            format!(
                "checks: {n} ({up} up, {down} down, {} unknown), {}",
                n as i64 - up - down,
                if self.checking {
                    "probing"
                } else {
                    "not probing (start or resume)"
                }
            ),
            format!(
                "file: {} (loaded {})",
                self.opts.file.display(),
                humantime::format_rfc3339_seconds(self.loaded_at)
            ),
            format!(
                "notify and ipvsadm commands running: {}",
                self.actions.running()
            ),
        ]
    }

    fn shutdown(&mut self, ctx: &mut Ctx) {
        self.handle.send(ToChecker::Stop);
        if let Some(t) = self.checker.take() {
            let _ = t.join();
        }
        self.drain(ctx);
        self.actions.drain(ctx.log(), Duration::from_secs(2));
    }
}

#[cfg(test)]
mod fake_servers;
#[cfg(test)]
mod tests;
