use clap::{Args, Parser, Subcommand};

/// isectd measured against its peers, in one run, interleaved: restart latency against
/// supervisord and s6 (apt-get install supervisor s6), `send all pause` to many tickers.
/// Medians, p99 and ratios; run it on a quiet machine, several times.
#[derive(Debug, Parser)]
#[command(name = "isdbench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub what: What,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}

#[derive(Debug, Subcommand)]
pub enum What {
    /// From `kill -9` of a worker to its replacement running: isectd, supervisord, s6-supervise
    Restart {
        /// Kills per supervisor
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// Seconds a worker stays up before it is killed (above s6's 1 s restart guard)
        #[arg(long, default_value_t = 1.2)]
        up: f64,
        /// Leave out a peer that is not installed instead of failing
        #[arg(long)]
        skip_missing: bool,
    },
    /// Transactions through isectd against a direct TCP round trip with the same framing
    Xact(XactArgs),
    /// `send all pause` (and `send all resume`) to N ticker workers, answered
    Pause {
        /// Ticker workers
        #[arg(long, default_value_t = 100)]
        workers: usize,
        /// Rounds of pause + resume
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
}

/// The options of `isdbench xact`.
#[derive(Debug, Args)]
pub struct XactArgs {
    /// Round trips measured each way
    #[arg(long, default_value_t = 20_000)]
    pub count: usize,
    /// Clients for the throughput
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Echo workers
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Seconds of throughput measurement
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Payload bytes
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Idle clients connected for the memory figure
    #[arg(long, default_value_t = 1000)]
    pub idle_clients: usize,
    /// Also measure isectd with this `busy_poll_us`, then with its workers polling as long
    /// (`worker_busy_poll_us`) beside a direct server polling alike (0: only with polling off,
    /// isectd's default). Below a round trip (about 25 us here) the pollers give up just
    /// before the next piece comes
    #[arg(long, default_value_t = 200)]
    pub busy_poll_us: u64,
    /// Idle clients kept connected while latency and throughput are measured (a node
    /// serving many mostly idle clients)
    #[arg(long, default_value_t = 0)]
    pub crowd: usize,
}
