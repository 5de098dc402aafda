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
//! every length it is given. The decoder is fuzzed (`fuzz_decoders` below).

use std::fmt;

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

/// The basic DBR types (`DBF_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Base {
    /// 40-byte NUL-terminated strings.
    String = 0,
    /// i16 (DBR_INT is DBR_SHORT).
    Short = 1,
    /// f32.
    Float = 2,
    /// u16 index into labels.
    Enum = 3,
    /// u8.
    Char = 4,
    /// i32.
    Long = 5,
    /// f64.
    Double = 6,
}

impl Base {
    const ALL: [Base; 7] = [
        Base::String,
        Base::Short,
        Base::Float,
        Base::Enum,
        Base::Char,
        Base::Long,
        Base::Double,
    ];

    /// Size of one element.
    pub fn size(self) -> usize {
        match self {
            Base::String => MAX_STRING_SIZE,
            Base::Short | Base::Enum => 2,
            Base::Float | Base::Long => 4,
            Base::Char => 1,
            Base::Double => 8,
        }
    }

    /// The EPICS name (`STRING`, `INT`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Base::String => "STRING",
            Base::Short => "INT",
            Base::Float => "FLOAT",
            Base::Enum => "ENUM",
            Base::Char => "CHAR",
            Base::Long => "LONG",
            Base::Double => "DOUBLE",
        }
    }
}

/// The families of DBR types: the value alone, with alarm status, with a time stamp, with
/// graphic (display) information, with control information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// DBR_x.
    Plain,
    /// DBR_STS_x.
    Sts,
    /// DBR_TIME_x.
    Time,
    /// DBR_GR_x.
    Gr,
    /// DBR_CTRL_x.
    Ctrl,
}

/// A DBR type the gateway serves: a class and a base type (`DBR_CTRL_DOUBLE` = 34).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DbrType {
    /// The family.
    pub class: Class,
    /// The element type.
    pub base: Base,
}

impl DbrType {
    /// The plain type of a base.
    pub fn plain(base: Base) -> DbrType {
        DbrType {
            class: Class::Plain,
            base,
        }
    }

    /// The type with wire code `code` (0-34).
    ///
    /// # Errors
    /// [`ProtoError::BadType`] for any other code (DBR_PUT_ACKT, DBR_CLASS_NAME, ...).
    pub fn from_code(code: u16) -> Result<DbrType, ProtoError> {
        if code > 34 {
            return Err(ProtoError::BadType(code));
        }
        let class = match code / 7 {
            0 => Class::Plain,
            1 => Class::Sts,
            2 => Class::Time,
            3 => Class::Gr,
            _ => Class::Ctrl,
        };
        Ok(DbrType {
            class,
            base: Base::ALL[usize::from(code % 7)],
        })
    }

    /// The wire code.
    pub fn code(self) -> u16 {
        let c = match self.class {
            Class::Plain => 0,
            Class::Sts => 1,
            Class::Time => 2,
            Class::Gr => 3,
            Class::Ctrl => 4,
        };
        c * 7 + self.base as u16
    }
}

/// Display, alarm and control limits, in the units of the value (as f64; each payload converts
/// them to its element type, clamped).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// HOPR.
    pub disp_hi: f64,
    /// LOPR.
    pub disp_lo: f64,
    /// HIHI.
    pub alarm_hi: f64,
    /// HIGH.
    pub warn_hi: f64,
    /// LOW.
    pub warn_lo: f64,
    /// LOLO.
    pub alarm_lo: f64,
    /// DRVH.
    pub ctrl_hi: f64,
    /// DRVL.
    pub ctrl_lo: f64,
}

