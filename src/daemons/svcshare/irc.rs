//! The seed's IRC front: svcshare joins a channel and takes its commands there. Plain-text IRC
//! (RFC 1459/2812) over one non-blocking socket on the framework's event loop.
//!
//! - In the channel: `.status` and `.version` (every bot answers; anyone may ask), and
//!   `NICK: command [extra]` addressed to this bot.
//! - In a private message: `command [extra]`.
//! - Who may command: the nicks of `--irc-allow`; with `--irc-key`, also anyone in the
//!   channel (which the key closes: only those who know it can join). Everyone else gets a
//!   refusal. IRC nicks are not authenticated by the protocol: use a network with registered
//!   nicks (services) or the channel key when that matters.
//! - A lost connection is retried every few seconds; `PING` is answered.

use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::framework::{Ctx, FdToken, Interest, Readiness};

/// How long to wait before connecting again.
const RETRY: Duration = Duration::from_secs(3);
/// At most this many lines in one answer (IRC servers throttle floods).
const MAX_LINES: usize = 8;

/// Where and as whom.
#[derive(Debug, Clone)]
pub struct IrcConfig {
    /// `HOST:PORT`.
    pub server: String,
    /// The channel (`#share`).
    pub channel: String,
    /// The bot's nick.
    pub nick: String,
    /// Nicks that may command.
    pub allow: Vec<String>,
    /// The channel key, if the channel is closed by one.
    pub key: Option<String>,
}

/// A command that came over IRC.
#[derive(Debug, Clone)]
pub struct IrcRequest {
    /// Who sent it.
    pub from: String,
    /// Where the answer goes (the channel, or the sender).
    pub reply_to: String,
    /// Prefix answers with the sender's nick (in the channel).
    pub address: bool,
    /// The command line.
    pub line: String,
    /// Whether the sender may command.
    pub allowed: bool,
    /// A public `.status`/`.version`: only those are answered.
    pub only_public: bool,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    token: FdToken,
    inbuf: Vec<u8>,
    out: Vec<u8>,
}

