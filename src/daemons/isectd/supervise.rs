//! The workers' processes: starting them (with their log, the rendezvous in the environment
//! and `NOTIFY_SOCKET`), noticing their death at once (SIGCHLD and `waitpid` for children, the
//! pidfd of an adopted worker), restarting those that die unasked, stopping (SIGTERM, or a
//! framework process's `exit`, then SIGKILL after the grace), and telling when one is ready.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::model::{exit_text, Host};
use super::notify::Note;
use super::{Due, Isectd, PendingStop, Running, Watch};
use crate::control::client;
use crate::framework::{Ctx, Deferred};

/// Longest the readiness poll waits between two looks.
const READY_POLL_MAX: Duration = Duration::from_millis(500);
/// How long a program that never says it is ready is looked at for a framework region.
const READY_POLL_FOR: Duration = Duration::from_secs(60);

impl Isectd {
    /// Starts worker `id`'s process now; `why` goes to the events.
    pub(super) fn start_worker(&mut self, ctx: &mut Ctx, id: u32, why: &str) -> Result<(), String> {
        let Some(w) = self.workers.get_mut(&id) else {
            return Err(format!("no worker {id}"));
        };
        w.wanted = true;
        w.failed = false;
        if let Some(t) = w.restart_timer.take() {
            ctx.cancel_timer(t);
        }
        if w.proc.is_some() {
            return Ok(());
        }
        let r = self.spawn(ctx, id);
        match &r {
            Ok(pid) => {
                let w = &self.workers[&id];
                let text = if *pid == 0 {
                    format!(
                        "worker {id} ({}) to be started on {} by its isdexecd: {why}",
                        w.spec.service, w.spec.host
                    )
                } else {
                    format!(
                        "worker {id} ({}) started as pid {pid}: {why}",
                        w.spec.service
                    )
                };
                self.event(ctx, text);
            }
            Err(e) => {
                let w = self.workers.get_mut(&id).expect("checked");
                w.failed = true;
                w.v.exit.set("could not start");
                w.v.stderr.set(e);
                ctx.error(&format!("worker {id}: {e}"));
                self.events.push(format!("worker {id}: {e}"));
            }
        }
        self.dirty = true;
        r.map(|_| ())
    }

