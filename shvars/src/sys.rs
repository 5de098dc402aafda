//! Process-level system calls the framework needs and safe Rust does not offer: detaching a
//! daemon from its terminal while telling the parent when it is ready; pidfds, which let a
//! supervisor watch and signal processes that are not its children without pid-reuse races.
//!
//! `daemonize` must never be used once the process has more than one thread: `fork` copies only the calling
//! thread, so locks held by others would stay locked forever in the child.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::unistd::{dup2, fork, pipe, setsid, ForkResult};

/// The child's end of a detach: tells the waiting parent whether start-up worked.
#[derive(Debug)]
pub struct Detached {
    ready: Option<File>,
}

impl Detached {
    /// Tells the parent that start-up worked; it exits 0.
    pub fn ready(&mut self) {
        if let Some(mut f) = self.ready.take() {
            let _ = f.write_all(b"ok\n");
        }
    }

    /// Tells the parent that start-up failed with `msg`; it prints it and exits 1.
    pub fn failed(&mut self, msg: &str) {
        if let Some(mut f) = self.ready.take() {
            let _ = f.write_all(format!("error {msg}\n").as_bytes());
        }
    }
}

fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(usize::MAX)
}

/// Detaches the process: forks, the parent waits until the child calls [`Detached::ready`] or
/// [`Detached::failed`] (or dies) and exits with 0 or 1; the child starts a new session, reads
/// stdin from `/dev/null` and writes stdout and stderr to `logf`, the log file the caller opened
/// (its path `log` is for messages).
///
/// # Errors
/// If the process already runs more than one thread, or a system call fails.
pub fn daemonize(logf: File, log: &Path) -> io::Result<Detached> {
    if thread_count() != 1 {
        return Err(io::Error::other(
            "cannot detach: the process already runs several threads (detach first)",
        ));
    }
    let devnull = File::open("/dev/null")?;
    let (rd, wr): (OwnedFd, OwnedFd) = pipe()?;
    // SAFETY: the process has exactly one thread (checked above), so the child is a complete
    // copy and may go on running arbitrary Rust code, including allocation.
    match unsafe { fork() }? {
        ForkResult::Parent { .. } => {
            drop(wr);
            let mut msg = String::new();
            let _ = File::from(rd).read_to_string(&mut msg);
            if msg.starts_with("ok") {
                std::process::exit(0);
            }
            let msg = msg.strip_prefix("error ").unwrap_or(&msg).trim();
            if msg.is_empty() {
                eprintln!(
                    "error: the detached process died during start-up; see {}",
                    log.display()
                );
            } else {
                eprintln!("error: {msg}");
            }
            std::process::exit(1);
        }
        ForkResult::Child => {
            drop(rd);
            setsid()?;
            dup2(devnull.as_raw_fd(), 0)?;
            dup2(logf.as_raw_fd(), 1)?;
            dup2(logf.as_raw_fd(), 2)?;
            Ok(Detached {
                ready: Some(File::from(wr)),
            })
        }
    }
}

/// Restores the default action of SIGPIPE, so a command-line tool whose output goes to a closed
/// pipe (`shvar watch ... | head`) ends quietly like any Unix tool instead of failing on EPIPE.
pub fn default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installing SIG_DFL runs no Rust code in signal context; it only changes what the
    // kernel does on SIGPIPE. No other code of ours relies on SIGPIPE being ignored.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// A descriptor that refers to process `pid` itself, not to its number (`pidfd_open(2)`, Linux
/// 5.3): it becomes readable when the process exits, and a signal sent through it
/// ([`pidfd_send_signal`]) can never reach another process that later got the same pid. For a
/// supervisor watching processes that are not its children (it cannot `waitpid` them).
///
/// # Errors
/// `ESRCH` if no such process exists; `ENOSYS` on kernels before 5.3.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd =
        i32::try_from(r).map_err(|_| io::Error::other("pidfd_open: descriptor out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us, open and owned by no one else;
    // the OwnedFd becomes its only owner and closes it once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends signal `sig` to the process that pidfd `fd` refers to (`pidfd_send_signal(2)`).
///
/// # Errors
/// `ESRCH` if the process has exited (even if its pid was reused since).
pub fn pidfd_send_signal(fd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: the descriptor is open for the duration of the call (borrowed); the siginfo
    // pointer is null, which the call accepts to mean "as kill(2) would send it".
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The nice value of the calling thread (Linux keeps one per thread; new threads inherit
/// their creator's).
///
/// # Errors
/// The system's.
pub fn thread_nice() -> io::Result<i32> {
    // getpriority may return -1 legitimately: tell it from an error through errno.
    nix::errno::Errno::clear();
    // SAFETY: getpriority takes two integers and touches no memory of ours.
    let r = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if r == -1 && nix::errno::Errno::last_raw() != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// Sets the nice value of the calling thread (and so of the threads it starts afterwards).
/// Raising it (lower priority) is always allowed; lowering it needs `CAP_SYS_NICE`.
///
/// # Errors
/// `EACCES`/`EPERM` when lowering it without the privilege.
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority takes three integers and touches no memory of ours; `0` names the
    // calling thread on Linux.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Allows `send(2)` with `MSG_ZEROCOPY` on socket `fd` (`setsockopt(SO_ZEROCOPY, 1)`, Linux
/// 4.14): the kernel may then reference the sender's pages instead of copying them, and reports
/// on the socket's error queue when it released them. Used by `spybench --zerocopy` to measure
/// what zero copy gives on this host; the daemons do not send this way (docs/spy-protocol.md,
/// "Zero copy").
///
/// # Errors
/// `ENOPROTOOPT` on kernels without it, `EOPNOTSUPP` for sockets that do not support it.
pub fn enable_zerocopy(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the descriptor is open for the duration of the call (borrowed); the option value
    // points at a live c_int whose size is passed with it, and the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ZEROCOPY,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pidfd_follows_its_process_and_signals_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = super::pidfd_open(child.id() as i32).unwrap();
        super::pidfd_send_signal(&fd, libc::SIGKILL).unwrap();
        let st = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        // Reaped: the pidfd now refers to nothing, and says so.
        let e = super::pidfd_send_signal(&fd, libc::SIGKILL).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
        assert!(super::pidfd_open(i32::MAX).is_err());
    }

    #[test]
    fn zerocopy_is_allowed_on_a_tcp_socket_and_refused_on_a_file() {
        use std::os::fd::AsFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        super::enable_zerocopy(s.as_fd()).unwrap();
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        let e = super::enable_zerocopy(f.as_fd()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTSOCK));
    }
}
