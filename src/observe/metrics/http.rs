//! A small HTTP/1.x server for Prometheus scrapes: `GET /metrics` answers the text exposition
//! format of the runtime directory, read afresh for each request; `GET /` a short page; anything
//! else 404 (or 405 for a method other than GET and HEAD).
//!
//! Plain `std::net`: one thread per connection, at most [`MAX_CONNECTIONS`] at once (more are
//! answered 503), each request read with a deadline; HTTP/1.1 connections are kept alive for
//! further scrapes (at most [`MAX_REQUESTS`], closed after [`IO_TIMEOUT`] idle). It never writes
//! to a region and never makes a process wait.
//!
//! Why not tiny_http (measured 2026-12-02): it serves each connection on a thread of its own
//! with no bound and no read timeout, so 2,000 idle connections made 1,881 threads and 48 MB
//! that stayed for ever; a scrape endpoint on a DAQ node must not be that easy to exhaust.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shvars::RuntimeDir;

use super::{prometheus, snapshot};

/// Connections served at once; more are answered 503 at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Longest request head accepted.
const MAX_HEAD: usize = 8192;
/// Time a client has to send its request (or the next one, on a kept-alive connection), and to
/// take the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests served on one connection before it is closed.
pub const MAX_REQUESTS: usize = 1000;

/// Parses a `--listen` value: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`.
///
/// # Errors
/// What is wrong with it, for people.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "{s:?} is not an address: give HOST:PORT, e.g. 127.0.0.1:9464"
        ));
    };
    let port: u16 = port.parse().map_err(|_| {
        format!("{s:?}: port {port:?} is not a number from 0 to 65535 (e.g. 127.0.0.1:9464)")
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!(
            "{s:?} has no host: give HOST:PORT, e.g. 127.0.0.1:{port} (or 0.0.0.0:{port} for every interface)"
        ));
    }
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{s:?}: host {host:?} has no address")),
        Err(e) => Err(format!("{s:?}: host {host:?} is unknown: {e}")),
    }
}

/// Binds `addr`, with an error that names it and says what to do.
///
/// # Errors
/// The address is in use, not of this machine, or a privileged port.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => "another program listens there: choose another port",
            io::ErrorKind::AddrNotAvailable => {
                "it is not an address of this machine: use 127.0.0.1, 0.0.0.0 or one of its own"
            }
            io::ErrorKind::PermissionDenied => "ports below 1024 need privileges: use 9464",
            _ => "check the address",
        };
        format!("cannot listen on {addr}: {e}: {hint}")
    })
}

/// Serves scrapes of `dir` on `listener` until accepting fails for good.
///
/// # Errors
/// If the listener fails (a single failed connection is only skipped).
pub fn serve(listener: TcpListener, dir: RuntimeDir) -> io::Result<()> {
    let busy = Arc::new(AtomicUsize::new(0));
    let mut failures = 0u32;
    for conn in listener.incoming() {
        let mut stream = match conn {
            Ok(s) => {
                failures = 0;
                s
            }
            Err(e) => {
                // EMFILE and friends pass; give up only if nothing works any more.
                failures += 1;
                if failures > 100 {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::AcqRel);
            let _ = respond(
                &mut stream,
                "GET",
                503,
                "text/plain",
                "too many scrapes at once\n",
                false,
            );
            continue;
        }
        let (dir, busy2) = (dir.clone(), busy.clone());
        let spawned = std::thread::Builder::new()
            .name("scrape".into())
            .spawn(move || {
                let _ = handle(&mut stream, &dir);
                busy2.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
    Ok(())
}

/// The bytes a connection sent that are not consumed yet (a client may send its next request
/// before reading the answer).
struct Conn<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
}

fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Conn<'_> {
    /// The next request head; `Ok(None)` when the client is done (closed, or idle too long).
    fn next_head(&mut self) -> io::Result<Option<Result<String, ()>>> {
        let mut tmp = [0u8; 1024];
        loop {
            if let Some(end) = head_end(&self.buf) {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end);
                return Ok(Some(Ok(head)));
            }
            if self.buf.len() > MAX_HEAD {
                return Ok(Some(Err(())));
            }
            match self.stream.read(&mut tmp) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether the client wants the connection kept for another request (HTTP/1.1 unless it says
/// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
fn keep_alive(head: &str) -> bool {
    let first = head.lines().next().unwrap_or("");
    let http11 = first.ends_with("HTTP/1.1");
    let conn = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        .map(|(_, v)| v.trim().to_ascii_lowercase());
    match conn.as_deref() {
        Some("close") => false,
        Some("keep-alive") => true,
        _ => http11,
    }
}

fn handle(stream: &mut TcpStream, dir: &RuntimeDir) -> io::Result<()> {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    for served in 1..=MAX_REQUESTS {
        let head = match conn.next_head()? {
            None => return Ok(()),
            Some(Err(())) => {
                return respond(
                    conn.stream,
                    "GET",
                    431,
                    "text/plain",
                    "request head too long\n",
                    false,
                )
            }
            Some(Ok(h)) => h,
        };
        let keep = keep_alive(&head) && served < MAX_REQUESTS;
        let mut words = head.lines().next().unwrap_or("").split_whitespace();
        let (Some(method), Some(target)) = (words.next(), words.next()) else {
            return respond(
                conn.stream,
                "GET",
                400,
                "text/plain",
                "bad request\n",
                false,
            );
        };
        let method = method.to_owned();
        let path = target.split(['?', '#']).next().unwrap_or("").to_owned();
        if method != "GET" && method != "HEAD" {
            respond(
                conn.stream,
                "GET",
                405,
                "text/plain",
                "only GET and HEAD\n",
                keep,
            )?;
        } else {
            match path.as_str() {
                "/metrics" => match snapshot(dir) {
                    Ok(snap) => respond(
                        conn.stream,
                        &method,
                        200,
                        prometheus::CONTENT_TYPE,
                        &prometheus::render(&snap),
                        keep,
                    )?,
                    Err(e) => respond(
                        conn.stream,
                        &method,
                        500,
                        "text/plain",
                        &format!("{e}\n"),
                        keep,
                    )?,
                },
                "/" => respond(
                    conn.stream,
                    &method,
                    200,
                    "text/plain; charset=utf-8",
                    &format!(
                        "shvar serve: the shared variables of the processes in {dir}\n\
                         /metrics  Prometheus text format (read afresh at each scrape)\n"
                    ),
                    keep,
                )?,
                _ => respond(
                    conn.stream,
                    &method,
                    404,
                    "text/plain",
                    &format!("no page {path}: try /metrics\n"),
                    keep,
                )?,
            }
        }
        if !keep {
            return Ok(());
        }
    }
    Ok(())
}

fn respond(
    stream: &mut TcpStream,
    method: &str,
    code: u16,
    content_type: &str,
    body: &str,
    keep: bool,
) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let connection = if keep { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Connection: {connection}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out)?;
    stream.flush()?;
    if !keep {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    Ok(())
}
