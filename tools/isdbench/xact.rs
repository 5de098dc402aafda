//! `isdbench xact`: transactions through isectd (client -> isectd -> isdecho worker -> client)
//! against a direct client <-> server TCP round trip with the same framing, in one run:
//! round-trip latency (median, p99), throughput with N clients and M echo workers (and the
//! direct figure with N clients beside it), and isectd's memory per connected client.
//!
//! With `--busy-poll-us N` isectd is measured again polling for N us after traffic, and once
//! more with its workers polling too (`worker_busy_poll_us`, service `echop`); the direct
//! server is measured polling alike, so each way of polling is weighed against the same way
//! without isectd.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use daqproc::control::client::Connection;
use daqproc::control::reply::Reply;
use daqproc::daemons::isectd::stream::XStream;
use daqproc::daemons::isectd::xlib::XClient;
use daqproc::daemons::isectd::xproto::{self as xp, Kind};
use shvars::{ProcName, RuntimeDir};

use crate::stats::summary;

/// Serves the same frames on `l`: every DATA frame comes back as it is (a thread per
/// connection, blocking reads, as a simple worker would; polling for `poll` before each read
/// sleeps, as a worker with `worker_busy_poll_us` does).
fn serve_direct(l: TcpListener, poll: Duration) {
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            let mut s = XStream::Tcp(s);
            let mut f = xp::Framer::default();
            let mut buf = vec![0u8; 64 * 1024];
            let mut out = Vec::new();
            loop {
                let n = match s.read_polling(&mut buf, poll) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                f.push(&buf[..n]);
                out.clear();
                while let Ok(Some((h, p))) = f.next_frame() {
                    xp::put_frame(&mut out, &h, &p);
                }
                if s.write_all(&out).is_err() {
                    return;
                }
            }
        });
    }
}

/// The direct server as a thread of this process (for reference: a thread switch is cheaper
/// than a process switch, so this is not the peer the goal is measured against).
fn direct_thread() -> anyhow::Result<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let a = l.local_addr()?.to_string();
    std::thread::spawn(move || serve_direct(l, Duration::ZERO));
    Ok(a)
}

