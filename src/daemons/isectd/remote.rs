//! isectd's side of the workers on other hosts: one authenticated connection per isdexecd
//! (`config worker SERVICE HOST PATH` with HOST not this machine), re-made with a backoff when
//! it is lost. While a host cannot be reached its workers are LOST (on the LAZY queue, not
//! dead); when it is back, the workers isdexecd still runs are taken up again and the missing
//! ones started.

use std::collections::HashMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use shvars::ProcName;

use super::conn::FrameConn;
use super::exec_proto::{self as proto, Msg};
use super::model::Host;
use super::{Due, FdUse, Isectd, Running, Watch};
use crate::control::client::ClientError;
use crate::control::reply::{Failure, Reply};
use crate::framework::{Ctx, FdToken, Interest};
use crate::support::backoff::Backoff;

/// A connection to one isdexecd.
#[derive(Debug)]
pub struct Link {
    conn: Option<(FrameConn, FdToken)>,
    /// Our nonce, once Auth is sent.
    nonce: Option<String>,
    up: bool,
    connecting: bool,
    backoff: Backoff,
    retry: Option<crate::framework::TimerId>,
}

/// The links, by `host:port`.
#[derive(Debug, Default)]
pub struct Links {
    links: HashMap<String, Link>,
    next_seq: u64,
    /// Control requests waiting for their reply: seq -> (send job, worker, who, sent at).
    controls: HashMap<u64, (u64, u32, String, Instant)>,
}

/// The address of a worker's isdexecd, if it is on another host.
pub fn remote_addr(host: &str) -> Option<String> {
    match super::model::parse_host(host) {
        Ok(Host::Remote { addr }) => Some(addr),
        _ => None,
    }
}

impl Isectd {
    fn link_up(&self, addr: &str) -> bool {
        self.remote.links.get(addr).is_some_and(|l| l.up)
    }

    /// Makes sure a connection to `addr` exists or is being made.
    fn ensure_link(&mut self, ctx: &mut Ctx, addr: &str) {
        let l = self
            .remote
            .links
            .entry(addr.to_owned())
            .or_insert_with(|| Link {
                conn: None,
                nonce: None,
                up: false,
                connecting: false,
                backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
                retry: None,
            });
        if l.conn.is_some() || l.connecting || l.retry.is_some() {
            return;
        }
        l.connecting = true;
        let (mb, a) = (ctx.mailbox::<Isectd>(), addr.to_owned());
        std::thread::spawn(move || {
            let r = a
                .to_socket_addrs()
                .map_err(|e| e.to_string())
                .and_then(|mut it| it.next().ok_or_else(|| "no address".to_owned()))
                .and_then(|sa| {
                    TcpStream::connect_timeout(&sa, Duration::from_secs(3))
                        .map_err(|e| e.to_string())
                });
            mb.post(move |d, ctx| d.connected(ctx, &a, r));
        });
    }

    fn connected(&mut self, ctx: &mut Ctx, addr: &str, r: Result<TcpStream, String>) {
        let Some(l) = self.remote.links.get_mut(addr) else {
            return;
        };
        l.connecting = false;
        let conn = r.and_then(|s| FrameConn::new(s).map_err(|e| e.to_string()));
        match conn.and_then(|c| {
            ctx.register_fd(c.fd(), Interest::ReadWrite)
                .map(|t| (c, t))
                .map_err(|e| e.to_string())
        }) {
            Ok((c, t)) => {
                self.fds.insert(t, FdUse::Link);
                l.conn = Some((c, t));
            }
            Err(e) => self.link_down(ctx, addr, &format!("cannot connect: {e}")),
        }
    }

    fn link_down(&mut self, ctx: &mut Ctx, addr: &str, why: &str) {
        let Some(l) = self.remote.links.get_mut(addr) else {
            return;
        };
        let was_up = l.up;
        l.up = false;
        l.nonce = None;
        if let Some((c, t)) = l.conn.take() {
            let _ = ctx.deregister_fd(c.fd());
            self.fds.remove(&t);
        }
        let wait = l.backoff.failed();
        let t = ctx.timer_after(wait);
        l.retry = Some(t);
        self.timers.insert(t, Due::Reconnect);
        let mut lost = 0;
        for w in self.workers.values_mut() {
            if remote_addr(&w.spec.host).as_deref() == Some(addr) && (w.proc.is_some() || w.wanted)
            {
                w.lost = true;
                lost += 1;
            }
        }
        let text = format!(
            "isdexecd {addr}: {why}; {lost} workers there LOST until it is back (retry in {} ms)",
            wait.as_millis()
        );
        if was_up || lost > 0 {
            ctx.error(&text);
            self.events.push(text);
        } else {
            ctx.log().warn(text);
        }
    }

