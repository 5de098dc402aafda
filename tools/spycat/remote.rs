//! A farm spy daemon as a source, through [`daqproc::daemons::spy::session::Session`] (the
//! session rspydaemon uses too): keeps requests going (two in flight in next and latest mode,
//! one in push mode), hands out the events of each packet, counts what the daemon skipped as
//! lost, and with --follow reconnects with a capped backoff when the connection drops,
//! resuming after the last event handed out.

use std::io;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use daqproc::daemons::spy::client::{Received, SpyClient, SpyError};
use daqproc::daemons::spy::proto::{Events, Mode};
use daqproc::daemons::spy::session::{Ask, Attempt, Session};
use daqproc::support::backoff::Backoff;

use crate::report::Losses;
use crate::source::{Next, Source};
use crate::uri::RemoteSpec;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests kept in flight in next and latest mode: the daemon fills the next packet while the
/// previous one travels.
const IN_FLIGHT: usize = 2;
/// A farm spy daemon answers a request within its `timeout_us` (10 ms by default), paused or
/// not: this much silence means it is not one, or it is stuck.
const NO_ANSWER: Duration = Duration::from_secs(10);
/// In push mode the daemon sends nothing while there is nothing: without --follow, spycat
/// stops after this much silence.
const PUSH_QUIET: Duration = Duration::from_secs(1);
/// First and longest pause between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A farm spy daemon being read.
pub struct RemoteSource {
    spec: RemoteSpec,
    /// The source as named on the command line, for messages.
    label: String,
    follow: bool,
    /// The daemon followed across connections (disconnected only with --follow).
    session: Session,
    /// The payload of the last packet (taken over from the client, not copied), and where
    /// each event's body lies in it.
    data: Vec<u8>,
    index: Vec<(u64, usize, usize)>,
    /// The next event of `index` to hand out.
    pos: usize,
    /// When the last packet arrived, or the last request was sent to a silent connection.
    last_answer: Instant,
    /// Events the daemon skipped for us.
    skipped: u64,
    /// Without --follow or --count: the newest event the daemon had when spycat connected;
    /// reading stops there (a live producer may never leave the daemon without events to send).
    stop_at: Option<u64>,
    ended: bool,
}

impl RemoteSource {
    /// Connects to the daemon of `spec` and sends the first requests.
    ///
    /// # Errors
    /// The daemon cannot be reached: which address, and what to check.
    pub fn connect(
        spec: RemoteSpec,
        label: &str,
        follow: bool,
        count: Option<u64>,
    ) -> anyhow::Result<RemoteSource> {
        let now = Instant::now();
        let session = Session::new(
            &spec.host,
            spec.port,
            CONNECT_TIMEOUT,
            Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
        );
        let mut src = RemoteSource {
            spec,
            label: label.to_owned(),
            follow,
            session,
            data: Vec::new(),
            index: Vec::new(),
            pos: 0,
            last_answer: now,
            skipped: 0,
            stop_at: None,
            ended: false,
        };
        if !follow && count.is_none() {
            src.stop_at = src.newest_event().map_err(|e| src.connect_error(e))?;
        }
        src.open().map_err(|e| src.connect_error(e))?;
        Ok(src)
    }

    /// Asks the daemon, on a connection of its own, for its freshest event: its number, or the
    /// newest it has seen when it has none to send.
    fn newest_event(&self) -> Result<Option<u64>, SpyError> {
        let mut c = SpyClient::connect(&self.spec.host, self.spec.port, CONNECT_TIMEOUT)?;
        c.ask(Mode::Latest, 1, 0, 0)?;
        let newest = match c.receive(NO_ANSWER)? {
            Received::Packet(h) => h.last_evnr,
            Received::NoData { last_evnr, .. } => last_evnr,
            Received::Timeout => return Err(no_answer(&self.spec)),
        };
        Ok((newest > 0).then_some(newest))
    }

