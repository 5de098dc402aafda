//! The spy wire protocol, versions 1 and 2: requests from a remote spy (rspydaemon, `spycat
//! remote:`) to a farm spy daemon, and packets of events back. Little-endian, fixed-size
//! headers, our own magic numbers; every field read from the network is checked before it is
//! used. Version 2 adds the streamed packet ([`Status::Stream`]): large events go from the farm
//! buffer to the socket with one copy, and a verdict word after each event says whether it was
//! overwritten while the kernel copied it. The byte-level description is in
//! `docs/spy-protocol.md`.

use std::fmt;
use std::io::{self, Read, Write};

/// First bytes of every request: `KSpQ`.
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"KSpQ");
/// First bytes of every packet: `KSpA`.
pub const PACKET_MAGIC: u32 = u32::from_le_bytes(*b"KSpA");
/// Newest protocol version spoken here (clients send it; servers answer in the version asked).
pub const VERSION: u16 = 2;
/// Oldest protocol version still spoken (a version-1 client gets version-1 packets).
pub const MIN_VERSION: u16 = 1;
/// Size of a request.
pub const REQUEST_SIZE: usize = 32;
/// Size of a packet header.
pub const PACKET_HEADER_SIZE: usize = 40;
/// Size of the header of each event inside a packet.
pub const EVENT_HEADER_SIZE: usize = 12;
/// Most events a server puts in one packet, whatever the client asks.
pub const MAX_PACKET_EVENTS: u32 = 1 << 20;
/// Most payload bytes a server puts in one packet (an event larger than this still travels
/// alone in its own packet).
pub const MAX_PACKET_BYTES: u32 = 64 << 20;
/// Size of the verdict word after each event of a streamed packet.
pub const VERDICT_SIZE: usize = 4;
/// Verdict: the event's bytes are the producer's.
pub const VERDICT_VALID: u32 = 0;
/// Verdict: the event was overwritten in the farm buffer while it was being sent; its bytes
/// are garbage and must be discarded.
pub const VERDICT_OVERWRITTEN: u32 = 1;
/// The length field that marks the end record of a streamed packet.
pub const END_MARK: u32 = u32::MAX;
/// Size of the end record of a streamed packet.
pub const END_RECORD_SIZE: usize = 24;

/// How the client wants events served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The events after the last one received, in order (skipping forward only when the
    /// server's buffer overwrote them).
    #[default]
    Next = 0,
    /// Jump to the freshest events on every request.
    Latest = 1,
    /// The server streams packets as events arrive, without further requests; a client too slow
    /// to keep up is skipped forward.
    Push = 2,
}

