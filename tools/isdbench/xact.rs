//! `isdbench xact`: transactions through isectd (client -> isectd -> isdecho worker -> client)
//! against a direct client <-> server TCP round trip with the same framing, in one run:
//! round-trip latency (median, p99), throughput with N clients and M echo workers (and the
//! direct figure with N clients beside it), and isectd's memory per connected client.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use daqproc::control::client::Connection;
use daqproc::control::reply::Reply;
use daqproc::daemons::isectd::xlib::XClient;
use daqproc::daemons::isectd::xproto::{self as xp, Kind};
use shvars::{ProcName, RuntimeDir};

use crate::stats::summary;

/// Serves the same frames on `l`: every DATA frame comes back as it is (a thread per
/// connection, blocking reads, as a simple worker would).
fn serve_direct(l: TcpListener) {
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            let mut s = s;
            let mut f = xp::Framer::default();
            let mut buf = vec![0u8; 64 * 1024];
            let mut out = Vec::new();
            loop {
                let n = match s.read(&mut buf) {
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
    std::thread::spawn(move || serve_direct(l));
    Ok(a)
}

/// `isdbench` run as the direct server (`ISDBENCH_DIRECT=1`): prints its address, then serves
/// until its stdin closes.
pub fn direct_server_main() -> ! {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    println!("{}", l.local_addr().expect("local address"));
    std::thread::spawn(move || serve_direct(l));
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
    fn start() -> anyhow::Result<DirectProcess> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .env("ISDBENCH_DIRECT", "1")
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
    s: TcpStream,
    f: xp::Framer,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl Direct {
    fn connect(a: &str) -> anyhow::Result<Direct> {
        let s = TcpStream::connect(a)?;
        s.set_nodelay(true)?;
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
struct Way<'a> {
    label: String,
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
    call("config service echo")?;
    call(&format!(
        "config worker echo localhost tp:{}",
        isdecho.display()
    ))?;
    for _ in 1..workers {
        call("clone 1")?;
    }
    call("start echo")?;
    let t0 = Instant::now();
    while call("get IdleWorkers")?.trim() != workers.to_string() {
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("the echo workers did not log in");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let port: u16 = call("get req_port")?.trim().parse()?;
    let via = format!("127.0.0.1:{port}");
    let direct = DirectProcess::start()?;
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
            before: Box::new(|| Ok(())),
            once: Box::new(|| d.borrow_mut().transact(&payload).map(|_| ())),
            lat: Vec::with_capacity(count),
        },
        Way {
            label: "through isectd".into(),
            before: Box::new(|| set_busy(0)),
            once: Box::new(|| through(&x)),
            lat: Vec::with_capacity(count),
        },
    ];
    if busy_poll_us > 0 {
        ways.push(Way {
            label: format!("through isectd, busy_poll_us {busy_poll_us}"),
            before: Box::new(move || set_busy(busy_poll_us)),
            once: Box::new(|| through(&x)),
            lat: Vec::with_capacity(count),
        });
    }
    ways.push(Way {
        label: "(direct, server a thread of the client)".into(),
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
    let sums: Vec<(String, f64, f64)> = ways
        .iter()
        .map(|w| {
            let (m, p) = summary(&w.lat);
            (w.label.clone(), m, p)
        })
        .collect();
    drop(ways);
    println!(
        "{:<44} {:>10} {:>10} {:>16}",
        "round trip", "median us", "p99 us", "/ direct process"
    );
    let (_, dm, d99) = sums[0].clone();
    for (label, m, p) in &sums {
        println!(
            "{label:<44} {m:>10.1} {p:>10.1}   {:>5.2}x, {:>5.2}x",
            m / dm,
            p / d99
        );
    }
    // Throughput.
    let dur = Duration::from_secs_f64(secs);
    let p2 = payload.clone();
    let dtp = throughput(clients, dur, || {
        let mut c = Direct::connect(&direct.addr)?;
        let p = p2.clone();
        Ok(Box::new(move || c.transact(&p).map(|_| ())))
    })?;
    let mut xt = Vec::new();
    for us in [0, busy_poll_us] {
        if us == 0 && !xt.is_empty() {
            continue;
        }
        set_busy(us)?;
        let p3 = payload.clone();
        let t = throughput(clients, dur, || {
            let mut c = XClient::connect(&via, "echo")?;
            let p = p3.clone();
            Ok(Box::new(move || {
                c.transact(&p).map(|_| ()).map_err(anyhow::Error::from)
            }))
        })?;
        xt.push((us, t));
    }
    set_busy(0)?;
    print!("throughput, {clients} clients: direct server process {dtp:.0} /s; through isectd ({workers} workers)");
    for (us, t) in &xt {
        print!(" {t:.0} /s (busy_poll_us {us})");
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
