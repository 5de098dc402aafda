use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use shvars::circ::StartAt;

/// Read the events of a circular buffer: a line per event (`EVNR SIZE ok|BAD`, the checksum of
/// an evgen payload), or the raw payloads.
///
/// Without --follow spycat reads what the buffer holds and exits; with --follow it waits for new
/// events, and when the producer dies or exits it waits for a producer to re-create the buffer
/// and re-attaches (from the oldest event of the new buffer). Ctrl-C (or SIGTERM) ends it
/// cleanly, with the summary of --stats.
///
/// Exit status: 0 ok, 1 the buffer cannot be read or --verify found a bad event, 2 bad usage.
#[derive(Debug, Parser)]
#[command(name = "spycat", version)]
pub struct Cli {
    /// The buffer: a bare name in the runtime directory, or an absolute path
    #[arg(value_name = "BUFFER")]
    pub buffer: String,
    /// Runtime directory [default: $SHVAR_DIR, else /dev/shm/shvars, else $XDG_RUNTIME_DIR/shvars]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Write the payloads themselves to stdout, back to back, instead of a line per event
    #[arg(long, conflicts_with = "quiet")]
    pub raw: bool,
    /// Print nothing per event (with --verify or --stats)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Stop after N events
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,
    /// Keep reading as events arrive; re-attach when the producer re-creates the buffer
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Register as a lossless reader: the producer waits for this reader (up to its timeout)
    #[arg(long)]
    pub lossless: bool,
    /// Check every payload byte for byte and that event numbers increase; exit 1 at the first
    /// bad event (lost events are reported, not failed)
    #[arg(long)]
    pub verify: bool,
    /// Print events/s, MB/s and lost events to stderr: every second with --follow, and at the end
    #[arg(long)]
    pub stats: bool,
    /// Where to start reading
    #[arg(long, value_enum, value_name = "WHERE", default_value_t = From::Oldest)]
    pub from: From,
    #[command(flatten)]
    pub extras: daqproc::cli_extras::Extras,
}

/// Where to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum From {
    /// The oldest event still in the buffer
    Oldest,
    /// The freshest event in the buffer
    Latest,
    /// The first event written after spycat starts
    Next,
}

impl From {
    pub fn start(self) -> StartAt {
        match self {
            From::Oldest => StartAt::Oldest,
            From::Latest => StartAt::Latest,
            From::Next => StartAt::Next,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            From::Oldest => "oldest",
            From::Latest => "latest",
            From::Next => "next",
        }
    }
}
