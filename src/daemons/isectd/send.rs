//! `send WID|SERVICE|all COMMAND...`: run control through isectd (KLOE's command server). The
//! command goes to each worker's control socket (a framework process); the workers of one
//! service are sent it at once, each from a thread of its own, and the next service's only once
//! every worker of this one answered (or did not in time). `send all` goes through the services
//! in their order (`service.NAME.order`), and in reverse for the commands that take the system
//! down ([`super::model::DOWN_COMMANDS`]). The reply has one line per worker; it is an error
//! when any worker failed or did not answer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::model::DOWN_COMMANDS;
use super::Isectd;
use crate::control::client;
use crate::control::reply::{Failure, Reply};
use crate::framework::{Ctx, Deferred};

/// One `send` in progress.
#[derive(Debug)]
struct Job {
    id: u64,
    reply: Deferred,
    line: String,
    groups: VecDeque<Vec<u32>>,
    waiting: Vec<u32>,
    /// (group index, worker id, line): sorted so at the end.
    lines: Vec<(usize, u32, String)>,
    group: usize,
    failed: bool,
}

/// The sends in progress.
#[derive(Debug, Default)]
pub struct Sends {
    jobs: Vec<Job>,
    next: u64,
}

impl Isectd {
    /// Starts a send of `line` to `groups` (each a list of worker ids), answering `reply`.
    pub(super) fn start_send(
        &mut self,
        ctx: &mut Ctx,
        reply: Deferred,
        line: String,
        mut groups: Vec<Vec<u32>>,
    ) {
        let word = line.split_whitespace().next().unwrap_or("").to_owned();
        if DOWN_COMMANDS.contains(&word.as_str()) {
            groups.reverse();
        }
        self.sends.next += 1;
        let id = self.sends.next;
        self.event(ctx, format!("send '{line}' to {} service(s)", groups.len()));
        self.sends.jobs.push(Job {
            id,
            reply,
            line,
            groups: groups.into(),
            waiting: Vec::new(),
            lines: Vec::new(),
            group: 0,
            failed: false,
        });
        self.send_next_group(ctx, id);
    }

