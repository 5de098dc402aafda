//! rspydaemon's prefetch thread: asks the farm for events while readers are there (or a
//! look-ahead is not yet full), keeps requests in flight, commits what arrives into the local
//! buffer, follows the farm across reconnections, and bounds the age of what it serves.

use super::*;

/// The prefetch thread: keeps the local buffer filled from the farm, reconnecting with capped
/// backoff when the farm side goes away. Returns the writer when told to stop.
pub(super) fn prefetch(
    writer: CircWriter,
    vars: &Vars,
    control: &Control,
    stats: &Stats,
    log: &EventLog,
) -> Option<CircWriter> {
    let path = writer.path().to_owned();
    let capacity = writer.stats().capacity;
    // The farm followed across connections: requests in flight, the position to resume
    // from (the local buffer's last event, and the farm buffer that numbering belongs to, as
    // the farm told it: the same buffer reached by another address is the same farm), the
    // backoff between attempts.
    let mut session = Session::new(
        "",
        0,
        Duration::from_secs(1),
        Backoff::new(BACKOFF.0, BACKOFF.1),
    );
    let mut generation = u64::MAX;
    // A failure that repeats is logged once, then with its count (every minute at most).
    let mut failures = RepeatedFailure::new(Duration::from_secs(60));
    let mut waits = 0i64;
    let mut last_evnr = writer.stats().last_evnr.unwrap_or(0);
    session.took(last_evnr);
    let max_event = writer.max_event();
    let mut writer = Some(writer);
    // Stream position of the local buffer that readers had consumed when last seen.
    let mut consumed_mark = writer.as_ref().map_or(0, |w| w.stats().head);
    let mut idle_since: Option<Instant> = None;
    let mut fresh_start = false;
    // Freshness: when each packet's events arrived (and the buffer position after them), the
    // last arrival, how much to fetch at a time, the mean event size, the last packet's skips.
    let mut fresh = Freshness::new();
    while !control.stop.load(Ordering::Relaxed) {
        if writer.is_none() {
            // The buffer could not be re-created: try again every second.
            std::thread::sleep(Duration::from_secs(1));
            writer = CircWriter::create(&path, capacity).ok();
            continue;
        }
        let g = control.generation.load(Ordering::Relaxed);
        let target = control.target.lock().clone();
        if g != generation {
            generation = g;
            let dropped = match &target {
                Some((host, port)) => session.retarget(host, *port),
                None => session.reset(),
            };
            if dropped {
                log.info("connection dropped");
            }
            vars.no_conn.set(1);
        }
        // The age bound holds whatever the connection does (paused, disconnected, retrying).
        let maxage_ms = vars.maxage_ms.get().clamp(0, u32::MAX as i64) as u32;
        fresh.set_bound(maxage_ms);
        if let Some(w) = writer.as_mut() {
            let n = fresh.expire(w, consumed_mark, Instant::now());
            if n > 0 {
                vars.expired.add(n as i64);
            }
        }
        let paused = control.paused.load(Ordering::SeqCst);
        let Some((host, port)) = target else {
            if paused {
                control.drained.fetch_add(1, Ordering::SeqCst);
            }
            idle_wait(vars, stats, &mut waits);
            continue;
        };
        let mode = Mode::from_u16(vars.mode.get().clamp(0, 2) as u16).unwrap_or_default();
        if paused && mode == Mode::Push && session.in_flight() > 0 {
            // Push streams whatever we do: drop the stream while paused (and connect again
            // below, asking nothing).
            session.disconnect();
        }
        if !session.is_connected() {
            if paused {
                // Not connected: nothing in flight, so nothing more arrives until `resume`.
                control.drained.fetch_add(1, Ordering::SeqCst);
            }
            match session.connect_if_due() {
                Attempt::Connected => {
                    if session.backoff().failures() == 0 {
                        log.info(format!("connected to {host}:{port}"));
                    }
                    if session.connects() > 1 {
                        vars.reconnects.add(1);
                    }
                    vars.no_conn.set(0);
                    waits = 0;
                }
                Attempt::Wait(w) => {
                    std::thread::sleep(w.min(Duration::from_millis(20)));
                    continue;
                }
                Attempt::Failed(e, _) => {
                    fail_log(&mut failures, &e.to_string(), vars, log);
                    vars.no_conn.set(1);
                    continue;
                }
            }
        }
        let in_flight = session.in_flight();
        if paused && (mode == Mode::Push || in_flight == 0) {
            // Paused: connected (reconnect connects in PAUSE_STATE too), asking nothing.
            control.drained.fetch_add(1, Ordering::SeqCst);
            idle_wait(vars, stats, &mut waits);
            continue;
        }
        // Low load: with nobody reading, stop after a small look-ahead; when readers come back
        // after a while, start again from the freshest events. With readers and an age bound,
        // fetch about what they consume: a request when less than half of `fetch_size` is
        // left unread, `fetch_size` doubling while readers drain each packet quickly and
        // halving when events expire unread.
        let mut wanted = true;
        let mut lookahead_left = u64::MAX;
        if let Some(w) = writer.as_ref() {
            let act = w.reader_activity(READERS_WINDOW);
            vars.readers.set(act.active as i64);
            if let Some(pos) = act.consumed_to {
                consumed_mark = pos;
            }
            let ahead = act.head.saturating_sub(consumed_mark);
            let lookahead = vars.lookahead.get().max(0) as u64;
            if act.active > 0 && maxage_ms > 0 {
                wanted = fresh.wanted(ahead, Instant::now());
            } else {
                wanted = act.active > 0 || ahead < lookahead;
            }
            if act.active == 0 {
                lookahead_left = lookahead.saturating_sub(ahead);
            }
            if !wanted {
                idle_since.get_or_insert_with(Instant::now);
                if in_flight == 0 || mode == Mode::Push {
                    if mode == Mode::Push && act.active == 0 {
                        session.disconnect();
                    }
                    idle_wait(vars, stats, &mut waits);
                    continue;
                }
            } else if let Some(t) = idle_since.take() {
                fresh_start = t.elapsed() > FRESH_AFTER && act.active > 0;
            }
        }
        // After a while without events (or none yet), what the farm holds after our position
        // is old: start from its freshest.
        if fresh.stale(Instant::now()) {
            fresh_start = true;
        }
        let maxev = vars.maxevents.get();
        let max_events = if maxev <= 0 { 0 } else { maxev as u32 };
        // With no reader active, ask only for what the look-ahead still allows.
        let mut max_bytes = (max_event as u64 / 2)
            .clamp(4096, 8 << 20)
            .min(lookahead_left.max(1));
        if maxage_ms > 0 && lookahead_left == u64::MAX {
            max_bytes = max_bytes.min(fresh.fetch_size().max(1));
        }
        let max_bytes = max_bytes as u32;
        let farm_maxage = maxage_ms.div_ceil(2);
        let ask = Ask {
            mode,
            max_events,
            max_bytes,
            maxage_ms: farm_maxage,
        };
        // Readers that do not take every event are sampling anyway: give them the freshest.
        let sampling = fresh.sampling();
        let sent = if mode == Mode::Push {
            // One stream, asked for again when its limits change.
            session.stream(ask)
        } else {
            let mut r = Ok(());
            // One request at a time while only the look-ahead is being filled, or while
            // readers take little.
            let depth = if lookahead_left == u64::MAX && fresh.pipelined() {
                PIPELINE
            } else {
                1
            };
            while !paused && wanted && session.in_flight() < depth && r.is_ok() {
                let m = if fresh_start || sampling {
                    Mode::Latest
                } else {
                    mode
                };
                fresh_start = false;
                r = session.request(Ask { mode: m, ..ask });
            }
            r
        };
        let got = sent.and_then(|()| {
            session.receive_header(Duration::from_micros(vars.timeout_us.get().max(1) as u64))
        });
        if let Some(before) = session.take_proven() {
            // The farm answered: the connection works.
            if before > 0 {
                log.info(format!(
                    "connected to {host}:{port} after {before} failed attempt{}",
                    if before == 1 { "" } else { "s" }
                ));
            }
            if let Some(line) = failures.succeeded() {
                log.info(line);
            }
        }
        let failed = match got {
            Ok(Some(header)) if matches!(header.status, Status::Ok | Status::Stream) => {
                waits = 0;
                // Events go straight from the socket into the local buffer.
                let c = session.client().expect("a packet came on it");
                let r = take_packet(c, &mut writer, max_event, vars, log, &mut last_evnr);
                // Skipped by the farm, and sent but overwritten there while in flight
                // (abandoned here, never committed).
                let end = c.packet_end();
                session.took(last_evnr);
                vars.lost.add(end.skipped as i64);
                let ((n, bytes), failed) = match r {
                    Ok(x) => (x, None),
                    Err((x, e)) => (x, Some(e)),
                };
                vars.packevents.set(end.events as i64);
                if n > 0 {
                    vars.lastevent.set(last_evnr as i64);
                }
                if let Some(w) = writer.as_ref() {
                    fresh.packet(
                        n,
                        bytes,
                        max_bytes,
                        end.skipped,
                        w.position(),
                        Instant::now(),
                    );
                }
                if let Some(w) = writer.as_ref() {
                    vars.circfulls.set(w.circfulls() as i64);
                }
                stats.count(n, 1, bytes);
                stats.end_loop();
                failed
            }
            Ok(Some(header)) => {
                vars.lost.add(header.skipped as i64);
                count_wait(vars, stats, &mut waits);
                None
            }
            Ok(None) => {
                count_wait(vars, stats, &mut waits);
                None
            }
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            // Whatever went wrong on this connection (the events taken before stay), drop it
            // and reconnect with backoff: a farm that accepts and then refuses backs off as
            // much as one that refuses to connect.
            session.failed();
            fail_log(&mut failures, &e.to_string(), vars, log);
            vars.no_conn.set(1);
        }
    }
    vars.no_conn.set(1);
    writer
}

