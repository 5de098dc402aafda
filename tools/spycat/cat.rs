//! The reading loop: open (sampling or lossless), read, check, print, follow the producer
//! across restarts.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use daqproc::payload;
use shvars::circ::{
    EventInfo, LosslessReader, OpenError, ReadTimeoutError, ReaderStats, SamplingReader, StartAt,
    TryReadError,
};
use shvars::RuntimeDir;

use crate::cli::Cli;
use crate::report::Tally;

/// How long one wait for an event lasts before spycat looks at signals and statistics again.
const SLICE: Duration = Duration::from_millis(100);
/// Initial read buffer; it grows to the largest event seen.
const INITIAL_BUF: usize = 64 << 10;

enum Reader {
    Sampling(SamplingReader),
    Lossless(LosslessReader),
}

impl Reader {
    fn open(path: &Path, lossless: bool, start: StartAt) -> Result<Reader, OpenError> {
        Ok(if lossless {
            Reader::Lossless(LosslessReader::open_with(path, start)?)
        } else {
            Reader::Sampling(SamplingReader::open_with(path, start)?)
        })
    }

    fn try_read(&mut self, buf: &mut [u8]) -> Result<EventInfo, TryReadError> {
        match self {
            Reader::Sampling(r) => r.try_read(buf),
            Reader::Lossless(r) => r.try_read(buf),
        }
    }

    fn read_timeout(&mut self, buf: &mut [u8], t: Duration) -> Result<EventInfo, ReadTimeoutError> {
        match self {
            Reader::Sampling(r) => r.read_timeout(buf, t),
            Reader::Lossless(r) => r.read_timeout(buf, t),
        }
    }

    fn stats(&self) -> ReaderStats {
        match self {
            Reader::Sampling(r) => r.stats(),
            Reader::Lossless(r) => r.stats(),
        }
    }

    fn describe(&self) -> String {
        let s = match self {
            Reader::Sampling(r) => r.buffer_stats(),
            Reader::Lossless(r) => r.buffer_stats(),
        };
        format!(
            "producer pid {}, capacity {} bytes, {} events written so far",
            s.producer_pid, s.capacity, s.events_written
        )
    }
}

/// One read's outcome, with the three kinds of "no event" told apart.
enum Got {
    Event(EventInfo),
    Nothing,
    Gone(shvars::circ::ProducerGone),
}

struct Cat<'a> {
    cli: &'a Cli,
    name: String,
    path: PathBuf,
    reader: Reader,
    buf: Vec<u8>,
    out: BufWriter<io::StdoutLock<'static>>,
    tally: Tally,
    /// Event number of the last event of the current buffer instance (checks the order).
    prev: Option<u64>,
    stop: Arc<AtomicBool>,
}

pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let dir = RuntimeDir::resolve(cli.dir.as_deref());
    let path = dir.buffer_path(&cli.buffer)?;
    let reader = Reader::open(&path, cli.lossless, cli.from.start())
        .with_context(|| format!("cannot read buffer {}", cli.buffer))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .context("cannot install the signal handlers")?;
    }
    let mut cat = Cat {
        cli,
        name: cli.buffer.clone(),
        path,
        reader,
        buf: vec![0u8; INITIAL_BUF],
        out: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
        tally: Tally::new(),
        prev: None,
        stop,
    };
    if cli.follow {
        eprintln!(
            "spycat: attached to {} ({}), {} reader from the {} event",
            cat.path.display(),
            cat.reader.describe(),
            if cli.lossless { "lossless" } else { "sampling" },
            cli.from.name()
        );
    }
    let result = cat.cat();
    cat.out.flush().context("cannot write to stdout")?;
    let s = cat.reader.stats();
    if cli.stats {
        eprintln!("{}", cat.tally.summary(&cat.name, s));
    }
    result?;
    if cli.verify {
        eprintln!(
            "spycat: {}: verified {} events: every payload intact, event numbers increasing ({} lost)",
            cat.name,
            cat.tally.events,
            cat.tally.losses(s).0
        );
    }
    Ok(ExitCode::SUCCESS)
}

