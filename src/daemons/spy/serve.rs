//! Serving one spy client: the per-connection loop of the farm spy daemon.
//!
//! Each connection has its own thread and its own sampling reader of the farm buffer, so a slow
//! or broken client can only ever hurt itself: the producer never waits for a sampling reader,
//! and other connections do not share anything with this one but atomic counters.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use shvars::circ::{SamplingReader, StartAt, TryReadError};

use super::proto::{
    event_header, write_error, Mode, PacketHeader, Request, Status, EVENT_HEADER_SIZE,
    PACKET_HEADER_SIZE, REQUEST_SIZE,
};

/// How long a new connection may stay silent before its first request.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the connections of one farm spy daemon share.
#[derive(Debug)]
pub struct FarmShared {
    /// The farm buffer.
    pub bcname: PathBuf,
    /// False while paused: no new events are served.
    pub serving: AtomicBool,
    /// Set to close every connection (end, exit).
    pub stop: AtomicBool,
    /// How long a request waits for an event before the answer is "no data", in µs.
    pub timeout_us: AtomicI64,
    /// Requests answered with no data after waiting.
    pub timeouts: AtomicU64,
    /// Connections dropped for bad requests (garbage, wrong magic, silence).
    pub badreqs: AtomicU64,
    /// Events skipped for clients (overwritten before they could be sent, or jumped over).
    pub skipped: AtomicU64,
    /// Event number of the last event served.
    pub eventnr: AtomicU64,
}

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    /// The client closed it, or the daemon is ending.
    Normal,
    /// The client sent something that is not a request.
    BadRequest(String),
    /// The farm buffer cannot be read.
    Buffer(String),
    /// The socket failed.
    Io(io::Error),
}

/// Stats the caller adds to the daemon's statistics.
pub trait Counter: Send + Sync {
    /// One packet with `events` events and `bytes` payload bytes was sent.
    fn packet(&self, events: u64, bytes: u64);
}

/// Serves one connection until it ends.
pub fn serve(mut sock: TcpStream, shared: &FarmShared, count: &dyn Counter) -> End {
    let _ = sock.set_nodelay(true);
    // The first request must come promptly: silence is a bad request.
    let _ = sock.set_read_timeout(Some(FIRST_REQUEST_TIMEOUT));
    let mut rb = [0u8; REQUEST_SIZE];
    match sock.read_exact(&mut rb) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return End::Normal,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            let _ = write_error(&mut sock, "no request within 5 s: closing");
            return End::BadRequest(format!(
                "no request within {} s",
                FIRST_REQUEST_TIMEOUT.as_secs()
            ));
        }
        Err(e) => return End::Io(e),
    }
    let mut req = match Request::decode(&rb) {
        Ok(r) => r,
        Err(e) => {
            let _ = write_error(&mut sock, &e.to_string());
            return End::BadRequest(e.to_string());
        }
    };
    // Next serves everything the buffer still holds after the client's last event; latest and
    // push start from the freshest.
    let start = match req.mode {
        Mode::Next => StartAt::Oldest,
        Mode::Latest | Mode::Push => StartAt::Latest,
    };
    let mut reader = match SamplingReader::open_with(&shared.bcname, start) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("farm buffer: {e}");
            let _ = write_error(&mut sock, &msg);
            return End::Buffer(msg);
        }
    };
    // After a reconnect the client names the last event it has: skip up to it, unless this
    // buffer never got that far (its producer restarted its numbering).
    let newest = reader.buffer_stats().last_evnr.unwrap_or(0);
    let mut conn = Conn {
        buf: Vec::with_capacity(1 << 20),
        lost_seen: 0,
        jumped: 0,
        skipped: 0,
        last_sent: if req.last_evnr <= newest {
            req.last_evnr
        } else {
            0
        },
    };
    // Later requests arrive while we may be waiting for events; read them without blocking.
    let _ = sock.set_read_timeout(None);
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return End::Normal;
        }
        let wait = Duration::from_micros(shared.timeout_us.load(Ordering::Relaxed).max(0) as u64);
        if req.mode == Mode::Latest {
            conn.jumped += reader.refresh();
        }
        let n = if shared.serving.load(Ordering::Relaxed) {
            match conn.fill(&mut reader, &req, wait) {
                Ok(n) => n,
                Err(msg) => {
                    let _ = write_error(&mut sock, &msg);
                    return End::Buffer(msg);
                }
            }
        } else {
            // Paused: keep the connection, serve nothing new.
            std::thread::sleep(wait.min(Duration::from_millis(100)));
            conn.no_data(&reader);
            0
        };
        shared.skipped.fetch_add(conn.skipped, Ordering::Relaxed);
        if n == 0 {
            shared.timeouts.fetch_add(1, Ordering::Relaxed);
            if req.mode == Mode::Push {
                // Nothing to push: look for a new request or a closed socket, then wait again.
                match poll_request(&mut sock, &mut req) {
                    Ok(true) | Ok(false) => continue,
                    Err(e) => return e,
                }
            }
        } else {
            shared.eventnr.store(conn.last_sent, Ordering::Relaxed);
            count.packet(n as u64, (conn.buf.len() - PACKET_HEADER_SIZE) as u64);
        }
        if let Err(e) = sock.write_all(&conn.buf) {
            return match e.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => End::Normal,
                _ => End::Io(e),
            };
        }
        if req.mode != Mode::Push {
            // Wait for the next request.
            match read_request(&mut sock, shared) {
                Ok(Some(r)) => req = r,
                Ok(None) => return End::Normal,
                Err(e) => return e,
            }
        } else if let Err(e) = poll_request(&mut sock, &mut req) {
            return e;
        }
    }
}

