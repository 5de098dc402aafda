//! The transaction protocol between isectd and its clients and transaction workers: the whole
//! wire format. TCP, every message a frame of a fixed 20-byte header and a payload; all
//! integers little-endian.
//!
//! | offset | size | field | meaning |
//! |---:|---:|---|---|
//! | 0 | 4 | magic | `49 53 44 31` (`"ISD1"`) |
//! | 4 | 1 | kind | [`Kind`]: 1 LOGIN, 2 WELCOME, 3 DATA, 4 CONTROL |
//! | 5 | 1 | flags | bit 0 MORE: more pieces of this request (or reply) follow; other bits 0 |
//! | 6 | 2 | error | i16: 0, or an [`Error`] code (a reply that failed) |
//! | 8 | 4 | tag | client id (in DATA to and from a worker: whose transaction it is) |
//! | 12 | 4 | seq | piece number within the request or reply, from 1 |
//! | 16 | 4 | len | payload bytes, 0 ..= [`MAX_PAYLOAD`] |
//! | 20 | len | payload | bytes |
//!
//! A frame with another magic, an unknown kind, flags other than MORE, or a length over the
//! limit ends the connection (it is counted in `proto_errors`).

/// Largest payload of one frame (a larger request goes in pieces, MORE set on all but the last).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Header size.
pub const HEADER: usize = 20;
/// The magic.
pub const MAGIC: [u8; 4] = *b"ISD1";
/// Flag: more pieces follow.
pub const MORE: u8 = 1;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Client: payload = the service name. Worker: payload = `WID TOKEN` (from its arguments).
    Login = 1,
    /// isectd's answer to a login: error 0 and tag = the client id (0 for a worker), or an error
    /// and a text.
    Welcome = 2,
    /// A piece of a request (client -> isectd -> worker) or of a reply (worker -> isectd ->
    /// client).
    Data = 3,
    /// isectd -> worker: a command (`reinit`, `status`); the worker answers with a CONTROL
    /// frame, its text as payload.
    Control = 4,
}

/// Error codes (the `error` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The worker died, or was idled, or was shut down while busy on this transaction:
    /// payload "PROTOCOL INTERVENTION" (the seed's header error -1).
    Intervention = -1,
    /// No such service (login), or a transaction no worker will serve (the service has no
    /// transaction worker, none is started, or all failed: the text says which).
    NoService = -2,
    /// Logins are refused (`reject`), or isectd has as many clients as `MaxUsers` allows.
    Rejected = -3,
    /// The client was deleted by an operator.
    Deleted = -4,
    /// The frame was not understood (DATA before login, a login twice...).
    BadRequest = -5,
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its kind.
    pub kind: Kind,
    /// MORE or 0.
    pub flags: u8,
    /// 0 or an [`Error`] code.
    pub error: i16,
    /// Client id.
    pub tag: u32,
    /// Piece number.
    pub seq: u32,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Whether MORE is set.
    pub fn more(&self) -> bool {
        self.flags & MORE != 0
    }
}

