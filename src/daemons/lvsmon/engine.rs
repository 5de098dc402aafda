//! The checker: one thread, one poll loop of its own, every check a small state machine through
//! the seed's phases (CONNECT, CONRESULT, QUERY, RECV, WAIT) over non-blocking sockets.
//!
//! It must never allocate once its loop has started: everything it touches is made beforehand
//! on the main thread ([`Table`]: definitions, slots, the deadline heap with its capacity) and
//! handed over whole; messages to the main thread go through a bounded channel whose buffer
//! exists already; texts are written into fixed buffers. `loop_allocs` shows the count (from
//! [`shvars::alloc`]) and the tests hold it at zero over thousands of probes, failures and
//! reloads included.
//!
//! It never blocks but in `poll`, and never waits on the main thread: the main thread wakes it
//! with a [`mio::Waker`], it wakes the main thread with a byte on a socket pair.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use shvars::region::{now_ns, IntVar};

use super::plan::{CheckDef, FrameworkProbe, Probe, Target, Watched};
use super::probe::{judge_datagram, HttpState, Judged, LineState};
use super::reason::{Reason, SmallText};
use super::verdict::{Change, Verdict};

mod sockets;

const WAKER: Token = Token(0);
/// Bytes read in one go (shared by every check: a check keeps only its parser's state).
const READ_BUF: usize = 16 * 1024;
/// The loop wakes at least this often (heartbeat, counters).
const BEAT_MS: u64 = 100;

/// Where a probe stands (the seed's phases; CONNECT is the instant a probe starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for the next probe.
    #[default]
    Wait,
    /// Connection initiated: waiting for it to complete (or fail).
    ConResult,
    /// Connected: sending the query.
    Query,
    /// Waiting for the answer.
    Recv,
}

#[derive(Debug)]
enum Sock {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

#[derive(Debug, Clone, Copy, Default)]
enum Parse {
    #[default]
    None,
    Http(HttpState),
    Line(LineState),
}

/// The running state of one check.
#[derive(Debug, Default)]
pub struct Slot {
    phase: Phase,
    /// Asked the main loop to open the watched process's region again.
    reopen_asked: bool,
    /// Which condition failed (framework checks).
    cond: u8,
    sock: Option<Sock>,
    /// Probe generation (in the socket's token: events of a closed socket are ignored).
    gen: u32,
    /// Timer generation (stale heap entries are skipped).
    tgen: u32,
    /// Request bytes written so far.
    written: u32,
    /// When the next probe is due (ms on the checker's clock).
    next_start: u64,
    /// When the current probe started (ns on the checker's clock).
    started_ns: u64,
    parse: Parse,
    /// The value that failed a framework condition.
    value: f64,
    /// The reason last written to `check.NAME.reason`, and its value.
    shown: (Reason, u8, u64),
    verdict: Verdict,
}

type Deadline = Reverse<(u64, u32, u32)>;

/// Everything the checker runs, made on the main thread and handed over whole.
#[derive(Debug)]
pub struct Table {
    /// Which load this is (1 for the first file, +1 per reload).
    pub gen: u32,
    /// The checks.
    pub defs: Vec<CheckDef>,
    slots: Vec<Slot>,
    heap: BinaryHeap<Deadline>,
}

impl Table {
    /// A table of `defs`, with room for every deadline it will ever hold.
    pub fn new(gen: u32, defs: Vec<CheckDef>) -> Box<Table> {
        let n = defs.len();
        let slots = (0..n).map(|_| Slot::default()).collect();
        Box::new(Table {
            gen,
            defs,
            slots,
            heap: BinaryHeap::with_capacity(6 * n + 64),
        })
    }