/// The freshness side of the prefetch policy: with a bound of `maxage_ms`, an event stays
/// readable in the local buffer for half of it after it arrived (the farm serves none older
/// than the other half), and rspydaemon fetches about what readers consume: a request when less
/// than half of the fetch size is left unread, the fetch size doubling while readers drain
/// full packets quickly and quartering when events expire unread.
#[derive(Debug)]
pub(super) struct Freshness {
    /// Half the bound: how long an event may wait unread in the local buffer (zero: no bound).
    local_age: Duration,
    /// When each packet's events arrived, and the buffer position after them.
    arrivals: VecDeque<(Instant, u64)>,
    last_arrival: Option<Instant>,
    fetch_size: u64,
    avg_event: u64,
    /// Events the farm skipped for us in the last packet.
    last_skipped: u64,
    /// The last packet was as large as asked for (the farm had more).
    last_full: bool,
}

impl Freshness {
    pub(super) fn new() -> Freshness {
        Freshness {
            local_age: Duration::ZERO,
            arrivals: VecDeque::new(),
            last_arrival: None,
            fetch_size: 64 << 10,
            avg_event: 1024,
            last_skipped: 0,
            last_full: false,
        }
    }

    pub(super) fn bounded(&self) -> bool {
        !self.local_age.is_zero()
    }

