//! The Channel Access server: one thread with its own poll loop over the TCP listeners, the
//! UDP search sockets, every client circuit, and a waker for the threads that feed it (the
//! directory watcher of the [`Source`], the writers). It never blocks: writes go to a writer
//! thread per process, which talks to the owner over its control socket as `shvar set` does.
//!
//! The loop wakes for input, for the monitor tick (only while something is watched), for the
//! next beacon, and once a second for housekeeping (echoes to quiet clients, closing the ones
//! that stopped answering or reading, the counters).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::os::fd::{AsFd, AsRawFd};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use shvars::region::IntVar;
use shvars::RuntimeDir;

use super::access::{Access, Identity};
use super::beacon::Beacons;
use super::circuit::{
    Channel, Circuit, Closing, Fill, Sub, MAX_CHANNELS, MAX_PAYLOAD, MAX_PUTS_WAITING, MAX_SUBS,
    OUT_HARD, OUT_SOFT,
};
pub use super::config::Config;
use super::names::{Field, PvName, COMMAND_PV};
use super::proto::{
    self, cmd, decode_header, decode_put, parse_request, DbrType, Header, Request, Status,
    ACCESS_READ, ACCESS_WRITE, DBE_ALARM, DBE_LOG, DBE_VALUE,
};
use super::pv::{Deadbands, Pv, Target};
use super::search::{self, Budget};
use super::source::{ReadFail, Source, WatchId};
use super::writes::{PutReply, WriteDone, WriteJob, Writers};
use crate::framework::eventlog::EventLog;

/// The gateway's counters and gauges, published as its variables.
#[derive(Debug, Clone)]
pub struct Counters {
    /// Circuits open.
    pub clients: IntVar,
    /// Channels open.
    pub channels: IntVar,
    /// Subscriptions.
    pub monitors: IntVar,
    /// Processes served.
    pub processes: IntVar,
    /// Names searched for.
    pub searches: IntVar,
    /// Names found.
    pub search_hits: IntVar,
    /// Writes done.
    pub puts: IntVar,
    /// Writes refused.
    pub put_errors: IntVar,
    /// Monitor updates sent.
    pub updates: IntVar,
    /// Bad input seen (junk, unknown commands, absurd sizes).
    pub errors: IntVar,
    /// Circuits dropped (protocol errors, unresponsive clients).
    pub dropped: IntVar,
    /// The TCP port.
    pub port: IntVar,
}

/// The running server, as its owner sees it.
#[derive(Debug)]
pub struct Handle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    reload: Sender<Access>,
    thread: Option<JoinHandle<()>>,
    /// The TCP port it listens on.
    pub port: u16,
}

impl Handle {
    /// Applies a new access file to every channel (rights are sent again where they change).
    pub fn set_access(&self, a: Access) {
        let _ = self.reload.send(a);
        let _ = self.waker.wake();
    }

    /// Stops the server and waits for its thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

const WAKER: Token = Token(0);
/// The monitor tick: a timerfd, so the tick may be shorter than poll's millisecond.
const TICK: Token = Token(usize::MAX - 1);
const LISTENER_BASE: usize = 1;
const UDP_BASE: usize = 64;
const CIRCUIT_BASE: usize = 1024;
/// Circuits served at once; more are accepted and closed at once.
pub const MAX_CIRCUITS: usize = 4096;
const HOUSEKEEPING: Duration = Duration::from_secs(1);

fn udp_socket(ip: IpAddr, port: u16) -> io::Result<StdUdp> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // Several servers on one host share the search port, as EPICS servers do.
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(ip, port).into())?;
    Ok(s.into())
}

