//! The one event loop of a process: it waits on the control FIFO, the control socket and its
//! connections, signals (SIGTERM, SIGINT, SIGHUP, SIGCHLD), the timers of the runner, the
//! descriptors the daemon registered and the mailbox of its threads, and hands each event to the
//! [`Runner`]. Nothing in it blocks: replies are written as the clients take them.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token, Waker};
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::app::App;
use super::ctx::{FdToken, Readiness, APP_TOKEN_BASE};
use super::guard::Guard;
use super::runner::{Caller, Delivery, Origin, Runner};
use super::server::{Conn, ConnState, Server, CONN_BASE};
use crate::control::reply::{ErrorKind, Reply};
use crate::control::wire::{Frame, LineFramer};

const FIFO: Token = Token(0);
const LISTENER: Token = Token(1);
const SIGNALS: Token = Token(2);
const WAKER: Token = Token(3);

/// Bytes read from the FIFO in one turn before the loop looks at its other sources.
const FIFO_BUDGET: usize = 256 * 1024;
/// Requests of one connection run in one turn before the loop looks at the others.
const TURN_REQUESTS: usize = 16;
/// Reply bytes waiting for a client above which its next requests wait.
const OUT_HIGH: usize = 64 * 1024;

struct FifoSource {
    file: File,
    framer: LineFramer,
    /// Data may be left (the budget ran out before WouldBlock).
    more: bool,
}

/// The event loop.
pub(crate) struct EventLoop {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    signals: Signals,
    fifo: Option<FifoSource>,
    server: Option<Server>,
    guard: Option<Guard>,
    /// Connections with requests left after their turn.
    more: Vec<u64>,
    /// When the last poll found events (for busy polling, [`super::Ctx::set_busy_poll`]).
    last_event: Instant,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop").finish_non_exhaustive()
    }
}

fn readiness(e: &mio::event::Event) -> Readiness {
    Readiness {
        readable: e.is_readable() || e.is_read_closed(),
        writable: e.is_writable(),
        closed: e.is_read_closed() || e.is_write_closed(),
        error: e.is_error(),
    }
}