    pub(super) fn set_bound(&mut self, maxage_ms: u32) {
        self.local_age = Duration::from_millis(maxage_ms as u64 / 2);
        if !self.bounded() {
            self.arrivals.clear();
        }
    }

    /// Expires what waited longer than allowed; returns how many events readers never read
    /// (what the furthest reader, at `consumed`, had read goes quietly).
    pub(super) fn expire(&mut self, w: &mut CircWriter, consumed: u64, now: Instant) -> u64 {
        let mut mark = None;
        while let Some(&(t, pos)) = self.arrivals.front() {
            if now.saturating_duration_since(t) < self.local_age {
                break;
            }
            mark = Some(pos);
            self.arrivals.pop_front();
        }
        let Some(pos) = mark else { return 0 };
        w.expire_before(consumed.min(pos));
        let n = w.expire_before(pos);
        if n > 0 {
            // Readers did not take all we fetched: fetch less at a time.
            self.fetch_size = (self.fetch_size / 4).max(self.avg_event);
        }
        n
    }

    /// Whether to ask for more, with `ahead` bytes unread by the furthest reader.
    pub(super) fn wanted(&mut self, ahead: u64, now: Instant) -> bool {
        // Readers took all of a full packet within a quarter of the time it may stay: more.
        if ahead == 0
            && self.last_full
            && self
                .last_arrival
                .is_some_and(|t| now.saturating_duration_since(t) < self.local_age / 4)
        {
            self.fetch_size = (self.fetch_size * 2).min(MAX_FETCH);
            self.last_full = false;
        }
        // Readers that take everything at full size: full speed, as without a bound.
        self.fetch_size >= MAX_FETCH || ahead < self.fetch_size / 2 + 1
    }

    /// After a while without events (or none yet), what the farm holds after our position is
    /// old: the next request should ask for the freshest.
    pub(super) fn stale(&self, now: Instant) -> bool {
        self.bounded()
            && self
                .last_arrival
                .is_none_or(|t| now.saturating_duration_since(t) > self.local_age)
    }

    /// Readers that do not take every event are sampling anyway: give them the freshest.
    pub(super) fn sampling(&self) -> bool {
        self.bounded() && self.last_skipped > 0
    }

    /// Whether two requests may be in flight.
    pub(super) fn pipelined(&self) -> bool {
        !self.bounded() || self.fetch_size >= 1 << 20
    }

    pub(super) fn fetch_size(&self) -> u64 {
        self.fetch_size
    }

