//! `spybench --cpu`: what serving costs the farm. A producer thread writes events at a fixed
//! rate into a farm buffer; farmspydaemon (a real process) serves them to 1, 4, 16... clients
//! in this process (SpyClients reading as fast as they can: two requests in flight in next and
//! latest mode, one stream in push mode). The farm's CPU time is read from
//! `/proc/PID/stat` (utime + stime) before and after each measurement and divided by the
//! bytes served to all its clients: farm CPU seconds per GB served.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use daqproc::daemons::payload;
use daqproc::daemons::spy::client::{Received, SpyClient};
use daqproc::daemons::spy::proto::{Mode, Request};
use shvars::circ::CircWriter;
use shvars::RuntimeDir;

use crate::chain::{sibling, var, wait_for};
use crate::cli::Cli;
use crate::{median, spread};

/// The farm's CPU time so far (user + system), in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    crate::procstat::cpu_seconds(&format!("/proc/{pid}/stat")).context("farmspydaemon's CPU time")
}

struct Farm {
    _tmp: tempfile::TempDir,
    dir: RuntimeDir,
    child: Child,
    port: u16,
    stop: Arc<AtomicBool>,
    producer: Option<JoinHandle<()>>,
}

impl Farm {
    fn start(cli: &Cli) -> anyhow::Result<Farm> {
        let tmp = tempfile::Builder::new().prefix("spybench-cpu").tempdir_in(
            if Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            },
        )?;
        let dir = RuntimeDir::at(tmp.path());
        let mut w = CircWriter::create(&tmp.path().join("FARM"), cli.circsize)
            .context("creating the farm buffer")?;
        // Room for a measurement's clients while the previous one's are still leaving.
        let maxclients = format!(
            "set maxclients {}",
            2 * cli.cpu_clients.iter().max().copied().unwrap_or(16) + 1
        );
        let child = Command::new(sibling("farmspydaemon")?)
            .args([
                "-n",
                "cfarm",
                "-c",
                "init FARM",
                "-c",
                "set port 0",
                "-c",
                &maxclients,
                "-c",
                "start",
            ])
            .env("SHVAR_DIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting farmspydaemon")?;
        let mut farm = Farm {
            dir: RuntimeDir::at(tmp.path()),
            _tmp: tmp,
            child,
            port: 0,
            stop: Arc::new(AtomicBool::new(false)),
            producer: None,
        };
        wait_for("farmspydaemon to listen", || {
            var(&dir, "cfarm", "runstate") == Some(2)
        })?;
        farm.port = var(&dir, "cfarm", "port").context("farm port")? as u16;
        // The producer: `rate` events a second, paced every millisecond.
        let (stop, rate, size) = (farm.stop.clone(), cli.cpu_rate as f64, cli.cpu_size);
        farm.producer = Some(std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut evnr = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = (t0.elapsed().as_secs_f64() * rate) as u64;
                while evnr < due {
                    evnr += 1;
                    match w.reserve(evnr, size) {
                        Ok(mut r) => {
                            payload::fill(evnr, r.buf());
                            r.commit();
                        }
                        Err(_) => return,
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }));
        Ok(farm)
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.producer.take() {
            let _ = p.join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client reading as fast as it can; adds what it receives to `bytes`.
fn client(
    port: u16,
    mode: Mode,
    version: u16,
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut c = SpyClient::connect("127.0.0.1", port, Duration::from_secs(5))?;
    let req = Request {
        version,
        mode,
        max_events: 0,
        max_bytes: 0,
        last_evnr: 0,
        buffer_id: 0,
        maxage_ms: 0,
    };
    let depth = if mode == Mode::Push { 1 } else { 2 };
    for _ in 0..depth {
        c.request(&req)?;
    }
    while !stop.load(Ordering::Relaxed) {
        match c.receive(Duration::from_millis(100))? {
            Received::Packet(h) => {
                bytes.fetch_add(h.payload_len, Ordering::Relaxed);
                if mode != Mode::Push {
                    c.request(&req)?;
                }
            }
            Received::NoData { .. } => {
                if mode != Mode::Push {
                    c.request(&req)?;
                }
            }
            Received::Timeout => {}
        }
    }
    Ok(())
}

struct Sample {
    mb_per_s: f64,
    cpu_s_per_gb: f64,
    cpu_share: f64,
}

fn measure(
    farm: &Farm,
    mode: Mode,
    n: usize,
    version: u16,
    dur: Duration,
) -> anyhow::Result<Sample> {
    wait_for("the previous clients to leave", || {
        var(&farm.dir, "cfarm", "clients") == Some(0)
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (stop, bytes, port) = (stop.clone(), bytes.clone(), farm.port);
            std::thread::spawn(move || client(port, mode, version, stop, bytes))
        })
        .collect();
    let pid = farm.child.id();
    let run = || -> anyhow::Result<Sample> {
        wait_for("events served", || bytes.load(Ordering::Relaxed) > 0)?;
        std::thread::sleep(Duration::from_millis(300));
        let (c0, b0, t0) = (
            cpu_seconds(pid)?,
            bytes.load(Ordering::Relaxed),
            Instant::now(),
        );
        std::thread::sleep(dur);
        let (c1, b1, secs) = (
            cpu_seconds(pid)?,
            bytes.load(Ordering::Relaxed),
            t0.elapsed().as_secs_f64(),
        );
        let gb = (b1 - b0) as f64 / 1e9;
        if gb <= 0.0 {
            bail!("{mode}, {n} clients: nothing served in {secs:.1} s");
        }
        Ok(Sample {
            mb_per_s: gb * 1e3 / secs,
            cpu_s_per_gb: (c1 - c0) / gb,
            cpu_share: (c1 - c0) / secs,
        })
    };
    let r = run();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context(format!("a {mode} client failed"))),
            Err(_) => bail!("a {mode} client panicked"),
        }
    }
    r
}