struct Conn {
    buf: Vec<u8>,
    lost_seen: u64,
    /// Events jumped over on purpose (latest mode) and not yet reported.
    jumped: u64,
    /// Events skipped reported in the packet in `buf`.
    skipped: u64,
    last_sent: u64,
}

impl Conn {
    /// Builds a packet of events in `buf`; returns how many it holds (0: a no-data packet).
    fn fill(
        &mut self,
        reader: &mut SamplingReader,
        req: &Request,
        wait: Duration,
    ) -> Result<u32, String> {
        let (max_events, max_bytes) = req.limits();
        self.buf.clear();
        self.buf.resize(PACKET_HEADER_SIZE, 0);
        let mut n = 0u32;
        let mut payload = 0usize;
        let mut waited = false;
        while (n as usize) < max_events {
            let peeked = if n == 0 && !waited {
                waited = true;
                match reader.try_peek() {
                    Err(TryReadError::Empty) => match reader.peek_timeout(wait) {
                        Ok(p) => Ok(p),
                        Err(shvars::circ::ReadTimeoutError::Timeout) => break,
                        Err(e) => Err(e.to_string()),
                    },
                    Ok(p) => Ok(p),
                    Err(e) => Err(e.to_string()),
                }
            } else {
                match reader.try_peek() {
                    Ok(p) => Ok(p),
                    Err(TryReadError::Empty) => break,
                    Err(e) => Err(e.to_string()),
                }
            };
            let p = match peeked {
                Ok(p) => p,
                Err(msg) if n > 0 => {
                    // Send what we have; the error comes with the next request.
                    let _ = msg;
                    break;
                }
                Err(msg) => return Err(msg),
            };
            let len = p.len();
            if n > 0 && payload + len > max_bytes {
                break; // The event stays next.
            }
            let evnr = p.evnr();
            if req.mode == Mode::Next && evnr <= self.last_sent {
                // Already delivered before a reconnect: skip it.
                let _ = p.finish();
                continue;
            }
            let at = self.buf.len();
            self.buf.extend_from_slice(&event_header(evnr, len as u32));
            self.buf.extend_from_slice(p.bytes());
            match p.finish() {
                Ok(_) => {
                    n += 1;
                    payload += EVENT_HEADER_SIZE + len;
                    self.last_sent = evnr;
                }
                Err(_) => self.buf.truncate(at), // overwritten while copied: skipped forward
            }
        }
        if n == 0 {
            self.no_data(reader);
            return Ok(0);
        }
        let h = PacketHeader {
            status: Status::Ok,
            nevents: n,
            payload_len: (self.buf.len() - PACKET_HEADER_SIZE) as u64,
            skipped: self.skipped_delta(reader),
            last_evnr: self.last_sent,
        };
        self.skipped = h.skipped;
        self.buf[..PACKET_HEADER_SIZE].copy_from_slice(&h.encode());
        Ok(n)
    }

    fn no_data(&mut self, reader: &SamplingReader) {
        self.buf.clear();
        let h = PacketHeader {
            status: Status::NoData,
            nevents: 0,
            payload_len: 0,
            skipped: self.skipped_delta(reader),
            last_evnr: reader.buffer_stats().last_evnr.unwrap_or(0),
        };
        self.skipped = h.skipped;
        self.buf.extend_from_slice(&h.encode());
    }

    fn skipped_delta(&mut self, reader: &SamplingReader) -> u64 {
        let lost = reader.stats().events_lost;
        let d = lost - self.lost_seen + self.jumped;
        self.lost_seen = lost;
        self.jumped = 0;
        d
    }
}

/// Waits for the next request, checking now and then whether the daemon is ending.
fn read_request(sock: &mut TcpStream, shared: &FarmShared) -> Result<Option<Request>, End> {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut rb = [0u8; REQUEST_SIZE];
    let mut got = 0;
    while got < REQUEST_SIZE {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match sock.read(&mut rb[got..]) {
            Ok(0) => {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(End::BadRequest(format!(
                        "connection closed inside a request ({got} of {REQUEST_SIZE} bytes)"
                    )))
                }
            }
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(End::Io(e)),
        }
    }
    match Request::decode(&rb) {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            let _ = write_error(sock, &e.to_string());
            Err(End::BadRequest(e.to_string()))
        }
    }
}

/// In push mode: takes a request the client sent meanwhile (new limits or mode), if any.
/// Returns whether one was taken.
fn poll_request(sock: &mut TcpStream, req: &mut Request) -> Result<bool, End> {
    let mut rb = [0u8; REQUEST_SIZE];
    sock.set_nonblocking(true).map_err(End::Io)?;
    let r = sock.peek(&mut rb);
    let res = match r {
        Ok(0) => Err(End::Normal),
        Ok(n) if n >= REQUEST_SIZE => {
            let _ = sock.read_exact(&mut rb);
            match Request::decode(&rb) {
                Ok(r) => {
                    *req = r;
                    Ok(true)
                }
                Err(e) => {
                    let _ = sock.set_nonblocking(false);
                    let _ = write_error(sock, &e.to_string());
                    Err(End::BadRequest(e.to_string()))
                }
            }
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(End::Io(e)),
    };
    let _ = sock.set_nonblocking(false);
    res
}
