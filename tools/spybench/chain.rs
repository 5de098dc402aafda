//! The chain under test: a producer thread writes self-checking events into a farm buffer,
//! farmspydaemon and rspydaemon (real processes) carry them into a local buffer, a lossless
//! reader checks every byte. The producer stays at most a window of events ahead of the
//! reader, so no CPU goes into events nobody will read.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use daqproc::daemons::payload;
use shvars::circ::{CircWriter, LosslessReader, ReadTimeoutError};
use shvars::region::RegionReader;
use shvars::{ProcName, RuntimeDir};

use crate::cli::Cli;

pub struct Measure {
    pub mb_per_s: f64,
    pub events_per_s: f64,
    pub events: u64,
    /// Where the CPU went while it ran, seconds per 10^9 bytes delivered.
    pub cpu: CpuPerGb,
}

/// CPU seconds per 10^9 bytes delivered through the chain, by part, over one measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuPerGb {
    pub farm: f64,
    pub rspy: f64,
    pub producer: f64,
    pub verifier: f64,
    /// Software interrupts (on loopback, much of TCP), from /proc/stat. Whether this time is
    /// also in the tasks' utime+stime depends on the kernel (here it is: `other` came out as
    /// minus this when it was added to the parts), so it is a share shown for information,
    /// not a part added to the others.
    pub softirq: f64,
    /// The whole machine busy (all CPUs, /proc/stat): what the throughput is bound by when
    /// idle is near 0.
    pub busy: f64,
    /// Busy, but in none of the four tasks (other processes, spybench's other threads,
    /// interrupt time the kernel charges to no task); near 0 when the tasks are all there is.
    pub other: f64,
    /// Idle.
    pub idle: f64,
}

/// CPU times of the chain's parts at one instant.
#[derive(Debug, Clone, Copy)]
struct Times {
    farm: f64,
    rspy: f64,
    producer: f64,
    verifier: f64,
    machine: crate::procstat::Machine,
}

pub struct Chain {
    _tmp: tempfile::TempDir,
    children: Vec<Child>,
    stop: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
    /// Thread ids of the producer and the verifier (0 until they started).
    tids: [Arc<AtomicI32>; 2],
    first_error: Arc<parking_lot::Mutex<Option<String>>>,
}

pub(crate) use daqproc::support::cli::sibling;

/// A thread with a name (`top -H`, `/proc/PID/task/*/comm` show which one is busy).
fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .expect("spawning a thread")
}

