//! etcd peers, for peers on many machines: a small synchronous client of etcd's v3 JSON
//! gateway (`POST /v3/...` over HTTP/1.1), run on one worker thread per svcshare.
//!
//! Why not the `etcd-client` crate: its build script runs `protoc` (tonic-build), which a fresh
//! machine with only the Rust toolchain lacks, and the build must work there. The JSON gateway
//! is part of every etcd since 3.3 (`/v3/` since 3.4), needs no generated code, and the five
//! calls used here (lease grant and keepalive, put, range, txn) are plain JSON.
//!
//! What lives in etcd, under `PREFIX/SHARE/`:
//! - `peers/NAME`: this peer's board entry (queue, want, force, asked), put with its lease, so a
//!   dead peer disappears when its lease ends;
//! - `holder`: the holder's name, put with its lease in a transaction that succeeds only if the
//!   key does not exist (`compare create_revision == 0`). The revision that created it is the
//!   grant's fencing token: etcd's revisions only grow, so tokens do too.
//!
//! Timing: a keepalive is sent every third of the TTL; the lease is known good until the time
//! the successful keepalive was *sent* plus the TTL etcd answered (etcd cannot end the lease
//! before it received the keepalive plus the TTL). The main thread pauses its client a margin
//! before that instant, so it has stopped before etcd can give the resource to anyone else.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Value};

use super::local::mono_ns;
use super::policy::{Board, Entry, Force};
use super::Svcshare;
use crate::framework::Mailbox;

/// Where etcd is and what to use in it.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `http://HOST:PORT`.
    pub url: String,
    /// Key prefix (`/svcshare` by default).
    pub prefix: String,
}

/// Base64 (standard alphabet, padded), as the gateway carries bytes.
pub fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for ch in data.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= ch.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64; `None` if it is not.
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for ch in s.chunks(4) {
        let mut n = 0u32;
        for (i, c) in ch.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..ch.len().saturating_sub(1)]);
    }
    Some(out)
}

/// A keep-alive HTTP/1.1 connection to one etcd endpoint.
#[derive(Debug)]
pub struct Http {
    host: String,
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    /// For `http://HOST:PORT`.
    ///
    /// # Errors
    /// The URL is not `http://HOST:PORT`, or the host does not resolve.
    pub fn new(url: &str, timeout: Duration) -> Result<Http, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!(
                "--etcd {url}: write http://HOST:PORT (the JSON gateway; https is not supported)"
            )
        })?;
        let host = rest.trim_end_matches('/').to_owned();
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("--etcd {url}: {e}"))?
            .next()
            .ok_or_else(|| format!("--etcd {url}: {host} has no address"))?;
        Ok(Http {
            host,
            addr,
            timeout,
            conn: None,
        })
    }

    /// POSTs `body` to `path` and returns the JSON answer.
    ///
    /// # Errors
    /// Connection, HTTP or JSON trouble, or an error answer from etcd (its message).
    pub fn post(&mut self, path: &str, body: &Value) -> Result<Value, String> {
        let reused = self.conn.is_some();
        let mut r = self.post_once(path, body);
        if r.is_err() {
            self.conn = None;
            // A kept-alive connection the server closed meanwhile: once more on a new one.
            if reused && r.as_ref().is_err_and(|e| !e.starts_with("HTTP ")) {
                r = self.post_once(path, body);
                if r.is_err() {
                    self.conn = None;
                }
            }
        }
        r.map_err(|e| format!("etcd {} {path}: {e}", self.addr))
    }

    fn post_once(&mut self, path: &str, body: &Value) -> Result<Value, String> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)
                .map_err(|e| format!("cannot connect: {e}"))?;
            s.set_nodelay(true).ok();
            s.set_read_timeout(Some(self.timeout)).ok();
            s.set_write_timeout(Some(self.timeout)).ok();
            self.conn = Some(BufReader::new(s));
        }
        let c = self.conn.as_mut().expect("connected above");
        let body = body.to_string();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        c.get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| e.to_string())?;
        let (status, text, close) = read_response(c).map_err(|e| e.to_string())?;
        if close {
            self.conn = None;
        }
        let v: Value = serde_json::from_slice(&text).map_err(|e| {
            format!(
                "HTTP {status}: not JSON ({e}): {}",
                String::from_utf8_lossy(&text)
            )
        })?;
        if status != 200 {
            let msg = v
                .get("message")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(format!("HTTP {status}: {msg}"));
        }
        Ok(v)
    }
}

