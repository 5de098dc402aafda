//! Transactions (part 2): isectd listens for clients (`req_port`) and for transaction workers
//! (`port`), gives each client an id at login, hands each transaction to an IDLE worker of the
//! client's service (waiting ones served by client priority, then arrival) and returns the
//! worker's reply. Requests and replies may come in pieces (MORE): a worker stays BUSY until
//! its reply says no more follows. A worker that dies, is idled or shut down while busy gives
//! its client the seed's PROTOCOL INTERVENTION error. Bad input costs its own connection only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

use shvars::region::{IntVar, StrVar, VarRegion, VarSpec};

use super::stream::{UnixSocket, XStream, MAX_BUSY_POLL_US};
use super::xproto::{self as xp, Header, Kind};
use super::{FdUse, Isectd};
use crate::framework::{Ctx, FdToken, Interest};

mod ops;
mod route;

/// Most bytes queued for a peer that does not read before it is dropped.
const MAX_OUT: usize = 8 << 20;
/// Most request bytes a client may have waiting for a worker.
const MAX_HELD: usize = 16 << 20;

/// Where a connection was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listener {
    /// The TCP worker port (`port`).
    Workers,
    /// The TCP client port (`req_port`).
    Clients,
    /// The Unix socket (`xact_socket`).
    Unix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    New,
    Client(u32),
    Worker(u32),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::New => f.write_str("not logged in"),
            Role::Client(id) => write!(f, "client {id}"),
            Role::Worker(id) => write!(f, "worker {id}"),
        }
    }
}

#[derive(Debug)]
struct XConn {
    stream: XStream,
    framer: xp::Framer,
    out: Vec<u8>,
    role: Role,
}

/// A logged-in client.
#[derive(Debug)]
pub struct Client {
    /// Its id.
    pub id: u32,
    token: FdToken,
    /// Its service.
    pub service: String,
    /// Its priority (higher first).
    pub pri: i64,
    /// Blocked: its transactions are held until `unblock`.
    pub blocked: bool,
    /// Pieces received and not yet given to a worker.
    pending: VecDeque<(Header, Vec<u8>)>,
    /// The worker serving its current transaction.
    pub worker: Option<u32>,
    arrival: u64,
    /// Its address.
    pub peer: String,
    /// Transactions completed.
    pub xactions: u64,
    /// When it logged in.
    pub since: Instant,
}

/// The broker's variables.
#[derive(Debug)]
struct BVars {
    next_client: IntVar,
    pri_list: IntVar,
    max_users: IntVar,
    proto_errors: IntVar,
    xactions: IntVar,
    rejecting: IntVar,
    preempt: StrVar,
    busy_poll_us: IntVar,
    worker_busy_poll_us: IntVar,
}

/// The broker.
#[derive(Debug)]
pub struct Broker {
    wl: TcpListener,
    cl: TcpListener,
    /// The Unix socket local workers (and clients) log in on.
    ul: Option<UnixSocket>,
    /// What went wrong or was done when the listeners were made, for the log.
    pub notes: Vec<String>,
    /// The worker port.
    pub port: u16,
    /// The client port.
    pub req_port: u16,
    /// The address transaction workers are told to log in to.
    pub worker_host: String,
    conns: HashMap<FdToken, XConn>,
    rbuf: Vec<u8>,
    preempt: bool,
    /// Clients by id.
    pub clients: BTreeMap<u32, Client>,
    /// The clients that may have a transaction waiting: every client with pieces held is here
    /// (put in when a piece is held; taken out lazily by `schedule` once it has none), so
    /// scheduling looks at these few, not at every connected client.
    waiting: std::collections::BTreeSet<u32>,
    arrivals: u64,
    v: BVars,
}

impl Client {
    /// Pieces received and not yet given to a worker (held while blocked or waiting).
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Its connection's token.
    pub fn token_of(&self) -> FdToken {
        self.token
    }
}

impl Broker {
    /// The next client id.
    pub fn next_client(&self) -> i64 {
        self.v.next_client.get()
    }

