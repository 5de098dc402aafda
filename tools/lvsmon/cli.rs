use std::path::PathBuf;

use clap::Parser;
use daqproc::framework::ProcessArgs;

/// The health-check daemon: probes TCP, HTTP, banner, UDP services and other framework
/// processes from one non-blocking thread, publishes a row of variables per check
/// (check.NAME.status, .reason, .since, .fails, .last_ms, .checks, .ok), and announces only
/// state changes: the event log, a notify command, ipvsadm.
///
/// `lvsmon -n mon1 --file /etc/lvsmon.conf --interval 10` reads the file, then runs `init`
/// and `start` (unless -c commands are given: then those run instead). SIGHUP or
/// `shvar cmd mon1 reload` reads the file again; a bad file changes nothing. See docs/lvsmon.md.
#[derive(Debug, Parser)]
#[command(name = "lvsmon", version)]
pub struct Cli {
    /// The checks file (TOML; see docs/lvsmon.md)
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: PathBuf,
    /// Default probe interval: seconds, or with a unit (500ms, 1m)
    #[arg(short = 'i', long, value_name = "SECONDS", default_value = "10")]
    pub interval: String,
    /// When started as root: become USER once the region, FIFO and socket are open (not with ipvs actions)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}

impl Cli {
    /// The interval in ms, or why not.
    pub fn interval_ms(&self) -> Result<u64, String> {
        match daqproc::daemons::lvsmon::config::parse_duration_ms(&self.interval) {
            Some(ms) if (10..=86_400_000).contains(&ms) => Ok(ms),
            _ => Err(format!(
                "--interval {}: not a duration from 10ms to 1 day (write e.g. 10, 500ms, 1m)",
                self.interval
            )),
        }
    }
}
