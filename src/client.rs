//! The client's side of the control protocol and of process discovery: what `shvar` and
//! `spyctl` use to send a command and wait for the answer, and to list processes.
//!
//! A client never hangs: the control FIFO is opened non-blocking (a FIFO with no reader means a
//! dead owner), a full FIFO is an error, and the wait for the reply has a deadline.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;
use serde::Serialize;
use shvars::region::{OpenError, RegionReader, Value, STATE_STOPPED};
use shvars::{NameError, ProcName, RuntimeDir};
use thiserror::Error;

use crate::ctl::{libc_errno, libc_flags, PIPE_BUF};
use crate::state::RunState;

/// Default time to wait for a reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sending a command failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Bad process name.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// The region could not be read.
    #[error(transparent)]
    Region(#[from] OpenError),
    /// The owner is dead.
    #[error("{name} is not running (pid {pid} is gone, its files are stale): start it again, or remove them with `shvar cleanup`")]
    NotRunning {
        /// Process.
        name: String,
        /// Its last pid.
        pid: u32,
    },
    /// The owner exited cleanly.
    #[error("{name} has exited (it was pid {pid}): start it again")]
    Exited {
        /// Process.
        name: String,
        /// Its last pid.
        pid: u32,
    },
    /// No answer in time.
    #[error("no answer from {name} (pid {pid}) within {secs} s: it is alive but not reading commands (stopped with SIGSTOP, or stuck?); try -w with a longer wait, or look at `shvar dump {name}`")]
    NoAnswer {
        /// Process.
        name: String,
        /// Its pid.
        pid: u32,
        /// The wait.
        secs: f64,
    },
    /// The FIFO is full.
    #[error("the control FIFO of {name} (pid {pid}) is full: the process is not reading its commands (stopped or stuck?)")]
    Full {
        /// Process.
        name: String,
        /// Its pid.
        pid: u32,
    },
    /// The line is too long.
    #[error("command is {len} bytes long; a command line takes at most {max} bytes")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The line has a newline or NUL.
    #[error("a command must be one line of text without control characters")]
    BadLine,
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A reply from a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    /// `ok` (true) or `error` (false).
    pub ok: bool,
    /// The first line's message.
    pub message: String,
    /// Further lines.
    pub body: String,
}

impl Reply {
    /// Parses reply text: first line `ok[ MESSAGE]` or `error[ MESSAGE]`, the rest is the body.
    pub fn parse(text: &str) -> Reply {
        let (first, body) = text.split_once('\n').unwrap_or((text, ""));
        let (status, message) = first.split_once(' ').unwrap_or((first, ""));
        Reply {
            ok: status == "ok",
            message: if status == "ok" || status == "error" {
                message.to_owned()
            } else {
                first.to_owned()
            },
            body: body.to_owned(),
        }
    }

    /// The text for a person: message, then body.
    pub fn text(&self) -> String {
        match (self.message.is_empty(), self.body.is_empty()) {
            (true, _) => self.body.trim_end().to_owned(),
            (false, true) => self.message.clone(),
            (false, false) => format!("{}\n{}", self.message, self.body.trim_end()),
        }
    }
}

/// Removes a reply FIFO when dropped.
struct ReplyFifo {
    path: PathBuf,
    file: File,
}

impl Drop for ReplyFifo {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn make_reply_fifo(dir: &RuntimeDir, name: &ProcName) -> Result<(String, ReplyFifo), ClientError> {
    let token = format!(
        "{name}.{}.{}.reply",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.path().join(&token);
    let _ = fs::remove_file(&path);
    let io = |what: &str, source: io::Error| ClientError::Io {
        what: format!("{what} {}", path.display()),
        source,
    };
    // The owner may run as another user: it must be able to write the reply.
    nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o622))
        .map_err(|e| io("cannot make the reply FIFO", e.into()))?;
    let _ = fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o622));
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags::O_NONBLOCK | libc_flags::O_CLOEXEC | libc_flags::O_NOFOLLOW)
        .open(&path);
    match file {
        Ok(file) => Ok((token, ReplyFifo { path, file })),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(io("cannot open the reply FIFO", e))
        }
    }
}

/// Checks that a process exists and runs; returns its pid.
///
/// # Errors
/// [`ClientError`] saying what is wrong with it.
pub fn check_running(dir: &RuntimeDir, name: &ProcName) -> Result<u32, ClientError> {
    let r = match RegionReader::open(dir, name) {
        Ok(r) => r,
        // A damaged region does not stop a live owner from taking commands: its lock still
        // says whether it runs.
        Err(
            e @ (OpenError::Corrupt { .. } | OpenError::TooNew { .. } | OpenError::NotReady { .. }),
        ) => {
            return match shvars::region::owner_alive(&dir.region_path(name)) {
                Some(true) => Ok(0),
                _ => Err(e.into()),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let info = r.info();
    if !r.is_alive() {
        return Err(if info.state == STATE_STOPPED {
            ClientError::Exited {
                name: name.to_string(),
                pid: info.pid,
            }
        } else {
            ClientError::NotRunning {
                name: name.to_string(),
                pid: info.pid,
            }
        });
    }
    Ok(info.pid)
}

fn open_ctl(dir: &RuntimeDir, name: &ProcName, pid: u32) -> Result<File, ClientError> {
    let path = dir.ctl_path(name);
    OpenOptions::new()
        .write(true)
        .custom_flags(libc_flags::O_NONBLOCK | libc_flags::O_CLOEXEC | libc_flags::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc_errno::ENXIO) | Some(libc_errno::ENOENT) => ClientError::NotRunning {
                name: name.to_string(),
                pid,
            },
            _ => ClientError::Io {
                what: format!("cannot open the control FIFO {}", path.display()),
                source: e,
            },
        })
}

fn check_line(line: &str, extra: usize) -> Result<(), ClientError> {
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ClientError::BadLine);
    }
    let len = line.len() + extra + 1;
    if len > PIPE_BUF {
        return Err(ClientError::TooLong {
            len: line.len(),
            max: PIPE_BUF - extra - 1,
        });
    }
    Ok(())
}