/// What the STS/TIME/GR/CTRL part of a payload says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta<'a> {
    /// Alarm condition (`alarm::*`).
    pub status: u16,
    /// Alarm severity.
    pub severity: u16,
    /// Time of the value, ns since the Unix epoch.
    pub stamp_ns: u64,
    /// Engineering units (cut to 7 bytes).
    pub units: &'a str,
    /// Display precision (floats).
    pub precision: i16,
    /// Limits.
    pub limits: Limits,
    /// Enum labels (the first 16, each cut to 25 bytes).
    pub labels: &'a [String],
}

/// The elements of a payload, already converted to the requested base type by the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elements<'a> {
    /// One DBR_STRING element (cut to 39 bytes).
    Str(&'a str),
    /// One i16.
    Short(i16),
    /// One f32.
    Float(f32),
    /// One enum index.
    Enum(u16),
    /// A char array (the bytes of a long string, NUL-padded to the count).
    Chars(&'a [u8]),
    /// One i32.
    Long(i32),
    /// One f64.
    Double(f64),
}

impl Elements<'_> {
    /// The base type these elements are.
    pub fn base(&self) -> Base {
        match self {
            Elements::Str(_) => Base::String,
            Elements::Short(_) => Base::Short,
            Elements::Float(_) => Base::Float,
            Elements::Enum(_) => Base::Enum,
            Elements::Chars(_) => Base::Char,
            Elements::Long(_) => Base::Long,
            Elements::Double(_) => Base::Double,
        }
    }
}

/// The padded size of a payload of `count` elements of type `t`.
pub fn payload_size(t: DbrType, count: u32) -> usize {
    pad8(meta_size(t) + t.base.size() * count as usize)
}

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Size of the part before the value (the sizes of `struct dbr_*` up to `value`).
fn meta_size(t: DbrType) -> usize {
    use Base::*;
    match (t.class, t.base) {
        (Class::Plain, _) => 0,
        (Class::Sts, Char) => 5,
        (Class::Sts, Double) => 8,
        (Class::Sts, _) => 4,
        (Class::Time, Short | Enum) => 14,
        (Class::Time, Char) => 15,
        (Class::Time, Double) => 16,
        (Class::Time, _) => 12,
        (Class::Gr | Class::Ctrl, String) => 4,
        (Class::Gr | Class::Ctrl, Enum) => 6 + MAX_ENUM_STATES * MAX_ENUM_STRING_SIZE,
        (Class::Gr, Short) => 4 + 8 + 6 * 2,
        (Class::Ctrl, Short) => 4 + 8 + 8 * 2,
        (Class::Gr, Char) => 4 + 8 + 6 + 1,
        (Class::Ctrl, Char) => 4 + 8 + 8 + 1,
        (Class::Gr, Long) => 4 + 8 + 6 * 4,
        (Class::Ctrl, Long) => 4 + 8 + 8 * 4,
        (Class::Gr, Float) => 8 + 8 + 6 * 4,
        (Class::Ctrl, Float) => 8 + 8 + 8 * 4,
        (Class::Gr, Double) => 8 + 8 + 6 * 8,
        (Class::Ctrl, Double) => 8 + 8 + 8 * 8,
    }
}

/// Appends `s` into a fixed field of `n` bytes: cut to `n - 1` bytes (at a character
/// boundary), NUL-padded.
fn put_fixed(out: &mut Vec<u8>, s: &str, n: usize) {
    let mut end = s.len().min(n - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&s.as_bytes()[..end]);
    out.resize(out.len() + n - end, 0);
}

fn clamp_f(v: f64, lo: f64, hi: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(lo, hi)
    }
}

fn put_limits(out: &mut Vec<u8>, base: Base, l: &Limits, ctrl: bool) {
    let mut vals = vec![
        l.disp_hi, l.disp_lo, l.alarm_hi, l.warn_hi, l.warn_lo, l.alarm_lo,
    ];
    if ctrl {
        vals.extend([l.ctrl_hi, l.ctrl_lo]);
    }
    for v in vals {
        match base {
            Base::Short => out.extend_from_slice(
                &(clamp_f(v, f64::from(i16::MIN), f64::from(i16::MAX)) as i16).to_be_bytes(),
            ),
            Base::Char => out.push(clamp_f(v, 0.0, 255.0) as u8),
            Base::Long => out.extend_from_slice(
                &(clamp_f(v, f64::from(i32::MIN), f64::from(i32::MAX)) as i32).to_be_bytes(),
            ),
            Base::Float => out.extend_from_slice(&(v as f32).to_be_bytes()),
            Base::Double => out.extend_from_slice(&v.to_be_bytes()),
            Base::String | Base::Enum => {}
        }
    }
}

