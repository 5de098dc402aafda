//! `spybench`: the spy chain against raw TCP loopback, in one run, interleaved.
//!
//! For each event size: the baseline is raw TCP loopback throughput with writes of that size;
//! the chain is farm buffer -> farmspydaemon -> rspydaemon -> local buffer, with a lossless
//! reader verifying every event byte for byte. Prints medians and the ratio.
#![forbid(unsafe_code)]

mod chain;
mod cli;
mod fresh;
mod tcp;

use std::process::ExitCode;
use std::time::Duration;

fn median(v: &mut [f64]) -> f64 {
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
    let dur = Duration::from_secs_f64(cli.duration);
    println!(
        "spybench: {} runs of {:.1} s each, interleaved; mode {}; medians",
        cli.runs, cli.duration, cli.mode
    );
    println!(
        "{:>8}  {:>12}  {:>12}  {:>14}  {:>7}  {:>8}",
        "event", "raw TCP MB/s", "chain MB/s", "chain events/s", "ratio", "verified"
    );
    for &size in &cli.sizes {
        let mut chain = chain::Chain::start(size, cli)?;
        let mut base = Vec::new();
        let mut ours = Vec::new();
        let mut evs = Vec::new();
        let mut verified = 0;
        for _ in 0..cli.runs {
            base.push(tcp::measure(size, dur)?);
            let m = chain.measure(dur)?;
            ours.push(m.mb_per_s);
            evs.push(m.events_per_s);
            verified += m.events;
        }
        let (b, o, e) = (median(&mut base), median(&mut ours), median(&mut evs));
        println!(
            "{:>7}B  {:>12.0}  {:>12.0}  {:>14.0}  {:>6.0}%  {:>8}",
            size,
            b,
            o,
            e,
            100.0 * o / b,
            verified
        );
        chain.stop()?;
    }
    Ok(())
}