    /// `MaxUsers` as set (0: computed).
    pub fn max_users_var(&self) -> i64 {
        self.v.max_users.get()
    }

    /// Binds both listeners on `host` and publishes the variables.
    ///
    /// # Errors
    /// If a port cannot be bound.
    pub fn new(
        r: &VarRegion,
        host: &str,
        req_port: u16,
        unix_path: &Path,
    ) -> Result<Broker, crate::framework::BoxError> {
        // Without it isectd still serves: workers log in over TCP, as in the seed.
        let mut notes = Vec::new();
        let ul = match UnixSocket::bind(unix_path) {
            Ok((u, note)) => {
                notes.extend(note);
                Some(u)
            }
            Err(e) => {
                notes.push(format!(
                    "no Unix socket for local workers: {e}; they log in over TCP"
                ));
                None
            }
        };
        let wl = TcpListener::bind((host, 0))?;
        let cl = TcpListener::bind((host, req_port))
            .map_err(|e| format!("cannot listen for clients on {host}:{req_port}: {e}"))?;
        wl.set_nonblocking(true)?;
        cl.set_nonblocking(true)?;
        let port = wl.local_addr()?.port();
        let req_port = cl.local_addr()?.port();
        r.add_int(
            VarSpec::int("port", i64::from(port)).desc("TCP port transaction workers log in to"),
        )?;
        r.add_int(
            VarSpec::int("socket", i64::from(wl.as_raw_fd()))
                .desc("Descriptor of the worker listener"),
        )?;
        r.add_int(
            VarSpec::int("req_port", i64::from(req_port)).desc("TCP port clients connect to"),
        )?;
        r.add_str(
            VarSpec::string(
                "xact_socket",
                108,
                &ul.as_ref()
                    .map(|u| u.path().display().to_string())
                    .unwrap_or_default(),
            )
            .desc("Unix socket of local workers (ISD_SOCKET) and clients (unix:PATH)"),
        )?;
        r.add_int(
            VarSpec::int("req_socket", i64::from(cl.as_raw_fd()))
                .desc("Descriptor of the client listener"),
        )?;
        let v = BVars {
            next_client: r.add_int(VarSpec::int("NextClientID", 1).desc("The next client id to give"))?,
            pri_list: r.add_int(VarSpec::int("PriList", 0).desc("Clients logged in"))?,
            max_users: r.add_int(
                VarSpec::int("MaxUsers", 0)
                    .rw()
                    .range(Some(0.0), Some(1e7))
                    .desc("Clients allowed at once; 0: computed from the descriptors available"),
            )?,
            proto_errors: r.add_int(
                VarSpec::int("proto_errors", 0)
                    .counter()
                    .desc("Connections dropped for bad input (junk, absurd lengths, unasked replies, not reading)"),
            )?,
            xactions: r.add_int(VarSpec::int("xactions", 0).counter().desc("Transactions completed"))?,
            busy_poll_us: r.add_int(
                VarSpec::int("busy_poll_us", 0)
                    .rw()
                    .unit("us")
                    .range(Some(0.0), Some(MAX_BUSY_POLL_US as f64))
                    .desc("After a transaction's traffic, poll this long without sleeping (lower latency for up to this much CPU per burst); 0: off"),
            )?,
            worker_busy_poll_us: r.add_int(
                VarSpec::int("worker_busy_poll_us", 0)
                    .rw()
                    .unit("us")
                    .range(Some(0.0), Some(MAX_BUSY_POLL_US as f64))
                    .desc("Transaction workers started from now on poll this long for their next request after each reply before they sleep; 0: off"),
            )?,
            rejecting: r.add_int(VarSpec::int("rejecting", 0).desc("1: new client logins are refused (reject)"))?,
            preempt: r.add_str(VarSpec::string("preempt", 8, "on").desc(
                "on: a waiting transaction of a higher-priority client goes before earlier ones of lower priority; off: arrival order only",
            ))?,
        };
        let worker_host = match host {
            "0.0.0.0" | "::" | "[::]" => "127.0.0.1".to_owned(),
            h => h.to_owned(),
        };
        Ok(Broker {
            worker_host,
            wl,
            cl,
            ul,
            notes,
            port,
            req_port,
            conns: HashMap::new(),
            rbuf: vec![0; 64 * 1024],
            preempt: true,
            clients: BTreeMap::new(),
            waiting: std::collections::BTreeSet::new(),
            arrivals: 0,
            v,
        })
    }

