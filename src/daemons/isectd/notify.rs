//! The `NOTIFY_SOCKET` isectd gives its children (systemd's `sd_notify(3)` protocol): a Unix
//! datagram socket in isectd's own directory. A child sends `READY=1` when it is ready (every
//! framework process does, once it serves commands), `STATUS=...` (a framework process: its run
//! state), `STOPPING=1`. The sender is known from the kernel (`SO_PASSCRED`): a datagram claiming
//! another pid is impossible.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, UnixAddr};

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The sending process (from the kernel).
    pub pid: i32,
    /// `READY=1` was in it.
    pub ready: bool,
    /// `STATUS=...`, if given.
    pub status: Option<String>,
    /// `STOPPING=1` was in it.
    pub stopping: bool,
}

/// The socket.
#[derive(Debug)]
pub struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds `path` (removing a leftover of ours first).
    ///
    /// # Errors
    /// If it cannot be bound (a path longer than 107 bytes, for one).
    pub fn bind(path: &Path) -> io::Result<NotifySocket> {
        if path.as_os_str().len() > 107 {
            return Err(io::Error::other(format!(
                "{}: too long for a Unix socket (at most 107 bytes): use a shorter --dir",
                path.display()
            )));
        }
        crate::support::files::remove_leftover(path, "notify socket")?;
        let sock = UnixDatagram::bind(path).map_err(|e| {
            io::Error::new(e.kind(), format!("notify socket {}: {e}", path.display()))
        })?;
        sock.set_nonblocking(true)?;
        setsockopt(&sock, sockopt::PassCred, &true)?;
        Ok(NotifySocket {
            sock,
            path: path.to_owned(),
        })
    }

    /// Its path, for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its descriptor, for the event loop.
    pub fn fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }

    /// Every notification waiting (until the socket would block).
    pub fn drain(&self) -> Vec<Note> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..1024 {
            let mut iov = [io::IoSliceMut::new(&mut buf)];
            let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
            let r = recvmsg::<UnixAddr>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            );
            let Ok(msg) = r else { break };
            let mut pid = 0;
            if let Ok(cms) = msg.cmsgs() {
                for c in cms {
                    if let ControlMessageOwned::ScmCredentials(cr) = c {
                        pid = cr.pid();
                    }
                }
            }
            let n = msg.bytes;
            if pid > 0 {
                out.push(parse(pid, &buf[..n]));
            }
        }
        out
    }
}

/// Parses one datagram of `pid`.
pub fn parse(pid: i32, data: &[u8]) -> Note {
    let text = String::from_utf8_lossy(data);
    let mut n = Note {
        pid,
        ready: false,
        status: None,
        stopping: false,
    };
    for line in text.lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => n.ready = true,
            Some(("STOPPING", "1")) => n.stopping = true,
            Some(("STATUS", s)) => n.status = Some(s.chars().take(128).collect()),
            _ => {}
        }
    }
    n
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_their_sender() {
        let d = tempfile::tempdir().unwrap();
        let s = NotifySocket::bind(&d.path().join("n.sock")).unwrap();
        let c = UnixDatagram::unbound().unwrap();
        c.send_to(b"STATUS=INIT_STATE\nREADY=1\n", s.path())
            .unwrap();
        let notes = s.drain();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].pid, std::process::id() as i32);
        assert!(notes[0].ready);
        assert_eq!(notes[0].status.as_deref(), Some("INIT_STATE"));
        assert!(s.drain().is_empty());
    }
}