impl Mode {
    /// `next`, `latest`, `push`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Next => "next",
            Mode::Latest => "latest",
            Mode::Push => "push",
        }
    }

    /// The mode of a wire value.
    pub fn from_u16(v: u16) -> Option<Mode> {
        match v {
            0 => Some(Mode::Next),
            1 => Some(Mode::Latest),
            2 => Some(Mode::Push),
            _ => None,
        }
    }

    /// The mode named `s`.
    pub fn from_name(s: &str) -> Option<Mode> {
        match s.to_ascii_lowercase().as_str() {
            "next" => Some(Mode::Next),
            "latest" => Some(Mode::Latest),
            "push" => Some(Mode::Push),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request (32 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Protocol version ([`VERSION`] for requests made here): the server answers in it.
    pub version: u16,
    /// Serving mode.
    pub mode: Mode,
    /// Most events in the reply packet (0: no limit of the client's).
    pub max_events: u32,
    /// Most payload bytes in the reply packet (0: no limit of the client's).
    pub max_bytes: u32,
    /// Event number of the last event the client received (0: none yet).
    pub last_evnr: u64,
    /// The identity of the farm buffer `last_evnr` belongs to, as the server last told it
    /// ([`PacketHeader::buffer_id`]); 0: unknown. The server honours `last_evnr` only for
    /// the same buffer (or an unknown one).
    pub buffer_id: u32,
    /// Serve no event older than this many milliseconds (estimated by the server from when it
    /// saw it appear); 0: no bound (old events welcome).
    pub maxage_ms: u32,
}

/// A request that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// Wrong magic number: not a spy client.
    #[error("bad magic {0:#010x}: not a spy request")]
    Magic(u32),
    /// A version this server does not speak.
    #[error("protocol version {0} not supported (this server speaks {MIN_VERSION} to {VERSION})")]
    Version(u16),
    /// Unknown mode.
    #[error("unknown serving mode {0} (0 next, 1 latest, 2 push)")]
    Mode(u16),
}

impl Request {
    /// Encodes the request.
    pub fn encode(&self) -> [u8; REQUEST_SIZE] {
        let mut b = [0u8; REQUEST_SIZE];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..8].copy_from_slice(&(self.mode as u16).to_le_bytes());
        b[8..12].copy_from_slice(&self.max_events.to_le_bytes());
        b[12..16].copy_from_slice(&self.max_bytes.to_le_bytes());
        b[16..24].copy_from_slice(&self.last_evnr.to_le_bytes());
        b[24..28].copy_from_slice(&self.buffer_id.to_le_bytes());
        b[28..32].copy_from_slice(&self.maxage_ms.to_le_bytes());
        b
    }

    /// Decodes and checks a request.
    ///
    /// # Errors
    /// [`BadRequest`] saying what is wrong.
    pub fn decode(b: &[u8; REQUEST_SIZE]) -> Result<Request, BadRequest> {
        let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
        if magic != REQUEST_MAGIC {
            return Err(BadRequest::Magic(magic));
        }
        let version = u16::from_le_bytes(b[4..6].try_into().unwrap());
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(BadRequest::Version(version));
        }
        let m = u16::from_le_bytes(b[6..8].try_into().unwrap());
        let mode = Mode::from_u16(m).ok_or(BadRequest::Mode(m))?;
        Ok(Request {
            version,
            mode,
            max_events: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            max_bytes: u32::from_le_bytes(b[12..16].try_into().unwrap()),
            last_evnr: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            buffer_id: u32::from_le_bytes(b[24..28].try_into().unwrap()),
            maxage_ms: u32::from_le_bytes(b[28..32].try_into().unwrap()),
        })
    }

    /// The limits the server applies: the client's, capped by the server's.
    pub fn limits(&self) -> (usize, usize) {
        let cap = |v: u32, max: u32| if v == 0 || v > max { max } else { v } as usize;
        (
            cap(self.max_events, MAX_PACKET_EVENTS),
            cap(self.max_bytes, MAX_PACKET_BYTES),
        )
    }
}

/// What a packet says besides its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Events follow (possibly none in push mode keep-alives).
    Ok = 0,
    /// Nothing new arrived within the server's wait.
    NoData = 1,
    /// The payload is a UTF-8 error message; the server closes the connection after it.
    Error = 2,
    /// Version 2 only: events follow as records, each with a verdict word, up to an end record
    /// that gives their number, the last event number and the events skipped; `nevents`,
    /// `payload_len`, `skipped` and `last_evnr` of the header are 0.
    Stream = 3,
}

/// A packet header (40 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// Protocol version of the packet (that of the request it answers; 1 for errors).
    pub version: u16,
    /// Status.
    pub status: Status,
    /// Events in the payload.
    pub nevents: u32,
    /// Bytes of payload after the header.
    pub payload_len: u64,
    /// Events the server skipped for this client since its previous packet (overwritten in the
    /// farm buffer before they could be sent, or jumped over in latest/push mode).
    pub skipped: u64,
    /// Event number of the last event in the packet, or of the newest event the server has
    /// seen when there is none.
    pub last_evnr: u64,
    /// The identity of the farm buffer served (32 bits of its instance number; 0 in error
    /// packets): a client that reconnects, by whatever address, to the same buffer keeps its
    /// position; another buffer's numbering is its own.
    pub buffer_id: u32,
}

/// A packet that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPacket {
    /// Wrong magic number: not a spy server.
    #[error("bad magic {0:#010x}: the peer is not a farm spy daemon")]
    Magic(u32),
    /// Unknown version.
    #[error("the server speaks protocol version {0}, this client {VERSION}")]
    Version(u16),
    /// Unknown status.
    #[error("unknown packet status {0}")]
    Status(u16),
    /// Sizes that do not fit the limits.
    #[error("impossible packet: {0}")]
    Size(String),
}

