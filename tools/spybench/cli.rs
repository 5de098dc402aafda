use clap::Parser;

/// Measures the spy chain (farm buffer -> farmspydaemon -> rspydaemon -> local buffer -> a
/// verifying reader) against raw TCP loopback with the same write size, in the same run.
#[derive(Debug, Parser)]
#[command(name = "spybench", version)]
pub struct Cli {
    /// Event sizes in bytes
    #[arg(long, value_delimiter = ',', default_values_t = [65536usize, 4096])]
    pub sizes: Vec<usize>,
    /// Measurements of each (at least 5 for a median worth quoting)
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Seconds per measurement
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
    /// Serving mode of rspydaemon: next, latest or push
    #[arg(long, default_value = "next")]
    pub mode: String,
    /// farmspydaemon's nice value in the chain (its own default is 10: below the builder, as
    /// KLOE ran it; 0 lets it compete with the bench's producer and verifier as an equal)
    #[arg(long, default_value_t = 10, allow_hyphen_values = true, value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub farm_nice: i32,
    /// Farm and local buffer size in bytes
    #[arg(long, default_value_t = 64 << 20)]
    pub circsize: u64,
    /// Measure freshness instead: ages of served events and fetch against read rates for a
    /// fast, a slow and a returning reader (`--duration` scales the phases)
    #[arg(long)]
    pub freshness: bool,
    /// Producer rate of the freshness measurement, events/s
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// rspydaemon's maxage_ms (in both measurements; 0: no age bound)
    #[arg(long, default_value_t = 500)]
    pub maxage_ms: u64,
    /// Measure what zero copy would give instead: raw TCP loopback with write, sendfile from a
    /// shared-memory file and MSG_ZEROCOPY, and whether bytes rewritten after each call returned
    /// reach the receiver (docs/spy-protocol.md, "Zero copy")
    #[arg(long)]
    pub zerocopy: bool,
    /// Measure the farm's CPU per MB served instead (clients in each mode, see --cpu-clients)
    #[arg(long)]
    pub cpu: bool,
    /// With --cpu: numbers of clients to measure
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4, 16])]
    pub cpu_clients: Vec<usize>,
    /// With --cpu: serving modes to measure (push is compared against next when both are)
    #[arg(long, value_delimiter = ',', default_values_t = ["next".to_owned(), "latest".to_owned(), "push".to_owned()])]
    pub cpu_modes: Vec<String>,
    /// With --cpu: events per second the producer writes
    #[arg(long, default_value_t = 20_000)]
    pub cpu_rate: u64,
    /// With --cpu: event size in bytes
    #[arg(long, default_value_t = 4096)]
    pub cpu_size: usize,
    /// With --cpu: the protocol version the clients speak (1: every event copied in the farm;
    /// 2: large events sent from the farm buffer with one copy)
    #[arg(long, default_value_t = daqproc::daemons::spy::proto::VERSION, value_parser = clap::value_parser!(u16).range(1..=2))]
    pub wire_version: u16,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