    fn send_next_group(&mut self, ctx: &mut Ctx, job: u64) {
        loop {
            let Some(j) = self.sends.jobs.iter_mut().find(|j| j.id == job) else {
                return;
            };
            if !j.waiting.is_empty() {
                return;
            }
            let Some(group) = j.groups.pop_front() else {
                let j = self.sends.jobs.remove(
                    self.sends
                        .jobs
                        .iter()
                        .position(|j| j.id == job)
                        .expect("found above"),
                );
                let mut lines = j.lines;
                lines.sort_by_key(|(g, w, _)| (*g, *w));
                let text = lines
                    .into_iter()
                    .map(|(_, _, l)| l)
                    .collect::<Vec<_>>()
                    .join("\n");
                ctx.complete(
                    j.reply,
                    if j.failed {
                        Err(Failure::failed(text))
                    } else {
                        Ok(text)
                    },
                );
                return;
            };
            j.group += 1;
            let g = j.group;
            let line = j.line.clone();
            let exit = line.split_whitespace().next() == Some("exit");
            let timeout = Duration::from_millis(self.v.send_timeout_ms.get().max(10) as u64);
            for wid in group {
                let Some(w) = self.workers.get_mut(&wid) else {
                    continue;
                };
                let who = format!("worker {wid} ({})", w.spec.service);
                if w.proc.is_none() {
                    let st = w.state().label();
                    let j = self.job(job);
                    j.lines.push((g, wid, format!("{who}: not running ({st})")));
                    j.failed = true;
                    continue;
                }
                let remote = matches!(
                    w.proc.as_ref().map(|p| &p.watch),
                    Some(super::Watch::Remote)
                );
                if w.fwname.is_none() && !remote {
                    if let Some(pid) = w.proc.as_ref().map(|p| p.pid) {
                        if let Some(n) = super::procfs::framework_name(ctx.dir(), pid) {
                            w.v.fwname.set(n.as_str());
                            w.fwname = Some(n);
                        }
                    }
                }
                if w.conn.is_some() {
                    w.busy += 1;
                    w.busy_since.get_or_insert_with(Instant::now);
                    let who = format!("worker {wid} ({})", w.spec.service);
                    self.job(job).waiting.push(wid);
                    self.x_controls
                        .insert(wid, (job, who.clone(), Instant::now()));
                    let t = ctx.timer_after(timeout);
                    self.timers.insert(t, super::Due::XControl(wid));
                    if !self.x_control(wid, &line) {
                        self.x_controls.remove(&wid);
                        let e = crate::control::client::ClientError::BadFile(
                            "its connection failed".into(),
                        );
                        self.send_answered(ctx, job, wid, who, Err(e), Duration::ZERO);
                    }
                    continue;
                }
                let Some(name) = w.fwname.clone() else {
                    let path = w.spec.path.clone();
                    let j = self.job(job);
                    j.lines.push((
                        g,
                        wid,
                        format!(
                            "{who}: cannot send it commands: {path} is not a framework process (it holds no region of its own)"
                        ),
                    ));
                    j.failed = true;
                    continue;
                };
                if exit {
                    // Asked to exit: it must not be restarted, as after `stop`.
                    w.wanted = false;
                    self.dirty = true;
                }
                w.busy += 1;
                w.busy_since.get_or_insert_with(Instant::now);
                let who = format!("worker {wid} ({}, {name})", w.spec.service);
                self.job(job).waiting.push(wid);
                if remote {
                    if !self.remote_control(ctx, job, wid, who.clone(), &line, timeout) {
                        self.send_answered(
                            ctx,
                            job,
                            wid,
                            who,
                            Err(crate::control::client::ClientError::BadFile(
                                "its isdexecd cannot be reached".into(),
                            )),
                            Duration::ZERO,
                        );
                    }
                    continue;
                }
                let (dir, mb, line) = (ctx.dir().clone(), ctx.mailbox::<Isectd>(), line.clone());
                std::thread::spawn(move || {
                    let t0 = Instant::now();
                    let r = client::send(&dir, &name, &line, timeout);
                    let took = t0.elapsed();
                    mb.post(move |d, ctx| d.send_answered(ctx, job, wid, who, r, took));
                });
            }
        }
    }

    fn job(&mut self, job: u64) -> &mut Job {
        self.sends
            .jobs
            .iter_mut()
            .find(|j| j.id == job)
            .expect("a send in progress")
    }

    pub(super) fn send_answered(
        &mut self,
        ctx: &mut Ctx,
        job: u64,
        wid: u32,
        who: String,
        r: Result<Reply, client::ClientError>,
        took: Duration,
    ) {
        if let Some(w) = self.workers.get_mut(&wid) {
            w.busy = w.busy.saturating_sub(1);
            if w.busy == 0 {
                w.busy_since = None;
            }
            w.xactions += 1;
            w.resp_total_us += took.as_micros() as u64;
            w.v.xactions.set(w.xactions as i64);
            w.v.last_resp_us.set(took.as_micros() as i64);
            w.v.avg_resp_us.set((w.resp_total_us / w.xactions) as i64);
            if let Some(s) = self.services.iter().find(|s| s.name == w.spec.service) {
                s.v.xactions.add(1);
            }
        }
        self.count_done(1);
        let (text, bad) = match r {
            Ok(Reply::Ok { text: t }) => (format!("{who}: {}", t.replace('\n', " | ")), false),
            Ok(Reply::Error(f)) => (
                format!(
                    "{who}: error ({}): {}",
                    f.kind.as_str(),
                    f.text.replace('\n', " | ")
                ),
                true,
            ),
            Err(e) => (format!("{who}: {e}"), true),
        };
        let Some(j) = self.sends.jobs.iter_mut().find(|j| j.id == job) else {
            return;
        };
        j.waiting.retain(|w| *w != wid);
        let g = j.group;
        j.lines.push((g, wid, text));
        j.failed |= bad;
        self.send_next_group(ctx, job);
        self.refresh(ctx);
    }
}