/// Runs the table: every mode and client count, `runs` times, interleaved.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let dur = Duration::from_secs_f64(cli.duration);
    let modes = cli
        .cpu_modes
        .iter()
        .map(|m| {
            Mode::from_name(m).with_context(|| format!("unknown mode {m:?}: next, latest or push"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let farm = Farm::start(cli)?;
    println!(
        "spybench --cpu: producer {} events/s of {} B ({:.0} MB/s); protocol version {}; {} runs of {:.1} s each, interleaved; medians [min-max]",
        cli.cpu_rate,
        cli.cpu_size,
        cli.cpu_rate as f64 * cli.cpu_size as f64 / 1e6,
        cli.wire_version,
        cli.runs,
        cli.duration
    );
    let cases: Vec<(Mode, usize)> = modes
        .iter()
        .flat_map(|&m| cli.cpu_clients.iter().map(move |&n| (m, n)))
        .collect();
    let mut samples: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    for _ in 0..cli.runs {
        for (i, &(m, n)) in cases.iter().enumerate() {
            samples[i].push(measure(&farm, m, n, cli.wire_version, dur)?);
        }
    }
    println!(
        "{:>6}  {:>7}  {:>22}  {:>24}  {:>10}  {:>20}",
        "mode",
        "clients",
        "MB/s served [min-max]",
        "farm CPU s/GB [min-max]",
        "farm CPU",
        "push/next [min-max]"
    );
    let mut warnings = Vec::new();
    let next_of = |n: usize| cases.iter().position(|&c| c == (Mode::Next, n));
    for (i, &(m, n)) in cases.iter().enumerate() {
        let s = &samples[i];
        let mut mb: Vec<f64> = s.iter().map(|x| x.mb_per_s).collect();
        let mut cpu: Vec<f64> = s.iter().map(|x| x.cpu_s_per_gb).collect();
        let mut share: Vec<f64> = s.iter().map(|x| x.cpu_share).collect();
        let (ms, cs) = (spread(&mb), spread(&cpu));
        let ratio = match (m, next_of(n)) {
            (Mode::Push, Some(j)) => {
                // Per run: push against the next measured in the same round.
                let mut r: Vec<f64> = s
                    .iter()
                    .zip(&samples[j])
                    .map(|(p, q)| p.cpu_s_per_gb / q.cpu_s_per_gb)
                    .collect();
                let rs = spread(&r);
                if cli.runs > 1 && rs.0 <= 1.0 && rs.1 >= 1.0 {
                    warnings.push(format!(
                        "push with {n} clients: the per-run push/next ratios spread over \
                         {:.2}-{:.2}, across 1: this run cannot tell which costs more; use more \
                         --runs or a quieter machine",
                        rs.0, rs.1
                    ));
                }
                format!("{:.2} [{:.2}-{:.2}]", median(&mut r), rs.0, rs.1)
            }
            _ => String::new(),
        };
        println!(
            "{:>6}  {:>7}  {:>8.0} [{:>5.0}-{:>5.0}]  {:>8.2} [{:>6.2}-{:>6.2}]  {:>9.0}%  {:>20}",
            m.name(),
            n,
            median(&mut mb),
            ms.0,
            ms.1,
            median(&mut cpu),
            cs.0,
            cs.1,
            100.0 * median(&mut share),
            ratio
        );
    }
    println!("(farm CPU = utime+stime of farmspydaemon from /proc/PID/stat, % of one core; s/GB = farm CPU seconds per 10^9 bytes served to all clients; {} runs per case)", cli.runs);
    for w in warnings {
        println!("warning: {w}");
    }
    Ok(())
}
