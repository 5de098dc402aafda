//! The two links a transaction connection can be: TCP (clients, remote workers, the seed's
//! `port` and `req_port`) or the Unix socket `NAME.xact` in the runtime directory that workers
//! isectd starts on its own machine log in on (no TCP stack on two of a transaction's four
//! hops). The frames are the same on both.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The environment variable that gives a worker isectd's Unix socket.
pub const SOCKET_ENV: &str = "ISD_SOCKET";

/// The environment variable that gives a worker isectd started its `worker_busy_poll_us`:
/// microseconds to poll for the next request after each reply before sleeping.
pub const BUSY_POLL_ENV: &str = "ISD_BUSY_POLL_US";

/// The longest busy polling isectd and its workers accept (`busy_poll_us`,
/// `worker_busy_poll_us`), in microseconds.
pub const MAX_BUSY_POLL_US: u64 = 100_000;

/// A connected stream of either kind.
#[derive(Debug)]
pub enum XStream {
    /// TCP.
    Tcp(TcpStream),
    /// The local Unix socket.
    Unix(UnixStream),
}

impl XStream {
    /// Connects over TCP (no delay: frames are small and answered at once).
    ///
    /// # Errors
    /// As `connect`.
    pub fn tcp(addr: impl std::net::ToSocketAddrs) -> io::Result<XStream> {
        let s = TcpStream::connect(addr)?;
        let _ = s.set_nodelay(true);
        Ok(XStream::Tcp(s))
    }

    /// Connects to a Unix socket.
    ///
    /// # Errors
    /// As `connect`.
    pub fn unix(path: &Path) -> io::Result<XStream> {
        Ok(XStream::Unix(UnixStream::connect(path)?))
    }

    /// Non-blocking or not.
    ///
    /// # Errors
    /// As `fcntl`.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            XStream::Tcp(s) => s.set_nonblocking(on),
            XStream::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// The read timeout.
    ///
    /// # Errors
    /// As `setsockopt`.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            XStream::Tcp(s) => s.set_read_timeout(t),
            XStream::Unix(s) => s.set_read_timeout(t),
        }
    }

    /// Shuts down the sending side.
    ///
    /// # Errors
    /// As `shutdown`.
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            XStream::Tcp(s) => s.shutdown(Shutdown::Write),
            XStream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }

    /// The peer, for messages and tables: `IP:PORT`, or `local` for the Unix socket.
    pub fn peer(&self) -> String {
        match self {
            XStream::Tcp(s) => s.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
            XStream::Unix(_) => "local".to_owned(),
        }
    }

    /// `tcp` or `unix`.
    pub fn kind(&self) -> &'static str {
        match self {
            XStream::Tcp(_) => "tcp",
            XStream::Unix(_) => "unix",
        }
    }

    /// Reads what is there without waiting: `Ok(None)` when nothing is.
    ///
    /// # Errors
    /// As `recv`.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        use nix::sys::socket::{recv, MsgFlags};
        match recv(self.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => Ok(Some(n)),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads into `buf`, first polling without sleeping for up to `spin` (yielding the CPU
    /// between polls; zero: a plain blocking read): data that comes within it is taken without
    /// the wake-up a sleeping reader costs. A read timeout set on the socket applies to the
    /// blocking read after the polling.
    ///
    /// # Errors
    /// As `read`.
    pub fn read_polling(&mut self, buf: &mut [u8], spin: Duration) -> io::Result<usize> {
        if !spin.is_zero() {
            // The clock is read only once the first look found nothing.
            let mut since: Option<std::time::Instant> = None;
            loop {
                if let Some(n) = self.try_read(buf)? {
                    return Ok(n);
                }
                if since.get_or_insert_with(std::time::Instant::now).elapsed() >= spin {
                    break;
                }
                std::thread::yield_now();
            }
        }
        self.read(buf)
    }
}

impl Read for XStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            XStream::Tcp(s) => s.read(buf),
            XStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for XStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            XStream::Tcp(s) => s.write(buf),
            XStream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for XStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            XStream::Tcp(s) => s.as_raw_fd(),
            XStream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// isectd's Unix socket (`NAME.xact`), removed when dropped.
#[derive(Debug)]
pub struct UnixSocket {
    path: std::path::PathBuf,
    /// The listener (non-blocking).
    pub listener: std::os::unix::net::UnixListener,
}

impl UnixSocket {
    /// Binds it at `path` (mode 0600: only isectd's user's programs log in there, with a token
    /// anyway), after removing a leftover of a dead isectd; a line about a leftover of another
    /// user's that root removed.
    ///
    /// # Errors
    /// Something is in the way that is not ours to remove (a directory, another user's file),
    /// or the socket cannot be made.
    pub fn bind(path: &Path) -> io::Result<(UnixSocket, Option<String>)> {
        use std::os::unix::fs::PermissionsExt;
        let note = crate::support::files::remove_leftover(path, "worker socket")?;
        let err = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        // Bound in a private directory (mode 0700), made 0600 there, then moved into place:
        // the socket is never reachable with the umask's mode, not even for an instant.
        // (tempfile makes it under a fresh random name, and removes it when dropped.)
        let private = tempfile::Builder::new()
            .prefix(".xact-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(path.parent().unwrap_or(Path::new(".")))
            .map_err(err)?;
        let inner = private.path().join("s");
        let listener = std::os::unix::net::UnixListener::bind(&inner)
            .and_then(|l| {
                std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
                std::fs::rename(&inner, path)?;
                Ok(l)
            })
            .map_err(err)?;
        let s = UnixSocket {
            path: path.to_owned(),
            listener,
        };
        s.listener.set_nonblocking(true)?;
        Ok((s, note))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
