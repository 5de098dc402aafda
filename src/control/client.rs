//! The client's side of the control protocol: what `shvar`, `spyctl` and the daemons that drive
//! other processes use to send a command and get its [`Reply`].
//!
//! A command with an answer goes over the process's control socket `NAME.sock`: the client
//! checks that the socket is a socket of the region's owner and, once connected, that the peer
//! is the very process that owns the region (its pid and uid, from `SO_PEERCRED`), so a reply
//! cannot come from anyone else. A command without an answer (`--no-wait`, like
//! `echo pause > NAME.ctl`) goes into the control FIFO, opened without blocking.
//!
//! A client never hangs: connecting and writing never block (a full backlog or FIFO is an
//! error), and the wait for the reply has a deadline.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shvars::region::OpenError;
use shvars::{NameError, ProcName, RuntimeDir};
use thiserror::Error;

use super::reply::Reply;
use super::wire::{encode_request, BadReply, ReplyDecoder, RequestError};
use crate::observe::liveness::{self, Liveness};
use crate::support::files::{check_fifo, check_socket, user_text, NONBLOCK_NOFOLLOW};

pub use crate::observe::liveness::{list, process_status, ProcessStatus};

/// Default time to wait for a reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sending a command failed (a refusal by the process is not an error: it is a [`Reply`]).
#[derive(Debug, Error)]
pub enum ClientError {
    /// Bad process name.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// The region could not be read.
    #[error(transparent)]
    Region(#[from] OpenError),
    /// The owner is dead.
    #[error("{name} is not running (pid {pid} is gone, its files are stale): {hint}, or remove its files with `shvar cleanup`")]
    NotRunning {
        /// Process.
        name: String,
        /// Its last pid.
        pid: u32,
        /// How to start it again.
        hint: String,
    },
    /// The owner exited cleanly.
    #[error("{name} has exited (it was pid {pid}): {hint}")]
    Exited {
        /// Process.
        name: String,
        /// Its last pid.
        pid: u32,
        /// How to start it again.
        hint: String,
    },
    /// No answer in time.
    #[error("no answer from {name} (pid {pid}) within {secs} s: it is alive but not answering (stopped with SIGSTOP, or a command blocks it?); try -w with a longer wait, or look at `shvar dump {name}`")]
    NoAnswer {
        /// Process.
        name: String,
        /// Its pid.
        pid: u32,
        /// The wait.
        secs: f64,
    },
    /// The FIFO or the socket's backlog is full.
    #[error("{name} (pid {pid}) is not taking commands: its {what} is full (stopped with SIGSTOP, or stuck?)")]
    Full {
        /// Process.
        name: String,
        /// Its pid.
        pid: u32,
        /// `control FIFO` or `control socket`.
        what: &'static str,
    },
    /// The process has no control socket (yet).
    #[error("{name} (pid {pid}) has no control socket {}: it is still starting, or it was built before commands had answers (send with --no-wait through its FIFO)", path.display())]
    NoSocket {
        /// Process.
        name: String,
        /// Its pid.
        pid: u32,
        /// The socket's path.
        path: PathBuf,
    },
    /// A runtime file is not what it must be (planted, damaged).
    #[error("{0}")]
    BadFile(String),
    /// The peer on the socket is not the process that owns the region.
    #[error("{path} is served by pid {peer_pid} ({}), not by {name}'s owner pid {pid} ({}): refusing its answers (a socket planted by another user?)", user_text(*peer_uid), user_text(*uid), path = path.display())]
    Imposter {
        /// Process.
        name: String,
        /// The owner's pid, from the region.
        pid: u32,
        /// The owner's uid, from the region file.
        uid: u32,
        /// Who answered instead.
        peer_pid: i32,
        /// Their uid.
        peer_uid: u32,
        /// The socket.
        path: PathBuf,
    },
    /// The line cannot be sent.
    #[error(transparent)]
    BadLine(#[from] RequestError),
    /// The process closed the connection without answering.
    #[error("{name} (pid {pid}) closed the connection without answering (it is exiting, or it refused the connection: see its event log)")]
    Closed {
        /// Process.
        name: String,
        /// Its pid.
        pid: u32,
    },
    /// The process answered something that is not a reply.
    #[error("{name} (pid {pid}): {source}")]
    Protocol {
        /// Process.
        name: String,
        /// Its pid.
        pid: u32,
        /// What was wrong.
        #[source]
        source: BadReply,
    },
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

/// The owner of a running process, as its region says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Its pid (0 if the region is unreadable but locked by a live owner).
    pub pid: u32,
    /// The uid its files belong to.
    pub uid: u32,
}

/// Checks that a process exists and runs; returns its owner.
///
/// # Errors
/// [`ClientError`] saying what is wrong with it.
pub fn check_running(dir: &RuntimeDir, name: &ProcName) -> Result<Owner, ClientError> {
    let st = liveness::probe(dir, name)?;
    match st.liveness {
        Liveness::Alive => Ok(Owner {
            pid: st.pid,
            uid: st.uid,
        }),
        Liveness::Stopped => Err(ClientError::Exited {
            name: name.to_string(),
            pid: st.pid,
            hint: start_hint(dir, name),
        }),
        _ => Err(ClientError::NotRunning {
            name: name.to_string(),
            pid: st.pid,
            hint: start_hint(dir, name),
        }),
    }
}

fn start_hint(dir: &RuntimeDir, name: &ProcName) -> String {
    liveness::how_to_start(dir, name).unwrap_or_else(|| "start it again".to_owned())
}

/// Sends `line` to process `name` without waiting for an answer (like `echo line > NAME.ctl`).
///
/// # Errors
/// [`ClientError`] if the process is not there, does not take commands, or its FIFO is not a
/// FIFO of its owner.
pub fn send_nowait(dir: &RuntimeDir, name: &ProcName, line: &str) -> Result<(), ClientError> {
    let data = encode_request(line)?;
    let owner = check_running(dir, name)?;
    let path = dir.ctl_path(name);
    let mut ctl: File = OpenOptions::new()
        .write(true)
        .custom_flags(NONBLOCK_NOFOLLOW)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(c)
                if c == nix::errno::Errno::ENXIO as i32
                    || c == nix::errno::Errno::ENOENT as i32 =>
            {
                ClientError::NotRunning {
                    name: name.to_string(),
                    pid: owner.pid,
                    hint: start_hint(dir, name),
                }
            }
            Some(c) if c == nix::errno::Errno::ELOOP as i32 => ClientError::BadFile(format!(
                "{} is a symbolic link: refusing to write commands through it",
                path.display()
            )),
            _ => ClientError::Io {
                what: format!("cannot open the control FIFO {}", path.display()),
                source: e,
            },
        })?;
    check_fifo(&path, &ctl, owner.uid).map_err(ClientError::BadFile)?;
    // A line of at most PIPE_BUF bytes goes in whole or not at all.
    match ctl.write(&data) {
        Ok(n) if n == data.len() => Ok(()),
        Ok(_) => Err(ClientError::Full {
            name: name.to_string(),
            pid: owner.pid,
            what: "control FIFO",
        }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(ClientError::Full {
            name: name.to_string(),
            pid: owner.pid,
            what: "control FIFO",
        }),
        Err(e) => Err(ClientError::Io {
            what: format!("cannot write to the control FIFO of {name}"),
            source: e,
        }),
    }
}

/// Sends `line` to process `name` and waits up to `timeout` for the reply.
///
/// # Errors
/// [`ClientError`] if the process is not there, does not take commands, or does not answer in
/// time. A refusal by the process is not an error here: it is a [`Reply::Error`].
pub fn send(
    dir: &RuntimeDir,
    name: &ProcName,
    line: &str,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut c = Connection::open(dir, name)?;
    c.call_until(line, deadline, timeout)
}

/// A connection to one process's control socket: several commands, one after the other.
#[derive(Debug)]
pub struct Connection {
    name: ProcName,
    owner: Owner,
    stream: UnixStream,
    decoder: ReplyDecoder,
}

impl Connection {
    /// Connects to the control socket of `name`, checking that the socket belongs to the
    /// region's owner and that the peer is that very process.
    ///
    /// # Errors
    /// [`ClientError`] if the process does not run or is not who it should be.
    pub fn open(dir: &RuntimeDir, name: &ProcName) -> Result<Connection, ClientError> {
        let owner = check_running(dir, name)?;
        let path = dir.sock_path(name);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ClientError::NoSocket {
                    name: name.to_string(),
                    pid: owner.pid,
                    path,
                })
            }
            _ => check_socket(&path, owner.uid).map_err(ClientError::BadFile)?,
        }
        let stream = connect_nonblocking(&path).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => ClientError::Full {
                name: name.to_string(),
                pid: owner.pid,
                what: "control socket",
            },
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => ClientError::NotRunning {
                name: name.to_string(),
                pid: owner.pid,
                hint: start_hint(dir, name),
            },
            _ => ClientError::Io {
                what: format!("cannot connect to {}", path.display()),
                source: e,
            },
        })?;
        let cred =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .map_err(|e| ClientError::Io {
                    what: format!("cannot learn who serves {}", path.display()),
                    source: e.into(),
                })?;
        let pid_ok = owner.pid == 0 || cred.pid() == owner.pid as i32;
        if !pid_ok || cred.uid() != owner.uid {
            return Err(ClientError::Imposter {
                name: name.to_string(),
                pid: owner.pid,
                uid: owner.uid,
                peer_pid: cred.pid(),
                peer_uid: cred.uid(),
                path,
            });
        }
        Ok(Connection {
            name: name.clone(),
            owner,
            stream,
            decoder: ReplyDecoder::default(),
        })
    }

    /// The process's owner.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// Sends `line` and waits up to `timeout` for its reply.
    ///
    /// # Errors
    /// As [`send`].
    pub fn call(&mut self, line: &str, timeout: Duration) -> Result<Reply, ClientError> {
        self.call_until(line, Instant::now() + timeout, timeout)
    }

    fn call_until(
        &mut self,
        line: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let data = encode_request(line)?;
        let no_answer = || ClientError::NoAnswer {
            name: self.name.to_string(),
            pid: self.owner.pid,
            secs: timeout.as_secs_f64(),
        };
        let io_err = |what: &str, source| ClientError::Io {
            what: format!("{what} {}", self.name),
            source,
        };
        let mut sent = 0;
        while sent < data.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(no_answer());
            }
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|e| io_err("cannot talk to", e))?;
            match self.stream.write(&data[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(no_answer())
                }
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Err(ClientError::Closed {
                        name: self.name.to_string(),
                        pid: self.owner.pid,
                    })
                }
                Err(e) => return Err(io_err("cannot send the command to", e)),
            }
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.decoder.next_reply() {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(source) => {
                    return Err(ClientError::Protocol {
                        name: self.name.to_string(),
                        pid: self.owner.pid,
                        source,
                    })
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(no_answer());
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| io_err("cannot talk to", e))?;
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(ClientError::Closed {
                        name: self.name.to_string(),
                        pid: self.owner.pid,
                    })
                }
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(no_answer())
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(ClientError::Closed {
                        name: self.name.to_string(),
                        pid: self.owner.pid,
                    })
                }
                Err(e) => return Err(io_err("cannot read the reply of", e)),
            }
        }
    }
}

/// Connects without waiting for room in the backlog: a full backlog is `WouldBlock`.
fn connect_nonblocking(path: &std::path::Path) -> io::Result<UnixStream> {
    let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    let addr = socket2::SockAddr::unix(path)?;
    match sock.connect(&addr) {
        Ok(()) => {}
        // A Unix stream connect completes at once or not at all; EINPROGRESS does not happen,
        // but treat it as the backlog being full.
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {
            return Err(io::ErrorKind::WouldBlock.into())
        }
        Err(e) => return Err(e),
    }
    sock.set_nonblocking(false)?;
    Ok(UnixStream::from(std::os::fd::OwnedFd::from(sock)))
}

/// The uid that region files of `name` belong to, for checks against planted files.
pub fn region_uid(dir: &RuntimeDir, name: &ProcName) -> Option<u32> {
    std::fs::symlink_metadata(dir.region_path(name))
        .ok()
        .map(|m| m.uid())
}
