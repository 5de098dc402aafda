use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use daqproc::framework::ProcessArgs;

/// Starts isectd's workers on this host: listens for an authenticated isectd (a shared key
/// file), runs only the programs --allow names, reports their pids, readiness and exits, and
/// logs every command line and pid.
#[derive(Debug, Parser)]
#[command(name = "isdexecd", version)]
pub struct Cli {
    #[command(flatten)]
    pub process: ProcessArgs,
    /// Address to listen on for isectd
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5502")]
    pub listen: SocketAddr,
    /// The key file shared with isectd (mode 0600, at least 16 bytes)
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// A program isectd may start here, by its exact path (repeatable)
    #[arg(long = "allow", value_name = "PATH", required = true)]
    pub allow: Vec<String>,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
