//! The consumer: opens the source named on the command line (a local buffer or a farm spy
//! daemon), then prints, checks and counts its events the same way whatever they come from.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use daqproc::daemons::payload;
use shvars::RuntimeDir;

use crate::cli::{Cli, From};
use crate::file::FileSource;
use crate::local::LocalSource;
use crate::remote::RemoteSource;
use crate::report::Tally;
use crate::source::{Next, Source};
use crate::uri::SourceSpec;
use daqproc::daemons::spy::datafile::DataFileWriter;

/// How long one wait for an event lasts before spycat looks at signals and statistics again.
const SLICE: Duration = Duration::from_millis(100);

/// Exit status for bad usage.
const USAGE: u8 = 2;

/// Prints, checks and counts events.
struct Sink<'a> {
    cli: &'a Cli,
    /// The source as named, for the reports.
    name: String,
    /// The source in error messages: `buffer B_1_1`, `remote://...`.
    what: String,
    out: BufWriter<io::StdoutLock<'static>>,
    tally: Tally,
    /// Event number of the last event since the source last started over (checks the order).
    prev: Option<u64>,
    /// --save: the data file every event also goes to.
    save: Option<DataFileWriter>,
}

pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    if let SourceSpec::Remote(_) = &cli.source {
        // Options that only mean something for a local buffer.
        let local_only = [
            (cli.lossless, "--lossless: a farm spy daemon never waits for its clients"),
            (
                cli.from.is_some(),
                "--from: choose where a remote source starts with mode=next (the oldest event) or mode=latest",
            ),
        ];
        if let Some((_, why)) = local_only.iter().find(|(given, _)| *given) {
            eprintln!("spycat: error: {why} (it applies to a local buffer only)");
            return Ok(ExitCode::from(USAGE));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .context("cannot install the signal handlers")?;
    }
    let mut sink = Sink {
        cli,
        name: cli.source.to_string(),
        what: cli.source.to_string(),
        out: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
        tally: Tally::new(),
        prev: None,
        save: match &cli.save {
            Some(p) => Some(DataFileWriter::create(p)?),
            None => None,
        },
    };
    match &cli.source {
        SourceSpec::Local(name) => {
            let dir = RuntimeDir::resolve(cli.dir.as_deref());
            let path = dir.buffer_path(name)?;
            let from = cli.from.unwrap_or(From::Oldest);
            let mut src = LocalSource::open(name, path, cli.lossless, cli.follow, from.start())?;
            sink.name = name.clone();
            sink.what = format!("buffer {name}");
            if cli.follow {
                eprintln!(
                    "spycat: attached to {} from the {} event",
                    src.describe(),
                    from.name()
                );
            }
            sink.consume(&mut src, &stop)
        }
        SourceSpec::File(path) => {
            if cli.lossless || cli.from.is_some() {
                eprintln!("spycat: error: --lossless and --from apply to a local buffer only");
                return Ok(ExitCode::from(USAGE));
            }
            let mut src = FileSource::open(path)?;
            sink.what = format!("data file {}", path.display());
            sink.consume(&mut src, &stop)
        }
        SourceSpec::Remote(spec) => {
            let mut src = RemoteSource::connect(
                spec.clone(),
                &cli.source.to_string(),
                cli.follow,
                cli.count,
            )?;
            if cli.follow {
                eprintln!("spycat: connected to the {}", src.describe());
            }
            sink.consume(&mut src, &stop)
        }
    }
}

impl Sink<'_> {
    /// Reads `src` to its end (or --count, or a signal), then reports.
    fn consume(&mut self, src: &mut dyn Source, stop: &AtomicBool) -> anyhow::Result<ExitCode> {
        let result = self.cat(src, stop);
        self.out.flush().context("cannot write to stdout")?;
        if let Some(w) = &mut self.save {
            w.flush()?;
            if self.cli.stats || self.cli.verify {
                eprintln!(
                    "spycat: saved {} events to {}",
                    w.events(),
                    self.cli
                        .save
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                );
            }
        }
        let losses = src.losses();
        if self.cli.stats {
            eprintln!("{}", self.tally.summary(&self.name, &losses));
        }
        result?;
        if self.cli.verify {
            eprintln!(
                "spycat: {}: verified {} events: every payload intact, event numbers increasing ({} lost)",
                self.name, self.tally.events, losses.lost
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    fn cat(&mut self, src: &mut dyn Source, stop: &AtomicBool) -> anyhow::Result<()> {
        loop {
            if stop.load(Ordering::Relaxed)
                || self.cli.count.is_some_and(|n| self.tally.events >= n)
            {
                return Ok(());
            }
            if self.cli.follow && self.cli.stats {
                if let Some(line) = self.tally.per_second(&self.name, &src.losses()) {
                    eprintln!("{line}");
                }
            }
            // What is there at once; else let what was printed out before waiting.
            let next = match src.next_event(Duration::ZERO)? {
                Next::Idle => {
                    self.out.flush().context("cannot write to stdout")?;
                    src.next_event(SLICE)?
                }
                next => next,
            };
            match next {
                Next::Event(evnr, data) => self.event(evnr, data)?,
                Next::Idle => {}
                Next::Restart => self.prev = None,
                Next::End => return Ok(()),
            }
        }
    }

    fn event(&mut self, evnr: u64, data: &[u8]) -> anyhow::Result<()> {
        if self.cli.verify {
            if let Some(p) = self.prev.filter(|&p| evnr <= p) {
                bail!(
                    "{}: event numbers out of order: event {} came after event {} ({} events read)",
                    self.what,
                    evnr,
                    p,
                    self.tally.events
                );
            }
        }
        self.prev = Some(evnr);
        if let Some(w) = &mut self.save {
            w.write_event(evnr, data)?;
        }
        self.tally.events += 1;
        self.tally.bytes += data.len() as u64;
        self.tally.last_evnr = Some(evnr);
        let w = &mut self.out;
        if self.cli.raw {
            if self.cli.verify {
                payload::verify(evnr, data).map_err(|e| corrupt(&self.what, e))?;
            }
            w.write_all(data).context("cannot write to stdout")?;
        } else {
            let ok = match payload::verify(evnr, data) {
                Ok(()) => true,
                Err(_) if !self.cli.verify => false,
                Err(e) => {
                    let _ = w.flush();
                    return Err(corrupt(&self.what, e));
                }
            };
            if !self.cli.quiet {
                writeln!(
                    w,
                    "{} {} {}",
                    evnr,
                    data.len(),
                    if ok { "ok" } else { "BAD" }
                )
                .context("cannot write to stdout")?;
            }
        }
        Ok(())
    }
}

fn corrupt(what: &str, e: payload::PayloadError) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}: corrupt event: {e} (the producer wrote it wrong or the data was damaged on the way; payloads are checked as evgen writes them)"
    )
}
