//! `spydemo`: the whole spy chain, started, watched and stopped in one command.
#![forbid(unsafe_code)]

mod cli;

use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use daqproc::control::client;
use shvars::region::RegionReader;
use shvars::{ProcName, RuntimeDir};

fn main() -> ExitCode {
    shvars::sys::default_sigpipe();
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("spydemo: error: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut demo = match Demo::new() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("spydemo: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = demo.run(&cli, &stop);
    let stopped = demo.stop();
    match result.and(stopped) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spydemo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Demo {
    tmp: Option<tempfile::TempDir>,
    dir: RuntimeDir,
    children: Vec<(&'static str, Child)>,
}

use daqproc::support::cli::sibling;

fn value(dir: &RuntimeDir, name: &str, var: &str) -> String {
    ProcName::new(name)
        .ok()
        .and_then(|n| RegionReader::open(dir, &n).ok())
        .and_then(|r| {
            let v = r.find(var).ok()?;
            let val = r.read(&v).ok()?;
            Some(v.spec().display(&val))
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// Columns of the terminal (at most 100: the table is made for that), 100 when not a terminal.
fn terminal_width() -> usize {
    terminal_size::terminal_size()
        .map(|(w, _)| w.0 as usize)
        .unwrap_or(100)
        .clamp(40, 100)
}

impl Demo {
    fn new() -> anyhow::Result<Demo> {
        // $SHVAR_DIR when set: the demo runs there (and removes only what it made); else a
        // fresh directory, removed at the end.
        if let Some(d) = std::env::var_os("SHVAR_DIR").filter(|d| !d.is_empty()) {
            let dir = RuntimeDir::at(d);
            dir.ensure()?;
            return Ok(Demo {
                tmp: None,
                dir,
                children: Vec::new(),
            });
        }
        let base = if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let tmp = tempfile::Builder::new()
            .prefix("spydemo")
            .tempdir_in(base)
            .context("making a runtime directory")?;
        let dir = RuntimeDir::at(tmp.path());
        Ok(Demo {
            tmp: Some(tmp),
            dir,
            children: Vec::new(),
        })
    }

    fn spawn(
        &mut self,
        label: &'static str,
        bin: &str,
        args: &[&str],
        stderr_log: bool,
    ) -> anyhow::Result<()> {
        let mut c = Command::new(sibling(bin)?);
        c.args(args)
            .env("SHVAR_DIR", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if stderr_log {
            let log = std::fs::File::create(self.dir.path().join(format!("{label}.log")))?;
            c.stderr(log);
        } else {
            c.stderr(Stdio::null());
        }
        let child = c.spawn().with_context(|| format!("starting {bin}"))?;
        self.children.push((label, child));
        Ok(())
    }

    fn wait_for(&mut self, what: &str, f: impl Fn(&RuntimeDir) -> bool) -> anyhow::Result<()> {
        let t0 = Instant::now();
        while !f(&self.dir) {
            for (label, c) in &mut self.children {
                if let Ok(Some(st)) = c.try_wait() {
                    let log = std::fs::read_to_string(self.dir.path().join(format!("{label}.log")))
                        .unwrap_or_default();
                    bail!("{label} exited ({st}) while waiting for {what}:\n{log}");
                }
            }
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("timed out waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn run(&mut self, cli: &cli::Cli, stop: &AtomicBool) -> anyhow::Result<()> {
        let running = |name: &'static str| {
            move |d: &RuntimeDir| value(d, name, "runstate") == "RUNNING_STATE"
        };
        println!(
            "runtime directory: {}  (SHVAR_DIR={} shvar list)",
            self.dir, self.dir
        );
        let rate = cli.rate.to_string();
        self.spawn(
            "gen1",
            "evgen",
            &[
                "-n",
                "gen1",
                "--buffer",
                "B_1_1",
                "--circsize",
                "16M",
                "--size",
                &cli.size,
                "--rate",
                &rate,
            ],
            true,
        )?;
        self.wait_for("evgen", running("gen1"))?;
        self.spawn(
            "farm1",
            "farmspydaemon",
            &[
                "-n",
                "farm1",
                "-c",
                "init B_1_1",
                "-c",
                "set port 0",
                "-c",
                "start",
            ],
            true,
        )?;
        self.wait_for("farmspydaemon", running("farm1"))?;
        let port = value(&self.dir, "farm1", "port");
        let start = format!("start localhost {port}");
        self.spawn(
            "spy1",
            "rspydaemon",
            &["-n", "spy1", "-c", "init L_1_1", "-c", &start],
            true,
        )?;
        self.wait_for("rspydaemon", |d| value(d, "spy1", "no_conn") == "0")?;
        let spycat_log = self.dir.path().join("spycat.log");
        self.spawn(
            "spycat",
            "spycat",
            &["--follow", "--verify", "--stats", "-q", "L_1_1"],
            true,
        )?;
        println!("chain: evgen gen1 -> B_1_1 -> farmspydaemon farm1 (port {port}) -> rspydaemon spy1 -> L_1_1 -> spycat --verify");
        let width = terminal_width();
        let fit = |line: String| -> String {
            if line.chars().count() > width {
                line.chars().take(width).collect()
            } else {
                line
            }
        };
        println!(
            "{}",
            fit(format!(
                "{:>5} | {:>10} {:>7} | {:>7} {:>10} | {:>9} {:>10} {:>7} {:>8}",
                "time",
                "produced",
                "per s",
                "clients",
                "served up",
                "connected",
                "received",
                "lost",
                "timeouts"
            ))
        );
        println!(
            "{}",
            fit(format!(
                "{:>5} | {:>18} | {:>18} | {:>37}",
                "", "evgen gen1", "farmspydaemon farm1", "rspydaemon spy1"
            ))
        );
        let t0 = Instant::now();
        while !stop.load(Ordering::Relaxed)
            && (cli.seconds == 0 || t0.elapsed() < Duration::from_secs(cli.seconds))
        {
            std::thread::sleep(Duration::from_millis(1000));
            // Ctrl-C reaches the whole process group: the children may be ending on their own
            // already, which is no failure.
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let d = &self.dir;
            let cat = std::fs::read_to_string(&spycat_log)
                .unwrap_or_default()
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_owned();
            let connected = if value(d, "spy1", "no_conn") == "0" {
                "yes"
            } else {
                "no"
            };
            println!(
                "{}",
                fit(format!(
                    "{:>4.0}s | {:>10} {:>7} | {:>7} {:>10} | {:>9} {:>10} {:>7} {:>8}",
                    t0.elapsed().as_secs_f64(),
                    value(d, "gen1", "events"),
                    value(d, "gen1", "rate").split('.').next().unwrap_or("-"),
                    value(d, "farm1", "clients"),
                    value(d, "farm1", "eventnr"),
                    connected,
                    value(d, "spy1", "lastevent"),
                    value(d, "spy1", "lost"),
                    value(d, "spy1", "timeouts"),
                ))
            );
            if !cat.trim().is_empty() {
                println!("{}", fit(format!("      spycat: {}", cat.trim())));
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some((label, st)) = self
                .children
                .iter_mut()
                .find_map(|(l, c)| c.try_wait().ok().flatten().map(|s| (*l, s)))
            {
                bail!("{label} exited unexpectedly ({st}); see its log above");
            }
        }
        Ok(())
    }

    /// Tells every process to exit (reverse order), waits, and removes the directory.
    fn stop(&mut self) -> anyhow::Result<()> {
        println!("stopping: spycat, spy1, farm1, gen1");
        let mut failed = Vec::new();
        while let Some((label, mut child)) = self.children.pop() {
            let asked = if label == "spycat" {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                )
                .is_ok()
            } else {
                let n = ProcName::new(label).expect("a valid name");
                client::send(&self.dir, &n, "exit", Duration::from_secs(5)).is_ok()
            };
            let t0 = Instant::now();
            let status = loop {
                match child.try_wait() {
                    Ok(Some(st)) => break Some(st),
                    _ if t0.elapsed() > Duration::from_secs(5) || !asked => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            if label == "spycat" {
                let log =
                    std::fs::read_to_string(self.dir.path().join("spycat.log")).unwrap_or_default();
                for l in log
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    println!("{l}");
                }
            }
            match status {
                Some(st) if st.success() => {}
                Some(st) => failed.push(format!("{label} exited with {st}")),
                None => failed.push(format!("{label} did not exit in time and was killed")),
            }
        }
        if let Some(tmp) = self.tmp.take() {
            let path = tmp.path().to_owned();
            tmp.close()
                .with_context(|| format!("removing {}", path.display()))?;
        } else {
            // In $SHVAR_DIR: the processes removed their own files; the logs are ours.
            for l in ["gen1", "farm1", "spy1", "spycat"] {
                let _ = std::fs::remove_file(self.dir.path().join(format!("{l}.log")));
            }
            // The regions the exited processes left (their last values): removed while we
            // hold their lock, so a process of the same name started meanwhile keeps its own.
            for l in ["gen1", "farm1", "spy1"] {
                let path = self.dir.path().join(format!("{l}.shv"));
                if let Ok(f) = std::fs::File::open(&path) {
                    if f.try_lock().is_ok() {
                        let _ = std::fs::remove_file(&path);
                        let _ = std::fs::remove_file(self.dir.path().join(format!("{l}.ctl")));
                    }
                }
            }
        }
        if failed.is_empty() {
            println!("all stopped, nothing left behind");
            Ok(())
        } else {
            bail!("{}", failed.join("; "))
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
