//! The control protocol's wire format, all of it: request lines (FIFO and socket), reply frames
//! (socket). `docs/control.md` describes the same bytes for writers of clients in other
//! languages; the tests at the end of this file feed the decoders random and damaged input.
//!
//! ```text
//! request = command *( SP word ) LF                     ; at most MAX_LINE bytes, LF included
//! reply   = "ok" SP length LF text LF
//!         / "error" SP kind SP length LF text LF         ; length: bytes of text, decimal
//! ```
//!
//! A request is UTF-8 text without control characters other than tab; a trailing CR is ignored.
//! On the FIFO a request must arrive in one `write(2)` (at most PIPE_BUF bytes, so concurrent
//! writers never interleave): bytes without a final newline left when the FIFO is drained are
//! discarded ([`LineFramer::end_of_input`]).

use std::fmt;

use super::reply::{ErrorKind, Failure, Reply};

/// Longest request line in bytes, newline included: POSIX PIPE_BUF on Linux, so that a line
/// written to a FIFO in one write is never interleaved with another writer's.
pub const MAX_LINE: usize = 4096;

/// Longest reply text a client accepts.
pub const MAX_REPLY: usize = 16 << 20;

/// Longest reply header (`error bad-request 16777216`).
const MAX_REPLY_HEADER: usize = 64;

/// What the owner's framer makes of the bytes it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A well-formed command line (trimmed, never empty).
    Line(String),
    /// Bytes that are not a command: the reason, for the log and for a reply.
    Bad(String),
}

/// Splits the byte stream of a FIFO or of a socket connection into [`Frame`]s. Blank lines are
/// skipped. Overlong lines are dropped whole, up to their newline, and reported once.
#[derive(Debug, Default)]
pub struct LineFramer {
    buf: Vec<u8>,
    /// Bytes of an overlong line dropped so far (the line goes on until its newline).
    discarding: Option<usize>,
}

fn parse_line(line: &[u8]) -> Option<Frame> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(|b| *b == b' ' || *b == b'\t') {
        return None;
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Some(Frame::Bad(format!(
            "{} bytes that are not valid UTF-8 ignored (commands are text lines)",
            line.len()
        )));
    };
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Some(Frame::Bad(format!(
            "a line with control characters ignored ({:?})",
            text.chars().take(40).collect::<String>()
        )));
    }
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(Frame::Line(text.to_owned()))
}

fn overlong(n: usize) -> Frame {
    Frame::Bad(format!(
        "a command line of {n} bytes ignored: the limit is {MAX_LINE} bytes (PIPE_BUF), newline included"
    ))
}

impl LineFramer {
    /// Feeds bytes; complete frames are appended to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
        while !data.is_empty() {
            if let Some(n) = &mut self.discarding {
                match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        out.push(overlong(*n + i + 1));
                        self.discarding = None;
                        data = &data[i + 1..];
                    }
                    None => {
                        *n += data.len();
                        return;
                    }
                }
                continue;
            }
            match data.iter().position(|&b| b == b'\n') {
                Some(i) if self.buf.len() + i < MAX_LINE => {
                    self.buf.extend_from_slice(&data[..i]);
                    let line = std::mem::take(&mut self.buf);
                    out.extend(parse_line(&line));
                    data = &data[i + 1..];
                }
                _ if self.buf.len() + data.len() >= MAX_LINE => {
                    // Too long: drop what we have and everything up to the next newline.
                    self.discarding = Some(self.buf.len());
                    self.buf.clear();
                }
                _ => {
                    self.buf.extend_from_slice(data);
                    return;
                }
            }
        }
    }

    /// Bytes held of a line not finished yet.
    pub fn partial(&self) -> usize {
        self.buf.len() + self.discarding.unwrap_or(0)
    }

    /// The writer is done (the FIFO is drained, or the connection closed): a line without its
    /// newline can only be junk or a writer that broke the one-write rule, and must not swallow
    /// the next command. Drops it and says why, if there was one.
    pub fn end_of_input(&mut self) -> Option<Frame> {
        let n = self.partial();
        let start: String = String::from_utf8_lossy(&self.buf[..self.buf.len().min(24)])
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect();
        self.buf.clear();
        self.discarding = None;
        (n > 0).then(|| {
            Frame::Bad(format!(
                "{n} bytes without a final newline discarded ({start:?}...; a command is one line written at once)"
            ))
        })
    }
}

/// A request line a client wants to send was refused before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Longer than [`MAX_LINE`] with its newline.
    TooLong {
        /// Bytes of the line.
        len: usize,
    },
    /// A newline, NUL or other control character.
    ControlCharacters,
    /// Nothing but blanks.
    Empty,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooLong { len } => write!(
                f,
                "command is {len} bytes long; a command line takes at most {} bytes",
                MAX_LINE - 1
            ),
            RequestError::ControlCharacters => {
                f.write_str("a command must be one line of text without control characters")
            }
            RequestError::Empty => f.write_str("empty command"),
        }
    }
}

