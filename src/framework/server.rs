//! The owner's side of the control socket `NAME.sock`: connections, who is calling, requests
//! in order, replies that never block the loop.
//!
//! Anyone local may connect (the socket is mode 0666): the caller's uid, from `SO_PEERCRED`,
//! decides what it may run. The owner, root and members of the `--group` may run every command;
//! any other user only the public ones (`help`, `get`, `status`, `events`: what the world-readable
//! region shows anyway). Replies go back on the same connection, so nobody else can read or
//! forge them. A connection runs one command at a time, in the order sent; a client that does
//! not read its replies is dropped after [`STALL`], and connections are bounded in number.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use super::runner::Caller;
use crate::control::reply::{ErrorKind, Reply};
use crate::control::wire::{encode_reply, Frame, LineFramer};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections at once of one user who is not privileged.
pub const MAX_PER_USER: usize = 4;
/// How long a client may leave a reply unread before it is dropped.
pub const STALL: Duration = Duration::from_secs(5);
/// Requests read ahead of the one running, per connection.
const MAX_QUEUED: usize = 32;
/// Reply bytes kept for a client that reads slowly.
const MAX_OUT: usize = 1 << 20;

/// Token of the first connection; each connection's token is its id.
pub(crate) const CONN_BASE: usize = 1 << 20;

/// Who may do everything.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Auth {
    pub owner_uid: u32,
    pub group: Option<u32>,
}

fn proc_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

impl Auth {
    fn privileged(&self, uid: u32, gid: u32, pid: i32) -> bool {
        uid == self.owner_uid
            || uid == 0
            || self
                .group
                .is_some_and(|g| gid == g || proc_groups(pid).contains(&g))
    }
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub id: u64,
    stream: UnixStream,
    pub caller: Caller,
    uid: u32,
    framer: LineFramer,
    queue: VecDeque<Frame>,
    out: Vec<u8>,
    /// When the client last took some of its replies (set while replies wait).
    stalled_since: Option<Instant>,
    /// A command of this connection is running (deferred).
    pub busy: bool,
    /// The client closed its side.
    eof: bool,
    /// Reading stopped because the queue is full; read again once it drains.
    read_paused: bool,
    wants_write: bool,
}

/// What the loop must do after a connection event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ConnState {
    Open,
    Close(Option<String>),
}

impl Conn {
    /// Reads what the client sent (until WouldBlock, or the queue is full).
    pub fn read(&mut self) -> ConnState {
        let mut buf = [0u8; 16 * 1024];
        let mut frames = Vec::new();
        loop {
            if self.queue.len() >= MAX_QUEUED {
                self.read_paused = true;
                break;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    let _ = self.framer.end_of_input();
                    break;
                }
                Ok(n) => {
                    self.framer.push(&buf[..n], &mut frames);
                    self.queue.extend(frames.drain(..));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.read_paused = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return ConnState::Close(Some(format!("read failed: {e}"))),
            }
        }
        ConnState::Open
    }

    /// The next request to run, if the connection is free.
    pub fn next_request(&mut self) -> Option<Frame> {
        if self.busy {
            return None;
        }
        self.queue.pop_front()
    }

    /// Whether reading was paused with data possibly left.
    pub fn read_paused(&self) -> bool {
        self.read_paused && self.queue.len() < MAX_QUEUED
    }

    /// Queues a reply.
    pub fn push_reply(&mut self, reply: &Reply) {
        if self.out.is_empty() {
            self.stalled_since = Some(Instant::now());
        }
        encode_reply(reply, &mut self.out);
    }

    /// Whether nothing waits to be written.
    pub fn out_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Reply bytes waiting to be written.
    pub fn out_len(&self) -> usize {
        self.out.len()
    }

    /// A duplicate of the socket, for the guard that answers for a blocked handler.
    pub fn dup_fd(&self) -> Option<OwnedFd> {
        self.stream.as_fd().try_clone_to_owned().ok()
    }

