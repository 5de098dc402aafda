//! What spycat reads, as named on its command line: a local buffer (`NAME`, `/PATH`,
//! `spy:NAME`, `spy:/PATH`) or a farm spy daemon (`remote://HOST[:PORT][?OPTIONS]`, or KLOE's
//! `remote:spy:BUFFER@HOST[:PORT][?OPTIONS]`). This file only parses: it opens nothing.

use std::fmt;

use daqproc::daemons::evgen::parse_bytes;
use daqproc::daemons::spy::proto::Mode;

/// The port of a farm spy daemon when the URI names none.
pub const DEFAULT_PORT: u16 = daqproc::daemons::spy::farm::DEFAULT_PORT as u16;

/// Every accepted form, for error messages and `--help`.
pub const ACCEPTED: &str = "\
accepted sources:
  NAME, /PATH, spy:NAME, spy:/PATH          a local buffer: a bare name in the runtime directory, or an absolute path
  remote://HOST[:PORT][?OPTIONS]            a farm spy daemon (PORT 2115 by default; [IPv6]:PORT for IPv6)
  remote:spy:BUFFER@HOST[:PORT][?OPTIONS]   the same in KLOE's spelling (BUFFER is informational: a farm spy daemon serves one buffer)
  file:PATH                                 a spy data file (written by spycat --save FILE)
OPTIONS, joined by '&': mode=next|latest|push (default next), maxevents=N (or max_events_per_packet=N; default no limit),
  maxbytes=N[K|M|G] (default no limit): how the daemon serves this connection";

/// A source named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A local circular buffer: a bare name in the runtime directory or an absolute path.
    Local(String),
    /// A farm spy daemon.
    Remote(RemoteSpec),
    /// A spy data file.
    File(std::path::PathBuf),
}

impl Default for SourceSpec {
    fn default() -> Self {
        SourceSpec::Local(String::new())
    }
}

/// Where and how to read from a farm spy daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Serving mode asked for.
    pub mode: Mode,
    /// Most events per packet (0: no limit of ours).
    pub max_events: u32,
    /// Most payload bytes per packet (0: no limit of ours).
    pub max_bytes: u32,
    /// The buffer named in KLOE's spelling (informational).
    pub buffer: Option<String>,
    /// The URI as given.
    pub text: String,
}

impl RemoteSpec {
    /// `HOST:PORT` (`[HOST]:PORT` for IPv6), for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Local(name) => f.write_str(name),
            SourceSpec::Remote(r) => f.write_str(&r.text),
            SourceSpec::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// Parses a source (clap value parser: an error is a usage error).
///
/// # Errors
/// What is wrong, followed by [`ACCEPTED`].
pub fn parse(s: &str) -> Result<SourceSpec, String> {
    parse_inner(s).map_err(|e| format!("{e}\n{ACCEPTED}"))
}

fn parse_inner(s: &str) -> Result<SourceSpec, String> {
    let mut spec = parse_form(s)?;
    if let SourceSpec::Remote(r) = &mut spec {
        r.text = s.to_owned();
    }
    Ok(spec)
}

fn parse_form(s: &str) -> Result<SourceSpec, String> {
    if let Some(rest) = s.strip_prefix("file:") {
        if rest.is_empty() {
            return Err("file: names no file".into());
        }
        return Ok(SourceSpec::File(rest.into()));
    }
    if let Some(rest) = s.strip_prefix("spy:") {
        if rest.is_empty() {
            return Err("spy: names no buffer".into());
        }
        return Ok(SourceSpec::Local(rest.to_owned()));
    }
    if let Some(rest) = s.strip_prefix("remote://") {
        let (auth, query) = split_query(rest);
        let auth = auth.strip_suffix('/').unwrap_or(auth);
        if auth.contains('/') {
            return Err(format!(
                "{s:?}: a remote:// source has no path (a farm spy daemon serves one buffer)"
            ));
        }
        return remote(auth, query, None).map(SourceSpec::Remote);
    }
    if let Some(rest) = s.strip_prefix("remote:spy:") {
        let (main, query) = split_query(rest);
        let Some((buffer, auth)) = main.rsplit_once('@') else {
            return Err(format!("{s:?}: no @HOST after the buffer name"));
        };
        if buffer.is_empty() {
            return Err(format!("{s:?}: no buffer name before the @"));
        }
        return remote(auth, query, Some(buffer.to_owned())).map(SourceSpec::Remote);
    }
    if s.starts_with("remote:") {
        return Err(format!(
            "{s:?}: a remote source is remote://HOST[:PORT] or remote:spy:BUFFER@HOST[:PORT]"
        ));
    }
    if let Some((scheme, _)) = s.split_once("://") {
        return Err(format!("{s:?}: unknown kind of source {scheme:?}"));
    }
    if s.is_empty() {
        return Err("the source is empty".into());
    }
    Ok(SourceSpec::Local(s.to_owned()))
}

fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (s, None),
    }
}

