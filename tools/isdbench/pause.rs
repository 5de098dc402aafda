//! `isdbench pause`: `send all pause` and `send all resume` to N ticker workers of one isectd,
//! each timed from sending the command to the whole reply (every worker answered).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use daqproc::control::client::Connection;
use daqproc::control::reply::Reply;
use shvars::{ProcName, RuntimeDir};

use crate::stats::summary;

pub fn run(n: usize, rounds: usize) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let ticker = me.with_file_name("ticker");
    let isectd = me.with_file_name("isectd");
    if !ticker.exists() || !isectd.exists() {
        bail!("ticker and isectd must be built beside isdbench (cargo build --release)");
    }
    let tmp = tempfile::Builder::new().prefix("isdbench").tempdir()?;
    let mut child = std::process::Command::new(&isectd)
        .args(["-n", "pb", "--dir"])
        .arg(tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let dir = RuntimeDir::at(tmp.path());
    let name = ProcName::new("pb")?;
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
        match c.call(line, Duration::from_secs(60))? {
            Reply::Ok { text } => Ok(text),
            Reply::Error(f) => bail!("{line}: {}", f.text),
        }
    };
    call("config service daq")?;
    call(&format!(
        "config worker daq localhost {} -n bt%w -c init -c start",
        ticker.display()
    ))?;
    for _ in 1..n {
        call("clone 1")?;
    }
    call("start daq")?;
    let t0 = Instant::now();
    loop {
        let idle: usize = call("get IdleWorkers")?.trim().parse()?;
        if idle == n {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("only {idle} of {n} tickers ready after 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut pause, mut resume) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let r = call("send all pause").context("send all pause")?;
        pause.push(t.elapsed().as_secs_f64() * 1e3);
        if r.lines().count() != n {
            bail!(
                "send all pause answered {} lines for {n} workers",
                r.lines().count()
            );
        }
        let t = Instant::now();
        call("send all resume").context("send all resume")?;
        resume.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (pm, p99) = summary(&pause);
    let (rm, r99) = summary(&resume);
    println!("isdbench pause: {n} ticker workers, {rounds} rounds");
    println!("send all pause:  median {pm:.1} ms, p99 {p99:.1} ms");
    println!("send all resume: median {rm:.1} ms, p99 {r99:.1} ms");
    let _ = call("stop all");
    let _ = call("exit");
    let _ = child.wait();
    Ok(())
}
