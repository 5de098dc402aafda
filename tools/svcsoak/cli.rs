use clap::Parser;

/// The svcshare soak: three svcshare peers with stamped proxies in front of one resource that
/// checks fencing tokens, handing the resource over ≥ 10,000 times (local peers, then etcd
/// peers), with kill -9 and SIGSTOP of the holder along the way. Prints overlaps (must be 0),
/// stale writes refused by the resource, hand-over and fail-over times (median, p99), and the
/// time of one local lease acquire+release.
///
/// Not a test: run it on a quiet machine, release build: `cargo run --release --bin svcsoak`.
#[derive(Debug, Parser)]
#[command(name = "svcsoak", version)]
pub struct Cli {
    /// Grants (hand-overs) with local peers (0: skip)
    #[arg(long, value_name = "N", default_value = "10000")]
    pub grants: u64,
    /// Grants with etcd peers (0: skip)
    #[arg(long, value_name = "N", default_value = "10000")]
    pub etcd_grants: u64,
    /// The etcd server binary (started on loopback ports, data in a temp dir)
    #[arg(long, value_name = "PATH", default_value = "/usr/bin/etcd")]
    pub etcd_bin: String,
    /// Kill -9 or SIGSTOP the holder every N grants (alternately)
    #[arg(long, value_name = "N", default_value = "500")]
    pub fail_every: u64,
    /// Local lease acquire+release pairs timed in-process
    #[arg(long, value_name = "N", default_value = "100000")]
    pub lock_rounds: u64,
    /// Seed of the random schedule
    #[arg(long, value_name = "N", default_value = "1")]
    pub seed: u64,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