impl std::error::Error for RequestError {}

/// The bytes of request `line` (the newline added), checked as the owner will check them.
///
/// # Errors
/// [`RequestError`] if the owner would refuse the line.
pub fn encode_request(line: &str) -> Result<Vec<u8>, RequestError> {
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(RequestError::ControlCharacters);
    }
    if line.trim().is_empty() {
        return Err(RequestError::Empty);
    }
    if line.len() + 1 > MAX_LINE {
        return Err(RequestError::TooLong { len: line.len() });
    }
    let mut v = Vec::with_capacity(line.len() + 1);
    v.extend_from_slice(line.as_bytes());
    v.push(b'\n');
    Ok(v)
}

/// Appends the frame of `reply` to `out`.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    let text = match reply {
        Reply::Ok { text } => {
            out.extend_from_slice(format!("ok {}\n", text.len()).as_bytes());
            text
        }
        Reply::Error(f) => {
            out.extend_from_slice(format!("error {} {}\n", f.kind, f.text.len()).as_bytes());
            &f.text
        }
    };
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

/// The owner sent something that is not a reply frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadReply(pub String);

impl fmt::Display for BadReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed reply: {}", self.0)
    }
}

impl std::error::Error for BadReply {}

/// Decodes reply frames from the bytes a client reads.
#[derive(Debug, Default)]
pub struct ReplyDecoder {
    buf: Vec<u8>,
}

impl ReplyDecoder {
    /// Feeds bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete reply, if one has arrived.
    ///
    /// # Errors
    /// [`BadReply`] if the bytes are not a reply frame (the connection is then useless).
    pub fn next_reply(&mut self) -> Result<Option<Reply>, BadReply> {
        let Some(nl) = self
            .buf
            .iter()
            .take(MAX_REPLY_HEADER)
            .position(|&b| b == b'\n')
        else {
            if self.buf.len() >= MAX_REPLY_HEADER {
                return Err(BadReply("header line too long".to_owned()));
            }
            return Ok(None);
        };
        let head = std::str::from_utf8(&self.buf[..nl])
            .map_err(|_| BadReply("header is not text".to_owned()))?;
        let mut parts = head.split(' ');
        let status = parts.next().unwrap_or("");
        let kind = match status {
            "ok" => None,
            "error" => {
                let k = parts.next().unwrap_or("");
                Some(
                    ErrorKind::from_wire(k)
                        .ok_or_else(|| BadReply(format!("unknown error kind {k:?}")))?,
                )
            }
            other => {
                return Err(BadReply(format!(
                    "status {:?} is neither ok nor error",
                    other.chars().take(20).collect::<String>()
                )))
            }
        };
        let len_text = parts.next().unwrap_or("");
        if parts.next().is_some() {
            return Err(BadReply("extra words in the header".to_owned()));
        }
        let len: usize = len_text
            .parse()
            .ok()
            .filter(|_| {
                // Canonical decimal only: no sign, no leading zero.
                len_text.bytes().all(|b| b.is_ascii_digit())
                    && (len_text == "0" || !len_text.starts_with('0'))
            })
            .ok_or_else(|| BadReply(format!("length {len_text:?} is not a number")))?;
        if len > MAX_REPLY {
            return Err(BadReply(format!(
                "length {len} is larger than {MAX_REPLY} bytes"
            )));
        }
        let total = nl + 1 + len + 1;
        if self.buf.len() < total {
            return Ok(None);
        }
        if self.buf[total - 1] != b'\n' {
            return Err(BadReply("text is not followed by a newline".to_owned()));
        }
        let text = std::str::from_utf8(&self.buf[nl + 1..total - 1])
            .map_err(|_| BadReply("text is not valid UTF-8".to_owned()))?
            .to_owned();
        self.buf.drain(..total);
        Ok(Some(match kind {
            None => Reply::Ok { text },
            Some(kind) => Reply::Error(Failure { kind, text }),
        }))
    }

