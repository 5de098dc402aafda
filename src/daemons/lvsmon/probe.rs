//! What a check sends and how it judges what comes back, byte by byte as it arrives: the HTTP
//! response parser, the banner matcher, the UDP answer matcher. Each keeps a few bytes of state
//! per check ([`HttpState`], [`LineState`]) and never allocates: patterns are DFAs built once
//! when the file is read ([`Matcher`]).

use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::Anchored;

use super::reason::Reason;

/// A pattern compiled to a DFA, matched incrementally with one [`StateID`] of state.
#[derive(Debug, Clone)]
pub struct Matcher {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
    /// As written in the file, for messages.
    pub source: String,
}

/// Where an incremental match stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Matched.
    Found,
    /// Can no longer match.
    Never,
    /// Needs more input.
    More,
}

/// Biggest DFA a pattern may compile to.
const DFA_LIMIT: usize = 1 << 20;

impl Matcher {
    fn build(pattern: &str, anchored: bool, source: &str) -> Result<Matcher, String> {
        let kind = if anchored {
            StartKind::Anchored
        } else {
            StartKind::Unanchored
        };
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(kind)
                    .dfa_size_limit(Some(DFA_LIMIT))
                    .determinize_size_limit(Some(4 * DFA_LIMIT)),
            )
            .build(pattern)
            .map_err(|e| {
                let e = e.to_string();
                if e.contains("limit") {
                    format!("pattern {source:?} is too complex (its DFA would pass {DFA_LIMIT} bytes): simplify it")
                } else {
                    format!("bad pattern {source:?}: {e}")
                }
            })?;
        let mode = if anchored {
            Anchored::Yes
        } else {
            Anchored::No
        };
        let start = dfa
            .start_state(&start::Config::new().anchored(mode))
            .map_err(|e| format!("bad pattern {source:?}: {e}"))?;
        Ok(Matcher {
            dfa,
            start,
            source: source.to_owned(),
        })
    }

    /// Matches text containing `s` anywhere.
    ///
    /// # Errors
    /// Never for a literal of reasonable size.
    pub fn substring(s: &str) -> Result<Matcher, String> {
        Matcher::build(&regex_syntax_escape(s), false, s)
    }

    /// Matches text starting with `s`.
    ///
    /// # Errors
    /// As [`Matcher::substring`].
    pub fn prefix(s: &str) -> Result<Matcher, String> {
        Matcher::build(&regex_syntax_escape(s), true, s)
    }

    /// Matches text in which the regular expression `re` finds a match.
    ///
    /// # Errors
    /// A bad expression, or one too complex for a DFA.
    pub fn regex(re: &str) -> Result<Matcher, String> {
        Matcher::build(re, false, re)
    }

    /// The state before any input.
    pub fn start(&self) -> StateID {
        self.start
    }

    /// Feeds `bytes`.
    pub fn feed(&self, state: &mut StateID, bytes: &[u8]) -> Progress {
        let mut s = *state;
        for &b in bytes {
            s = self.dfa.next_state(s, b);
            if self.dfa.is_special_state(s) {
                if self.dfa.is_match_state(s) {
                    *state = s;
                    return Progress::Found;
                }
                if self.dfa.is_dead_state(s) {
                    *state = s;
                    return Progress::Never;
                }
            }
        }
        *state = s;
        Progress::More
    }

    /// Whether the input fed so far matches, at its end.
    pub fn finish(&self, state: StateID) -> bool {
        let s = self.dfa.next_eoi_state(state);
        self.dfa.is_match_state(s)
    }

    /// Bytes of memory of its DFA.
    pub fn memory(&self) -> usize {
        self.dfa.memory_usage()
    }
}

/// `s` as a regular expression matching it literally.
fn regex_syntax_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~ \t\n\r".contains(c) {
            // Escaping a space or a line end keeps the pattern literal in verbose mode too.
            match c {
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                ' ' => out.push_str("\\x20"),
                _ => {
                    out.push('\\');
                    out.push(c);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Expected HTTP status codes: inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl StatusSet {
    /// Whether `code` is expected.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&code))
    }
}

/// The outcome of feeding bytes to a parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// Decided: success or the reason of failure.
    Done(Reason),
    /// Needs more bytes.
    More,
}

