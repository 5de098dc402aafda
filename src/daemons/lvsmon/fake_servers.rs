//! Local stand-ins for the servers lvsmon checks, for its tests: a TCP server that runs a
//! function on every connection, and an HTTP answer after the request's headers. Used by the
//! in-process tests (`tests.rs`) and, included by path, by the process tests (tests/lvsmon.rs).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A listener on a free loopback port, and the port.
pub fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    (l, p)
}

/// A server that runs `f` on every connection, each on its own thread (it lives as long as the
/// test process). Returns its port.
pub fn serve(f: fn(TcpStream)) -> u16 {
    let (l, p) = listener();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || f(c));
        }
    });
    p
}

/// Reads a request up to the end of its headers (or 3 s, or the peer's close).
pub fn read_request(c: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Answers one request with `bytes`.
pub fn answer(mut c: TcpStream, bytes: &[u8]) {
    read_request(&mut c);
    let _ = c.write_all(bytes);
}
