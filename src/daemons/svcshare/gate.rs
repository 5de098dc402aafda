//! The proxy gate: the seed's tunnel. Clients connect to `--listen`; while this peer holds the
//! resource the gate forwards their bytes to `--upstream` and back, counting them (the MB of
//! `force MB`); while it does not, nothing moves.
//!
//! - Paused, connections are held, not broken: accepted and left unread, at most `hold_max` of
//!   them and each for at most `hold_for` (then closed, logged); a connection over the bound is
//!   closed at once. Resuming pumps every held connection.
//! - Before every write (either direction) the gate asks its fence: is this peer's grant still
//!   current and its lease unexpired? If not, nothing is written and the owner is told.
//! - With `stamp`, every upstream connection starts with `SVCSHARE-TOKEN <token> <peer>\r\n`, so
//!   the resource itself can refuse a token older than one it has seen (the fencing of Kleppmann's
//!   argument: a holder stopped between its check and its write is refused there). A stamped
//!   stream belongs to its grant: under a later grant it is closed, client side too.
//!
//! Everything runs on the framework's event loop (edge-triggered: every pump goes on until the
//! kernel says `WouldBlock`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};

use crate::framework::{Ctx, FdToken, Interest};

/// Bytes buffered per direction of a connection.
const BUF: usize = 64 * 1024;

/// Which end of a connection a descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

#[derive(Debug)]
struct Up {
    stream: TcpStream,
    token: FdToken,
    connected: bool,
    grant: u64,
}

#[derive(Debug)]
struct Conn {
    client: TcpStream,
    ctoken: FdToken,
    peer: SocketAddr,
    up: Option<Up>,
    c2u: Vec<u8>,
    u2c: Vec<u8>,
    held_since: Instant,
}

/// What a pump found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// Fine.
    Ok,
    /// The fence said no before a write: the grant is stale.
    Stale,
}

/// The gate's settings.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The shared resource.
    pub upstream: SocketAddr,
    /// Stamp upstream connections with the grant's token.
    pub stamp: bool,
    /// At most this many connections held while paused.
    pub hold_max: usize,
    /// Each held at most this long while paused.
    pub hold_for: Duration,
    /// This peer's name (in the stamp).
    pub peer: String,
}

/// The gate.
#[derive(Debug)]
pub struct Gate {
    cfg: GateConfig,
    listener: TcpListener,
    ltoken: FdToken,
    conns: HashMap<u64, Conn>,
    by_fd: HashMap<FdToken, (u64, Side)>,
    next: u64,
    /// Bytes forwarded, both directions.
    pub bytes: u64,
    /// Connections closed because they were held too long or over the bound.
    pub dropped: u64,
}