/// What an HTTP check expects.
#[derive(Debug, Clone)]
pub struct HttpExpect {
    /// Status codes that count as success.
    pub status: StatusSet,
    /// A pattern the body must contain, if any.
    pub body: Option<Matcher>,
    /// Bytes of body scanned at most for it.
    pub body_limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Stage {
    /// Matching `HTTP/`.
    #[default]
    Proto,
    /// The version, up to the blank.
    Version,
    /// The three digits of the code.
    Code,
    /// The rest of the status line.
    Reason,
    /// Headers, up to the empty line.
    Headers,
    /// The body.
    Body,
}

/// A check's HTTP response parser: 16 bytes of state.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpState {
    stage: Stage,
    /// Position in the literal being matched (`HTTP/`, or `content-length:` at a header's start).
    pos: u8,
    /// Consecutive line ends seen (2: the header block ended).
    eol: u8,
    code: u16,
    /// The body matcher's state (index into the DFA).
    body: u32,
    /// Body bytes seen.
    seen: u32,
    /// `Content-Length` if given (u32::MAX: not given).
    length: u32,
}

const CONTENT_LENGTH: &[u8] = b"content-length:";
/// `pos` once `content-length:` matched: digits follow.
const IN_LENGTH: u8 = 0xfe;
/// `pos` once a header is known not to be `content-length`.
const OTHER_HEADER: u8 = 0xff;

impl HttpState {
    /// A fresh parser for `e`.
    pub fn new(e: &HttpExpect) -> HttpState {
        HttpState {
            body: e.body.as_ref().map_or(0, |m| m.start().as_u32()),
            length: u32::MAX,
            ..HttpState::default()
        }
    }

    /// Feeds bytes of the response.
    pub fn feed(&mut self, e: &HttpExpect, bytes: &[u8]) -> Judged {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.stage {
                Stage::Proto => {
                    if b != b"HTTP/"[self.pos as usize] {
                        return Judged::Done(Reason::BadResponse);
                    }
                    self.pos += 1;
                    if self.pos == 5 {
                        self.stage = Stage::Version;
                        self.pos = 0;
                    }
                }
                Stage::Version => match b {
                    b' ' if self.pos > 0 => {
                        self.stage = Stage::Code;
                        self.pos = 0;
                    }
                    b'0'..=b'9' | b'.' if self.pos < 8 => self.pos += 1,
                    _ => return Judged::Done(Reason::BadResponse),
                },
                Stage::Code => match b {
                    b'0'..=b'9' if self.pos < 3 => {
                        self.code = self.code * 10 + u16::from(b - b'0');
                        self.pos += 1;
                    }
                    b' ' | b'\r' | b'\n' if self.pos == 3 => {
                        if !(100..=599).contains(&self.code) {
                            return Judged::Done(Reason::BadResponse);
                        }
                        if !e.status.contains(self.code) {
                            return Judged::Done(Reason::BadStatus(self.code));
                        }
                        if e.body.is_none() {
                            return Judged::Done(Reason::Ok);
                        }
                        self.stage = Stage::Reason;
                        continue; // the line end is seen by Reason
                    }
                    _ => return Judged::Done(Reason::BadResponse),
                },
                Stage::Reason => {
                    if b == b'\n' {
                        self.stage = Stage::Headers;
                        self.eol = 1;
                        self.pos = 0;
                    }
                }
                Stage::Headers => {
                    if b == b'\n' {
                        self.eol += 1;
                        if self.eol == 2 {
                            self.stage = Stage::Body;
                        }
                        self.pos = 0;
                    } else if b != b'\r' {
                        self.eol = 0;
                        self.header_byte(b);
                    }
                }
                Stage::Body => {
                    let Some(m) = &e.body else {
                        return Judged::Done(Reason::Ok);
                    };
                    let mut end = bytes.len();
                    if self.length != u32::MAX {
                        let left = (self.length - self.seen.min(self.length)) as usize;
                        end = end.min(i + left);
                    }
                    let room = (e.body_limit.saturating_sub(self.seen)) as usize;
                    end = end.min(i + room);
                    let mut st = StateID::new(self.body as usize).unwrap_or(m.start());
                    let p = m.feed(&mut st, &bytes[i..end]);
                    self.body = st.as_u32();
                    self.seen += (end - i) as u32;
                    match p {
                        Progress::Found => return Judged::Done(Reason::Ok),
                        Progress::Never => return Judged::Done(Reason::UnexpectedBody),
                        Progress::More => {}
                    }
                    if self.seen >= e.body_limit || self.seen >= self.length {
                        return Judged::Done(self.end_of_body(m));
                    }
                    return Judged::More;
                }
            }
            i += 1;
        }
        if self.stage == Stage::Body && self.length == 0 {
            if let Some(m) = &e.body {
                return Judged::Done(self.end_of_body(m));
            }
        }
        Judged::More
    }

    fn header_byte(&mut self, b: u8) {
        match self.pos {
            OTHER_HEADER => {}
            IN_LENGTH => match b {
                b'0'..=b'9' => {
                    let l = if self.length == u32::MAX {
                        0
                    } else {
                        self.length
                    };
                    self.length = l.saturating_mul(10).saturating_add(u32::from(b - b'0'));
                    if self.length == u32::MAX {
                        self.length -= 1;
                    }
                }
                b' ' | b'\t' => {}
                _ => self.pos = OTHER_HEADER,
            },
            p => {
                if b.to_ascii_lowercase() == CONTENT_LENGTH[p as usize] {
                    self.pos += 1;
                    if self.pos as usize == CONTENT_LENGTH.len() {
                        self.pos = IN_LENGTH;
                    }
                } else {
                    self.pos = OTHER_HEADER;
                }
            }
        }
    }

    fn end_of_body(&self, m: &Matcher) -> Reason {
        let st = StateID::new(self.body as usize).unwrap_or(m.start());
        if m.finish(st) {
            Reason::Ok
        } else {
            Reason::UnexpectedBody
        }
    }

    /// The peer closed: judge what arrived.
    pub fn eof(&self, e: &HttpExpect) -> Reason {
        match (self.stage, &e.body) {
            (Stage::Body, Some(m)) => {
                if self.length != u32::MAX && self.seen < self.length && !m.finish(self.state(m)) {
                    Reason::ClosedEarly
                } else {
                    self.end_of_body(m)
                }
            }
            (Stage::Body, None) => Reason::Ok,
            (Stage::Proto, _) if self.pos > 0 => Reason::ClosedEarly,
            _ => Reason::ClosedEarly,
        }
    }

    fn state(&self, m: &Matcher) -> StateID {
        StateID::new(self.body as usize).unwrap_or(m.start())
    }
}

