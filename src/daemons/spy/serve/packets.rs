//! Building what a connection sends: version-1 packets (every event copied), version-2
//! streamed packets (copied, or written from the farm buffer's mapping for large events,
//! with a verdict word after each), error packets, and push streams.

use super::*;

/// What [`Conn::admit`] says of the next event of a packet being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// It goes in.
    Take,
    /// It is left out (consumed, not sent).
    Skip,
    /// It waits for the next packet: this one is full.
    Full,
}

/// The next event of the buffer for a packet being built (with `wait`, the packet's first
/// look, which waits up to that long for one); `Ok(None)` when there is none (yet), and, once
/// the packet holds something (`started`), when the buffer fails: what it holds goes out, and
/// the error comes with the next request.
pub(super) fn packet_peek(
    reader: &mut SamplingReader,
    wait: Option<Duration>,
    started: bool,
) -> Result<Option<shvars::circ::Peeked<'_, shvars::circ::FileStorage>>, String> {
    match next_peek(reader, wait) {
        Err(_) if started => Ok(None),
        r => r,
    }
}

pub(super) fn next_peek(
    reader: &mut SamplingReader,
    wait: Option<Duration>,
) -> Result<Option<shvars::circ::Peeked<'_, shvars::circ::FileStorage>>, String> {
    // One call whose result is returned (a try_peek first, then a wait on its `Empty`, would
    // keep the reader borrowed across both): a zero timeout is a single look.
    match reader.peek_timeout(wait.unwrap_or(Duration::ZERO)) {
        Ok(p) => Ok(Some(p)),
        Err(shvars::circ::ReadTimeoutError::Timeout) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

impl Conn {
    /// What becomes of the next event (`evnr`, `len` bytes) of a packet holding `n` events of
    /// `payload` bytes so far: it waits for the next packet if it would take the payload past
    /// `max_bytes` (the first event always goes; the packet is then full); it is left out in
    /// next mode if it was delivered before a reconnect, or if the client's age bound excludes
    /// it (`stale`: the last such event number; counted as skipped); else it goes in.
    pub(super) fn admit(
        &mut self,
        (evnr, len): (u64, usize),
        (n, payload): (u32, usize),
        max_bytes: usize,
        req: &Request,
        stale: u64,
    ) -> Admit {
        if n > 0 && payload + len > max_bytes {
            self.full = true;
            return Admit::Full;
        }
        if req.mode == Mode::Next && evnr <= self.last_sent {
            return Admit::Skip;
        }
        if evnr <= stale {
            self.jumped += 1;
            return Admit::Skip;
        }
        Admit::Take
    }

    /// Notes the buffer's newest event number now.
    pub(super) fn observe(&mut self, reader: &SamplingReader) {
        let newest = reader.buffer_stats().last_evnr.unwrap_or(0);
        if self.seen.back().is_none_or(|&(_, n)| n != newest) {
            self.seen.push_back((Instant::now(), newest));
        }
    }

    /// Starts a packet: its limits (the bytes capped to what one of ours holds) and the newest
    /// event too old to serve (the request's `maxage_ms`; 0: none).
    pub(super) fn begin(&mut self, reader: &SamplingReader, req: &Request) -> (usize, usize, u64) {
        let (max_events, max_bytes) = req.limits();
        self.buf.clear();
        self.full = false;
        self.observe(reader);
        let stale = if req.maxage_ms > 0 {
            self.stale_upto(Duration::from_millis(req.maxage_ms as u64))
        } else {
            0
        };
        (max_events, max_bytes.min(SERVE_PACKET_BYTES), stale)
    }

    /// Every event up to the number returned is certainly older than `maxage` (0: none is).
    pub(super) fn stale_upto(&mut self, maxage: Duration) -> u64 {
        while self.seen.len() >= 2 && self.seen[1].0.elapsed() > maxage {
            self.seen.pop_front();
        }
        match self.seen.front() {
            Some(&(t, n)) if t.elapsed() > maxage => n,
            _ => 0,
        }
    }

    /// Builds a packet of events in `buf`; returns how many it holds (0: a no-data packet).
    pub(super) fn fill(
        &mut self,
        reader: &mut SamplingReader,
        req: &Request,
        wait: Duration,
    ) -> Result<u32, String> {
        let (max_events, max_bytes, stale) = self.begin(reader, req);
        self.buf.resize(PACKET_HEADER_SIZE, 0);
        let mut n = 0u32;
        let mut payload = 0usize;
        let mut first = Some(wait);
        while (n as usize) < max_events {
            let Some(p) = packet_peek(reader, first.take(), n > 0)? else {
                break;
            };
            let (evnr, len) = (p.evnr(), p.len());
            match self.admit((evnr, len), (n, payload), max_bytes, req, stale) {
                Admit::Full => break, // The event stays next.
                Admit::Skip => {
                    let _ = p.finish();
                    continue;
                }
                Admit::Take => {}
            }
            let at = self.buf.len();
            let need = at + EVENT_HEADER_SIZE + len;
            if need > self.buf.capacity() {
                // Grow by doubling, but never past the packet limit (or the one event).
                let cap = (self.buf.capacity() * 2)
                    .min(PACKET_HEADER_SIZE + SERVE_PACKET_BYTES)
                    .max(need);
                self.buf.reserve_exact(cap - at);
            }
            self.buf.extend_from_slice(&event_header(evnr, len as u32));
            self.buf.extend_from_slice(p.bytes());
            match p.finish() {
                Ok(_) => {
                    n += 1;
                    payload += EVENT_HEADER_SIZE + len;
                    self.last_sent = evnr;
                }
                Err(_) => self.buf.truncate(at), // overwritten while copied: skipped forward
            }
        }
        if n as usize >= max_events {
            self.full = true;
        }
        if n == 0 {
            self.no_data(reader, req.version);
            return Ok(0);
        }
        let h = PacketHeader {
            version: req.version,
            status: Status::Ok,
            nevents: n,
            payload_len: (self.buf.len() - PACKET_HEADER_SIZE) as u64,
            skipped: self.skipped_delta(reader),
            last_evnr: self.last_sent,
            buffer_id: self.buffer_id,
        };
        self.skipped = h.skipped;
        self.buf[..PACKET_HEADER_SIZE].copy_from_slice(&h.encode());
        Ok(n)
    }

    /// Builds and sends a streamed packet (protocol version 2); returns the events sent and
    /// their bytes, or (0, 0) with a no-data packet in `buf` to send.
    ///
    /// Events of at least [`DIRECT_SEND`] bytes go from the farm buffer's mapping to the socket
    /// in one vectored write, the header of the packet and the records gathered before it
    /// included; only after the kernel took the bytes is the event checked
    /// ([`shvars::circ::Peeked::finish`]), and its verdict word goes first in the next write: an
    /// event overwritten while the kernel copied it reaches the client marked as such, and the
    /// client discards it. Smaller events are copied into the packet and checked before they
    /// are sent, as in version 1.
    pub(super) fn stream(
        &mut self,
        sock: &mut TcpStream,
        reader: &mut SamplingReader,
        req: &Request,
        wait: Duration,
        shared: &FarmShared,
    ) -> Result<(u32, u64), Failed> {
        let (max_events, max_bytes, stale) = self.begin(reader, req);
        let mut n = 0u32;
        let mut payload = 0usize;
        let mut first = Some(wait);
        let mut started = false;
        while (n as usize) < max_events {
            let Some(p) = packet_peek(reader, first.take(), started).map_err(Failed::Buffer)?
            else {
                break;
            };
            let (evnr, len) = (p.evnr(), p.len());
            match self.admit((evnr, len), (n, payload), max_bytes, req, stale) {
                Admit::Full => break, // The event stays next.
                Admit::Skip => {
                    let _ = p.finish();
                    continue;
                }
                Admit::Take => {}
            }
            if !started {
                started = true;
                let h = PacketHeader {
                    version: req.version,
                    status: Status::Stream,
                    nevents: 0,
                    payload_len: 0,
                    skipped: 0,
                    last_evnr: 0,
                    buffer_id: self.buffer_id,
                };
                self.buf.extend_from_slice(&h.encode());
            }
            let eh = event_header(evnr, len as u32);
            if len >= DIRECT_SEND {
                // One copy: the kernel takes the bytes from the mapping.
                let mut iov = [
                    IoSlice::new(&self.buf),
                    IoSlice::new(&eh),
                    IoSlice::new(p.bytes()),
                ];
                send_iov(sock, &mut iov, shared).map_err(Failed::Send)?;
                self.buf.clear();
                let verdict = match p.finish() {
                    Ok(_) => {
                        self.last_sent = evnr;
                        VERDICT_VALID
                    }
                    Err(_) => {
                        self.abandoned += 1;
                        VERDICT_OVERWRITTEN
                    }
                };
                self.buf.extend_from_slice(&verdict.to_le_bytes());
                n += 1;
                payload += EVENT_HEADER_SIZE + len;
            } else {
                let at = self.buf.len();
                self.buf.extend_from_slice(&eh);
                self.buf.extend_from_slice(p.bytes());
                match p.finish() {
                    Ok(_) => {
                        self.buf.extend_from_slice(&VERDICT_VALID.to_le_bytes());
                        n += 1;
                        payload += EVENT_HEADER_SIZE + len;
                        self.last_sent = evnr;
                    }
                    Err(_) => self.buf.truncate(at), // overwritten while copied: skipped
                }
                if self.buf.len() >= STREAM_FLUSH {
                    send(sock, &self.buf, shared).map_err(Failed::Send)?;
                    self.buf.clear();
                }
            }
        }
        if n as usize >= max_events {
            self.full = true;
        }
        if !started {
            self.no_data(reader, req.version);
            return Ok((0, 0));
        }
        let skipped = self.skipped_delta(reader);
        self.skipped = skipped;
        self.buf
            .extend_from_slice(&end_record(self.last_sent, n, skipped));
        send(sock, &self.buf, shared).map_err(Failed::Send)?;
        self.buf.clear();
        Ok((n, payload as u64))
    }

    /// Gives back the memory of a packet far larger than the usual (one huge event).
    pub(super) fn shrink(&mut self) {
        if self.buf.capacity() > 2 * SERVE_PACKET_BYTES {
            self.buf = Vec::with_capacity(64 << 10);
        }
    }

    pub(super) fn no_data(&mut self, reader: &SamplingReader, version: u16) {
        self.buf.clear();
        let h = PacketHeader {
            version,
            status: Status::NoData,
            nevents: 0,
            payload_len: 0,
            skipped: self.skipped_delta(reader),
            last_evnr: reader.buffer_stats().last_evnr.unwrap_or(0),
            buffer_id: self.buffer_id,
        };
        self.skipped = h.skipped;
        self.buf.extend_from_slice(&h.encode());
    }

    pub(super) fn skipped_delta(&mut self, reader: &SamplingReader) -> u64 {
        let lost = reader.stats().events_lost;
        let mut d = lost - self.lost_seen + self.jumped;
        // Abandoned events the client counted itself, once the reader counted them too.
        let told = self.abandoned.min(lost - self.lost_seen);
        self.abandoned -= told;
        d -= told;
        self.lost_seen = lost;
        self.jumped = 0;
        d
    }
}
