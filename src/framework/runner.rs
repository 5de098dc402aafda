//! The runner: a process's command table, run-state machine, deferred replies, time limits,
//! timers and exit sequence, with no I/O of its own. The event loop
//! (`event_loop.rs`) feeds it commands and events and delivers what it answers; tests
//! drive it directly, in-process, without FIFO, socket or signals.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nix::sys::signal::Signal;

use super::app::{App, Hangup};
use super::ctx::{Ctx, FdToken, Job, Readiness};
use super::eventlog::Level;
use super::table::{check_state, Action, Builtin, Command, Done, Outcome};
use super::timers::{Owner, TimerId};
use crate::control::reply::{ErrorKind, Failure, Reply};
use crate::control::words::tokenize;

/// Where a command came from, and where its reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A connection of the control socket (its id in the event loop).
    Client(u64),
    /// The control FIFO: nobody waits; the outcome goes to the event log and `lasterror`.
    Fifo,
    /// The `-c` start-up command with this index.
    Startup(usize),
    /// The framework itself (the `end` before `exit`).
    Internal,
}

/// Who sent a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The owner, root or a `--group` member: may run every command. Others may run only the
    /// commands marked public.
    pub privileged: bool,
    /// For messages: `uid 1001 (pid 4242)`.
    pub who: String,
}

impl Caller {
    /// A caller that may run everything (the FIFO, whose permissions already decided, start-up
    /// commands, tests).
    pub fn trusted(who: &str) -> Caller {
        Caller {
            privileged: true,
            who: who.to_owned(),
        }
    }
}

/// A reply to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Where it goes.
    pub origin: Origin,
    /// What it says.
    pub reply: Reply,
}

#[derive(Debug)]
struct Pending {
    id: u64,
    origin: Origin,
    word: &'static str,
    cmd: usize,
    started: Instant,
    deadline: Instant,
    timed_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExitState {
    Running,
    /// Waiting for the `before_exit` command (its pending id) before exiting.
    Ending {
        end: u64,
        origin: Option<Origin>,
    },
    Done,
}

/// How often the framework's heartbeat beats.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// The core of a process, without I/O.
pub struct Runner<A: App> {
    pub(crate) app: A,
    pub(crate) ctx: Ctx,
    table: Vec<Command<A>>,
    pending: Vec<Pending>,
    outbox: Vec<Delivery>,
    exit: ExitState,
    mailbox: Receiver<Job<A>>,
}

impl<A: App> std::fmt::Debug for Runner<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("ctx", &self.ctx)
            .field("pending", &self.pending)
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

impl<A: App> Runner<A> {
    /// A runner for `app` in `ctx` (whose services the caller set up), with the daemon's table
    /// and the framework's commands, the heartbeat armed, and the tick armed if `tick` is given.
    pub(crate) fn new(
        app: A,
        mut ctx: Ctx,
        mailbox: Receiver<Job<A>>,
        tick: Option<Duration>,
    ) -> Runner<A> {
        let mut table = A::commands();
        for b in super::builtins::rows::<A>() {
            if !table.iter().any(|c| c.name == b.name) {
                table.push(b);
            }
        }
        let now = Instant::now();
        ctx.timers
            .arm(Owner::Heartbeat, now + HEARTBEAT, Some(HEARTBEAT));
        if let Some(t) = tick {
            ctx.timers.arm(Owner::Tick, now + t, Some(t));
        }
        Runner {
            app,
            ctx,
            table,
            pending: Vec::new(),
            outbox: Vec::new(),
            exit: ExitState::Running,
            mailbox,
        }
    }

    /// The daemon.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// The context.
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub(crate) fn table(&self) -> &[Command<A>] {
        &self.table
    }

    /// Whether the exit sequence has finished: the loop delivers the last replies and stops.
    pub fn finished(&self) -> bool {
        self.exit == ExitState::Done
    }

    /// Whether the exit sequence has begun.
    pub fn exiting(&self) -> bool {
        self.exit != ExitState::Running
    }

