//! The local targets: listeners on several ports (so connections spread over many 4-tuples),
//! served by one thread with a mio loop. TCP targets accept and close; HTTP targets read the
//! request and answer `200 OK` with a small body, then close.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab_like::Slab;

/// What the targets do with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Accept and close.
    Tcp,
    /// Answer an HTTP request with 200.
    Http,
}

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

/// Running targets.
pub struct Servers {
    /// Their addresses.
    pub addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

mod slab_like {
    /// A minimal slab: reuses freed slots.
    pub struct Slab<T> {
        items: Vec<Option<T>>,
        free: Vec<usize>,
    }

    impl<T> Slab<T> {
        pub fn new() -> Self {
            Slab {
                items: Vec::new(),
                free: Vec::new(),
            }
        }
        pub fn insert(&mut self, t: T) -> usize {
            match self.free.pop() {
                Some(i) => {
                    self.items[i] = Some(t);
                    i
                }
                None => {
                    self.items.push(Some(t));
                    self.items.len() - 1
                }
            }
        }
        pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
            self.items.get_mut(i).and_then(Option::as_mut)
        }
        pub fn remove(&mut self, i: usize) {
            if let Some(s) = self.items.get_mut(i) {
                if s.take().is_some() {
                    self.free.push(i);
                }
            }
        }
    }
}

impl Servers {
    /// `ports` listeners of `kind` on 127.0.0.1.
    pub fn start(kind: Kind, ports: usize) -> anyhow::Result<Servers> {
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..ports {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.set_reuse_address(true)?;
            s.bind(&"127.0.0.1:0".parse::<SocketAddr>()?.into())?;
            s.listen(4096)?;
            s.set_nonblocking(true)?;
            let mut l = TcpListener::from_std(s.into());
            poll.registry()
                .register(&mut l, Token(i), Interest::READABLE)?;
            addrs.push(l.local_addr()?);
            listeners.push(l);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("targets".into())
            .spawn(move || serve(poll, listeners, kind, &st))?;
        Ok(Servers {
            addrs,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut poll: Poll, listeners: Vec<TcpListener>, kind: Kind, stop: &AtomicBool) {
    let base = listeners.len();
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<(TcpStream, Vec<u8>)> = Slab::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        if poll
            .poll(&mut events, Some(Duration::from_millis(50)))
            .is_err()
        {
            continue;
        }
        for ev in events.iter() {
            let t = ev.token().0;
            if t < base {
                loop {
                    match listeners[t].accept() {
                        Ok((s, _)) => match kind {
                            Kind::Tcp => drop(s),
                            Kind::Http => {
                                let id = conns.insert((s, Vec::new()));
                                let Some((s, _)) = conns.get_mut(id) else {
                                    continue;
                                };
                                if poll
                                    .registry()
                                    .register(s, Token(base + id), Interest::READABLE)
                                    .is_err()
                                {
                                    conns.remove(id);
                                }
                            }
                        },
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
                continue;
            }
            let id = t - base;
            let mut done = false;
            if let Some((s, got)) = conns.get_mut(id) {
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            done = true;
                            break;
                        }
                        Ok(n) => {
                            got.extend_from_slice(&buf[..n]);
                            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                                let _ = s.write(RESPONSE);
                                done = true;
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            done = true;
                            break;
                        }
                    }
                }
            }
            if done {
                conns.remove(id);
            }
        }
    }
}
