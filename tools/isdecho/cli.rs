use clap::Parser;

/// The seed's echo worker: a transaction worker that answers each request with itself.
/// isectd starts it (`config worker echo localhost tp:/usr/bin/isdecho`) with the rendezvous
/// as its first four arguments; its own options come after them.
///
/// With --stdio PROGRAM ARGS... it is instead the adapter for a program that knows nothing of
/// the protocol: PROGRAM is started once; each request is written to its stdin as one line,
/// and the line it prints on stdout is the reply.
#[derive(Debug, Parser)]
#[command(name = "isdecho", version)]
pub struct Cli {
    /// isectd's host (given by isectd)
    pub host: String,
    /// isectd's worker port (given by isectd)
    pub port: u16,
    /// This worker's id (given by isectd)
    pub worker: u32,
    /// The login token (given by isectd)
    pub token: String,
    /// Reply in this many pieces (MORE set on all but the last)
    #[arg(long, default_value_t = 1)]
    pub pieces: usize,
    /// Wait this long before replying (milliseconds)
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Be the adapter for PROGRAM ARGS... (one line in, one line out per transaction)
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "PROGRAM")]
    pub stdio: Vec<String>,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