    /// Replies ready to deliver (completions, time-outs, abandoned commands).
    pub fn take_outbox(&mut self) -> Vec<Delivery> {
        std::mem::take(&mut self.outbox)
    }

    /// The earliest moment something is due: a timer or a command's time limit.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let t = self.ctx.timers.next_deadline();
        let p = self
            .pending
            .iter()
            .filter(|p| !p.timed_out)
            .map(|p| p.deadline)
            .min();
        match (t, p) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The time limit of the command a line names (for the loop's guard against a handler
    /// that blocks it), if it names one.
    pub fn time_limit_of(&self, line: &str) -> Option<Duration> {
        let word = line.split_whitespace().next()?;
        self.table
            .iter()
            .find(|c| c.name == word)
            .map(|c| c.time_limit)
    }

    /// Commands still running, for `status`: name and seconds since they started.
    pub(crate) fn running(&self) -> Vec<(&'static str, f64)> {
        self.pending
            .iter()
            .map(|p| (p.word, p.started.elapsed().as_secs_f64()))
            .collect()
    }

    fn known(&self) -> String {
        self.table
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Runs one command line from `origin`. Returns its reply, or `None` when it answers later
    /// (the reply then comes out of [`Runner::take_outbox`]).
    pub fn submit(&mut self, line: &str, origin: Origin, caller: &Caller) -> Option<Reply> {
        if caller.privileged {
            self.ctx.log.push(Level::Cmd, line);
            self.ctx.lastcmd.set(line);
        }
        let r = self.dispatch(line, origin, caller);
        let r = match r {
            Ok(Some(text)) => Some(Reply::ok(text)),
            Ok(None) => None,
            Err(f) => {
                if caller.privileged {
                    let word = line.split_whitespace().next().unwrap_or("");
                    self.record_failure(word, &f);
                }
                Some(Reply::Error(f))
            }
        };
        self.after_callback();
        r
    }

    fn record_failure(&self, word: &str, f: &Failure) {
        let text = format!("{word}: {}", f.text);
        self.ctx.lasterror.set(&text);
        self.ctx.log.error(text);
    }

    fn dispatch(
        &mut self,
        line: &str,
        origin: Origin,
        caller: &Caller,
    ) -> Result<Option<String>, Failure> {
        let words = tokenize(line).map_err(|e| Failure::new(ErrorKind::BadRequest, e))?;
        let Some((word, args)) = words.split_first() else {
            return Err(Failure::new(ErrorKind::BadRequest, "empty command"));
        };
        if word.starts_with('@') {
            // The first protocol's reply tokens: replies could be aimed at any FIFO, so they
            // are gone; the line is not run.
            return Err(Failure::new(
                ErrorKind::BadRequest,
                format!(
                    "reply tokens ({word}) are not accepted: a command with an answer goes over the control socket {}.sock (shvar cmd does this); the line was not run",
                    self.ctx.name
                ),
            ));
        }
        let Some(i) = self.table.iter().position(|c| c.name == word) else {
            return Err(Failure::new(
                ErrorKind::Unknown,
                format!("unknown command '{word}'; known commands: {}", self.known()),
            ));
        };
        let cmd = &self.table[i];
        if cmd.access == super::table::Access::Owner && !caller.privileged {
            return Err(Failure::new(
                ErrorKind::Denied,
                format!(
                    "{} may not run '{}' on {}: only its owner, root and members of its --group may; \
                     help, get, status and events are open to every local user",
                    caller.who, cmd.name, self.ctx.name
                ),
            ));
        }
        // `exit` is never refused as busy: it abandons what still runs.
        if cmd.is_transition() && !cmd.exits {
            if self.exit != ExitState::Running {
                return Err(Failure::new(
                    ErrorKind::Busy,
                    format!("command '{}' refused: the process is exiting", cmd.name),
                ));
            }
            let busy = self
                .pending
                .iter()
                .find(|p| !p.timed_out && self.table[p.cmd].is_transition());
            if let Some(p) = busy {
                return Err(Failure::new(
                    ErrorKind::Busy,
                    format!(
                        "command '{}' refused: '{}' is still running (for {:.1} s); try again when it has answered",
                        cmd.name,
                        p.word,
                        p.started.elapsed().as_secs_f64()
                    ),
                ));
            }
        }
        check_state(cmd.name, cmd.allowed, self.ctx.state)?;
        cmd.check_args(args.len())?;
        if let Action::Builtin(Builtin::Exit) = cmd.action {
            return Ok(self.begin_exit(Some(origin)));
        }
        let outcome = self.run_action(i, args);
        self.conclude(i, origin, outcome)
    }

    /// Runs row `i`'s action and checks a deferral is consistent.
    fn run_action(&mut self, i: usize, args: &[String]) -> Result<(Done, Option<u64>), Failure> {
        self.ctx.deferred_now = None;
        let outcome: Outcome = match &self.table[i].action {
            Action::Reply(text) => Ok(Done::Text((*text).to_owned())),
            Action::Builtin(b) => {
                let b = *b;
                self.builtin(b, args).map(Done::Text)
            }
            Action::Handler(h) => {
                let h = *h;
                let (app, ctx) = (&mut self.app, &mut self.ctx);
                match catch_unwind(AssertUnwindSafe(|| h(app, ctx, args))) {
                    Ok(o) => o,
                    Err(p) => Err(Failure::new(
                        ErrorKind::Internal,
                        format!(
                            "internal error (panic: {}); the process goes on serving — restart it if it misbehaves",
                            panic_text(p)
                        ),
                    )),
                }
            }
        };
        let deferred = self.ctx.deferred_now.take();
        match outcome {
            Ok(Done::Later) if deferred.is_none() => Err(Failure::new(
                ErrorKind::Internal,
                "internal error: the handler answered later without Ctx::defer",
            )),
            Ok(d) => Ok((d, deferred)),
            Err(f) => Err(f),
        }
    }

    fn conclude(
        &mut self,
        i: usize,
        origin: Origin,
        outcome: Result<(Done, Option<u64>), Failure>,
    ) -> Result<Option<String>, Failure> {
        match outcome? {
            (Done::Text(t), _) => {
                self.apply_success(i);
                Ok(Some(t))
            }
            (Done::Later, Some(id)) => {
                let now = Instant::now();
                let c = &self.table[i];
                self.pending.push(Pending {
                    id,
                    origin,
                    word: c.name,
                    cmd: i,
                    started: now,
                    deadline: now + c.time_limit,
                    timed_out: false,
                });
                Ok(None)
            }
            (Done::Later, None) => unreachable!("checked in run_action"),
        }
    }

    /// The transition and effects of a command that succeeded.
    fn apply_success(&mut self, i: usize) {
        let c = &self.table[i];
        let (next, resets, refreshes) = (c.next, c.resets_stats, c.refreshes_stats);
        if let Some(s) = next {
            self.ctx.set_state(s);
        }
        if let Some(st) = &self.ctx.stats {
            if resets {
                st.reset();
            }
            if refreshes {
                st.update();
            }
        }
    }

    /// Starts the exit sequence: commands still running are abandoned, the command marked
    /// `before_exit` runs where allowed, then the process is done. Returns the reply for
    /// `origin` if the sequence finished at once.
    fn begin_exit(&mut self, origin: Option<Origin>) -> Option<String> {
        if self.exit != ExitState::Running {
            return Some("already exiting".to_owned());
        }
        for p in std::mem::take(&mut self.pending) {
            let text = format!("'{}' abandoned: the process is exiting", p.word);
            self.ctx.log.warn(&text);
            if !p.timed_out {
                self.outbox.push(Delivery {
                    origin: p.origin,
                    reply: Reply::error(ErrorKind::Abandoned, text),
                });
            }
        }
        let end = self
            .table
            .iter()
            .position(|c| c.before_exit && check_state(c.name, c.allowed, self.ctx.state).is_ok());
        let Some(i) = end else {
            return self.finish_exit(origin, None);
        };
        let name = self.table[i].name;
        self.ctx.exiting = true;
        self.ctx
            .log
            .push(Level::Cmd, format!("{name} (before exit)"));
        let outcome = self.run_action(i, &[]);
        match self.conclude(i, Origin::Internal, outcome) {
            Ok(Some(_)) => self.finish_exit(origin, None),
            Ok(None) => {
                let id = self.pending.last().map(|p| p.id).unwrap_or(0);
                self.exit = ExitState::Ending { end: id, origin };
                None
            }
            Err(f) => {
                self.record_failure(&format!("{name} before exit"), &f);
                self.finish_exit(origin, Some(format!("{name} failed: {}", f.text)))
            }
        }
    }

    fn finish_exit(&mut self, origin: Option<Origin>, note: Option<String>) -> Option<String> {
        self.exit = ExitState::Done;
        self.ctx.log.info("exiting");
        let text = match note {
            None => "exiting".to_owned(),
            Some(n) => format!("exiting ({n})"),
        };
        match origin {
            Some(o) if o != Origin::Internal => Some(text),
            _ => None,
        }
    }

    fn finish_exit_later(&mut self, origin: Option<Origin>, note: Option<String>) {
        if let Some(text) = self.finish_exit(origin, note) {
            if let Some(o) = origin {
                self.outbox.push(Delivery {
                    origin: o,
                    reply: Reply::ok(text),
                });
            }
        }
    }

    /// Applies the completions the daemon made and an exit it asked for.
    fn after_callback(&mut self) {
        for c in std::mem::take(&mut self.ctx.completions) {
            let Some(pi) = self.pending.iter().position(|p| p.id == c.id) else {
                self.ctx.log.warn(format!(
                    "a late answer to an abandoned command arrived: {}",
                    Reply::from(c.result).text()
                ));
                continue;
            };
            let p = self.pending.remove(pi);
            let ok = c.result.is_ok();
            match &c.result {
                Ok(text) => {
                    self.apply_success(p.cmd);
                    if p.timed_out {
                        self.ctx.log.info(format!(
                            "'{}' finished after its time limit ({:.1} s): {text}",
                            p.word,
                            p.started.elapsed().as_secs_f64()
                        ));
                    }
                }
                Err(f) => self.record_failure(p.word, f),
            }
            if let ExitState::Ending { end, origin } = self.exit {
                if end == p.id {
                    let note = (!ok).then(|| {
                        format!(
                            "{} failed: {}",
                            p.word,
                            Reply::from(c.result.clone()).text()
                        )
                    });
                    self.finish_exit_later(origin, note);
                    continue;
                }
            }
            if !p.timed_out {
                self.outbox.push(Delivery {
                    origin: p.origin,
                    reply: c.result.into(),
                });
            }
        }
        if self.ctx.exit_requested {
            self.ctx.exit_requested = false;
            self.begin_exit(None);
        }
    }

    /// Fires what is due at `now`: timers (the daemon's, the heartbeat, the tick) and the time
    /// limits of commands still running.
    pub fn advance(&mut self, now: Instant) {
        let mut fired = 0;
        while let Some((id, owner)) = self.ctx.timers.pop_due(now) {
            match owner {
                Owner::Heartbeat => self.heartbeat(),
                Owner::Tick => self.callback("tick", |a, c| a.tick(c)),
                Owner::App => self.callback("timer", |a, c| a.timer(c, id)),
            }
            fired += 1;
            if fired > 10_000 {
                break; // let the loop look at its descriptors between bursts
            }
        }
        let mut timed_out = Vec::new();
        for p in &mut self.pending {
            if !p.timed_out && now >= p.deadline {
                p.timed_out = true;
                timed_out.push((p.id, p.origin, p.word, p.deadline - p.started));
            }
        }
        for (id, origin, word, limit) in timed_out {
            let text = format!(
                "'{word}' did not finish within its time limit of {:.1} s; it goes on, and its outcome will be in the event log and lasterror",
                limit.as_secs_f64()
            );
            self.record_failure(word, &Failure::new(ErrorKind::Timeout, text.clone()));
            if let ExitState::Ending { end, origin: eo } = self.exit {
                if end == id {
                    self.finish_exit_later(eo, Some(format!("{word} did not finish in time")));
                    continue;
                }
            }
            self.outbox.push(Delivery {
                origin,
                reply: Reply::error(ErrorKind::Timeout, text),
            });
        }
        self.after_callback();
    }

    fn heartbeat(&mut self) {
        self.ctx.heartbeat.add(1);
        self.ctx.region.beat();
        self.ctx.notify.watchdog_tick();
    }

    /// Runs a daemon callback; a panic in it is logged and the process goes on.
    fn callback(&mut self, what: &str, f: impl FnOnce(&mut A, &mut Ctx)) {
        let (app, ctx) = (&mut self.app, &mut self.ctx);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(app, ctx))) {
            self.ctx.error(&format!(
                "internal error in the daemon's {what} (panic: {}); the process goes on",
                panic_text(p)
            ));
        }
    }

