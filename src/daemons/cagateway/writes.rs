//! Writes through the owners: a client's write becomes a control line sent to the owning
//! process over its control socket, exactly as `shvar set` sends it, on a thread per process
//! so the server never waits; the owner's answer comes back as a CA outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use mio::Waker;
use shvars::{ProcName, RuntimeDir};

use super::proto::{Header, Status};
use crate::control::client::{self, ClientError};
use crate::control::reply::ErrorKind;

/// A write on its way to an owner.
#[derive(Debug)]
pub(super) struct PutReply {
    pub(super) circuit: usize,
    pub(super) req: Header,
    pub(super) cid: u32,
    pub(super) notify: bool,
}

pub(super) struct WriteJob {
    pub(super) line: String,
    pub(super) reply: PutReply,
}

pub(super) struct WriteDone {
    pub(super) reply: PutReply,
    pub(super) result: Result<(), (Status, String)>,
}

/// A writer thread per process: writes to one process stay in order, and an owner that does
/// not answer holds up only the writes to it.
pub(super) struct Writers {
    pub(super) dir: RuntimeDir,
    pub(super) threads: HashMap<Arc<str>, Sender<WriteJob>>,
    pub(super) done: Sender<WriteDone>,
    pub(super) waker: Arc<Waker>,
    pub(super) timeout: Duration,
}

impl Writers {
    pub(super) fn submit(&mut self, process: &Arc<str>, job: WriteJob) {
        if let Some(tx) = self.threads.get(process) {
            match tx.send(job) {
                Ok(()) => return,
                Err(e) => return self.spawn_and_send(process, e.0),
            }
        }
        self.spawn_and_send(process, job);
    }

    fn spawn_and_send(&mut self, process: &Arc<str>, job: WriteJob) {
        let (tx, rx) = crossbeam_channel::unbounded::<WriteJob>();
        let (dir, done, waker, timeout) = (
            self.dir.clone(),
            self.done.clone(),
            self.waker.clone(),
            self.timeout,
        );
        let name = process.to_string();
        let spawned = std::thread::Builder::new()
            .name("ca-writer".into())
            .spawn(move || {
                for job in rx {
                    let result = write_through_owner(&dir, &name, &job.line, timeout);
                    let _ = done.send(WriteDone {
                        reply: job.reply,
                        result,
                    });
                    let _ = waker.wake();
                }
            });
        if spawned.is_ok() && tx.send(job).is_ok() {
            self.threads.insert(process.clone(), tx);
        }
    }

    pub(super) fn forget(&mut self, process: &str) {
        self.threads.remove(process);
    }
}

/// Sends a control line to the owner and turns its answer into a CA outcome.
fn write_through_owner(
    dir: &RuntimeDir,
    process: &str,
    line: &str,
    timeout: Duration,
) -> Result<(), (Status, String)> {
    let name = ProcName::new(process).map_err(|e| (Status::PUTFAIL, e.to_string()))?;
    match client::send(dir, &name, line, timeout) {
        Ok(r) if r.is_ok() => Ok(()),
        Ok(r) => {
            let status = match r.kind() {
                Some(ErrorKind::Denied) => Status::NOWTACCESS,
                _ => Status::PUTFAIL,
            };
            Err((status, format!("{process} refused: {}", r.text())))
        }
        Err(e @ (ClientError::NotRunning { .. } | ClientError::Exited { .. })) => {
            Err((Status::DISCONN, e.to_string()))
        }
        Err(e) => Err((Status::PUTFAIL, e.to_string())),
    }
}
