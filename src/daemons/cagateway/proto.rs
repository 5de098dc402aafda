//! The EPICS Channel Access wire format, all of it that the gateway speaks, in one place:
//! message headers (the 16-byte form and the 24-byte extended form), the commands, the status
//! codes, and the DBR payloads (plain, STS, TIME, GR, CTRL of STRING, SHORT, FLOAT, ENUM, CHAR,
//! LONG, DOUBLE). Nothing here does I/O or knows about variables: the server hands in bytes and
//! gets typed requests, or hands in values and gets bytes.
//!
//! Everything on the wire is big-endian. A message is a header followed by a payload whose
//! size is a multiple of 8:
//!
//! ```text
//!  0      2             4           6            8            12           16
//!  | cmd  | payload_size | data_type | data_count | parameter1 | parameter2 |
//! ```
//!
//! When `payload_size` is `0xFFFF` and `data_count` is 0, two more 32-bit words follow (the
//! real payload size, then the real count): the extended header, 24 bytes.
//!
//! Decoding is for input from anyone on the network: [`decode_header`] refuses a payload
//! larger than the caller's limit before anything is buffered, and [`parse_request`] checks
//! every length it is given. The decoder is fuzzed (`fuzz_decoders` in `proto/tests.rs`).

use std::fmt;

mod dbr;
#[cfg(test)]
use dbr::meta_size;
use dbr::pad8;
pub use dbr::*;

/// The minor protocol version the gateway speaks (CA 4.13, EPICS 3.14 and later).
pub const MINOR_VERSION: u16 = 13;
/// Size of a plain header.
pub const HEADER_SIZE: usize = 16;
/// Size of an extended header.
pub const EXT_HEADER_SIZE: usize = 24;
/// The longest string of a DBR_STRING element, with its NUL (`MAX_STRING_SIZE`).
pub const MAX_STRING_SIZE: usize = 40;
/// Size of one enum label in DBR_GR_ENUM / DBR_CTRL_ENUM (`MAX_ENUM_STRING_SIZE`).
pub const MAX_ENUM_STRING_SIZE: usize = 26;
/// Number of enum labels DBR_GR_ENUM carries (`MAX_ENUM_STATES`).
pub const MAX_ENUM_STATES: usize = 16;
/// Size of the units field of GR/CTRL payloads (`MAX_UNITS_SIZE`).
pub const MAX_UNITS_SIZE: usize = 8;
/// The longest PV name the gateway reads from a search or create request.
pub const MAX_PV_NAME: usize = 255;
/// Seconds between the Unix epoch and the EPICS epoch (1990-01-01 UTC).
pub const EPICS_EPOCH_OFFSET: u64 = 631_152_000;

/// Command codes (`CA_PROTO_*`).
pub mod cmd {
    /// Version exchange (UDP and TCP).
    pub const VERSION: u16 = 0;
    /// Subscribe.
    pub const EVENT_ADD: u16 = 1;
    /// Unsubscribe.
    pub const EVENT_CANCEL: u16 = 2;
    /// Read without notification (deprecated since CA 4.3).
    pub const READ: u16 = 3;
    /// Write without notification.
    pub const WRITE: u16 = 4;
    /// Look for a PV (UDP).
    pub const SEARCH: u16 = 6;
    /// Flow control: stop sending monitors.
    pub const EVENTS_OFF: u16 = 8;
    /// Flow control: send monitors again.
    pub const EVENTS_ON: u16 = 9;
    /// Deprecated synchronisation.
    pub const READ_SYNC: u16 = 10;
    /// An error about a request.
    pub const ERROR: u16 = 11;
    /// Drop a channel.
    pub const CLEAR_CHANNEL: u16 = 12;
    /// Beacon (UDP).
    pub const RSRV_IS_UP: u16 = 13;
    /// Search answer "not here" (only when the search asked for it).
    pub const NOT_FOUND: u16 = 14;
    /// Read with a reply.
    pub const READ_NOTIFY: u16 = 15;
    /// The repeater's confirmation (UDP).
    pub const REPEATER_CONFIRM: u16 = 17;
    /// Open a channel.
    pub const CREATE_CHAN: u16 = 18;
    /// Write with a reply.
    pub const WRITE_NOTIFY: u16 = 19;
    /// The client's user name.
    pub const CLIENT_NAME: u16 = 20;
    /// The client's host name.
    pub const HOST_NAME: u16 = 21;
    /// Access rights of a channel.
    pub const ACCESS_RIGHTS: u16 = 22;
    /// Liveness check.
    pub const ECHO: u16 = 23;
    /// Registration with a repeater (UDP).
    pub const REPEATER_REGISTER: u16 = 24;
    /// Channel creation failed.
    pub const CREATE_CH_FAIL: u16 = 26;
    /// The server dropped a channel (its PV went away).
    pub const SERVER_DISCONN: u16 = 27;
}

