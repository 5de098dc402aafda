//! `--zerocopy`: what sending from a file's pages would give on this host, and why the farm
//! does not send that way (docs/spy-protocol.md, "Zero copy").
//!
//! Two measurements, raw TCP loopback, one sender and one receiver reading chunks of the size:
//! 1. Throughput, interleaved runs: `write(2)` of a buffer (the baseline of the chain's
//!    figures), `sendfile(2)` of the same bytes from a shared-memory file (a memfd: the same
//!    tmpfs pages as a buffer file in /dev/shm), and `send(2)` with `MSG_ZEROCOPY`.
//! 2. When the bytes become final: each way sends a chunk, the sender rewrites the source as
//!    soon as the call returned (what the producer of a sampling buffer may do at any time),
//!    and only then does the receiver read. A way whose receiver gets the rewritten bytes
//!    references the pages after the call returned: a check made after the call cannot vouch
//!    for what the client will read.

use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, SockaddrIn};

use crate::{median, spread};

/// `SO_EE_ORIGIN_ZEROCOPY` and `SO_EE_CODE_ZEROCOPY_COPIED` of `<linux/errqueue.h>` (not in
/// the libc crate).
const ORIGIN_ZEROCOPY: u8 = 5;
const CODE_COPIED: u8 = 1;

/// MSG_ZEROCOPY sends between two looks at the error queue (besides when it is full).
const REAP_EVERY: u64 = 64;

/// Tries per way in the second measurement.
const TRIES: u32 = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Write,
    Sendfile,
    ZeroCopy,
}

impl Way {
    const ALL: [Way; 3] = [Way::Write, Way::Sendfile, Way::ZeroCopy];

    fn name(self) -> &'static str {
        match self {
            Way::Write => "write",
            Way::Sendfile => "sendfile",
            Way::ZeroCopy => "MSG_ZEROCOPY",
        }
    }
}

/// Completions read off a socket's error queue.
#[derive(Debug, Default)]
struct Completions {
    /// Sends the kernel reported done with.
    done: u64,
    /// Of those, the ones it reported it had copied after all.
    copied: u64,
}

/// The sending side of one way: a connected socket and the source of the bytes.
struct Sender {
    sock: TcpStream,
    way: Way,
    /// The chunk, for write and MSG_ZEROCOPY.
    buf: Vec<u8>,
    /// The chunk's bytes at offset 0, for sendfile.
    file: File,
    /// MSG_ZEROCOPY sends made, and their count at the last look at the error queue.
    sent: u64,
    reaped_at: u64,
    completions: Completions,
}

impl Sender {
    fn new(sock: TcpStream, way: Way, size: usize, fill: u8) -> anyhow::Result<Self> {
        sock.set_nodelay(true)?;
        if way == Way::ZeroCopy {
            shvars::sys::enable_zerocopy(sock.as_fd()).context("setsockopt(SO_ZEROCOPY)")?;
        }
        let file = File::from(
            nix::sys::memfd::memfd_create(
                c"spybench-zerocopy",
                nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
            )
            .context("memfd_create")?,
        );
        let buf = vec![fill; size];
        file.write_all_at(&buf, 0).context("filling the memfd")?;
        Ok(Self {
            sock,
            way,
            buf,
            file,
            sent: 0,
            reaped_at: 0,
            completions: Completions::default(),
        })
    }

    /// Sends the whole chunk once.
    fn send(&mut self) -> anyhow::Result<()> {
        let size = self.buf.len();
        match self.way {
            Way::Write => self.sock.write_all(&self.buf)?,
            Way::Sendfile => {
                let mut off: libc::off_t = 0;
                let mut left = size;
                while left > 0 {
                    match nix::sys::sendfile::sendfile(&self.sock, &self.file, Some(&mut off), left)
                    {
                        Ok(0) => anyhow::bail!("sendfile sent nothing"),
                        Ok(n) => left -= n,
                        Err(Errno::EINTR) => {}
                        Err(e) => return Err(e).context("sendfile"),
                    }
                }
            }
            Way::ZeroCopy => {
                let fd = self.sock.as_raw_fd();
                let mut at = 0;
                while at < size {
                    match socket::send(
                        fd,
                        &self.buf[at..],
                        MsgFlags::from_bits_retain(libc::MSG_ZEROCOPY),
                    ) {
                        Ok(n) => {
                            at += n;
                            self.sent += 1;
                        }
                        Err(Errno::EINTR) => {}
                        // The socket's option memory is full of unreported completions.
                        Err(Errno::ENOBUFS) => {
                            let before = self.completions.done;
                            self.reap(true)?;
                            anyhow::ensure!(
                                self.completions.done > before,
                                "send(MSG_ZEROCOPY): no buffer space (ENOBUFS), and no \
                                 completion came within a second to free it"
                            );
                        }
                        Err(e) => return Err(e).context("send(MSG_ZEROCOPY)"),
                    }
                }
                // Completions coalesce into ranges: collect them now and then, not after every
                // send (a system call per send would charge zero copy with a cost of the bench).
                if self.sent - self.reaped_at >= REAP_EVERY {
                    self.reap(false)?;
                    self.reaped_at = self.sent;
                }
            }
        }
        Ok(())
    }