/// A line matcher (a banner's first line): 8 bytes of state.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineState {
    dfa: u32,
    len: u32,
}

/// Longest first line judged.
pub const MAX_LINE: u32 = 1024;

impl LineState {
    /// A fresh matcher for `m`.
    pub fn new(m: &Matcher) -> LineState {
        LineState {
            dfa: m.start().as_u32(),
            len: 0,
        }
    }

    fn state(&self, m: &Matcher) -> StateID {
        StateID::new(self.dfa as usize).unwrap_or(m.start())
    }

    /// Feeds bytes of the first line (carriage returns are skipped); `fail` is the reason when
    /// it does not match.
    pub fn feed(&mut self, m: &Matcher, bytes: &[u8], fail: Reason) -> Judged {
        let mut st = self.state(m);
        for &b in bytes {
            if b == b'\r' {
                continue;
            }
            if b == b'\n' || self.len >= MAX_LINE {
                return Judged::Done(if m.finish(st) { Reason::Ok } else { fail });
            }
            self.len += 1;
            match m.feed(&mut st, &[b]) {
                Progress::Found => return Judged::Done(Reason::Ok),
                Progress::Never => return Judged::Done(fail),
                Progress::More => {}
            }
        }
        self.dfa = st.as_u32();
        Judged::More
    }

    /// The peer closed (or, for a datagram, its end): judge what arrived.
    pub fn eof(&self, m: &Matcher, fail: Reason) -> Reason {
        if self.len == 0 {
            return if m.finish(self.state(m)) {
                Reason::Ok
            } else {
                Reason::ClosedEarly
            };
        }
        if m.finish(self.state(m)) {
            Reason::Ok
        } else {
            fail
        }
    }
}

