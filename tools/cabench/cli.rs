use clap::Parser;

/// Channel Access benchmark: cagateway against the C IOC (pip softioc, which embeds EPICS
/// base's IOC and its RSRV server) and caproto's Python IOC, each serving the same counters on
/// loopback, measured by the same client in the same run: read round trip (median, p99) and
/// monitor updates per second to 1 and to 10 clients; then the gateway's memory with
/// `--mem-pvs` variables and 10 clients monitoring `--mem-monitors` each.
///
/// Needs target/release/cagateway and the Python environment of tests/prereqs.sh with softioc:
/// `target/pyenv/bin/pip install softioc`. See docs/ca.md.
#[derive(Debug, Parser)]
#[command(name = "cabench", version)]
pub struct Cli {
    /// Counters each server serves and updates (every client monitors all of them)
    #[arg(long, default_value = "1000")]
    pub pvs: usize,
    /// How often each counter changes, per second: one of EPICS' scan rates (10, 5, 2, 1, 0.5,
    /// 0.2, 0.1), which the C IOC's records use
    #[arg(long, default_value = "10")]
    pub rate: f64,
    /// Seconds each monitor measurement lasts
    #[arg(long, default_value = "3")]
    pub secs: f64,
    /// Reads for the round-trip figure
    #[arg(long, default_value = "2000")]
    pub reads: usize,
    /// Variables of the memory measurement
    #[arg(long, default_value = "10000")]
    pub mem_pvs: usize,
    /// Monitors of each of the 10 clients of the memory measurement
    #[arg(long, default_value = "1000")]
    pub mem_monitors: usize,
    /// Only these servers (gateway, softioc, caproto); default all
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
