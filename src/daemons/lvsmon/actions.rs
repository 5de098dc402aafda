//! What an edge sets off, on the main thread: the notify command (keepalived's notify: once per
//! edge, the check's name, new state and reason in its environment) and the LVS table change
//! (`ipvsadm`, one at a time and in order, so an add and the remove after it never race).
//! Children are reaped on SIGCHLD; one that runs past its time limit is killed.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shvars::region::IntVar;

use crate::framework::eventlog::EventLog;

/// How long a notify command or ipvsadm may run before it is killed.
pub const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// One edge, as the actions see it.
#[derive(Debug, Clone)]
pub struct EdgeInfo {
    /// The check.
    pub check: String,
    /// Its kind (`http`, ...).
    pub kind: &'static str,
    /// What it probes.
    pub target: String,
    /// The state before.
    pub old: &'static str,
    /// The state now.
    pub new: &'static str,
    /// The reason (empty for a success).
    pub reason: String,
    /// Failures so far.
    pub fails: u64,
    /// When (Unix seconds).
    pub since: u64,
}

#[derive(Debug)]
struct Running {
    what: String,
    child: Child,
    started: Instant,
}

/// The children the edges started.
#[derive(Debug)]
pub struct Actions {
    process: String,
    ipvsadm: PathBuf,
    notifies: Vec<Running>,
    ipvs_queue: VecDeque<(String, Vec<String>)>,
    ipvs_running: Option<Running>,
    /// Counts notify commands that could not start, failed or were killed.
    pub notify_failures: IntVar,
    /// Counts ipvsadm runs that could not start, failed or were killed.
    pub ipvs_failures: IntVar,
    /// Counts notify commands started.
    pub notifications: IntVar,
}

impl Actions {
    /// Actions of process `process` (its name goes in `LVSMON_PROCESS`).
    pub fn new(
        process: &str,
        notify_failures: IntVar,
        ipvs_failures: IntVar,
        notifications: IntVar,
    ) -> Actions {
        Actions {
            process: process.to_owned(),
            ipvsadm: PathBuf::from("ipvsadm"),
            notifies: Vec::new(),
            ipvs_queue: VecDeque::new(),
            ipvs_running: None,
            notify_failures,
            ipvs_failures,
            notifications,
        }
    }

    /// The ipvsadm program (from the file).
    pub fn set_ipvsadm(&mut self, p: PathBuf) {
        self.ipvsadm = p;
    }

    /// Runs `argv` for edge `e`, with the edge in its environment.
    pub fn notify(&mut self, argv: &[String], e: &EdgeInfo, log: &EventLog) {
        let Some((prog, args)) = argv.split_first() else {
            return;
        };
        let mut c = Command::new(prog);
        c.args(args)
            .stdin(Stdio::null())
            .env("LVSMON_PROCESS", &self.process)
            .env("LVSMON_CHECK", &e.check)
            .env("LVSMON_TYPE", e.kind)
            .env("LVSMON_TARGET", &e.target)
            .env("LVSMON_STATE", e.new)
            .env("LVSMON_OLD_STATE", e.old)
            .env("LVSMON_REASON", &e.reason)
            .env("LVSMON_FAILS", e.fails.to_string())
            .env("LVSMON_SINCE", e.since.to_string());
        self.notifications.add(1);
        match c.spawn() {
            Ok(child) => self.notifies.push(Running {
                what: format!("notify {prog} for {} {}", e.check, e.new),
                child,
                started: Instant::now(),
            }),
            Err(err) => {
                self.notify_failures.add(1);
                log.error(format!(
                    "check {}: notify command {prog} could not start: {err}",
                    e.check
                ));
            }
        }
    }

    /// Queues an ipvsadm run for check `check`.
    pub fn ipvs(&mut self, check: &str, args: Vec<String>, log: &EventLog) {
        self.ipvs_queue.push_back((check.to_owned(), args));
        self.next_ipvs(log);
    }

    fn next_ipvs(&mut self, log: &EventLog) {
        while self.ipvs_running.is_none() {
            let Some((check, args)) = self.ipvs_queue.pop_front() else {
                return;
            };
            let what = format!(
                "check {check}: {} {}",
                self.ipvsadm.display(),
                args.join(" ")
            );
            match Command::new(&self.ipvsadm)
                .args(&args)
                .stdin(Stdio::null())
                .spawn()
            {
                Ok(child) => {
                    log.info(&what);
                    self.ipvs_running = Some(Running {
                        what,
                        child,
                        started: Instant::now(),
                    });
                }
                Err(err) => {
                    self.ipvs_failures.add(1);
                    log.error(format!("{what}: could not start: {err}"));
                }
            }
        }
    }

    /// Reaps finished children (on SIGCHLD and every tick) and kills those past the limit.
    pub fn reap(&mut self, log: &EventLog) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.notifies.len() {
            match finished(&mut self.notifies[i], now, log) {
                Some(ok) => {
                    if !ok {
                        self.notify_failures.add(1);
                    }
                    self.notifies.swap_remove(i);
                }
                None => i += 1,
            }
        }
        if let Some(r) = &mut self.ipvs_running {
            if let Some(ok) = finished(r, now, log) {
                if !ok {
                    self.ipvs_failures.add(1);
                }
                self.ipvs_running = None;
                self.next_ipvs(log);
            }
        }
    }

    /// Children still running.
    pub fn running(&self) -> usize {
        self.notifies.len() + usize::from(self.ipvs_running.is_some())
    }

    /// Waits (a little) for the children at exit, so that the last edges' actions finish.
    pub fn drain(&mut self, log: &EventLog, within: Duration) {
        let until = Instant::now() + within;
        while (self.running() > 0 || !self.ipvs_queue.is_empty()) && Instant::now() < until {
            self.reap(log);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// `Some(success)` once `r` has ended (killed if past the limit).
fn finished(r: &mut Running, now: Instant, log: &EventLog) -> Option<bool> {
    match r.child.try_wait() {
        Ok(Some(st)) if st.success() => Some(true),
        Ok(Some(st)) => {
            log.warn(format!("{} failed: {st}", r.what));
            Some(false)
        }
        Ok(None) if now.duration_since(r.started) > CHILD_LIMIT => {
            let _ = r.child.kill();
            let _ = r.child.wait();
            log.error(format!(
                "{} ran past {} s: killed",
                r.what,
                CHILD_LIMIT.as_secs()
            ));
            Some(false)
        }
        Ok(None) => None,
        Err(e) => {
            log.error(format!("{}: cannot wait for it: {e}", r.what));
            Some(false)
        }
    }
}