/// Judges a whole datagram against `m` (any datagram if `None`).
pub fn judge_datagram(m: Option<&Matcher>, data: &[u8]) -> Reason {
    let Some(m) = m else { return Reason::Ok };
    let mut st = m.start();
    match m.feed(&mut st, data) {
        Progress::Found => Reason::Ok,
        Progress::Never => Reason::UnexpectedBody,
        Progress::More if m.finish(st) => Reason::Ok,
        Progress::More => Reason::UnexpectedBody,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(body: Option<&str>) -> HttpExpect {
        HttpExpect {
            status: StatusSet(vec![(200, 299)]),
            body: body.map(|b| Matcher::substring(b).unwrap()),
            body_limit: 1 << 20,
        }
    }

    /// Feeds `resp` in pieces of `step` bytes; then the end of the connection.
    fn judge(e: &HttpExpect, resp: &[u8], step: usize) -> Reason {
        let mut st = HttpState::new(e);
        for chunk in resp.chunks(step.max(1)) {
            if let Judged::Done(r) = st.feed(e, chunk) {
                return r;
            }
        }
        st.eof(e)
    }

    #[test]
    fn http_status_and_body_any_split() {
        let ok =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nall is well";
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(judge(&expect(None), ok, step), Reason::Ok);
            assert_eq!(judge(&expect(Some("is w")), ok, step), Reason::Ok);
            assert_eq!(
                judge(&expect(Some("broken")), ok, step),
                Reason::UnexpectedBody
            );
            // The body is cut: the server closed mid-response.
            assert_eq!(
                judge(&expect(Some("broken")), &ok[..ok.len() - 3], step),
                Reason::ClosedEarly
            );
            assert_eq!(
                judge(&expect(None), b"HTTP/1.0 404 Not Found\r\n\r\n", step),
                Reason::BadStatus(404)
            );
            assert_eq!(
                judge(&expect(None), b"HTTP/1.1 2", step),
                Reason::ClosedEarly
            );
            assert_eq!(judge(&expect(None), b"", step), Reason::ClosedEarly);
            assert_eq!(
                judge(&expect(None), b"SSH-2.0-OpenSSH\r\n", step),
                Reason::BadResponse
            );
        }
        // A header that looks like the end of the headers does not fool it; the pattern is not
        // searched in the headers.
        let tricky = b"HTTP/1.1 200 OK\r\nX-Note: all is well\r\n\r\nnope";
        assert_eq!(
            judge(&expect(Some("all is")), tricky, 1),
            Reason::UnexpectedBody
        );
        // Without Content-Length, the body runs to the end of the connection.
        let open = b"HTTP/1.0 200 OK\n\nfine here";
        assert_eq!(judge(&expect(Some("here")), open, 4), Reason::Ok);
        let re = HttpExpect {
            body: Some(Matcher::regex("v[0-9]+\\.[0-9]+").unwrap()),
            ..expect(None)
        };
        assert_eq!(
            judge(&re, b"HTTP/1.1 200 OK\r\n\r\nversion v12.3 up", 3),
            Reason::Ok
        );
        assert_eq!(
            judge(&re, b"HTTP/1.1 200 OK\r\n\r\nversion v12 up", 3),
            Reason::UnexpectedBody
        );
    }

    #[test]
    fn http_parser_survives_garbage() {
        let e = expect(Some("x"));
        let mut seed = 0x9e3779b97f4a7c15u64;
        for n in 0..2000 {
            let mut msg = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec();
            for _ in 0..(n % 6) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % msg.len() as u64) as usize;
                msg[at] = (seed >> 40) as u8;
            }
            let _ = judge(&e, &msg, (seed % 5) as usize + 1);
        }
    }

    #[test]
    fn banners() {
        let m = Matcher::prefix("SSH-2.0-").unwrap();
        let run = |bytes: &[u8], step: usize| {
            let mut st = LineState::new(&m);
            for c in bytes.chunks(step) {
                if let Judged::Done(r) = st.feed(&m, c, Reason::BadBanner) {
                    return r;
                }
            }
            st.eof(&m, Reason::BadBanner)
        };
        for step in [1, 3, 100] {
            assert_eq!(run(b"SSH-2.0-OpenSSH_9.2\r\n", step), Reason::Ok);
            assert_eq!(run(b"220 smtp.example ESMTP\r\n", step), Reason::BadBanner);
            assert_eq!(run(b"SSH-1.99-x\r\n", step), Reason::BadBanner);
            assert_eq!(run(b"", step), Reason::ClosedEarly);
        }
        let re = Matcher::regex("^220 .*ESMTP").unwrap();
        let mut st = LineState::new(&re);
        assert_eq!(
            st.feed(&re, b"220 mail ESMTP Postfix\r\n", Reason::BadBanner),
            Judged::Done(Reason::Ok)
        );
        // A second line is never looked at.
        let mut st = LineState::new(&re);
        assert_eq!(
            st.feed(&re, b"421 busy\r\n220 mail ESMTP\r\n", Reason::BadBanner),
            Judged::Done(Reason::BadBanner)
        );
        assert_eq!(
            judge_datagram(Some(&Matcher::substring("pong").unwrap()), b"xpongx"),
            Reason::Ok
        );
        assert_eq!(
            judge_datagram(Some(&Matcher::substring("pong").unwrap()), b"ping"),
            Reason::UnexpectedBody
        );
        // Literal text with regex metacharacters is matched literally.
        let lit = Matcher::substring("a.b (c)").unwrap();
        assert_eq!(judge_datagram(Some(&lit), b"xx a.b (c)"), Reason::Ok);
        assert_eq!(
            judge_datagram(Some(&lit), b"xx aXb (c)"),
            Reason::UnexpectedBody
        );
    }
}