    /// Bytes of memory per check this table holds: its slot and its share of the deadline heap
    /// (not the definitions, see [`CheckDef`]).
    pub fn bytes_per_check() -> usize {
        std::mem::size_of::<Slot>() + 6 * std::mem::size_of::<Deadline>()
    }
}

/// From the main thread to the checker.
#[derive(Debug)]
pub enum ToChecker {
    /// Run this table from now on. `carry[i]` is the index, in the running table, of the check
    /// that new check `i` continues (same name): its state and counters carry over.
    Load {
        /// The new table.
        table: Box<Table>,
        /// Same-named checks of the running table.
        carry: Vec<Option<u32>>,
    },
    /// Stop probing (sockets closed, states kept).
    Pause,
    /// Probe again.
    Resume,
    /// The region of a framework check's process, opened again (`None`: still not running).
    Watched {
        /// The table it is for.
        gen: u32,
        /// The check.
        idx: u32,
        /// The region.
        watched: Option<Box<Watched>>,
    },
    /// A host name resolved (the main loop tries unresolved names again every interval).
    Resolved {
        /// The table it is for.
        gen: u32,
        /// The check.
        idx: u32,
        /// The address.
        target: Target,
    },
    /// End the loop.
    Stop,
}

/// A check changed state: the one announcement of an edge.
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    /// The table of the check.
    pub gen: u32,
    /// The check.
    pub idx: u32,
    /// The change.
    pub change: Change,
    /// The last probe's reason.
    pub reason: Reason,
    /// The reason's text as published.
    pub text: SmallText,
    /// Failures so far.
    pub fails: u64,
    /// When (ns since the Unix epoch).
    pub at_ns: u64,
}

/// From the checker to the main thread.
#[derive(Debug)]
pub enum FromChecker {
    /// A check changed state.
    Edge(Edge),
    /// A framework check's process must be looked up again.
    Reopen {
        /// The table.
        gen: u32,
        /// The check.
        idx: u32,
    },
    /// A table no longer run (to be dropped on the main thread).
    Retired(Box<Table>),
}

/// The checker's own variables.
#[derive(Debug, Clone)]
pub struct CheckerVars {
    /// `checks_done_since_start`.
    pub done: IntVar,
    /// `checker_heartbeat`: loop turns, bumped at least every 100 ms.
    pub beat: IntVar,
    /// `loop_allocs`: allocations by the checker thread since its loop started (-1 unknown).
    pub allocs: IntVar,
    /// `in_flight`: probes under way.
    pub in_flight: IntVar,
}

/// The main thread's handle on the checker.
#[derive(Debug)]
pub struct Handle {
    /// Messages to it.
    pub tx: Sender<ToChecker>,
    /// Messages from it.
    pub rx: Receiver<FromChecker>,
    /// Wakes it.
    pub waker: Arc<Waker>,
    /// Readable when it has sent something (drain, then read `rx`).
    pub wake_rx: UnixStream,
}

impl Handle {
    /// Sends a message and wakes the checker.
    pub fn send(&self, m: ToChecker) {
        let _ = self.tx.send(m);
        let _ = self.waker.wake();
    }
}

/// The checker.
#[derive(Debug)]
pub struct Engine {
    poll: Poll,
    /// Taken out while its events are handled.
    events: Option<Events>,
    rx: Receiver<ToChecker>,
    tx: Sender<FromChecker>,
    wake_tx: UnixStream,
    table: Box<Table>,
    buf: Box<[u8]>,
    epoch: Instant,
    vars: CheckerVars,
    paused: bool,
    notify_main: bool,
    done: u64,
    in_flight: i64,
}

/// Capacity of the channel to the main thread: every check may have an edge and a request
/// waiting before the main thread reads.
const OUT_CAP: usize = 8192;