    /// The listeners' descriptors.
    pub fn listeners(&self) -> (i32, i32) {
        (self.wl.as_raw_fd(), self.cl.as_raw_fd())
    }

    /// The Unix listener's descriptor.
    pub fn unix_listener(&self) -> Option<i32> {
        self.ul.as_ref().map(|u| u.listener.as_raw_fd())
    }

    /// The Unix socket's path (`ISD_SOCKET` for the workers started here).
    pub fn unix_path(&self) -> Option<&Path> {
        self.ul.as_ref().map(UnixSocket::path)
    }

    /// `worker_busy_poll_us`: what a transaction worker started now is given.
    pub fn worker_busy_poll_us(&self) -> u64 {
        self.v
            .worker_busy_poll_us
            .get()
            .clamp(0, MAX_BUSY_POLL_US as i64) as u64
    }

    /// How a connection came: `tcp`, `unix`, or `-` when there is none.
    pub fn link_of(&self, t: FdToken) -> &'static str {
        self.conns.get(&t).map_or("-", |c| c.stream.kind())
    }

    /// The fd of a connection, for `workers`/`clients`/`shutdown`.
    pub fn fd_of(&self, t: FdToken) -> i32 {
        self.conns.get(&t).map_or(-1, |c| c.stream.as_raw_fd())
    }

    fn max_users(&self) -> usize {
        let set = self.v.max_users.get();
        if set > 0 {
            return set as usize;
        }
        // The seed: the descriptors available, less the workers', less a reserve (its
        // TOMS_CONSTANT; ours is 64 for files, pipes and the control socket).
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft as usize)
            .unwrap_or(1024);
        limit.saturating_sub(self.conns.len() - self.clients.len() + 64)
    }

    /// Whether `reject` is in force.
    pub fn rejecting(&self) -> bool {
        self.v.rejecting.get() != 0
    }

    /// Sets `reject`.
    pub fn set_rejecting(&self, on: bool) {
        self.v.rejecting.set(i64::from(on));
    }

    /// The preempt option.
    pub fn preempt(&self) -> bool {
        self.preempt
    }

    /// Sets the preempt option.
    pub fn set_preempt(&mut self, on: bool) {
        self.preempt = on;
        self.v.preempt.set(if on { "on" } else { "off" });
    }

    fn send(&mut self, t: FdToken, h: Header, p: &[u8]) -> bool {
        let Some(c) = self.conns.get_mut(&t) else {
            return false;
        };
        xp::put_frame(&mut c.out, &h, p);
        flush(c).is_ok() && c.out.len() <= MAX_OUT
    }

    /// Answers client `cid` (on connection `t`) with error `e` and its text: the reply to its
    /// transaction.
    fn send_error(&mut self, t: FdToken, cid: u32, e: xp::Error, text: &[u8]) -> bool {
        self.send(t, xp::hdr(Kind::Data, 0, e as i16, cid, 1), text)
    }
}