impl PacketHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; PACKET_HEADER_SIZE] {
        let mut b = [0u8; PACKET_HEADER_SIZE];
        b[0..4].copy_from_slice(&PACKET_MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..8].copy_from_slice(&(self.status as u16).to_le_bytes());
        b[8..12].copy_from_slice(&self.nevents.to_le_bytes());
        b[12..16].copy_from_slice(&self.buffer_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.payload_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.skipped.to_le_bytes());
        b[32..40].copy_from_slice(&self.last_evnr.to_le_bytes());
        b
    }

    /// Decodes a header and checks it against what the client asked for: at most `max_events`
    /// events and `max_payload` payload bytes.
    ///
    /// # Errors
    /// [`BadPacket`] saying what is wrong.
    pub fn decode(
        b: &[u8; PACKET_HEADER_SIZE],
        max_events: u32,
        max_payload: u64,
    ) -> Result<PacketHeader, BadPacket> {
        let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
        if magic != PACKET_MAGIC {
            return Err(BadPacket::Magic(magic));
        }
        let version = u16::from_le_bytes(b[4..6].try_into().unwrap());
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(BadPacket::Version(version));
        }
        let status = match u16::from_le_bytes(b[6..8].try_into().unwrap()) {
            0 => Status::Ok,
            1 => Status::NoData,
            2 => Status::Error,
            3 if version >= 2 => Status::Stream,
            s => return Err(BadPacket::Status(s)),
        };
        let h = PacketHeader {
            version,
            status,
            nevents: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            payload_len: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            skipped: u64::from_le_bytes(b[24..32].try_into().unwrap()),
            last_evnr: u64::from_le_bytes(b[32..40].try_into().unwrap()),
            buffer_id: u32::from_le_bytes(b[12..16].try_into().unwrap()),
        };
        let min = h.nevents as u64 * EVENT_HEADER_SIZE as u64;
        match status {
            Status::Ok => {
                if h.nevents > max_events.max(1) {
                    return Err(BadPacket::Size(format!(
                        "{} events, {} asked for at most",
                        h.nevents, max_events
                    )));
                }
                if h.payload_len < min || h.payload_len > max_payload {
                    return Err(BadPacket::Size(format!(
                        "{} payload bytes for {} events (limit {max_payload})",
                        h.payload_len, h.nevents
                    )));
                }
            }
            Status::NoData => {
                if h.nevents != 0 || h.payload_len != 0 {
                    return Err(BadPacket::Size("a no-data packet with a payload".into()));
                }
            }
            Status::Stream => {
                if h.nevents != 0 || h.payload_len != 0 {
                    return Err(BadPacket::Size(
                        "a streamed packet whose header counts events or bytes".into(),
                    ));
                }
            }
            Status::Error => {
                if h.payload_len > 4096 {
                    return Err(BadPacket::Size(format!(
                        "an error message of {} bytes",
                        h.payload_len
                    )));
                }
            }
        }
        Ok(h)
    }
}

/// Encodes the header of one event inside a packet.
pub fn event_header(evnr: u64, len: u32) -> [u8; EVENT_HEADER_SIZE] {
    let mut b = [0u8; EVENT_HEADER_SIZE];
    b[0..8].copy_from_slice(&evnr.to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b
}

/// Encodes the end record of a streamed packet: `nevents` records were sent (valid or not),
/// `last_evnr` is the last valid one (or the newest seen), `skipped` the events skipped since
/// the previous packet.
pub fn end_record(last_evnr: u64, nevents: u32, skipped: u64) -> [u8; END_RECORD_SIZE] {
    let mut b = [0u8; END_RECORD_SIZE];
    b[0..8].copy_from_slice(&last_evnr.to_le_bytes());
    b[8..12].copy_from_slice(&END_MARK.to_le_bytes());
    b[12..16].copy_from_slice(&nevents.to_le_bytes());
    b[16..24].copy_from_slice(&skipped.to_le_bytes());
    b
}

/// Iterates over the events of a received payload, checking every length.
#[derive(Debug)]
pub struct Events<'a> {
    rest: &'a [u8],
    left: u32,
    total: usize,
}

impl<'a> Events<'a> {
    /// The events of `payload`, which holds `nevents` events.
    pub fn new(payload: &'a [u8], nevents: u32) -> Self {
        Events {
            rest: payload,
            left: nevents,
            total: payload.len(),
        }
    }

    /// Bytes of the payload taken so far: the body of the event just returned ends here.
    pub fn consumed(&self) -> usize {
        self.total - self.rest.len()
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<(u64, &'a [u8]), BadPacket>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return if self.rest.is_empty() {
                None
            } else {
                let n = self.rest.len();
                self.rest = &[];
                Some(Err(BadPacket::Size(format!(
                    "{n} bytes after the last event"
                ))))
            };
        }
        self.left -= 1;
        if self.rest.len() < EVENT_HEADER_SIZE {
            self.left = 0;
            self.rest = &[];
            return Some(Err(BadPacket::Size(
                "payload ends inside an event header".into(),
            )));
        }
        let evnr = u64::from_le_bytes(self.rest[0..8].try_into().unwrap());
        let len = u32::from_le_bytes(self.rest[8..12].try_into().unwrap()) as usize;
        let body = &self.rest[EVENT_HEADER_SIZE..];
        if len > body.len() {
            self.left = 0;
            self.rest = &[];
            return Some(Err(BadPacket::Size(format!(
                "event {evnr} claims {len} bytes, {} left in the packet",
                body.len()
            ))));
        }
        self.rest = &body[len..];
        Some(Ok((evnr, &body[..len])))
    }
}

