use std::path::PathBuf;

use clap::Parser;
use daqproc::framework::ProcessArgs;

/// The node supervisor and transaction broker: services, workers on the LAZY / IDLE / BUSY
/// queues, restarts with backoff, run-control fan-out (`send all start`), workers on other hosts
/// through isdexecd.
///
/// isectd is configured by commands (`isdclient -c "config service echo"`), given at start-up
/// with -c (repeatable) or --script FILE (one per line, # comments). A new isectd of the same
/// name adopts the workers and configuration of one that was killed (see docs/isectd.md).
#[derive(Debug, Parser)]
#[command(name = "isectd", version)]
pub struct Cli {
    #[command(flatten)]
    pub process: ProcessArgs,
    /// Commands to run at start-up, one per line (config, start, pause, ready, clone, buckets);
    /// not run when a saved configuration is adopted (see --fresh)
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// The key file shared with the isdexecd of other hosts (mode 0600, at least 16 bytes)
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Address to listen on for clients and transaction workers
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub listen: String,
    /// TCP port for clients (the seed's req_port; 0: any free port, shown in the variable)
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub req_port: u16,
    /// Ignore the saved state of a previous isectd of this name: adopt nothing, run --script
    #[arg(long)]
    pub fresh: bool,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