/// The IRC connection.
#[derive(Debug)]
pub struct Irc {
    cfg: IrcConfig,
    conn: Option<Conn>,
    nick: String,
    next_try: Instant,
    /// Whether the bot is in its channel.
    pub joined: bool,
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl Irc {
    /// Starts connecting (failures are logged and retried).
    pub fn connect(ctx: &mut Ctx, cfg: IrcConfig) -> Irc {
        let mut i = Irc {
            nick: cfg.nick.clone(),
            cfg,
            conn: None,
            next_try: Instant::now(),
            joined: false,
        };
        i.try_connect(ctx);
        i
    }

    fn try_connect(&mut self, ctx: &mut Ctx) {
        self.next_try = Instant::now() + RETRY;
        let addr = match self.cfg.server.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            Ok(None) | Err(_) => {
                ctx.error(&format!(
                    "irc: {} does not resolve (retrying)",
                    self.cfg.server
                ));
                return;
            }
        };
        let stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                ctx.error(&format!("irc: cannot connect to {addr}: {e} (retrying)"));
                return;
            }
        };
        let token = match ctx.register_fd(stream.as_raw_fd(), Interest::ReadWrite) {
            Ok(t) => t,
            Err(e) => {
                ctx.error(&format!("irc: {e}"));
                return;
            }
        };
        self.nick = self.cfg.nick.clone();
        self.joined = false;
        let mut c = Conn {
            stream,
            token,
            inbuf: Vec::new(),
            out: Vec::new(),
        };
        c.out.extend_from_slice(
            format!("NICK {0}\r\nUSER {0} 0 * :svcshare {0}\r\n", self.nick).as_bytes(),
        );
        self.conn = Some(c);
        ctx.log().info(format!(
            "irc: connecting to {} as {}",
            self.cfg.server, self.nick
        ));
    }

    /// Whether `fd` is the IRC socket.
    pub fn owns(&self, fd: FdToken) -> bool {
        self.conn.as_ref().is_some_and(|c| c.token == fd)
    }

    fn send(&mut self, line: &str) {
        if let Some(c) = self.conn.as_mut() {
            // One line, no CR/LF inside: IRC lines end at the first newline.
            let clean: String = line.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            c.out.extend_from_slice(clean.as_bytes());
            c.out.extend_from_slice(b"\r\n");
        }
    }

    fn flush(&mut self, ctx: &mut Ctx) {
        let mut broken = None;
        if let Some(c) = self.conn.as_mut() {
            while !c.out.is_empty() {
                match c.stream.write(&c.out) {
                    Ok(0) => break,
                    Ok(n) => {
                        c.out.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                    Err(e) => {
                        broken = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        if let Some(e) = broken {
            self.drop_conn(ctx, &e);
        }
    }

    fn drop_conn(&mut self, ctx: &mut Ctx, why: &str) {
        if let Some(c) = self.conn.take() {
            let _ = ctx.deregister_fd(c.stream.as_raw_fd());
            ctx.error(&format!(
                "irc: connection to {} lost ({why}); retrying in {} s",
                self.cfg.server,
                RETRY.as_secs()
            ));
        }
        self.joined = false;
        self.next_try = Instant::now() + RETRY;
    }

    /// Reconnects when it is time.
    pub fn upkeep(&mut self, ctx: &mut Ctx) {
        if self.conn.is_none() && Instant::now() >= self.next_try {
            self.try_connect(ctx);
        }
    }

    /// Reads what came; returns the commands in it.
    pub fn ready(&mut self, ctx: &mut Ctx, r: Readiness) -> Vec<IrcRequest> {
        let mut reqs = Vec::new();
        let mut closed = None;
        if let Some(c) = self.conn.as_mut() {
            let mut buf = [0u8; 4096];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        closed = Some("closed by the server".to_owned());
                        break;
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                    Err(e) => {
                        closed = Some(e.to_string());
                        break;
                    }
                }
            }
            if r.error && closed.is_none() {
                if let Ok(Some(e)) = c.stream.take_error() {
                    closed = Some(e.to_string());
                }
            }
        }
        let lines: Vec<String> = match self.conn.as_mut() {
            Some(c) => {
                let mut v = Vec::new();
                while let Some(p) = c.inbuf.iter().position(|b| *b == b'\n') {
                    let l: Vec<u8> = c.inbuf.drain(..=p).collect();
                    v.push(String::from_utf8_lossy(&l).trim_end().to_owned());
                }
                v
            }
            None => Vec::new(),
        };
        for l in lines {
            if let Some(q) = self.line(ctx, &l) {
                reqs.push(q);
            }
        }
        self.flush(ctx);
        if let Some(why) = closed {
            self.drop_conn(ctx, &why);
        }
        reqs
    }

    /// One line from the server.
    fn line(&mut self, ctx: &mut Ctx, l: &str) -> Option<IrcRequest> {
        let (prefix, rest) = match l.strip_prefix(':') {
            Some(r) => {
                let (p, rest) = r.split_once(' ')?;
                (p, rest)
            }
            None => ("", l),
        };
        let (head, trailing) = match rest.split_once(" :") {
            Some((h, t)) => (h, Some(t)),
            None => (rest, None),
        };
        let mut w = head.split_whitespace();
        let cmd = w.next()?;
        let from = prefix.split('!').next().unwrap_or("");
        match cmd {
            "PING" => {
                let arg = trailing.or_else(|| w.next()).unwrap_or("");
                self.send(&format!("PONG :{arg}"));
            }
            "001" => {
                ctx.log().info(format!(
                    "irc: registered as {} on {}; joining {}",
                    self.nick, self.cfg.server, self.cfg.channel
                ));
                match &self.cfg.key {
                    Some(k) => self.send(&format!("JOIN {} {k}", self.cfg.channel)),
                    None => self.send(&format!("JOIN {}", self.cfg.channel)),
                }
            }
            "433" => {
                self.nick.push('_');
                ctx.log()
                    .warn(format!("irc: nick taken; trying {}", self.nick));
                self.send(&format!("NICK {}", self.nick));
            }
            "JOIN" if eq(from, &self.nick) => {
                self.joined = true;
                ctx.log().info(format!("irc: joined {}", self.cfg.channel));
                if let Some(k) = &self.cfg.key {
                    let m = format!("MODE {} +k {k}", self.cfg.channel);
                    self.send(&m);
                }
            }
            "475" | "471" | "473" | "474" => {
                ctx.error(&format!(
                    "irc: cannot join {}: {}",
                    self.cfg.channel,
                    trailing.unwrap_or(cmd)
                ));
            }
            "PRIVMSG" => {
                let target = w.next()?;
                let text = trailing.unwrap_or("").trim();
                let allowed_nick = self.cfg.allow.iter().any(|a| eq(a, from));
                if eq(target, &self.cfg.channel) {
                    if text == ".status" || text == ".version" {
                        return Some(IrcRequest {
                            from: from.to_owned(),
                            reply_to: self.cfg.channel.clone(),
                            address: false,
                            line: text[1..].to_owned(),
                            allowed: true,
                            only_public: true,
                        });
                    }
                    let body = [':', ','].iter().find_map(|sep| {
                        let p = format!("{}{sep}", self.nick);
                        (text.len() > p.len() && text[..p.len()].eq_ignore_ascii_case(&p))
                            .then(|| text[p.len()..].trim().to_owned())
                    })?;
                    return Some(IrcRequest {
                        from: from.to_owned(),
                        reply_to: self.cfg.channel.clone(),
                        address: true,
                        line: body,
                        allowed: allowed_nick || self.cfg.key.is_some(),
                        only_public: false,
                    });
                }
                if eq(target, &self.nick) {
                    return Some(IrcRequest {
                        from: from.to_owned(),
                        reply_to: from.to_owned(),
                        address: false,
                        line: text.to_owned(),
                        allowed: allowed_nick,
                        only_public: false,
                    });
                }
            }
            _ => {}
        }
        None
    }

    /// Sends the answer to a request.
    pub fn answer(&mut self, ctx: &mut Ctx, req: &IrcRequest, lines: &[String]) {
        let n = lines.len();
        for (i, l) in lines.iter().enumerate().take(MAX_LINES) {
            let mut text = if req.address {
                format!("{}: {l}", req.from)
            } else {
                l.clone()
            };
            if i == MAX_LINES - 1 && n > MAX_LINES {
                text.push_str(&format!(" (and {} more lines)", n - MAX_LINES));
            }
            text.truncate(400);
            self.send(&format!("PRIVMSG {} :{text}", req.reply_to));
        }
        self.flush(ctx);
    }

    /// Says goodbye.
    pub fn quit(&mut self, ctx: &mut Ctx) {
        self.send("QUIT :svcshare exiting");
        self.flush(ctx);
    }
}