    /// Reads the completions waiting on the error queue; with `wait`, at least one if one
    /// comes within a second (polling for it: an error queue wakes `poll` with `POLLERR`).
    fn reap(&mut self, wait: bool) -> anyhow::Result<()> {
        let fd = self.sock.as_raw_fd();
        let mut wait = wait;
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in);
        loop {
            let mut iov: [IoSliceMut<'_>; 0] = [];
            let r = socket::recvmsg::<SockaddrIn>(
                fd,
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
            );
            let msg = match r {
                Ok(m) => m,
                Err(Errno::EAGAIN) if wait && Instant::now() < deadline => {
                    let mut p = [nix::poll::PollFd::new(
                        self.sock.as_fd(),
                        nix::poll::PollFlags::empty(),
                    )];
                    nix::poll::poll(&mut p, nix::poll::PollTimeout::from(100u16))?;
                    continue;
                }
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("recvmsg(MSG_ERRQUEUE)"),
            };
            for c in msg.cmsgs()? {
                if let ControlMessageOwned::Ipv4RecvErr(e, _) = c {
                    if e.ee_origin == ORIGIN_ZEROCOPY && e.ee_errno == 0 {
                        // ee_info..=ee_data: the range of sends (numbered from 0) completed.
                        let n = u64::from(e.ee_data.wrapping_sub(e.ee_info)) + 1;
                        self.completions.done += n;
                        if e.ee_code & CODE_COPIED != 0 {
                            self.completions.copied += n;
                        }
                    }
                }
            }
            wait = false;
        }
    }

    /// Makes the source hold `fill`: what the chunk's next reader of the source would see.
    fn rewrite(&mut self, fill: u8) -> anyhow::Result<()> {
        self.buf.fill(fill);
        if self.way == Way::Sendfile {
            self.file.write_all_at(&self.buf, 0)?;
        }
        Ok(())
    }
}

fn pair() -> anyhow::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let tx = TcpStream::connect(l.local_addr()?)?;
    let (rx, _) = l.accept()?;
    Ok((tx, rx))
}

/// MB/s (10^6 bytes) moved in `dur` by `way` with chunks of `size`, and the completions of the
/// sends (MSG_ZEROCOPY only).
fn throughput(way: Way, size: usize, dur: Duration) -> anyhow::Result<(f64, Completions)> {
    let (tx, mut rx) = pair()?;
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let mut sender = Sender::new(tx, way, size, 0x5a)?;
    let writer = std::thread::spawn(move || -> anyhow::Result<Completions> {
        while !s2.load(Ordering::Relaxed) {
            if let Err(e) = sender.send() {
                // The receiver closes first when the time is up.
                if s2.load(Ordering::Relaxed) {
                    break;
                }
                return Err(e);
            }
        }
        if sender.way == Way::ZeroCopy {
            let deadline = Instant::now() + Duration::from_secs(1);
            while sender.completions.done < sender.sent && Instant::now() < deadline {
                sender.reap(true)?;
            }
        }
        Ok(sender.completions)
    });
    let mb = crate::tcp::receive(&mut rx, size, dur)?;
    stop.store(true, Ordering::Relaxed);
    // Keep reading until the sender stopped (it may be blocked in a send).
    rx.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut buf = vec![0u8; size];
    while !writer.is_finished() {
        let _ = rx.read(&mut buf);
    }
    drop(rx);
    let c = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the sender thread panicked"))??;
    Ok((mb, c))
}