    /// A packet of `n` events, `bytes` bytes, arrived (asked for at most `asked` bytes; the farm
    /// skipped `skipped` for us); the buffer is at `pos` after them.
    pub(super) fn packet(
        &mut self,
        n: u64,
        bytes: u64,
        asked: u32,
        skipped: u64,
        pos: u64,
        now: Instant,
    ) {
        self.last_skipped = skipped;
        if n == 0 {
            return;
        }
        self.last_arrival = Some(now);
        self.avg_event = bytes.checked_div(n).unwrap_or(self.avg_event).max(1);
        self.last_full = bytes + self.avg_event > u64::from(asked) / 2;
        if self.bounded() {
            self.arrivals.push_back((now, pos));
        }
    }
}

/// Logs a failure to fetch (once while it repeats, then with its count) and shows it in
/// `lasterror`.
pub(super) fn fail_log(failures: &mut RepeatedFailure, msg: &str, vars: &Vars, log: &EventLog) {
    if let Some(line) = failures.failed(msg) {
        log.warn(format!(
            "{line}; retrying with backoff (up to {} s between attempts)",
            BACKOFF.1.as_secs()
        ));
    }
    vars.lasterror.set(msg);
}

/// Reads the events of the packet whose header was just received straight into the local
/// buffer. Returns the events and bytes written; on a connection or protocol error, those and
/// the error.
#[allow(clippy::type_complexity)]
pub(super) fn take_packet(
    c: &mut SpyClient,
    writer: &mut Option<CircWriter>,
    max_event: usize,
    vars: &Vars,
    log: &EventLog,
    last_evnr: &mut u64,
) -> Result<(u64, u64), ((u64, u64), SpyError)> {
    let (mut n, mut bytes) = (0u64, 0u64);
    loop {
        let (evnr, len) = match c.next_event() {
            Ok(Some(x)) => x,
            Ok(None) => return Ok((n, bytes)),
            Err(e) => return Err(((n, bytes), e)),
        };
        // An event not taken is skipped by the next `next_event`.
        if len > max_event || writer.is_none() {
            vars.ignored.add(1);
            continue;
        }
        let mut attempt = 0;
        loop {
            let w = writer.as_mut().expect("checked above");
            match w.reserve(evnr, len) {
                Ok(mut r) => {
                    match c.read_body(r.buf()) {
                        // Dropped uncommitted: nothing half-received reaches readers.
                        Err(e) => return Err(((n, bytes), e)),
                        // Overwritten at the farm while in flight: dropped uncommitted too
                        // (counted lost from the packet's end).
                        Ok(false) => break,
                        Ok(true) => {}
                    }
                    r.commit();
                    n += 1;
                    bytes += len as u64;
                    *last_evnr = evnr;
                    break;
                }
                Err(WriteError::NotIncreasing { .. }) if attempt == 0 => {
                    attempt += 1;
                    match recreate(writer.take().expect("checked above"), log) {
                        Ok(w) => *writer = Some(w),
                        Err(msg) => {
                            log.error(&msg);
                            vars.lasterror.set(&msg);
                            vars.ignored.add(1);
                            break;
                        }
                    }
                }
                Err(e) => {
                    log.warn(e.to_string());
                    vars.ignored.add(1);
                    break;
                }
            }
        }
    }
}

/// Replaces the local buffer by a new instance of the same name and size (the farm's event
/// numbers went back: another farm, or its producer restarted). Readers re-attach to it.
pub(super) fn recreate(old: CircWriter, log: &EventLog) -> Result<CircWriter, String> {
    let path = old.path().to_owned();
    let cap = old.stats().capacity;
    let last = old.stats().last_evnr.unwrap_or(0);
    drop(old);
    let w = CircWriter::create(&path, cap)
        .map_err(|e| format!("cannot re-create buffer {}: {e}", path.display()))?;
    log.warn(format!(
        "event numbers went back below {last}: buffer {} re-created, readers re-attach",
        path.display()
    ));
    Ok(w)
}

/// A wait for data gave up after `timeout_us`; `timeoutcounts` of them in a row count one
/// `timeouts`, a timeout loop, which counts as a loop for the statistics' cadence
/// (`upfreq`, `upfreq_l`): the `sg_*`/`sl_*` keep their cadence while no data comes.
pub(super) fn count_wait(vars: &Vars, stats: &Stats, waits: &mut i64) {
    *waits += 1;
    if *waits >= vars.timeoutcounts.get().max(1) {
        vars.timeouts.add(1);
        stats.end_loop();
        *waits = 0;
    }
}

/// Nothing to ask for now (paused, no reader, disconnected): wait one `timeout_us`, which
/// counts as a wait for data.
pub(super) fn idle_wait(vars: &Vars, stats: &Stats, waits: &mut i64) {
    let t = Duration::from_micros(vars.timeout_us.get().max(1) as u64);
    std::thread::sleep(t.min(Duration::from_millis(20)));
    count_wait(vars, stats, waits);
}
