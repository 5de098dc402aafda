//! `startbench`: how long a cold `shvar get` takes, beside a trivial Rust program and `/bin/true`,
//! in the same run (issue 19, goal 4).
//!
//! Starts a `ticker` in a runtime directory of its own, builds the trivial program with the
//! machine's `rustc` (optimised and stripped like our release binaries), then runs the three
//! commands in turn, round after round (interleaved, so a change of load hits all three alike),
//! and prints each one's median, p99 and spread with the ratios of the medians:
//!
//! ```text
//! cargo build --release && target/release/startbench --runs 2000
//! ```
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

/// Time a cold `shvar get` against a trivial Rust binary and /bin/true, interleaved.
#[derive(Debug, Parser)]
#[command(name = "startbench", version)]
struct Cli {
    /// Rounds (each runs every command once)
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Rounds run first and not counted
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// The rustc that builds the trivial program
    #[arg(long, default_value = "rustc")]
    rustc: PathBuf,
    #[command(flatten)]
    extras: daqproc::support::cli::Extras,
}

const TRIVIAL: &str = r#"fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() > 5 { println!("{}", a[1]); }
}
"#;

use daqproc::support::cli::sibling;

struct Ticker(std::process::Child);

impl Drop for Ticker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn quiet(c: &mut Command) -> &mut Command {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

fn time_once(cmd: &mut Command) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let st = cmd.status().context("running a command")?;
    let d = t.elapsed();
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(d)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() -> anyhow::Result<()> {
    let cli = daqproc::support::cli::parse::<Cli>();
    if cli.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let work = tempfile::Builder::new()
        .prefix("startbench")
        .tempdir()
        .context("making a temporary directory")?;
    let dir = work.path().join("run");
    std::fs::create_dir(&dir)?;
    let shvar = sibling("shvar")?;
    let trivial = work.path().join("trivial");
    let src = work.path().join("trivial.rs");
    std::fs::write(&src, TRIVIAL)?;
    let st = Command::new(&cli.rustc)
        .args(["-O", "-C", "strip=debuginfo", "-o"])
        .arg(&trivial)
        .arg(&src)
        .status()
        .with_context(|| {
            format!(
                "running {} (give another with --rustc)",
                cli.rustc.display()
            )
        })?;
    if !st.success() {
        bail!(
            "{} could not build the trivial program: {st}",
            cli.rustc.display()
        );
    }
    let _ticker = Ticker(
        quiet(Command::new(sibling("ticker")?).args(["-n", "t1", "-c", "init"]))
            .env("SHVAR_DIR", &dir)
            .spawn()
            .context("starting ticker")?,
    );
    // Ready when its runstate reads INIT_STATE.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new(&shvar)
            .args(["get", "t1", "runstate"])
            .env("SHVAR_DIR", &dir)
            .output()?;
        if out.status.success() && out.stdout.starts_with(b"INIT_STATE") {
            break;
        }
        if Instant::now() > deadline {
            bail!("ticker t1 did not reach INIT_STATE within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut cmds: Vec<(String, Command)> = Vec::new();
    let mut get = Command::new(&shvar);
    get.args(["get", "t1", "runstate"]).env("SHVAR_DIR", &dir);
    cmds.push(("shvar get t1 runstate".into(), get));
    cmds.push(("trivial Rust binary".into(), Command::new(&trivial)));
    cmds.push(("/bin/true".into(), Command::new(Path::new("/bin/true"))));
    for (_, c) in &mut cmds {
        quiet(c);
    }
    let mut times = vec![Vec::with_capacity(cli.runs); cmds.len()];
    for round in 0..cli.warmup + cli.runs {
        for (i, (_, c)) in cmds.iter_mut().enumerate() {
            let d = time_once(c)?;
            if round >= cli.warmup {
                times[i].push(d);
            }
        }
    }
    println!(
        "{} rounds, interleaved, after {} warm-up rounds (wall time of fork+exec+wait)",
        cli.runs, cli.warmup
    );
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>9}",
        "command", "median", "p99", "min", "max"
    );
    let mut med = Vec::new();
    for ((name, _), t) in cmds.iter().zip(&mut times) {
        t.sort();
        let m = pct(t, 0.5);
        med.push(m);
        println!(
            "{name:<24} {:>7.0}us {:>7.0}us {:>7.0}us {:>7.0}us",
            us(m),
            us(pct(t, 0.99)),
            us(t[0]),
            us(t[t.len() - 1])
        );
    }
    let r_triv = us(med[0]) / us(med[1]);
    let r_true = us(med[0]) / us(med[2]);
    println!("shvar get / trivial Rust binary: {r_triv:.2}x (goal <= 1.10x)");
    println!("shvar get / /bin/true:           {r_true:.2}x (goal <= 1.30x)");
    Ok(())
}