    /// Writes what it can; says whether to keep the connection.
    pub fn flush(&mut self, registry: &Registry) -> ConnState {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return ConnState::Close(Some("the client stopped reading".into())),
                Ok(n) => {
                    self.out.drain(..n);
                    self.stalled_since = Some(Instant::now());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return ConnState::Close(None),
                Err(e) => return ConnState::Close(Some(format!("write failed: {e}"))),
            }
        }
        if self.out.len() > MAX_OUT {
            return ConnState::Close(Some(format!(
                "{} does not read its replies ({} bytes waiting): dropped",
                self.caller.who,
                self.out.len()
            )));
        }
        if self.out.is_empty() {
            self.stalled_since = None;
        }
        let want = !self.out.is_empty();
        if want != self.wants_write {
            self.wants_write = want;
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = registry.reregister(&mut self.stream, Token(self.id as usize), interest);
        }
        if self.eof && !self.busy && self.out.is_empty() && self.queue.is_empty() {
            return ConnState::Close(None);
        }
        ConnState::Open
    }

    /// When the client must have read its replies, if any wait.
    pub fn stall_deadline(&self) -> Option<Instant> {
        self.stalled_since.map(|t| t + STALL)
    }
}

/// The listening socket and its connections.
#[derive(Debug)]
pub(crate) struct Server {
    listener: UnixListener,
    auth: Auth,
    conns: HashMap<u64, Conn>,
    next_id: u64,
}

/// What an accept round produced, for the loop to log.
#[derive(Debug, Default)]
pub(crate) struct Accepted {
    pub new: Vec<u64>,
    pub refused: Vec<String>,
}

impl Server {
    pub fn new(listener: UnixListener, auth: Auth) -> Server {
        Server {
            listener,
            auth,
            conns: HashMap::new(),
            next_id: CONN_BASE as u64,
        }
    }

    pub fn listener(&mut self) -> &mut UnixListener {
        &mut self.listener
    }

    pub fn get(&mut self, id: u64) -> Option<&mut Conn> {
        self.conns.get_mut(&id)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.conns.keys().copied().collect()
    }

    pub fn remove(&mut self, registry: &Registry, id: u64) {
        if let Some(mut c) = self.conns.remove(&id) {
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// Accepts every waiting connection, refusing those over the limits with a reply that
    /// says why.
    pub fn accept(&mut self, registry: &Registry) -> Accepted {
        let mut out = Accepted::default();
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.refused.push(format!("accept failed: {e}"));
                    break;
                }
            };
            let cred = match nix::sys::socket::getsockopt(
                &stream.as_fd(),
                nix::sys::socket::sockopt::PeerCredentials,
            ) {
                Ok(c) => c,
                Err(e) => {
                    out.refused
                        .push(format!("a connection without credentials refused: {e}"));
                    continue;
                }
            };
            let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
            let privileged = self.auth.privileged(uid, gid, pid);
            let who = format!("uid {uid} (pid {pid})");
            let same_user = self.conns.values().filter(|c| c.uid == uid).count();
            let refuse = if self.conns.len() >= MAX_CONNECTIONS {
                Some(format!(
                    "too many connections ({MAX_CONNECTIONS}): try again later"
                ))
            } else if !privileged && same_user >= MAX_PER_USER {
                Some(format!(
                    "too many connections from {who} ({MAX_PER_USER} at most)"
                ))
            } else {
                None
            };
            if let Some(why) = refuse {
                let mut b = Vec::new();
                encode_reply(&Reply::error(ErrorKind::Denied, why.clone()), &mut b);
                let _ = stream.write(&b);
                out.refused.push(format!("{who}: {why}"));
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            if let Err(e) = registry.register(&mut stream, Token(id as usize), Interest::READABLE) {
                out.refused
                    .push(format!("cannot watch a connection of {who}: {e}"));
                continue;
            }
            self.conns.insert(
                id,
                Conn {
                    id,
                    stream,
                    caller: Caller { privileged, who },
                    uid,
                    framer: LineFramer::default(),
                    queue: VecDeque::new(),
                    out: Vec::new(),
                    stalled_since: None,
                    busy: false,
                    eof: false,
                    read_paused: false,
                    wants_write: false,
                },
            );
            out.new.push(id);
        }
        out
    }
}