/// `isdbench` run as the direct server (`ISDBENCH_DIRECT=1`, polling for
/// `ISDBENCH_DIRECT_POLL_US` before each read sleeps): prints its address, then serves until
/// its stdin closes.
pub fn direct_server_main() -> ! {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    println!("{}", l.local_addr().expect("local address"));
    let poll = std::env::var("ISDBENCH_DIRECT_POLL_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::ZERO, Duration::from_micros);
    std::thread::spawn(move || serve_direct(l, poll));
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    std::process::exit(0)
}

/// The direct server in a process of its own, as a worker is: the peer of the goal.
struct DirectProcess {
    child: std::process::Child,
    addr: String,
}

impl DirectProcess {
    fn start(poll_us: u64) -> anyhow::Result<DirectProcess> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .env("ISDBENCH_DIRECT", "1")
            .env("ISDBENCH_DIRECT_POLL_US", poll_us.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting the direct server")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("its stdout")?).read_line(&mut line)?;
        Ok(DirectProcess {
            child,
            addr: line.trim().to_owned(),
        })
    }
}

impl Drop for DirectProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Direct {
    s: XStream,
    f: xp::Framer,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl Direct {
    fn connect(a: &str) -> anyhow::Result<Direct> {
        let s = XStream::tcp(a)?;
        Ok(Direct {
            s,
            f: xp::Framer::default(),
            out: Vec::new(),
            buf: vec![0u8; 64 * 1024],
        })
    }

    fn transact(&mut self, p: &[u8]) -> anyhow::Result<usize> {
        self.out.clear();
        xp::put(&mut self.out, Kind::Data, 0, 0, 0, 1, p);
        self.s.write_all(&self.out)?;
        loop {
            if let Some((_, r)) = self.f.next_frame().map_err(anyhow::Error::msg)? {
                return Ok(r.len());
            }
            let n = self.s.read(&mut self.buf)?;
            if n == 0 {
                bail!("closed");
            }
            self.f.push(&self.buf[..n]);
        }
    }
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn throughput(
    n: usize,
    dur: Duration,
    mut make: impl FnMut() -> anyhow::Result<Box<dyn FnMut() -> anyhow::Result<()> + Send>>,
) -> anyhow::Result<f64> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let mut f = make()?;
        handles.push(std::thread::spawn(move || -> anyhow::Result<u64> {
            let t0 = Instant::now();
            let mut k = 0;
            while t0.elapsed() < dur {
                f()?;
                k += 1;
            }
            Ok(k)
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h
            .join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
    }
    Ok(total as f64 / dur.as_secs_f64())
}

/// isectd, stopped when dropped (SIGTERM: it stops its workers first), so a failed run leaves
/// nothing behind.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Latencies of one way of doing a transaction, measured round after round.
/// What a way of doing a transaction is, for the goal's figure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// A direct round trip between two processes: the peer of the goal.
    Direct,
    /// Through isectd.
    Through,
    /// Shown for reference only.
    Reference,
}

struct Way<'a> {
    label: String,
    side: Side,
    before: Box<dyn FnMut() -> anyhow::Result<()> + 'a>,
    once: Box<dyn FnMut() -> anyhow::Result<()> + 'a>,
    lat: Vec<f64>,
}

pub fn run(a: &crate::cli::XactArgs) -> anyhow::Result<()> {
    let crate::cli::XactArgs {
        count,
        clients,
        workers,
        secs,
        size,
        idle_clients,
        busy_poll_us,
        crowd,
    } = *a;
    let me = std::env::current_exe()?;
    let isectd = me.with_file_name("isectd");
    let isdecho = me.with_file_name("isdecho");
    if !isectd.exists() || !isdecho.exists() {
        bail!("isectd and isdecho must be built beside isdbench (cargo build --release)");
    }
    let tmp = tempfile::Builder::new().prefix("isdbench").tempdir()?;
    let daemon = Daemon(
        std::process::Command::new(&isectd)
            .args(["-n", "xb", "--dir"])
            .arg(tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let dir = RuntimeDir::at(tmp.path());
    let name = ProcName::new("xb")?;
    let t0 = Instant::now();
    let c = loop {
        if let Ok(c) = Connection::open(&dir, &name) {
            break c;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("isectd did not start");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let c = std::cell::RefCell::new(c);
    let call = |line: &str| -> anyhow::Result<String> {
        match c.borrow_mut().call(line, Duration::from_secs(30))? {
            Reply::Ok { text } => Ok(text),
            Reply::Error(f) => bail!("{line}: {}", f.text),
        }
    };
    // `echo`: workers that sleep at once; `echop`: workers that poll for busy_poll_us first.
    let services: &[(&str, u64)] = if busy_poll_us > 0 {
        &[("echo", 0), ("echop", busy_poll_us)]
    } else {
        &[("echo", 0)]
    };
    for (k, (svc, poll)) in services.iter().enumerate() {
        call(&format!("config service {svc}"))?;
        call(&format!(
            "config worker {svc} localhost tp:{}",
            isdecho.display()
        ))?;
        let first = k * workers + 1;
        for _ in 1..workers {
            call(&format!("clone {first}"))?;
        }
        call(&format!("set worker_busy_poll_us {poll}"))?;
        call(&format!("start {svc}"))?;
    }
    call("set worker_busy_poll_us 0")?;
    let all = workers * services.len();
    let t0 = Instant::now();
    while call("get IdleWorkers")?.trim() != all.to_string() {
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("the echo workers did not log in");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let port: u16 = call("get req_port")?.trim().parse()?;
    let via = format!("127.0.0.1:{port}");
    let direct = DirectProcess::start(0)?;
    let direct_poll = (busy_poll_us > 0)
        .then(|| DirectProcess::start(busy_poll_us))
        .transpose()?;
    let thread = direct_thread()?;
    let payload = vec![0x5au8; size];
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "isdbench xact: {size}-byte transactions; {count} round trips each way, interleaved in rounds of 1000; throughput {clients} clients, {workers} echo workers, {secs:.1} s; {cpus} CPUs usable; {crowd} idle clients connected"
    );
    let mut crowd_conns = Vec::with_capacity(crowd);
    for _ in 0..crowd {
        crowd_conns.push(XClient::connect(&via, "echo").context("connecting the idle crowd")?);
    }
    // Latency, interleaved in rounds.
    let d = std::cell::RefCell::new(Direct::connect(&direct.addr)?);
    let dp = match &direct_poll {
        Some(p) => Some(std::cell::RefCell::new(Direct::connect(&p.addr)?)),
        None => None,
    };
    let xp_ = match busy_poll_us {
        0 => None,
        _ => Some(std::cell::RefCell::new(
            XClient::connect(&via, "echop").context("logging in to isectd")?,
        )),
    };
    let dt = std::cell::RefCell::new(Direct::connect(&thread)?);
    let x =
        std::cell::RefCell::new(XClient::connect(&via, "echo").context("logging in to isectd")?);
    let through = |c: &std::cell::RefCell<XClient>| -> anyhow::Result<()> {
        let r = c.borrow_mut().transact(&payload)?;
        if r.len() != size {
            bail!("a reply of {} bytes for {size}", r.len());
        }
        Ok(())
    };
    let set_busy = |us: u64| call(&format!("set busy_poll_us {us}")).map(|_| ());
    let mut ways = vec![
        Way {
            label: "direct TCP, same framing, server process".into(),
            side: Side::Direct,
            before: Box::new(|| Ok(())),
            once: Box::new(|| d.borrow_mut().transact(&payload).map(|_| ())),
            lat: Vec::with_capacity(count),
        },
        Way {
            label: "through isectd".into(),
            side: Side::Through,
            before: Box::new(|| set_busy(0)),
            once: Box::new(|| through(&x)),
            lat: Vec::with_capacity(count),
        },
    ];
    if let (Some(dp), Some(xp_)) = (&dp, &xp_) {
        ways.push(Way {
            label: format!("through isectd, busy_poll_us {busy_poll_us}"),
            side: Side::Through,
            before: Box::new(move || set_busy(busy_poll_us)),
            once: Box::new(|| through(&x)),
            lat: Vec::with_capacity(count),
        });
        ways.push(Way {
            label: format!("direct, server polling {busy_poll_us} us"),
            side: Side::Direct,
            before: Box::new(|| Ok(())),
            once: Box::new(|| dp.borrow_mut().transact(&payload).map(|_| ())),
            lat: Vec::with_capacity(count),
        });
        ways.push(Way {
            label: format!("isectd and workers polling {busy_poll_us} us"),
            side: Side::Through,
            before: Box::new(move || set_busy(busy_poll_us)),
            once: Box::new(|| through(xp_)),
            lat: Vec::with_capacity(count),
        });
    }
    ways.push(Way {
        label: "(direct, server a thread of the client)".into(),
        side: Side::Reference,
        before: Box::new(|| Ok(())),
        once: Box::new(|| dt.borrow_mut().transact(&payload).map(|_| ())),
        lat: Vec::with_capacity(count),
    });
    for w in &mut ways {
        (w.before)()?;
        for _ in 0..200 {
            (w.once)()?;
        }
    }
    let mut left = count;
    while left > 0 {
        let n = left.min(1000);
        for w in &mut ways {
            (w.before)()?;
            for _ in 0..n {
                let t = Instant::now();
                (w.once)()?;
                w.lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        left -= n;
    }
    let sums: Vec<(String, Side, f64, f64)> = ways
        .iter()
        .map(|w| {
            let (m, p) = summary(&w.lat);
            (w.label.clone(), w.side, m, p)
        })
        .collect();
    drop(ways);
    println!(
        "{:<44} {:>10} {:>10} {:>16}",
        "round trip", "median us", "p99 us", "/ direct process"
    );
    let (_, _, dm, d99) = sums[0].clone();
    for (label, _, m, p) in &sums {
        println!(
            "{label:<44} {m:>10.1} {p:>10.1}   {:>5.2}x, {:>5.2}x",
            m / dm,
            p / d99
        );
    }
    // The goal's figure: the fastest way through isectd against the fastest direct way
    // between two processes (each polling or not), so polling is never weighed only on
    // isectd's side.
    let best = |side: Side| {
        sums.iter()
            .filter(|w| w.1 == side)
            .fold((f64::INFINITY, f64::INFINITY), |(m, p), w| {
                (m.min(w.2), p.min(w.3))
            })
    };
    let ((bdm, bd99), (bxm, bx99)) = (best(Side::Direct), best(Side::Through));
    println!(
        "fastest through isectd / fastest direct between processes: median {bxm:.1} / {bdm:.1} us = {:.2}x, p99 {bx99:.1} / {bd99:.1} us = {:.2}x (goal: at most 2.2x)",
        bxm / bdm,
        bx99 / bd99
    );
    // Throughput.
    let dur = Duration::from_secs_f64(secs);
    let p2 = payload.clone();
    let dtp = throughput(clients, dur, || {
        let mut c = Direct::connect(&direct.addr)?;
        let p = p2.clone();
        Ok(Box::new(move || c.transact(&p).map(|_| ())))
    })?;
    let mut xt = Vec::new();
    let mut cases = vec![(0, "echo", "busy_poll_us 0")];
    let polling = format!("busy_poll_us {busy_poll_us}");
    let both = format!("isectd and workers polling {busy_poll_us} us");
    if busy_poll_us > 0 {
        cases.push((busy_poll_us, "echo", &polling));
        cases.push((busy_poll_us, "echop", &both));
    }
    for (us, svc, label) in cases {
        set_busy(us)?;
        let p3 = payload.clone();
        let t = throughput(clients, dur, || {
            let mut c = XClient::connect(&via, svc)?;
            let p = p3.clone();
            Ok(Box::new(move || {
                c.transact(&p).map(|_| ()).map_err(anyhow::Error::from)
            }))
        })?;
        xt.push((label, t));
    }
    set_busy(0)?;
    print!("throughput, {clients} clients: direct server process {dtp:.0} /s; through isectd ({workers} workers)");
    for (label, t) in &xt {
        print!(" {t:.0} /s ({label})");
    }
    println!();
    drop(crowd_conns);
    // Memory per connected client.
    let before = rss_kb(daemon.0.id());
    let mut idle = Vec::new();
    for _ in 0..idle_clients {
        idle.push(XClient::connect(&via, "echo")?);
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_kb(daemon.0.id());
    println!(
        "memory: {idle_clients} idle clients added {} KiB to isectd's RSS: {:.1} KiB per client",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / idle_clients.max(1) as f64
    );
    drop(idle);
    let _ = call("stop all");
    drop(x);
    drop(daemon);
    Ok(())
}
