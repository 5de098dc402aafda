//! `cabench`: cagateway against the C IOC (softioc) and caproto's IOC, in one run, by the same
//! client: read round trip (median, p99), monitor updates per second to 1 and 10 clients;
//! then the gateway's memory with 10,000 variables and 10 clients monitoring 1,000 each.
#![forbid(unsafe_code)]

mod cli;
mod client;
mod servers;

use std::process::ExitCode;
use std::time::Duration;

use client::Client;
use servers::{Kind, Server};
use shvars::RuntimeDir;

fn main() -> ExitCode {
    shvars::sys::default_sigpipe();
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cabench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Figures of one server.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    rt_median: Duration,
    rt_p99: Duration,
    rate1: f64,
    rate10: f64,
    rss_kib: u64,
}

/// Monitor updates per second delivered to `clients` clients each monitoring every counter.
fn monitor_rate(s: &Server, clients: usize, secs: f64) -> anyhow::Result<f64> {
    let names = s.names.clone();
    let port = s.port;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let names = names.clone();
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let mut c = Client::connect(port)?;
                let sids = c.create(&names)?;
                c.subscribe(&sids)?;
                // The first update of each subscription, and a settling second, not counted.
                c.count_updates(Duration::from_secs(1))?;
                c.count_updates(Duration::from_secs_f64(secs))
            })
        })
        .collect();
    let mut total = 0;
    for t in threads {
        total += t
            .join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
    }
    Ok(total as f64 / secs)
}

fn measure(s: &Server, cli: &cli::Cli) -> anyhow::Result<Figures> {
    let mut c = Client::connect(s.port)?;
    let sids = c.create(&s.names[..1])?;
    for _ in 0..100 {
        c.read(sids[0])?;
    }
    let mut rt: Vec<Duration> = (0..cli.reads)
        .map(|_| c.read(sids[0]))
        .collect::<anyhow::Result<_>>()?;
    rt.sort();
    drop(c);
    let rate1 = monitor_rate(s, 1, cli.secs)?;
    let rate10 = monitor_rate(s, 10, cli.secs)?;
    Ok(Figures {
        rt_median: quantile(&rt, 0.5),
        rt_p99: quantile(&rt, 0.99),
        rate1,
        rate10,
        rss_kib: s.rss_kib(),
    })
}

fn run(cli: &cli::Cli) -> anyhow::Result<()> {
    if ![10.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.1].contains(&cli.rate) {
        anyhow::bail!(
            "--rate {}: give one of EPICS' scan rates 10, 5, 2, 1, 0.5, 0.2, 0.1 (the C IOC's records scan at it)",
            cli.rate
        );
    }
    let kinds: Vec<Kind> = [Kind::Gateway, Kind::SoftIoc, Kind::Caproto]
        .into_iter()
        .filter(|k| cli.only.is_empty() || cli.only.iter().any(|o| o == k.name()))
        .collect();
    let tmp = tempfile::Builder::new().prefix("cabench").tempdir()?;
    let dir = RuntimeDir::at(tmp.path());
    println!(
        "cabench: {} counters changing {} times a second each ({} changes/s offered), load {}",
        cli.pvs,
        cli.rate,
        cli.pvs as f64 * cli.rate,
        load()
    );
    let mut results = Vec::new();
    for k in &kinds {
        let s = servers::start(*k, &dir, cli.pvs, cli.pvs, cli.rate)?;
        let f = match measure(&s, cli) {
            Ok(f) => f,
            Err(e) => {
                println!("{:8} failed: {e:#}", k.name());
                continue;
            }
        };
        println!(
            "{:8} read round trip median {:7.1} us  p99 {:7.1} us   monitor updates/s: 1 client {:9.0}  10 clients {:9.0}   RSS {:6} KiB",
            k.name(),
            us(f.rt_median),
            us(f.rt_p99),
            f.rate1,
            f.rate10,
            f.rss_kib
        );
        results.push((*k, f));
        drop(s);
    }
    if let (Some((_, g)), Some((_, c))) = (
        results.iter().find(|(k, _)| *k == Kind::Gateway),
        results.iter().find(|(k, _)| *k == Kind::SoftIoc),
    ) {
        println!(
            "gateway / C IOC: round trip {:.2}x (median), {:.2}x (p99); monitor rate {:.2}x (1 client), {:.2}x (10 clients)",
            us(g.rt_median) / us(c.rt_median),
            us(g.rt_p99) / us(c.rt_p99),
            g.rate1 / c.rate1,
            g.rate10 / c.rate10
        );
    }
    if kinds.contains(&Kind::Gateway) {
        // Memory: many variables, few of them changing, 10 clients monitoring a share each.
        let mem_dir = tmp.path().join("mem");
        std::fs::create_dir_all(&mem_dir)?;
        let dir = RuntimeDir::at(&mem_dir);
        let s = servers::start(Kind::Gateway, &dir, cli.mem_pvs, 100, 10.0)?;
        let idle = s.rss_kib();
        let names = s.names.clone();
        let per = cli.mem_monitors;
        let mut clients = Vec::new();
        for i in 0..10 {
            let mut c = Client::connect(s.port)?;
            let lo = (i * per) % names.len().max(1);
            let hi = (lo + per).min(names.len());
            let sids = c.create(&names[lo..hi])?;
            c.subscribe(&sids)?;
            c.count_updates(Duration::from_millis(500))?;
            clients.push(c);
        }
        std::thread::sleep(Duration::from_secs(1));
        for c in &mut clients {
            c.count_updates(Duration::from_millis(100))?;
        }
        let busy = s.rss_kib();
        println!(
            "gateway memory: {} variables served, RSS {idle} KiB; with 10 clients x {per} monitors: {busy} KiB ({:.0} bytes per monitor)",
            cli.mem_pvs,
            (busy.saturating_sub(idle) * 1024) as f64 / (10 * per) as f64
        );
    }
    Ok(())
}