impl Engine {
    /// A checker with no checks yet, paused, and its handle. `max_checks` sizes the channel to
    /// the main thread (more checks than that still work: a full channel waits for the main
    /// thread).
    ///
    /// # Errors
    /// If the poll instance or the socket pair cannot be made.
    pub fn new(vars: CheckerVars, max_checks: usize) -> io::Result<(Engine, Handle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (in_tx, in_rx) = crossbeam_channel::unbounded();
        let (out_tx, out_rx) = crossbeam_channel::bounded(OUT_CAP.max(3 * max_checks));
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        vars.allocs.set(-1);
        let engine = Engine {
            poll,
            events: Some(Events::with_capacity(1024)),
            rx: in_rx,
            tx: out_tx,
            wake_tx,
            table: Table::new(0, Vec::new()),
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            epoch: Instant::now(),
            vars,
            paused: true,
            notify_main: false,
            done: 0,
            in_flight: 0,
        };
        let handle = Handle {
            tx: in_tx,
            rx: out_rx,
            waker,
            wake_rx,
        };
        Ok((engine, handle))
    }

    /// Starts the checker's thread.
    ///
    /// # Errors
    /// If the thread cannot be started.
    pub fn spawn(self) -> io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("lvsmon-checker".into())
            .spawn(move || self.run())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The loop, until [`ToChecker::Stop`] or the main thread is gone.
    pub fn run(mut self) {
        let counting = shvars::alloc::installed();
        let allocs0 = shvars::alloc::thread_allocations();
        self.vars.allocs.set(if counting { 0 } else { -1 });
        let mut last_beat = 0;
        loop {
            if !self.control() {
                break;
            }
            let now = self.now_ms();
            let timeout = match self.table.heap.peek() {
                Some(Reverse((at, _, _))) => at.saturating_sub(now).min(BEAT_MS),
                None => BEAT_MS,
            };
            let Some(mut events) = self.events.take() else {
                break;
            };
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(timeout)))
            {
                if e.kind() != io::ErrorKind::Interrupted {
                    // Nothing sensible to do but not spin: the seed's runaway guard.
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            for ev in events.iter() {
                let token = ev.token();
                if token == WAKER {
                    continue;
                }
                let readable = ev.is_readable() || ev.is_read_closed();
                let writable = ev.is_writable();
                let failed = ev.is_error() || ev.is_write_closed();
                self.io_event(token, readable, writable, failed);
            }
            self.events = Some(events);
            self.due();
            self.compact();
            let now = self.now_ms();
            if now >= last_beat + BEAT_MS {
                last_beat = now;
                self.vars.beat.add(1);
                self.vars.done.set(self.done.min(i64::MAX as u64) as i64);
                self.vars.in_flight.set(self.in_flight);
                if counting {
                    let n = shvars::alloc::thread_allocations() - allocs0;
                    self.vars.allocs.set(n.min(i64::MAX as u64) as i64);
                }
            }
            if self.notify_main {
                self.notify_main = false;
                let _ = (&self.wake_tx).write(&[1]);
            }
        }
        self.abort_all();
        let old = std::mem::replace(&mut self.table, Table::new(0, Vec::new()));
        let _ = self.tx.try_send(FromChecker::Retired(old));
    }

