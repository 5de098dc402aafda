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

use super::stream::{UnixSocket, XStream};
use super::xproto::{self as xp, Header, Kind};
use super::{FdUse, Isectd};
use crate::framework::{Ctx, FdToken, Interest};

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
                    .range(Some(0.0), Some(100_000.0))
                    .desc("After a transaction's traffic, poll this long without sleeping (lower latency for up to this much CPU per burst); 0: off"),
            )?,
            worker_busy_poll_us: r.add_int(
                VarSpec::int("worker_busy_poll_us", 0)
                    .rw()
                    .unit("us")
                    .range(Some(0.0), Some(100_000.0))
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
        self.v.worker_busy_poll_us.get().clamp(0, 100_000) as u64
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
        let busy = b.v.busy_poll_us.get().clamp(0, 100_000) as u64;
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

    fn client_piece(
        &mut self,
        ctx: &mut Ctx,
        id: u32,
        h: Header,
        p: Vec<u8>,
    ) -> Result<(), String> {
        let Some(c) = self.broker().clients.get_mut(&id) else {
            return Ok(());
        };
        if let Some(wid) = c.worker {
            if c.pending.is_empty() {
                self.forward_to_worker(ctx, wid, id, h, &p);
                return Ok(());
            }
        }
        let held: usize = c.pending.iter().map(|(_, p)| p.len()).sum::<usize>() + p.len();
        if held > MAX_HELD {
            return Err(format!(
                "client {id} sent {held} bytes that wait for a worker (at most {MAX_HELD})"
            ));
        }
        let first = c.pending.is_empty() && c.worker.is_none();
        c.pending.push_back((h, p));
        self.broker().waiting.insert(id);
        if first {
            self.broker().arrivals += 1;
            let a = self.broker().arrivals;
            let c = self.broker().clients.get_mut(&id).expect("here");
            c.arrival = a;
        }
        let svc = self.broker().clients[&id].service.clone();
        self.schedule(ctx, &svc);
        Ok(())
    }

    fn forward_to_worker(&mut self, ctx: &mut Ctx, wid: u32, client: u32, h: Header, p: &[u8]) {
        let Some(t) = self.workers.get(&wid).and_then(|w| w.conn) else {
            return;
        };
        let ok = self
            .broker()
            .send(t, xp::hdr(Kind::Data, h.flags, 0, client, h.seq), p);
        if let Some(w) = self.workers.get_mut(&wid) {
            w.to_count += 1;
        }
        if !ok {
            self.drop_x(ctx, t, Some("worker does not read its requests"));
        }
    }

    /// Gives waiting transactions of `service` to its idle workers.
    pub(super) fn schedule(&mut self, ctx: &mut Ctx, service: &str) {
        let preempt = self.broker().preempt();
        loop {
            let idle = self
                .workers
                .values()
                .find(|w| {
                    w.spec.service == service
                        && w.conn.is_some()
                        && w.client.is_none()
                        && w.state() == super::model::WState::Idle
                })
                .map(|w| w.id);
            let b = self.broker.as_mut().expect("broker");
            let mut next: Option<(std::cmp::Reverse<i64>, u64, u32)> = None;
            let clients = &b.clients;
            b.waiting.retain(|id| {
                let Some(c) = clients.get(id) else {
                    return false;
                };
                if c.pending.is_empty() {
                    return false;
                }
                if c.service == service && !c.blocked && c.worker.is_none() {
                    let key = (
                        std::cmp::Reverse(if preempt { c.pri } else { 0 }),
                        c.arrival,
                        c.id,
                    );
                    if next.is_none_or(|n| key < n) {
                        next = Some(key);
                    }
                }
                true
            });
            let next = next.map(|(_, _, id)| id);
            let (Some(wid), Some(cid)) = (idle, next) else {
                if let (None, Some(cid)) = (idle, next) {
                    if let Some(why) = self.unservable(service) {
                        self.refuse_stranded(ctx, service, &why);
                        return;
                    }
                    self.events.push(format!(
                        "client {cid}'s transaction waits: no idle worker of {service}"
                    ));
                }
                return;
            };
            let c = self.broker().clients.get_mut(&cid).expect("found");
            c.worker = Some(wid);
            let pri = c.pri;
            let w = self.workers.get_mut(&wid).expect("found");
            w.client = Some(cid);
            w.busy += 1;
            w.busy_since = Some(Instant::now());
            self.events.push(format!(
                "client {cid}'s transaction (priority {pri}) to worker {wid}"
            ));
            // Its pieces so far, up to the end of this request.
            loop {
                let c = self.broker().clients.get_mut(&cid).expect("found");
                let Some((h, p)) = c.pending.pop_front() else {
                    break;
                };
                let more = h.more();
                self.forward_to_worker(ctx, wid, cid, h, &p);
                if !more {
                    break;
                }
            }
        }
    }

    /// Why no worker of `service` can take a transaction, now or later without an operator
    /// (`None`: one runs, is starting, or will be restarted; paused and lost ones count, as they
    /// come back).
    pub(super) fn unservable(&self, service: &str) -> Option<String> {
        let mut any = false;
        let mut failed = false;
        for w in self.workers.values() {
            if w.spec.service != service || w.deleted || w.spec.kind != super::model::Kind::Tp {
                continue;
            }
            if w.wanted && !w.failed {
                return None;
            }
            any = true;
            failed |= w.failed;
        }
        Some(if !any {
            format!("service {service} has no transaction worker (config worker {service} HOST tp:PATH, then start {service})")
        } else if failed {
            format!("every worker of {service} failed (see workers and worker ID; start {service} tries again)")
        } else {
            format!("no worker of {service} is started (start {service})")
        })
    }

    /// Answers every whole transaction waiting for `service` (of clients not blocked) with
    /// the error NO SERVICE and `why`, so that no client waits for a worker that will not come.
    /// A transaction whose last piece has not come yet is answered when it comes.
    pub(super) fn refuse_stranded(&mut self, ctx: &Ctx, service: &str, why: &str) {
        let ids: Vec<u32> = {
            let b = self.broker();
            b.waiting
                .iter()
                .copied()
                .filter(|id| {
                    b.clients.get(id).is_some_and(|c| {
                        c.service == service
                            && !c.blocked
                            && c.worker.is_none()
                            && c.pending.iter().any(|(h, _)| !h.more())
                    })
                })
                .collect()
        };
        for cid in ids {
            let b = self.broker();
            let c = b.clients.get_mut(&cid).expect("listed");
            while let Some((h, _)) = c.pending.pop_front() {
                if !h.more() {
                    break;
                }
            }
            let t = c.token;
            b.send(
                t,
                xp::hdr(Kind::Data, 0, xp::Error::NoService as i16, cid, 1),
                why.as_bytes(),
            );
            self.event(ctx, format!("client {cid}'s transaction refused: {why}"));
        }
    }

    /// After a change of workers: refuses what waits for a service that no worker will serve.
    pub(super) fn refuse_all_stranded(&mut self, ctx: &Ctx) {
        let Some(b) = self.broker.as_ref() else {
            return;
        };
        let mut services: Vec<String> = b
            .waiting
            .iter()
            .filter_map(|id| b.clients.get(id))
            .filter(|c| !c.pending.is_empty())
            .map(|c| c.service.clone())
            .collect();
        services.sort();
        services.dedup();
        for s in services {
            if let Some(why) = self.unservable(&s) {
                self.refuse_stranded(ctx, &s, &why);
            }
        }
    }

    fn worker_piece(
        &mut self,
        ctx: &mut Ctx,
        wid: u32,
        h: Header,
        p: Vec<u8>,
    ) -> Result<(), String> {
        let w = self.workers.get_mut(&wid).ok_or("no such worker")?;
        if let Some(i) = w.orphans.iter().position(|t| *t == h.tag) {
            // The late reply of a transaction taken from it (idle WID): thrown away.
            if !h.more() {
                w.orphans.remove(i);
            }
            return Ok(());
        }
        let Some(cid) = w.client else {
            return Err(format!(
                "worker {wid} replied for a transaction it was not given"
            ));
        };
        if h.tag != cid {
            return Err(format!(
                "worker {wid} replied for client {} while serving client {cid}",
                h.tag
            ));
        }
        w.from_count += 1;
        let done = !h.more();
        if done {
            w.client = None;
            w.busy = w.busy.saturating_sub(1);
            let took = w.busy_since.take().map(|t| t.elapsed()).unwrap_or_default();
            w.xactions += 1;
            w.resp_total_us += took.as_micros() as u64;
            w.v.xactions.set(w.xactions as i64);
            w.v.last_resp_us.set(took.as_micros() as i64);
            w.v.avg_resp_us.set((w.resp_total_us / w.xactions) as i64);
            let svc = w.spec.service.clone();
            if let Some(s) = self.services.iter().find(|s| s.name == svc) {
                s.v.xactions.add(1);
            }
            self.broker().v.xactions.add(1);
            self.count_done(1);
        }
        let ct = self.broker().clients.get(&cid).map(|c| c.token);
        if let Some(ct) = ct {
            if !self
                .broker()
                .send(ct, xp::hdr(Kind::Data, h.flags, h.error, cid, h.seq), &p)
            {
                self.drop_x(ctx, ct, Some("client does not read its replies"));
            }
        }
        if done {
            if let Some(c) = self.broker().clients.get_mut(&cid) {
                c.worker = None;
                c.xactions += 1;
                if !c.pending.is_empty() {
                    self.broker().arrivals += 1;
                    let a = self.broker().arrivals;
                    if let Some(c) = self.broker().clients.get_mut(&cid) {
                        c.arrival = a;
                    }
                }
            }
            let svc = self.workers[&wid].spec.service.clone();
            self.schedule(ctx, &svc);
        }
        Ok(())
    }

    /// Tells client `cid` its transaction was interrupted (the seed's header error -1).
    pub(super) fn intervene(&mut self, ctx: &mut Ctx, cid: u32, why: &str) {
        let Some(c) = self.broker().clients.get_mut(&cid) else {
            return;
        };
        c.worker = None;
        // What it sent of this transaction is gone with the worker.
        while c.pending.front().is_some_and(|(h, _)| h.more()) {
            c.pending.pop_front();
        }
        let t = c.token;
        self.broker().send(
            t,
            xp::hdr(Kind::Data, 0, xp::Error::Intervention as i16, cid, 1),
            xp::INTERVENTION,
        );
        self.event(ctx, format!("client {cid}: PROTOCOL INTERVENTION ({why})"));
    }

    /// A transaction worker's process ended: its connection goes, its client is told.
    pub(super) fn x_worker_gone(&mut self, ctx: &mut Ctx, wid: u32) {
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        let (t, cid) = (w.conn.take(), w.client.take());
        w.orphans.clear();
        if let Some(cid) = cid {
            self.intervene(ctx, cid, &format!("worker {wid} died"));
        }
        if let Some(t) = t {
            if let Some(c) = self.broker().conns.remove(&t) {
                self.fds.remove(&t);
                let _ = ctx.deregister_fd(c.stream.as_raw_fd());
            }
        }
    }

    /// `idle WID`: a busy transaction worker made idle; its client gets the intervention.
    pub(super) fn idle_worker(&mut self, ctx: &mut Ctx, wid: u32) -> Result<String, String> {
        let w = self
            .workers
            .get_mut(&wid)
            .ok_or_else(|| format!("no worker {wid}"))?;
        let Some(cid) = w.client.take() else {
            return Err(format!(
                "worker {wid} is not busy on a transaction ({})",
                w.state().label()
            ));
        };
        w.busy = w.busy.saturating_sub(1);
        w.busy_since = None;
        if w.orphans.len() < 64 {
            w.orphans.push(cid);
        }
        self.intervene(ctx, cid, &format!("worker {wid} idled by an operator"));
        let svc = self.workers[&wid].spec.service.clone();
        self.schedule(ctx, &svc);
        Ok(format!("idled worker {wid}"))
    }

    /// `shutdown FD|all`: shuts down the sending side of sockets.
    pub(super) fn shutdown_fds(&mut self, fd: Option<i32>) -> Vec<String> {
        let mut out = Vec::new();
        let b = self.broker();
        for c in b.conns.values() {
            let f = c.stream.as_raw_fd();
            if fd.is_none_or(|x| x == f) && !matches!(c.role, Role::New) {
                let _ = c.stream.shutdown_write();
                out.push(format!("fd {f} ({}) shut down for sending", c.role));
            }
        }
        out
    }

    /// Sends a CONTROL command to a transaction worker (`send WID reinit|status`).
    pub(super) fn x_control(&mut self, wid: u32, line: &str) -> bool {
        let Some(t) = self.workers.get(&wid).and_then(|w| w.conn) else {
            return false;
        };
        self.broker()
            .send(t, xp::hdr(Kind::Control, 0, 0, 0, 1), line.as_bytes())
    }

    fn worker_control_reply(&mut self, ctx: &mut Ctx, wid: u32, p: Vec<u8>) {
        let text = String::from_utf8_lossy(&p).into_owned();
        if let Some((job, who, t0)) = self.x_controls.remove(&wid) {
            let r = Ok(crate::control::reply::Reply::ok(text));
            self.send_answered(ctx, job, wid, who, r, t0.elapsed());
        }
    }

    /// Removes client `id` (`delete client`).
    pub(super) fn delete_client(&mut self, ctx: &mut Ctx, id: u32) -> Result<(), String> {
        let t = self
            .broker()
            .clients
            .get(&id)
            .map(|c| c.token)
            .ok_or_else(|| format!("no client {id}"))?;
        self.broker().send(
            t,
            xp::hdr(Kind::Data, 0, xp::Error::Deleted as i16, id, 1),
            b"deleted by an operator",
        );
        if let Some(c) = self.broker().conns.get_mut(&t) {
            let _ = flush(c);
        }
        self.drop_x(ctx, t, None);
        Ok(())
    }
}
