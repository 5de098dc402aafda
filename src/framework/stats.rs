//! The KLOE statistics cadence, implemented once for every daemon.
//!
//! A daemon's worker counts what it moves ([`Stats::count`]) and marks the end of each loop
//! ([`Stats::end_loop`]). The `sg_*` variables cover the time since the last `start` or `resume`
//! and are refreshed every `upfreq` loops; the `sl_*` variables cover the time since the previous
//! short-term refresh and are refreshed every `upfreq_l` loops, which also refreshes `sg_*`.
//! 0 disables that automatic refresh. The `update` command refreshes both at once.
//! `*_cpu` are CPU nanoseconds of the process (getrusage), `sg_gbytes` counts GiB (2^30) and
//! `sg_bytes` the remainder.
//!
//! Counting costs three relaxed atomic adds; the refresh (a getrusage and a dozen variable
//! stores) happens only at the cadence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use shvars::region::{AddError, IntVar, VarRegion, VarSpec};

/// Default cadences of a daemon.
#[derive(Debug, Clone, Copy)]
pub struct StatsConfig {
    /// Default `upfreq` (loops between long-term refreshes).
    pub upfreq: i64,
    /// Default `upfreq_l` (loops between short-term refreshes).
    pub upfreq_l: i64,
    /// What one "pack" is for this daemon, for the variable descriptions.
    pub pack_name: &'static str,
}

#[derive(Debug, Clone, Copy)]
struct Point {
    at: Instant,
    cpu_ns: u64,
    events: u64,
    packs: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Vars {
    upfreq: IntVar,
    upfreq_l: IntVar,
    sg_msecs: IntVar,
    sg_events: IntVar,
    sg_packs: IntVar,
    sg_cpu: IntVar,
    sg_gbytes: IntVar,
    sg_bytes: IntVar,
    sg_uptime: IntVar,
    sl_msecs: IntVar,
    sl_events: IntVar,
    sl_packs: IntVar,
    sl_cpu: IntVar,
    sl_bytes: IntVar,
    sl_uptime: IntVar,
}

#[derive(Debug)]
struct Inner {
    events: AtomicU64,
    packs: AtomicU64,
    bytes: AtomicU64,
    loops: AtomicU64,
    vars: Vars,
    marks: Mutex<(Point, Point)>,
}

/// The statistics of one daemon. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Stats {
    inner: Arc<Inner>,
}