    /// For the --follow banner.
    pub fn describe(&self) -> String {
        let limit = |n: u32, what: &str| {
            if n == 0 {
                format!("no limit of {what}")
            } else {
                format!("at most {n} {what}")
            }
        };
        format!(
            "farm spy daemon at {}, {} mode, {} and {} per packet",
            self.spec.address(),
            self.spec.mode,
            limit(self.spec.max_events, "events"),
            limit(self.spec.max_bytes, "bytes")
        )
    }

    /// What each request asks for.
    fn ask(&self) -> Ask {
        Ask {
            mode: self.spec.mode,
            max_events: self.spec.max_events,
            max_bytes: self.spec.max_bytes,
            maxage_ms: 0,
        }
    }

    /// Connects (now, if it is time) and sends the first requests (one in push mode).
    fn open(&mut self) -> Result<(), SpyError> {
        match self.session.connect_if_due() {
            Attempt::Connected => {}
            Attempt::Wait(_) => return Ok(()),
            Attempt::Failed(e, _) => return Err(e),
        }
        self.ask_more()?;
        self.last_answer = Instant::now();
        Ok(())
    }

    /// Keeps the requests going (next and latest mode), or the stream asked for (push).
    fn ask_more(&mut self) -> Result<(), SpyError> {
        let ask = self.ask();
        if ask.mode == Mode::Push {
            self.session.stream(ask)
        } else {
            self.session.keep_asking(ask, IN_FLIGHT)
        }
    }

    /// A failure to connect, said for people.
    fn connect_error(&self, e: SpyError) -> anyhow::Error {
        let addr = self.spec.address();
        match &e {
            SpyError::Connect { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused => {
                anyhow!(
                    "{}: cannot connect to {addr}: connection refused: no farm spy daemon listens there (check that farmspydaemon runs on {} and that {} is its port: shvar get FARM port)",
                    self.label,
                    self.spec.host,
                    self.spec.port
                )
            }
            SpyError::Connect { source, .. } => anyhow!(
                "{}: cannot connect to {addr}: {source} (check the host name, the network and that farmspydaemon runs there)",
                self.label
            ),
            SpyError::Protocol { .. } => anyhow!(
                "{}: {e}: check the port (shvar get FARM port on the farm node)",
                self.label
            ),
            _ => anyhow!("{}: {e}", self.label),
        }
    }

    /// A failure of an established connection: with --follow, drop it and reconnect later;
    /// without, the end of spycat. A peer that does not speak the protocol ends it either way.
    fn lost_connection(&mut self, e: SpyError) -> anyhow::Result<Next<'_>> {
        let hint = match &e {
            SpyError::Protocol { .. } => {
                bail!(
                    "{}: {e}: check the port (shvar get FARM port on the farm node)",
                    self.label
                )
            }
            SpyError::Closed(_) if self.session.last_evnr() == 0 => {
                " before sending any event (is it a farm spy daemon? it closes connections beyond its maxclients with a message)"
            }
            _ => "",
        };
        if !self.follow {
            bail!("{}: {e}{hint}", self.label);
        }
        // The first attempt after the backoff's first wait.
        self.session.reset();
        self.session.failed();
        eprintln!(
            "spycat: {}: {e}{hint}; reconnecting (Ctrl-C to stop)",
            self.label
        );
        Ok(Next::Idle)
    }

