//! The client and worker libraries of the transaction protocol ([`super::xproto`]), blocking,
//! for programs that talk to isectd: [`XClient`] logs in to a service and sends transactions;
//! [`XWorker`] is a transaction worker (started by isectd with the rendezvous as its first
//! arguments) that takes requests and sends replies.

use std::io::{self, Write};
use std::time::Duration;

use thiserror::Error;

use super::stream::{XStream, BUSY_POLL_ENV, MAX_BUSY_POLL_US, SOCKET_ENV};
use super::xproto::{self as xp, Header, Kind};

/// A transaction failed.
#[derive(Debug, Error)]
pub enum XError {
    /// The network.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// isectd sent something that is not the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// isectd (or the worker) answered with an error code.
    #[error("error {code}: {text}")]
    Reply {
        /// The code ([`xp::Error`]).
        code: i16,
        /// Its text.
        text: String,
    },
    /// The connection closed.
    #[error("isectd closed the connection")]
    Closed,
}

/// One piece received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Its header.
    pub header: Header,
    /// Its payload.
    pub data: Vec<u8>,
}

struct Wire {
    s: XStream,
    framer: xp::Framer,
    out: Vec<u8>,
    buf: Vec<u8>,
    spin: Duration,
}

impl Wire {
    fn new(s: XStream) -> Wire {
        Wire {
            s,
            framer: xp::Framer::default(),
            out: Vec::with_capacity(256),
            buf: vec![0; 64 * 1024],
            spin: Duration::ZERO,
        }
    }

    fn send(
        &mut self,
        kind: Kind,
        flags: u8,
        error: i16,
        tag: u32,
        seq: u32,
        p: &[u8],
    ) -> io::Result<()> {
        self.out.clear();
        xp::put(&mut self.out, kind, flags, error, tag, seq, p);
        self.s.write_all(&self.out)
    }

    fn recv(&mut self) -> Result<Piece, XError> {
        loop {
            if let Some((header, data)) = self.framer.next_frame().map_err(XError::Protocol)? {
                return Ok(Piece { header, data });
            }
            let n = self.s.read_polling(&mut self.buf, self.spin)?;
            if n == 0 {
                return Err(XError::Closed);
            }
            self.framer.push(&self.buf[..n]);
        }
    }
}

/// A client of isectd.
pub struct XClient {
    w: Wire,
    id: u32,
}

impl std::fmt::Debug for XClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XClient").field("id", &self.id).finish()
    }
}

impl XClient {
    /// Connects to isectd at `addr` and logs in to `service`: `HOST:PORT` is its client port
    /// (`req_port`), `unix:PATH` its Unix socket (`NAME.xact` in its runtime directory, for
    /// clients on the same machine).
    ///
    /// # Errors
    /// The connection fails, or isectd refuses the login (no such service, `reject`, too
    /// many clients).
    pub fn connect(addr: &str, service: &str) -> Result<XClient, XError> {
        let s = match addr.strip_prefix("unix:") {
            Some(path) => XStream::unix(std::path::Path::new(path))?,
            None => XStream::tcp(addr)?,
        };
        let mut w = Wire::new(s);
        w.send(Kind::Login, 0, 0, 0, 1, service.as_bytes())?;
        let p = w.recv()?;
        if p.header.kind != Kind::Welcome {
            return Err(XError::Protocol(format!(
                "{:?} instead of a welcome",
                p.header.kind
            )));
        }
        if p.header.error != 0 {
            return Err(XError::Reply {
                code: p.header.error,
                text: String::from_utf8_lossy(&p.data).into_owned(),
            });
        }
        Ok(XClient {
            w,
            id: p.header.tag,
        })
    }

    /// The client id isectd gave.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sets a time limit on every read (None: wait for ever).
    ///
    /// # Errors
    /// If the socket refuses.
    pub fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.w.s.set_read_timeout(t)
    }

    /// Sends one piece of a request; `more`: more pieces of it follow.
    ///
    /// # Errors
    /// The network.
    pub fn send_piece(&mut self, seq: u32, data: &[u8], more: bool) -> Result<(), XError> {
        Ok(self
            .w
            .send(Kind::Data, if more { xp::MORE } else { 0 }, 0, 0, seq, data)?)
    }

    /// The next piece of a reply.
    ///
    /// # Errors
    /// The network, or a frame that is not the protocol.
    pub fn recv_piece(&mut self) -> Result<Piece, XError> {
        let p = self.w.recv()?;
        if p.header.kind != Kind::Data {
            return Err(XError::Protocol(format!(
                "{:?} instead of a reply",
                p.header.kind
            )));
        }
        Ok(p)
    }

    /// One transaction: `req` (in pieces of at most [`xp::MAX_PAYLOAD`]), and the whole reply.
    ///
    /// # Errors
    /// The network, or an error reply (PROTOCOL INTERVENTION...).
    pub fn transact(&mut self, req: &[u8]) -> Result<Vec<u8>, XError> {
        let chunks: Vec<&[u8]> = if req.is_empty() {
            vec![req]
        } else {
            req.chunks(xp::MAX_PAYLOAD).collect()
        };
        for (i, c) in chunks.iter().enumerate() {
            self.send_piece(i as u32 + 1, c, i + 1 < chunks.len())?;
        }
        let mut out = Vec::new();
        loop {
            let p = self.recv_piece()?;
            if p.header.error != 0 {
                return Err(XError::Reply {
                    code: p.header.error,
                    text: String::from_utf8_lossy(&p.data).into_owned(),
                });
            }
            out.extend_from_slice(&p.data);
            if !p.header.more() {
                return Ok(out);
            }
        }
    }
}