/// Binds the sockets (so a port in use is an error at start-up) and starts the server
/// thread.
///
/// # Errors
/// A socket that cannot be bound, with its address.
pub fn start<S: Source + Send + 'static>(
    cfg: Config,
    make_source: impl FnOnce(Box<dyn Fn() + Send>) -> io::Result<S>,
    dir: RuntimeDir,
    counters: Counters,
    log: Arc<EventLog>,
) -> io::Result<Handle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut listeners = Vec::new();
    let mut port = cfg.port;
    for (i, ip) in cfg.intf.iter().enumerate() {
        let addr = SocketAddr::new(*ip, port);
        let std = match std::net::TcpListener::bind(addr) {
            Ok(l) => l,
            // As an IOC does: another server has the port, so take any (clients find us by
            // search, which tells them the port).
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && i == 0 => {
                log.warn(format!(
                    "TCP port {port} on {ip} is taken: listening on a port of the system's choice"
                ));
                std::net::TcpListener::bind(SocketAddr::new(*ip, 0))?
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot listen on TCP {addr}: {e}"),
                ))
            }
        };
        if i == 0 {
            port = std.local_addr()?.port();
        }
        std.set_nonblocking(true)?;
        let mut l = TcpListener::from_std(std);
        poll.registry()
            .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
        listeners.push(l);
    }
    let mut udps = Vec::new();
    for (i, ip) in cfg.intf.iter().enumerate() {
        let std = udp_socket(*ip, cfg.port).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind the UDP search port {ip}:{}: {e}", cfg.port),
            )
        })?;
        let mut u = UdpSocket::from_std(std);
        poll.registry()
            .register(&mut u, Token(UDP_BASE + i), Interest::READABLE)?;
        let announce = match ip {
            IpAddr::V4(v4) if !v4.is_unspecified() => u32::from(*v4),
            _ => u32::MAX,
        };
        udps.push((u, announce));
    }
    let ticker = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    poll.registry().register(
        &mut mio::unix::SourceFd(&ticker.as_fd().as_raw_fd()),
        TICK,
        Interest::READABLE,
    )?;
    let w = waker.clone();
    let source = make_source(Box::new(move || {
        let _ = w.wake();
    }))?;
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let (reload_tx, reload_rx) = crossbeam_channel::unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    counters.port.set(i64::from(port));
    let beacon_ip = match cfg.intf.first() {
        Some(IpAddr::V4(v4)) => u32::from(*v4),
        _ => 0,
    };
    let mut server = Server {
        poll,
        listeners,
        udps,
        beacons: Beacons::new(cfg.beacon_addrs.clone(), cfg.beacon_period, port, beacon_ip)?,
        circuits: HashMap::new(),
        next_circuit: 0,
        stop: stop.clone(),
        reload: reload_rx,
        done: done_rx,
        log,
        core: Core {
            source,
            access: cfg.access.clone(),
            port,
            watchers: HashMap::new(),
            writers: Writers {
                dir,
                threads: HashMap::new(),
                done: done_tx,
                waker: waker.clone(),
                timeout: cfg.put_timeout,
            },
            counters,
            next_sid: 1,
            scratch: Vec::new(),
            budget: Budget::default(),
            deadbands: HashMap::new(),
        },
        tick: cfg.tick,
        ticker,
        ticking: false,
        echo_after: cfg.echo_after,
    };
    let thread = std::thread::Builder::new()
        .name("ca-server".into())
        .spawn(move || server.run())?;
    Ok(Handle {
        stop,
        waker,
        reload: reload_tx,
        thread: Some(thread),
        port,
    })
}

struct Server<S: Source> {
    poll: Poll,
    listeners: Vec<TcpListener>,
    udps: Vec<(UdpSocket, u32)>,
    beacons: Beacons,
    circuits: HashMap<usize, Circuit>,
    next_circuit: usize,
    stop: Arc<AtomicBool>,
    reload: Receiver<Access>,
    done: Receiver<WriteDone>,
    log: Arc<EventLog>,
    core: Core<S>,
    tick: Duration,
    ticker: TimerFd,
    ticking: bool,
    echo_after: Duration,
}

/// What request handling needs besides the circuit it handles.
struct Core<S: Source> {
    source: S,
    access: Access,
    port: u16,
    /// Who is subscribed to each watched variable: (circuit, sid, subscription id).
    watchers: HashMap<WatchId, Vec<(usize, u32, u32)>>,
    writers: Writers,
    counters: Counters,
    next_sid: u32,
    scratch: Vec<u8>,
    budget: Budget,
    /// Each variable's deadbands, shared by its channels.
    deadbands: HashMap<VarKey, Arc<Deadbands>>,
}

