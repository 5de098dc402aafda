//! The control FIFO (`NAME.ctl`): the owner's side.
//!
//! The owner keeps the FIFO open read-write, so writers coming and going never cause an EOF. A
//! command is one line of at most [`PIPE_BUF`] bytes (so concurrent writers never interleave),
//! optionally prefixed with `@TOKEN ` where TOKEN is the bare name of a reply FIFO in the runtime
//! directory. The owner writes the reply there and closes it; it opens only FIFOs inside the
//! runtime directory, never follows a link, and never blocks on a client that does not read.
//!
//! Garbage is never fatal: an overlong line, invalid UTF-8 or control bytes become an
//! [`Incoming::Bad`] that the main loop logs and, when a reply token could be read, answers.
//! The full protocol is in `docs/control.md`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;
use shvars::dir::check_file_name;
use shvars::RuntimeDir;

/// Longest command line in bytes, newline included (POSIX PIPE_BUF on Linux): a write of at
/// most this many bytes to a FIFO is atomic.
pub const PIPE_BUF: usize = 4096;

/// How long the owner tries to hand a reply to a client that does not read it.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the FIFO reader hands to the main loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A well-formed command line.
    Line {
        /// The command text (token removed, trimmed).
        text: String,
        /// The reply FIFO's name, if the client asked for a reply.
        reply: Option<String>,
    },
    /// Bytes that are not a command.
    Bad {
        /// What was wrong.
        why: String,
        /// The reply FIFO's name, if one could be read.
        reply: Option<String>,
    },
}

/// Splits the byte stream of the FIFO into [`Incoming`] items.
#[derive(Debug, Default)]
pub struct LineFramer {
    buf: Vec<u8>,
    discarding: Option<(usize, Option<String>)>,
}

fn token_of(line: &[u8]) -> Result<(Option<String>, &[u8]), String> {
    let Some(rest) = line.strip_prefix(b"@") else {
        return Ok((None, line));
    };
    let end = rest
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    let tok = std::str::from_utf8(&rest[..end])
        .map_err(|_| "reply token is not valid UTF-8".to_owned())?;
    check_file_name("reply FIFO name", tok).map_err(|e| format!("{e}; reply not sent"))?;
    Ok((Some(tok.to_owned()), &rest[end..]))
}

fn parse_line(line: &[u8]) -> Option<Incoming> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let (reply, rest) = match token_of(line) {
        Ok(x) => x,
        Err(why) => return Some(Incoming::Bad { why, reply: None }),
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return Some(Incoming::Bad {
            why: format!(
                "{} bytes that are not valid UTF-8 ignored (commands are text lines)",
                rest.len()
            ),
            reply,
        });
    };
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Some(Incoming::Bad {
            why: format!(
                "a line with control characters ignored ({:?})",
                text.chars().take(40).collect::<String>()
            ),
            reply,
        });
    }
    let text = text.trim();
    if text.is_empty() {
        return Some(Incoming::Bad {
            why: "empty command".to_owned(),
            reply,
        });
    }
    Some(Incoming::Line {
        text: text.to_owned(),
        reply,
    })
}

impl LineFramer {
    /// Feeds bytes read from the FIFO; complete items are appended to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Incoming>) {
        while !data.is_empty() {
            if let Some((n, reply)) = &mut self.discarding {
                match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        *n += i + 1;
                        out.push(Incoming::Bad {
                            why: format!(
                                "a command line of {n} bytes ignored: the limit is {PIPE_BUF} bytes (PIPE_BUF)"
                            ),
                            reply: reply.take(),
                        });
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
                Some(i) if self.buf.len() + i < PIPE_BUF => {
                    self.buf.extend_from_slice(&data[..i]);
                    let line = std::mem::take(&mut self.buf);
                    out.extend(parse_line(&line));
                    data = &data[i + 1..];
                }
                Some(_) | None if self.buf.len() + data.len() >= PIPE_BUF => {
                    // Too long: drop what we have and everything up to the next newline.
                    let reply = token_of(&self.buf).ok().and_then(|(t, _)| t).or_else(|| {
                        if self.buf.is_empty() {
                            token_of(data).ok().and_then(|(t, _)| t)
                        } else {
                            None
                        }
                    });
                    self.discarding = Some((self.buf.len(), reply));
                    self.buf.clear();
                }
                _ => {
                    self.buf.extend_from_slice(data);
                    return;
                }
            }
        }
    }
}

/// The owner's control FIFO. Dropping it removes the FIFO file.
#[derive(Debug)]
pub struct ControlFifo {
    path: PathBuf,
}