/// Appends a frame to `out`.
pub fn put(
    out: &mut Vec<u8>,
    kind: Kind,
    flags: u8,
    error: i16,
    tag: u32,
    seq: u32,
    payload: &[u8],
) {
    out.extend_from_slice(&MAGIC);
    out.push(kind as u8);
    out.push(flags);
    out.extend_from_slice(&error.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends a frame with header `h` (its `len` is the payload's) to `out`.
pub fn put_frame(out: &mut Vec<u8>, h: &Header, payload: &[u8]) {
    put(out, h.kind, h.flags, h.error, h.tag, h.seq, payload);
}

/// A header for a frame of `kind` to (or from) client `tag`, piece `seq`.
pub fn hdr(kind: Kind, flags: u8, error: i16, tag: u32, seq: u32) -> Header {
    Header {
        kind,
        flags,
        error,
        tag,
        seq,
        len: 0,
    }
}

/// Decodes the header at the start of `b` (at least [`HEADER`] bytes).
///
/// # Errors
/// What is wrong with it.
pub fn header(b: &[u8]) -> Result<Header, String> {
    if b[..4] != MAGIC {
        return Err("not an isectd frame (bad magic)".into());
    }
    let kind = match b[4] {
        1 => Kind::Login,
        2 => Kind::Welcome,
        3 => Kind::Data,
        4 => Kind::Control,
        k => return Err(format!("unknown frame kind {k}")),
    };
    let flags = b[5];
    if flags & !MORE != 0 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    let u32at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    let len = u32at(16);
    if len as usize > MAX_PAYLOAD {
        return Err(format!("payload of {len} bytes (at most {MAX_PAYLOAD})"));
    }
    Ok(Header {
        kind,
        flags,
        error: i16::from_le_bytes([b[6], b[7]]),
        tag: u32at(8),
        seq: u32at(12),
        len,
    })
}

/// Splits whole frames off a receive buffer.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    at: usize,
}

impl Framer {
    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.at > 0 && self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame: its header and payload.
    ///
    /// # Errors
    /// A bad header: drop the connection.
    pub fn next_frame(&mut self) -> Result<Option<(Header, Vec<u8>)>, String> {
        let b = &self.buf[self.at..];
        if b.len() < HEADER {
            self.compact();
            return Ok(None);
        }
        let h = header(b)?;
        let n = HEADER + h.len as usize;
        if b.len() < n {
            self.compact();
            return Ok(None);
        }
        let payload = b[HEADER..n].to_vec();
        self.at += n;
        Ok(Some((h, payload)))
    }

    /// Bytes held (for memory bounds).
    pub fn held(&self) -> usize {
        self.buf.len() - self.at
    }

    fn compact(&mut self) {
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
    }
}

/// The payload of an intervention reply.
pub const INTERVENTION: &[u8] = b"PROTOCOL INTERVENTION";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut out = Vec::new();
        put(&mut out, Kind::Login, 0, 0, 0, 1, b"echo");
        put(&mut out, Kind::Data, MORE, 0, 7, 1, &[1, 2, 3]);
        put(&mut out, Kind::Data, 0, -1, 7, 2, INTERVENTION);
        let mut f = Framer::default();
        let mut got = Vec::new();
        for c in out.chunks(5) {
            f.push(c);
            while let Some(x) = f.next_frame().unwrap() {
                got.push(x);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1, b"echo");
        assert!(got[1].0.more() && got[1].0.tag == 7);
        assert_eq!(got[2].0.error, Error::Intervention as i16);
        assert_eq!(f.held(), 0);
    }

    /// Mutated and random bytes never panic and never make the framer hold more than it was
    /// given: a frame, more bytes wanted, or an error.
    #[test]
    fn the_framer_survives_garbage() {
        let mut good = Vec::new();
        put(&mut good, Kind::Data, MORE, 0, 3, 1, b"hello world");
        let mut rng = crate::support::fuzz::Rng::new(0x2545_f491_4f6c_dd1du64);
        for _ in 0..50_000 {
            let mut b = good.clone();
            for _ in 0..(rng.next_u64() % 4 + 1) {
                let i = rng.below(b.len());
                b[i] = rng.next_u64() as u8;
            }
            b.truncate(b.len() - (rng.next_u64() as usize % 8));
            let mut f = Framer::default();
            f.push(&b);
            for _ in 0..3 {
                match f.next_frame() {
                    Ok(Some((h, p))) => assert_eq!(p.len(), h.len as usize),
                    Ok(None) | Err(_) => break,
                }
            }
            assert!(f.held() <= b.len());
        }
        let mut f = Framer::default();
        let mut huge = Vec::new();
        put(&mut huge, Kind::Data, 0, 0, 0, 1, b"");
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        f.push(&huge);
        assert!(f.next_frame().unwrap_err().contains("at most"));
    }
}
