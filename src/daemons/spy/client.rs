//! The client side of the spy protocol: connect to a farm spy daemon, ask for events, receive
//! packets. Used by rspydaemon and by `spycat remote://...`.
//!
//! Nothing the server sends is trusted: every header is checked against what was asked for, a
//! packet is read completely before any event is handed out, and every wait has a deadline.

use std::io::{self, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::proto::{
    event_header, BadPacket, Events, Mode, PacketHeader, Request, Status, END_MARK,
    END_RECORD_SIZE, EVENT_HEADER_SIZE, MAX_PACKET_BYTES, MAX_PACKET_EVENTS, PACKET_HEADER_SIZE,
    VERDICT_OVERWRITTEN, VERDICT_SIZE, VERDICT_VALID, VERSION,
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

/// How long the rest of a packet may take once its header arrived: a server that stalls in
/// the middle of a packet is treated as a broken connection.
pub const PACKET_STALL: Duration = Duration::from_secs(5);

/// Read-ahead buffer: small events are taken from it, large bodies are read straight into
/// their destination.
const READ_AHEAD: usize = 1 << 20;
/// Bodies at least this large are read straight into their destination.
const DIRECT: usize = 32 << 10;
/// Bytes read into the read-ahead buffer after a large body, in the same system call: enough
/// for the next packet header and event header.
const TRAILING: usize = 64;

/// The packet being read.
#[derive(Debug, Clone, Copy)]
struct Current {
    events_left: u32,
    bytes_left: u64,
    body_left: usize,
    deadline: Instant,
    /// A streamed packet (version 2): a verdict after each event, an end record at the end.
    stream: bool,
    /// The current event's verdict has not been read yet.
    verdict_due: bool,
    /// Records of a streamed packet read so far.
    records: u32,
    /// Events of this streamed packet whose verdict said "overwritten".
    abandoned: u64,
}

/// What an events packet said once all of it was read: what it skipped and where it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketEnd {
    /// Events lost for this client since the previous packet: skipped by the server, plus
    /// those sent but overwritten while in flight (discarded here, see `abandoned`).
    pub skipped: u64,
    /// Of those, the events the server sent with the verdict "overwritten while sent": never
    /// handed out (their bytes may be corrupt).
    pub abandoned: u64,
    /// The number of the last valid event of the packet (or the newest the server had seen).
    pub last_evnr: u64,
    /// Events in the packet, valid or not.
    pub events: u32,
}

/// A connection to a farm spy daemon.
#[derive(Debug)]
pub struct SpyClient {
    sock: TcpStream,
    addr: String,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    cur: Option<Current>,
    /// Whether the last event was large (its successor's header is read exactly).
    last_big: bool,
    /// The read timeout the socket has now.
    timeout: Option<Duration>,
    /// The payload of the last packet taken whole by [`SpyClient::receive`].
    payload: Vec<u8>,
    nevents: u32,
    max_events: u32,
    max_payload: u64,
    /// The end of the last events packet read whole.
    end: PacketEnd,
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

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
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
            rbuf: vec![0; READ_AHEAD],
            rpos: 0,
            rend: 0,
            cur: None,
            last_big: false,
            timeout: None,
            payload: Vec::new(),
            nevents: 0,
            max_events: MAX_PACKET_EVENTS,
            max_payload: 0,
            end: PacketEnd::default(),
        })
    }

    /// The events of the last packet taken whole by [`SpyClient::receive`], checked one by one.
    pub fn events(&self) -> Events<'_> {
        Events::new(&self.payload, self.nevents)
    }

    /// Hands over the payload of the last packet taken by [`SpyClient::receive`] (read its
    /// events with [`Events::new`] and the header's `nevents`) and keeps `spare` to receive
    /// the next one into: no copy either way. [`SpyClient::events`] is empty afterwards.
    pub fn swap_payload(&mut self, spare: Vec<u8>) -> Vec<u8> {
        self.nevents = 0;
        let mut spare = spare;
        spare.clear();
        std::mem::replace(&mut self.payload, spare)
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
            version: VERSION,
            mode,
            max_events,
            max_bytes,
            last_evnr,
            buffer_id: 0,
            maxage_ms: 0,
        })
    }

    fn io(&self, source: io::Error) -> SpyError {
        SpyError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    fn protocol(&self, source: BadPacket) -> SpyError {
        SpyError::Protocol {
            addr: self.addr.clone(),
            source,
        }
    }

    /// Arms the socket's read timeout for `deadline` (in slices of at most 10 ms, so the
    /// system call is skipped while the value stays the same). False if it passed.
    fn set_timeout(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let slice = left.clamp(Duration::from_micros(100), Duration::from_millis(10));
        let slice = Duration::from_micros(slice.as_micros() as u64 / 100 * 100);
        if self.timeout != Some(slice) {
            let _ = self.sock.set_read_timeout(Some(slice));
            self.timeout = Some(slice);
        }
        true
    }

    /// Reads what the socket has (at least one byte, at most `max`) into the read-ahead
    /// buffer. Returns false if `deadline` passed first.
    fn fill_some(&mut self, deadline: Instant, max: usize) -> Result<bool, SpyError> {
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        } else if self.rend == self.rbuf.len() {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            self.rend -= self.rpos;
            self.rpos = 0;
        }
        loop {
            if !self.set_timeout(deadline) {
                return Ok(false);
            }
            let end = self.rbuf.len().min(self.rend.saturating_add(max.max(1)));
            match self.sock.read(&mut self.rbuf[self.rend..end]) {
                Ok(0) => return Err(SpyError::Closed(self.addr.clone())),
                Ok(n) => {
                    self.rend += n;
                    return Ok(true);
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(self.io(e)),
            }
        }
    }

    /// Fills `dest` completely, from the read-ahead buffer and then straight from the socket.
    ///
    /// A large `dest` (at least [`DIRECT`] bytes) is read straight from the socket to its end,
    /// with a few bytes after it (the next event's or packet's header) taken into the
    /// read-ahead buffer in the same system call; so a stream of large events is received with
    /// no copy through the read-ahead buffer and about one system call per event.
    fn read_exact(&mut self, dest: &mut [u8], deadline: Instant) -> Result<(), SpyError> {
        let mut done = (self.rend - self.rpos).min(dest.len());
        dest[..done].copy_from_slice(&self.rbuf[self.rpos..self.rpos + done]);
        self.rpos += done;
        let direct = dest.len() >= DIRECT;
        while done < dest.len() {
            if direct {
                // The read-ahead buffer is empty here (all of it went into dest above).
                self.rpos = 0;
                self.rend = 0;
                if !self.set_timeout(deadline) {
                    return Err(self.stalled());
                }
                let (body, after) = (&mut dest[done..], &mut self.rbuf[..TRAILING]);
                let mut iov = [IoSliceMut::new(body), IoSliceMut::new(after)];
                match self.sock.read_vectored(&mut iov) {
                    Ok(0) => return Err(SpyError::Closed(self.addr.clone())),
                    Ok(n) => {
                        let left = dest.len() - done;
                        done += n.min(left);
                        self.rend = n.saturating_sub(left);
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Err(self.io(e)),
                }
            } else {
                if !self.fill_some(deadline, usize::MAX)? {
                    return Err(self.stalled());
                }
                let left = dest.len() - done;
                let n = (self.rend - self.rpos).min(left);
                dest[done..done + n].copy_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
                self.rpos += n;
                done += n;
            }
        }
        Ok(())
    }

    fn stalled(&self) -> SpyError {
        self.io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the server stopped in the middle of a packet for {} s",
                PACKET_STALL.as_secs()
            ),
        ))
    }

    /// Waits at most `timeout` for the next packet's header. `Ok(None)`: nothing yet (what
    /// arrived of the header is kept). After an events packet, read its events with
    /// [`SpyClient::next_event`] and [`SpyClient::read_body`] or [`SpyClient::skip_body`].
    ///
    /// # Errors
    /// [`SpyError::Protocol`] for a bad header, [`SpyError::Refused`] for an error packet,
    /// [`SpyError::Io`]/[`SpyError::Closed`].
    ///
    /// # Panics
    /// If events of the previous packet were left unread (a bug in the caller).
    pub fn receive_header(&mut self, timeout: Duration) -> Result<Option<PacketHeader>, SpyError> {
        if let Some(c) = &self.cur {
            // The caller's mistake, not the server's: saying "bad packet" would send the
            // operator after the wrong culprit.
            panic!(
                "SpyClient::receive_header with {} events of the previous packet unread",
                c.events_left
            );
        }
        let deadline = Instant::now() + timeout;
        while self.rend - self.rpos < PACKET_HEADER_SIZE {
            // After large events, read no further than the header: the events that follow
            // are likely large too and go straight to their destination.
            let max = if self.last_big {
                PACKET_HEADER_SIZE - (self.rend - self.rpos)
            } else {
                usize::MAX
            };
            if !self.fill_some(deadline, max)? {
                return Ok(None);
            }
        }
        let mut hb = [0u8; PACKET_HEADER_SIZE];
        hb.copy_from_slice(&self.rbuf[self.rpos..self.rpos + PACKET_HEADER_SIZE]);
        self.rpos += PACKET_HEADER_SIZE;
        let h = PacketHeader::decode(
            &hb,
            self.max_events,
            self.max_payload.max(MAX_PACKET_BYTES as u64),
        )
        .map_err(|e| self.protocol(e))?;
        let stall = Instant::now() + PACKET_STALL;
        match h.status {
            Status::Ok | Status::Stream => {
                let stream = h.status == Status::Stream;
                self.cur = Some(Current {
                    events_left: if stream {
                        self.max_events.max(1)
                    } else {
                        h.nevents
                    },
                    bytes_left: if stream {
                        self.max_payload.max(MAX_PACKET_BYTES as u64)
                    } else {
                        h.payload_len
                    },
                    body_left: 0,
                    deadline: stall,
                    stream,
                    verdict_due: false,
                    records: 0,
                    abandoned: 0,
                });
                self.end = PacketEnd {
                    skipped: h.skipped,
                    abandoned: 0,
                    last_evnr: h.last_evnr,
                    events: h.nevents,
                };
                Ok(Some(h))
            }
            Status::NoData => Ok(Some(h)),
            Status::Error => {
                let mut msg = vec![0u8; h.payload_len as usize];
                self.read_exact(&mut msg, stall)?;
                Err(SpyError::Refused {
                    addr: self.addr.clone(),
                    msg: String::from_utf8_lossy(&msg).into_owned(),
                })
            }
        }
    }

    /// The next event of the current packet: its number and size, or `None` after the last.
    ///
    /// # Errors
    /// [`SpyError::Protocol`] if the sizes do not add up, socket errors as for
    /// [`SpyError::Io`].
    pub fn next_event(&mut self) -> Result<Option<(u64, usize)>, SpyError> {
        let Some(mut c) = self.cur else {
            return Ok(None);
        };
        if c.body_left > 0 {
            self.skip_body()?;
            c = self.cur.expect("packet in progress");
        }
        if c.stream {
            return self.next_streamed(c);
        }
        if c.events_left == 0 {
            self.cur = None;
            return if c.bytes_left == 0 {
                Ok(None)
            } else {
                Err(self.protocol(BadPacket::Size(format!(
                    "{} bytes after the last event",
                    c.bytes_left
                ))))
            };
        }
        if c.bytes_left < EVENT_HEADER_SIZE as u64 {
            self.cur = None;
            return Err(self.protocol(BadPacket::Size(
                "payload ends inside an event header".into(),
            )));
        }
        let mut eh = [0u8; EVENT_HEADER_SIZE];
        if self.last_big && self.rend - self.rpos < EVENT_HEADER_SIZE {
            // After a large event the next one is likely large too: read just its header, so
            // its body can go straight to its destination instead of through the read-ahead.
            while self.rend - self.rpos < EVENT_HEADER_SIZE {
                let want = EVENT_HEADER_SIZE - (self.rend - self.rpos);
                if !self.fill_some(c.deadline, want)? {
                    return Err(self.stalled());
                }
            }
        }
        self.read_exact(&mut eh, c.deadline)?;
        let evnr = u64::from_le_bytes(eh[0..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(eh[8..12].try_into().expect("4 bytes")) as u64;
        c.bytes_left -= EVENT_HEADER_SIZE as u64;
        if len > c.bytes_left {
            self.cur = None;
            return Err(self.protocol(BadPacket::Size(format!(
                "event {evnr} claims {len} bytes, {} left in the packet",
                c.bytes_left
            ))));
        }
        c.events_left -= 1;
        c.bytes_left -= len;
        c.body_left = len as usize;
        self.last_big = len as usize >= DIRECT;
        self.cur = Some(c);
        Ok(Some((evnr, len as usize)))
    }

    /// Reads `dest.len()` bytes (a few: headers, verdicts); after a large event, no further
    /// than `reach` bytes from here, so that a large body that follows goes straight to its
    /// destination.
    fn read_small(
        &mut self,
        dest: &mut [u8],
        reach: usize,
        deadline: Instant,
    ) -> Result<(), SpyError> {
        if self.last_big {
            while self.rend - self.rpos < dest.len() {
                let want = reach.max(dest.len()) - (self.rend - self.rpos);
                if !self.fill_some(deadline, want)? {
                    return Err(self.stalled());
                }
            }
        }
        self.read_exact(dest, deadline)
    }

    /// The next record of a streamed packet (the verdict of the previous event first).
    fn next_streamed(&mut self, mut c: Current) -> Result<Option<(u64, usize)>, SpyError> {
        if c.verdict_due {
            // The event was skipped by the caller: its verdict still counts.
            if !self.read_verdict(&mut c)? {
                c.abandoned += 1;
            }
        }
        let mut eh = [0u8; EVENT_HEADER_SIZE];
        self.read_small(&mut eh, EVENT_HEADER_SIZE, c.deadline)?;
        let evnr = u64::from_le_bytes(eh[0..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(eh[8..12].try_into().expect("4 bytes"));
        if len == END_MARK {
            let mut rest = [0u8; END_RECORD_SIZE - EVENT_HEADER_SIZE];
            self.read_small(&mut rest, END_RECORD_SIZE - EVENT_HEADER_SIZE, c.deadline)?;
            self.cur = None;
            let n = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
            let skipped = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
            if n != c.records {
                return Err(self.protocol(BadPacket::Size(format!(
                    "the end record counts {n} events, {} were sent",
                    c.records
                ))));
            }
            self.end = PacketEnd {
                skipped: skipped.saturating_add(c.abandoned),
                abandoned: c.abandoned,
                last_evnr: evnr,
                events: n,
            };
            return Ok(None);
        }
        let need = len as u64 + (EVENT_HEADER_SIZE + VERDICT_SIZE) as u64;
        if len == 0 || c.events_left == 0 || need > c.bytes_left {
            self.cur = None;
            return Err(self.protocol(BadPacket::Size(if len == 0 {
                format!("event {evnr} of 0 bytes")
            } else if c.events_left == 0 {
                format!("more than the {} events asked for", self.max_events)
            } else {
                format!(
                    "event {evnr} of {len} bytes passes the packet limit ({} bytes left)",
                    c.bytes_left
                )
            })));
        }
        c.events_left -= 1;
        c.bytes_left -= need;
        c.body_left = len as usize;
        c.verdict_due = true;
        c.records += 1;
        self.last_big = len as usize >= DIRECT;
        self.cur = Some(c);
        Ok(Some((evnr, len as usize)))
    }

    /// Reads the verdict of the event just read: true if it is valid.
    fn read_verdict(&mut self, c: &mut Current) -> Result<bool, SpyError> {
        let mut v = [0u8; VERDICT_SIZE];
        // After a large body: the verdict and the next event's header, no more.
        self.read_small(&mut v, VERDICT_SIZE + EVENT_HEADER_SIZE, c.deadline)?;
        c.verdict_due = false;
        match u32::from_le_bytes(v) {
            VERDICT_VALID => Ok(true),
            VERDICT_OVERWRITTEN => Ok(false),
            x => {
                self.cur = None;
                Err(self.protocol(BadPacket::Size(format!("unknown verdict {x}"))))
            }
        }
    }

    /// Reads the current event's bytes into `dest`, whose length must be the event's size.
    /// Returns whether they are valid: false if the server says the event was overwritten in
    /// its buffer while it was being sent (streamed packets only). Then `dest` holds garbage:
    /// discard it (the event counts in [`PacketEnd::skipped`]).
    ///
    /// # Errors
    /// [`SpyError::Io`]/[`SpyError::Closed`], or [`SpyError::Protocol`] if the stream stalls.
    ///
    /// # Panics
    /// If no event is current, or `dest` is not exactly its size (bugs in the caller).
    pub fn read_body(&mut self, dest: &mut [u8]) -> Result<bool, SpyError> {
        let Some(mut c) = self.cur else {
            panic!("SpyClient::read_body with no event to read (call next_event first)");
        };
        assert_eq!(
            dest.len(),
            c.body_left,
            "SpyClient::read_body: dest must be exactly the event's size"
        );
        self.read_exact(dest, c.deadline)?;
        c.body_left = 0;
        let valid = if c.stream {
            let v = self.read_verdict(&mut c)?;
            if !v {
                c.abandoned += 1;
            }
            v
        } else {
            true
        };
        self.cur = Some(c);
        Ok(valid)
    }

    /// What the last events packet said once all of it was read (after [`SpyClient::next_event`]
    /// returned `None`, or [`SpyClient::receive`] returned it): events lost since the previous
    /// packet, and its last event.
    pub fn packet_end(&self) -> PacketEnd {
        self.end
    }

    /// Skips the current event's bytes.
    ///
    /// # Errors
    /// As for [`SpyError::Io`].
    pub fn skip_body(&mut self) -> Result<(), SpyError> {
        let Some(mut c) = self.cur else { return Ok(()) };
        let mut scratch = [0u8; 8192];
        while c.body_left > 0 {
            let n = c.body_left.min(scratch.len());
            self.read_exact(&mut scratch[..n], c.deadline)?;
            c.body_left -= n;
        }
        self.cur = Some(c);
        Ok(())
    }

    /// Waits at most `timeout` for the next packet and takes it whole; iterate over its events
    /// with [`SpyClient::events`].
    ///
    /// # Errors
    /// [`SpyError::Protocol`] for a bad packet, [`SpyError::Refused`] for an error packet
    /// (the server closes the connection after it), [`SpyError::Io`]/[`SpyError::Closed`].
    pub fn receive(&mut self, timeout: Duration) -> Result<Received, SpyError> {
        let Some(h) = self.receive_header(timeout)? else {
            return Ok(Received::Timeout);
        };
        if h.status == Status::NoData {
            return Ok(Received::NoData {
                last_evnr: h.last_evnr,
                skipped: h.skipped,
            });
        }
        if h.status == Status::Stream {
            return self.receive_streamed(h);
        }
        // Take the raw payload as it is; `events()` checks it.
        let deadline = Instant::now() + PACKET_STALL;
        self.payload.resize(h.payload_len as usize, 0);
        let mut payload = std::mem::take(&mut self.payload);
        let r = self.read_exact(&mut payload, deadline);
        self.payload = payload;
        self.cur = None;
        r?;
        self.nevents = h.nevents;
        Ok(Received::Packet(h))
    }

    /// Takes a streamed packet whole, into the layout of a version-1 payload with only its
    /// valid events; the header handed out says what a version-1 header would.
    fn receive_streamed(&mut self, mut h: PacketHeader) -> Result<Received, SpyError> {
        let mut payload = std::mem::take(&mut self.payload);
        payload.clear();
        let mut n = 0u32;
        let r = (|| {
            while let Some((evnr, len)) = self.next_event()? {
                let at = payload.len();
                payload.extend_from_slice(&event_header(evnr, len as u32));
                payload.resize(at + EVENT_HEADER_SIZE + len, 0);
                if self.read_body(&mut payload[at + EVENT_HEADER_SIZE..])? {
                    n += 1;
                } else {
                    payload.truncate(at);
                }
            }
            Ok(())
        })();
        self.payload = payload;
        self.cur = None;
        r?;
        self.nevents = n;
        h.status = Status::Ok;
        h.nevents = n;
        h.payload_len = self.payload.len() as u64;
        h.skipped = self.end.skipped;
        h.last_evnr = self.end.last_evnr;
        Ok(Received::Packet(h))
    }
}