impl<S: Source> Server<S> {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_house = Instant::now() + HOUSEKEEPING;
        let mut changes = Vec::new();
        let mut gone = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            self.arm_tick();
            let deadline = next_house.min(self.beacons.next);
            let timeout = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.log.error(format!("CA server: poll failed: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let mut tick_due = false;
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    TICK => {
                        // Read the expiry count; an error only means it was read already.
                        let _ = self.ticker.wait();
                        tick_due = true;
                    }
                    Token(t) if (LISTENER_BASE..UDP_BASE).contains(&t) => {
                        self.accept(t - LISTENER_BASE)
                    }
                    Token(t) if (UDP_BASE..CIRCUIT_BASE).contains(&t) => {
                        self.searches(t - UDP_BASE)
                    }
                    Token(t) => self.serve(t - CIRCUIT_BASE),
                }
            }
            // Processes that came or went.
            gone.clear();
            if self.core.source.refresh(&mut gone) {
                for p in &gone {
                    self.drop_process(p);
                }
                self.core
                    .counters
                    .processes
                    .set(self.core.source.processes() as i64);
            }
            while let Ok(a) = self.reload.try_recv() {
                self.core.access = a;
                let ids: Vec<usize> = self.circuits.keys().copied().collect();
                for id in ids {
                    self.with_circuit(id, |core, _, c| core.resend_rights(c));
                }
            }
            while let Ok(d) = self.done.try_recv() {
                let id = d.reply.circuit;
                self.with_circuit(id, |core, _, c| core.put_done(c, d));
            }
            if tick_due && self.ticking {
                changes.clear();
                self.core.source.changes(&mut changes);
                self.deliver(&changes);
            }
            let now = Instant::now();
            if now >= self.beacons.next {
                self.beacons.send();
            }
            if now >= next_house {
                self.housekeeping();
                next_house = now + HOUSEKEEPING;
            }
        }
        // Leaving: close every circuit (clients reconnect to the next gateway).
        let ids: Vec<usize> = self.circuits.keys().copied().collect();
        for id in ids {
            self.close(id, None);
        }
    }

    /// Runs the monitor tick while something is watched, stops it when nothing is.
    fn arm_tick(&mut self) {
        let want = self.core.source.tick().is_some();
        if want == self.ticking {
            return;
        }
        let r = if want {
            let t = TimeSpec::from_duration(self.tick);
            self.ticker
                .set(Expiration::Interval(t), TimerSetTimeFlags::empty())
        } else {
            self.ticker.unset()
        };
        match r {
            Ok(()) => self.ticking = want,
            Err(e) => self
                .log
                .error(format!("CA server: cannot set the monitor timer: {e}")),
        }
    }

    fn accept(&mut self, i: usize) {
        loop {
            let (mut stream, peer) = match self.listeners[i].accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of descriptors and the like: try again on the next event.
                    self.log.warn(format!("CA server: accept failed: {e}"));
                    return;
                }
            };
            if self.circuits.len() >= MAX_CIRCUITS {
                self.core.counters.dropped.add(1);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let id = self.next_circuit;
            self.next_circuit += 1;
            if self
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(CIRCUIT_BASE + id),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            self.circuits.insert(id, Circuit::new(stream, peer));
            self.core.counters.clients.set(self.circuits.len() as i64);
        }
    }

    fn searches(&mut self, i: usize) {
        let mut buf = [0u8; 16 * 1024];
        let port = self.core.port;
        for _ in 0..1024 {
            let (n, from) = match self.udps[i].0.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return,
            };
            let (sock, announce) = &self.udps[i];
            let core = &mut self.core;
            let source = &mut core.source;
            let a = search::answer(
                &buf[..n],
                from.ip(),
                port,
                *announce,
                &mut core.budget,
                |name| resolve(source, name).is_some(),
                |reply| {
                    let _ = sock.send_to(reply, from);
                },
            );
            core.counters.searches.add(a.names as i64);
            core.counters.search_hits.add(a.hits as i64);
            if a.bad > 0 {
                core.counters.errors.add(a.bad as i64);
            }
        }
    }

    /// Runs `f` with a circuit taken out of the map (so it may use the core), then puts it
    /// back, flushes it, and closes it if it must close.
    fn with_circuit(&mut self, id: usize, f: impl FnOnce(&mut Core<S>, usize, &mut Circuit)) {
        let Some(mut c) = self.circuits.remove(&id) else {
            return;
        };
        f(&mut self.core, id, &mut c);
        c.flush();
        let closing = c.closing.clone();
        self.circuits.insert(id, c);
        if let Some(why) = closing {
            self.close(id, Some(why));
        }
    }

    fn serve(&mut self, id: usize) {
        self.with_circuit(id, |core, id, c| {
            c.flush();
            loop {
                let fill = c.fill();
                core.process_input(id, c);
                c.flush();
                if c.pending && c.events_on && c.queued() < OUT_SOFT {
                    core.flush_pending(c);
                    c.flush();
                }
                if c.closing.is_some() {
                    break;
                }
                match fill {
                    Fill::Drained => break,
                    Fill::More => {}
                    // The loop is edge-triggered: data already waiting brings no new event,
                    // so read on as soon as there is room (a writable event brings us back).
                    Fill::Throttled if c.queued() < OUT_HARD => {}
                    Fill::Throttled => break,
                }
            }
        });
    }

    fn close(&mut self, id: usize, why: Option<Closing>) {
        let Some(mut c) = self.circuits.remove(&id) else {
            return;
        };
        if let Some(Closing::Protocol(_) | Closing::Unresponsive(_)) = &why {
            self.core.counters.dropped.add(1);
            // Flush what was queued (the error message), without waiting.
            c.flush();
        }
        match &why {
            Some(Closing::Protocol(w)) => {
                self.log.warn(format!("CA client {} dropped: {w}", c.peer))
            }
            Some(Closing::Unresponsive(w)) => {
                self.log.warn(format!("CA client {} dropped: {w}", c.peer))
            }
            _ => {}
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
        let sids: Vec<u32> = c.channels.keys().copied().collect();
        for sid in sids {
            self.core.drop_channel(id, &mut c, sid);
        }
        self.core.counters.clients.set(self.circuits.len() as i64);
    }

    fn drop_process(&mut self, process: &str) {
        self.core.writers.forget(process);
        self.core.deadbands.retain(|k, _| &*k.0 != process);
        let ids: Vec<usize> = self.circuits.keys().copied().collect();
        for id in ids {
            self.with_circuit(id, |core, id, c| {
                let sids: Vec<u32> = c
                    .channels
                    .iter()
                    .filter(|(_, ch)| &*ch.pv.binding().process == process)
                    .map(|(sid, _)| *sid)
                    .collect();
                for sid in sids {
                    let cid = c.channels[&sid].cid;
                    core.drop_channel(id, c, sid);
                    Header::new(cmd::SERVER_DISCONN, 0, 0, 0, cid, 0).encode(&mut c.out);
                }
            });
        }
        self.log
            .info(format!("{process} is gone: its channels were disconnected"));
    }

    fn deliver(&mut self, changes: &[(WatchId, super::source::Sample)]) {
        let mut touched = Vec::new();
        for (wid, sample) in changes {
            let Some(subs) = self.core.watchers.get(wid) else {
                continue;
            };
            let sample = Ok(sample.clone());
            for &(cid, sid, subid) in subs {
                let Some(c) = self.circuits.get_mut(&cid) else {
                    continue;
                };
                let Some(ch) = c.channels.get_mut(&sid) else {
                    continue;
                };
                let Some(sub) = ch.subs.get_mut(&subid) else {
                    continue;
                };
                if c.events_on && c.out.len() < OUT_SOFT {
                    if Core::<S>::encode_update(
                        &mut self.core.scratch,
                        &mut c.out,
                        &ch.pv,
                        &sample,
                        sub,
                        subid,
                        false,
                    ) {
                        self.core.counters.updates.add(1);
                    }
                } else {
                    sub.pending = true;
                    c.pending = true;
                }
                touched.push(cid);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            if let Some(c) = self.circuits.get_mut(&id) {
                c.flush();
                if c.closing.is_some() {
                    let why = c.closing.clone();
                    self.close(id, why);
                }
            }
        }
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        let mut drop = Vec::new();
        for (id, c) in &mut self.circuits {
            let quiet = now.duration_since(c.last_rx);
            if quiet >= self.echo_after * 2 {
                drop.push((*id, "sent nothing, not even an answer to an echo"));
            } else if quiet >= self.echo_after && !c.echo_sent {
                Header::new(cmd::ECHO, 0, 0, 0, 0, 0).encode(&mut c.out);
                c.echo_sent = true;
                c.flush();
            }
            if c.queued() > 0 && now.duration_since(c.last_tx) >= self.echo_after * 2 {
                drop.push((*id, "reads nothing of what it is sent"));
            }
        }
        for (id, why) in drop {
            self.close(id, Some(Closing::Unresponsive(why)));
        }
        self.core
            .counters
            .processes
            .set(self.core.source.processes() as i64);
    }
}

/// The key of a variable's shared state (its deadbands).
type VarKey = (Arc<str>, u64, String);

/// The PV a name is, if we serve it (with deadbands of its own until the channel shares the
/// variable's).
fn resolve<S: Source>(source: &mut S, name: &str) -> Option<Pv> {
    let n = PvName::parse(name)?;
    if !source.has_process(n.process) {
        return None;
    }
    for (var, field) in n.readings() {
        if let Some(b) = source.bind(n.process, var) {
            let pv = Pv {
                target: Target::Var(b),
                field,
                name: Arc::from(name),
                deadbands: Arc::default(),
            };
            if pv.exists() {
                return Some(pv);
            }
        }
    }
    if n.rest == COMMAND_PV {
        let b = source.bind(n.process, "lastcmd")?;
        return Some(Pv {
            target: Target::Command(b),
            field: Field::Val,
            name: Arc::from(name),
            deadbands: Arc::default(),
        });
    }
    None
}

impl<S: Source> Core<S> {
    fn process_input(&mut self, id: usize, c: &mut Circuit) {
        let mut used = 0;
        while c.closing.is_none() {
            let buf = &c.inbuf[used..];
            let (h, n) = match decode_header(buf, MAX_PAYLOAD) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    self.counters.errors.add(1);
                    let mut req = Header::default();
                    if let Ok(Some((h, _))) = decode_header(buf, u32::MAX) {
                        req = h;
                    }
                    proto::push_error(&mut c.out, &req, 0, Status::TOLARGE, &e.to_string());
                    c.closing = Some(Closing::Protocol(e.to_string()));
                    break;
                }
            };
            let total = n + h.payload_size as usize;
            if buf.len() < total {
                break;
            }
            let payload = c.inbuf[used + n..used + total].to_vec();
            used += total;
            self.handle(id, c, &h, &payload);
        }
        c.inbuf.drain(..used);
        if c.inbuf.capacity() > 4 * MAX_PAYLOAD as usize && c.inbuf.len() < 1024 {
            c.inbuf.shrink_to(1024);
        }
    }

    fn identity<'a>(c: &'a Circuit) -> Identity<'a> {
        Identity {
            user: &c.user,
            host: &c.host,
            peer: c.peer.ip(),
        }
    }

    fn rights_of(&self, c: &Circuit, pv: &Pv) -> u32 {
        let mut r = self.access.rights(&Self::identity(c));
        if !pv.writable() {
            r &= !ACCESS_WRITE;
        }
        r
    }

    fn resend_rights(&mut self, c: &mut Circuit) {
        let mut changed = Vec::new();
        for ch in c.channels.values() {
            let r = self.rights_of(c, &ch.pv);
            if r != ch.rights {
                changed.push((ch.cid, r));
            }
        }
        for (cid, r) in changed {
            if let Some(ch) = c.channels.values_mut().find(|ch| ch.cid == cid) {
                ch.rights = r;
            }
            Header::new(cmd::ACCESS_RIGHTS, 0, 0, 0, cid, r).encode(&mut c.out);
        }
    }

    fn bad(&mut self, c: &mut Circuit, h: &Header, cid: u32, status: Status, text: &str) {
        self.counters.errors.add(1);
        proto::push_error(&mut c.out, h, cid, status, text);
    }

    fn handle(&mut self, id: usize, c: &mut Circuit, h: &Header, payload: &[u8]) {
        let req = match parse_request(h, payload) {
            Ok(r) => r,
            Err(e) => {
                let cid = if h.cmd == cmd::CREATE_CHAN { h.p1 } else { 0 };
                if h.cmd == cmd::CREATE_CHAN {
                    self.counters.errors.add(1);
                    Header::new(cmd::CREATE_CH_FAIL, 0, 0, 0, cid, 0).encode(&mut c.out);
                } else {
                    self.bad(c, h, cid, Status::INTERNAL, &e.to_string());
                }
                return;
            }
        };
        match req {
            Request::Version { .. } => proto::push_version(&mut c.out),
            Request::Echo => Header::new(cmd::ECHO, 0, 0, 0, 0, 0).encode(&mut c.out),
            Request::ClientName(u) => {
                c.user = u.to_owned();
                self.resend_rights(c);
            }
            Request::HostName(hn) => {
                c.host = hn.to_owned();
                self.resend_rights(c);
            }
            Request::EventsOff => c.events_on = false,
            Request::EventsOn => {
                c.events_on = true;
                self.flush_pending(c);
            }
            Request::ReadSync | Request::Search { .. } => {}
            Request::CreateChan { cid, name, .. } => self.create(c, cid, name),
            Request::Read {
                dtype,
                count,
                sid,
                ioid,
                notify,
            } => self.read(c, h, dtype, count, sid, ioid, notify),
            Request::Write {
                dtype,
                count,
                sid,
                notify,
                data,
                ..
            } => self.write(id, c, h, dtype, count, sid, notify, data),
            Request::EventAdd {
                dtype,
                count,
                sid,
                subid,
                mask,
            } => self.subscribe(id, c, h, dtype, count, sid, subid, mask),
            Request::EventCancel {
                dtype,
                count,
                sid,
                subid,
            } => {
                if let Some(ch) = c.channels.get_mut(&sid) {
                    if let Some(sub) = ch.subs.remove(&subid) {
                        c.nsubs -= 1;
                        self.unwatch(id, sid, subid, sub.watch);
                    }
                    Header::new(cmd::EVENT_ADD, 0, dtype, count, sid, subid).encode(&mut c.out);
                } else {
                    self.bad(c, h, 0, Status::BADCHID, "no channel of that id");
                }
            }
            Request::ClearChannel { sid, cid } => {
                if c.channels.contains_key(&sid) {
                    self.drop_channel(id, c, sid);
                    Header::new(cmd::CLEAR_CHANNEL, 0, 0, 0, sid, cid).encode(&mut c.out);
                } else {
                    self.bad(c, h, cid, Status::BADCHID, "no channel of that id");
                }
            }
            Request::Other(code) => {
                let text = format!("command {code} is not one a server takes");
                self.bad(c, h, 0, Status::INTERNAL, &text);
            }
        }
    }

    fn create(&mut self, c: &mut Circuit, cid: u32, name: &str) {
        let pv = if c.channels.len() >= MAX_CHANNELS {
            None
        } else {
            resolve(&mut self.source, name)
        };
        let Some(mut pv) = pv else {
            Header::new(cmd::CREATE_CH_FAIL, 0, 0, 0, cid, 0).encode(&mut c.out);
            return;
        };
        let b = pv.binding();
        let key = (b.process.clone(), b.generation, b.spec().name.clone());
        pv.deadbands = self.deadbands.entry(key).or_default().clone();
        let sid = self.next_sid;
        self.next_sid = self.next_sid.wrapping_add(1).max(1);
        let rights = self.rights_of(c, &pv);
        let (base, count) = pv.native();
        Header::new(cmd::ACCESS_RIGHTS, 0, 0, 0, cid, rights).encode(&mut c.out);
        Header::new(
            cmd::CREATE_CHAN,
            0,
            DbrType::plain(base).code(),
            count,
            cid,
            sid,
        )
        .encode(&mut c.out);
        self.counters.channels.add(1);
        c.channels.insert(
            sid,
            Channel {
                cid,
                pv,
                rights,
                subs: HashMap::new(),
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        c: &mut Circuit,
        h: &Header,
        dtype: u16,
        count: u32,
        sid: u32,
        ioid: u32,
        notify: bool,
    ) {
        let Some(ch) = c.channels.get(&sid) else {
            return self.bad(c, h, 0, Status::BADCHID, "no channel of that id");
        };
        let cid = ch.cid;
        if ch.rights & ACCESS_READ == 0 {
            return self.bad(c, h, cid, Status::NORDACCESS, "no read access");
        }
        let t = match DbrType::from_code(dtype) {
            Ok(t) => t,
            Err(e) => return self.bad(c, h, cid, Status::BADTYPE, &e.to_string()),
        };
        let sample = self.source.read(ch.pv.binding());
        self.scratch.clear();
        match ch.pv.encode(&sample, t, count, &mut self.scratch) {
            Ok(e) => {
                let n = e.count;
                let code = if notify { cmd::READ_NOTIFY } else { cmd::READ };
                let p1 = if notify { Status::NORMAL.0 } else { sid };
                proto::push_message(
                    &mut c.out,
                    Header::new(code, 0, dtype, n, p1, ioid),
                    &self.scratch,
                );
            }
            Err(status) => {
                let why = match &sample {
                    Err(ReadFail::Bad(w)) => w.clone(),
                    Err(ReadFail::Gone) => "the process is gone".to_owned(),
                    Ok(_) => format!("the value has no conversion to DBR type {dtype}"),
                };
                self.bad(c, h, cid, status, &why);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        id: usize,
        c: &mut Circuit,
        h: &Header,
        dtype: u16,
        count: u32,
        sid: u32,
        notify: bool,
        data: &[u8],
    ) {
        let Some(ch) = c.channels.get(&sid) else {
            return self.bad(c, h, 0, Status::BADCHID, "no channel of that id");
        };
        let cid = ch.cid;
        if ch.rights & ACCESS_WRITE == 0 {
            let why = if ch.pv.writable() {
                format!(
                    "{}: the gateway's access rules give you no write access",
                    ch.pv.name
                )
            } else {
                format!("{} is read-only", ch.pv.name)
            };
            self.counters.put_errors.add(1);
            return self.bad(c, h, cid, Status::NOWTACCESS, &why);
        }
        if matches!(ch.pv.field, Field::Mdel | Field::Adel) {
            let v = match decode_put(dtype, count, data) {
                Ok(proto::PutValue::Int(i)) => Some(i as f64),
                Ok(proto::PutValue::Float(f)) if f.is_finite() => Some(f),
                Ok(proto::PutValue::Text(t)) => {
                    t.trim().parse::<f64>().ok().filter(|f| f.is_finite())
                }
                _ => None,
            };
            let Some(v) = v else {
                self.counters.put_errors.add(1);
                let why = format!("{}: a deadband is a number", ch.pv.name);
                return self.bad(c, h, cid, Status::BADTYPE, &why);
            };
            ch.pv.deadbands.set(ch.pv.field, v);
            self.counters.puts.add(1);
            if notify {
                Header::new(cmd::WRITE_NOTIFY, 0, dtype, count, Status::NORMAL.0, h.p2)
                    .encode(&mut c.out);
            }
            return;
        }
        let line = decode_put(dtype, count, data)
            .map_err(|e| (Status::BADTYPE, e.to_string()))
            .and_then(|v| ch.pv.put_line(&v));
        match line {
            Ok(_) if c.puts_waiting >= MAX_PUTS_WAITING => {
                self.counters.put_errors.add(1);
                let why = format!(
                    "{MAX_PUTS_WAITING} writes of this client are still waiting for their owners: wait for their answers"
                );
                self.bad(c, h, cid, Status::PUTFAIL, &why);
            }
            Ok(line) => {
                c.puts_waiting += 1;
                let process = ch.pv.binding().process.clone();
                self.writers.submit(
                    &process,
                    WriteJob {
                        line,
                        reply: PutReply {
                            circuit: id,
                            req: *h,
                            cid,
                            notify,
                        },
                    },
                );
            }
            Err((status, why)) => {
                self.counters.put_errors.add(1);
                self.bad(c, h, cid, status, &why);
            }
        }
    }

    fn put_done(&mut self, c: &mut Circuit, d: WriteDone) {
        c.puts_waiting = c.puts_waiting.saturating_sub(1);
        let r = d.reply;
        match d.result {
            Ok(()) => {
                self.counters.puts.add(1);
                if r.notify {
                    Header::new(
                        cmd::WRITE_NOTIFY,
                        0,
                        r.req.data_type,
                        r.req.count,
                        Status::NORMAL.0,
                        r.req.p2,
                    )
                    .encode(&mut c.out);
                }
            }
            Err((status, text)) => {
                self.counters.put_errors.add(1);
                proto::push_error(&mut c.out, &r.req, r.cid, status, &text);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &mut self,
        id: usize,
        c: &mut Circuit,
        h: &Header,
        dtype: u16,
        count: u32,
        sid: u32,
        subid: u32,
        mask: u16,
    ) {
        let nsubs = c.nsubs;
        let Some(ch) = c.channels.get_mut(&sid) else {
            return self.bad(c, h, 0, Status::BADCHID, "no channel of that id");
        };
        let cid = ch.cid;
        let t = match DbrType::from_code(dtype) {
            Ok(t) => t,
            Err(e) => return self.bad(c, h, cid, Status::BADTYPE, &e.to_string()),
        };
        if ch.rights & ACCESS_READ == 0 {
            return self.bad(c, h, cid, Status::NORDACCESS, "no read access");
        }
        if nsubs >= MAX_SUBS || ch.subs.contains_key(&subid) {
            return self.bad(
                c,
                h,
                cid,
                Status::ADDFAIL,
                "too many subscriptions on this circuit, or that id is in use",
            );
        }
        let watch = self.source.watch(ch.pv.binding());
        self.watchers
            .entry(watch)
            .or_default()
            .push((id, sid, subid));
        // The first update: the value now.
        let sample = self.source.read(ch.pv.binding());
        let mut sub = Sub {
            dtype: t,
            count,
            mask,
            watch,
            pending: false,
            last_number: None,
            last_alarm: (0, 0),
        };
        if Self::encode_update(
            &mut self.scratch,
            &mut c.out,
            &ch.pv,
            &sample,
            &mut sub,
            subid,
            true,
        ) {
            self.counters.updates.add(1);
        }
        ch.subs.insert(subid, sub);
        c.nsubs += 1;
        self.counters.monitors.add(1);
    }

    /// Appends a monitor update for `sub` if its mask and the deadbands let it through (the
    /// first update always goes); false if nothing was appended.
    fn encode_update(
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
        pv: &Pv,
        sample: &Result<super::source::Sample, ReadFail>,
        sub: &mut Sub,
        subid: u32,
        first: bool,
    ) -> bool {
        scratch.clear();
        sub.pending = false;
        let Ok(e) = pv.encode(sample, sub.dtype, sub.count, scratch) else {
            return false;
        };
        if !first {
            let moved = |deadband: f64| match (e.number, sub.last_number) {
                (Some(n), Some(l)) if deadband >= 0.0 => (n - l).abs() > deadband,
                _ => true,
            };
            let value = sub.mask & DBE_VALUE != 0 && moved(pv.deadbands.mdel());
            let log = sub.mask & DBE_LOG != 0 && moved(pv.deadbands.adel());
            let alarm = sub.mask & DBE_ALARM != 0 && e.alarm != sub.last_alarm;
            if !(value || log || alarm) {
                return false;
            }
        }
        sub.last_number = e.number;
        sub.last_alarm = e.alarm;
        proto::push_message(
            out,
            Header::new(
                cmd::EVENT_ADD,
                0,
                sub.dtype.code(),
                e.count,
                Status::NORMAL.0,
                subid,
            ),
            scratch,
        );
        true
    }

    /// Sends the subscriptions marked pending their current value, while there is room.
    fn flush_pending(&mut self, c: &mut Circuit) {
        if !c.events_on {
            return;
        }
        let mut left = false;
        for ch in c.channels.values_mut() {
            for (subid, sub) in ch.subs.iter_mut() {
                if !sub.pending {
                    continue;
                }
                if c.out.len() >= OUT_SOFT {
                    left = true;
                    continue;
                }
                let sample = self.source.read(ch.pv.binding());
                if Self::encode_update(
                    &mut self.scratch,
                    &mut c.out,
                    &ch.pv,
                    &sample,
                    sub,
                    *subid,
                    false,
                ) {
                    self.counters.updates.add(1);
                }
            }
        }
        c.pending = left;
    }

    fn unwatch(&mut self, id: usize, sid: u32, subid: u32, watch: WatchId) {
        self.counters.monitors.add(-1);
        if let Some(v) = self.watchers.get_mut(&watch) {
            v.retain(|e| *e != (id, sid, subid));
            if v.is_empty() {
                self.watchers.remove(&watch);
            }
        }
        self.source.unwatch(watch);
    }

    fn drop_channel(&mut self, id: usize, c: &mut Circuit, sid: u32) {
        if let Some(ch) = c.channels.remove(&sid) {
            self.counters.channels.add(-1);
            for (subid, sub) in ch.subs {
                c.nsubs -= 1;
                self.unwatch(id, sid, subid, sub.watch);
            }
        }
    }
}