/// Search reply flags (the data_type of a SEARCH request).
pub const DO_REPLY: u16 = 10;
/// The client does not want a NOT_FOUND answer.
pub const DONT_REPLY: u16 = 5;

/// Access rights bits of ACCESS_RIGHTS.
pub const ACCESS_READ: u32 = 1;
/// Write access bit.
pub const ACCESS_WRITE: u32 = 2;

/// Subscription masks.
pub const DBE_VALUE: u16 = 1;
/// Archive (log) changes.
pub const DBE_LOG: u16 = 2;
/// Alarm changes.
pub const DBE_ALARM: u16 = 4;
/// Property (metadata) changes.
pub const DBE_PROPERTY: u16 = 8;

/// A CA status code (`ECA_*`): the message number shifted left by 3, or'ed with a severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    /// Normal successful completion.
    pub const NORMAL: Status = Status(1);
    /// The requested transfer is larger than the server allows.
    pub const TOLARGE: Status = Status(72);
    /// The data type is invalid.
    pub const BADTYPE: Status = Status(114);
    /// Internal failure.
    pub const INTERNAL: Status = Status(142);
    /// Read failed.
    pub const GETFAIL: Status = Status(152);
    /// Write failed.
    pub const PUTFAIL: Status = Status(160);
    /// Subscription failed.
    pub const ADDFAIL: Status = Status(168);
    /// Invalid element count.
    pub const BADCOUNT: Status = Status(176);
    /// Invalid string.
    pub const BADSTR: Status = Status(186);
    /// Channel disconnected.
    pub const DISCONN: Status = Status(192);
    /// Invalid subscription mask.
    pub const BADMASK: Status = Status(330);
    /// Read access denied.
    pub const NORDACCESS: Status = Status(368);
    /// Write access denied.
    pub const NOWTACCESS: Status = Status(376);
    /// No reasonable conversion between the client's and the server's type.
    pub const NOCONVERT: Status = Status(400);
    /// Invalid channel identifier.
    pub const BADCHID: Status = Status(410);
    /// Not supported by the server.
    pub const UNAVAILINSERV: Status = Status(432);
}

/// Alarm conditions (`STAT`) the gateway reports.
pub mod alarm {
    /// No alarm.
    pub const NO_ALARM: u16 = 0;
    /// Above the HIHI limit.
    pub const HIHI: u16 = 3;
    /// Above the HIGH limit.
    pub const HIGH: u16 = 4;
    /// Below the LOLO limit.
    pub const LOLO: u16 = 5;
    /// Below the LOW limit.
    pub const LOW: u16 = 6;
    /// The value could not be read (a string torn by writes on every retry).
    pub const READ: u16 = 1;
    /// The value does not fit the type the client asked for (clamped).
    pub const HWLIMIT: u16 = 11;
    /// Severity: none.
    pub const SEV_NONE: u16 = 0;
    /// Severity: minor.
    pub const SEV_MINOR: u16 = 1;
    /// Severity: major.
    pub const SEV_MAJOR: u16 = 2;
    /// Severity: invalid.
    pub const SEV_INVALID: u16 = 3;
}

/// A message header, with the extended form's 32-bit size and count folded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// The command code.
    pub cmd: u16,
    /// Payload size in bytes (a multiple of 8 on what we send).
    pub payload_size: u32,
    /// The DBR type, or a command-specific field.
    pub data_type: u16,
    /// Element count, or a command-specific field.
    pub count: u32,
    /// Parameter 1 (sid, cid, status, ...).
    pub p1: u32,
    /// Parameter 2 (ioid, subscription id, ...).
    pub p2: u32,
}