    /// While disconnected: try again when it is time.
    fn reconnect(&mut self, wait: Duration) -> Next<'_> {
        let mut attempt = self.session.connect_if_due();
        if let Attempt::Wait(left) = attempt {
            std::thread::sleep(wait.min(left));
            attempt = self.session.connect_if_due();
        }
        let res = match attempt {
            Attempt::Wait(_) => return Next::Idle,
            Attempt::Failed(e, _) => Err(e),
            Attempt::Connected => self.ask_more().inspect_err(|_| {
                self.session.failed();
            }),
        };
        match res {
            Ok(()) => {
                self.last_answer = Instant::now();
                eprintln!(
                    "spycat: {}: reconnected to {}, resuming after event {}",
                    self.label,
                    self.spec.address(),
                    self.session.last_evnr()
                );
                // The daemon skips what we have, unless its producer restarted its numbering.
                Next::Restart
            }
            Err(e) => {
                // The loss was the first failure, this attempt the second: said once per
                // outage, later attempts fail quietly.
                if self.session.backoff().failures() == 2 {
                    eprintln!(
                        "spycat: {}: still cannot connect: {e}; retrying every {} s at most",
                        self.label,
                        BACKOFF_MAX.as_secs()
                    );
                }
                Next::Idle
            }
        }
    }

    /// Takes the events of the packet just received (`nevents` of them).
    fn take_events(&mut self, nevents: u32) -> Result<(), SpyError> {
        self.index.clear();
        self.pos = 0;
        let c = self.session.client().expect("connected");
        self.data = c.swap_payload(std::mem::take(&mut self.data));
        let mut events = Events::new(&self.data, nevents);
        while let Some(ev) = events.next() {
            let (evnr, bytes) = ev.map_err(|source| SpyError::Protocol {
                addr: self.spec.address(),
                source,
            })?;
            self.index
                .push((evnr, events.consumed() - bytes.len(), bytes.len()));
        }
        if let Some(last) = self.stop_at {
            // Without --follow: what the daemon had when spycat connected, no more.
            if let Some(n) = self.index.iter().position(|&(evnr, _, _)| evnr >= last) {
                self.index.truncate(n + 1);
                self.ended = true;
            }
        }
        Ok(())
    }
}

/// The daemon did not answer a request in time.
fn no_answer(spec: &RemoteSpec) -> SpyError {
    SpyError::Io {
        addr: spec.address(),
        source: io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no answer to a request within {} s (is it a farm spy daemon? a paused one still answers)",
                NO_ANSWER.as_secs()
            ),
        ),
    }
}

impl Source for RemoteSource {
    fn next_event(&mut self, wait: Duration) -> anyhow::Result<Next<'_>> {
        if let Some(&(evnr, start, len)) = self.index.get(self.pos) {
            self.pos += 1;
            self.session.took(evnr);
            return Ok(Next::Event(evnr, &self.data[start..start + len]));
        }
        if self.ended {
            return Ok(Next::End);
        }
        if !self.session.is_connected() {
            return Ok(self.reconnect(wait));
        }
        let got = match self.session.receive(wait) {
            Ok(got) => got,
            Err(e) => return self.lost_connection(e),
        };
        match got {
            Received::Packet(h) => {
                self.last_answer = Instant::now();
                self.skipped += h.skipped;
                if let Err(e) = self.take_events(h.nevents).and_then(|()| self.ask_more()) {
                    return self.lost_connection(e);
                }
                match self.index.first() {
                    Some(&(evnr, start, len)) => {
                        self.pos = 1;
                        self.session.took(evnr);
                        Ok(Next::Event(evnr, &self.data[start..start + len]))
                    }
                    None => Ok(Next::Idle),
                }
            }
            Received::NoData { skipped, .. } => {
                self.last_answer = Instant::now();
                self.skipped += skipped;
                if !self.follow {
                    // Everything the daemon had has been read.
                    self.ended = true;
                    return Ok(Next::End);
                }
                if let Err(e) = self.ask_more() {
                    return self.lost_connection(e);
                }
                Ok(Next::Idle)
            }
            Received::Timeout => {
                let silent = self.last_answer.elapsed();
                if self.spec.mode == Mode::Push {
                    if !self.follow && silent >= PUSH_QUIET {
                        self.ended = true;
                        return Ok(Next::End);
                    }
                } else if silent >= NO_ANSWER {
                    let e = no_answer(&self.spec);
                    return self.lost_connection(e);
                }
                Ok(Next::Idle)
            }
        }
    }

    fn losses(&self) -> Losses {
        let mut detail = "skipped by the farm spy daemon".to_owned();
        let reconnects = self.session.connects().saturating_sub(1);
        if reconnects > 0 {
            detail += &format!(
                "; {reconnects} reconnections, events missed while disconnected not counted"
            );
        }
        Losses {
            lost: self.skipped,
            detail,
        }
    }
}