pub(crate) fn wait_for(what: &str, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while !f() {
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

pub(crate) fn var(dir: &RuntimeDir, name: &str, v: &str) -> Option<i64> {
    let r = RegionReader::open(dir, &ProcName::new(name).ok()?).ok()?;
    Some(r.int(v).ok()?.get())
}

impl Chain {
    pub fn start(size: usize, cli: &Cli) -> anyhow::Result<Chain> {
        let tmp = tempfile::Builder::new().prefix("spybench").tempdir_in(
            if Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            },
        )?;
        let dir = RuntimeDir::at(tmp.path());
        let farm_path = tmp.path().join("FARM");
        let mut w =
            CircWriter::create(&farm_path, cli.circsize).context("creating the farm buffer")?;
        let mut children = Vec::new();
        let tmp_path = tmp.path().to_owned();
        let spawn = |bin: &str, args: &[&str]| -> anyhow::Result<Child> {
            Command::new(sibling(bin)?)
                .args(args)
                .env("SHVAR_DIR", &tmp_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {bin}"))
        };
        let nice = format!("set nice {}", cli.farm_nice);
        children.push(spawn(
            "farmspydaemon",
            &[
                "-n",
                "bfarm",
                "-c",
                "init FARM",
                "-c",
                "set port 0",
                "-c",
                &nice,
                "-c",
                "start",
            ],
        )?);
        let mut chain = Chain {
            _tmp: tmp,
            children,
            stop: Arc::new(AtomicBool::new(false)),
            hold: Arc::new(AtomicBool::new(true)),
            delivered: Arc::new(AtomicU64::new(0)),
            bytes: Arc::new(AtomicU64::new(0)),
            errors: Arc::new(AtomicU64::new(0)),
            threads: Vec::new(),
            tids: [Arc::new(AtomicI32::new(0)), Arc::new(AtomicI32::new(0))],
            first_error: Arc::new(parking_lot::Mutex::new(None)),
        };
        wait_for("farmspydaemon to listen", || {
            var(&dir, "bfarm", "runstate") == Some(2)
        })?;
        let port = var(&dir, "bfarm", "port").context("farm port")?;
        let circ = format!("set circsize {}", cli.circsize);
        let mode = format!("set mode {}", cli.mode);
        let maxage = format!("set maxage_ms {}", cli.maxage_ms);
        let start = format!("start 127.0.0.1 {port}");
        chain.children.push(spawn(
            "rspydaemon",
            &[
                "-n",
                "bspy",
                "-c",
                &circ,
                "-c",
                &mode,
                "-c",
                &maxage,
                "-c",
                "init LOCAL",
                "-c",
                &start,
            ],
        )?);
        wait_for("rspydaemon to connect", || {
            var(&dir, "bspy", "no_conn") == Some(0)
        })?;
        let local = dir.path().join("LOCAL");
        let mut reader = LosslessReader::open(&local).context("opening the local buffer")?;

        // Producer: keeps at most `window` events ahead of the reader: half the farm buffer,
        // more than rspydaemon keeps in flight (two requests of at most 8 MiB: a quarter of the
        // default 64 MiB), so the chain is not starved by the producer's own limit, and far
        // from overwriting events the farm has not sent.
        let window = ((cli.circsize as usize / 2) / (size + 64)).max(4) as u64;
        let (stop, hold, delivered, tid) = (
            chain.stop.clone(),
            chain.hold.clone(),
            chain.delivered.clone(),
            chain.tids[0].clone(),
        );
        chain.threads.push(spawn_named("producer", move || {
            tid.store(nix::unistd::gettid().as_raw(), Ordering::Relaxed);
            let mut evnr = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if hold.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                if evnr >= delivered.load(Ordering::Relaxed) + window {
                    // Far enough ahead: wait without taking a core from the chain.
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                evnr += 1;
                match w.reserve(evnr, size) {
                    Ok(mut r) => {
                        payload::fill(evnr, r.buf());
                        r.commit();
                    }
                    Err(_) => return,
                }
            }
        }));
        // Reader: checks order and every byte.
        let (stop, delivered, bytes, errors, first, tid) = (
            chain.stop.clone(),
            chain.delivered.clone(),
            chain.bytes.clone(),
            chain.errors.clone(),
            chain.first_error.clone(),
            chain.tids[1].clone(),
        );
        chain.threads.push(spawn_named("verifier", move || {
            tid.store(nix::unistd::gettid().as_raw(), Ordering::Relaxed);
            let mut last = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // In place: verify the bytes where they are, then release the event.
                match reader.peek_timeout(Duration::from_millis(100)) {
                    Ok(p) => {
                        let (evnr, len) = (p.evnr(), p.len());
                        let mut bad = if evnr <= last {
                            Some(format!("event {evnr} after {last}"))
                        } else {
                            payload::verify(evnr, p.bytes())
                                .err()
                                .map(|e| e.to_string())
                        };
                        if let Err(e) = p.finish() {
                            bad.get_or_insert(e.to_string());
                        }
                        if let Some(msg) = bad {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first.lock().get_or_insert(msg);
                        }
                        last = evnr;
                        bytes.fetch_add(len as u64, Ordering::Relaxed);
                        delivered.store(evnr, Ordering::Relaxed);
                    }
                    Err(ReadTimeoutError::Timeout) => {}
                    Err(e) => {
                        first.lock().get_or_insert(e.to_string());
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
        Ok(chain)
    }

    /// Runs the chain for `dur` after a short warm-up, and idles it again.
    pub fn measure(&mut self, dur: Duration) -> anyhow::Result<Measure> {
        self.hold.store(false, Ordering::Relaxed);
        let d0 = self.delivered.load(Ordering::Relaxed);
        wait_for("events through the chain", || {
            self.delivered.load(Ordering::Relaxed) > d0 + 10
        })?;
        std::thread::sleep(Duration::from_millis(200));
        let r = self.measure_running(dur);
        self.hold.store(true, Ordering::Relaxed);
        // Let it drain: the baseline runs on an idle machine.
        let t0 = Instant::now();
        let mut last = self.delivered.load(Ordering::Relaxed);
        while t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.delivered.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        r
    }

    /// The CPU times of the chain's parts now.
    fn times(&self) -> anyhow::Result<Times> {
        use crate::procstat::{cpu_seconds, Machine};
        let process = |i: usize| cpu_seconds(&format!("/proc/{}/stat", self.children[i].id()));
        let thread = |i: usize| {
            cpu_seconds(&format!(
                "/proc/self/task/{}/stat",
                self.tids[i].load(Ordering::Relaxed)
            ))
        };
        Ok(Times {
            farm: process(0).context("farmspydaemon's CPU time")?,
            rspy: process(1).context("rspydaemon's CPU time")?,
            producer: thread(0).context("the producer's CPU time")?,
            verifier: thread(1).context("the verifier's CPU time")?,
            machine: Machine::now()?,
        })
    }

    fn measure_running(&mut self, dur: Duration) -> anyhow::Result<Measure> {
        let c0 = self.times()?;
        let (e0, b0) = (
            self.delivered.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        );
        let t0 = Instant::now();
        std::thread::sleep(dur);
        let (e1, b1) = (
            self.delivered.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        );
        let secs = t0.elapsed().as_secs_f64();
        let c1 = self.times()?;
        if self.errors.load(Ordering::Relaxed) > 0 {
            bail!(
                "{} bad events; first: {}",
                self.errors.load(Ordering::Relaxed),
                self.first_error.lock().clone().unwrap_or_default()
            );
        }
        if e1 == e0 {
            let dir = RuntimeDir::at(self._tmp.path());
            let show = |n: &str, v: &str| {
                RegionReader::open(&dir, &ProcName::new(n).unwrap())
                    .ok()
                    .and_then(|r| r.find(v).ok().and_then(|x| r.read(&x).ok()))
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            };
            bail!(
                "no event went through the chain in {secs:.1} s (delivered up to {e1}; farm eventnr {}, clients {}; rspy lastevent {}, no_conn {}, lasterror {:?})",
                show("bfarm", "eventnr"),
                show("bfarm", "clients"),
                show("bspy", "lastevent"),
                show("bspy", "no_conn"),
                show("bspy", "lasterror")
            );
        }
        let gb = (b1 - b0) as f64 / 1e9;
        let m = c1.machine.since(c0.machine);
        let per = |a: f64, b: f64| (a - b) / gb;
        let (farm, rspy) = (per(c1.farm, c0.farm), per(c1.rspy, c0.rspy));
        let (producer, verifier) = (per(c1.producer, c0.producer), per(c1.verifier, c0.verifier));
        let busy = (m.total - m.idle) / gb;
        let cpu = CpuPerGb {
            farm,
            rspy,
            producer,
            verifier,
            softirq: m.softirq / gb,
            busy,
            other: busy - (farm + rspy + producer + verifier),
            idle: m.idle / gb,
        };
        Ok(Measure {
            mb_per_s: (b1 - b0) as f64 / secs / 1e6,
            events_per_s: (e1 - e0) as f64 / secs,
            events: e1 - e0,
            cpu,
        })
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        Ok(())
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