/// What a worker receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A piece of a request of client `tag`.
    Piece(Piece),
    /// A command from isectd (`send WID reinit`, `status`): answer with [`XWorker::control_reply`].
    Control(String),
}

/// A transaction worker.
pub struct XWorker {
    w: Wire,
}

impl std::fmt::Debug for XWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XWorker").finish_non_exhaustive()
    }
}

impl XWorker {
    /// Logs in with the rendezvous isectd gave: its host, worker port, worker id and token
    /// (`argv[1..5]`; the program's own parameters start at `argv[ISDARGMAX]`). When isectd
    /// started the worker on its own machine it also gave `ISD_SOCKET`, its Unix socket: the
    /// login goes there (cheaper than TCP per transaction), and over TCP if that fails.
    ///
    /// # Errors
    /// The connection fails or the login is refused.
    pub fn login(host: &str, port: u16, id: u32, token: &str) -> Result<XWorker, XError> {
        let local =
            std::env::var_os(SOCKET_ENV).and_then(|p| XStream::unix(std::path::Path::new(&p)).ok());
        let s = match local {
            Some(s) => s,
            None => XStream::tcp((host, port))?,
        };
        let mut w = Wire::new(s);
        w.send(Kind::Login, 0, 0, 0, 1, format!("{id} {token}").as_bytes())?;
        let p = w.recv()?;
        if p.header.kind != Kind::Welcome || p.header.error != 0 {
            return Err(XError::Protocol("login refused".into()));
        }
        let mut me = XWorker { w };
        if let Some(us) = std::env::var(BUSY_POLL_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            me.set_busy_poll(Duration::from_micros(us.min(MAX_BUSY_POLL_US)));
        }
        Ok(me)
    }

    /// Polls for the next request this long, without sleeping, before it waits for one
    /// (zero, the default, waits at once). A request that comes within it is taken without the
    /// wake-up of a sleeping process: lower latency, for up to this much CPU after each
    /// reply. [`XWorker::login`] sets it from `ISD_BUSY_POLL_US`, which isectd gives the
    /// workers it starts (its `worker_busy_poll_us`).
    pub fn set_busy_poll(&mut self, d: Duration) {
        self.w.spin = d;
    }

    /// The next request piece or command; `Err(Closed)` when isectd closes (or shuts down its
    /// sending side): the worker should exit.
    ///
    /// # Errors
    /// The network, the protocol, or isectd gone.
    pub fn next_incoming(&mut self) -> Result<Incoming, XError> {
        let p = self.w.recv()?;
        match p.header.kind {
            Kind::Data => Ok(Incoming::Piece(p)),
            Kind::Control => Ok(Incoming::Control(
                String::from_utf8_lossy(&p.data).into_owned(),
            )),
            k => Err(XError::Protocol(format!("unexpected {k:?}"))),
        }
    }

    /// Sends a piece of the reply to client `tag`; `more`: more pieces follow (the worker stays
    /// BUSY until a piece without it).
    ///
    /// # Errors
    /// The network.
    pub fn reply(&mut self, tag: u32, seq: u32, data: &[u8], more: bool) -> Result<(), XError> {
        Ok(self.w.send(
            Kind::Data,
            if more { xp::MORE } else { 0 },
            0,
            tag,
            seq,
            data,
        )?)
    }

    /// Answers a command.
    ///
    /// # Errors
    /// The network.
    pub fn control_reply(&mut self, text: &str) -> Result<(), XError> {
        Ok(self.w.send(Kind::Control, 0, 0, 0, 1, text.as_bytes())?)
    }

    /// Serves whole requests until isectd closes: each request (its pieces joined) goes to `f`,
    /// whose answer is the reply. `status` is answered with `status` (the worker's own text),
    /// `reinit` runs `reinit` and answers `reinitialised`.
    ///
    /// # Errors
    /// The network or the protocol (isectd closing is `Ok`).
    pub fn serve(
        &mut self,
        mut f: impl FnMut(&[u8]) -> Vec<u8>,
        mut status: impl FnMut() -> String,
        mut reinit: impl FnMut(),
    ) -> Result<(), XError> {
        let mut req = Vec::new();
        loop {
            match self.next_incoming() {
                Ok(Incoming::Piece(p)) => {
                    req.extend_from_slice(&p.data);
                    if !p.header.more() {
                        let out = f(&req);
                        req.clear();
                        let chunks: Vec<&[u8]> = if out.is_empty() {
                            vec![&out[..]]
                        } else {
                            out.chunks(xp::MAX_PAYLOAD).collect()
                        };
                        for (i, c) in chunks.iter().enumerate() {
                            self.reply(p.header.tag, i as u32 + 1, c, i + 1 < chunks.len())?;
                        }
                    }
                }
                Ok(Incoming::Control(c)) => match c.trim() {
                    "status" => self.control_reply(&status())?,
                    "reinit" => {
                        reinit();
                        self.control_reply("reinitialised")?;
                    }
                    other => {
                        self.control_reply(&format!("unknown command {other:?}: reinit, status"))?
                    }
                },
                Err(XError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}
