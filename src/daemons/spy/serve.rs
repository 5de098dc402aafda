//! Serving one spy client: the per-connection loop of the farm spy daemon.
//!
//! Each connection has its own thread and its own sampling reader of the farm buffer, so a slow
//! or broken client can only ever hurt itself: the producer never waits for a sampling reader,
//! and other connections do not share anything with this one but atomic counters.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use shvars::circ::{SamplingReader, StartAt};

use super::proto::{
    end_record, event_header, write_error, Mode, PacketHeader, Request, Status, EVENT_HEADER_SIZE,
    PACKET_HEADER_SIZE, REQUEST_SIZE, VERDICT_OVERWRITTEN, VERDICT_VALID,
};

/// How long a new connection may take to send its whole first request.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long any later request may take from its first byte to its last (a client trickling a
/// request byte by byte is dropped).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How long the kernel may take to accept one whole packet for a client: a client that does
/// not read is dropped after this (its events are never buffered beyond one packet).
pub const SEND_DEADLINE: Duration = Duration::from_secs(5);
/// A client waiting this long without sending a request may lose its slot to a new client
/// when every slot is taken.
pub const IDLE_EVICT: Duration = Duration::from_secs(5);
/// Most payload bytes this server puts in one packet (a single larger event still travels
/// alone). With the one event being copied, this bounds the memory a client costs the farm:
/// at most `SERVE_PACKET_BYTES` plus the buffer's largest event, whatever the client asks.
pub const SERVE_PACKET_BYTES: usize = 4 << 20;
/// In streamed packets (protocol version 2), events at least this large go from the farm
/// buffer to the socket with one copy (a vectored write straight from the buffer's mapping,
/// then the verdict); smaller ones are copied into the packet, checked, and sent many per
/// system call. Measured with spybench (docs/operations.md), one copy with its system call
/// and its wait for the client per event was slower than copying 64 KiB events into 4 MiB
/// packets, and no faster at 1 MiB: it is used where it saves memory, for events of 1 MiB
/// and more (a copied event needs a packet buffer of its size per connection).
pub const DIRECT_SEND: usize = 1 << 20;
/// In streamed packets, the events copied into the packet are sent once this many bytes have
/// gathered (or with the next directly sent event, or at the end of the packet).
const STREAM_FLUSH: usize = 1 << 20;
/// How often a blocked read or write looks at the stop flag and its deadline.
const SLICE: Duration = Duration::from_millis(200);
/// How often a connection waiting for a request with an age bound looks at the buffer.
const WATCH_SLICE: Duration = Duration::from_millis(10);
/// In push mode, after a packet that did not fill the client's limits, the connection lets
/// events gather this long before it looks again: a stream of small events then travels in
/// packets of many, instead of one packet (and a wake-up, a send and a look for a new
/// request) per event. A full packet is followed at once by the next.
pub const PUSH_GATHER: Duration = Duration::from_millis(2);

/// The connections being served, so that `end` can close them and a new client can take the
/// slot of one that sits idle.
#[derive(Debug)]
pub struct Clients {
    epoch: Instant,
    next_id: AtomicU64,
    slots: Mutex<Vec<Slot>>,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    peer: SocketAddr,
    sock: TcpStream,
    /// Milliseconds since `epoch` + 1 when the connection began waiting for a request; 0 while
    /// it is being served.
    idle_since: Arc<AtomicU64>,
}

/// One connection's place in [`Clients`]; leaving it frees the slot.
#[derive(Debug)]
pub struct SlotHandle {
    clients: Arc<Clients>,
    id: u64,
    idle_since: Arc<AtomicU64>,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            slots: Mutex::new(Vec::new()),
        }
    }
}