    pub(super) fn reconnect_due(&mut self, ctx: &mut Ctx) {
        let due: Vec<String> = self
            .remote
            .links
            .iter_mut()
            .filter(|(_, l)| l.retry.is_some_and(|t| !ctx.timer_armed(t)))
            .map(|(a, l)| {
                l.retry = None;
                a.clone()
            })
            .collect();
        for a in due {
            self.ensure_link(ctx, &a);
        }
    }

    /// A link's descriptor is ready.
    pub(super) fn link_event(&mut self, ctx: &mut Ctx, token: FdToken) {
        let Some(addr) = self
            .remote
            .links
            .iter()
            .find(|(_, l)| l.conn.as_ref().is_some_and(|(_, t)| *t == token))
            .map(|(a, _)| a.clone())
        else {
            return;
        };
        let l = self.remote.links.get_mut(&addr).expect("found");
        let (c, _) = l.conn.as_mut().expect("found");
        if let Err(e) = c.flush() {
            return self.link_down(ctx, &addr, &e);
        }
        let msgs = match c.read() {
            Ok(m) => m,
            Err(e) => return self.link_down(ctx, &addr, &e),
        };
        for m in msgs {
            if let Err(e) = self.execd_says(ctx, &addr, m) {
                return self.link_down(ctx, &addr, &e);
            }
        }
    }