/// Appends the payload of a DBR of type `t` with `count` elements (at least 1), padded to 8.
/// `el` must be of `t.base` (the caller converts); a scalar asked for with a count above 1 is
/// followed by zeroed elements, a char array is NUL-padded or cut to `count`.
///
/// # Panics
/// If `el` is not of type `t.base` (a programming error).
pub fn encode_dbr(out: &mut Vec<u8>, t: DbrType, count: u32, meta: &Meta<'_>, el: &Elements<'_>) {
    assert_eq!(el.base(), t.base, "elements of the wrong type");
    let start = out.len();
    let count = count.max(1) as usize;
    let sts = |out: &mut Vec<u8>| {
        out.extend_from_slice(&meta.status.to_be_bytes());
        out.extend_from_slice(&meta.severity.to_be_bytes());
    };
    match t.class {
        Class::Plain => {}
        Class::Sts => {
            sts(out);
            match t.base {
                Base::Char => out.push(0),
                Base::Double => out.extend_from_slice(&[0; 4]),
                _ => {}
            }
        }
        Class::Time => {
            sts(out);
            let secs = (meta.stamp_ns / 1_000_000_000).saturating_sub(EPICS_EPOCH_OFFSET);
            let nsec = (meta.stamp_ns % 1_000_000_000) as u32;
            out.extend_from_slice(&(secs.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            out.extend_from_slice(&nsec.to_be_bytes());
            match t.base {
                Base::Short | Base::Enum => out.extend_from_slice(&[0; 2]),
                Base::Char => out.extend_from_slice(&[0; 3]),
                Base::Double => out.extend_from_slice(&[0; 4]),
                _ => {}
            }
        }
        Class::Gr | Class::Ctrl => {
            sts(out);
            let ctrl = t.class == Class::Ctrl;
            match t.base {
                Base::String => {}
                Base::Enum => {
                    let n = meta.labels.len().min(MAX_ENUM_STATES);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                    for i in 0..MAX_ENUM_STATES {
                        put_fixed(
                            out,
                            meta.labels.get(i).map_or("", String::as_str),
                            MAX_ENUM_STRING_SIZE,
                        );
                    }
                }
                Base::Float | Base::Double => {
                    out.extend_from_slice(&meta.precision.to_be_bytes());
                    out.extend_from_slice(&[0; 2]);
                    put_fixed(out, meta.units, MAX_UNITS_SIZE);
                    put_limits(out, t.base, &meta.limits, ctrl);
                }
                Base::Short | Base::Long | Base::Char => {
                    put_fixed(out, meta.units, MAX_UNITS_SIZE);
                    put_limits(out, t.base, &meta.limits, ctrl);
                    if t.base == Base::Char {
                        out.push(0);
                    }
                }
            }
        }
    }
    debug_assert_eq!(out.len() - start, meta_size(t), "{t:?}");
    let value_start = out.len();
    match *el {
        Elements::Str(s) => put_fixed(out, s, MAX_STRING_SIZE),
        Elements::Short(v) => out.extend_from_slice(&v.to_be_bytes()),
        Elements::Float(v) => out.extend_from_slice(&v.to_be_bytes()),
        Elements::Enum(v) => out.extend_from_slice(&v.to_be_bytes()),
        Elements::Long(v) => out.extend_from_slice(&v.to_be_bytes()),
        Elements::Double(v) => out.extend_from_slice(&v.to_be_bytes()),
        Elements::Chars(b) => out.extend_from_slice(&b[..b.len().min(count)]),
    }
    let value_len = t.base.size() * count;
    out.resize(value_start + value_len, 0);
    out.resize(start + pad8(out.len() - start), 0);
}

/// A value a client writes, decoded from a WRITE payload.
#[derive(Debug, Clone, PartialEq)]
pub enum PutValue {
    /// From DBR_STRING, or a char array (up to its first NUL).
    Text(String),
    /// From DBR_SHORT, ENUM, CHAR (a single one), LONG.
    Int(i64),
    /// From DBR_FLOAT, DBR_DOUBLE.
    Float(f64),
}

/// Decodes the first element of a WRITE payload of type `dtype` (plain types only). A
/// DBR_CHAR write of more than one element is read as text (a long string).
///
/// # Errors
/// [`ProtoError::BadType`] for a type other than the plain seven, [`ProtoError::Short`] if
/// the data is shorter than one element, [`ProtoError::BadValue`] for text that is not UTF-8.
pub fn decode_put(dtype: u16, count: u32, data: &[u8]) -> Result<PutValue, ProtoError> {
    let t = DbrType::from_code(dtype)?;
    if t.class != Class::Plain {
        return Err(ProtoError::BadType(dtype));
    }
    need(cmd::WRITE, data, t.base.size())?;
    let text = |b: &[u8]| -> Result<PutValue, ProtoError> {
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        std::str::from_utf8(&b[..end])
            .map(|s| PutValue::Text(s.to_owned()))
            .map_err(|_| ProtoError::BadValue("the string written is not UTF-8"))
    };
    Ok(match t.base {
        Base::String => text(&data[..MAX_STRING_SIZE])?,
        Base::Char if count > 1 => {
            let n = (count as usize).min(data.len());
            text(&data[..n])?
        }
        Base::Char => PutValue::Int(i64::from(data[0])),
        Base::Short => PutValue::Int(i64::from(i16::from_be_bytes([data[0], data[1]]))),
        Base::Enum => PutValue::Int(i64::from(u16::from_be_bytes([data[0], data[1]]))),
        Base::Long => PutValue::Int(i64::from(i32::from_be_bytes([
            data[0], data[1], data[2], data[3],
        ]))),
        Base::Float => PutValue::Float(f64::from(f32::from_be_bytes([
            data[0], data[1], data[2], data[3],
        ]))),
        Base::Double => {
            let mut b = [0; 8];
            b.copy_from_slice(&data[..8]);
            PutValue::Float(f64::from_be_bytes(b))
        }
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
mod tests {
    use super::*;

    fn msg(h: Header, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push_message(&mut v, h, payload);
        v
    }

    #[test]
    fn headers_round_trip_plain_and_extended() {
        for h in [
            Header::new(cmd::READ_NOTIFY, 0, 6, 1, 7, 9),
            Header::new(cmd::EVENT_ADD, 0x1_0000, 6, 0x20000, 1, 2),
            Header::new(cmd::WRITE, 0xFFFF, 4, 3, 1, 2),
        ] {
            let mut b = Vec::new();
            h.encode(&mut b);
            assert_eq!(b.len(), if h.is_extended() { 24 } else { 16 });
            let (back, len) = decode_header(&b, u32::MAX).unwrap().unwrap();
            assert_eq!((back, len), (h, b.len()));
            assert_eq!(decode_header(&b[..len - 1], u32::MAX).unwrap(), None);
        }
        let mut b = Vec::new();
        Header::new(cmd::WRITE, 1 << 20, 0, 1, 0, 0).encode(&mut b);
        assert!(matches!(
            decode_header(&b, 16384),
            Err(ProtoError::TooLarge { size: 1048576, .. })
        ));
    }

    #[test]
    fn search_and_create_decode_names() {
        let b = msg(
            Header::new(cmd::SEARCH, 0, DO_REPLY, 13, 5, 5),
            b"ca1:ticks\0",
        );
        let (h, n) = decode_header(&b, 1024).unwrap().unwrap();
        let r = parse_request(&h, &b[n..n + h.payload_size as usize]).unwrap();
        assert_eq!(
            r,
            Request::Search {
                reply: true,
                minor: 13,
                cid: 5,
                name: "ca1:ticks"
            }
        );
        for bad in [&b""[..], b"\0", b"a b\0", b"\xff\0"] {
            assert_eq!(name_of(bad), Err(ProtoError::BadName));
        }
        assert_eq!(name_of(&[b'a'; 300]), Err(ProtoError::BadName));
    }

    /// The payload sizes are those of EPICS' `db_access.h` structures (`dbr_size[]`).
    #[test]
    fn dbr_sizes_are_epics_sizes() {
        // dbr_size[] of EPICS base for codes 0..=34 (one element), before padding.
        let sizes = [
            40, 2, 4, 2, 1, 4, 8, // plain
            44, 6, 8, 6, 6, 8, 16, // sts
            52, 16, 16, 16, 16, 16, 24, // time
            44, 26, 44, 424, 20, 40, 72, // gr
            44, 30, 52, 424, 22, 48, 88, // ctrl
        ];
        for (code, size) in sizes.iter().enumerate() {
            let t = DbrType::from_code(code as u16).unwrap();
            assert_eq!(t.code(), code as u16);
            assert_eq!(meta_size(t) + t.base.size(), *size, "{t:?}");
        }
        assert!(DbrType::from_code(35).is_err());
    }

    #[test]
    fn ctrl_double_layout() {
        let labels = Vec::new();
        let meta = Meta {
            status: alarm::HIHI,
            severity: alarm::SEV_MAJOR,
            stamp_ns: (EPICS_EPOCH_OFFSET + 5) * 1_000_000_000 + 7,
            units: "Hz",
            precision: 3,
            limits: Limits {
                disp_hi: 100.0,
                ..Limits::default()
            },
            labels: &labels,
        };
        let mut out = Vec::new();
        let t = DbrType::from_code(34).unwrap();
        encode_dbr(&mut out, t, 1, &meta, &Elements::Double(2.5));
        assert_eq!(out.len(), 88);
        assert_eq!(&out[0..4], &[0, 3, 0, 2]);
        assert_eq!(&out[4..6], &[0, 3]);
        assert_eq!(&out[8..11], b"Hz\0");
        assert_eq!(&out[16..24], &100.0f64.to_be_bytes());
        assert_eq!(&out[80..88], &2.5f64.to_be_bytes());
        let mut out = Vec::new();
        encode_dbr(
            &mut out,
            DbrType::from_code(20).unwrap(),
            1,
            &meta,
            &Elements::Double(1.0),
        );
        assert_eq!(&out[4..8], &5u32.to_be_bytes());
        assert_eq!(&out[8..12], &7u32.to_be_bytes());
    }

    #[test]
    fn enum_labels_and_long_strings() {
        let labels: Vec<String> = [
            "UNDEFINED_STATE",
            "INIT_STATE",
            "a label longer than twenty-five",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let meta = Meta {
            status: 0,
            severity: 0,
            stamp_ns: 0,
            units: "",
            precision: 0,
            limits: Limits::default(),
            labels: &labels,
        };
        let mut out = Vec::new();
        encode_dbr(
            &mut out,
            DbrType::from_code(31).unwrap(),
            1,
            &meta,
            &Elements::Enum(1),
        );
        assert_eq!(&out[4..6], &3u16.to_be_bytes());
        assert_eq!(&out[6..22], b"UNDEFINED_STATE\0");
        assert_eq!(&out[32..43], b"INIT_STATE\0");
        assert_eq!(&out[58..58 + 25], &b"a label longer than twenty-five"[..25]);
        assert_eq!(out[58 + 25], 0);
        assert_eq!(&out[422..424], &1u16.to_be_bytes());
        let mut out = Vec::new();
        encode_dbr(
            &mut out,
            DbrType::plain(Base::Char),
            5,
            &meta,
            &Elements::Chars(b"abc"),
        );
        assert_eq!(out, b"abc\0\0\0\0\0");
        assert_eq!(
            decode_put(4, 8, b"hello\0\0\0").unwrap(),
            PutValue::Text("hello".into())
        );
    }

    #[test]
    fn puts_decode() {
        assert_eq!(
            decode_put(5, 1, &(-7i32).to_be_bytes()).unwrap(),
            PutValue::Int(-7)
        );
        assert_eq!(
            decode_put(6, 1, &2.5f64.to_be_bytes()).unwrap(),
            PutValue::Float(2.5)
        );
        let mut s = [0u8; 40];
        s[..4].copy_from_slice(b"PAUS");
        assert_eq!(decode_put(0, 1, &s).unwrap(), PutValue::Text("PAUS".into()));
        assert!(matches!(
            decode_put(6, 1, &[0; 4]),
            Err(ProtoError::Short { .. })
        ));
        assert!(matches!(
            decode_put(20, 1, &[0; 64]),
            Err(ProtoError::BadType(20))
        ));
    }

    /// Random and mutated input: the decoders never panic, never accept a payload above the
    /// limit, and what they accept re-encodes to the same header.
    #[test]
    fn fuzz_decoders() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut seeds: Vec<Vec<u8>> = vec![
            msg(Header::new(cmd::SEARCH, 0, DO_REPLY, 13, 1, 1), b"a:b\0"),
            msg(
                Header::new(cmd::CREATE_CHAN, 0, 0, 0, 1, 13),
                b"ca1:ticks\0",
            ),
            msg(Header::new(cmd::EVENT_ADD, 0, 34, 1, 1, 2), &[0; 16]),
            msg(Header::new(cmd::WRITE_NOTIFY, 0, 0, 1, 1, 2), &[b'x'; 40]),
            msg(Header::new(cmd::WRITE, 0, 4, 9, 1, 2), b"abcdefgh"),
        ];
        let mut ext = Vec::new();
        Header::new(cmd::WRITE, 0x10000, 6, 0x10001, 0, 0).encode(&mut ext);
        seeds.push(ext);
        const LIMIT: u32 = 16 * 1024;
        for _ in 0..100_000 {
            let mut input = seeds[(rnd() % seeds.len() as u64) as usize].clone();
            if rnd() % 4 == 0 {
                let extra = seeds[(rnd() % seeds.len() as u64) as usize].clone();
                input.extend(extra);
            }
            for _ in 0..(rnd() % 6) {
                let r = rnd();
                let i = (r as usize >> 8) % (input.len() + 1);
                match r % 3 {
                    0 if i < input.len() => input[i] = (r >> 32) as u8,
                    1 => input.insert(i, (r >> 40) as u8),
                    _ if i < input.len() => {
                        input.remove(i);
                    }
                    _ => {}
                }
            }
            let mut rest = &input[..];
            while let Ok(Some((h, n))) = decode_header(rest, LIMIT) {
                assert!(h.payload_size <= LIMIT);
                let mut again = Vec::new();
                h.encode(&mut again);
                let (back, _) = decode_header(&again, LIMIT).unwrap().unwrap();
                assert_eq!(back, h);
                let end = (n + h.payload_size as usize).min(rest.len());
                let payload = &rest[n..end];
                if let Ok(Request::Write {
                    dtype, count, data, ..
                }) = parse_request(&h, payload)
                {
                    let _ = decode_put(dtype, count, data);
                }
                if let Ok(t) = DbrType::from_code(h.data_type) {
                    assert_eq!(t.code(), h.data_type);
                }
                rest = &rest[end..];
            }
        }
    }
}