impl Clients {
    /// Connections served now.
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// True if none is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a slot for `sock` if fewer than `max` are taken; else frees the slot of the
    /// client idle longest (at least [`IDLE_EVICT`]), closing its connection, and takes it.
    /// Returns the handle and the peer evicted, if one was; `None` if every slot is busy.
    ///
    /// # Errors
    /// The socket cannot be cloned (out of file descriptors).
    pub fn join(
        self: &Arc<Self>,
        sock: &TcpStream,
        peer: SocketAddr,
        max: usize,
    ) -> io::Result<Option<(SlotHandle, Option<SocketAddr>)>> {
        let clone = sock.try_clone()?;
        let mut slots = self.slots.lock();
        let mut evicted = None;
        if slots.len() >= max {
            let now = self.epoch.elapsed().as_millis() as u64 + 1;
            let limit = IDLE_EVICT.as_millis() as u64;
            let idlest = slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let t = s.idle_since.load(Ordering::Relaxed);
                    (t != 0 && now.saturating_sub(t) >= limit).then_some((t, i))
                })
                .min();
            let Some((_, i)) = idlest else {
                return Ok(None);
            };
            let old = slots.swap_remove(i);
            let _ = old.sock.shutdown(Shutdown::Both);
            evicted = Some(old.peer);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let idle_since = Arc::new(AtomicU64::new(0));
        slots.push(Slot {
            id,
            peer,
            sock: clone,
            idle_since: idle_since.clone(),
        });
        Ok(Some((
            SlotHandle {
                clients: self.clone(),
                id,
                idle_since,
            },
            evicted,
        )))
    }

    /// Closes every connection (both directions): their threads see it at once, whatever they
    /// are blocked in, and end.
    pub fn close_all(&self) {
        for s in self.slots.lock().drain(..) {
            let _ = s.sock.shutdown(Shutdown::Both);
        }
    }
}

impl SlotHandle {
    fn idle(&self, yes: bool) {
        let v = if yes {
            self.clients.epoch.elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        self.idle_since.store(v, Ordering::Relaxed);
    }
}

impl Drop for SlotHandle {
    fn drop(&mut self) {
        self.clients.slots.lock().retain(|s| s.id != self.id);
    }
}

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
    /// The client did not read what it asked for.
    NotReading(String),
    /// The socket failed.
    Io(io::Error),
}

/// Stats the caller adds to the daemon's statistics.
pub trait Counter: Send + Sync {
    /// One packet with `events` events and `bytes` payload bytes was sent.
    fn packet(&self, events: u64, bytes: u64);
    /// A wait for events ended with none (a timeout loop): it counts as a loop too.
    fn idle(&self);
}

