//! `isdbench restart`: the time from `kill -9` of a supervised worker to its replacement
//! running (the replacement's first instruction of `main`, reported over UDP with the
//! monotonic clock), for isectd, supervisord and s6-supervise, configured alike: the same
//! program, restarted at once, up for more than a second before each kill. Kills are
//! interleaved: one for each supervisor in turn.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::child::mono_ns;
use crate::stats::summary;

struct Peer {
    name: &'static str,
    proc: Child,
    sock: UdpSocket,
    pid: u32,
    samples: Vec<f64>,
    extra: Vec<Child>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        for c in std::iter::once(&mut self.proc).chain(self.extra.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
    }
}

fn report_socket() -> anyhow::Result<(UdpSocket, String)> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    let a = s.local_addr()?.to_string();
    Ok((s, a))
}

/// Waits for the next report: (pid, monotonic ns).
fn next_report(s: &UdpSocket, within: Duration) -> anyhow::Result<(u32, u64)> {
    s.set_read_timeout(Some(within))?;
    let mut buf = [0u8; 64];
    let (n, _) = s
        .recv_from(&mut buf)
        .context("no report from the worker in time")?;
    let text = std::str::from_utf8(&buf[..n])?;
    let (p, t) = text.split_once(' ').context("bad report")?;
    Ok((p.parse()?, t.parse()?))
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

use daqproc::support::cli::sibling;

fn start_isectd(dir: &Path, me: &Path) -> anyhow::Result<Peer> {
    let (sock, addr) = report_socket()?;
    let isectd = sibling("isectd")?;
    let proc = Command::new(&isectd)
        .args(["-n", "bench", "--dir"])
        .arg(dir)
        .args(["-c", "config service w", "-c"])
        .arg(format!("config worker w localhost {}", me.display()))
        .args(["-c", "start w"])
        .env("ISDBENCH_REPORT", &addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting isectd")?;
    let (pid, _) = next_report(&sock, Duration::from_secs(10))?;
    Ok(Peer {
        name: "isectd",
        proc,
        sock,
        pid,
        samples: Vec::new(),
        extra: Vec::new(),
    })
}

fn start_supervisord(dir: &Path, me: &Path) -> anyhow::Result<Peer> {
    let bin =
        which("supervisord").context("supervisord not installed (apt-get install supervisor)")?;
    let (sock, addr) = report_socket()?;
    let conf = dir.join("supervisord.conf");
    std::fs::write(
        &conf,
        format!(
            "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\n\
             [unix_http_server]\nfile={d}/supervisor.sock\n\
             [program:w]\ncommand={me}\nautorestart=true\nstartsecs=1\nstartretries=1000\nenvironment=ISDBENCH_REPORT=\"{addr}\"\n",
            d = dir.display(),
            me = me.display()
        ),
    )?;
    let proc = Command::new(bin)
        .args(["-n", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting supervisord")?;
    let (pid, _) = next_report(&sock, Duration::from_secs(10))?;
    Ok(Peer {
        name: "supervisord",
        proc,
        sock,
        pid,
        samples: Vec::new(),
        extra: Vec::new(),
    })
}

fn start_s6(dir: &Path, me: &Path) -> anyhow::Result<Peer> {
    let bin = which("s6-supervise").context("s6-supervise not installed (apt-get install s6)")?;
    let (sock, addr) = report_socket()?;
    let svc = dir.join("s6w");
    std::fs::create_dir_all(&svc)?;
    // The run program is the measured binary itself, as for the others (no shell in between).
    std::os::unix::fs::symlink(me, svc.join("run"))?;
    // Readiness notification on fd 3: s6-supervise restarts at once only a service that said
    // it was ready more than a second ago (otherwise it waits a second).
    std::fs::write(svc.join("notification-fd"), "3\n")?;
    let proc = Command::new(bin)
        .arg(&svc)
        .env("ISDBENCH_REPORT", &addr)
        .env("ISDBENCH_NOTIFY_FD", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting s6-supervise")?;
    let (pid, _) = next_report(&sock, Duration::from_secs(10))?;
    Ok(Peer {
        name: "s6",
        proc,
        sock,
        pid,
        samples: Vec::new(),
        extra: Vec::new(),
    })
}

pub fn run(kills: usize, up: f64, skip_missing: bool) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let tmp = tempfile::Builder::new().prefix("isdbench").tempdir()?;
    let mut peers = vec![start_isectd(tmp.path(), &me)?];
    for (name, f) in [
        (
            "supervisord",
            start_supervisord as fn(&Path, &Path) -> anyhow::Result<Peer>,
        ),
        ("s6", start_s6),
    ] {
        match f(tmp.path(), &me) {
            Ok(p) => peers.push(p),
            Err(e) if skip_missing => eprintln!("isdbench: {name} left out: {e:#}"),
            Err(e) => return Err(e.context(format!("{name} (--skip-missing leaves it out)"))),
        }
    }
    println!(
        "isdbench restart: {kills} kills per supervisor, interleaved, each worker up {up:.1} s before its kill"
    );
    let up = Duration::from_secs_f64(up);
    let mut last_start: Vec<Instant> = peers.iter().map(|_| Instant::now()).collect();
    for _ in 0..kills {
        for (i, p) in peers.iter_mut().enumerate() {
            let wait = up.saturating_sub(last_start[i].elapsed());
            std::thread::sleep(wait);
            let t0 = mono_ns();
            kill(Pid::from_raw(p.pid as i32), Signal::SIGKILL)?;
            let (pid, t1) = next_report(&p.sock, Duration::from_secs(10))
                .with_context(|| format!("{}: no replacement", p.name))?;
            last_start[i] = Instant::now();
            p.pid = pid;
            p.samples.push((t1.saturating_sub(t0)) as f64 / 1e6);
        }
    }
    println!(
        "{:<12} {:>12} {:>12} {:>8}",
        "supervisor", "median ms", "p99 ms", "kills"
    );
    let (ours, _) = summary(&peers[0].samples);
    for p in &peers {
        let (m, p99) = summary(&p.samples);
        println!(
            "{:<12} {:>12.3} {:>12.3} {:>8}",
            p.name,
            m,
            p99,
            p.samples.len()
        );
    }
    for p in &peers[1..] {
        let (m, _) = summary(&p.samples);
        println!("isectd / {}: {:.3} (median)", p.name, ours / m);
    }
    Ok(())
}