impl ControlFifo {
    /// Creates `NAME.ctl` (replacing a leftover of a dead owner: the caller owns the region, so
    /// any FIFO of that name is stale) and opens it read-write.
    ///
    /// `group_writable` opens commands to the file's group (`--group`).
    ///
    /// # Errors
    /// If the FIFO cannot be made or opened; the message names the path.
    pub fn create(path: &Path, group_writable: bool) -> io::Result<(ControlFifo, File)> {
        let ctx = |e: io::Error| {
            io::Error::new(e.kind(), format!("control FIFO {}: {e}", path.display()))
        };
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(ctx(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a directory is in the way",
                )))
            }
            Ok(_) => fs::remove_file(path).map_err(ctx)?,
            Err(_) => {}
        }
        let mode = if group_writable { 0o620 } else { 0o600 };
        nix::unistd::mkfifo(path, Mode::from_bits_truncate(mode)).map_err(|e| ctx(e.into()))?;
        // The umask may have removed the group bit.
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(ctx)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc_flags::O_NOFOLLOW | libc_flags::O_CLOEXEC)
            .open(path)
            .map_err(ctx)?;
        Ok((
            ControlFifo {
                path: path.to_owned(),
            },
            file,
        ))
    }

    /// The FIFO's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the thread that reads commands and hands each to `sink`. It ends when `sink`
    /// returns false (the receiving side is gone).
    pub fn spawn_reader(
        mut file: File,
        sink: impl Fn(Incoming) -> bool + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("ctl-fifo".into())
            .spawn(move || {
                let mut framer = LineFramer::default();
                let mut buf = vec![0u8; 2 * PIPE_BUF];
                let mut out = Vec::new();
                loop {
                    match file.read(&mut buf) {
                        Ok(0) => std::thread::sleep(Duration::from_millis(50)),
                        Ok(n) => {
                            framer.push(&buf[..n], &mut out);
                            for item in out.drain(..) {
                                if !sink(item) {
                                    return;
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
            .expect("spawning the control FIFO reader thread")
    }
}

impl Drop for ControlFifo {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Flags std does not name.
pub(crate) mod libc_flags {
    pub const O_NOFOLLOW: i32 = nix::fcntl::OFlag::O_NOFOLLOW.bits();
    pub const O_CLOEXEC: i32 = nix::fcntl::OFlag::O_CLOEXEC.bits();
    pub const O_NONBLOCK: i32 = nix::fcntl::OFlag::O_NONBLOCK.bits();
}

/// Writes all of `data` to a non-blocking `file`, waiting for room at most until `deadline`.
pub(crate) fn write_all_until(
    file: &mut File,
    mut data: &[u8],
    deadline: Instant,
) -> io::Result<()> {
    while !data.is_empty() {
        match file.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the reader is not reading",
                    ));
                }
                let ms = left.as_millis().min(i32::MAX as u128) as i32;
                let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(ms.min(u16::MAX as i32) as u16));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `text` to the reply FIFO named `token` in `dir`.
///
/// Only a FIFO directly inside the runtime directory is accepted; links are not followed; a
/// client that went away or does not read costs at most [`REPLY_TIMEOUT`].
///
/// # Errors
/// A message saying why the reply could not be delivered.
pub fn send_reply(dir: &RuntimeDir, token: &str, text: &str) -> Result<(), String> {
    let path = dir
        .file_path("reply FIFO name", token)
        .map_err(|e| e.to_string())?;
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc_flags::O_NOFOLLOW | libc_flags::O_NONBLOCK | libc_flags::O_CLOEXEC)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc_errno::ELOOP) => format!("reply FIFO {token} is a symbolic link: refused"),
            Some(libc_errno::ENXIO) => format!("reply FIFO {token}: the client is gone"),
            _ => format!("reply FIFO {token}: {e}"),
        })?;
    let meta = f
        .metadata()
        .map_err(|e| format!("reply FIFO {token}: {e}"))?;
    if !meta.file_type().is_fifo() {
        return Err(format!("reply target {token} is not a FIFO: refused"));
    }
    write_all_until(&mut f, text.as_bytes(), Instant::now() + REPLY_TIMEOUT)
        .map_err(|e| format!("reply FIFO {token}: {e}"))
}

/// Error numbers std does not name.
pub(crate) mod libc_errno {
    pub const ELOOP: i32 = nix::errno::Errno::ELOOP as i32;
    pub const ENXIO: i32 = nix::errno::Errno::ENXIO as i32;
    pub const ENOENT: i32 = nix::errno::Errno::ENOENT as i32;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunks: &[&[u8]]) -> Vec<Incoming> {
        let mut f = LineFramer::default();
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        out
    }

    fn line(t: &str, r: Option<&str>) -> Incoming {
        Incoming::Line {
            text: t.into(),
            reply: r.map(Into::into),
        }
    }

    #[test]
    fn lines_and_tokens() {
        assert_eq!(
            frame(&[b"pau", b"se\n@r1.reply start a 1\n\n"]),
            [line("pause", None), line("start a 1", Some("r1.reply"))]
        );
    }

    #[test]
    fn garbage() {
        let out = frame(&[b"\xff\xfe\x00junk\n", b"init\n"]);
        assert!(matches!(&out[0], Incoming::Bad { why, .. } if why.contains("not valid UTF-8")));
        assert_eq!(out[1], line("init", None));
        let out = frame(&[b"@../../etc/passwd init\n"]);
        assert!(
            matches!(&out[0], Incoming::Bad { why, reply: None } if why.contains("invalid reply FIFO name"))
        );
        let out = frame(&[b"a\x01b\n"]);
        assert!(matches!(&out[0], Incoming::Bad { why, .. } if why.contains("control")));
    }

    #[test]
    fn overlong_lines_are_dropped_whole() {
        let long = vec![b'x'; 10_000];
        let mut first = b"@tok.r ".to_vec();
        first.extend_from_slice(&long[..3000]);
        let out = frame(&[&first, &long[..3000], &long[..3000], b"yy\ninit\n"]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            matches!(&out[0], Incoming::Bad { why, reply: Some(r) } if why.contains("limit is 4096") && r == "tok.r"),
            "{out:?}"
        );
        assert_eq!(out[1], line("init", None));
    }
}
