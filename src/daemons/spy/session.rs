//! A spy client session: one farm spy daemon followed across connections. It keeps requests
//! in flight (pipelined in next and latest mode, one stream in push mode), remembers where the
//! client is (the last event it took and the farm buffer that numbering belongs to) so that a
//! new connection resumes after it, and reconnects with a capped backoff. Used by rspydaemon's
//! prefetch thread and by `spycat remote://`; what each does with the events is its own.

use std::time::{Duration, Instant};

use super::client::{Received, SpyClient, SpyError};
use super::proto::{Mode, PacketHeader, Request, VERSION};
use crate::support::backoff::Backoff;

/// What the client asks for in each request (the position is the session's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Serving mode.
    pub mode: Mode,
    /// Most events per packet (0: no limit).
    pub max_events: u32,
    /// Most payload bytes per packet (0: no limit).
    pub max_bytes: u32,
    /// Serve no event older than this (0: no bound).
    pub maxage_ms: u32,
}

/// What a connection attempt gave.
#[derive(Debug)]
pub enum Attempt {
    /// Connected (no request sent yet).
    Connected,
    /// Not connected and not time to try again yet: wait this long at most.
    Wait(Duration),
    /// The attempt failed; the next one comes after this wait.
    Failed(SpyError, Duration),
}

/// One farm spy daemon, followed across connections.
#[derive(Debug)]
pub struct Session {
    host: String,
    port: u16,
    connect_timeout: Duration,
    conn: Option<SpyClient>,
    /// Requests sent on this connection and not answered yet (push: 1 while streaming).
    in_flight: usize,
    /// The limits of the push stream asked for on this connection.
    streaming: Option<Ask>,
    /// The number of the last event the client took (0: none): a new connection resumes
    /// after it.
    last_evnr: u64,
    /// The farm buffer `last_evnr` belongs to, as the farm named it (0: unknown).
    buffer_id: u32,
    backoff: Backoff,
    retry_at: Instant,
    /// The connection has not answered yet: it counts as working only once it has.
    unproven: bool,
    /// Failed attempts before the connection that answered, once, for the caller to log.
    proven: Option<u32>,
    connects: u64,
}

impl Session {
    /// A session with `host:port`, not connected yet; `backoff` paces the attempts.
    pub fn new(host: &str, port: u16, connect_timeout: Duration, backoff: Backoff) -> Session {
        Session {
            host: host.to_owned(),
            port,
            connect_timeout,
            conn: None,
            in_flight: 0,
            streaming: None,
            last_evnr: 0,
            buffer_id: 0,
            backoff,
            retry_at: Instant::now(),
            unproven: false,
            proven: None,
            connects: 0,
        }
    }

    /// Follows another farm (or the same again): drops the connection and forgets the
    /// backoff, but keeps the position (the farm tells by the buffer identity whether it
    /// applies there).
    pub fn retarget(&mut self, host: &str, port: u16) -> bool {
        self.host = host.to_owned();
        self.port = port;
        self.reset()
    }

    /// The farm, as `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The open connection.
    pub fn client(&mut self) -> Option<&mut SpyClient> {
        self.conn.as_mut()
    }

    /// Requests in flight on this connection (push: 1 while a stream was asked for).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Connections made so far.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// The backoff's state (failures in a row).
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Where a new connection resumes: after this event (0: from the start).
    pub fn last_evnr(&self) -> u64 {
        self.last_evnr
    }

    /// The client took event `evnr`: a new connection resumes after it.
    pub fn took(&mut self, evnr: u64) {
        self.last_evnr = evnr;
    }

    /// Drops the connection (if any) without counting a failure: the next attempt may come at
    /// once.
    pub fn disconnect(&mut self) -> bool {
        self.in_flight = 0;
        self.streaming = None;
        self.conn.take().is_some()
    }

    /// Drops the connection and forgets the backoff: the next attempt comes at once.
    pub fn reset(&mut self) -> bool {
        self.backoff.succeeded();
        self.retry_at = Instant::now();
        self.disconnect()
    }

    /// The connection failed (or could not be made): drops it and schedules the next attempt
    /// after the backoff's wait, which it returns.
    pub fn failed(&mut self) -> Duration {
        self.disconnect();
        let wait = self.backoff.failed();
        self.retry_at = Instant::now() + wait;
        wait
    }

    /// Connects if not connected and it is time to.
    pub fn connect_if_due(&mut self) -> Attempt {
        if self.conn.is_some() {
            return Attempt::Connected;
        }
        let now = Instant::now();
        if now < self.retry_at {
            return Attempt::Wait(self.retry_at - now);
        }
        match SpyClient::connect(&self.host, self.port, self.connect_timeout) {
            Ok(c) => {
                self.conn = Some(c);
                self.in_flight = 0;
                self.streaming = None;
                self.unproven = true;
                self.connects += 1;
                Attempt::Connected
            }
            Err(e) => {
                let wait = self.failed();
                Attempt::Failed(e, wait)
            }
        }
    }

    fn request_of(&self, ask: Ask) -> Request {
        Request {
            version: VERSION,
            mode: ask.mode,
            max_events: ask.max_events,
            max_bytes: ask.max_bytes,
            last_evnr: self.last_evnr,
            buffer_id: self.buffer_id,
            maxage_ms: ask.maxage_ms,
        }
    }

