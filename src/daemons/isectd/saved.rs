//! The saved state `DIR/NAME.isd/state.json`: isectd's configuration and its workers'
//! identities, written atomically after every change, so that a new isectd of the same name
//! (after `kill -9`, `halt`, a crash) adopts the workers still running and starts the missing
//! ones. A clean `exit` stops every worker and removes it.
//!
//! The identity of a process is its pid *and* its start time (clock ticks since boot, field 22
//! of `/proc/PID/stat`): a pid reused by another process since does not match.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shvars::ProcName;

use super::model::WorkerSpec;
use super::vars::Policy;
use super::{FdUse, Isectd, Running, Watch};
use crate::framework::{BoxError, Ctx, Interest};

/// The file's name in isectd's directory.
pub const FILE: &str = "state.json";

/// Format version.
const VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Services in configuration order.
    pub services: Vec<SavedService>,
    /// Workers by id.
    pub workers: Vec<SavedWorker>,
    /// The next worker id.
    pub next_wid: u32,
    /// `config events N`.
    pub num_events: i64,
    /// `buckets NUM SECS`.
    pub buckets: (i64, i64),
}

/// A service.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedService {
    /// Its name.
    pub name: String,
    /// Its place in `send all`.
    pub order: i64,
    /// Whether it was started.
    pub started: bool,
}

/// A worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedWorker {
    /// Its id.
    pub id: u32,
    /// What it runs.
    pub spec: WorkerSpec,
    /// Its policy.
    pub policy: Policy,
    /// It should run.
    pub wanted: bool,
    /// It is paused.
    pub paused: bool,
    /// It gave up.
    pub failed: bool,
    /// Restarts so far.
    pub restarts: i64,
    /// Its process, if one ran.
    pub proc: Option<SavedProc>,
}

/// A worker's process.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedProc {
    /// Its pid.
    pub pid: i32,
    /// Its start time in clock ticks since boot.
    pub ticks: u64,
    /// Whether it was ready.
    pub ready: bool,
    /// Its framework name, if recognised.
    pub fwname: Option<String>,
}

impl Isectd {
    /// The state as it is now.
    fn snapshot(&self) -> State {
        State {
            version: VERSION,
            services: self
                .services
                .iter()
                .map(|s| SavedService {
                    name: s.name.clone(),
                    order: s.v.order.get(),
                    started: s.started,
                })
                .collect(),
            workers: self
                .live_workers()
                .map(|w| SavedWorker {
                    id: w.id,
                    spec: w.spec.clone(),
                    policy: w.policy(),
                    wanted: w.wanted,
                    paused: w.paused,
                    failed: w.failed,
                    restarts: w.v.restarts.get(),
                    proc: w
                        .proc
                        .as_ref()
                        .filter(|p| !matches!(p.watch, Watch::Remote))
                        .map(|p| SavedProc {
                            pid: p.pid,
                            ticks: p.ticks,
                            ready: w.ready,
                            fwname: w.fwname.as_ref().map(ToString::to_string),
                        }),
                })
                .collect(),
            next_wid: self.next_wid,
            num_events: self.v.num_events.get(),
            buckets: (self.v.num_buckets.get(), self.v.bucket_secs.get()),
        }
    }

    /// Writes the saved state.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub(super) fn save(&self) -> std::io::Result<()> {
        let data = serde_json::to_vec_pretty(&self.snapshot()).map_err(std::io::Error::other)?;
        self.home.write_atomic(FILE, &data)
    }

    /// Reads a predecessor's saved state, if there is one, and adopts it: services and workers
    /// configured again, running workers adopted (watched through pidfds), missing ones started.
    /// Returns whether there was one.
    ///
    /// # Errors
    /// If the file is unreadable or damaged (the message says how to start afresh).
    pub(super) fn restore(&mut self, ctx: &mut Ctx) -> Result<bool, BoxError> {
        let Some(data) = self.home.read(FILE)? else {
            return Ok(false);
        };
        let path = self.home.file(FILE);
        let st: State = serde_json::from_slice(&data).map_err(|e| {
            format!(
                "{}: damaged saved state ({e}): move it away, or start with --fresh",
                path.display()
            )
        })?;
        if st.version != VERSION {
            return Err(format!(
                "{}: saved state of format {} (this isectd reads {VERSION}): start with --fresh",
                path.display(),
                st.version
            )
            .into());
        }
        self.v.num_events.set(st.num_events.clamp(0, 1_000_000));
        self.events.resize(self.v.num_events.get() as usize);
        self.set_buckets(st.buckets.0, st.buckets.1);
        for s in &st.services {
            self.add_service(ctx, &s.name, Some(s.order))?;
            if let Some(sv) = self.service_mut(&s.name) {
                sv.started = s.started;
            }
        }
        let (mut adopted, mut gone) = (0, 0);
        for sw in st.workers {
            if self.service(&sw.spec.service).is_none() {
                continue;
            }
            self.add_worker(ctx, sw.id, sw.spec, &sw.policy)?;
            let w = self.workers.get_mut(&sw.id).expect("just added");
            w.wanted = sw.wanted;
            w.paused = sw.paused;
            w.failed = sw.failed;
            w.v.restarts.set(sw.restarts);
            let Some(p) = sw.proc else { continue };
            if !super::procfs::same_process(p.pid, p.ticks) {
                gone += 1;
                continue;
            }
            let fd = match shvars::sys::pidfd_open(p.pid) {
                Ok(fd) => fd,
                Err(e) => {
                    ctx.error(&format!(
                        "worker {}: cannot watch pid {} ({e}): not adopted",
                        sw.id, p.pid
                    ));
                    continue;
                }
            };
            let token = ctx.register_fd(fd.as_raw_fd(), Interest::Read)?;
            self.fds.insert(token, FdUse::Pidfd(sw.id));
            let w = self.workers.get_mut(&sw.id).expect("just added");
            w.fwname = p.fwname.as_deref().and_then(|n| ProcName::new(n).ok());
            w.ready = p.ready;
            w.proc = Some(Running {
                pid: p.pid,
                ticks: p.ticks,
                since: Instant::now()
                    .checked_sub(super::procfs::age(p.ticks))
                    .unwrap_or_else(Instant::now),
                watch: Watch::Pidfd { fd, token },
                busy_poll_us: None,
            });
            adopted += 1;
            if !p.ready {
                self.poll_ready(ctx, sw.id, Duration::from_millis(2));
            }
        }
        self.next_wid = self.next_wid.max(st.next_wid);
        let text = format!(
            "adopted the saved state of the previous isectd: {} services, {} workers, {adopted} processes still running adopted, {gone} gone",
            self.services.len(),
            self.workers.len()
        );
        self.event(ctx, text);
        let missing: Vec<u32> = self
            .workers
            .values()
            .filter(|w| w.proc.is_none() && w.wanted && !w.paused && !w.failed)
            .map(|w| w.id)
            .collect();
        for id in missing {
            let _ = self.start_worker(ctx, id, "started again after adoption");
        }
        self.dirty = true;
        Ok(true)
    }
}