    fn send_link(&mut self, ctx: &mut Ctx, addr: &str, m: &Msg) -> bool {
        let r = self
            .remote
            .links
            .get_mut(addr)
            .and_then(|l| l.conn.as_mut())
            .map(|(c, _)| c.send(m));
        match r {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                self.link_down(ctx, addr, &e);
                false
            }
            None => false,
        }
    }

    fn remote_worker(&self, addr: &str, id: u32) -> bool {
        self.workers
            .get(&id)
            .is_some_and(|w| remote_addr(&w.spec.host).as_deref() == Some(addr))
    }

    fn execd_says(&mut self, ctx: &mut Ctx, addr: &str, m: Msg) -> Result<(), String> {
        let l = self.remote.links.get_mut(addr).ok_or("gone")?;
        if !l.up {
            match (m, l.nonce.clone()) {
                (Msg::Hello { nonce: server, .. }, None) => {
                    let key = self.key.clone().ok_or_else(|| {
                        "isectd has no key (--key FILE): it cannot authenticate to isdexecd"
                            .to_owned()
                    })?;
                    let mine = proto::nonce().map_err(|e| e.to_string())?;
                    let name = ctx.name().to_string();
                    let mac = proto::client_mac(&key, &server, &mine, &name);
                    l.nonce = Some(format!("{mine} {server}"));
                    let auth = Msg::Auth {
                        name,
                        nonce: mine,
                        mac,
                    };
                    self.send_link(ctx, addr, &auth);
                    return Ok(());
                }
                (Msg::Welcome { mac, running }, Some(n)) => {
                    let key = self.key.clone().ok_or("no key")?;
                    let (mine, server) = n.split_once(' ').ok_or("bad state")?;
                    if !proto::check_server(&key, mine, server, &mac) {
                        return Err("isdexecd did not prove it has the key: not trusted".into());
                    }
                    l.up = true;
                    l.backoff.succeeded();
                    self.event(ctx, format!("isdexecd {addr}: connected and authenticated"));
                    self.link_welcome(ctx, addr, running);
                    return Ok(());
                }
                (Msg::Denied { why }, _) => return Err(format!("refused us: {why}")),
                (other, _) => return Err(format!("unexpected before authentication: {other:?}")),
            }
        }
        match m {
            Msg::Started { id, pid } if self.remote_worker(addr, id) => {
                if let Some(p) = self.workers.get_mut(&id).and_then(|w| w.proc.as_mut()) {
                    p.pid = pid;
                }
                self.event(ctx, format!("worker {id} started on {addr} as pid {pid}"));
            }
            Msg::Refused { id, why } if self.remote_worker(addr, id) => {
                let w = self.workers.get_mut(&id).expect("checked");
                w.proc = None;
                w.failed = true;
                w.v.exit.set("refused by isdexecd");
                w.v.stderr.set(&why);
                let t = format!("worker {id}: isdexecd {addr} refused to start it: {why}");
                ctx.error(&t);
                self.events.push(t);
                self.dirty = true;
            }
            Msg::Exited { id, how, tail, .. } if self.remote_worker(addr, id) => {
                self.died_with(ctx, id, how, Some(tail));
            }
            Msg::Ready { id, fwname } if self.remote_worker(addr, id) => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.fwname = fwname.and_then(|n| ProcName::new(&n).ok());
                    w.v.fwname.set(w.fwname.as_ref().map_or("", |n| n.as_str()));
                }
                self.set_ready(ctx, id, &format!("isdexecd {addr} says so"));
            }
            Msg::Status { id, text } if self.remote_worker(addr, id) => {
                self.workers[&id].v.status.set(&text);
            }
            Msg::ControlReply { seq, ok, text } => {
                if let Some((job, wid, who, t0)) = self.remote.controls.remove(&seq) {
                    let r: Result<Reply, ClientError> = Ok(if ok {
                        Reply::ok(text)
                    } else {
                        Reply::Error(Failure::failed(text))
                    });
                    self.send_answered(ctx, job, wid, who, r, t0.elapsed());
                }
            }
            other => return Err(format!("unexpected message {other:?}")),
        }
        Ok(())
    }

    fn link_welcome(&mut self, ctx: &mut Ctx, addr: &str, running: Vec<proto::RunningWorker>) {
        let ids: Vec<u32> = self
            .workers
            .values()
            .filter(|w| !w.deleted && remote_addr(&w.spec.host).as_deref() == Some(addr))
            .map(|w| w.id)
            .collect();
        for id in ids {
            let r = running.iter().find(|r| r.id == id);
            let w = self.workers.get_mut(&id).expect("listed");
            w.lost = false;
            match r {
                Some(r) => {
                    w.proc = Some(Running {
                        pid: r.pid,
                        ticks: 0,
                        since: w.proc.as_ref().map_or_else(Instant::now, |p| p.since),
                        watch: Watch::Remote,
                        busy_poll_us: None,
                    });
                    w.ready = r.ready;
                    w.fwname = r.fwname.as_deref().and_then(|n| ProcName::new(n).ok());
                    if !w.wanted {
                        self.stop_worker(ctx, id);
                    }
                }
                None if w.proc.is_some() => {
                    self.died_with(
                        ctx,
                        id,
                        "ended while its isdexecd could not be reached".into(),
                        None,
                    );
                }
                None if w.wanted && !w.paused && !w.failed => {
                    let _ = self.start_worker(ctx, id, &format!("isdexecd {addr} reached"));
                }
                None => {}
            }
        }
        self.dirty = true;
    }

    /// Starts worker `id` through its host's isdexecd (or waits for the link).
    pub(super) fn remote_run(&mut self, ctx: &mut Ctx, id: u32, addr: &str) -> Result<i32, String> {
        if self.key.is_none() {
            return Err(format!(
                "host {addr} is another machine, and isectd has no key to authenticate to its isdexecd: start isectd with --key FILE"
            ));
        }
        self.ensure_link(ctx, addr);
        let w = self.workers.get_mut(&id).expect("checked");
        if !self.remote.links.get(addr).is_some_and(|l| l.up) {
            w.lost = true;
            return Ok(0);
        }
        let env = vec![
            ("ISD_NAME".to_owned(), ctx.name().to_string()),
            ("ISD_WORKER".to_owned(), id.to_string()),
            ("ISD_SERVICE".to_owned(), w.spec.service.clone()),
        ];
        let mut args = Vec::new();
        if w.spec.kind == super::model::Kind::Tp {
            // The rendezvous: isectd's address must be one the other host can reach (--listen).
            let b = self.broker.as_ref().expect("the broker runs");
            let tok = proto::nonce().map_err(|e| e.to_string())?;
            args.extend([
                b.worker_host.clone(),
                b.port.to_string(),
                id.to_string(),
                tok.clone(),
            ]);
            w.token = Some(tok);
        }
        args.extend(w.spec.args_for(id));
        let m = Msg::Run {
            id,
            path: w.spec.path.clone(),
            args,
            env,
        };
        w.lost = false;
        w.ready = false;
        w.proc = Some(Running {
            pid: 0,
            ticks: 0,
            since: Instant::now(),
            watch: Watch::Remote,
            busy_poll_us: None,
        });
        self.send_link(ctx, addr, &m);
        Ok(0)
    }

    /// Signals a remote worker.
    pub(super) fn remote_signal(&mut self, ctx: &mut Ctx, id: u32, sig: i32) {
        if let Some(addr) = self
            .workers
            .get(&id)
            .and_then(|w| remote_addr(&w.spec.host))
        {
            if self.link_up(&addr) {
                self.send_link(ctx, &addr, &Msg::Signal { id, sig });
            }
        }
    }

    /// Sends a command line to a remote framework worker; its answer comes to `send`.
    pub(super) fn remote_control(
        &mut self,
        ctx: &mut Ctx,
        job: u64,
        id: u32,
        who: String,
        line: &str,
        timeout: Duration,
    ) -> bool {
        let Some(addr) = self
            .workers
            .get(&id)
            .and_then(|w| remote_addr(&w.spec.host))
        else {
            return false;
        };
        self.remote.next_seq += 1;
        let seq = self.remote.next_seq;
        self.remote
            .controls
            .insert(seq, (job, id, who, Instant::now()));
        self.send_link(
            ctx,
            &addr,
            &Msg::Control {
                seq,
                id,
                line: line.to_owned(),
                timeout_ms: timeout.as_millis() as u64,
            },
        )
    }
}
