//! `lvsbench`: lvsmon against blackbox_exporter, in one run, interleaved.
//!
//! Both probers run on CPU 0, one at a time (lvsmon is paused while blackbox_exporter is driven);
//! the local targets and blackbox_exporter's clients run on CPU 1. For TCP and for HTTP checks:
//! probes per second, CPU share, probes per CPU second, probe latency (median, p99), and the
//! ratio per CPU second. Then lvsmon alone with `--targets` checks at a 1 s interval: its CPU
//! share and memory.
#![forbid(unsafe_code)]

mod cli;
mod measure;
mod ours;
mod peer;
mod servers;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::time::Duration;

use measure::{median, quantile, Sample};
use servers::{Kind, Servers};

fn main() -> ExitCode {
    shvars::sys::default_sigpipe();
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvsbench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Sends `cmd` to lvsmon's control FIFO (fire and forget).
fn command(l: &ours::Lvsmon, dir: &std::path::Path, cmd: &str) -> anyhow::Result<()> {
    let _ = l;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(dir.join("bench.ctl"))?;
    f.write_all(format!("{cmd}\n").as_bytes())?;
    Ok(())
}

fn line(who: &str, s: &[Sample]) -> (f64, f64) {
    let rates: Vec<f64> = s.iter().map(|x| x.rate).collect();
    let cpus: Vec<f64> = s.iter().map(|x| x.cpu).collect();
    let per: Vec<f64> = s.iter().map(Sample::per_cpu).collect();
    let lat: Vec<f64> = s
        .iter()
        .flat_map(|x| x.latency_ms.iter().copied())
        .collect();
    let (lo, hi) = (
        rates.iter().copied().fold(f64::INFINITY, f64::min),
        rates.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "  {who:18} {:>10.0}  ({:>7.0} .. {:>7.0})  {:>6.0}%  {:>12.0}  {:>8.3}  {:>8.3}",
        median(&rates),
        lo,
        hi,
        100.0 * median(&cpus),
        median(&per),
        median(&lat),
        quantile(&lat, 0.99)
    );
    (median(&rates), median(&per))
}

fn rate_part(cli: &cli::Cli, kind: Kind) -> anyhow::Result<()> {
    let servers = Servers::start(kind, 16)?;
    let text = ours::checks_file(kind, &servers.addrs, cli.checks, "10ms");
    let ours = ours::Lvsmon::start(&text, 0)?;
    let dir = ours_dir(&ours);
    let bb = peer::Blackbox::start(&cli.blackbox, 0)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..cli.rounds {
        command(&ours, &dir, "resume")?;
        std::thread::sleep(Duration::from_millis(500));
        a.push(ours.measure(cli.secs));
        command(&ours, &dir, "pause")?;
        std::thread::sleep(Duration::from_millis(300));
        b.push(bb.measure(kind, &servers.addrs, cli.concurrency, cli.secs)?);
    }
    let what = match kind {
        Kind::Tcp => "TCP connect",
        Kind::Http => "HTTP GET 200",
    };
    println!(
        "{what} checks, {} targets on 16 ports:\n  {:18} {:>10}  {:>20}  {:>7}  {:>12}  {:>8}  {:>8}",
        cli.checks, "", "checks/s", "(min .. max)", "CPU", "per CPU-s", "lat ms", "p99 ms"
    );
    let (ra, pa) = line("lvsmon", &a);
    let (rb, pb) = line("blackbox_exporter", &b);
    println!(
        "  ratio lvsmon/blackbox: {:.1}x per CPU second, {:.1}x per wall second (load now {})\n",
        pa / pb,
        ra / rb,
        load()
    );
    Ok(())
}

fn ours_dir(o: &ours::Lvsmon) -> std::path::PathBuf {
    o.dir_path().to_path_buf()
}

fn scale_part(cli: &cli::Cli) -> anyhow::Result<()> {
    let servers = Servers::start(Kind::Tcp, 16)?;
    let one = ours::Lvsmon::start(&ours::checks_file(Kind::Tcp, &servers.addrs, 1, "1s"), 0)?;
    std::thread::sleep(Duration::from_secs(1));
    let rss1 = one.rss_kb();
    drop(one);
    let text = ours::checks_file(Kind::Tcp, &servers.addrs, cli.targets, "1s");
    let ours = ours::Lvsmon::start(&text, 0)?;
    // Let the first spread-out round pass.
    std::thread::sleep(Duration::from_millis(1500));
    let s: Vec<Sample> = (0..cli.rounds).map(|_| ours.measure(cli.secs)).collect();
    let cpus: Vec<f64> = s.iter().map(|x| x.cpu).collect();
    let rates: Vec<f64> = s.iter().map(|x| x.rate).collect();
    let rss = ours.rss_kb();
    println!(
        "{} TCP targets at a 1 s interval (lvsmon alone on CPU 0):\n  checks/s {:.0} (median); CPU {:.1}% of a core (median), {:.1}% (p99 of {} rounds)",
        cli.targets,
        median(&rates),
        100.0 * median(&cpus),
        100.0 * quantile(&cpus, 0.99),
        cli.rounds
    );
    println!(
        "  memory: RSS {} kB with {} checks, {} kB with 1: {:.0} bytes per check (heap, stacks and touched region pages); checker state {} B per check\n",
        rss,
        cli.targets,
        rss1,
        (rss.saturating_sub(rss1) as f64 * 1024.0) / cli.targets as f64,
        daqproc::daemons::lvsmon::engine::Table::bytes_per_check()
    );
    Ok(())
}

fn run(cli: &cli::Cli) -> anyhow::Result<()> {
    measure::pin(std::process::id(), 1)?;
    println!(
        "lvsbench: {} rounds of {:.1} s, interleaved; the probers on CPU 0, targets and clients on CPU 1; load before {}",
        cli.rounds,
        cli.secs,
        load()
    );
    for part in &cli.only {
        match part.as_str() {
            "tcp" => rate_part(cli, Kind::Tcp)?,
            "http" => rate_part(cli, Kind::Http)?,
            "scale" => scale_part(cli)?,
            other => anyhow::bail!("--only {other}: tcp, http or scale"),
        }
    }
    Ok(())
}
