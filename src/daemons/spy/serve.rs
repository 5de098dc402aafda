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

mod packets;

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
/// system call. Measured with spybench (docs/performance.md), one copy with its system call
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
