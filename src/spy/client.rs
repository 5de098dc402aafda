//! The client side of the spy protocol: connect to a farm spy daemon, ask for events, receive
//! packets. Used by rspydaemon and by `spycat remote://...`.
//!
//! Nothing the server sends is trusted: every header is checked against what was asked for, a
//! packet is read completely before any event is handed out, and every wait has a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::proto::{
    BadPacket, Events, Mode, PacketHeader, Request, Status, EVENT_HEADER_SIZE, MAX_PACKET_BYTES,
    MAX_PACKET_EVENTS, PACKET_HEADER_SIZE,
};

/// Talking to a farm spy daemon failed.
#[derive(Debug, Error)]
pub enum SpyError {
    /// The address does not resolve.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    /// The connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The peer sent something that is not the protocol.
    #[error("{addr} sent a bad packet: {source} (is it a farm spy daemon?)")]
    Protocol {
        /// Who.
        addr: String,
        /// What.
        #[source]
        source: BadPacket,
    },
    /// The server answered with an error.
    #[error("{addr} refused: {msg}")]
    Refused {
        /// Who.
        addr: String,
        /// Its message.
        msg: String,
    },
    /// The connection broke.
    #[error("connection to {addr} lost: {source}")]
    Io {
        /// Who.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The server closed the connection.
    #[error("{0} closed the connection")]
    Closed(String),
}

/// What one wait for a packet gave.
#[derive(Debug)]
pub enum Received {
    /// A packet of events: its header; iterate over its events with [`SpyClient::events`].
    Packet(PacketHeader),
    /// The server had nothing new within its wait.
    NoData {
        /// The newest event number the server has seen.
        last_evnr: u64,
        /// Events it skipped for us meanwhile.
        skipped: u64,
    },
    /// Nothing arrived within our own wait; the request is still outstanding.
    Timeout,
}

/// A connection to a farm spy daemon.
#[derive(Debug)]
pub struct SpyClient {
    sock: TcpStream,
    addr: String,
    head: [u8; PACKET_HEADER_SIZE],
    have: usize,
    /// The packet being received: its header and how much of the payload arrived.
    partial: Option<(PacketHeader, usize)>,
    /// The payload of the current packet (reused: no allocation per packet).
    payload: Vec<u8>,
    /// Events in `payload`.
    nevents: u32,
    max_events: u32,
    max_payload: u64,
}

/// Resolves `host:port`.
///
/// # Errors
/// [`SpyError::Resolve`].
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, SpyError> {
    let text = format!("{host}:{port}");
    (host, port)
        .to_socket_addrs()
        .map_err(|e| SpyError::Resolve(text.clone(), e.to_string()))?
        .next()
        .ok_or_else(|| SpyError::Resolve(text, "no address".into()))
}

impl SpyClient {
    /// Connects, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`SpyError::Resolve`] or [`SpyError::Connect`].
    pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<SpyClient, SpyError> {
        let addr = resolve(host, port)?;
        let text = format!("{host}:{port}");
        let sock =
            TcpStream::connect_timeout(&addr, timeout).map_err(|source| SpyError::Connect {
                addr: text.clone(),
                source,
            })?;
        let _ = sock.set_nodelay(true);
        Ok(SpyClient {
            sock,
            addr: text,
            head: [0; PACKET_HEADER_SIZE],
            have: 0,
            partial: None,
            payload: Vec::new(),
            nevents: 0,
            max_events: MAX_PACKET_EVENTS,
            max_payload: 0,
        })
    }

    /// The events of the last packet received, checked one by one.
    pub fn events(&self) -> Events<'_> {
        Events::new(&self.payload, self.nevents)
    }

    /// The socket (to tune buffers).
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// The peer as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends a request. The packet limits checked on receipt follow the last request sent.
    ///
    /// # Errors
    /// [`SpyError::Io`].
    pub fn request(&mut self, req: &Request) -> Result<(), SpyError> {
        let (ev, bytes) = req.limits();
        self.max_events = ev as u32;
        // One event may exceed max_bytes (it travels alone), up to the server's cap.
        self.max_payload =
            (bytes as u64).max(MAX_PACKET_BYTES as u64) + EVENT_HEADER_SIZE as u64 * ev as u64;
        self.sock
            .write_all(&req.encode())
            .map_err(|source| SpyError::Io {
                addr: self.addr.clone(),
                source,
            })
    }

    /// Shortcut: a request in `mode` with the given limits after `last_evnr`.
    ///
    /// # Errors
    /// [`SpyError::Io`].
    pub fn ask(
        &mut self,
        mode: Mode,
        max_events: u32,
        max_bytes: u32,
        last_evnr: u64,
    ) -> Result<(), SpyError> {
        self.request(&Request {
            mode,
            max_events,
            max_bytes,
            last_evnr,
        })
    }

    fn io(&self, source: io::Error) -> SpyError {
        SpyError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    /// Reads into `buf` until it is full or `deadline` passes. Returns whether it is full.
    fn fill(&mut self, which: Fill, deadline: Instant) -> Result<bool, SpyError> {
        loop {
            let (buf, have): (&mut [u8], &mut usize) = match which {
                Fill::Head => (&mut self.head[..], &mut self.have),
                Fill::Body => {
                    let (_, h) = self.partial.as_mut().expect("a packet in progress");
                    (&mut self.payload[..], h)
                }
            };
            if *have == buf.len() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let _ = self
                .sock
                .set_read_timeout(Some(left.max(Duration::from_micros(100))));
            match self.sock.read(&mut buf[*have..]) {
                Ok(0) => return Err(SpyError::Closed(self.addr.clone())),
                Ok(n) => *have += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(self.io(e)),
            }
        }
    }

    /// Waits at most `timeout` for the next packet. A packet that arrives in pieces is kept
    /// across calls: a [`Received::Timeout`] loses nothing.
    ///
    /// # Errors
    /// [`SpyError::Protocol`] for a bad packet, [`SpyError::Refused`] for an error packet
    /// (the server closes the connection after it), [`SpyError::Io`]/[`SpyError::Closed`].
    pub fn receive(&mut self, timeout: Duration) -> Result<Received, SpyError> {
        let deadline = Instant::now() + timeout;
        if self.partial.is_none() {
            if !self.fill(Fill::Head, deadline)? {
                return Ok(Received::Timeout);
            }
            self.have = 0;
            let h = PacketHeader::decode(
                &self.head,
                self.max_events,
                self.max_payload.max(MAX_PACKET_BYTES as u64),
            )
            .map_err(|source| SpyError::Protocol {
                addr: self.addr.clone(),
                source,
            })?;
            // Only bytes beyond what the buffer ever held get zeroed.
            self.payload.resize(h.payload_len as usize, 0);
            self.partial = Some((h, 0));
        }
        if !self.fill(Fill::Body, deadline)? {
            return Ok(Received::Timeout);
        }
        let (header, _) = self.partial.take().expect("a packet in progress");
        let payload = &self.payload;
        match header.status {
            Status::Ok => {
                self.nevents = header.nevents;
                Ok(Received::Packet(header))
            }
            Status::NoData => Ok(Received::NoData {
                last_evnr: header.last_evnr,
                skipped: header.skipped,
            }),
            Status::Error => Err(SpyError::Refused {
                addr: self.addr.clone(),
                msg: String::from_utf8_lossy(payload).into_owned(),
            }),
        }
    }
}

#[derive(Clone, Copy)]
enum Fill {
    Head,
    Body,
}
