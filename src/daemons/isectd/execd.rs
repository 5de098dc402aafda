//! `isdexecd`: starts isectd's workers on another host. A framework process that listens on
//! TCP for isectd, authenticates it (a shared key: see [`super::exec_proto`]), runs only the
//! programs its own `--allow` list names, reports their pids, readiness and exits, relays
//! `send` commands to framework workers, and logs every command line and pid. When its isectd
//! goes away the workers keep running: the next connection of that isectd gets them back.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use shvars::region::{IntVar, VarSpec};
use shvars::ProcName;

use super::conn::FrameConn;
use super::exec_proto::{self as proto, Msg, RunningWorker};
use super::home::Home;
use super::notify::NotifySocket;
use crate::control::client;
use crate::control::reply::Reply;
use crate::framework::{
    App, BoxError, Command as Row, Ctx, FdToken, Interest, ProcessSpec, Readiness,
};

/// How the framework runs isdexecd.
pub const SPEC: ProcessSpec = ProcessSpec::new("isdexecd");

/// isdexecd's options.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The shared key file.
    pub key: PathBuf,
    /// Programs it may run (exact paths).
    pub allow: Vec<String>,
}

#[derive(Debug)]
struct Session {
    conn: FrameConn,
    nonce: String,
    /// The isectd's name, once authenticated.
    name: Option<String>,
}

#[derive(Debug)]
struct Child {
    pid: i32,
    ready: bool,
    fwname: Option<ProcName>,
}

#[derive(Debug)]
struct Vars {
    sessions: IntVar,
    running: IntVar,
    refused: IntVar,
    authfail: IntVar,
}

/// isdexecd.
#[derive(Debug)]
pub struct Execd {
    key: Vec<u8>,
    allow: HashSet<String>,
    listener: TcpListener,
    listen_token: FdToken,
    notify: NotifySocket,
    notify_token: FdToken,
    home: Home,
    sessions: HashMap<FdToken, Session>,
    /// (isectd name, worker id) -> child.
    children: HashMap<(String, u32), Child>,
    v: Vars,
}