    /// A registered descriptor is ready.
    pub fn ready(&mut self, token: FdToken, r: Readiness) {
        self.callback("descriptor callback", |a, c| a.ready(c, token, r));
        self.after_callback();
    }

    /// A timer of the daemon fired (for tests that fire timers by hand).
    pub fn fire_timer(&mut self, id: TimerId) {
        self.callback("timer", |a, c| a.timer(c, id));
        self.after_callback();
    }

    /// Runs the jobs the daemon's threads posted.
    pub fn run_mailbox(&mut self) {
        for _ in 0..4096 {
            let Ok(job) = self.mailbox.try_recv() else {
                break;
            };
            self.callback("mailbox job", job);
        }
        self.after_callback();
    }

    /// Whether jobs are waiting in the mailbox.
    pub fn mailbox_pending(&self) -> bool {
        !self.mailbox.is_empty()
    }

    /// A signal arrived.
    pub fn signal(&mut self, sig: Signal) {
        match sig {
            Signal::SIGTERM | Signal::SIGINT => {
                self.ctx
                    .log
                    .info(format!("{} received: exiting", sig.as_str()));
                self.begin_exit(None);
            }
            Signal::SIGHUP => {
                let mut action = Hangup::Default;
                self.callback("SIGHUP handler", |a, c| action = a.hangup(c));
                match action {
                    Hangup::Handled => {}
                    Hangup::Exit => {
                        self.ctx.log.info("SIGHUP received: exiting");
                        self.begin_exit(None);
                    }
                    Hangup::Default => self.default_hangup(),
                }
            }
            other => self.callback("signal handler", |a, c| a.signal(c, other)),
        }
        self.after_callback();
    }

