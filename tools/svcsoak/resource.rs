//! The shared resource of the soak: it checks fencing tokens (each connection starts with the
//! proxy's `SVCSHARE-TOKEN T PEER`; an `access` line under a token older than one seen is
//! refused), and users that use it through their peer's proxy as fast as they are let through.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How much later than a newer token a stale access may be read and still have been sent before
/// it (two server threads reading in the other order).
const REORDER: Duration = Duration::from_millis(200);

/// What the resource saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Accesses accepted.
    pub accepted: u64,
    /// Stale accesses refused.
    pub stale: u64,
    /// Stale accesses that came later than [`REORDER`] after the newer token: overlaps.
    pub late: u64,
    /// Accesses under the newest token from a peer other than the one that first used it.
    pub shared_tokens: u64,
    /// Every token accepted, in order, with its peer and its first accepted access.
    pub grants: Vec<Grant>,
}

/// A token the resource accepted: its peer and when its first access came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The fencing token.
    pub token: u64,
    /// The peer that stamped it.
    pub peer: String,
    /// When the resource accepted its first access.
    pub first: Instant,
}

impl Seen {
    /// Overlaps of two holders: a token used by two peers, or an access that came late under
    /// an old token (see [`Seen::late`]). (An access under a token older than one accepted is
    /// never accepted: `serve` refuses it under the same lock.)
    pub fn overlaps(&self) -> u64 {
        self.late + self.shared_tokens
    }

    /// The newest token accepted (0: none yet).
    fn max(&self) -> u64 {
        self.grants.last().map_or(0, |g| g.token)
    }
}

/// The resource.
#[derive(Clone, Debug)]
pub struct Resource {
    /// Its port.
    pub port: u16,
    /// What it saw.
    pub seen: Arc<Mutex<Seen>>,
}

impl Resource {
    /// Listens on a loopback port.
    pub fn start() -> std::io::Result<Resource> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let seen = s2.clone();
                std::thread::spawn(move || serve(c, &seen));
            }
        });
        Ok(Resource { port, seen })
    }

    /// The newest grant: the holder's token and peer, and when its first access came.
    pub fn newest(&self) -> Option<Grant> {
        self.seen.lock().unwrap().grants.last().cloned()
    }
}

fn serve(c: TcpStream, seen: &Mutex<Seen>) {
    let Ok(mut w) = c.try_clone() else { return };
    let mut r = BufReader::new(c);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut it = line.split_whitespace();
    let (Some("SVCSHARE-TOKEN"), Some(Ok(token)), Some(peer)) =
        (it.next(), it.next().map(str::parse::<u64>), it.next())
    else {
        let _ = w.write_all(b"unstamped\n");
        return;
    };
    let peer = peer.to_owned();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut g = seen.lock().unwrap();
        if token < g.max() {
            g.stale += 1;
            if g.grants.last().is_some_and(|n| n.first.elapsed() > REORDER) {
                g.late += 1;
            }
            drop(g);
            let _ = w.write_all(b"stale\n");
            return;
        }
        if token > g.max() {
            g.grants.push(Grant {
                token,
                peer: peer.clone(),
                first: Instant::now(),
            });
        } else if g.grants.last().is_some_and(|n| n.peer != peer) {
            // The newest token, from a second peer: it was handed to two.
            g.shared_tokens += 1;
        }
        g.accepted += 1;
        drop(g);
        if w.write_all(b"ok\n").is_err() {
            return;
        }
    }
}

/// A user of the resource through one proxy.
#[derive(Debug)]
pub struct User {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl User {
    /// Starts using the resource through the proxy on `port`.
    pub fn start(port: u16) -> User {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                let Ok(c) = TcpStream::connect(("127.0.0.1", port)) else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
                let _ = c.set_nodelay(true);
                let Ok(mut w) = c.try_clone() else { continue };
                let mut r = BufReader::new(c);
                let mut line = String::new();
                'conn: while !s2.load(Ordering::Relaxed) {
                    if w.write_all(b"access\n").is_err() {
                        break;
                    }
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) => break 'conn,
                            Ok(_) if line == "ok\n" => break,
                            Ok(_) => break 'conn,
                            Err(_) if s2.load(Ordering::Relaxed) => break 'conn,
                            Err(_) => {}
                        }
                    }
                }
            }
        });
        User {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