impl Cat<'_> {
    fn cat(&mut self) -> anyhow::Result<()> {
        let mut waiting_msg = false;
        loop {
            if self.stop.load(Ordering::Relaxed)
                || self.cli.count.is_some_and(|n| self.tally.events >= n)
            {
                return Ok(());
            }
            if self.cli.follow && self.cli.stats {
                if let Some(line) = self.tally.per_second(&self.name, self.reader.stats()) {
                    eprintln!("{line}");
                }
            }
            match self.next()? {
                Got::Event(ev) => {
                    waiting_msg = false;
                    self.event(ev)?;
                }
                Got::Nothing if self.cli.follow => {}
                Got::Nothing => return Ok(()),
                Got::Gone(g) if !self.cli.follow => {
                    // Every event was read: nothing more will come from this producer.
                    let _ = g;
                    return Ok(());
                }
                Got::Gone(g) => {
                    if g.recreated {
                        match Reader::open(&self.path, self.cli.lossless, StartAt::Oldest) {
                            Ok(r) => {
                                self.tally.carry(self.reader.stats());
                                self.reader = r;
                                self.prev = None;
                                waiting_msg = false;
                                eprintln!(
                                    "spycat: {}: re-attached to the new producer ({}), from its oldest event",
                                    self.name,
                                    self.reader.describe()
                                );
                                continue;
                            }
                            Err(e) if !waiting_msg => {
                                eprintln!("spycat: {}: cannot re-attach yet: {e}", self.name);
                                waiting_msg = true;
                            }
                            Err(_) => {}
                        }
                    } else if !waiting_msg {
                        eprintln!("spycat: {g}; waiting for a new producer (Ctrl-C to stop)");
                        waiting_msg = true;
                    }
                    self.out.flush().context("cannot write to stdout")?;
                    std::thread::sleep(SLICE);
                }
            }
        }
    }

    /// The next event: at once if one waits, else (with --follow) after a short wait.
    fn next(&mut self) -> anyhow::Result<Got> {
        loop {
            let r = match self.reader.try_read(&mut self.buf) {
                Err(TryReadError::Empty) if self.cli.follow => {
                    // About to wait: let what was printed so far out first.
                    self.out.flush().context("cannot write to stdout")?;
                    self.reader.read_timeout(&mut self.buf, SLICE)
                }
                other => other.map_err(ReadTimeoutError::from),
            };
            match r {
                Ok(ev) => return Ok(Got::Event(ev)),
                Err(ReadTimeoutError::Timeout) => return Ok(Got::Nothing),
                Err(ReadTimeoutError::TooSmall(t)) => self.buf.resize(t.needed, 0),
                Err(ReadTimeoutError::ProducerGone(g)) => return Ok(Got::Gone(g)),
                Err(ReadTimeoutError::Evicted(e)) => {
                    eprintln!("spycat: {e}; rejoining at the oldest event still there");
                    if let Reader::Lossless(r) = &mut self.reader {
                        r.rejoin()
                            .with_context(|| format!("cannot rejoin buffer {}", self.name))?;
                    }
                    self.prev = None;
                }
            }
        }
    }

    fn event(&mut self, ev: EventInfo) -> anyhow::Result<()> {
        let data = &self.buf[..ev.len];
        if self.cli.verify {
            if let Some(p) = self.prev.filter(|&p| ev.evnr <= p) {
                bail!(
                    "buffer {}: event numbers out of order: event {} came after event {} ({} events read)",
                    self.name,
                    ev.evnr,
                    p,
                    self.tally.events
                );
            }
        }
        self.prev = Some(ev.evnr);
        self.tally.events += 1;
        self.tally.bytes += ev.len as u64;
        self.tally.last_evnr = Some(ev.evnr);
        let w = &mut self.out;
        if self.cli.raw {
            if self.cli.verify {
                verified(&self.name, ev.evnr, data)?;
            }
            w.write_all(data).context("cannot write to stdout")?;
        } else {
            let ok = match payload::verify(ev.evnr, data) {
                Ok(()) => true,
                Err(_) if !self.cli.verify => false,
                Err(e) => {
                    let _ = w.flush();
                    return Err(corrupt(&self.name, e));
                }
            };
            if !self.cli.quiet {
                writeln!(
                    w,
                    "{} {} {}",
                    ev.evnr,
                    ev.len,
                    if ok { "ok" } else { "BAD" }
                )
                .context("cannot write to stdout")?;
            }
        }
        Ok(())
    }
}

fn verified(name: &str, evnr: u64, data: &[u8]) -> anyhow::Result<()> {
    payload::verify(evnr, data).map_err(|e| corrupt(name, e))
}

fn corrupt(name: &str, e: payload::PayloadError) -> anyhow::Error {
    anyhow::anyhow!(
        "buffer {name}: corrupt event: {e} (the producer wrote it wrong or the buffer was damaged; payloads are checked as evgen writes them)"
    )
}