impl Header {
    /// A header with the given fields.
    pub fn new(cmd: u16, payload_size: u32, data_type: u16, count: u32, p1: u32, p2: u32) -> Self {
        Header {
            cmd,
            payload_size,
            data_type,
            count,
            p1,
            p2,
        }
    }

    /// Whether this header needs the extended form.
    pub fn is_extended(&self) -> bool {
        self.payload_size >= 0xFFFF || self.count > 0xFFFF
    }

    /// Appends the header in its wire form (extended when the size or count needs it).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cmd.to_be_bytes());
        if self.is_extended() {
            out.extend_from_slice(&0xFFFFu16.to_be_bytes());
            out.extend_from_slice(&self.data_type.to_be_bytes());
            out.extend_from_slice(&0u16.to_be_bytes());
            out.extend_from_slice(&self.p1.to_be_bytes());
            out.extend_from_slice(&self.p2.to_be_bytes());
            out.extend_from_slice(&self.payload_size.to_be_bytes());
            out.extend_from_slice(&self.count.to_be_bytes());
        } else {
            out.extend_from_slice(&(self.payload_size as u16).to_be_bytes());
            out.extend_from_slice(&self.data_type.to_be_bytes());
            out.extend_from_slice(&(self.count as u16).to_be_bytes());
            out.extend_from_slice(&self.p1.to_be_bytes());
            out.extend_from_slice(&self.p2.to_be_bytes());
        }
    }
}