fn read_response(c: &mut BufReader<TcpStream>) -> io::Result<(u32, Vec<u8>, bool)> {
    let mut line = String::new();
    if c.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let status: u32 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let (mut len, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        c.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => len = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            c.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if n == 0 {
                line.clear();
                c.read_line(&mut line)?;
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            c.read_exact(&mut body[start..])?;
            line.clear();
            c.read_line(&mut line)?;
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        c.read_exact(&mut body)?;
    } else {
        c.read_to_end(&mut body)?;
    }
    Ok((status, body, close))
}

fn num(v: &Value, k: &str) -> i64 {
    match v.get(k) {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// End of the range of keys starting with `p`.
fn prefix_end(p: &str) -> Vec<u8> {
    let mut b = p.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0xff {
            b.push(last + 1);
            return b;
        }
    }
    vec![0]
}

/// What the main thread asks of the etcd thread.
#[derive(Debug)]
pub enum ToEtcd {
    /// This peer's board entry changed.
    Advert(Entry),
    /// Try to become the holder.
    Acquire,
    /// Give grant `token` back.
    Release(u64),
    /// End.
    Stop,
}

/// What the etcd thread tells the main thread.
#[derive(Debug)]
pub enum FromEtcd {
    /// The lease is good until this CLOCK_MONOTONIC instant (ns).
    Lease(u64),
    /// The lease is gone (etcd says so).
    LeaseLost(String),
    /// The board as etcd has it.
    Board(Board),
    /// Holder now, with this token, the lease good until (ns).
    Granted {
        /// The holder key's create revision.
        token: u64,
        /// Lease good until (CLOCK_MONOTONIC ns).
        until_ns: u64,
    },
    /// Someone else holds it.
    Busy(String),
    /// etcd trouble (the text), or `None`: reachable again.
    Trouble(Option<String>),
}

/// The etcd thread's state.
struct Worker {
    http: Http,
    me: String,
    ttl_s: i64,
    base: String,
    lease: Option<i64>,
    lease_until: u64,
    last_keepalive: u64,
    advert: Option<Entry>,
    advert_sent: bool,
    releases: Vec<u64>,
    trouble: bool,
    out: Mailbox<Svcshare>,
}

/// Starts the etcd thread of peer `me` in share `share`.
///
/// # Errors
/// A bad URL, or a thread that cannot start.
pub fn start(
    cfg: &EtcdConfig,
    share: &str,
    me: &str,
    ttl: Duration,
    poll: Duration,
    out: Mailbox<Svcshare>,
) -> Result<(Sender<ToEtcd>, std::thread::JoinHandle<()>), String> {
    let timeout = (ttl / 5).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let http = Http::new(&cfg.url, timeout)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut w = Worker {
        http,
        me: me.to_owned(),
        ttl_s: ttl.as_secs().max(1) as i64,
        base: format!("{}/{share}/", cfg.prefix.trim_end_matches('/')),
        lease: None,
        lease_until: 0,
        last_keepalive: 0,
        advert: None,
        advert_sent: false,
        releases: Vec::new(),
        trouble: false,
        out,
    };
    let h = std::thread::Builder::new()
        .name("svcshare-etcd".into())
        .spawn(move || w.run(&rx, poll))
        .map_err(|e| format!("cannot start the etcd thread: {e}"))?;
    Ok((tx, h))
}

impl Worker {
    fn post(&self, ev: FromEtcd) {
        self.out
            .post(move |m: &mut Svcshare, ctx| m.on_etcd(ctx, ev));
    }

    fn run(&mut self, rx: &Receiver<ToEtcd>, poll: Duration) {
        loop {
            match rx.recv_timeout(poll) {
                Ok(ToEtcd::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(cmd) => {
                    let r = self.command(cmd);
                    self.note(r);
                    // Take every command waiting before the next upkeep.
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let r = self.upkeep();
            self.note(r);
        }
        // Leaving: give back what we hold and end the lease (peers see us gone at once).
        if let Some(id) = self.lease {
            let _ = self
                .http
                .post("/v3/lease/revoke", &json!({ "ID": id.to_string() }));
        }
    }

    fn note(&mut self, r: Result<(), String>) {
        match r {
            Ok(()) if self.trouble => {
                self.trouble = false;
                self.post(FromEtcd::Trouble(None));
            }
            Err(e) if !self.trouble => {
                self.trouble = true;
                self.post(FromEtcd::Trouble(Some(e)));
            }
            _ => {}
        }
    }

    fn command(&mut self, cmd: ToEtcd) -> Result<(), String> {
        match cmd {
            ToEtcd::Advert(e) => {
                self.advert = Some(e);
                self.advert_sent = false;
                self.publish()
            }
            ToEtcd::Acquire => {
                let r = self.acquire();
                if let Err(e) = &r {
                    self.post(FromEtcd::Busy(format!("nobody known: {e}")));
                }
                r
            }
            ToEtcd::Release(t) => {
                self.releases.push(t);
                self.release_all()
            }
            ToEtcd::Stop => Ok(()),
        }
    }

    fn holder_key(&self) -> String {
        format!("{}holder", self.base)
    }

    fn upkeep(&mut self) -> Result<(), String> {
        self.keep_lease()?;
        self.release_all()?;
        self.publish()?;
        self.read_board()
    }

    fn keep_lease(&mut self) -> Result<(), String> {
        let now = mono_ns();
        let third = self.ttl_s as u64 * 1_000_000_000 / 3;
        match self.lease {
            None => {
                let sent = mono_ns();
                let v = self
                    .http
                    .post("/v3/lease/grant", &json!({ "TTL": self.ttl_s }))?;
                let id = num(&v, "ID");
                let ttl = num(&v, "TTL");
                if id == 0 || ttl <= 0 {
                    return Err(format!("lease grant: unexpected answer {v}"));
                }
                self.lease = Some(id);
                self.last_keepalive = sent;
                self.lease_until = sent + ttl as u64 * 1_000_000_000;
                self.advert_sent = false;
                self.post(FromEtcd::Lease(self.lease_until));
            }
            Some(id) if now.saturating_sub(self.last_keepalive) >= third => {
                let sent = mono_ns();
                let v = self
                    .http
                    .post("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))?;
                let r = v.get("result").unwrap_or(&v);
                let ttl = num(r, "TTL");
                if ttl <= 0 {
                    self.lease = None;
                    self.post(FromEtcd::LeaseLost(format!(
                        "etcd no longer knows lease {id:x} (it ended while we could not renew it)"
                    )));
                    return Ok(());
                }
                self.last_keepalive = sent;
                self.lease_until = sent + ttl as u64 * 1_000_000_000;
                self.post(FromEtcd::Lease(self.lease_until));
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn publish(&mut self) -> Result<(), String> {
        let (Some(id), Some(e), false) = (self.lease, &self.advert, self.advert_sent) else {
            return Ok(());
        };
        let val = json!({
            "queue": e.queue, "want": e.want, "force": e.force as i64, "asked_ns": e.asked_ns,
        })
        .to_string();
        let key = format!("{}peers/{}", self.base, self.me);
        self.http.post(
            "/v3/kv/put",
            &json!({ "key": b64(key.as_bytes()), "value": b64(val.as_bytes()), "lease": id.to_string() }),
        )?;
        self.advert_sent = true;
        Ok(())
    }

    fn read_board(&mut self) -> Result<(), String> {
        let v = self.http.post(
            "/v3/kv/range",
            &json!({ "key": b64(self.base.as_bytes()), "range_end": b64(&prefix_end(&self.base)) }),
        )?;
        let mut board = Board::default();
        let hkey = self.holder_key();
        let peers = format!("{}peers/", self.base);
        for kv in v.get("kvs").and_then(Value::as_array).into_iter().flatten() {
            let key = kv
                .get("key")
                .and_then(Value::as_str)
                .and_then(unb64)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let val = kv
                .get("value")
                .and_then(Value::as_str)
                .and_then(unb64)
                .unwrap_or_default();
            if key == hkey {
                board.holder = Some(String::from_utf8_lossy(&val).into_owned());
            } else if let Some(name) = key.strip_prefix(&peers) {
                let Ok(j) = serde_json::from_slice::<Value>(&val) else {
                    continue;
                };
                board.entries.push(Entry {
                    name: name.to_owned(),
                    queue: num(&j, "queue"),
                    want: j.get("want").and_then(Value::as_bool).unwrap_or(false),
                    force: Force::from_i64(num(&j, "force")),
                    asked_ns: num(&j, "asked_ns"),
                });
            }
        }
        self.post(FromEtcd::Board(board));
        Ok(())
    }

    fn acquire(&mut self) -> Result<(), String> {
        self.keep_lease()?;
        // A grant given back but not yet deleted would be taken for ours below, and deleted
        // later under the new holder's feet: give everything back first.
        self.release_all()?;
        let Some(id) = self.lease else {
            self.post(FromEtcd::Busy(
                "nobody yet: our lease is not granted".into(),
            ));
            return Ok(());
        };
        let until = self.lease_until;
        let hkey = b64(self.holder_key().as_bytes());
        let v = self.http.post(
            "/v3/kv/txn",
            &json!({
                "compare": [{ "key": hkey, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
                "success": [{ "request_put": { "key": hkey, "value": b64(self.me.as_bytes()), "lease": id.to_string() } }],
                "failure": [{ "request_range": { "key": hkey } }],
            }),
        )?;
        if v.get("succeeded").and_then(Value::as_bool) == Some(true) {
            let rev = num(v.get("header").unwrap_or(&Value::Null), "revision");
            self.post(FromEtcd::Granted {
                token: rev as u64,
                until_ns: until,
            });
        } else {
            let kv = v
                .pointer("/responses/0/response_range/kvs/0")
                .cloned()
                .unwrap_or(Value::Null);
            let holder = kv
                .get("value")
                .and_then(Value::as_str)
                .and_then(unb64)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|| "someone".into());
            if holder == self.me && num(&kv, "lease") == id {
                // Ours already, under our live lease (a retried transaction that had gone
                // through): the key's create revision is the token.
                self.post(FromEtcd::Granted {
                    token: num(&kv, "create_revision") as u64,
                    until_ns: until,
                });
            } else {
                self.post(FromEtcd::Busy(holder));
            }
        }
        Ok(())
    }

    fn release_all(&mut self) -> Result<(), String> {
        while let Some(&t) = self.releases.first() {
            let hkey = b64(self.holder_key().as_bytes());
            self.http.post(
                "/v3/kv/txn",
                &json!({
                    "compare": [{ "key": hkey, "target": "CREATE", "result": "EQUAL", "create_revision": t.to_string() }],
                    "success": [{ "request_delete_range": { "key": hkey } }],
                }),
            )?;
            self.releases.remove(0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "/svcshare/s/peers/a",
        ] {
            assert_eq!(unb64(&b64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(prefix_end("/a/"), b"/a0");
    }
}