impl Execd {
    /// Reads the key, binds the listener and the notify socket, publishes the variables.
    ///
    /// # Errors
    /// A bad key file, an address that cannot be bound.
    pub fn build(ctx: &mut Ctx, o: &ExecOptions) -> Result<Execd, BoxError> {
        let key = proto::read_key(&o.key)?;
        if o.allow.is_empty() {
            return Err("no program is allowed: give --allow PATH (repeatable) for each program isectd may start here".into());
        }
        let listener = TcpListener::bind(o.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", o.listen))?;
        listener.set_nonblocking(true)?;
        let home = Home::open(ctx.dir(), ctx.name())?;
        let notify = NotifySocket::bind(&home.file("notify.sock"))?;
        let r = ctx.region();
        r.add_int(
            VarSpec::int("port", i64::from(listener.local_addr()?.port()))
                .desc("TCP port isectd connects to"),
        )?;
        let v = Vars {
            sessions: r
                .add_int(VarSpec::int("sessions", 0).desc("Authenticated isectd connections"))?,
            running: r.add_int(VarSpec::int("running", 0).desc("Worker processes running"))?,
            refused: r.add_int(
                VarSpec::int("refused", 0)
                    .counter()
                    .desc("Programs refused (not allowed, not startable)"),
            )?,
            authfail: r.add_int(
                VarSpec::int("authfail", 0)
                    .counter()
                    .desc("Connections refused: wrong key, or not the protocol"),
            )?,
        };
        let listen_token = ctx.register_fd(listener.as_raw_fd(), Interest::Read)?;
        let notify_token = ctx.register_fd(notify.fd(), Interest::Read)?;
        ctx.log().info(format!(
            "listening on {}; allowed programs: {}",
            listener.local_addr()?,
            o.allow.join(", ")
        ));
        Ok(Execd {
            key,
            allow: o.allow.iter().cloned().collect(),
            listener,
            listen_token,
            notify,
            notify_token,
            home,
            sessions: HashMap::new(),
            children: HashMap::new(),
            v,
        })
    }

    fn accept(&mut self, ctx: &mut Ctx) {
        loop {
            match self.listener.accept() {
                Ok((s, peer)) => {
                    let Ok(mut conn) = FrameConn::new(s) else {
                        continue;
                    };
                    let nonce = match proto::nonce() {
                        Ok(n) => n,
                        Err(e) => {
                            ctx.error(&format!("cannot make a nonce: {e}"));
                            continue;
                        }
                    };
                    if conn
                        .send(&Msg::Hello {
                            version: proto::VERSION,
                            nonce: nonce.clone(),
                        })
                        .is_err()
                    {
                        continue;
                    }
                    match ctx.register_fd(conn.fd(), Interest::ReadWrite) {
                        Ok(t) => {
                            ctx.log().info(format!("connection from {peer}"));
                            self.sessions.insert(
                                t,
                                Session {
                                    conn,
                                    nonce,
                                    name: None,
                                },
                            );
                        }
                        Err(e) => ctx.error(&format!("cannot watch a connection: {e}")),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    ctx.error(&format!("accept: {e}"));
                    return;
                }
            }
        }
    }

    fn drop_session(&mut self, ctx: &mut Ctx, t: FdToken, why: &str) {
        if let Some(s) = self.sessions.remove(&t) {
            let _ = ctx.deregister_fd(s.conn.fd());
            ctx.log().info(format!(
                "connection {} ({}) closed: {why}; its workers keep running",
                s.conn.peer(),
                s.name.as_deref().unwrap_or("not authenticated")
            ));
        }
        self.count();
    }

    fn count(&self) {
        self.v
            .sessions
            .set(self.sessions.values().filter(|s| s.name.is_some()).count() as i64);
        self.v.running.set(self.children.len() as i64);
    }

    /// Sends `m` to the session of isectd `name`, if it is connected.
    fn tell_isectd(&mut self, ctx: &mut Ctx, name: &str, m: &Msg) {
        let t = self
            .sessions
            .iter()
            .find(|(_, s)| s.name.as_deref() == Some(name))
            .map(|(t, _)| *t);
        if let Some(t) = t {
            let r = self.sessions.get_mut(&t).map(|s| s.conn.send(m));
            if let Some(Err(e)) = r {
                self.drop_session(ctx, t, &e);
            }
        }
    }

    fn session(&mut self, ctx: &mut Ctx, t: FdToken) {
        let Some(s) = self.sessions.get_mut(&t) else {
            return;
        };
        let _ = s.conn.flush();
        let msgs = match s.conn.read() {
            Ok(m) => m,
            Err(e) => return self.drop_session(ctx, t, &e),
        };
        for m in msgs {
            if let Err(why) = self.handle(ctx, t, m) {
                return self.drop_session(ctx, t, &why);
            }
        }
    }

    fn handle(&mut self, ctx: &mut Ctx, t: FdToken, m: Msg) -> Result<(), String> {
        let s = self.sessions.get_mut(&t).ok_or("gone")?;
        let Some(name) = s.name.clone() else {
            let Msg::Auth { name, nonce, mac } = m else {
                self.v.authfail.add(1);
                return Err("spoke before authenticating".into());
            };
            if !proto::check_client(&self.key, &s.nonce, &nonce, &name, &mac) {
                self.v.authfail.add(1);
                ctx.error(&format!(
                    "{}: authentication failed (not our key): refused",
                    s.conn.peer()
                ));
                let _ = s.conn.send(&Msg::Denied {
                    why: "authentication failed: the key differs".into(),
                });
                return Err("authentication failed".into());
            }
            let running = self
                .children
                .iter()
                .filter(|((n, _), _)| *n == name)
                .map(|((_, id), c)| RunningWorker {
                    id: *id,
                    pid: c.pid,
                    ready: c.ready,
                    fwname: c.fwname.as_ref().map(ToString::to_string),
                })
                .collect();
            let mac = proto::server_mac(&self.key, &nonce, &s.nonce);
            s.conn.send(&Msg::Welcome { mac, running })?;
            ctx.log()
                .info(format!("{}: isectd {name} authenticated", s.conn.peer()));
            s.name = Some(name);
            self.count();
            return Ok(());
        };
        match m {
            Msg::Run {
                id,
                path,
                args,
                env,
            } => {
                let reply = match self.run(ctx, &name, id, &path, &args, &env) {
                    Ok(pid) => Msg::Started { id, pid },
                    Err(why) => {
                        self.v.refused.add(1);
                        ctx.error(&format!("{name} worker {id}: {path} refused: {why}"));
                        Msg::Refused { id, why }
                    }
                };
                self.tell_isectd(ctx, &name, &reply);
            }
            Msg::Signal { id, sig } => {
                if let (Some(c), Ok(sig)) = (
                    self.children.get(&(name.clone(), id)),
                    Signal::try_from(sig),
                ) {
                    let _ = kill(Pid::from_raw(-c.pid), sig);
                    let _ = kill(Pid::from_raw(c.pid), sig);
                    ctx.log().info(format!(
                        "{name} worker {id}: {} sent to pid {}",
                        sig.as_str(),
                        c.pid
                    ));
                }
            }
            Msg::Control {
                seq,
                id,
                line,
                timeout_ms,
            } => {
                let fw = self
                    .children
                    .get(&(name.clone(), id))
                    .and_then(|c| c.fwname.clone());
                let Some(fw) = fw else {
                    self.tell_isectd(
                        ctx,
                        &name,
                        &Msg::ControlReply {
                            seq,
                            ok: false,
                            text: format!("worker {id} is not a framework process running here"),
                        },
                    );
                    return Ok(());
                };
                let (dir, mb) = (ctx.dir().clone(), ctx.mailbox::<Execd>());
                std::thread::spawn(move || {
                    let r = client::send(&dir, &fw, &line, Duration::from_millis(timeout_ms));
                    let (ok, text) = match r {
                        Ok(Reply::Ok { text }) => (true, text),
                        Ok(Reply::Error(f)) => {
                            (false, format!("error ({}): {}", f.kind.as_str(), f.text))
                        }
                        Err(e) => (false, e.to_string()),
                    };
                    mb.post(move |d, ctx| {
                        d.tell_isectd(ctx, &name, &Msg::ControlReply { seq, ok, text })
                    });
                });
            }
            other => return Err(format!("unexpected message {other:?}")),
        }
        Ok(())
    }

    fn run(
        &mut self,
        ctx: &mut Ctx,
        name: &str,
        id: u32,
        path: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<i32, String> {
        if !self.allow.contains(path) {
            return Err(format!(
                "{path} is not among the programs this isdexecd may run (its --allow list)"
            ));
        }
        if let Some(c) = self.children.get(&(name.to_owned(), id)) {
            return Ok(c.pid);
        }
        let log = self
            .home
            .open_log_named(&format!("{name}.worker.{id}.log"))
            .map_err(|e| format!("cannot open its log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(path);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env("NOTIFY_SOCKET", self.notify.path())
            .env("SHVAR_DIR", ctx.dir().path())
            .process_group(0);
        for (k, v) in env {
            if k != "NOTIFY_SOCKET" && k != "SHVAR_DIR" {
                cmd.env(k, v);
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {path}: {e}"))?;
        let pid = child.id() as i32;
        drop(child);
        ctx.log().info(format!(
            "{name} worker {id}: started {} as pid {pid}",
            crate::control::words::join(
                &std::iter::once(path.to_owned())
                    .chain(args.iter().cloned())
                    .collect::<Vec<_>>()
            )
        ));
        self.children.insert(
            (name.to_owned(), id),
            Child {
                pid,
                ready: false,
                fwname: None,
            },
        );
        self.count();
        Ok(pid)
    }

    fn reap(&mut self, ctx: &mut Ctx) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(st) => {
                    let Some(pid) = st.pid().map(Pid::as_raw) else {
                        continue;
                    };
                    let key = self
                        .children
                        .iter()
                        .find(|(_, c)| c.pid == pid)
                        .map(|(k, _)| k.clone());
                    let Some((name, id)) = key else { continue };
                    self.children.remove(&(name.clone(), id));
                    let how = super::model::exit_text(&st);
                    ctx.log()
                        .info(format!("{name} worker {id}: pid {pid} {how}"));
                    let tail = self
                        .home
                        .tail_named(&format!("{name}.worker.{id}.log"), 5)
                        .unwrap_or_default();
                    self.tell_isectd(ctx, &name, &Msg::Exited { id, pid, how, tail });
                }
            }
        }
        self.count();
    }

    fn notified(&mut self, ctx: &mut Ctx) {
        for n in self.notify.drain() {
            let key = self
                .children
                .iter()
                .find(|(_, c)| c.pid == n.pid)
                .map(|(k, _)| k.clone());
            let Some((name, id)) = key else { continue };
            if let Some(text) = n.status.clone() {
                self.tell_isectd(ctx, &name, &Msg::Status { id, text });
            }
            if n.ready {
                let fw = super::procfs::framework_name(ctx.dir(), n.pid);
                if let Some(c) = self.children.get_mut(&(name.clone(), id)) {
                    c.ready = true;
                    c.fwname = fw.clone();
                }
                self.tell_isectd(
                    ctx,
                    &name,
                    &Msg::Ready {
                        id,
                        fwname: fw.map(|f| f.to_string()),
                    },
                );
            }
        }
    }
}

impl App for Execd {
    fn commands() -> Vec<Row<Self>> {
        vec![Row::new(
            "children",
            "List the workers this isdexecd runs, for which isectd",
        )
        .public()
        .handler(|d, _, _| {
            let mut v: Vec<String> = d
                .children
                .iter()
                .map(|((n, id), c)| {
                    format!(
                        "{n} worker {id}: pid {}{}",
                        c.pid,
                        if c.ready { " ready" } else { "" }
                    )
                })
                .collect();
            v.sort();
            Ok(v.join("\n").into())
        })]
    }

    fn ready(&mut self, ctx: &mut Ctx, fd: FdToken, _r: Readiness) {
        if fd == self.listen_token {
            self.accept(ctx);
        } else if fd == self.notify_token {
            self.notified(ctx);
        } else {
            self.session(ctx, fd);
        }
    }

    fn signal(&mut self, ctx: &mut Ctx, sig: Signal) {
        if sig == Signal::SIGCHLD {
            self.reap(ctx);
        }
    }

    fn shutdown(&mut self, ctx: &mut Ctx) {
        // The workers belong to their isectd: an isdexecd that exits stops them.
        for ((name, id), c) in &self.children {
            let _ = kill(Pid::from_raw(-c.pid), Signal::SIGTERM);
            let _ = kill(Pid::from_raw(c.pid), Signal::SIGTERM);
            ctx.log().info(format!(
                "{name} worker {id}: SIGTERM to pid {} (isdexecd exits)",
                c.pid
            ));
        }
    }
}