/// What is wrong with input from the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// A payload larger than the limit.
    TooLarge {
        /// The command.
        cmd: u16,
        /// The size announced.
        size: u32,
        /// The limit.
        limit: u32,
    },
    /// A payload shorter than its command needs.
    Short {
        /// The command.
        cmd: u16,
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        got: usize,
    },
    /// A PV name that is empty, too long, or not printable ASCII.
    BadName,
    /// A DBR type the gateway does not know or cannot take here.
    BadType(u16),
    /// A value that cannot be read as the type it claims.
    BadValue(&'static str),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::TooLarge { cmd, size, limit } => write!(
                f,
                "command {cmd} announces a payload of {size} bytes, more than the {limit} accepted"
            ),
            ProtoError::Short { cmd, need, got } => {
                write!(f, "command {cmd} needs {need} payload bytes, has {got}")
            }
            ProtoError::BadName => {
                f.write_str("PV name empty, longer than 255 bytes, or not printable ASCII")
            }
            ProtoError::BadType(t) => write!(f, "DBR type {t} is not supported here"),
            ProtoError::BadValue(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ProtoError {}

/// Reads one header from the front of `buf`. Returns the header and its length (16 or 24), or
/// `None` if `buf` does not hold a whole header yet. A payload larger than `max_payload` is an
/// error, found before the payload is read.
///
/// # Errors
/// [`ProtoError::TooLarge`].
pub fn decode_header(buf: &[u8], max_payload: u32) -> Result<Option<(Header, usize)>, ProtoError> {
    if buf.len() < HEADER_SIZE {
        return Ok(None);
    }
    let u16at = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    let u32at = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let mut h = Header {
        cmd: u16at(0),
        payload_size: u32::from(u16at(2)),
        data_type: u16at(4),
        count: u32::from(u16at(6)),
        p1: u32at(8),
        p2: u32at(12),
    };
    let mut len = HEADER_SIZE;
    if h.payload_size == 0xFFFF && h.count == 0 {
        if buf.len() < EXT_HEADER_SIZE {
            return Ok(None);
        }
        h.payload_size = u32at(16);
        h.count = u32at(20);
        len = EXT_HEADER_SIZE;
    }
    if h.payload_size > max_payload {
        return Err(ProtoError::TooLarge {
            cmd: h.cmd,
            size: h.payload_size,
            limit: max_payload,
        });
    }
    Ok(Some((h, len)))
}

/// A request from a client, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Request<'a> {
    /// VERSION: the circuit's priority and the client's minor version.
    Version {
        /// Circuit priority (0-99).
        priority: u16,
        /// The client's minor protocol version.
        minor: u16,
    },
    /// SEARCH for a PV name.
    Search {
        /// Whether the client wants NOT_FOUND when we do not have it.
        reply: bool,
        /// The client's minor version.
        minor: u16,
        /// The client's id for the search.
        cid: u32,
        /// The name.
        name: &'a str,
    },
    /// CREATE_CHAN.
    CreateChan {
        /// The client's channel id.
        cid: u32,
        /// The client's minor version.
        minor: u32,
        /// The PV name.
        name: &'a str,
    },
    /// READ_NOTIFY (and the deprecated READ, `notify == false`).
    Read {
        /// DBR type wanted.
        dtype: u16,
        /// Element count wanted (0: the current count).
        count: u32,
        /// Our channel id.
        sid: u32,
        /// The client's id for this request.
        ioid: u32,
        /// READ_NOTIFY (true) or READ (false).
        notify: bool,
    },
    /// WRITE or WRITE_NOTIFY.
    Write {
        /// DBR type of the data.
        dtype: u16,
        /// Element count of the data.
        count: u32,
        /// Our channel id.
        sid: u32,
        /// The client's id for this request.
        ioid: u32,
        /// WRITE_NOTIFY (true) or WRITE (false).
        notify: bool,
        /// The data.
        data: &'a [u8],
    },
    /// EVENT_ADD.
    EventAdd {
        /// DBR type of the updates.
        dtype: u16,
        /// Element count.
        count: u32,
        /// Our channel id.
        sid: u32,
        /// The client's subscription id.
        subid: u32,
        /// DBE_* mask (0 is taken as VALUE|ALARM, as RSRV does).
        mask: u16,
    },
    /// EVENT_CANCEL.
    EventCancel {
        /// DBR type of the subscription.
        dtype: u16,
        /// Element count.
        count: u32,
        /// Our channel id.
        sid: u32,
        /// The client's subscription id.
        subid: u32,
    },
    /// CLEAR_CHANNEL.
    ClearChannel {
        /// Our channel id.
        sid: u32,
        /// The client's channel id.
        cid: u32,
    },
    /// ECHO.
    Echo,
    /// CLIENT_NAME: the user name the client asserts.
    ClientName(&'a str),
    /// HOST_NAME: the host name the client asserts.
    HostName(&'a str),
    /// EVENTS_OFF (flow control).
    EventsOff,
    /// EVENTS_ON.
    EventsOn,
    /// READ_SYNC (deprecated, ignored).
    ReadSync,
    /// A command a server does not take (a reply code, a repeater message, unknown).
    Other(u16),
}

fn need(cmd: u16, payload: &[u8], n: usize) -> Result<(), ProtoError> {
    if payload.len() < n {
        Err(ProtoError::Short {
            cmd,
            need: n,
            got: payload.len(),
        })
    } else {
        Ok(())
    }
}

/// The text of a NUL-padded string payload: up to the first NUL, printable ASCII only.
///
/// # Errors
/// [`ProtoError::BadName`] if it is empty, too long or not printable ASCII.
pub fn name_of(payload: &[u8]) -> Result<&str, ProtoError> {
    let end = payload
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(payload.len());
    let b = &payload[..end];
    if b.is_empty() || b.len() > MAX_PV_NAME || !b.iter().all(|c| (0x21..0x7f).contains(c)) {
        return Err(ProtoError::BadName);
    }
    std::str::from_utf8(b).map_err(|_| ProtoError::BadName)
}

/// A NUL-padded string that may be empty and may hold any UTF-8 (host and user names); bytes
/// that are not UTF-8 or are control characters are replaced.
fn text_of(payload: &[u8]) -> &str {
    let end = payload
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(payload.len());
    let b = &payload[..end.min(MAX_PV_NAME)];
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(char::is_control) => s,
        _ => "?",
    }
}

/// Decodes a request from its header and payload (which must be `h.payload_size` bytes, or
/// fewer if a datagram was cut).
///
/// # Errors
/// A [`ProtoError`] saying what is wrong with it.
pub fn parse_request<'a>(h: &Header, payload: &'a [u8]) -> Result<Request<'a>, ProtoError> {
    Ok(match h.cmd {
        cmd::VERSION => Request::Version {
            priority: h.data_type,
            minor: h.count as u16,
        },
        cmd::SEARCH => Request::Search {
            reply: h.data_type == DO_REPLY,
            minor: h.count as u16,
            cid: h.p1,
            name: name_of(payload)?,
        },
        cmd::CREATE_CHAN => Request::CreateChan {
            cid: h.p1,
            minor: h.p2,
            name: name_of(payload)?,
        },
        cmd::READ_NOTIFY | cmd::READ => Request::Read {
            dtype: h.data_type,
            count: h.count,
            sid: h.p1,
            ioid: h.p2,
            notify: h.cmd == cmd::READ_NOTIFY,
        },
        cmd::WRITE | cmd::WRITE_NOTIFY => Request::Write {
            dtype: h.data_type,
            count: h.count,
            sid: h.p1,
            ioid: h.p2,
            notify: h.cmd == cmd::WRITE_NOTIFY,
            data: payload,
        },
        cmd::EVENT_ADD => {
            need(h.cmd, payload, 14)?;
            let mask = u16::from_be_bytes([payload[12], payload[13]]);
            Request::EventAdd {
                dtype: h.data_type,
                count: h.count,
                sid: h.p1,
                subid: h.p2,
                mask: if mask == 0 {
                    DBE_VALUE | DBE_ALARM
                } else {
                    mask
                },
            }
        }
        cmd::EVENT_CANCEL => Request::EventCancel {
            dtype: h.data_type,
            count: h.count,
            sid: h.p1,
            subid: h.p2,
        },
        cmd::CLEAR_CHANNEL => Request::ClearChannel {
            sid: h.p1,
            cid: h.p2,
        },
        cmd::ECHO => Request::Echo,
        cmd::CLIENT_NAME => Request::ClientName(text_of(payload)),
        cmd::HOST_NAME => Request::HostName(text_of(payload)),
        cmd::EVENTS_OFF => Request::EventsOff,
        cmd::EVENTS_ON => Request::EventsOn,
        cmd::READ_SYNC => Request::ReadSync,
        other => Request::Other(other),
    })
}