    fn default_hangup(&mut self) {
        if let Some(path) = self.ctx.log_file.clone() {
            match super::lifecycle::redirect_output(&path) {
                Ok(()) => self
                    .ctx
                    .log
                    .info(format!("SIGHUP received: log file {} re-opened", path.display())),
                Err(e) => self.ctx.error(&format!(
                    "SIGHUP received: cannot re-open the log file: {e}; still writing to the old one"
                )),
            }
        } else if nix::unistd::isatty(2).unwrap_or(false) {
            self.ctx
                .log
                .info("SIGHUP received: the terminal is gone: exiting");
            self.begin_exit(None);
        } else {
            self.ctx
                .log
                .info("SIGHUP received: no log file to re-open (logging to stderr); going on");
        }
    }

    /// Bad input on the control FIFO or socket: counted, logged, in `lasterror`.
    pub fn bad_input(&mut self, source: &str, why: &str) {
        self.ctx.ctlerrors.add(1);
        self.ctx.error(&format!("{source}: {why}"));
    }

    /// Calls the daemon's shutdown.
    pub(crate) fn shutdown(&mut self) {
        self.ctx.notify.stopping();
        self.callback("shutdown", |a, c| a.shutdown(c));
        self.ctx.region.mark_stopped();
        self.ctx.log.info("exited");
    }
}
