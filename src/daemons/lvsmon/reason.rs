//! Why a check failed, by name (as LVSmon and HAProxy report it), and a small fixed buffer to
//! write the text into without allocating.

use std::fmt;

use nix::errno::Errno;

/// The outcome of one probe: `Ok`, or the named reason it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reason {
    /// The probe succeeded.
    #[default]
    Ok,
    /// The target refused the connection (TCP RST to the SYN; for UDP an ICMP port unreachable).
    Refused,
    /// No answer to the connection attempt within the connect timeout.
    ConnectTimeout,
    /// Connected, but no (complete) answer within the receive timeout.
    RecvTimeout,
    /// An HTTP answer whose status code is not one of those expected.
    BadStatus(u16),
    /// The answer is not an HTTP response.
    BadResponse,
    /// The banner (first line) does not match.
    BadBanner,
    /// The body (or the UDP answer) does not contain what is expected.
    UnexpectedBody,
    /// The connection was reset.
    Reset,
    /// The target closed the connection before it answered completely.
    ClosedEarly,
    /// No route to the target host or network.
    NoRoute,
    /// The target's host name does not resolve.
    Dns,
    /// The framework process does not run.
    ProcessDead,
    /// The framework process runs but its main loop has not beaten within the limit.
    HeartbeatStale,
    /// The framework process's variable is outside the condition.
    OutOfRange,
    /// The framework process has no such numeric variable.
    NoVariable,
    /// Any other socket error (the errno).
    Socket(i32),
}

impl Reason {
    /// The reason for a socket error.
    pub fn from_io(e: &std::io::Error) -> Reason {
        match e.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ECONNREFUSED) => Reason::Refused,
            Some(Errno::ETIMEDOUT) => Reason::ConnectTimeout,
            Some(Errno::ECONNRESET) | Some(Errno::EPIPE) => Reason::Reset,
            Some(Errno::EHOSTUNREACH) | Some(Errno::ENETUNREACH) => Reason::NoRoute,
            Some(e) => Reason::Socket(e as i32),
            None => Reason::Socket(0),
        }
    }

    /// Whether this is a success.
    pub fn is_ok(self) -> bool {
        self == Reason::Ok
    }
}

/// The reason as operators read it (`connection refused`, `bad HTTP status 404`). Success is
/// the empty text.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Ok => Ok(()),
            Reason::Refused => f.write_str("connection refused"),
            Reason::ConnectTimeout => f.write_str("connect timeout"),
            Reason::RecvTimeout => f.write_str("receive timeout"),
            Reason::BadStatus(c) => write!(f, "bad HTTP status {c}"),
            Reason::BadResponse => f.write_str("bad response (not HTTP)"),
            Reason::BadBanner => f.write_str("bad banner"),
            Reason::UnexpectedBody => f.write_str("unexpected body"),
            Reason::Reset => f.write_str("connection reset"),
            Reason::ClosedEarly => f.write_str("closed mid-response"),
            Reason::NoRoute => f.write_str("no route to host"),
            Reason::Dns => f.write_str("DNS failure"),
            Reason::ProcessDead => f.write_str("framework process dead"),
            Reason::HeartbeatStale => f.write_str("heartbeat stale"),
            Reason::OutOfRange => f.write_str("variable out of range"),
            Reason::NoVariable => f.write_str("no such variable"),
            Reason::Socket(e) => write!(f, "socket error: {}", Errno::from_raw(*e).desc()),
        }
    }
}

/// A fixed buffer of text for messages written on a loop that must not allocate. Text past its
/// capacity is cut (at a character boundary).
#[derive(Clone, Copy)]
pub struct SmallText {
    buf: [u8; 120],
    len: u8,
}

impl Default for SmallText {
    fn default() -> Self {
        SmallText {
            buf: [0; 120],
            len: 0,
        }
    }
}

impl SmallText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only whole characters are ever copied in.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    /// Empties it.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl fmt::Debug for SmallText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for SmallText {
    fn eq(&self, o: &Self) -> bool {
        self.as_str() == o.as_str()
    }
}

impl fmt::Write for SmallText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len as usize;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        let at = self.len as usize;
        self.buf[at..at + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n as u8;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn texts_and_cut() {
        assert_eq!(Reason::BadStatus(404).to_string(), "bad HTTP status 404");
        assert_eq!(Reason::Ok.to_string(), "");
        let e = std::io::Error::from_raw_os_error(Errno::ECONNREFUSED as i32);
        assert_eq!(Reason::from_io(&e), Reason::Refused);
        let mut t = SmallText::default();
        for _ in 0..50 {
            let _ = write!(t, "é{}", 1);
        }
        assert!(t.as_str().len() <= 120);
        assert!(t.as_str().starts_with("é1é1"));
    }
}