    /// Bytes received that are not a whole reply yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut f = LineFramer::default();
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        out
    }

    fn line(t: &str) -> Frame {
        Frame::Line(t.into())
    }

    #[test]
    fn lines() {
        assert_eq!(
            frame(&[b"pau", b"se\n  start a 1 \r\n\n \n"]),
            [line("pause"), line("start a 1")]
        );
    }

    #[test]
    fn garbage() {
        let out = frame(&[b"\xff\xfe\x00junk\n", b"init\n"]);
        assert!(matches!(&out[0], Frame::Bad(why) if why.contains("not valid UTF-8")));
        assert_eq!(out[1], line("init"));
        let out = frame(&[b"a\x01b\n"]);
        assert!(matches!(&out[0], Frame::Bad(why) if why.contains("control")));
    }

    #[test]
    fn overlong_lines_are_dropped_whole() {
        let long = vec![b'x'; 10_000];
        let out = frame(&[&long[..3000], &long[..3000], &long[..3000], b"yy\ninit\n"]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            matches!(&out[0], Frame::Bad(why) if why.contains("9003 bytes") && why.contains("limit is 4096")),
            "{out:?}"
        );
        assert_eq!(out[1], line("init"));
    }

    #[test]
    fn a_partial_line_at_the_end_of_input_does_not_swallow_the_next_command() {
        let mut f = LineFramer::default();
        let mut out = Vec::new();
        f.push(b"junk\njunk without newline", &mut out);
        assert_eq!(out, [line("junk")]);
        let bad = f.end_of_input().unwrap();
        assert!(
            matches!(&bad, Frame::Bad(w) if w.contains("20 bytes without a final newline discarded (\"junk without newline\"")),
            "{bad:?}"
        );
        out.clear();
        f.push(b"init\n", &mut out);
        assert_eq!(out, [line("init")]);
        assert_eq!(f.end_of_input(), None);
    }

    #[test]
    fn requests_are_checked_before_sending() {
        assert_eq!(encode_request("init").unwrap(), b"init\n");
        assert_eq!(encode_request("a\nb"), Err(RequestError::ControlCharacters));
        assert_eq!(encode_request("  "), Err(RequestError::Empty));
        assert!(encode_request(&"x".repeat(MAX_LINE)).is_err());
        assert!(encode_request(&"x".repeat(MAX_LINE - 1)).is_ok());
        // ...and the owner takes the longest line a client may send.
        let mut f = LineFramer::default();
        let mut out = Vec::new();
        f.push(
            &encode_request(&"x".repeat(MAX_LINE - 1)).unwrap(),
            &mut out,
        );
        assert!(matches!(&out[..], [Frame::Line(l)] if l.len() == MAX_LINE - 1));
    }

    fn roundtrip(replies: &[Reply], chunk: usize) -> Vec<Reply> {
        let mut bytes = Vec::new();
        for r in replies {
            encode_reply(r, &mut bytes);
        }
        let mut d = ReplyDecoder::default();
        let mut got = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            d.push(c);
            while let Some(r) = d.next_reply().unwrap() {
                got.push(r);
            }
        }
        assert_eq!(d.pending(), 0);
        got
    }

    #[test]
    fn replies_roundtrip_in_any_chunking() {
        let replies = vec![
            Reply::ok(""),
            Reply::ok("rate: 10 -> 50"),
            Reply::ok("line 1\nline 2\n\nünïcode"),
            Reply::error(ErrorKind::State, "command 'resume' is not allowed"),
            Reply::error(ErrorKind::BadRequest, "x\ny"),
        ];
        for chunk in [1, 2, 3, 7, 64, 10_000] {
            assert_eq!(roundtrip(&replies, chunk), replies, "chunk {chunk}");
        }
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for bad in [
            &b"maybe 3\nabc\n"[..],
            b"ok -1\n",
            b"ok +1\nx\n",
            b"ok 01\nx\n",
            b"ok 99999999999999999999\n",
            b"ok 3 4\nabc\n",
            b"ok 3\nabcd",
            b"error nosuchkind 1\nx\n",
            b"ok 2\n\xff\xfe\n",
            b"\xff\n",
            &[b'o'; 100][..],
        ] {
            let mut d = ReplyDecoder::default();
            d.push(bad);
            assert!(
                d.next_reply().is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut d = ReplyDecoder::default();
        d.push(format!("ok {}\n", MAX_REPLY + 1).as_bytes());
        assert!(d.next_reply().is_err());
    }

    /// Random and mutated input: the decoders never panic, and a decoded reply is always one
    /// that re-encodes to the bytes it came from.
    #[test]
    fn fuzz_decoders() {
        let mut rng = crate::support::fuzz::Rng::new(0x2545_f491_4f6c_dd1du64);
        let seeds: Vec<Vec<u8>> = {
            let mut v = Vec::new();
            for r in [
                Reply::ok("hello"),
                Reply::error(ErrorKind::Usage, "usage: x"),
            ] {
                let mut b = Vec::new();
                encode_reply(&r, &mut b);
                v.push(b);
            }
            v.push(b"init\nstart a b\n".to_vec());
            v
        };
        for _ in 0..50_000 {
            let mut input = seeds[rng.below(seeds.len())].clone();
            crate::support::fuzz::mutate(&mut input, &mut rng, 3);
            let mut d = ReplyDecoder::default();
            d.push(&input);
            let mut consumed = 0;
            while let Ok(Some(r)) = d.next_reply() {
                let mut again = Vec::new();
                encode_reply(&r, &mut again);
                assert_eq!(&input[consumed..consumed + again.len()], &again[..]);
                consumed += again.len();
            }
            let mut f = LineFramer::default();
            let mut out = Vec::new();
            f.push(&input, &mut out);
            let _ = f.end_of_input();
            for fr in out {
                if let Frame::Line(l) = fr {
                    assert!(!l.is_empty() && l.len() < MAX_LINE);
                    assert!(!l.chars().any(|c| c.is_control() && c != '\t'));
                }
            }
        }
    }
}
