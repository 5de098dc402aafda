//! Freshness (issue 12): no reader of rspydaemon's local buffer is served an event older than
//! `maxage_ms`; a slow reader is fed at its pace and counted in `readers`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shvars::circ::{CircWriter, SamplingReader, StartAt, TryReadError};

use crate::spy::{cmd, start_farm};
use crate::util::Env;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A producer of `rate` events/s of 1000 bytes, each starting with the time it was written.
struct Stamped {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Stamped {
    fn start(path: std::path::PathBuf, rate: u64) -> Stamped {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let mut w = CircWriter::create(&path, 4 << 20).unwrap();
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut evnr = 0u64;
            let mut buf = vec![0u8; 1000];
            while !s.load(Ordering::Relaxed) {
                let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
                while evnr < due {
                    evnr += 1;
                    buf[..8].copy_from_slice(&now_ns().to_le_bytes());
                    w.write(evnr, &buf).unwrap();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Stamped {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Stamped {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Reads `n` events at most every `period` (zero: as fast as they come); returns the age in
/// ms of each when it was read.
fn read_ages(env: &Env, r: &mut SamplingReader, n: usize, period: Duration) -> Vec<f64> {
    let mut buf = vec![0u8; 4096];
    let mut ages = Vec::new();
    let t0 = Instant::now();
    while ages.len() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "only {} events\n{}",
            ages.len(),
            env.stderr_of("spy1")
        );
        match r.try_read(&mut buf) {
            Ok(ev) => {
                let ts = u64::from_le_bytes(buf[..8].try_into().unwrap());
                ages.push(now_ns().saturating_sub(ts) as f64 / 1e6);
                let _ = ev;
                if !period.is_zero() {
                    std::thread::sleep(period);
                }
            }
            Err(TryReadError::Empty) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{e}"),
        }
    }
    ages
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// The bound, plus what a loaded test machine may add: rspydaemon looks at ages every loop
/// (20 ms at most), the farm at its buffer every 10 ms, and either may be descheduled. (Before
/// the bound, ages were seconds.)
const SLACK_MS: f64 = 250.0;

#[test]
fn issue12_readers_are_never_served_old_events() {
    let mut env = Env::new();
    let _p = Stamped::start(env.path("B_1"), 2000);
    let port = start_farm(&mut env, "farm1", "B_1");
    let mut c = env.command("rspydaemon");
    c.args([
        "-n",
        "spy1",
        "-c",
        "set maxage_ms 400",
        "-c",
        "init L_1",
        "-c",
        &format!("start 127.0.0.1 {port}"),
    ]);
    let pid = env.spawn("spy1", c);
    env.wait_ready("spy1", pid);
    env.wait_until("connected", || env.get_int("spy1", "no_conn") == 0);
    // The look-ahead fetched while nobody reads grows old.
    env.wait_until("a look-ahead", || env.get_int("spy1", "lastevent") > 0);
    std::thread::sleep(Duration::from_millis(1500));
    let bound = 400.0 + SLACK_MS;
    // The first reader, from the oldest the buffer holds.
    let mut r = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
    let ages = read_ages(&env, &mut r, 200, Duration::ZERO);
    assert!(
        max(&ages) < bound,
        "first reader: max age {} ms",
        max(&ages)
    );
    // Back after a pause.
    std::thread::sleep(Duration::from_millis(2500));
    let ages = read_ages(&env, &mut r, 200, Duration::ZERO);
    assert!(
        max(&ages) < bound,
        "returning reader: max age {} ms",
        max(&ages)
    );
    // A slow reader: fresh events at its pace, fetched at about its pace, counted as a reader.
    let written = |env: &Env| {
        SamplingReader::open(&env.path("L_1"))
            .unwrap()
            .buffer_stats()
            .events_written
    };
    let w0 = written(&env);
    let mut buf = vec![0u8; 4096];
    let mut ages = Vec::new();
    let mut counted = 0;
    let t0 = Instant::now();
    while ages.len() < 30 {
        assert!(t0.elapsed() < Duration::from_secs(30));
        match r.try_read(&mut buf) {
            Ok(_) => {
                let ts = u64::from_le_bytes(buf[..8].try_into().unwrap());
                ages.push(now_ns().saturating_sub(ts) as f64 / 1e6);
                if env.get_int("spy1", "readers") == 1 {
                    counted += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(TryReadError::Empty) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{e}"),
        }
    }
    let fetched = written(&env) - w0;
    assert!(max(&ages) < bound, "slow reader: max age {} ms", max(&ages));
    assert_eq!(
        counted, 30,
        "the slow reader counted in `readers` {counted} times of 30"
    );
    assert!(
        fetched < 30 * 10,
        "rspydaemon fetched {fetched} events for a reader that took 30"
    );
    assert!(env.get_int("spy1", "expired") > 0 || fetched < 60);
    // Disconnected, the bound still holds: what the buffer holds grows old and goes (the
    // seed's "continue serving empty").
    cmd(&env, "spy1", &["disconnect"]).ok();
    env.wait_until("the old events to expire", || {
        let mut r = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
        matches!(r.try_read(&mut buf), Err(TryReadError::Empty))
    });
}

#[test]
fn issue12_maxage_zero_serves_old_events_when_asked() {
    let mut env = Env::new();
    let _p = Stamped::start(env.path("B_1"), 500);
    std::thread::sleep(Duration::from_millis(1200));
    let port = start_farm(&mut env, "farm1", "B_1");
    let mut c = env.command("rspydaemon");
    c.args([
        "-n",
        "spy1",
        "-c",
        "set maxage_ms 0",
        "-c",
        "set lookahead 100000000",
        "-c",
        "init L_1",
        "-c",
        &format!("start 127.0.0.1 {port}"),
    ]);
    let pid = env.spawn("spy1", c);
    env.wait_ready("spy1", pid);
    env.wait_until("connected", || env.get_int("spy1", "no_conn") == 0);
    let mut r = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
    let ages = read_ages(&env, &mut r, 100, Duration::ZERO);
    // The farm buffer's oldest events, from before the farm started.
    assert!(ages[0] > 1000.0, "first age {} ms", ages[0]);
}
