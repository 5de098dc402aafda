//! A local circular buffer as a source: a sampling or lossless reader, re-attached (with
//! --follow) when its producer re-creates the buffer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use shvars::circ::{
    EventInfo, LosslessReader, OpenError, ReadTimeoutError, ReaderStats, SamplingReader, StartAt,
    TryReadError,
};

use crate::report::Losses;
use crate::source::{Next, Source};

/// Initial read buffer; it grows to the largest event seen.
const INITIAL_BUF: usize = 64 << 10;
/// How long to sleep between looks for a new producer.
const REATTACH_PAUSE: Duration = Duration::from_millis(100);

enum Reader {
    Sampling(SamplingReader),
    Lossless(LosslessReader),
}

impl Reader {
    fn open(path: &std::path::Path, lossless: bool, start: StartAt) -> Result<Reader, OpenError> {
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

/// A local buffer being read.
pub struct LocalSource {
    name: String,
    path: PathBuf,
    lossless: bool,
    follow: bool,
    reader: Reader,
    buf: Vec<u8>,
    /// Losses of the readers of buffer instances already left behind.
    carried: ReaderStats,
    /// A "waiting for a producer" message was printed and not yet followed by success.
    waiting_msg: bool,
}

impl LocalSource {
    /// Opens buffer `name` (at `path`) from `start`.
    ///
    /// # Errors
    /// The buffer cannot be opened: missing, not a buffer, unreadable.
    pub fn open(
        name: &str,
        path: PathBuf,
        lossless: bool,
        follow: bool,
        start: StartAt,
    ) -> anyhow::Result<LocalSource> {
        let reader = Reader::open(&path, lossless, start)
            .with_context(|| format!("cannot read buffer {name}"))?;
        Ok(LocalSource {
            name: name.to_owned(),
            path,
            lossless,
            follow,
            reader,
            buf: vec![0u8; INITIAL_BUF],
            carried: ReaderStats::default(),
            waiting_msg: false,
        })
    }

    /// For the --follow banner: the path, the producer, the kind of reader.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}), {} reader",
            self.path.display(),
            self.reader.describe(),
            if self.lossless {
                "lossless"
            } else {
                "sampling"
            }
        )
    }

    /// The producer is gone and a new one re-created the buffer (or will): try to re-attach.
    fn reattach(&mut self, recreated: bool, gone: String, wait: Duration) -> Next<'_> {
        if recreated {
            match Reader::open(&self.path, self.lossless, StartAt::Oldest) {
                Ok(r) => {
                    let old = std::mem::replace(&mut self.reader, r).stats();
                    self.carried.events_lost += old.events_lost;
                    self.carried.overruns += old.overruns;
                    self.carried.corrupt_records += old.corrupt_records;
                    self.waiting_msg = false;
                    eprintln!(
                        "spycat: {}: re-attached to the new producer ({}), from its oldest event",
                        self.name,
                        self.reader.describe()
                    );
                    return Next::Restart;
                }
                Err(e) if !self.waiting_msg => {
                    eprintln!("spycat: {}: cannot re-attach yet: {e}", self.name);
                    self.waiting_msg = true;
                }
                Err(_) => {}
            }
        } else if !self.waiting_msg {
            eprintln!("spycat: {gone}; waiting for a new producer (Ctrl-C to stop)");
            self.waiting_msg = true;
        }
        std::thread::sleep(wait.min(REATTACH_PAUSE));
        Next::Idle
    }
}

impl Source for LocalSource {
    fn next_event(&mut self, wait: Duration) -> anyhow::Result<Next<'_>> {
        loop {
            let r = if wait.is_zero() {
                self.reader
                    .try_read(&mut self.buf)
                    .map_err(ReadTimeoutError::from)
            } else {
                self.reader.read_timeout(&mut self.buf, wait)
            };
            match r {
                Ok(ev) => {
                    self.waiting_msg = false;
                    return Ok(Next::Event(ev.evnr, &self.buf[..ev.len]));
                }
                Err(ReadTimeoutError::Timeout) if self.follow => return Ok(Next::Idle),
                // Without --follow: everything there was has been read.
                Err(ReadTimeoutError::Timeout) => return Ok(Next::End),
                Err(ReadTimeoutError::TooSmall(t)) => self.buf.resize(t.needed, 0),
                // Every event was read: nothing more will come from this producer.
                Err(ReadTimeoutError::ProducerGone(_)) if !self.follow => return Ok(Next::End),
                Err(ReadTimeoutError::ProducerGone(g)) => {
                    let text = g.to_string();
                    return Ok(self.reattach(g.recreated, text, wait));
                }
                Err(ReadTimeoutError::Evicted(e)) => {
                    eprintln!("spycat: {e}; rejoining at the oldest event still there");
                    if let Reader::Lossless(r) = &mut self.reader {
                        r.rejoin()
                            .with_context(|| format!("cannot rejoin buffer {}", self.name))?;
                    }
                    return Ok(Next::Restart);
                }
            }
        }
    }

    fn losses(&self) -> Losses {
        let s = self.reader.stats();
        let overruns = self.carried.overruns + s.overruns;
        let corrupt = self.carried.corrupt_records + s.corrupt_records;
        Losses {
            lost: self.carried.events_lost + s.events_lost,
            detail: format!("{overruns} overruns, {corrupt} corrupt records"),
        }
    }
}