fn flush(c: &mut XConn) -> io::Result<()> {
    while !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Isectd {
    fn broker(&mut self) -> &mut Broker {
        self.broker.as_mut().expect("the broker runs")
    }

    pub(super) fn accept_x(&mut self, ctx: &mut Ctx, from: Listener) {
        loop {
            let b = self.broker();
            let r = match from {
                Listener::Workers => b.wl.accept().map(|(s, _)| XStream::Tcp(s)),
                Listener::Clients => b.cl.accept().map(|(s, _)| XStream::Tcp(s)),
                Listener::Unix => match &b.ul {
                    Some(u) => u.listener.accept().map(|(s, _)| XStream::Unix(s)),
                    None => return,
                },
            };
            match r {
                Ok(s) => {
                    let _ = s.set_nonblocking(true);
                    if let XStream::Tcp(t) = &s {
                        let _ = t.set_nodelay(true);
                    }
                    match ctx.register_fd(s.as_raw_fd(), Interest::ReadWrite) {
                        Ok(t) => {
                            self.fds.insert(t, FdUse::XConn);
                            self.broker().conns.insert(
                                t,
                                XConn {
                                    stream: s,
                                    framer: xp::Framer::default(),
                                    out: Vec::new(),
                                    role: Role::New,
                                },
                            );
                        }
                        Err(e) => ctx.error(&format!("cannot watch a connection: {e}")),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of descriptors, most likely: the connection waits in the backlog.
                    ctx.log().warn(format!("accept: {e}"));
                    return;
                }
            }
        }
    }

    /// Drops connection `t`; `why` is bad input when it is Some (counted).
    pub(super) fn drop_x(&mut self, ctx: &mut Ctx, t: FdToken, bad: Option<&str>) {
        let Some(c) = self.broker().conns.remove(&t) else {
            return;
        };
        self.fds.remove(&t);
        let _ = ctx.deregister_fd(c.stream.as_raw_fd());
        let peer = c.stream.peer();
        if let Some(why) = bad {
            self.broker().v.proto_errors.add(1);
            let text = format!("connection from {peer} ({}) dropped: {why}", c.role);
            ctx.log().warn(&text);
            self.events.push(text);
        }
        match c.role {
            Role::Client(id) => {
                if let Some(cl) = self.broker().clients.remove(&id) {
                    // Its worker (if busy for it) goes on with the reply, which goes nowhere.
                    let _ = cl.worker;
                    self.events.push(format!("client {id} logged out"));
                }
                let n = self.broker().clients.len() as i64;
                self.broker().v.pri_list.set(n);
            }
            Role::Worker(wid) => {
                let busy_client = self.workers.get_mut(&wid).and_then(|w| {
                    w.conn = None;
                    w.ready = false;
                    w.client.take()
                });
                if let Some(cid) = busy_client {
                    self.intervene(ctx, cid, &format!("worker {wid} closed its connection"));
                }
                let text = format!("worker {wid} closed its connection to isectd: it is restarted");
                self.event(ctx, text);
                // The seed: a worker that closes its socket is restarted.
                if self
                    .workers
                    .get(&wid)
                    .is_some_and(|w| w.proc.is_some() && w.stopping.is_none())
                {
                    self.restart_worker(ctx, wid);
                }
            }
            Role::New => {}
        }
    }

    /// A connection is ready.
    pub(super) fn x_event(&mut self, ctx: &mut Ctx, t: FdToken) {
        let b = self.broker.as_mut().expect("the broker runs");
        let busy = b.v.busy_poll_us.get().clamp(0, MAX_BUSY_POLL_US as i64) as u64;
        ctx.set_busy_poll(std::time::Duration::from_micros(busy));
        let Some(c) = b.conns.get_mut(&t) else {
            return;
        };
        if flush(c).is_err() {
            return self.drop_x(ctx, t, None);
        }
        // One receive buffer for every connection (not zeroed again for each event).
        let buf = &mut b.rbuf;
        let mut closed = false;
        loop {
            match c.stream.read(buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    c.framer.push(&buf[..n]);
                    // A short read drained the socket: a later arrival is a new edge, so the
                    // read that would only say WouldBlock is saved (one syscall per piece).
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        loop {
            let Some(c) = self.broker().conns.get_mut(&t) else {
                return;
            };
            match c.framer.next_frame() {
                Ok(Some((h, p))) => {
                    if let Err(why) = self.frame(ctx, t, h, p) {
                        return self.drop_x(ctx, t, Some(&why));
                    }
                }
                Ok(None) => break,
                Err(why) => return self.drop_x(ctx, t, Some(&why)),
            }
        }
        if closed {
            self.drop_x(ctx, t, None);
        } else if self
            .broker()
            .conns
            .get(&t)
            .is_some_and(|c| c.out.len() > MAX_OUT)
        {
            self.drop_x(ctx, t, Some("does not read what it is sent"));
        }
    }

    fn frame(&mut self, ctx: &mut Ctx, t: FdToken, h: Header, p: Vec<u8>) -> Result<(), String> {
        let role = self.broker().conns[&t].role;
        match (role, h.kind) {
            (Role::New, Kind::Login) => self.login(ctx, t, &p),
            (Role::Client(id), Kind::Data) => self.client_piece(ctx, id, h, p),
            (Role::Worker(wid), Kind::Data) => self.worker_piece(ctx, wid, h, p),
            (Role::Worker(wid), Kind::Control) => {
                self.worker_control_reply(ctx, wid, p);
                Ok(())
            }
            (r, k) => Err(format!("a {k:?} frame from {r}")),
        }
    }

    fn login(&mut self, ctx: &mut Ctx, t: FdToken, p: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(p).map_err(|_| "login is not text".to_owned())?;
        let mut words = text.split_whitespace();
        if let (Some(w), Some(tok), None) = (words.next(), words.next(), words.next()) {
            if let Ok(wid) = w.parse::<u32>() {
                return self.worker_login(ctx, t, wid, tok);
            }
        }
        let service = text.trim();
        let err = if self.broker().rejecting() {
            Some((
                xp::Error::Rejected,
                "logins are refused (reject)".to_owned(),
            ))
        } else if self.broker().clients.len() >= self.broker().max_users() {
            Some((
                xp::Error::Rejected,
                format!(
                    "isectd has its maximum of {} clients",
                    self.broker().max_users()
                ),
            ))
        } else if self.service(service).is_none() {
            Some((
                xp::Error::NoService,
                format!(
                    "no service {service:?} (services: {})",
                    self.service_names()
                ),
            ))
        } else {
            None
        };
        if let Some((e, why)) = err {
            self.broker()
                .send(t, xp::hdr(Kind::Welcome, 0, e as i16, 0, 1), why.as_bytes());
            self.events.push(format!("client login refused: {why}"));
            return Ok(());
        }
        let b = self.broker();
        let id = b.v.next_client.get() as u32;
        b.v.next_client.set(i64::from(id) + 1);
        let peer = b.conns[&t].stream.peer();
        b.clients.insert(
            id,
            Client {
                id,
                token: t,
                service: service.to_owned(),
                pri: 0,
                blocked: false,
                pending: VecDeque::new(),
                worker: None,
                arrival: 0,
                peer: peer.clone(),
                xactions: 0,
                since: Instant::now(),
            },
        );
        b.conns.get_mut(&t).expect("here").role = Role::Client(id);
        b.v.pri_list.set(b.clients.len() as i64);
        b.send(t, xp::hdr(Kind::Welcome, 0, 0, id, 1), b"");
        self.events.push(format!(
            "client {id} logged in from {peer} for service {service}"
        ));
        Ok(())
    }

    fn worker_login(
        &mut self,
        ctx: &mut Ctx,
        t: FdToken,
        wid: u32,
        tok: &str,
    ) -> Result<(), String> {
        let ok = self.workers.get(&wid).is_some_and(|w| {
            w.token.as_deref() == Some(tok) && w.proc.is_some() && w.conn.is_none()
        });
        if !ok {
            return Err(format!(
                "a login as worker {wid} with a wrong or used token"
            ));
        }
        let b = self.broker();
        b.conns.get_mut(&t).expect("here").role = Role::Worker(wid);
        b.send(t, xp::hdr(Kind::Welcome, 0, 0, 0, 1), b"");
        self.workers.get_mut(&wid).expect("checked").conn = Some(t);
        self.set_ready(ctx, wid, "logged in");
        let svc = self.workers[&wid].spec.service.clone();
        self.schedule(ctx, &svc);
        Ok(())
    }
}