impl EventLoop {
    /// A loop with its signals installed (SIGTERM, SIGINT, SIGHUP, SIGCHLD no longer have their
    /// default actions from here on).
    pub(crate) fn new() -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(256),
            waker,
            signals,
            fifo: None,
            server: None,
            guard: None,
            more: Vec::new(),
            last_event: Instant::now(),
        })
    }

    pub(crate) fn registry(&self) -> io::Result<Registry> {
        self.poll.registry().try_clone()
    }

    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Serves the control FIFO (opened read-write and non-blocking).
    pub(crate) fn attach_fifo(&mut self, file: File) -> io::Result<()> {
        self.poll.registry().register(
            &mut mio::unix::SourceFd(&file.as_raw_fd()),
            FIFO,
            Interest::READABLE,
        )?;
        self.fifo = Some(FifoSource {
            file,
            framer: LineFramer::default(),
            more: true,
        });
        Ok(())
    }

    /// Serves the control socket.
    pub(crate) fn attach_server(&mut self, mut server: Server) -> io::Result<()> {
        self.poll
            .registry()
            .register(server.listener(), LISTENER, Interest::READABLE)?;
        self.server = Some(server);
        Ok(())
    }

    /// Guards clients against handlers that block the loop.
    pub(crate) fn attach_guard(&mut self, guard: Guard) {
        self.guard = Some(guard);
    }

    /// Runs until the runner has finished its exit sequence, or `stop` says so (it sees the
    /// replies of start-up commands, which go nowhere else).
    pub(crate) fn run<A: App>(
        &mut self,
        r: &mut Runner<A>,
        mut stop: impl FnMut(&[Delivery]) -> bool,
    ) {
        let mut startup = Vec::new();
        loop {
            self.deliver(r, &mut startup);
            if stop(&startup) {
                return;
            }
            if r.finished() {
                self.flush_before_exit(r);
                return;
            }
            let mut timeout = self.timeout(r);
            let busy = r.ctx.busy_poll;
            if !busy.is_zero() && timeout != Some(Duration::ZERO) {
                let now = Instant::now();
                if now.saturating_duration_since(self.last_event) < busy {
                    // Busy polling: look without sleeping, and let a task that shares this CPU
                    // (the peer that answers next) run in between.
                    std::thread::yield_now();
                    timeout = Some(Duration::ZERO);
                }
            }
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    r.ctx.error(&format!("event loop: poll failed: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if !busy.is_zero() && !self.events.is_empty() {
                self.last_event = Instant::now();
            }
            // The events are taken out of `self` while they are handled (no allocation).
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            // The FIFO first: a command written into it before a request was sent on the
            // socket runs before that request (`echo pause > t1.ctl; shvar cmd t1 status`).
            if events.iter().any(|e| e.token() == FIFO) {
                if let Some(f) = &mut self.fifo {
                    f.more = true;
                }
            }
            self.read_fifo(r);
            for e in events.iter() {
                let ready = readiness(e);
                match e.token() {
                    FIFO => {}
                    LISTENER => self.accept(r),
                    SIGNALS => {
                        for s in self.signals.pending() {
                            if let Ok(sig) = Signal::try_from(s) {
                                r.signal(sig);
                            }
                        }
                    }
                    WAKER => r.run_mailbox(),
                    Token(t) if t >= APP_TOKEN_BASE => r.ready(FdToken(t), ready),
                    Token(t) if t >= CONN_BASE => self.conn_event(r, t as u64, ready),
                    _ => {}
                }
            }
            self.events = events;
            for id in std::mem::take(&mut self.more) {
                self.service_conn(r, id);
            }
            self.resume_paused(r);
            if r.mailbox_pending() {
                r.run_mailbox();
            }
            r.advance(Instant::now());
            self.drop_stalled(r);
        }
    }

    fn timeout<A: App>(&mut self, r: &mut Runner<A>) -> Option<Duration> {
        if self.fifo.as_ref().is_some_and(|f| f.more)
            || r.mailbox_pending()
            || !self.more.is_empty()
        {
            return Some(Duration::ZERO);
        }
        let mut next = r.next_deadline();
        if let Some(s) = &mut self.server {
            for id in s.ids() {
                if let Some(d) = s.get(id).and_then(|c| c.stall_deadline()) {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
        }
        next.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Hands the runner's replies to their connections.
    fn deliver<A: App>(&mut self, r: &mut Runner<A>, startup: &mut Vec<Delivery>) {
        loop {
            let out = r.take_outbox();
            if out.is_empty() {
                return;
            }
            for d in out {
                match d.origin {
                    Origin::Client(id) => {
                        let Some(s) = &mut self.server else { continue };
                        let Some(c) = s.get(id) else { continue };
                        c.busy = false;
                        c.push_reply(&d.reply);
                        self.service_conn(r, id);
                    }
                    Origin::Startup(_) => startup.push(d),
                    Origin::Fifo | Origin::Internal => {}
                }
            }
        }
    }

    fn accept<A: App>(&mut self, r: &mut Runner<A>) {
        let Some(s) = &mut self.server else { return };
        let acc = s.accept(self.poll.registry());
        for why in acc.refused {
            r.bad_input("control socket", &why);
        }
        for id in acc.new {
            self.conn_event(
                r,
                id,
                Readiness {
                    readable: true,
                    ..Readiness::default()
                },
            );
        }
    }

    fn conn_event<A: App>(&mut self, r: &mut Runner<A>, id: u64, ready: Readiness) {
        let Some(s) = &mut self.server else { return };
        let Some(c) = s.get(id) else { return };
        if ready.readable || ready.closed {
            if let ConnState::Close(why) = c.read() {
                self.close(r, id, why);
                return;
            }
        }
        self.service_conn(r, id);
    }

    /// Runs the connection's next requests while it is free, then writes what it can.
    fn service_conn<A: App>(&mut self, r: &mut Runner<A>, id: u64) {
        // Write first: room made by the client lets the next requests run.
        if let Some(c) = self.server.as_mut().and_then(|s| s.get(id)) {
            if let ConnState::Close(why) = c.flush(self.poll.registry()) {
                self.close(r, id, why);
                return;
            }
        }
        let mut budget = TURN_REQUESTS;
        loop {
            let Some(s) = &mut self.server else { return };
            let Some(c) = s.get(id) else { return };
            // A client that does not take its replies gets no more work done for it; one with
            // many requests waits its turn behind the others.
            if c.out_len() > OUT_HIGH || budget == 0 {
                if budget == 0 {
                    self.more.push(id);
                }
                break;
            }
            let Some(frame) = c.next_request() else { break };
            budget -= 1;
            match frame {
                Frame::Bad(why) => {
                    let who = c.caller.who.clone();
                    c.push_reply(&Reply::error(ErrorKind::BadRequest, why.clone()));
                    r.bad_input("control socket", &format!("{who}: {why}"));
                }
                Frame::Line(line) => {
                    let caller = c.caller.clone();
                    let guarded = match (&self.guard, c.out_empty(), c.dup_fd()) {
                        (Some(g), true, Some(fd)) => r
                            .time_limit_of(&line)
                            .map(|limit| g.enter(fd, &line, limit)),
                        _ => None,
                    };
                    let reply = r.submit(&line, Origin::Client(id), &caller);
                    let answered = match (guarded, &self.guard) {
                        (Some(seq), Some(g)) => g.leave(seq),
                        _ => false,
                    };
                    let Some(s) = &mut self.server else { return };
                    let Some(c) = s.get(id) else { return };
                    match reply {
                        Some(rep) if answered => r.ctx.log.warn(format!(
                            "'{line}' returned after its caller was told it timed out: {}",
                            rep.text()
                        )),
                        Some(rep) => c.push_reply(&rep),
                        None => c.busy = true,
                    }
                }
            }
        }
        let Some(s) = &mut self.server else { return };
        let Some(c) = s.get(id) else { return };
        if let ConnState::Close(why) = c.flush(self.poll.registry()) {
            self.close(r, id, why);
        }
    }

    fn close<A: App>(&mut self, r: &mut Runner<A>, id: u64, why: Option<String>) {
        if let Some(s) = &mut self.server {
            if let (Some(why), Some(c)) = (why, s.get(id)) {
                let who = c.caller.who.clone();
                r.bad_input("control socket", &format!("{who}: {why}"));
            }
            s.remove(self.poll.registry(), id);
        }
    }

    /// Connections whose reading was paused (queue full) and that drained since.
    fn resume_paused<A: App>(&mut self, r: &mut Runner<A>) {
        let Some(s) = &mut self.server else { return };
        let ids: Vec<u64> = s
            .ids()
            .into_iter()
            .filter(|id| s.get(*id).is_some_and(|c: &mut Conn| c.read_paused()))
            .collect();
        for id in ids {
            self.conn_event(
                r,
                id,
                Readiness {
                    readable: true,
                    ..Readiness::default()
                },
            );
        }
    }

    fn drop_stalled<A: App>(&mut self, r: &mut Runner<A>) {
        let Some(s) = &mut self.server else { return };
        let now = Instant::now();
        let stalled: Vec<(u64, String)> = s
            .ids()
            .into_iter()
            .filter_map(|id| {
                let c = s.get(id)?;
                (c.stall_deadline()? <= now).then(|| (id, c.caller.who.clone()))
            })
            .collect();
        for (id, who) in stalled {
            r.bad_input(
                "control socket",
                &format!(
                    "{who} did not read its reply within {} s: connection dropped",
                    super::server::STALL.as_secs()
                ),
            );
            if let Some(s) = &mut self.server {
                s.remove(self.poll.registry(), id);
            }
        }
    }

    /// Reads the FIFO until it is drained (or the turn's budget is spent). A line left without
    /// its newline once the FIFO is drained is discarded, so it cannot swallow the next command.
    fn read_fifo<A: App>(&mut self, r: &mut Runner<A>) {
        let Some(f) = &mut self.fifo else { return };
        if !f.more {
            return;
        }
        let mut buf = [0u8; 8192];
        let mut frames = Vec::new();
        let mut taken = 0;
        let drained = loop {
            if taken >= FIFO_BUDGET {
                break false;
            }
            match f.file.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    taken += n;
                    f.framer.push(&buf[..n], &mut frames);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    r.ctx.error(&format!("control FIFO: read failed: {e}"));
                    break true;
                }
            }
        };
        if drained {
            f.more = false;
            frames.extend(f.framer.end_of_input());
        }
        let fifo = Caller::trusted("the control FIFO");
        for fr in frames {
            match fr {
                Frame::Line(line) => {
                    r.submit(&line, Origin::Fifo, &fifo);
                    // Replies for the FIFO go nowhere: the outcome is in lastcmd/lasterror.
                }
                Frame::Bad(why) => r.bad_input("control FIFO", &why),
            }
            self.deliver(r, &mut Vec::new());
        }
    }

    /// Gives the last replies (the `exit` itself) a moment to reach their clients.
    fn flush_before_exit<A: App>(&mut self, r: &mut Runner<A>) {
        let until = Instant::now() + Duration::from_millis(500);
        loop {
            let Some(s) = &mut self.server else { return };
            let ids = s.ids();
            let mut waiting = false;
            for id in ids {
                if let Some(c) = s.get(id) {
                    if !c.out_empty() {
                        if let ConnState::Open = c.flush(self.poll.registry()) {
                            waiting |= !c.out_empty();
                        }
                    }
                }
            }
            if !waiting || Instant::now() >= until {
                let _ = r;
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops the guard thread.
    pub(crate) fn stop(&mut self) {
        if let Some(g) = &self.guard {
            g.stop();
        }
    }
}