fn remote(auth: &str, query: Option<&str>, buffer: Option<String>) -> Result<RemoteSpec, String> {
    let (host, port) = host_port(auth)?;
    let mut spec = RemoteSpec {
        host,
        port,
        mode: Mode::Next,
        max_events: 0,
        max_bytes: 0,
        buffer,
        text: String::new(),
    };
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let Some((key, value)) = kv.split_once('=') else {
            return Err(format!("option {kv:?} has no value (write KEY=VALUE)"));
        };
        match key {
            "mode" => {
                spec.mode = Mode::from_name(value).ok_or_else(|| {
                    format!("mode={value}: the mode is next, latest or push")
                })?;
            }
            "maxevents" | "max_events_per_packet" => {
                spec.max_events = value
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        format!("{key}={value}: not a number of events from 1 to {}", u32::MAX)
                    })?;
            }
            "maxbytes" => {
                spec.max_bytes = parse_bytes(value)
                    .ok()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        format!(
                            "maxbytes={value}: not a byte count from 1 to {} (suffixes K, M, G)",
                            u32::MAX
                        )
                    })?;
            }
            _ => {
                return Err(format!(
                    "unknown option {key:?} (the options are mode, maxevents, max_events_per_packet and maxbytes)"
                ))
            }
        }
    }
    Ok(spec)
}

fn host_port(auth: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = auth.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("{auth:?}: no ']' after the IPv6 address"));
        };
        match after {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(format!("{auth:?}: expected :PORT after ']'")),
            },
        }
    } else {
        match auth.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!(
                    "{auth:?}: write an IPv6 address in brackets: [ADDRESS]:PORT"
                ))
            }
            Some((h, p)) => (h, Some(p)),
            None => (auth, None),
        }
    };
    if host.is_empty() {
        return Err("no host in the address".into());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))?,
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(s: &str) -> RemoteSpec {
        match parse(s).unwrap() {
            SourceSpec::Remote(r) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn local_forms() {
        for (s, want) in [
            ("B_1_1", "B_1_1"),
            ("/tmp/B_1_1", "/tmp/B_1_1"),
            ("spy:B_1_1", "B_1_1"),
            ("spy:/tmp/B_1_1", "/tmp/B_1_1"),
        ] {
            assert_eq!(parse(s).unwrap(), SourceSpec::Local(want.into()), "{s}");
        }
    }

    #[test]
    fn remote_forms() {
        let r = remote("remote://fibm05:23115?mode=latest&maxevents=10&maxbytes=64K");
        assert_eq!(
            (r.host.as_str(), r.port, r.mode, r.max_events, r.max_bytes),
            ("fibm05", 23115, Mode::Latest, 10, 65536)
        );
        let r = remote("remote://fibm05");
        assert_eq!(
            (r.port, r.mode, r.max_events, r.max_bytes),
            (2115, Mode::Next, 0, 0)
        );
        let r = remote("remote://[::1]:99/?mode=push");
        assert_eq!((r.host.as_str(), r.port, r.mode), ("::1", 99, Mode::Push));
        assert_eq!(r.address(), "[::1]:99");
        let r = remote("remote:spy:/tmp/B_L3BHA_1_1@fibm05?max_events_per_packet=10");
        assert_eq!(
            (r.host.as_str(), r.port, r.max_events, r.buffer.as_deref()),
            ("fibm05", 2115, 10, Some("/tmp/B_L3BHA_1_1"))
        );
        assert_eq!(remote("remote:spy:B@h:7").port, 7);
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        for (s, says) in [
            ("remote://h:0", "port \"0\""),
            ("remote://h:http", "port \"http\""),
            ("remote://:2115", "no host"),
            ("remote://h?mode=fast", "next, latest or push"),
            ("remote://h?maxevents=0", "maxevents=0"),
            ("remote://h?maxbytes=5G", "maxbytes=5G"),
            ("remote://h?colour=red", "unknown option \"colour\""),
            ("remote://h?mode", "has no value"),
            ("remote://h/B_1_1", "no path"),
            ("remote://::1:2115", "brackets"),
            ("remote:spy:B_1_1", "no @HOST"),
            ("remote:spy:@h", "no buffer name"),
            ("remote:h:2115", "remote://HOST"),
            ("http://h", "unknown kind of source \"http\""),
            ("spy:", "names no buffer"),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(says), "{s}: {e}");
            assert!(e.contains("accepted sources:"), "{s}: {e}");
        }
    }
}