/// Of `TRIES` chunks of `size` sent by `way` and rewritten as soon as the call returned,
/// how many reached the receiver with rewritten bytes; and the completions (MSG_ZEROCOPY).
fn rewritten(way: Way, size: usize) -> anyhow::Result<(u32, Completions)> {
    let (tx, mut rx) = pair()?;
    let mut sender = Sender::new(tx, way, size, 1)?;
    let mut buf = vec![0u8; size];
    let mut changed = 0;
    for i in 0..TRIES {
        let sent = (2 * i % 250 + 1) as u8;
        let later = sent + 1;
        sender.rewrite(sent)?;
        sender.send()?;
        sender.rewrite(later)?;
        rx.read_exact(&mut buf)?;
        if buf.iter().any(|&b| b != sent) {
            anyhow::ensure!(
                buf.iter().all(|&b| b == sent || b == later),
                "{}: the receiver got bytes that were never sent",
                way.name()
            );
            changed += 1;
        }
    }
    if way == Way::ZeroCopy {
        let deadline = Instant::now() + Duration::from_secs(1);
        while sender.completions.done < sender.sent && Instant::now() < deadline {
            sender.reap(true)?;
        }
    }
    Ok((changed, sender.completions))
}

pub fn run(cli: &crate::cli::Cli) -> anyhow::Result<()> {
    let dur = Duration::from_secs_f64(cli.duration);
    println!(
        "spybench --zerocopy: raw TCP loopback, chunks of the size sent by write, by sendfile \
         from a shared-memory file, by send(MSG_ZEROCOPY); {} runs of {:.1} s each, \
         interleaved; medians [min-max] in MB/s, ratios against write",
        cli.runs, cli.duration
    );
    println!(
        "{:>8}  {:>20}  {:>20}  {:>7}  {:>20}  {:>7}  {:>14}",
        "chunk", "write", "sendfile", "ratio", "MSG_ZEROCOPY", "ratio", "copied by kernel"
    );
    for &size in &cli.sizes {
        let mut mb: [Vec<f64>; 3] = Default::default();
        let mut ratios: [Vec<f64>; 2] = Default::default();
        let (mut done, mut copied) = (0, 0);
        for _ in 0..cli.runs {
            let mut this = [0.0; 3];
            for (i, way) in Way::ALL.into_iter().enumerate() {
                let (m, c) = throughput(way, size, dur)
                    .with_context(|| format!("{} of {size}-byte chunks", way.name()))?;
                this[i] = m;
                mb[i].push(m);
                done += c.done;
                copied += c.copied;
            }
            ratios[0].push(this[1] / this[0]);
            ratios[1].push(this[2] / this[0]);
        }
        let cell = |v: &mut Vec<f64>| {
            let (lo, hi) = spread(v);
            format!("{:>6.0} [{:>5.0}-{:>5.0}]", median(v), lo, hi)
        };
        let copied = if done == 0 {
            "no completion".to_owned()
        } else {
            format!("{:.0}% of sends", 100.0 * copied as f64 / done as f64)
        };
        let [w, s, z] = &mut mb;
        let [rs, rz] = &mut ratios;
        println!(
            "{:>7}B  {:>20}  {:>20}  {:>6.2}x  {:>20}  {:>6.2}x  {:>14}",
            size,
            cell(w),
            cell(s),
            median(rs),
            cell(z),
            median(rz),
            copied
        );
    }
    println!(
        "\nWhen the bytes are final: {TRIES} chunks per way, the source rewritten as soon as the \
         call returned, read by the receiver only then"
    );
    let size = 4096;
    for way in Way::ALL {
        let (changed, c) =
            rewritten(way, size).with_context(|| format!("the rewrite test of {}", way.name()))?;
        let note = match (way, changed) {
            (Way::ZeroCopy, _) => format!(
                " (the kernel reported {} of {} sends copied)",
                c.copied, c.done
            ),
            (_, 0) => " (the call copied them: a check after it covers what is read)".to_owned(),
            _ => " (the pages were read after the call returned: no check after it can vouch for them)"
                .to_owned(),
        };
        println!(
            "  {:<13} {changed:>3}/{TRIES} chunks reached the receiver with the rewritten bytes{note}",
            way.name()
        );
    }
    Ok(())
}
