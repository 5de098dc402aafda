use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use shvars::circ::StartAt;

use crate::uri::SourceSpec;

/// Read the events of a circular buffer, or of a farm spy daemon over the network: a line per
/// event (`EVNR SIZE ok|BAD`, the checksum of an evgen payload), or the raw payloads.
///
/// SOURCE is a local buffer (`B_1_1`, `/tmp/B_1_1`, `spy:B_1_1`), a spy data file
/// (`file:run1.spy`, as --save writes one) or a farm spy daemon
/// (`remote://HOST[:PORT]?mode=next|latest|push&maxevents=N&maxbytes=N`, or KLOE's
/// `remote:spy:BUFFER@HOST[:PORT]?max_events_per_packet=N`; port 2115 by default). Lost events
/// are the sampling reader's, or those the daemon skipped.
///
/// Without --follow spycat reads what the source holds and exits. A farm spy daemon: up to
/// --count events, or without --count up to the newest event it had when spycat connected; and
/// in any case until its first "no data" answer (push mode: 1 s without a packet). With --follow it waits for new events; when the producer of a local buffer
/// dies or exits it waits for a producer to re-create the buffer and re-attaches (from the
/// oldest event of the new buffer); when the connection to a farm spy daemon drops it
/// reconnects (after 0.1 s, then less and less often, up to every 5 s), resuming after the last
/// event received. Ctrl-C (or SIGTERM) ends it cleanly, with the summary
/// of --stats.
///
/// Exit status: 0 ok, 1 the source cannot be read or --verify found a bad event, 2 bad usage
/// (a malformed source included).
#[derive(Debug, Parser)]
#[command(name = "spycat", version)]
pub struct Cli {
    /// What to read: NAME, /PATH, spy:NAME, `remote://HOST[:PORT][?OPTIONS]` or
    /// `remote:spy:BUFFER@HOST[:PORT][?OPTIONS]`
    #[arg(
        value_name = "SOURCE",
        value_parser = crate::uri::parse,
        required_unless_present = "name"
    )]
    pub source_arg: Option<SourceSpec>,
    /// The local buffer to read by name, as -n names the process in every tool (`evgen -n
    /// gen1` writes the buffer gen1); instead of SOURCE
    #[arg(short = 'n', long, value_name = "NAME", conflicts_with = "source_arg")]
    pub name: Option<String>,
    /// The source resolved from SOURCE or --name.
    #[arg(skip)]
    pub source: SourceSpec,
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
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Keep reading as events arrive; re-attach when the producer re-creates the buffer
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Register as a lossless reader: the producer waits for this reader (up to its timeout);
    /// local buffers only
    #[arg(long)]
    pub lossless: bool,
    /// Check every payload byte for byte and that event numbers increase; exit 1 at the first
    /// bad event (lost events are reported, not failed)
    #[arg(long)]
    pub verify: bool,
    /// Also write every event read to FILE, a spy data file (read it back with `spycat
    /// file:FILE`, replay it with ybosspydaemon)
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Print events/s, MB/s and lost events to stderr: every second with --follow, and at the end
    #[arg(long)]
    pub stats: bool,
    /// Where to start reading a local buffer [default: oldest]
    #[arg(long, value_enum, value_name = "WHERE")]
    pub from: Option<From>,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}

impl Cli {
    /// Sets `source` from SOURCE or --name.
    ///
    /// # Errors
    /// The old usage `-n N` (a count): what to write instead.
    pub fn resolve(&mut self) -> Result<(), String> {
        if let Some(n) = &self.name {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "-n {n}: -n now names the buffer to read (-n is --name in every tool); to stop after {n} events write --count {n}"
                ));
            }
            self.source = SourceSpec::Local(n.clone());
        } else if let Some(s) = self.source_arg.take() {
            self.source = s;
        }
        Ok(())
    }
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
