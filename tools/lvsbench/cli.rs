use clap::Parser;

/// Measures lvsmon against Prometheus' blackbox_exporter in the same run: checks per second on
/// one core (CPU 0) for TCP and for HTTP checks against local servers (on CPU 1), the CPU each
/// spends per check, and lvsmon's CPU for many targets at a 1 s interval. Prints medians, p99
/// and ratios.
#[derive(Debug, Parser)]
#[command(name = "lvsbench", version)]
pub struct Cli {
    /// Measurements of each kind, interleaved (at least 5 for a median worth quoting)
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seconds per measurement
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Checks lvsmon runs for the rate measurements (each as often as it can)
    #[arg(long, default_value_t = 2000)]
    pub checks: usize,
    /// Concurrent requests to blackbox_exporter
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Targets of the scale measurement (one probe each per second)
    #[arg(long, default_value_t = 10_000)]
    pub targets: usize,
    /// Only these parts: tcp, http, scale (comma-separated)
    #[arg(long, value_delimiter = ',', default_values_t = ["tcp".to_owned(), "http".to_owned(), "scale".to_owned()])]
    pub only: Vec<String>,
    /// The blackbox_exporter program
    #[arg(long, default_value = "/usr/bin/prometheus-blackbox-exporter")]
    pub blackbox: String,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