/// Serves one connection until it ends.
pub fn serve(
    mut sock: TcpStream,
    shared: &FarmShared,
    count: &dyn Counter,
    slot: &SlotHandle,
) -> End {
    let _ = sock.set_nodelay(true);
    let _ = sock.set_write_timeout(Some(SLICE));
    // The whole first request must come promptly: silence or a trickle is a bad request.
    let mut req = match read_request(
        &mut sock,
        shared,
        Some(Instant::now() + FIRST_REQUEST_TIMEOUT),
        slot,
        None,
    ) {
        Ok(Some(r)) => r,
        Ok(None) => return End::Normal,
        Err(e) => return e,
    };
    // Next serves everything the buffer still holds after the client's last event (a client
    // that has none and bounds the age starts at the freshest); latest and push start from the
    // freshest.
    let start = match req.mode {
        Mode::Next if req.last_evnr == 0 && req.maxage_ms > 0 => StartAt::Latest,
        Mode::Next => StartAt::Oldest,
        Mode::Latest | Mode::Push => StartAt::Latest,
    };
    let mut reader = match SamplingReader::open_with(&shared.bcname, start) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("farm buffer: {e}");
            let _ = send(&mut sock, &error_packet(&msg), shared);
            return End::Buffer(msg);
        }
    };
    // After a reconnect the client names the last event it has: skip up to it, unless it
    // names another buffer, or this buffer never got that far (its producer restarted its
    // numbering).
    let bs = reader.buffer_stats();
    let newest = bs.last_evnr.unwrap_or(0);
    let buffer_id = buffer_id(bs.instance);
    let same_buffer = req.buffer_id == 0 || req.buffer_id == buffer_id;
    let mut conn = Conn {
        buf: Vec::with_capacity(64 << 10),
        full: false,
        lost_seen: 0,
        jumped: 0,
        skipped: 0,
        last_sent: if same_buffer && req.last_evnr <= newest {
            req.last_evnr
        } else {
            0
        },
        buffer_id,
        abandoned: 0,
        // What the buffer holds now was written at a time we do not know: for an age bound,
        // it counts as old (a client that bounds the age wants none of a backlog).
        seen: VecDeque::from([(
            Instant::now()
                .checked_sub(Duration::from_secs(24 * 3600))
                .unwrap_or_else(Instant::now),
            newest,
        )]),
    };
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return End::Normal;
        }
        let wait = Duration::from_micros(shared.timeout_us.load(Ordering::Relaxed).max(0) as u64);
        if req.mode == Mode::Latest {
            conn.jumped += reader.refresh();
        }
        // A streamed packet (version 2) is sent while it is built; what is left in `buf` then
        // is only a no-data packet (n = 0).
        let mut streamed = 0;
        let n = if shared.serving.load(Ordering::Relaxed) {
            let r = if req.version >= 2 {
                match conn.stream(&mut sock, &mut reader, &req, wait, shared) {
                    Ok((n, bytes)) => {
                        streamed = bytes;
                        Ok(n)
                    }
                    Err(Failed::Buffer(msg)) => Err(msg),
                    Err(Failed::Send(e)) => return e,
                }
            } else {
                conn.fill(&mut reader, &req, wait)
            };
            match r {
                Ok(n) => n,
                Err(msg) => {
                    let _ = send(&mut sock, &error_packet(&msg), shared);
                    return End::Buffer(msg);
                }
            }
        } else {
            // Paused: keep the connection, serve nothing new.
            std::thread::sleep(wait.min(Duration::from_millis(100)));
            conn.no_data(&reader, req.version);
            0
        };
        shared.skipped.fetch_add(conn.skipped, Ordering::Relaxed);
        if n == 0 {
            shared.timeouts.fetch_add(1, Ordering::Relaxed);
            count.idle();
            if req.mode == Mode::Push {
                // Nothing to push: look for a new request or a closed socket, then wait again.
                match poll_request(&mut sock, &mut req, shared) {
                    Ok(true) | Ok(false) => continue,
                    Err(e) => return e,
                }
            }
        } else if req.version >= 2 {
            shared.eventnr.store(conn.last_sent, Ordering::Relaxed);
            count.packet(n as u64, streamed);
        } else {
            shared.eventnr.store(conn.last_sent, Ordering::Relaxed);
            count.packet(n as u64, (conn.buf.len() - PACKET_HEADER_SIZE) as u64);
        }
        if n == 0 || req.version < 2 {
            if let Err(e) = send(&mut sock, &conn.buf, shared) {
                return e;
            }
        }
        conn.shrink();
        if req.mode != Mode::Push {
            // Wait for the next request: idle meanwhile (the slot may go to a new client).
            let watch = (req.maxage_ms > 0).then_some((&mut conn, &reader));
            match read_request(&mut sock, shared, None, slot, watch) {
                Ok(Some(r)) => req = r,
                Ok(None) => return End::Normal,
                Err(e) => return e,
            }
        } else {
            if let Err(e) = poll_request(&mut sock, &mut req, shared) {
                return e;
            }
            if !conn.full {
                std::thread::sleep(PUSH_GATHER);
            }
        }
    }
}

fn error_packet(msg: &str) -> Vec<u8> {
    let mut b = Vec::new();
    let _ = write_error(&mut b, msg);
    b
}

/// Writes `bytes` whole within [`SEND_DEADLINE`]; a client that does not take them is dropped.
fn send(sock: &mut TcpStream, bytes: &[u8], shared: &FarmShared) -> Result<(), End> {
    send_iov(sock, &mut [IoSlice::new(bytes)], shared)
}

