//! A small HTTP/1.x server for Prometheus scrapes: `GET /metrics` answers the text exposition
//! format of the runtime directory, read afresh for each request; `GET /` a short page; anything
//! else 404 (or 405 for a method other than GET and HEAD).
//!
//! Plain `std::net`: one short-lived thread per connection, at most [`MAX_CONNECTIONS`] at once,
//! each request read with a deadline, one response, then the connection is closed. It never
//! writes to a region and never makes a process wait.

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
/// Time a client has to send its request, and to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

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

fn read_head(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

fn handle(stream: &mut TcpStream, dir: &RuntimeDir) -> io::Result<()> {
    let Some(head) = read_head(stream)? else {
        return respond(stream, "GET", 431, "text/plain", "request head too long\n");
    };
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return respond(stream, "GET", 400, "text/plain", "bad request\n");
    };
    let path = target.split(['?', '#']).next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return respond(stream, "GET", 405, "text/plain", "only GET and HEAD\n");
    }
    match path {
        "/metrics" => match snapshot(dir) {
            Ok(snap) => respond(
                stream,
                method,
                200,
                prometheus::CONTENT_TYPE,
                &prometheus::render(&snap),
            ),
            Err(e) => respond(stream, method, 500, "text/plain", &format!("{e}\n")),
        },
        "/" => respond(
            stream,
            method,
            200,
            "text/plain; charset=utf-8",
            &format!(
                "shvar serve: the shared variables of the processes in {dir}\n\
                 /metrics  Prometheus text format (read afresh at each scrape)\n"
            ),
        ),
        _ => respond(
            stream,
            method,
            404,
            "text/plain",
            &format!("no page {path}: try /metrics\n"),
        ),
    }
}

fn respond(
    stream: &mut TcpStream,
    method: &str,
    code: u16,
    content_type: &str,
    body: &str,
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
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out)?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}