    /// Sends one request (next or latest mode), resuming after the last event taken.
    ///
    /// # Errors
    /// The connection's; [`SpyError::Closed`] if there is none.
    ///
    /// # Panics
    /// In push mode (use [`Session::stream`]).
    pub fn request(&mut self, ask: Ask) -> Result<(), SpyError> {
        assert!(ask.mode != Mode::Push, "Session::request in push mode");
        let req = self.request_of(ask);
        let Some(c) = self.conn.as_mut() else {
            return Err(SpyError::Closed(format!("{}:{}", self.host, self.port)));
        };
        c.request(&req)?;
        self.in_flight += 1;
        Ok(())
    }

    /// Keeps `depth` requests in flight (next or latest mode).
    ///
    /// # Errors
    /// As [`Session::request`].
    pub fn keep_asking(&mut self, ask: Ask, depth: usize) -> Result<(), SpyError> {
        while self.in_flight < depth {
            self.request(ask)?;
        }
        Ok(())
    }

    /// Push mode: asks for a stream with these limits, unless this connection streams with
    /// them already.
    ///
    /// # Errors
    /// As [`Session::request`].
    pub fn stream(&mut self, ask: Ask) -> Result<(), SpyError> {
        if self.streaming == Some(ask) {
            return Ok(());
        }
        let req = self.request_of(ask);
        let Some(c) = self.conn.as_mut() else {
            return Err(SpyError::Closed(format!("{}:{}", self.host, self.port)));
        };
        c.request(&req)?;
        self.in_flight = 1;
        self.streaming = Some(ask);
        Ok(())
    }

    /// Notes an answer: the farm buffer it names, one request fewer in flight (not for a push
    /// stream), and the connection proven.
    fn answered(&mut self, h: &PacketHeader) {
        if h.buffer_id != 0 {
            self.buffer_id = h.buffer_id;
        }
        if self.streaming.is_none() {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        if self.unproven {
            // The farm answered: the next failure starts the backoff again from its first step.
            self.unproven = false;
            self.proven = Some(self.backoff.failures());
            self.backoff.succeeded();
        }
    }

    /// Once per connection, when it first answered: the failed attempts before it.
    pub fn take_proven(&mut self) -> Option<u32> {
        self.proven.take()
    }

    /// Waits at most `timeout` for the next packet's header (read its events from
    /// [`Session::client`]).
    ///
    /// # Errors
    /// As [`SpyClient::receive_header`]; [`SpyError::Closed`] if not connected.
    pub fn receive_header(&mut self, timeout: Duration) -> Result<Option<PacketHeader>, SpyError> {
        let Some(c) = self.conn.as_mut() else {
            return Err(SpyError::Closed(format!("{}:{}", self.host, self.port)));
        };
        let h = c.receive_header(timeout)?;
        if let Some(h) = &h {
            self.answered(h);
        }
        Ok(h)
    }

    /// Waits at most `timeout` for the next packet and takes it whole (its events:
    /// [`SpyClient::events`] or [`SpyClient::swap_payload`]).
    ///
    /// # Errors
    /// As [`SpyClient::receive`]; [`SpyError::Closed`] if not connected.
    pub fn receive(&mut self, timeout: Duration) -> Result<Received, SpyError> {
        let Some(c) = self.conn.as_mut() else {
            return Err(SpyError::Closed(format!("{}:{}", self.host, self.port)));
        };
        let got = c.receive(timeout)?;
        match &got {
            Received::Packet(h) => {
                let h = *h;
                self.answered(&h);
            }
            Received::NoData { .. } => {
                // A no-data answer names no buffer in this view; count the answer.
                let h = PacketHeader {
                    version: VERSION,
                    status: super::proto::Status::NoData,
                    nevents: 0,
                    payload_len: 0,
                    skipped: 0,
                    last_evnr: 0,
                    buffer_id: 0,
                };
                self.answered(&h);
            }
            Received::Timeout => {}
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_and_a_reset_tries_at_once() {
        // Nothing listens on port 1 of the loopback.
        let mut s = Session::new(
            "127.0.0.1",
            1,
            Duration::from_millis(200),
            Backoff::new(Duration::from_millis(100), Duration::from_millis(400)),
        );
        let waits: Vec<Duration> = (0..4)
            .map(|_| loop {
                match s.connect_if_due() {
                    Attempt::Failed(_, w) => break w,
                    Attempt::Wait(w) => std::thread::sleep(w),
                    Attempt::Connected => panic!("connected to port 1"),
                }
            })
            .collect();
        assert_eq!(
            waits,
            [100, 200, 400, 400].map(Duration::from_millis).to_vec()
        );
        assert!(matches!(s.connect_if_due(), Attempt::Wait(_)));
        s.reset();
        assert!(matches!(s.connect_if_due(), Attempt::Failed(..)));
        assert!(s
            .request(Ask {
                mode: Mode::Next,
                max_events: 0,
                max_bytes: 0,
                maxage_ms: 0
            })
            .is_err());
    }
}
