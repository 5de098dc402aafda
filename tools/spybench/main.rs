//! `spybench`: the spy chain against raw TCP loopback, in one run, interleaved.
//!
//! For each event size: the baseline is raw TCP loopback throughput with writes of that size;
//! the chain is farm buffer -> farmspydaemon -> rspydaemon -> local buffer, with a lossless
//! reader verifying every event byte for byte. Prints, per size, the medians over the runs, the
//! spread (min-max) of each and of the per-run ratio, the number of runs, and a warning when
//! the ratio's spread is wider than its distance from 100% (the effect reported): then the
//! run says little, and needs more runs or a quieter machine. Then where the chain's CPU went:
//! each part's CPU seconds per GB delivered (farmspydaemon, rspydaemon, the producer, the
//! verifier, software interrupts, idle), and the throughput those costs allow on this
//! machine's CPUs with none idle. `--zerocopy` measures sendfile and MSG_ZEROCOPY against write
//! instead (`zerocopy.rs`).
#![forbid(unsafe_code)]

mod chain;
mod cli;
mod cpu;
mod fresh;
mod procstat;
mod tcp;
mod zerocopy;

use std::process::ExitCode;
use std::time::Duration;

/// Min and max.
pub(crate) fn spread(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> ExitCode {
    shvars::sys::default_sigpipe();
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spybench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &cli::Cli) -> anyhow::Result<()> {
    if cli.freshness {
        return fresh::run(cli);
    }
    if cli.cpu {
        return cpu::run(cli);
    }
    if cli.zerocopy {
        return zerocopy::run(cli);
    }
    let dur = Duration::from_secs_f64(cli.duration);
    println!(
        "spybench: {} runs of {:.1} s each, interleaved; mode {}; medians",
        cli.runs, cli.duration, cli.mode
    );
    println!(
        "{:>8}  {:>22}  {:>22}  {:>14}  {:>16}  {:>8}",
        "event",
        "raw TCP MB/s [min-max]",
        "chain MB/s [min-max]",
        "chain events/s",
        "ratio [min-max]",
        "verified"
    );
    let mut warnings = Vec::new();
    let mut cpu_rows = Vec::new();
    for &size in &cli.sizes {
        let mut chain = chain::Chain::start(size, cli)?;
        let mut base = Vec::new();
        let mut ours = Vec::new();
        let mut evs = Vec::new();
        let mut ratios = Vec::new();
        let mut verified = 0;
        let mut cpus = Vec::new();
        for _ in 0..cli.runs {
            base.push(tcp::measure(size, dur)?);
            let m = chain.measure(dur)?;
            ratios.push(100.0 * m.mb_per_s / base[base.len() - 1]);
            ours.push(m.mb_per_s);
            evs.push(m.events_per_s);
            verified += m.events;
            cpus.push(m.cpu);
        }
        cpu_rows.push((size, cpus));
        let (bs, os, rs) = (spread(&base), spread(&ours), spread(&ratios));
        let (b, o, e) = (median(&mut base), median(&mut ours), median(&mut evs));
        // The median of the per-run ratios (each run's chain against the baseline measured
        // just before it), within their spread.
        let r = median(&mut ratios);
        println!(
            "{:>7}B  {:>8.0} [{:>5.0}-{:>5.0}]  {:>8.0} [{:>5.0}-{:>5.0}]  {:>14.0}  {:>4.0}% [{:>3.0}-{:>3.0}]  {:>8}",
            size, b, bs.0, bs.1, o, os.0, os.1, e, r, rs.0, rs.1, verified
        );
        if cli.runs > 1 && rs.1 - rs.0 > (r - 100.0).abs() {
            warnings.push(format!(
                "{size} B: the per-run ratios spread over {:.0}-{:.0}%, wider than the {:+.0}% the \
                 median ratio differs from raw TCP: this run cannot tell; use more --runs or a \
                 quieter machine",
                rs.0,
                rs.1,
                r - 100.0
            ));
        }
        chain.stop()?;
    }
    println!("({} runs per size; ratio = median of the per-run chain / raw TCP ratios, >100%: the chain is faster)", cli.runs);
    print_cpu(&cpu_rows);
    for w in warnings {
        println!("warning: {w}");
    }
    Ok(())
}

/// Where the chain's CPU went, per size: medians over the runs of each part's CPU seconds per
/// GB delivered, and the throughput those costs allow on this machine's CPUs with none idle.
fn print_cpu(rows: &[(usize, Vec<chain::CpuPerGb>)]) {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\nwhere the chain's CPU went: CPU seconds per GB delivered (medians); bound = {ncpu} CPUs / busy"
    );
    println!(
        "{:>8}  {:>5}  {:>5}  {:>8}  {:>8}  {:>7}  {:>5}  {:>5}  {:>5}  {:>11}",
        "event",
        "farm",
        "rspy",
        "producer",
        "verifier",
        "softirq",
        "other",
        "busy",
        "idle",
        "bound"
    );
    for (size, v) in rows {
        let m = |f: fn(&chain::CpuPerGb) -> f64| {
            let mut x: Vec<f64> = v.iter().map(f).collect();
            median(&mut x)
        };
        let busy = m(|c| c.busy);
        println!(
            "{:>7}B  {:>5.2}  {:>5.2}  {:>8.2}  {:>8.2}  {:>7.2}  {:>5.2}  {:>5.2}  {:>5.2}  {:>6.0} MB/s",
            size,
            m(|c| c.farm),
            m(|c| c.rspy),
            m(|c| c.producer),
            m(|c| c.verifier),
            m(|c| c.softirq),
            m(|c| c.other),
            busy,
            m(|c| c.idle),
            ncpu as f64 / busy * 1e3
        );
    }
    println!(
        "(farm, rspy: farmspydaemon's and rspydaemon's utime+stime; producer, verifier: \
         spybench's threads; busy, idle and softirq: the whole machine, from /proc/stat; other: \
         busy less the four; softirq is a share of busy, which may also be inside the tasks' times)"
    );
}
