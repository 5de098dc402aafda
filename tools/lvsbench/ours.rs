//! lvsmon, the real binary, as the benchmark runs it: a checks file of many targets, pinned to
//! CPU 0, its progress read from its variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use shvars::region::{FloatReader, IntReader, RegionReader};
use shvars::{ProcName, RuntimeDir};

use crate::measure::{cpu_secs, pin, Sample};
use crate::servers::Kind;

/// A running lvsmon.
pub struct Lvsmon {
    child: Child,
    dir: tempfile::TempDir,
    done: IntReader,
    lasts: Vec<FloatReader>,
    _region: RegionReader,
}

/// The binary beside this one.
pub fn exe(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} not found: build it (cargo build --release)",
            p.display()
        );
    }
    Ok(p)
}

/// The checks file: `n` checks of `kind` spread over `addrs`.
pub fn checks_file(kind: Kind, addrs: &[SocketAddr], n: usize, interval: &str) -> String {
    let mut s = format!(
        "[defaults]\ninterval = \"{interval}\"\nconnect_timeout = \"2s\"\nrecv_timeout = \"2s\"\n"
    );
    for i in 0..n {
        let a = addrs[i % addrs.len()];
        match kind {
            Kind::Tcp => s.push_str(&format!(
                "[check.c{i}]\ntype = \"tcp\"\naddress = \"{a}\"\n"
            )),
            Kind::Http => s.push_str(&format!(
                "[check.c{i}]\ntype = \"http\"\nurl = \"http://{a}/health\"\n"
            )),
        }
    }
    s
}

impl Lvsmon {
    /// Starts lvsmon on `file`'s text, pinned to CPU `cpu`; returns once it has probed.
    pub fn start(text: &str, cpu: usize) -> anyhow::Result<Lvsmon> {
        let dir = tempfile::Builder::new().prefix("lvsbench").tempdir()?;
        let file = dir.path().join("checks.conf");
        std::fs::write(&file, text)?;
        // lvsmon refuses a checks file every user may write, whatever the umask left.
        std::fs::set_permissions(
            &file,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644),
        )?;
        let log = std::fs::File::create(dir.path().join("lvsmon.log"))?;
        let child = Command::new(exe("lvsmon")?)
            .args(["-n", "bench", "--file"])
            .arg(&file)
            .env("SHVAR_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting lvsmon")?;
        pin(child.id(), cpu)?;
        let rd = RuntimeDir::at(dir.path());
        let name = ProcName::new("bench")?;
        let t0 = Instant::now();
        let region = loop {
            if let Ok(r) = RegionReader::open(&rd, &name) {
                if r.is_alive() && r.find("checks_done_since_start").is_ok() {
                    break r;
                }
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("lvsmon did not start: {}", log_of(dir.path()));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let done = region.int("checks_done_since_start")?;
        let lasts = (0..200)
            .filter_map(|i| region.float(&format!("check.c{i}.last_ms")).ok())
            .collect();
        let me = Lvsmon {
            child,
            dir,
            done,
            lasts,
            _region: region,
        };
        let t0 = Instant::now();
        while me.done.get() == 0 {
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("lvsmon does not probe: {}", log_of(me.dir.path()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(me)
    }

    /// Its runtime directory.
    pub fn dir_path(&self) -> &Path {
        self.dir.path()
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Probes per second, CPU share and probe latencies over `secs`.
    pub fn measure(&self, secs: f64) -> Sample {
        let (d0, c0, t0) = (self.done.get(), cpu_secs(self.pid()), Instant::now());
        let mut latency_ms = Vec::new();
        let until = t0 + Duration::from_secs_f64(secs);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
            latency_ms.extend(self.lasts.iter().map(FloatReader::get).filter(|v| *v > 0.0));
        }
        let dt = t0.elapsed().as_secs_f64();
        Sample {
            rate: (self.done.get() - d0) as f64 / dt,
            cpu: (cpu_secs(self.pid()) - c0) / dt,
            latency_ms,
        }
    }

    /// Resident memory (kB) of the process.
    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid())
    }
}

/// VmRSS of `pid`, kB.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("lvsmon.log")).unwrap_or_default()
}

impl Drop for Lvsmon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
