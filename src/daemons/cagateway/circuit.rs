//! One client's TCP connection (a "virtual circuit"): its buffers, its channels and their
//! subscriptions, and the rules that keep a bad or slow client from costing anyone else.
//!
//! - Input is read only while the output waiting for the client is below [`OUT_HARD`]: a
//!   client that sends requests but does not read the answers stops being read.
//! - A monitor update is queued only while the output is below [`OUT_SOFT`]; past that the
//!   subscription is only marked, and gets the value current at the time the client has room
//!   again (a slow client gets the latest value, never a backlog). A subscription costs a few
//!   dozen bytes whatever the rate of its variable.
//! - A request announcing more than [`MAX_PAYLOAD`] bytes closes the circuit.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::proto::DbrType;
use super::pv::Pv;
use super::source::WatchId;

/// Largest request payload accepted (EPICS_CA_MAX_ARRAY_BYTES' default).
pub const MAX_PAYLOAD: u32 = 16 * 1024;
/// Output queued past which monitor updates wait (as a mark) for room.
pub const OUT_SOFT: usize = 256 * 1024;
/// Output queued past which the client's requests are not read.
pub const OUT_HARD: usize = 1024 * 1024;
/// Channels one circuit may hold.
pub const MAX_CHANNELS: usize = 100_000;
/// Subscriptions one circuit may hold.
pub const MAX_SUBS: usize = 100_000;
/// Writes of one circuit that may wait for their owners' answers.
pub const MAX_PUTS_WAITING: usize = 256;

/// A subscription.
#[derive(Debug)]
pub struct Sub {
    /// What type the updates are.
    pub dtype: DbrType,
    /// Element count asked for.
    pub count: u32,
    /// DBE mask.
    pub mask: u16,
    /// The watch of the source.
    pub watch: WatchId,
    /// An update is due but waits for room.
    pub pending: bool,
    /// The value last sent, as a number (the reference of the deadbands).
    pub last_number: Option<f64>,
    /// The alarm status and severity last sent.
    pub last_alarm: (u16, u16),
}

/// A channel of a circuit.
#[derive(Debug)]
pub struct Channel {
    /// The client's id.
    pub cid: u32,
    /// What it serves.
    pub pv: Pv,
    /// Access rights bits sent last.
    pub rights: u32,
    /// Subscriptions by the client's id.
    pub subs: HashMap<u32, Sub>,
}

/// Why [`Circuit::fill`] stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The socket has nothing more now (or closed).
    Drained,
    /// A few messages are buffered: handle them, then read on.
    More,
    /// Output for the client is backed up: reading waits until it drains.
    Throttled,
}

/// Why a circuit is being closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closing {
    /// The client closed it.
    Eof,
    /// The client broke the protocol (what it did).
    Protocol(String),
    /// It stopped answering or reading.
    Unresponsive(&'static str),
    /// A socket error.
    Io(String),
}

/// One client connection.
#[derive(Debug)]
pub struct Circuit {
    /// The socket.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Bytes read and not yet a whole message.
    pub inbuf: Vec<u8>,
    /// Bytes for the client not yet written.
    pub out: Vec<u8>,
    out_pos: usize,
    /// The user the client asserts.
    pub user: String,
    /// The host the client asserts.
    pub host: String,
    /// Channels by our id (sid).
    pub channels: HashMap<u32, Channel>,
    /// Subscriptions over every channel.
    pub nsubs: usize,
    /// When the client last sent anything.
    pub last_rx: Instant,
    /// When output last made progress (or was empty).
    pub last_tx: Instant,
    /// An echo was sent and not answered yet.
    pub echo_sent: bool,
    /// Monitors flow (EVENTS_ON, the default) or wait (EVENTS_OFF).
    pub events_on: bool,
    /// Some subscription is marked pending.
    pub pending: bool,
    /// Reading stopped because output is backed up.
    pub throttled: bool,
    /// Writes sent to owners and not answered yet.
    pub puts_waiting: usize,
    /// Set when the circuit must close (after what is queued is flushed, for protocol errors).
    pub closing: Option<Closing>,
}

impl Circuit {
    /// A new circuit on an accepted socket.
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Circuit {
        let now = Instant::now();
        Circuit {
            stream,
            peer,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            user: String::new(),
            host: String::new(),
            channels: HashMap::new(),
            nsubs: 0,
            last_rx: now,
            last_tx: now,
            echo_sent: false,
            events_on: true,
            pending: false,
            throttled: false,
            puts_waiting: 0,
            closing: None,
        }
    }

    /// Bytes queued for the client.
    pub fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Reads what the socket has, up to the point where output is backed up or a few
    /// messages are buffered.
    pub fn fill(&mut self) -> Fill {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if self.queued() >= OUT_HARD {
                self.throttled = true;
                return Fill::Throttled;
            }
            self.throttled = false;
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closing.get_or_insert(Closing::Eof);
                    return Fill::Drained;
                }
                Ok(n) => {
                    self.last_rx = Instant::now();
                    self.echo_sent = false;
                    self.inbuf.extend_from_slice(&buf[..n]);
                    // Enough for a few whole messages: handle them before reading more.
                    if self.inbuf.len() > MAX_PAYLOAD as usize * 4 {
                        return Fill::More;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Fill::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.closing.get_or_insert(Closing::Io(e.to_string()));
                    return Fill::Drained;
                }
            }
        }
    }

    /// Writes what is queued until the socket is full.
    pub fn flush(&mut self) {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => {
                    self.closing
                        .get_or_insert(Closing::Io("connection closed".into()));
                    return;
                }
                Ok(n) => {
                    self.out_pos += n;
                    self.last_tx = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.closing.get_or_insert(Closing::Io(e.to_string()));
                    return;
                }
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            self.last_tx = Instant::now();
            // Do not keep a large buffer around for one burst.
            if self.out.capacity() > OUT_HARD {
                self.out.shrink_to(64 * 1024);
            }
        } else if self.out_pos > 64 * 1024 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }
}
