use std::time::Duration;

use clap::Parser;
use daqproc::daemons::evgen::{parse_bytes, SizeRange, DEFAULT_CIRCSIZE};
use daqproc::framework::ProcessArgs;

/// Write synthetic, self-checking events into a circular buffer (a stand-in for a DAQ event
/// builder).
///
/// Every payload carries its event number, its length and a checksum, and its body is generated
/// from the event number, so `spycat --verify` (or any consumer using daqproc::daemons::payload) checks it
/// byte for byte.
///
/// evgen starts producing at once (it runs `init` and `start` before the -c commands) unless
/// --wait-start is given; `pause`/`resume` stop and restart production, `end` stops it, `exit`
/// (or SIGTERM) removes the buffer and exits. Variables: events, bytes, lastevnr, rate (events/s
/// over the last second), refused, readers (lossless readers), buffer, target_rate (R/W).
///
/// Exit status: 0 after `exit`, SIGTERM or --exit-when-done; 1 start-up failed; 2 bad usage.
#[derive(Debug, Parser)]
#[command(name = "evgen", version)]
pub struct Cli {
    #[command(flatten)]
    pub process: ProcessArgs,
    /// Buffer to create: a bare name in the runtime directory, or an absolute path
    /// [default: the process name]
    #[arg(short = 'b', long, value_name = "NAME")]
    pub buffer: Option<String>,
    /// Buffer capacity in bytes (K/M/G suffixes: powers of 1024); events may have up to half of it
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_CIRCSIZE, value_parser = parse_bytes)]
    pub circsize: u64,
    /// Event size in bytes, or MIN-MAX for uniformly random sizes (at least 16: the payload header)
    #[arg(short = 's', long, value_name = "N|MIN-MAX", default_value = "1024")]
    pub size: SizeRange,
    /// Events per second (0: as fast as possible); the initial value of target_rate
    #[arg(short = 'r', long, value_name = "EV/S", default_value_t = 0)]
    pub rate: u64,
    /// Write N events in all, then stop producing (the process stays until `exit`, unless
    /// --exit-when-done) [default: no limit]
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub count: u64,
    /// Exit with status 0 once --count events are written
    #[arg(long, requires = "count")]
    pub exit_when_done: bool,
    /// Do not produce until an operator sends `init` and `start`
    #[arg(long)]
    pub wait_start: bool,
    /// Number of the first event
    #[arg(long, value_name = "EVNR", default_value_t = 1)]
    pub first: u64,
    /// Seed of the random event sizes [default: from the clock]
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
    /// How long a lossless reader may block the producer before it is evicted (e.g. 1s, 200ms)
    #[arg(long, value_name = "TIME", default_value = "1s", value_parser = humantime::parse_duration)]
    pub lossless_timeout: Duration,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