/// CPU time of the whole process, user plus system, in ns.
pub fn cpu_ns() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                (t.tv_sec() as u64) * 1_000_000_000 + (t.tv_usec() as u64) * 1000
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => 0,
    }
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Stats {
    /// Publishes the cadence and statistics variables in `region`.
    ///
    /// # Errors
    /// If the region refuses a variable (a name taken, or no room).
    pub fn new(region: &VarRegion, cfg: StatsConfig) -> Result<Stats, AddError> {
        let p = cfg.pack_name;
        let i = |name: &str, desc: String| region.add_int(VarSpec::int(name, 0).desc(&desc));
        let c = |name: &str, desc: String, unit: &str| {
            region.add_int(VarSpec::int(name, 0).desc(&desc).unit(unit).counter())
        };
        let vars = Vars {
            upfreq: region.add_int(
                VarSpec::int("upfreq", cfg.upfreq)
                    .rw()
                    .range(Some(0.0), None)
                    .unit("loops")
                    .desc("Long term status update frequency, in loops; 0: at short term updates only"),
            )?,
            upfreq_l: region.add_int(
                VarSpec::int("upfreq_l", cfg.upfreq_l)
                    .rw()
                    .range(Some(0.0), None)
                    .unit("loops")
                    .desc("Short term status update frequency, in loops (also updates long term status); 0: no automatic update"),
            )?,
            sg_msecs: c("sg_msecs", "Milliseconds from the last start or resume".into(), "ms")?,
            sg_events: c("sg_events", "Events from the last start or resume".into(), "events")?,
            sg_packs: c("sg_packs", format!("Number of {p} from the last start or resume"), p)?,
            sg_cpu: c("sg_cpu", "CPU used from the last start or resume".into(), "ns")?,
            sg_gbytes: c("sg_gbytes", "GBytes (2^30) from the last start or resume".into(), "GiB")?,
            sg_bytes: i("sg_bytes", "Bytes (mod 2^30) from the last start or resume".into())?,
            sg_uptime: region.add_int(VarSpec::int("sg_uptime", 0).metric("shvar_sg_update_timestamp_seconds")
                .desc("Time of the last long term status update (Unix seconds; 0: none yet)"))?,
            sl_msecs: region.add_int(VarSpec::int("sl_msecs", 0).unit("ms")
                .desc("Milliseconds covered by the last short term update"))?,
            sl_events: i("sl_events", "Events in the last short term update interval".into())?,
            sl_packs: i("sl_packs", format!("Number of {p} in the last short term update interval"))?,
            sl_cpu: region.add_int(VarSpec::int("sl_cpu", 0).unit("ns")
                .desc("CPU used in the last short term update interval"))?,
            sl_bytes: i("sl_bytes", "Bytes in the last short term update interval".into())?,
            sl_uptime: region.add_int(VarSpec::int("sl_uptime", 0).metric("shvar_sl_update_timestamp_seconds")
                .desc("Time of the last short term status update (Unix seconds; 0: none yet)"))?,
        };
        let now = Point {
            at: Instant::now(),
            cpu_ns: cpu_ns(),
            events: 0,
            packs: 0,
            bytes: 0,
        };
        Ok(Stats {
            inner: Arc::new(Inner {
                events: AtomicU64::new(0),
                packs: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                loops: AtomicU64::new(0),
                vars,
                marks: Mutex::new((now, now)),
            }),
        })
    }

    /// Counts work done: events, packets (or whatever the daemon's unit is) and bytes.
    #[inline]
    pub fn count(&self, events: u64, packs: u64, bytes: u64) {
        let i = &self.inner;
        i.events.fetch_add(events, Ordering::Relaxed);
        i.packs.fetch_add(packs, Ordering::Relaxed);
        i.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Marks the end of one loop of the daemon's worker and refreshes at the cadence.
    #[inline]
    pub fn end_loop(&self) {
        let i = &self.inner;
        let n = i.loops.fetch_add(1, Ordering::Relaxed) + 1;
        let up_l = i.vars.upfreq_l.get();
        if up_l > 0 && n.is_multiple_of(up_l as u64) {
            self.refresh(true);
            return;
        }
        let up = i.vars.upfreq.get();
        if up > 0 && n.is_multiple_of(up as u64) {
            self.refresh(false);
        }
    }

    /// Refreshes both `sg_*` and `sl_*` now (the `update` command).
    pub fn update(&self) {
        self.refresh(true);
    }

    /// Starts a new long-term interval (on `start` and `resume`): `sg_*` restart from zero.
    pub fn reset(&self) {
        let mut m = self.inner.marks.lock();
        let p = self.point();
        *m = (p, p);
        self.inner.loops.store(0, Ordering::Relaxed);
        // Publish the interval's start from the same point: a worker counting meanwhile must not
        // show up as work done in an interval that has not begun.
        self.publish(&mut m, p, true);
        // No update since the start yet: the seed's "set to 0 if no update yet".
        self.inner.vars.sg_uptime.set(0);
        self.inner.vars.sl_uptime.set(0);
    }

    /// Totals counted since the process started: events, packs, bytes.
    pub fn totals(&self) -> (u64, u64, u64) {
        let i = &self.inner;
        (
            i.events.load(Ordering::Relaxed),
            i.packs.load(Ordering::Relaxed),
            i.bytes.load(Ordering::Relaxed),
        )
    }

    fn point(&self) -> Point {
        let (events, packs, bytes) = self.totals();
        Point {
            at: Instant::now(),
            cpu_ns: cpu_ns(),
            events,
            packs,
            bytes,
        }
    }

    fn refresh(&self, short: bool) {
        // The point is taken under the lock so it is never older than the marks it is compared to.
        let mut m = self.inner.marks.lock();
        let p = self.point();
        self.publish(&mut m, p, short);
    }

    fn publish(&self, m: &mut (Point, Point), p: Point, short: bool) {
        let v = &self.inner.vars;
        let (g, l) = *m;
        let now = unix_secs();
        let gbytes = p.bytes - g.bytes;
        v.sg_msecs.set(p.at.duration_since(g.at).as_millis() as i64);
        v.sg_events.set((p.events - g.events) as i64);
        v.sg_packs.set((p.packs - g.packs) as i64);
        v.sg_cpu.set(p.cpu_ns.saturating_sub(g.cpu_ns) as i64);
        v.sg_gbytes.set((gbytes >> 30) as i64);
        v.sg_bytes.set((gbytes & ((1 << 30) - 1)) as i64);
        v.sg_uptime.set(now);
        if short {
            v.sl_msecs.set(p.at.duration_since(l.at).as_millis() as i64);
            v.sl_events.set((p.events - l.events) as i64);
            v.sl_packs.set((p.packs - l.packs) as i64);
            v.sl_cpu.set(p.cpu_ns.saturating_sub(l.cpu_ns) as i64);
            v.sl_bytes.set((p.bytes - l.bytes) as i64);
            v.sl_uptime.set(now);
            m.1 = p;
        }
    }
}
