//! The typed answer to a command: [`Reply::Ok`] with its text, or [`Reply::Error`] with a
//! [`Failure`]: what kind of failure ([`ErrorKind`]) and a message for people.
//!
//! Owners build replies from their handlers' outcomes; clients get them decoded by
//! [`super::wire::ReplyDecoder`]. Nothing in the framework re-parses a reply's text to learn
//! whether it succeeded.

use std::fmt;

use serde::Serialize;

/// What kind of failure an error reply reports. The wire name is [`ErrorKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Wrong arguments: the text is the usage.
    Usage,
    /// No such command: the text lists the known ones.
    Unknown,
    /// Not allowed in the current run state: the text names it and the allowed ones.
    State,
    /// Another state change is still running.
    Busy,
    /// The process refused (a `set` out of range, a read-only variable, a precondition).
    Refused,
    /// The command ran and failed.
    Failed,
    /// The command did not finish within its time limit; it may still be running.
    Timeout,
    /// The command was dropped before it finished (the process is exiting).
    Abandoned,
    /// The caller may not run this command (its uid is not the owner's, root or `--group`).
    Denied,
    /// The request is not a command line (too long, not UTF-8, control characters, quoting).
    BadRequest,
    /// The handler failed in an unexpected way (a bug); the process goes on serving.
    Internal,
}

impl ErrorKind {
    /// Every kind, in wire-name order of the documentation.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::Usage,
        ErrorKind::Unknown,
        ErrorKind::State,
        ErrorKind::Busy,
        ErrorKind::Refused,
        ErrorKind::Failed,
        ErrorKind::Timeout,
        ErrorKind::Abandoned,
        ErrorKind::Denied,
        ErrorKind::BadRequest,
        ErrorKind::Internal,
    ];

    /// The name on the wire (`usage`, `state`, `bad-request`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::Unknown => "unknown",
            ErrorKind::State => "state",
            ErrorKind::Busy => "busy",
            ErrorKind::Refused => "refused",
            ErrorKind::Failed => "failed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Abandoned => "abandoned",
            ErrorKind::Denied => "denied",
            ErrorKind::BadRequest => "bad-request",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind of a wire name.
    pub fn from_wire(s: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a command failed: a kind and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The message, without the command's name (the caller knows what it sent).
    pub text: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, text: impl Into<String>) -> Failure {
        Failure {
            kind,
            text: text.into(),
        }
    }

    /// The command ran and failed.
    pub fn failed(text: impl Into<String>) -> Failure {
        Failure::new(ErrorKind::Failed, text)
    }

    /// The process refused.
    pub fn refused(text: impl Into<String>) -> Failure {
        Failure::new(ErrorKind::Refused, text)
    }

    /// Wrong arguments; `usage` is the usage line without `usage: `.
    pub fn usage(usage: impl fmt::Display) -> Failure {
        Failure::new(ErrorKind::Usage, format!("usage: {usage}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Failure {}

impl From<String> for Failure {
    fn from(text: String) -> Failure {
        Failure::failed(text)
    }
}

impl From<&str> for Failure {
    fn from(text: &str) -> Failure {
        Failure::failed(text)
    }
}

impl From<shvars::region::SetError> for Failure {
    fn from(e: shvars::region::SetError) -> Failure {
        Failure::refused(e.to_string())
    }
}

/// The answer to one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Reply {
    /// Success, with its text (may be empty, may have several lines).
    Ok {
        /// The text.
        text: String,
    },
    /// Failure.
    Error(Failure),
}

impl Reply {
    /// A success.
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply::Ok { text: text.into() }
    }

    /// A failure.
    pub fn error(kind: ErrorKind, text: impl Into<String>) -> Reply {
        Reply::Error(Failure::new(kind, text))
    }

    /// Whether it is a success.
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Ok { .. })
    }

    /// The text for people (the message of a failure).
    pub fn text(&self) -> &str {
        match self {
            Reply::Ok { text } => text,
            Reply::Error(f) => &f.text,
        }
    }

    /// The kind of a failure, `None` for a success.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Reply::Ok { .. } => None,
            Reply::Error(f) => Some(f.kind),
        }
    }
}

impl From<Result<String, Failure>> for Reply {
    fn from(r: Result<String, Failure>) -> Reply {
        match r {
            Ok(text) => Reply::Ok { text },
            Err(f) => Reply::Error(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_roundtrip() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_wire(k.as_str()), Some(k));
        }
        assert_eq!(ErrorKind::from_wire("nope"), None);
    }
}