/// Writes a complete error packet with `msg`.
///
/// # Errors
/// The socket's.
pub fn write_error(w: &mut impl Write, msg: &str) -> io::Result<()> {
    let msg = &msg.as_bytes()[..msg.len().min(4096)];
    let h = PacketHeader {
        version: MIN_VERSION,
        status: Status::Error,
        nevents: 0,
        payload_len: msg.len() as u64,
        skipped: 0,
        last_evnr: 0,
        buffer_id: 0,
    };
    let mut b = h.encode().to_vec();
    b.extend_from_slice(msg);
    w.write_all(&b)
}

/// Reads exactly one request.
///
/// # Errors
/// The socket's (EOF as `UnexpectedEof`).
pub fn read_request_bytes(r: &mut impl Read) -> io::Result<[u8; REQUEST_SIZE]> {
    let mut b = [0u8; REQUEST_SIZE];
    r.read_exact(&mut b)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrip_and_checks() {
        let r = Request {
            version: VERSION,
            mode: Mode::Push,
            max_events: 10,
            max_bytes: 1 << 20,
            last_evnr: 42,
            buffer_id: 0,
            maxage_ms: 0,
        };
        assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        let mut b = r.encode();
        b[0] = b'X';
        assert!(matches!(Request::decode(&b), Err(BadRequest::Magic(_))));
        let mut b = r.encode();
        b[4] = 9;
        assert!(matches!(Request::decode(&b), Err(BadRequest::Version(9))));
        let mut b = r.encode();
        b[6] = 7;
        assert!(matches!(Request::decode(&b), Err(BadRequest::Mode(7))));
        let unlimited = Request {
            max_events: 0,
            max_bytes: u32::MAX,
            ..r
        };
        assert_eq!(
            unlimited.limits(),
            (MAX_PACKET_EVENTS as usize, MAX_PACKET_BYTES as usize)
        );
    }

    /// The example in docs/spy-protocol.md, byte for byte.
    #[test]
    fn documented_example() {
        let r = Request {
            version: 1,
            mode: Mode::Next,
            max_events: 10,
            max_bytes: 0,
            last_evnr: 41,
            buffer_id: 0,
            maxage_ms: 0,
        };
        let mut want = vec![
            0x4b, 0x53, 0x70, 0x51, 1, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0x29,
        ];
        want.resize(32, 0);
        assert_eq!(r.encode().to_vec(), want);
        let h = PacketHeader {
            version: 1,
            status: Status::Ok,
            nevents: 2,
            payload_len: 29,
            skipped: 0,
            last_evnr: 43,
            buffer_id: 0,
        };
        let mut want = vec![
            0x4b, 0x53, 0x70, 0x41, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x1d,
        ];
        want.resize(32, 0);
        want.push(0x2b);
        want.resize(40, 0);
        assert_eq!(h.encode().to_vec(), want);
    }

    #[test]
    fn packets_are_checked() {
        let h = PacketHeader {
            version: 1,
            status: Status::Ok,
            nevents: 2,
            payload_len: 2 * 12 + 7,
            skipped: 3,
            last_evnr: 9,
            buffer_id: 0,
        };
        assert_eq!(PacketHeader::decode(&h.encode(), 10, 1000).unwrap(), h);
        assert!(PacketHeader::decode(&h.encode(), 1, 1000).is_err());
        assert!(PacketHeader::decode(&h.encode(), 10, 20).is_err());
        let short = PacketHeader {
            payload_len: 5,
            ..h
        };
        assert!(PacketHeader::decode(&short.encode(), 10, 1000).is_err());

        let mut payload = Vec::new();
        payload.extend_from_slice(&event_header(8, 3));
        payload.extend_from_slice(b"abc");
        payload.extend_from_slice(&event_header(9, 4));
        payload.extend_from_slice(b"defg");
        let evs: Vec<_> = Events::new(&payload, 2).collect::<Result<_, _>>().unwrap();
        assert_eq!(evs, [(8, &b"abc"[..]), (9, &b"defg"[..])]);
        // A lying length is caught.
        payload[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert!(Events::new(&payload, 2).any(|e| e.is_err()));
        // Trailing bytes are caught.
        let evs: Vec<_> = Events::new(b"\0\0\0\0\0\0\0\0\0\0\0\0xyz", 1).collect();
        assert!(evs[1].is_err());
    }
}
