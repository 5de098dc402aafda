//! `spybench --freshness`: how old the events served by rspydaemon are, and how much it
//! fetches for what its readers take, for a fast, a slow and a returning reader.
//!
//! A producer thread writes events stamped with the time they were written into a farm
//! buffer at a fixed rate; farmspydaemon and rspydaemon (real processes) carry them into a
//! local buffer; a reader in this process reads them the way each kind of reader does. The age
//! of an event is the time from its writing to its reading.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use shvars::circ::{CircWriter, SamplingReader, StartAt, TryReadError};
use shvars::RuntimeDir;

use crate::chain::{sibling, var, wait_for};
use crate::cli::Cli;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

struct Phase {
    name: &'static str,
    ages: Vec<f64>,
    secs: f64,
    fetched: u64,
    lost: u64,
}

/// Reads for `secs`, one event every `period` (zero: as fast as they come).
fn read_phase(
    name: &'static str,
    r: &mut SamplingReader,
    local: &std::path::Path,
    secs: f64,
    period: Duration,
) -> anyhow::Result<Phase> {
    let written = || -> anyhow::Result<u64> {
        Ok(SamplingReader::open(local)?.buffer_stats().events_written)
    };
    let w0 = written()?;
    let lost0 = r.stats().events_lost;
    let mut buf = vec![0u8; 1 << 16];
    let mut ages = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        match r.try_read(&mut buf) {
            Ok(ev) if ev.len >= 8 => {
                let ts = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                ages.push(now_ns().saturating_sub(ts) as f64 / 1e6);
                if !period.is_zero() {
                    std::thread::sleep(period);
                }
            }
            Ok(_) => {}
            Err(TryReadError::Empty) => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => return Err(e).context("reading the local buffer"),
        }
    }
    Ok(Phase {
        name,
        ages,
        secs: t0.elapsed().as_secs_f64(),
        fetched: written()? - w0,
        lost: r.stats().events_lost - lost0,
    })
}

/// Runs the measurement and prints its table.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("spyfresh").tempdir()?;
    let dir = RuntimeDir::at(tmp.path());
    let mut w = CircWriter::create(&tmp.path().join("FARM"), 4 << 20)
        .context("creating the farm buffer")?;
    let stop = Arc::new(AtomicBool::new(false));
    let rate = cli.rate;
    let producer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut evnr = 0u64;
            let mut buf = vec![0u8; 1000];
            while !stop.load(Ordering::Relaxed) {
                let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
                while evnr < due {
                    evnr += 1;
                    buf[..8].copy_from_slice(&now_ns().to_le_bytes());
                    if w.write(evnr, &buf).is_err() {
                        return;
                    }
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let mut children: Vec<Child> = Vec::new();
    let spawn = |bin: &str, args: &[&str]| -> anyhow::Result<Child> {
        Command::new(sibling(bin)?)
            .args(args)
            .env("SHVAR_DIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {bin}"))
    };
    let result = (|| -> anyhow::Result<Vec<Phase>> {
        children.push(spawn(
            "farmspydaemon",
            &[
                "-n",
                "ffarm",
                "-c",
                "init FARM",
                "-c",
                "set port 0",
                "-c",
                "start",
            ],
        )?);
        wait_for("farmspydaemon to listen", || {
            var(&dir, "ffarm", "runstate") == Some(2)
        })?;
        let port = var(&dir, "ffarm", "port").context("farm port")?;
        let maxage = format!("set maxage_ms {}", cli.maxage_ms);
        let start = format!("start 127.0.0.1 {port}");
        children.push(spawn(
            "rspydaemon",
            &[
                "-n",
                "fspy",
                "-c",
                &maxage,
                "-c",
                "init LOCAL",
                "-c",
                &start,
            ],
        )?);
        wait_for("rspydaemon to connect", || {
            var(&dir, "fspy", "no_conn") == Some(0)
        })?;
        let local = tmp.path().join("LOCAL");
        wait_for("the local buffer", || local.exists())?;
        // rspydaemon has been running with nobody reading: its look-ahead is old by now.
        std::thread::sleep(Duration::from_secs(2));
        let mut r = SamplingReader::open_with(&local, StartAt::Oldest)?;
        let mut phases = vec![read_phase(
            "fast",
            &mut r,
            &local,
            cli.duration * 2.0,
            Duration::ZERO,
        )?];
        phases.push(read_phase(
            "slow (10/s)",
            &mut r,
            &local,
            cli.duration * 3.0,
            Duration::from_millis(100),
        )?);
        std::thread::sleep(Duration::from_secs(5));
        phases.push(read_phase(
            "returning after 5 s",
            &mut r,
            &local,
            cli.duration * 2.0,
            Duration::ZERO,
        )?);
        Ok(phases)
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = producer.join();
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let phases = result?;
    println!(
        "spybench --freshness: {} events/s of 1000 bytes, maxage_ms {}",
        cli.rate, cli.maxage_ms
    );
    println!(
        "{:<20}  {:>8}  {:>10}  {:>8}  {:>8}  {:>10}  {:>10}  {:>8}",
        "reader", "events", "median ms", "p99 ms", "max ms", "read/s", "fetched/s", "lost"
    );
    for mut p in phases {
        let n = p.ages.len();
        let (med, p99, max) = (
            quantile(&mut p.ages, 0.5),
            quantile(&mut p.ages, 0.99),
            quantile(&mut p.ages, 1.0),
        );
        println!(
            "{:<20}  {:>8}  {:>10.1}  {:>8.1}  {:>8.1}  {:>10.1}  {:>10.1}  {:>8}",
            p.name,
            n,
            med,
            p99,
            max,
            n as f64 / p.secs,
            p.fetched as f64 / p.secs,
            p.lost
        );
    }
    Ok(())
}