    /// Handles the main thread's messages; false to stop.
    fn control(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(ToChecker::Stop) | Err(TryRecvError::Disconnected) => return false,
                Ok(ToChecker::Load { table, carry }) => self.load(table, &carry),
                Ok(ToChecker::Pause) => {
                    self.abort_all();
                    self.table.heap.clear();
                    self.paused = true;
                }
                Ok(ToChecker::Resume) => {
                    if self.paused {
                        self.paused = false;
                        self.spread(None);
                    }
                }
                Ok(ToChecker::Watched { gen, idx, watched }) => {
                    if gen == self.table.gen {
                        if let Some(d) = self.table.defs.get_mut(idx as usize) {
                            if let Probe::Framework(f) = &mut d.probe {
                                f.watched = watched;
                            }
                            self.table.slots[idx as usize].reopen_asked = false;
                        }
                    }
                }
                Ok(ToChecker::Resolved { gen, idx, target }) => {
                    if gen == self.table.gen {
                        if let Some(t) = self
                            .table
                            .defs
                            .get_mut(idx as usize)
                            .and_then(|d| d.probe.target_mut())
                        {
                            *t = target;
                        }
                    }
                }
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn send(&mut self, m: FromChecker) {
        // The channel is sized for every check's messages; if the main thread is that far
        // behind, wait for it rather than lose an edge.
        let _ = self.tx.send(m);
        self.notify_main = true;
    }

    /// Replaces the table; same-named checks keep their state.
    fn load(&mut self, mut new: Box<Table>, carry: &[Option<u32>]) {
        self.abort_all();
        let now = self.now_ms();
        for (i, c) in carry.iter().enumerate() {
            let Some(j) = c else { continue };
            let Some(old) = self.table.slots.get_mut(*j as usize) else {
                continue;
            };
            let s = &mut new.slots[i];
            s.verdict = old.verdict;
            s.shown = old.shown;
            s.cond = old.cond;
            s.value = old.value;
            s.next_start = old.next_start;
        }
        for (i, s) in new.slots.iter_mut().enumerate() {
            if carry.get(i).copied().flatten().is_none() {
                s.verdict = Verdict::new(now);
            }
        }
        let old = std::mem::replace(&mut self.table, new);
        self.send(FromChecker::Retired(old));
        if !self.paused {
            self.spread(Some(carry));
        }
    }

    /// Schedules every check's next probe, spread over its interval; checks carried over
    /// keep their schedule.
    fn spread(&mut self, carry: Option<&[Option<u32>]>) {
        let now = self.now_ms();
        let n = self.table.defs.len().max(1) as u64;
        self.table.heap.clear();
        for i in 0..self.table.defs.len() {
            let interval = self.table.defs[i].interval_ms;
            let carried = carry.is_some_and(|c| c.get(i).copied().flatten().is_some());
            let s = &mut self.table.slots[i];
            let at = if carried && s.next_start > now && s.next_start <= now + interval {
                s.next_start
            } else {
                now + interval * i as u64 / n
            };
            s.next_start = at;
            arm(&mut self.table.heap, s, i, at);
        }
    }

    /// Closes every socket; probes under way end without a verdict.
    fn abort_all(&mut self) {
        for s in &mut self.table.slots {
            if s.sock.take().is_some() {
                self.in_flight -= 1;
            }
            s.phase = Phase::Wait;
        }
    }

    /// Drops stale deadlines when the heap fills up (never grows past its capacity).
    fn compact(&mut self) {
        let t = &mut *self.table;
        if t.heap.len() > t.heap.capacity() / 2 {
            let slots = &t.slots;
            t.heap
                .retain(|Reverse((_, i, g))| slots.get(*i as usize).is_some_and(|s| s.tgen == *g));
        }
    }

    /// Runs the deadlines that are due.
    fn due(&mut self) {
        loop {
            let now = self.now_ms();
            let Some(&Reverse((at, i, g))) = self.table.heap.peek() else {
                return;
            };
            if at > now {
                return;
            }
            self.table.heap.pop();
            let i = i as usize;
            let Some(s) = self.table.slots.get(i) else {
                continue;
            };
            if s.tgen != g {
                continue;
            }
            match s.phase {
                Phase::Wait => {
                    if !self.paused {
                        self.start(i);
                    }
                }
                Phase::ConResult => self.finish(i, Reason::ConnectTimeout),
                Phase::Query | Phase::Recv => self.finish(i, Reason::RecvTimeout),
            }
        }
    }

    /// PHASE_CONNECT: starts probe `i`.
    fn start(&mut self, i: usize) {
        let now = self.now_ms();
        let t = &mut *self.table;
        let def = &mut t.defs[i];
        let s = &mut t.slots[i];
        s.gen = s.gen.wrapping_add(1);
        s.started_ns = self.epoch.elapsed().as_nanos() as u64;
        // Keep the cadence: the next probe is one interval after this one was due, unless this
        // one is late by more than an interval.
        s.next_start = if s.next_start + def.interval_ms > now {
            s.next_start + def.interval_ms
        } else {
            now + def.interval_ms
        };
        s.written = 0;
        let token = Token(((s.gen as usize) << 32) | (i + 1));
        let registry = self.poll.registry();
        let result: Result<(), Reason> = match &mut def.probe {
            Probe::Framework(f) => Err(framework(f, s, &self.tx, t.gen, i)),
            Probe::Tcp { target } | Probe::Http { target, .. } | Probe::Banner { target, .. } => {
                match target {
                    Target::Unresolved { .. } => Err(Reason::Dns),
                    Target::Addr(a) => match TcpStream::connect(*a) {
                        Ok(mut stream) => {
                            let _ =
                                socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                            let interest = if matches!(def.probe, Probe::Tcp { .. }) {
                                Interest::WRITABLE
                            } else {
                                Interest::WRITABLE | Interest::READABLE
                            };
                            match registry.register(&mut stream, token, interest) {
                                Ok(()) => {
                                    s.sock = Some(Sock::Tcp(stream));
                                    s.phase = Phase::ConResult;
                                    s.parse = match &def.probe {
                                        Probe::Http { expect, .. } => {
                                            Parse::Http(HttpState::new(expect))
                                        }
                                        Probe::Banner { expect, .. } => {
                                            Parse::Line(LineState::new(expect))
                                        }
                                        _ => Parse::None,
                                    };
                                    arm(&mut t.heap, s, i, now + def.connect_timeout_ms);
                                    Ok(())
                                }
                                Err(e) => Err(Reason::from_io(&e)),
                            }
                        }
                        Err(e) => Err(Reason::from_io(&e)),
                    },
                }
            }
            Probe::Udp { target, send, .. } => match target {
                Target::Unresolved { .. } => Err(Reason::Dns),
                Target::Addr(a) => match udp_probe(*a, send, registry, token) {
                    Ok(sock) => {
                        s.sock = Some(Sock::Udp(sock));
                        s.phase = Phase::Recv;
                        arm(&mut t.heap, s, i, now + def.recv_timeout_ms);
                        Ok(())
                    }
                    Err(e) => Err(Reason::from_io(&e)),
                },
            },
        };
        match result {
            Ok(()) => self.in_flight += 1,
            Err(r) => {
                if matches!(self.table.defs[i].probe, Probe::Framework(_)) {
                    self.notify_main |= self.table.slots[i].reopen_asked;
                }
                self.finish_inner(i, r, false);
            }
        }
    }

    /// PHASE_WAIT: the probe is over; record it and schedule the next one.
    fn finish(&mut self, i: usize, r: Reason) {
        self.finish_inner(i, r, true);
    }

    fn finish_inner(&mut self, i: usize, r: Reason, had_socket: bool) {
        let now = self.now_ms();
        let now_ns_mono = self.now_ns();
        let t = &mut *self.table;
        let def = &t.defs[i];
        let s = &mut t.slots[i];
        if had_socket && s.sock.take().is_some() {
            self.in_flight -= 1;
        }
        s.phase = Phase::Wait;
        self.done += 1;
        let ok = r.is_ok();
        let ms = now_ns_mono.saturating_sub(s.started_ns) as f64 / 1e6;
        let change = s.verdict.record(ok, now, &def.thresholds);
        let row = &def.row;
        row.checks.add(1);
        row.ok.set(i64::from(ok));
        row.last_ms.set(ms);
        if !ok {
            row.fails.set(s.verdict.fails.min(i64::MAX as u64) as i64);
        }
        let mut text = SmallText::default();
        let key = (r, s.cond, s.value.to_bits());
        if key != s.shown || change.is_some() {
            reason_text(&mut text, def, r, s);
            if key != s.shown {
                row.reason.store(text.as_str());
                s.shown = key;
            }
        }
        if let Some(change) = change {
            let at_ns = now_ns();
            row.status.set(change.new as i64);
            row.since.set((at_ns / 1_000_000_000) as i64);
            let edge = Edge {
                gen: t.gen,
                idx: i as u32,
                change,
                reason: r,
                text,
                fails: s.verdict.fails,
                at_ns,
            };
            let at = s.next_start.max(now);
            arm(&mut t.heap, s, i, at);
            self.send(FromChecker::Edge(edge));
            return;
        }
        let at = s.next_start.max(now);
        arm(&mut t.heap, s, i, at);
    }
}

/// Sets slot `i`'s one deadline.
fn arm(heap: &mut BinaryHeap<Deadline>, s: &mut Slot, i: usize, at: u64) {
    s.tgen = s.tgen.wrapping_add(1);
    heap.push(Reverse((at, i as u32, s.tgen)));
}

/// A UDP probe's socket, connected, with its datagram sent.
fn udp_probe(
    a: SocketAddr,
    send: &[u8],
    registry: &mio::Registry,
    token: Token,
) -> io::Result<UdpSocket> {
    let local: SocketAddr = if a.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut sock = UdpSocket::bind(local)?;
    sock.connect(a)?;
    sock.send(send)?;
    registry.register(&mut sock, token, Interest::READABLE)?;
    Ok(sock)
}

/// A framework check, at once: is the process alive, beating, and its variables in range?
fn framework(
    f: &mut FrameworkProbe,
    s: &mut Slot,
    tx: &Sender<FromChecker>,
    gen: u32,
    i: usize,
) -> Reason {
    let alive = f.watched.as_ref().is_some_and(|w| w.region.is_alive());
    let Some(w) = f.watched.as_ref().filter(|_| alive) else {
        if !s.reopen_asked {
            s.reopen_asked = tx
                .try_send(FromChecker::Reopen { gen, idx: i as u32 })
                .is_ok();
        }
        return Reason::ProcessDead;
    };
    let age_ms = now_ns().saturating_sub(w.region.heartbeat_ns()) / 1_000_000;
    if age_ms > f.max_age_ms {
        s.value = age_ms as f64;
        return Reason::HeartbeatStale;
    }
    for (k, c) in f.conditions.iter().enumerate() {
        s.cond = k as u8;
        match w.vars.get(k).and_then(Option::as_ref) {
            None => return Reason::NoVariable,
            Some(r) => {
                let v = r.get();
                if !c.op.holds(v, c.value) {
                    s.value = v;
                    return Reason::OutOfRange;
                }
            }
        }
    }
    s.cond = 0;
    s.value = 0.0;
    Reason::Ok
}

/// The text of `check.NAME.reason`, with the details the reason alone lacks.
fn reason_text(out: &mut SmallText, def: &CheckDef, r: Reason, s: &Slot) {
    let _ = write!(out, "{r}");
    match (r, &def.probe) {
        (Reason::Dns, p) => {
            if let Some(Target::Unresolved { host, why }) = p.target() {
                let _ = write!(out, ": {host}: {why}");
            }
        }
        (Reason::OutOfRange, Probe::Framework(f)) => {
            if let Some(c) = f.conditions.get(s.cond as usize) {
                let _ = write!(
                    out,
                    ": {} = {} (wanted {} {})",
                    c.var,
                    s.value,
                    c.op.text(),
                    c.value
                );
            }
        }
        (Reason::NoVariable, Probe::Framework(f)) => {
            if let Some(c) = f.conditions.get(s.cond as usize) {
                let _ = write!(out, ": {} has no numeric variable {}", f.process, c.var);
            }
        }
        (Reason::HeartbeatStale, Probe::Framework(f)) => {
            let _ = write!(
                out,
                ": {} last beat {} ms ago (limit {} ms)",
                f.process, s.value, f.max_age_ms
            );
        }
        (Reason::ProcessDead, Probe::Framework(f)) => {
            let _ = write!(out, ": {} does not run", f.process);
        }
        _ => {}
    }
}
