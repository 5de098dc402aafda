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

use super::access::{Access, Group, Identity};
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

mod requests;

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
            let access = &core.access;
            let a = search::answer(
                &buf[..n],
                from.ip(),
                port,
                *announce,
                &mut core.budget,
                |name| resolve(source, name).is_some_and(|pv| pv_group(access, &pv).is_some()),
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

/// The access group of `pv`, or `None` if the PV list does not let us serve it. Without a
/// list every PV is in DEFAULT, and no name is built (searches stay as cheap as before).
fn pv_group(access: &Access, pv: &Pv) -> Option<Group> {
    if !access.has_pvlist() {
        return Some(Group::DEFAULT);
    }
    access.group_of(&pv.base_name())
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