fn write_line(ctl: &mut File, data: &[u8], name: &ProcName, pid: u32) -> Result<(), ClientError> {
    use std::io::Write;
    // A line of at most PIPE_BUF bytes goes in whole or not at all.
    match ctl.write(data) {
        Ok(n) if n == data.len() => Ok(()),
        Ok(_) => Err(ClientError::Full {
            name: name.to_string(),
            pid,
        }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(ClientError::Full {
            name: name.to_string(),
            pid,
        }),
        Err(e) => Err(ClientError::Io {
            what: format!("cannot write to the control FIFO of {name}"),
            source: e,
        }),
    }
}

/// Sends `line` to process `name` without waiting for an answer (like `echo line > NAME.ctl`).
///
/// # Errors
/// [`ClientError`] if the process is not there or does not take commands.
pub fn send_nowait(dir: &RuntimeDir, name: &ProcName, line: &str) -> Result<(), ClientError> {
    check_line(line, 0)?;
    let pid = check_running(dir, name)?;
    let mut ctl = open_ctl(dir, name, pid)?;
    write_line(&mut ctl, format!("{line}\n").as_bytes(), name, pid)
}

/// Sends `line` to process `name` and waits up to `timeout` for the reply.
///
/// # Errors
/// [`ClientError`] if the process is not there, does not take commands, or does not answer in
/// time. A refusal by the process is not an error here: it is a [`Reply`] with `ok == false`.
pub fn send(
    dir: &RuntimeDir,
    name: &ProcName,
    line: &str,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let pid = check_running(dir, name)?;
    let (token, mut fifo) = make_reply_fifo(dir, name)?;
    check_line(line, token.len() + 2)?;
    let mut ctl = open_ctl(dir, name, pid)?;
    write_line(&mut ctl, format!("@{token} {line}\n").as_bytes(), name, pid)?;
    drop(ctl);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut got_writer = false;
    loop {
        match fifo.file.read(&mut buf) {
            Ok(0) if got_writer => break,
            Ok(0) => {}
            Ok(n) => {
                got_writer = true;
                out.extend_from_slice(&buf[..n]);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => got_writer = true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ClientError::Io {
                    what: "cannot read the reply".into(),
                    source: e,
                })
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::NoAnswer {
                name: name.to_string(),
                pid,
                secs: timeout.as_secs_f64(),
            });
        }
        // Before the owner opens the FIFO, poll reports nothing; afterwards data or hang-up.
        let ms = left.as_millis().clamp(1, 100) as u16;
        let mut fds = [PollFd::new(fifo.file.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }
    Ok(Reply::parse(&String::from_utf8_lossy(&out)))
}

/// What `shvar list` shows of one process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    /// Name.
    pub name: String,
    /// Pid recorded in its region.
    pub pid: u32,
    /// `alive`, `stopped` (exited cleanly), `stale` (died) or `bad` (unreadable region).
    pub status: &'static str,
    /// Run state label, if it has a `runstate` variable.
    pub runstate: Option<String>,
    /// Seconds since the last heartbeat of its main loop.
    pub heartbeat_age: Option<f64>,
    /// Why the region is unreadable.
    pub error: Option<String>,
}

/// The status of one process.
pub fn process_status(dir: &RuntimeDir, name: &ProcName) -> ProcessStatus {
    match RegionReader::open(dir, name) {
        Err(e) => ProcessStatus {
            name: name.to_string(),
            pid: 0,
            status: "bad",
            runstate: None,
            heartbeat_age: None,
            error: Some(e.to_string()),
        },
        Ok(r) => {
            let (status, age) = liveness(&r);
            let runstate = r.find("runstate").ok().and_then(|v| {
                r.read(&v).ok().map(|val| match val {
                    Value::Int(i) => RunState::from_value(i)
                        .map(|s| s.label().to_owned())
                        .unwrap_or_else(|| i.to_string()),
                    other => other.to_string(),
                })
            });
            ProcessStatus {
                name: name.to_string(),
                pid: r.info().pid,
                status,
                runstate,
                heartbeat_age: Some(age),
                error: None,
            }
        }
    }
}

/// What a process's region says of it: `"alive"` (its owner runs), `"stopped"` (it ended
/// cleanly) or `"stale"` (it died), and the seconds since its last heartbeat.
pub fn liveness(r: &RegionReader) -> (&'static str, f64) {
    let info = r.info();
    let status = if r.is_alive() {
        "alive"
    } else if info.state == STATE_STOPPED {
        "stopped"
    } else {
        "stale"
    };
    let age = shvars::region::now_ns().saturating_sub(info.heartbeat_ns) as f64 / 1e9;
    (status, age)
}

/// The status of every process in `dir`.
///
/// # Errors
/// If the directory cannot be read.
pub fn list(dir: &RuntimeDir) -> Result<Vec<ProcessStatus>, shvars::DirError> {
    Ok(dir
        .process_names()?
        .iter()
        .map(|n| process_status(dir, n))
        .collect())
}