/// Writes the slices of `iov` whole within [`SEND_DEADLINE`], with as few system calls as the
/// kernel allows (a vectored write takes them all at once when the socket has room).
fn send_iov(sock: &mut TcpStream, iov: &mut [IoSlice<'_>], shared: &FarmShared) -> Result<(), End> {
    let deadline = Instant::now() + SEND_DEADLINE;
    let mut iov = iov;
    while !iov.is_empty() {
        if shared.stop.load(Ordering::Relaxed) {
            return Err(End::Normal);
        }
        match sock.write_vectored(iov) {
            Ok(0) => return Err(End::Normal),
            Ok(n) => IoSlice::advance_slices(&mut iov, n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if Instant::now() >= deadline {
                    let left: usize = iov.iter().map(|s| s.len()).sum();
                    return Err(End::NotReading(format!(
                        "it did not read a packet within {} s ({left} bytes left unsent)",
                        SEND_DEADLINE.as_secs(),
                    )));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::NotConnected
                ) =>
            {
                return Err(End::Normal)
            }
            Err(e) => return Err(End::Io(e)),
        }
    }
    Ok(())
}

/// Why building a streamed packet stopped short.
enum Failed {
    /// The farm buffer cannot be read (and nothing was sent yet).
    Buffer(String),
    /// The socket failed or the client does not read.
    Send(End),
}

/// The identity of a farm buffer on the wire: 32 bits of its instance number, never 0.
pub fn buffer_id(instance: u64) -> u32 {
    (shvars::circ::fmix64(instance) as u32).max(1)
}

struct Conn {
    buf: Vec<u8>,
    /// The packet in `buf` reached the client's limits (more events may be waiting).
    full: bool,
    lost_seen: u64,
    /// Events jumped over on purpose (latest mode, or too old) and not yet reported.
    jumped: u64,
    /// Events skipped reported in the packet in `buf`.
    skipped: u64,
    last_sent: u64,
    buffer_id: u32,
    /// Events sent in streamed packets with the verdict "overwritten" whose loss the reader
    /// has not yet counted in `events_lost` (it counts it at the next event it consumes); the
    /// client counts them itself, so they are taken out of `skipped`.
    abandoned: u64,
    /// When the buffer's newest event number was seen to change, oldest first: event `e` was
    /// written before the first time a number `>= e` was seen, so its age is at least the age
    /// of that sighting.
    seen: VecDeque<(Instant, u64)>,
}

/// The next event of the buffer for a packet being built: with `wait`, the packet's first
/// look, which waits up to that long for one; `Ok(None)` when there is none (yet).
/// The next event of a packet being built; `None` when there is none, and, once the packet
/// holds something (`started`), when the buffer fails: what it holds goes out, and the error
/// comes with the next request.
fn packet_peek(
    reader: &mut SamplingReader,
    wait: Option<Duration>,
    started: bool,
) -> Result<Option<shvars::circ::Peeked<'_, shvars::circ::FileStorage>>, String> {
    match next_peek(reader, wait) {
        Err(_) if started => Ok(None),
        r => r,
    }
}

fn next_peek(
    reader: &mut SamplingReader,
    wait: Option<Duration>,
) -> Result<Option<shvars::circ::Peeked<'_, shvars::circ::FileStorage>>, String> {
    // One call whose result is returned (a try_peek first, then a wait on its `Empty`, would
    // keep the reader borrowed across both): a zero timeout is a single look.
    match reader.peek_timeout(wait.unwrap_or(Duration::ZERO)) {
        Ok(p) => Ok(Some(p)),
        Err(shvars::circ::ReadTimeoutError::Timeout) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

impl Conn {
    /// Whether event `evnr` is left out of the packet: in next mode one delivered before a
    /// reconnect; one the client's age bound excludes (`stale`: the last such event number),
    /// which is counted as skipped.
    fn skips(&mut self, evnr: u64, req: &Request, stale: u64) -> bool {
        if req.mode == Mode::Next && evnr <= self.last_sent {
            return true;
        }
        if evnr <= stale {
            self.jumped += 1;
            return true;
        }
        false
    }

    /// Notes the buffer's newest event number now.
    fn observe(&mut self, reader: &SamplingReader) {
        let newest = reader.buffer_stats().last_evnr.unwrap_or(0);
        if self.seen.back().is_none_or(|&(_, n)| n != newest) {
            self.seen.push_back((Instant::now(), newest));
        }
    }

    /// Starts a packet: its limits (the bytes capped to what one of ours holds) and the newest
    /// event too old to serve (the request's `maxage_ms`; 0: none).
    fn begin(&mut self, reader: &SamplingReader, req: &Request) -> (usize, usize, u64) {
        let (max_events, max_bytes) = req.limits();
        self.buf.clear();
        self.full = false;
        self.observe(reader);
        let stale = if req.maxage_ms > 0 {
            self.stale_upto(Duration::from_millis(req.maxage_ms as u64))
        } else {
            0
        };
        (max_events, max_bytes.min(SERVE_PACKET_BYTES), stale)
    }

    /// Every event up to the number returned is certainly older than `maxage` (0: none is).
    fn stale_upto(&mut self, maxage: Duration) -> u64 {
        while self.seen.len() >= 2 && self.seen[1].0.elapsed() > maxage {
            self.seen.pop_front();
        }
        match self.seen.front() {
            Some(&(t, n)) if t.elapsed() > maxage => n,
            _ => 0,
        }
    }

    /// Builds a packet of events in `buf`; returns how many it holds (0: a no-data packet).
    fn fill(
        &mut self,
        reader: &mut SamplingReader,
        req: &Request,
        wait: Duration,
    ) -> Result<u32, String> {
        let (max_events, max_bytes, stale) = self.begin(reader, req);
        self.buf.resize(PACKET_HEADER_SIZE, 0);
        let mut n = 0u32;
        let mut payload = 0usize;
        let mut first = Some(wait);
        while (n as usize) < max_events {
            let Some(p) = packet_peek(reader, first.take(), n > 0)? else {
                break;
            };
            let len = p.len();
            if n > 0 && payload + len > max_bytes {
                self.full = true;
                break; // The event stays next.
            }
            let evnr = p.evnr();
            if self.skips(evnr, req, stale) {
                let _ = p.finish();
                continue;
            }
            let at = self.buf.len();
            let need = at + EVENT_HEADER_SIZE + len;
            if need > self.buf.capacity() {
                // Grow by doubling, but never past the packet limit (or the one event).
                let cap = (self.buf.capacity() * 2)
                    .min(PACKET_HEADER_SIZE + SERVE_PACKET_BYTES)
                    .max(need);
                self.buf.reserve_exact(cap - at);
            }
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
        if n as usize >= max_events {
            self.full = true;
        }
        if n == 0 {
            self.no_data(reader, req.version);
            return Ok(0);
        }
        let h = PacketHeader {
            version: req.version,
            status: Status::Ok,
            nevents: n,
            payload_len: (self.buf.len() - PACKET_HEADER_SIZE) as u64,
            skipped: self.skipped_delta(reader),
            last_evnr: self.last_sent,
            buffer_id: self.buffer_id,
        };
        self.skipped = h.skipped;
        self.buf[..PACKET_HEADER_SIZE].copy_from_slice(&h.encode());
        Ok(n)
    }

    /// Builds and sends a streamed packet (protocol version 2); returns the events sent and
    /// their bytes, or (0, 0) with a no-data packet in `buf` to send.
    ///
    /// Events of at least [`DIRECT_SEND`] bytes go from the farm buffer's mapping to the socket
    /// in one vectored write, the header of the packet and the records gathered before it
    /// included; only after the kernel took the bytes is the event checked
    /// ([`shvars::circ::Peeked::finish`]), and its verdict word goes first in the next write: an
    /// event overwritten while the kernel copied it reaches the client marked as such, and the
    /// client discards it. Smaller events are copied into the packet and checked before they
    /// are sent, as in version 1.
    fn stream(
        &mut self,
        sock: &mut TcpStream,
        reader: &mut SamplingReader,
        req: &Request,
        wait: Duration,
        shared: &FarmShared,
    ) -> Result<(u32, u64), Failed> {
        let (max_events, max_bytes, stale) = self.begin(reader, req);
        let mut n = 0u32;
        let mut payload = 0usize;
        let mut first = Some(wait);
        let mut started = false;
        while (n as usize) < max_events {
            let Some(p) = packet_peek(reader, first.take(), started).map_err(Failed::Buffer)?
            else {
                break;
            };
            let len = p.len();
            if n > 0 && payload + len > max_bytes {
                self.full = true;
                break; // The event stays next.
            }
            let evnr = p.evnr();
            if self.skips(evnr, req, stale) {
                let _ = p.finish();
                continue;
            }
            if !started {
                started = true;
                let h = PacketHeader {
                    version: req.version,
                    status: Status::Stream,
                    nevents: 0,
                    payload_len: 0,
                    skipped: 0,
                    last_evnr: 0,
                    buffer_id: self.buffer_id,
                };
                self.buf.extend_from_slice(&h.encode());
            }
            let eh = event_header(evnr, len as u32);
            if len >= DIRECT_SEND {
                // One copy: the kernel takes the bytes from the mapping.
                let mut iov = [
                    IoSlice::new(&self.buf),
                    IoSlice::new(&eh),
                    IoSlice::new(p.bytes()),
                ];
                send_iov(sock, &mut iov, shared).map_err(Failed::Send)?;
                self.buf.clear();
                let verdict = match p.finish() {
                    Ok(_) => {
                        self.last_sent = evnr;
                        VERDICT_VALID
                    }
                    Err(_) => {
                        self.abandoned += 1;
                        VERDICT_OVERWRITTEN
                    }
                };
                self.buf.extend_from_slice(&verdict.to_le_bytes());
                n += 1;
                payload += EVENT_HEADER_SIZE + len;
            } else {
                let at = self.buf.len();
                self.buf.extend_from_slice(&eh);
                self.buf.extend_from_slice(p.bytes());
                match p.finish() {
                    Ok(_) => {
                        self.buf.extend_from_slice(&VERDICT_VALID.to_le_bytes());
                        n += 1;
                        payload += EVENT_HEADER_SIZE + len;
                        self.last_sent = evnr;
                    }
                    Err(_) => self.buf.truncate(at), // overwritten while copied: skipped
                }
                if self.buf.len() >= STREAM_FLUSH {
                    send(sock, &self.buf, shared).map_err(Failed::Send)?;
                    self.buf.clear();
                }
            }
        }
        if n as usize >= max_events {
            self.full = true;
        }
        if !started {
            self.no_data(reader, req.version);
            return Ok((0, 0));
        }
        let skipped = self.skipped_delta(reader);
        self.skipped = skipped;
        self.buf
            .extend_from_slice(&end_record(self.last_sent, n, skipped));
        send(sock, &self.buf, shared).map_err(Failed::Send)?;
        self.buf.clear();
        Ok((n, payload as u64))
    }

    /// Gives back the memory of a packet far larger than the usual (one huge event).
    fn shrink(&mut self) {
        if self.buf.capacity() > 2 * SERVE_PACKET_BYTES {
            self.buf = Vec::with_capacity(64 << 10);
        }
    }

    fn no_data(&mut self, reader: &SamplingReader, version: u16) {
        self.buf.clear();
        let h = PacketHeader {
            version,
            status: Status::NoData,
            nevents: 0,
            payload_len: 0,
            skipped: self.skipped_delta(reader),
            last_evnr: reader.buffer_stats().last_evnr.unwrap_or(0),
            buffer_id: self.buffer_id,
        };
        self.skipped = h.skipped;
        self.buf.extend_from_slice(&h.encode());
    }

    fn skipped_delta(&mut self, reader: &SamplingReader) -> u64 {
        let lost = reader.stats().events_lost;
        let mut d = lost - self.lost_seen + self.jumped;
        // Abandoned events the client counted itself, once the reader counted them too.
        let told = self.abandoned.min(lost - self.lost_seen);
        self.abandoned -= told;
        d -= told;
        self.lost_seen = lost;
        self.jumped = 0;
        d
    }
}

/// Waits for the next request, checking now and then whether the daemon is ending. With
/// `first` the whole request must arrive by then; otherwise waiting for it is unbounded (the
/// connection counts as idle meanwhile), but once its first byte arrived the rest must come
/// within [`REQUEST_DEADLINE`].
fn read_request(
    sock: &mut TcpStream,
    shared: &FarmShared,
    first: Option<Instant>,
    slot: &SlotHandle,
    mut watch: Option<(&mut Conn, &SamplingReader)>,
) -> Result<Option<Request>, End> {
    // While an age bound is asked for, look at the buffer's newest event often: ages are
    // estimated from these sightings.
    let slice = if watch.is_some() { WATCH_SLICE } else { SLICE };
    let _ = sock.set_read_timeout(Some(slice));
    let mut rb = [0u8; REQUEST_SIZE];
    let mut got = 0;
    let mut deadline = first;
    slot.idle(first.is_none());
    let res = loop {
        if got == REQUEST_SIZE {
            break Ok(());
        }
        if shared.stop.load(Ordering::Relaxed) {
            break Err(Ok(None));
        }
        if let Some(d) = deadline {
            if Instant::now() >= d {
                let msg = if first.is_some() {
                    format!(
                        "no complete request within {} s of connecting ({got} of {REQUEST_SIZE} bytes)",
                        FIRST_REQUEST_TIMEOUT.as_secs()
                    )
                } else {
                    format!(
                        "a request not complete within {} s of its first byte ({got} of {REQUEST_SIZE} bytes)",
                        REQUEST_DEADLINE.as_secs()
                    )
                };
                let _ = send(sock, &error_packet(&format!("{msg}: closing")), shared);
                break Err(Err(End::BadRequest(msg)));
            }
        }
        match sock.read(&mut rb[got..]) {
            Ok(0) => {
                break Err(if got == 0 {
                    Ok(None)
                } else {
                    Err(End::BadRequest(format!(
                        "connection closed inside a request ({got} of {REQUEST_SIZE} bytes)"
                    )))
                })
            }
            Ok(n) => {
                if got == 0 {
                    slot.idle(false);
                    deadline.get_or_insert_with(|| Instant::now() + REQUEST_DEADLINE);
                }
                got += n;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if let Some((conn, reader)) = watch.as_mut() {
                    conn.observe(reader);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break Err(Ok(None)),
            Err(e) => break Err(Err(End::Io(e))),
        }
    };
    slot.idle(false);
    if let Err(r) = res {
        return r;
    }
    match Request::decode(&rb) {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            let _ = send(sock, &error_packet(&e.to_string()), shared);
            Err(End::BadRequest(e.to_string()))
        }
    }
}

/// In push mode: takes a request the client sent meanwhile (new limits or mode), if any.
/// Returns whether one was taken. One system call when there is none (a peek that does not
/// block), not three (no switching the socket to non-blocking and back).
fn poll_request(sock: &mut TcpStream, req: &mut Request, shared: &FarmShared) -> Result<bool, End> {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut rb = [0u8; REQUEST_SIZE];
    let peeked = recv(
        sock.as_raw_fd(),
        &mut rb,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    );
    match peeked {
        Ok(0) => Err(End::Normal),
        Ok(n) if n >= REQUEST_SIZE => {
            // All of it is there: this read does not block.
            sock.read_exact(&mut rb).map_err(End::Io)?;
            match Request::decode(&rb) {
                Ok(r) => {
                    *req = r;
                    Ok(true)
                }
                Err(e) => {
                    let _ = send(sock, &error_packet(&e.to_string()), shared);
                    Err(End::BadRequest(e.to_string()))
                }
            }
        }
        Ok(_) => Ok(false),
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(nix::errno::Errno::ECONNRESET) => Err(End::Normal),
        Err(e) => Err(End::Io(io::Error::from(e))),
    }
}