/// Appends a whole message: `h` (its payload size set from `payload`, padded to 8) and the
/// payload.
pub fn push_message(out: &mut Vec<u8>, mut h: Header, payload: &[u8]) {
    let padded = pad8(payload.len());
    h.payload_size = padded as u32;
    h.encode(out);
    out.extend_from_slice(payload);
    out.resize(out.len() + padded - payload.len(), 0);
}

/// Appends a message whose payload is a NUL-terminated string padded to 8 (names, errors).
pub fn push_string_message(out: &mut Vec<u8>, h: Header, s: &str) {
    let mut p = Vec::with_capacity(s.len() + 8);
    p.extend_from_slice(s.as_bytes());
    p.push(0);
    push_message(out, h, &p);
}

/// Appends a CA_PROTO_ERROR about request `req`: its header, then `text`.
pub fn push_error(out: &mut Vec<u8>, req: &Header, cid: u32, status: Status, text: &str) {
    let mut p = Vec::with_capacity(EXT_HEADER_SIZE + text.len() + 8);
    req.encode(&mut p);
    p.extend_from_slice(text.as_bytes());
    p.push(0);
    push_message(out, Header::new(cmd::ERROR, 0, 0, 0, cid, status.0), &p);
}

/// Appends the VERSION message a server sends (on TCP and at the head of search replies).
pub fn push_version(out: &mut Vec<u8>) {
    Header::new(cmd::VERSION, 0, 0, u32::from(MINOR_VERSION), 0, 0).encode(out);
}

/// Appends a SEARCH reply: the PV is on TCP `port` at `ip` (`0xFFFF_FFFF`: the address the
/// reply comes from).
pub fn push_search_reply(out: &mut Vec<u8>, port: u16, ip: u32, cid: u32) {
    let mut p = [0u8; 8];
    p[..2].copy_from_slice(&MINOR_VERSION.to_be_bytes());
    push_message(out, Header::new(cmd::SEARCH, 0, port, 0, ip, cid), &p);
}

/// Appends a NOT_FOUND reply to a search that asked for one.
pub fn push_not_found(out: &mut Vec<u8>, minor: u16, cid: u32) {
    Header::new(cmd::NOT_FOUND, 0, DO_REPLY, u32::from(minor), cid, cid).encode(out);
}

/// Appends a beacon.
pub fn push_beacon(out: &mut Vec<u8>, port: u16, seq: u32, ip: u32) {
    Header::new(cmd::RSRV_IS_UP, 0, MINOR_VERSION, u32::from(port), seq, ip).encode(out);
}

#[cfg(test)]
mod tests;