impl Gate {
    /// Listens on `cfg.listen` and registers the listener.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn open(ctx: &mut Ctx, cfg: GateConfig) -> Result<Gate, String> {
        let listener = TcpListener::bind(cfg.listen)
            .map_err(|e| format!("--listen {}: cannot listen: {e}", cfg.listen))?;
        let ltoken = ctx
            .register_fd(listener.as_raw_fd(), Interest::Read)
            .map_err(|e| format!("--listen {}: {e}", cfg.listen))?;
        Ok(Gate {
            cfg,
            listener,
            ltoken,
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            next: 0,
            bytes: 0,
            dropped: 0,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Whether `fd` is one of the gate's.
    pub fn owns(&self, fd: FdToken) -> bool {
        fd == self.ltoken || self.by_fd.contains_key(&fd)
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Handles readiness of one of the gate's descriptors. `grant` is the token this peer
    /// holds, if it does; `fence` is asked before every write.
    pub fn ready(
        &mut self,
        ctx: &mut Ctx,
        fd: FdToken,
        grant: Option<u64>,
        fence: &mut dyn FnMut() -> bool,
        log: &mut dyn FnMut(String),
    ) -> Pumped {
        if fd == self.ltoken {
            self.accept(ctx, grant.is_some(), log);
            if let Some(g) = grant {
                return self.pump_all(ctx, g, fence, log);
            }
            return Pumped::Ok;
        }
        let Some(&(id, side)) = self.by_fd.get(&fd) else {
            return Pumped::Ok;
        };
        if side == Side::Upstream {
            if let Some(up) = self.conns.get_mut(&id).and_then(|c| c.up.as_mut()) {
                if !up.connected {
                    match up.stream.take_error() {
                        Ok(None) if up.stream.peer_addr().is_ok() => up.connected = true,
                        Ok(None) => {}
                        Ok(Some(e)) | Err(e) => {
                            log(format!(
                                "proxy: cannot connect to the upstream {}: {e}",
                                self.cfg.upstream
                            ));
                            self.close(ctx, id);
                            return Pumped::Ok;
                        }
                    }
                }
            }
        }
        match grant {
            Some(g) => self.pump(ctx, id, g, fence, log),
            None => Pumped::Ok,
        }
    }

    fn accept(&mut self, ctx: &mut Ctx, open: bool, log: &mut dyn FnMut(String)) {
        loop {
            let (client, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log(format!("proxy: accept failed: {e}"));
                    return;
                }
            };
            if !open && self.conns.len() >= self.cfg.hold_max {
                self.dropped += 1;
                log(format!(
                    "proxy: paused and already holding {} connections (the bound): closed the connection from {peer}",
                    self.cfg.hold_max
                ));
                continue;
            }
            let ctoken = match ctx.register_fd(client.as_raw_fd(), Interest::ReadWrite) {
                Ok(t) => t,
                Err(e) => {
                    log(format!(
                        "proxy: cannot watch the connection from {peer}: {e}"
                    ));
                    continue;
                }
            };
            let id = self.next;
            self.next += 1;
            self.by_fd.insert(ctoken, (id, Side::Client));
            self.conns.insert(
                id,
                Conn {
                    client,
                    ctoken,
                    peer,
                    up: None,
                    c2u: Vec::new(),
                    u2c: Vec::new(),
                    held_since: Instant::now(),
                },
            );
        }
    }

    /// Pumps every connection (after a grant: held connections move again).
    pub fn pump_all(
        &mut self,
        ctx: &mut Ctx,
        grant: u64,
        fence: &mut dyn FnMut() -> bool,
        log: &mut dyn FnMut(String),
    ) -> Pumped {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            if self.pump(ctx, id, grant, fence, log) == Pumped::Stale {
                return Pumped::Stale;
            }
        }
        Pumped::Ok
    }

    /// Called when the peer stops holding: held connections start their clock.
    pub fn paused(&mut self) {
        let now = Instant::now();
        for c in self.conns.values_mut() {
            c.held_since = now;
        }
    }

    /// Closes connections held longer than the bound (while paused).
    pub fn expire_held(&mut self, ctx: &mut Ctx, log: &mut dyn FnMut(String)) {
        let old: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.held_since.elapsed() > self.cfg.hold_for)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            if let Some(c) = self.conns.get(&id) {
                log(format!(
                    "proxy: the connection from {} was held paused for more than {} s (the bound): closed",
                    c.peer,
                    self.cfg.hold_for.as_secs_f64()
                ));
            }
            self.dropped += 1;
            self.close(ctx, id);
        }
    }

    fn close(&mut self, ctx: &mut Ctx, id: u64) {
        if let Some(c) = self.conns.remove(&id) {
            let _ = ctx.deregister_fd(c.client.as_raw_fd());
            self.by_fd.remove(&c.ctoken);
            if let Some(up) = c.up {
                let _ = ctx.deregister_fd(up.stream.as_raw_fd());
                self.by_fd.remove(&up.token);
            }
        }
    }

    fn pump(
        &mut self,
        ctx: &mut Ctx,
        id: u64,
        grant: u64,
        fence: &mut dyn FnMut() -> bool,
        log: &mut dyn FnMut(String),
    ) -> Pumped {
        let Some(c) = self.conns.get_mut(&id) else {
            return Pumped::Ok;
        };
        if let Some(up) = &c.up {
            if self.cfg.stamp && up.grant != grant {
                log(format!(
                    "proxy: the connection from {} was stamped with token {}, now {grant}: closed (a stamped stream belongs to its grant)",
                    c.peer, up.grant
                ));
                self.close(ctx, id);
                return Pumped::Ok;
            }
        } else {
            let stream = match TcpStream::connect(self.cfg.upstream) {
                Ok(s) => s,
                Err(e) => {
                    log(format!(
                        "proxy: cannot connect to the upstream {}: {e}",
                        self.cfg.upstream
                    ));
                    self.close(ctx, id);
                    return Pumped::Ok;
                }
            };
            let token = match ctx.register_fd(stream.as_raw_fd(), Interest::ReadWrite) {
                Ok(t) => t,
                Err(e) => {
                    log(format!("proxy: cannot watch the upstream connection: {e}"));
                    self.close(ctx, id);
                    return Pumped::Ok;
                }
            };
            self.by_fd.insert(token, (id, Side::Upstream));
            if self.cfg.stamp {
                let mut s = format!("SVCSHARE-TOKEN {grant} {}\r\n", self.cfg.peer).into_bytes();
                s.append(&mut c.c2u);
                c.c2u = s;
            }
            c.up = Some(Up {
                stream,
                token,
                connected: false,
                grant,
            });
            // The connect completes later: the writable edge brings us back.
            return Pumped::Ok;
        }
        let up = c.up.as_mut().expect("upstream connected above");
        if !up.connected {
            return Pumped::Ok;
        }
        let mut buf = [0u8; 16 * 1024];
        let mut eof = false;
        loop {
            let mut progress = false;
            // Client to upstream.
            if !c.c2u.is_empty() {
                if !fence() {
                    return Pumped::Stale;
                }
                match up.stream.write(&c.c2u) {
                    Ok(n) => {
                        c.c2u.drain(..n);
                        self.bytes += n as u64;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => eof = true,
                }
            }
            if c.c2u.is_empty() && !eof {
                match c.client.read(&mut buf[..BUF.min(16 * 1024)]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        c.c2u.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => eof = true,
                }
            }
            // Upstream to client.
            if !c.u2c.is_empty() {
                if !fence() {
                    return Pumped::Stale;
                }
                match c.client.write(&c.u2c) {
                    Ok(n) => {
                        c.u2c.drain(..n);
                        self.bytes += n as u64;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => eof = true,
                }
            }
            if c.u2c.is_empty() && !eof {
                match up.stream.read(&mut buf) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        c.u2c.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => eof = true,
                }
            }
            if eof || !progress {
                break;
            }
        }
        if eof {
            // Flush what is left where the fence allows, then close both sides.
            if !c.u2c.is_empty() && fence() {
                if let Ok(n) = c.client.write(&c.u2c) {
                    self.bytes += n as u64;
                }
            }
            if !c.c2u.is_empty() && fence() {
                if let Ok(n) = up.stream.write(&c.c2u) {
                    self.bytes += n as u64;
                }
            }
            self.close(ctx, id);
        }
        Pumped::Ok
    }
}
