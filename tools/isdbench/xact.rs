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

/// A direct server speaking the same frames: every DATA frame comes back as it is.
fn direct_server() -> anyhow::Result<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let a = l.local_addr()?.to_string();
    std::thread::spawn(move || {
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
    });
    Ok(a)
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

pub fn run(
    count: usize,
    clients: usize,
    workers: usize,
    secs: f64,
    size: usize,
    idle_clients: usize,
) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let isectd = me.with_file_name("isectd");
    let isdecho = me.with_file_name("isdecho");
    if !isectd.exists() || !isdecho.exists() {
        bail!("isectd and isdecho must be built beside isdbench (cargo build --release)");
    }
    let tmp = tempfile::Builder::new().prefix("isdbench").tempdir()?;
    let mut child = std::process::Command::new(&isectd)
        .args(["-n", "xb", "--dir"])
        .arg(tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let dir = RuntimeDir::at(tmp.path());
    let name = ProcName::new("xb")?;
    let t0 = Instant::now();
    let mut c = loop {
        if let Ok(c) = Connection::open(&dir, &name) {
            break c;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("isectd did not start");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut call = |line: &str| -> anyhow::Result<String> {
        match c.call(line, Duration::from_secs(30))? {
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
    let direct = direct_server()?;
    let payload = vec![0x5au8; size];
    println!(
        "isdbench xact: {size}-byte transactions; {count} round trips each way, interleaved in rounds of 1000; throughput {clients} clients, {workers} echo workers, {secs:.1} s"
    );
    // Latency, interleaved in rounds.
    let mut d = Direct::connect(&direct)?;
    let mut x = XClient::connect(&via, "echo").context("logging in to isectd")?;
    let (mut dl, mut xl) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for _ in 0..200 {
        d.transact(&payload)?;
        x.transact(&payload)?;
    }
    let mut left = count;
    while left > 0 {
        let n = left.min(1000);
        for _ in 0..n {
            let t = Instant::now();
            d.transact(&payload)?;
            dl.push(t.elapsed().as_secs_f64() * 1e6);
        }
        for _ in 0..n {
            let t = Instant::now();
            let r = x.transact(&payload)?;
            xl.push(t.elapsed().as_secs_f64() * 1e6);
            if r.len() != size {
                bail!("a reply of {} bytes for {size}", r.len());
            }
        }
        left -= n;
    }
    let (dm, d99) = summary(&dl);
    let (xm, x99) = summary(&xl);
    println!("{:<28} {:>10} {:>10}", "round trip", "median us", "p99 us");
    println!(
        "{:<28} {:>10.1} {:>10.1}",
        "direct TCP, same framing", dm, d99
    );
    println!("{:<28} {:>10.1} {:>10.1}", "through isectd", xm, x99);
    println!(
        "ratio (isectd / direct): median {:.2}, p99 {:.2}",
        xm / dm,
        x99 / d99
    );
    // Throughput.
    let dur = Duration::from_secs_f64(secs);
    let p2 = payload.clone();
    let dt = throughput(clients, dur, || {
        let mut c = Direct::connect(&direct)?;
        let p = p2.clone();
        Ok(Box::new(move || c.transact(&p).map(|_| ())))
    })?;
    let p3 = payload.clone();
    let xt = throughput(clients, dur, || {
        let mut c = XClient::connect(&via, "echo")?;
        let p = p3.clone();
        Ok(Box::new(move || {
            c.transact(&p).map(|_| ()).map_err(anyhow::Error::from)
        }))
    })?;
    println!("throughput, {clients} clients: direct {dt:.0} /s, through isectd ({workers} workers) {xt:.0} /s");
    // Memory per connected client.
    let before = rss_kb(child.id());
    let mut idle = Vec::new();
    for _ in 0..idle_clients {
        idle.push(XClient::connect(&via, "echo")?);
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_kb(child.id());
    println!(
        "memory: {idle_clients} idle clients added {} KiB to isectd's RSS: {:.1} KiB per client",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / idle_clients.max(1) as f64
    );
    drop(idle);
    let _ = call("stop all");
    let _ = call("exit");
    let _ = child.wait();
    Ok(())
}