    fn spawn(&mut self, ctx: &mut Ctx, id: u32) -> Result<i32, String> {
        let w = &self.workers[&id];
        if let Host::Remote { addr } = super::model::parse_host(&w.spec.host)? {
            return self.remote_run(ctx, id, &addr);
        }
        let log = self
            .home
            .open_log(id)
            .map_err(|e| format!("cannot open its log: {e}"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot open its log: {e}"))?;
        let mut cmd = Command::new(&w.spec.path);
        cmd.env_remove(super::stream::SOCKET_ENV)
            .env_remove(super::stream::BUSY_POLL_ENV);
        let mut busy_poll_us = None;
        let token = if w.spec.kind == super::model::Kind::Tp {
            let b = self.broker.as_ref().expect("the broker runs");
            let tok =
                super::exec_proto::nonce().map_err(|e| format!("cannot make a token: {e}"))?;
            cmd.args([
                b.worker_host.clone(),
                b.port.to_string(),
                id.to_string(),
                tok.clone(),
            ]);
            // On this machine the worker may log in on the Unix socket instead (the crate's
            // worker library does): no TCP stack on the worker's half of each transaction.
            if let Some(p) = b.unix_path() {
                cmd.env(super::stream::SOCKET_ENV, p);
            }
            let us = b.worker_busy_poll_us();
            if us > 0 {
                cmd.env(super::stream::BUSY_POLL_ENV, us.to_string());
            }
            busy_poll_us = Some(us);
            Some(tok)
        } else {
            None
        };
        cmd.args(w.spec.args_for(id))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env("NOTIFY_SOCKET", self.notify.path())
            .env("SHVAR_DIR", ctx.dir().path())
            .env("ISD_NAME", ctx.name().as_str())
            .env("ISD_WORKER", id.to_string())
            .env("ISD_SERVICE", &w.spec.service)
            // The framework records it in the worker's `supervisor` variable: tools then send
            // this command to isectd instead of starting the worker themselves.
            .env(
                "DAQPROC_SUPERVISOR",
                format!("{}: start {}", ctx.name(), w.spec.service),
            )
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", w.spec.path))?;
        let pid = child.id() as i32;
        // The child is reaped on SIGCHLD with waitpid, not through the handle.
        drop(child);
        let ticks = super::procfs::start_ticks(pid).unwrap_or(0);
        let w = self.workers.get_mut(&id).expect("checked");
        w.proc = Some(Running {
            pid,
            ticks,
            since: Instant::now(),
            watch: Watch::Child,
            busy_poll_us,
        });
        w.ready = false;
        w.token = token;
        w.fwname = None;
        w.v.fwname.set("");
        w.v.status.set("");
        let after = w.policy().ready_after_ms;
        if w.spec.kind != super::model::Kind::Tp {
            self.poll_ready(ctx, id, Duration::from_millis(2));
        }
        if after > 0 {
            let t = ctx.timer_after(Duration::from_millis(after as u64));
            self.timers.insert(t, Due::ReadyAfter(id));
            self.workers.get_mut(&id).expect("checked").ready_after = Some(t);
        }
        Ok(pid)
    }

    /// Reaps every child that ended.
    pub(super) fn reap(&mut self, ctx: &mut Ctx) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(st) => {
                    let Some(pid) = st.pid() else { continue };
                    let found = self.workers.values().find(|w| {
                        w.proc.as_ref().is_some_and(|p| {
                            p.pid == pid.as_raw() && matches!(p.watch, Watch::Child)
                        })
                    });
                    if let Some(id) = found.map(|w| w.id) {
                        self.died(ctx, id, exit_text(&st));
                    }
                }
            }
        }
    }

    /// An adopted worker's pidfd says its process ended (its status is its parent's to know).
    pub(super) fn adopted_died(&mut self, ctx: &mut Ctx, id: u32) {
        self.died(
            ctx,
            id,
            "ended (exit status unknown: adopted, not isectd's child)".into(),
        );
    }

    /// Worker `id`'s process ended with `how`: restart it, back off, or give up.
    fn died(&mut self, ctx: &mut Ctx, id: u32, how: String) {
        self.died_with(ctx, id, how, None);
    }

    /// As `died`, with the log's tail given (a remote worker's, from its isdexecd).
    pub(super) fn died_with(&mut self, ctx: &mut Ctx, id: u32, how: String, tail: Option<String>) {
        self.x_worker_gone(ctx, id);
        let tail = tail.unwrap_or_else(|| self.home.tail(id, 5).unwrap_or_default());
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(p) = w.proc.take() else { return };
        if let Watch::Pidfd { fd, token } = p.watch {
            use std::os::fd::AsRawFd;
            let _ = ctx.deregister_fd(fd.as_raw_fd());
            self.fds.remove(&token);
        }
        let up = p.since.elapsed();
        w.ready = false;
        w.busy = 0;
        w.busy_since = None;
        w.v.exit.set(&how);
        w.v.stderr.set(&tail);
        for t in [w.ready_poll.take().map(|x| x.0), w.ready_after.take()]
            .into_iter()
            .flatten()
        {
            ctx.cancel_timer(t);
        }
        let service = w.spec.service.clone();
        let what = format!(
            "worker {id} ({service}) pid {} {how} after {:.3} s",
            p.pid,
            up.as_secs_f64()
        );
        self.dirty = true;
        if let Some((t, _)) = w.stopping.take() {
            ctx.cancel_timer(t);
            self.event(ctx, format!("{what}: stopped"));
            self.stops_progress(ctx);
            return;
        }
        if !w.wanted || w.paused || w.deleted {
            let why = if w.paused { "paused" } else { "stopped" };
            self.event(ctx, format!("{what}: not restarted ({why})"));
            return;
        }
        let pol = w.policy();
        w.v.restarts.add(1);
        self.v.restarts.add(1);
        let quick = up < Duration::from_millis(pol.quick_ms.max(0) as u64);
        if !quick {
            w.backoff = super::Worker::fresh_backoff(&pol);
            self.event(ctx, format!("{what}: restarting"));
            let _ = self.start_worker(ctx, id, "restarted");
            return;
        }
        let deaths = w.backoff.failures() + 1;
        if pol.fail_after > 0 && i64::from(deaths) >= pol.fail_after {
            w.failed = true;
            w.backoff = super::Worker::fresh_backoff(&pol);
            let text = format!(
                "{what}: FAILED after {deaths} deaths within {} ms of start; last: {how}; its log ends: {}",
                pol.quick_ms,
                tail.replace('\n', " | ")
            );
            ctx.error(&text);
            self.events.push(text);
            return;
        }
        let wait = w.backoff.failed();
        let t = ctx.timer_after(wait);
        w.restart_timer = Some(t);
        self.timers.insert(t, Due::Restart(id));
        self.event(
            ctx,
            format!(
                "{what}: quick death {deaths} in a row, restarting in {} ms (backoff)",
                wait.as_millis()
            ),
        );
    }

    pub(super) fn restart_due(&mut self, ctx: &mut Ctx, id: u32) {
        if let Some(w) = self.workers.get_mut(&id) {
            w.restart_timer = None;
            if w.wanted && !w.paused && !w.failed && w.proc.is_none() {
                let _ = self.start_worker(ctx, id, "restarted after backoff");
            }
        }
    }

    /// A transaction worker closed its connection: if its process has not ended by itself a
    /// second later, it gets SIGTERM; either way it is restarted as after any death.
    pub(super) fn restart_worker(&mut self, ctx: &mut Ctx, id: u32) {
        let t = ctx.timer_after(Duration::from_secs(1));
        self.timers.insert(t, Due::Closed(id));
    }

    pub(super) fn closed_due(&mut self, ctx: &mut Ctx, id: u32) {
        let still = self
            .workers
            .get(&id)
            .is_some_and(|w| w.proc.is_some() && w.conn.is_none() && w.stopping.is_none());
        if still {
            self.event(
                ctx,
                format!("worker {id} still runs after closing its connection: SIGTERM"),
            );
            self.signal(ctx, id, Signal::SIGTERM);
        }
    }

    /// Sends `sig` to worker `id`'s process and its process group.
    fn signal(&mut self, ctx: &mut Ctx, id: u32, sig: Signal) {
        let Some(p) = self.workers.get(&id).and_then(|w| w.proc.as_ref()) else {
            return;
        };
        match &p.watch {
            Watch::Child => {
                // Still our unreaped child: the pid cannot have been reused.
                let _ = kill(Pid::from_raw(-p.pid), sig);
                let _ = kill(Pid::from_raw(p.pid), sig);
            }
            Watch::Pidfd { fd, .. } => {
                if let Err(e) = shvars::sys::pidfd_send_signal(fd, sig as i32) {
                    ctx.log()
                        .warn(format!("worker {id}: {} not delivered: {e}", sig.as_str()));
                } else if super::procfs::same_process(p.pid, p.ticks) {
                    let _ = kill(Pid::from_raw(-p.pid), sig);
                }
            }
            Watch::Remote => self.remote_signal(ctx, id, sig as i32),
        }
    }

    /// Stops worker `id`'s process (it is not restarted): a framework process is sent `exit`,
    /// any other SIGTERM; SIGKILL follows after the grace.
    pub(super) fn stop_worker(&mut self, ctx: &mut Ctx, id: u32) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.wanted = false;
        w.failed = false;
        if let Some(t) = w.restart_timer.take() {
            ctx.cancel_timer(t);
        }
        self.dirty = true;
        if w.proc.is_none() || w.stopping.is_some() {
            return;
        }
        let grace = Duration::from_millis(w.policy().grace_ms.max(0) as u64);
        let t = ctx.timer_after(grace);
        w.stopping = Some((t, false));
        self.timers.insert(t, Due::Grace(id));
        let local = !matches!(w.proc.as_ref().map(|p| &p.watch), Some(Watch::Remote));
        match w.fwname.clone().filter(|_| local) {
            Some(name) => {
                let (dir, mb) = (ctx.dir().clone(), ctx.mailbox::<Isectd>());
                let pid = w.proc.as_ref().map_or(0, |p| p.pid);
                let shown = name.to_string();
                std::thread::spawn(move || {
                    if let Err(e) = client::send(&dir, &name, "exit", grace) {
                        mb.post(move |d, ctx| {
                            let still = d
                                .workers
                                .get(&id)
                                .and_then(|w| w.proc.as_ref())
                                .map(|p| p.pid);
                            if still == Some(pid) {
                                ctx.log().warn(format!(
                                    "worker {id}: 'exit' not taken ({e}): SIGTERM instead"
                                ));
                                d.signal(ctx, id, Signal::SIGTERM);
                            }
                        });
                    }
                });
                self.event(
                    ctx,
                    format!("worker {id}: stopping ('exit' sent to {shown})"),
                );
            }
            None => {
                self.signal(ctx, id, Signal::SIGTERM);
                self.event(ctx, format!("worker {id}: stopping (SIGTERM)"));
            }
        }
    }

    pub(super) fn grace_over(&mut self, ctx: &mut Ctx, id: u32) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let Some((_, killed)) = w.stopping else {
            return;
        };
        if killed || w.proc.is_none() {
            return;
        }
        // Another grace, in case SIGKILL takes its time (a process in uninterruptible sleep).
        let t = ctx.timer_after(Duration::from_secs(1));
        w.stopping = Some((t, true));
        self.timers.insert(t, Due::Grace(id));
        self.signal(ctx, id, Signal::SIGKILL);
        self.event(
            ctx,
            format!("worker {id}: still running after its grace: SIGKILL"),
        );
    }

    /// Waits for `workers` to have no process, then answers `reply` with `text`.
    pub(super) fn wait_stopped(
        &mut self,
        ctx: &mut Ctx,
        reply: Deferred,
        workers: Vec<u32>,
        text: &'static str,
    ) {
        self.stops.push(PendingStop {
            reply,
            workers,
            text,
        });
        self.stops_progress(ctx);
    }

    fn stops_progress(&mut self, ctx: &mut Ctx) {
        let mut i = 0;
        while i < self.stops.len() {
            let done = self.stops[i]
                .workers
                .iter()
                .all(|id| self.workers.get(id).is_none_or(|w| w.proc.is_none()));
            if done {
                let s = self.stops.remove(i);
                ctx.complete(s.reply, Ok(s.text.to_owned()));
            } else {
                i += 1;
            }
        }
    }

    /// Looks for readiness again after `period` (doubling up to half a second).
    pub(super) fn poll_ready(&mut self, ctx: &mut Ctx, id: u32, period: Duration) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if let Some((t, _)) = w.ready_poll.take() {
            ctx.cancel_timer(t);
        }
        let t = ctx.timer_after(period);
        w.ready_poll = Some((t, period));
        self.timers.insert(t, Due::ReadyPoll(id));
    }

    pub(super) fn ready_poll(&mut self, ctx: &mut Ctx, id: u32) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let Some((_, period)) = w.ready_poll.take() else {
            return;
        };
        if w.proc.is_none() || w.ready {
            return;
        }
        if self.check_framework(ctx, id) {
            return;
        }
        let w = &self.workers[&id];
        if w.proc
            .as_ref()
            .is_some_and(|p| p.since.elapsed() < READY_POLL_FOR)
        {
            self.poll_ready(ctx, id, (period * 2).min(READY_POLL_MAX));
        }
    }

    /// Whether worker `id` is a framework process that serves: its region is published and
    /// its control socket answers. If so it is ready.
    fn check_framework(&mut self, ctx: &mut Ctx, id: u32) -> bool {
        let Some(pid) = self.workers[&id]
            .proc
            .as_ref()
            .filter(|p| !matches!(p.watch, Watch::Remote))
            .map(|p| p.pid)
        else {
            return false;
        };
        let Some(name) = super::procfs::framework_name(ctx.dir(), pid) else {
            return false;
        };
        if client::Connection::open(ctx.dir(), &name).is_err() {
            return false;
        }
        let w = self.workers.get_mut(&id).expect("checked");
        w.v.fwname.set(name.as_str());
        w.fwname = Some(name.clone());
        self.set_ready(ctx, id, &format!("framework process {name} serves"));
        true
    }

    pub(super) fn set_ready(&mut self, ctx: &mut Ctx, id: u32, why: &str) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if w.ready || w.proc.is_none() {
            return;
        }
        w.ready = true;
        for t in [w.ready_poll.take().map(|x| x.0), w.ready_after.take()]
            .into_iter()
            .flatten()
        {
            ctx.cancel_timer(t);
        }
        let text = format!("worker {id} ({}) ready: {why}", w.spec.service);
        self.dirty = true;
        self.event(ctx, text);
    }

    pub(super) fn ready_after(&mut self, ctx: &mut Ctx, id: u32) {
        if let Some(w) = self.workers.get_mut(&id) {
            w.ready_after = None;
            let ms = w.policy().ready_after_ms;
            self.set_ready(ctx, id, &format!("up for {ms} ms"));
        }
    }

    /// A notification on the notify socket.
    pub(super) fn notified(&mut self, ctx: &mut Ctx, n: &Note) {
        let Some(id) = self
            .workers
            .values()
            .find(|w| w.proc.as_ref().is_some_and(|p| p.pid == n.pid))
            .map(|w| w.id)
        else {
            ctx.log().warn(format!(
                "notification from pid {} which is no worker: ignored",
                n.pid
            ));
            return;
        };
        if let Some(s) = &n.status {
            self.workers[&id].v.status.set(s);
        }
        if n.ready && !self.check_framework(ctx, id) {
            self.set_ready(ctx, id, "READY=1");
        }
    }
}
