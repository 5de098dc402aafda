//! The guard against a handler that blocks the main loop. A handler that must wait should answer
//! later (see [`super::Ctx::defer`]); one that blocks anyway (a bug, a hung system call) would
//! leave its caller without an answer. While a client's command runs, the guard thread holds a
//! duplicate of that client's socket; if the command outlives its time limit, the guard writes
//! the `timeout` reply itself, so the caller is told the truth (perfsonar.pl's rule: a handler
//! that crashes or hangs still yields a proper reply). The reply the handler gives when it
//! finally returns is then dropped (and logged).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::eventlog::EventLog;
use crate::control::reply::{ErrorKind, Reply};
use crate::control::wire::encode_reply;

#[derive(Debug)]
struct Watched {
    seq: u64,
    fd: OwnedFd,
    deadline: Instant,
    started: Instant,
    command: String,
    answered: bool,
}

#[derive(Debug, Default)]
struct State {
    watched: Option<Watched>,
    seq: u64,
    stop: bool,
}

/// The guard; its thread lives as long as the process.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl Guard {
    /// Starts the guard thread.
    pub(crate) fn start(log: Arc<EventLog>) -> std::io::Result<Guard> {
        let shared: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ctl-guard".into())
            .spawn(move || watch(&s, &log))?;
        Ok(Guard { shared })
    }

    /// A client's command starts; `fd` is a duplicate of its socket.
    pub(crate) fn enter(&self, fd: OwnedFd, command: &str, limit: Duration) -> u64 {
        let (m, cv) = &*self.shared;
        let mut st = m.lock();
        st.seq += 1;
        let now = Instant::now();
        st.watched = Some(Watched {
            seq: st.seq,
            fd,
            deadline: now + limit,
            started: now,
            command: command.to_owned(),
            answered: false,
        });
        cv.notify_one();
        st.seq
    }

    /// The command returned; says whether the guard already answered for it.
    pub(crate) fn leave(&self, seq: u64) -> bool {
        let (m, _) = &*self.shared;
        let mut st = m.lock();
        match st.watched.take() {
            Some(w) if w.seq == seq => w.answered,
            other => {
                st.watched = other;
                false
            }
        }
    }

    /// Ends the guard thread.
    pub(crate) fn stop(&self) {
        let (m, cv) = &*self.shared;
        m.lock().stop = true;
        cv.notify_one();
    }
}

fn watch(shared: &(Mutex<State>, Condvar), log: &EventLog) {
    let (m, cv) = shared;
    let mut st = m.lock();
    loop {
        if st.stop {
            return;
        }
        let due = match &st.watched {
            Some(w) if !w.answered => Some(w.deadline),
            _ => None,
        };
        match due {
            None => cv.wait(&mut st),
            Some(d) => {
                let now = Instant::now();
                if now < d {
                    cv.wait_for(&mut st, d - now);
                    continue;
                }
                let w = st.watched.as_mut().expect("checked above");
                let text = format!(
                    "'{}' is still running after its time limit of {:.1} s and blocks the process's main loop (a bug: report it); the process will answer other commands once it returns",
                    w.command,
                    w.deadline.duration_since(w.started).as_secs_f64()
                );
                let mut frame = Vec::new();
                encode_reply(&Reply::error(ErrorKind::Timeout, text.clone()), &mut frame);
                let _ = nix::unistd::write(&w.fd, &frame);
                w.answered = true;
                log.error(format!("guard: {text}"));
            }
        }
    }
}
