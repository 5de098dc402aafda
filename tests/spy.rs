//! The spy daemons end to end: a producer writes a farm buffer, farmspydaemon serves it,
//! rspydaemon fills a local buffer, readers check every event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shvars::circ::{CircWriter, SamplingReader, StartAt, TryReadError};

use crate::util::{free_port, Env};

mod bad_peers;
pub use bad_peers::fake_farm;
mod tools;
mod verified;

/// Payload of event `evnr` with `len` bytes: recognisable and checkable.
pub fn payload(evnr: u64, len: usize) -> Vec<u8> {
    let mut x = evnr.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            if i < 8 {
                evnr.to_le_bytes()[i]
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

/// A producer thread writing events of `size` bytes every `period` into a farm buffer.
pub struct Producer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Producer {
    pub fn start(path: std::path::PathBuf, cap: u64, size: usize, period: Duration) -> Producer {
        Self::start_at(path, cap, size, period, 0)
    }

    pub fn start_at(
        path: std::path::PathBuf,
        cap: u64,
        size: usize,
        period: Duration,
        first: u64,
    ) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let mut w = CircWriter::create(&path, cap).expect("farm buffer");
        let handle = std::thread::spawn(move || {
            let mut evnr = first;
            while !s.load(Ordering::Relaxed) {
                evnr += 1;
                w.write(evnr, &payload(evnr, size)).unwrap();
                std::thread::sleep(period);
            }
            evnr
        });
        Producer {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub fn start_farm(env: &mut Env, name: &str, buffer: &str) -> u16 {
    start_farm_on(env, name, buffer, 0)
}

pub fn start_farm_on(env: &mut Env, name: &str, buffer: &str, port: u16) -> u16 {
    let mut c = env.command("farmspydaemon");
    let (init, set) = (format!("init {buffer}"), format!("set port {port}"));
    c.args(["-n", name, "-c", &init, "-c", &set, "-c", "start"]);
    let pid = env.spawn(name, c);
    env.wait_ready(name, pid);
    env.wait_until("the farm to listen", || {
        env.get(name, "runstate") == "RUNNING_STATE"
    });
    env.get_int(name, "port") as u16
}

#[test]
fn events_flow_end_to_end() {
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1_1"), 1 << 22, 1000, Duration::from_micros(500));
    let port = start_farm(&mut env, "farm1", "B_1_1");
    let mut c = env.command("rspydaemon");
    c.args([
        "-n",
        "spy1",
        "-c",
        "init L_1",
        "-c",
        &format!("start 127.0.0.1 {port}"),
    ]);
    let pid = env.spawn("spy1", c);
    env.wait_ready("spy1", pid);
    env.wait_until("rspydaemon to connect", || {
        env.get_int("spy1", "no_conn") == 0
    });
    let mut r = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    let mut last = 0;
    let t0 = Instant::now();
    while got < 200 && t0.elapsed() < Duration::from_secs(20) {
        match r.try_read(&mut buf) {
            Ok(ev) => {
                assert!(ev.evnr > last, "{} after {last}", ev.evnr);
                assert_eq!(
                    &buf[..ev.len],
                    &payload(ev.evnr, 1000)[..],
                    "event {}",
                    ev.evnr
                );
                last = ev.evnr;
                got += 1;
            }
            Err(TryReadError::Empty) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, 200, "{}", env.stderr_of("spy1"));
    assert!(env.get_int("spy1", "lastevent") > 0);
}

/// Starts rspydaemon NAME on local buffer LNAME. It fetches whether or not anybody reads (a
/// huge lookahead) unless `extra` sets lookahead itself: the low-load policy has its own test.
/// rspydaemon `spy1` filling `L_1` from the farm on `port` of this machine, connected at start.
pub fn connect_spy(env: &mut Env, port: u16) -> u32 {
    start_spy_to(env, "spy1", "L_1", port, &[])
}

/// rspydaemon `name` on local buffer `lname` (as [`start_spy`]) whose start-up commands are
/// `cmds` and then `start 127.0.0.1 PORT`: fetching from the farm of this machine on `port`.
pub fn start_spy_to(env: &mut Env, name: &str, lname: &str, port: u16, cmds: &[&str]) -> u32 {
    let start = format!("start 127.0.0.1 {port}");
    let args: Vec<&str> = cmds
        .iter()
        .copied()
        .chain([start.as_str()])
        .flat_map(|c| ["-c", c])
        .collect();
    start_spy(env, name, lname, &args)
}

pub fn start_spy(env: &mut Env, name: &str, lname: &str, extra: &[&str]) -> u32 {
    let mut c = env.command("rspydaemon");
    let init = format!("init {lname}");
    c.args(["-n", name, "-c", "set lookahead 1000000000", "-c", &init])
        .args(extra);
    let pid = env.spawn(name, c);
    env.wait_ready(name, pid);
    // Ready means the region and the FIFO exist; the `-c` commands run after that. Wait for
    // `init` (which creates the local buffer) before a test opens the buffer.
    env.wait_until(&format!("{name} to run init"), || {
        env.get(name, "runstate") != "UNDEFINED_STATE"
    });
    pid
}

/// Reads `n` events from `r`, checking payloads and order; returns the last event number.
pub fn read_events(env: &Env, r: &mut SamplingReader, n: usize, size: usize, after: u64) -> u64 {
    let mut buf = vec![0u8; size.max(4096) * 2];
    let mut got = 0;
    let mut last = after;
    let t0 = Instant::now();
    while got < n {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "only {got} of {n} events in 20 s\n{}",
            env.stderr_of("spy1")
        );
        match r.try_read(&mut buf) {
            Ok(ev) => {
                assert!(ev.evnr > last, "event {} after {last}", ev.evnr);
                assert_eq!(
                    &buf[..ev.len],
                    &payload(ev.evnr, size)[..],
                    "event {}",
                    ev.evnr
                );
                last = ev.evnr;
                got += 1;
            }
            Err(TryReadError::Empty) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("{e}"),
        }
    }
    last
}

pub fn cmd(env: &Env, name: &str, line: &[&str]) -> crate::util::Out {
    let mut args = vec!["cmd", name];
    args.extend_from_slice(line);
    env.shvar(&args)
}

#[test]
fn farm_commands_in_every_state() {
    let mut env = Env::new();
    let mut c = env.command("farmspydaemon");
    c.args(["-n", "farm1", "-c", "set port 0"]);
    let pid = env.spawn("farm1", c);
    env.wait_ready("farm1", pid);
    cmd(&env, "farm1", &["start"])
        .expect_code(1)
        .stderr_has("not allowed in UNDEFINED_STATE (allowed in: INIT_STATE)");
    for refused in ["pause", "resume", "update", "end"] {
        cmd(&env, "farm1", &[refused])
            .expect_code(1)
            .stderr_has("UNDEFINED_STATE");
    }
    cmd(&env, "farm1", &["init", "B_1_1"]).ok();
    assert_eq!(env.get("farm1", "bcname"), "B_1_1");
    cmd(&env, "farm1", &["start"])
        .expect_code(1)
        .stderr_has("cannot serve B_1_1: buffer")
        .stderr_has("does not exist");
    assert_eq!(env.get("farm1", "runstate"), "INIT_STATE");
    let _p = Producer::start(env.path("B_1_1"), 1 << 20, 100, Duration::from_millis(1));
    cmd(&env, "farm1", &["start"])
        .ok()
        .stdout_has("listening on port");
    assert_eq!(env.get("farm1", "runstate"), "RUNNING_STATE");
    cmd(&env, "farm1", &["init"])
        .expect_code(1)
        .stderr_has("not allowed in RUNNING_STATE");
    cmd(&env, "farm1", &["resume"])
        .expect_code(1)
        .stderr_has("allowed in: PAUSE_STATE");
    cmd(&env, "farm1", &["update"]).ok();
    cmd(&env, "farm1", &["pause"]).ok();
    cmd(&env, "farm1", &["update"])
        .expect_code(1)
        .stderr_has("not allowed in PAUSE_STATE");
    cmd(&env, "farm1", &["end"])
        .expect_code(1)
        .stderr_has("not allowed in PAUSE_STATE");
    cmd(&env, "farm1", &["resume"]).ok();
    cmd(&env, "farm1", &["end"]).ok();
    assert_eq!(env.get("farm1", "runstate"), "INIT_STATE");
    cmd(&env, "farm1", &["exit"]).ok();
    assert_eq!(env.wait_exit("farm1"), 0);
}

#[test]
fn rspy_commands_in_every_state() {
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1_1"), 1 << 20, 200, Duration::from_micros(500));
    let port = start_farm(&mut env, "farm1", "B_1_1");
    let mut c = env.command("rspydaemon");
    c.args(["-n", "spy1"]);
    let pid = env.spawn("spy1", c);
    env.wait_ready("spy1", pid);
    // The seed's defaults.
    for (var, val) in [
        ("timeout_us", "10000"),
        ("timeoutcounts", "100"),
        ("timeouts", "0"),
        ("raddr", "fibm01-f"),
        ("rport", "2115"),
        ("lname", "/tmp/B_1_1"),
        ("circsize", "1048576"),
        ("ignored", "0"),
        ("maxevents", "-1"),
        ("no_conn", "1"),
        ("upfreq", "5"),
        ("upfreq_l", "10"),
        ("mode", "next"),
    ] {
        assert_eq!(env.get("spy1", var), val, "{var}");
    }
    for refused in [
        "start",
        "pause",
        "resume",
        "reconnect",
        "disconnect",
        "update",
        "end",
    ] {
        cmd(&env, "spy1", &[refused])
            .expect_code(1)
            .stderr_has("UNDEFINED_STATE");
    }
    cmd(&env, "spy1", &["init", "L_1"]).ok();
    assert!(env.path("L_1").exists());
    cmd(&env, "spy1", &["reconnect"])
        .expect_code(1)
        .stderr_has("not allowed in INIT_STATE (allowed in: RUNNING_STATE, PAUSE_STATE)");
    // start - : serve with no events, raddr untouched.
    cmd(&env, "spy1", &["start", "-"])
        .ok()
        .stdout_has("serving with no events");
    assert_eq!(env.get("spy1", "raddr"), "fibm01-f");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(env.get_int("spy1", "no_conn"), 1);
    assert_eq!(env.get_int("spy1", "lastevent"), 0);
    cmd(&env, "spy1", &["start"])
        .expect_code(1)
        .stderr_has("allowed in: INIT_STATE");
    cmd(&env, "spy1", &["reconnect", "127.0.0.1", &port.to_string()]).ok();
    assert_eq!(env.get("spy1", "raddr"), "127.0.0.1");
    assert_eq!(env.get_int("spy1", "rport"), port as i64);
    env.wait_until("connected", || env.get_int("spy1", "no_conn") == 0);
    env.wait_until("events", || env.get_int("spy1", "lastevent") > 0);
    cmd(&env, "spy1", &["pause"]).ok();
    cmd(&env, "spy1", &["update"])
        .expect_code(1)
        .stderr_has("not allowed in PAUSE_STATE");
    cmd(&env, "spy1", &["end"])
        .expect_code(1)
        .stderr_has("not allowed in PAUSE_STATE (allowed in: RUNNING_STATE)");
    cmd(&env, "spy1", &["disconnect"]).ok();
    env.wait_until("disconnected", || env.get_int("spy1", "no_conn") == 1);
    cmd(&env, "spy1", &["reconnect"]).ok();
    cmd(&env, "spy1", &["resume"]).ok();
    env.wait_until("connected again", || env.get_int("spy1", "no_conn") == 0);
    cmd(&env, "spy1", &["update"]).ok();
    cmd(&env, "spy1", &["start"])
        .expect_code(1)
        .stderr_has("not allowed in RUNNING_STATE");
    cmd(&env, "spy1", &["end"]).ok();
    assert_eq!(env.get("spy1", "runstate"), "INIT_STATE");
    assert_eq!(env.get_int("spy1", "no_conn"), 1);
    cmd(&env, "spy1", &["start", "127.0.0.1", "notaport"])
        .expect_code(1)
        .stderr_has("bad rport \"notaport\"");
    cmd(&env, "spy1", &["exit"]).ok();
    assert_eq!(env.wait_exit("spy1"), 0);
}

#[test]
fn pause_stops_the_flow_and_resume_restarts_it() {
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1_1"), 1 << 20, 300, Duration::from_micros(300));
    let port = start_farm(&mut env, "farm1", "B_1_1");
    connect_spy(&mut env, port);
    env.wait_until("events", || env.get_int("spy1", "lastevent") > 0);
    // pause answers once the requests already sent are answered: from then on nothing comes.
    cmd(&env, "spy1", &["pause"])
        .ok()
        .stdout_has("paused: no new events");
    let a = env.get_int("spy1", "lastevent");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        env.get_int("spy1", "lastevent"),
        a,
        "events kept coming while paused"
    );
    cmd(&env, "spy1", &["resume"]).ok();
    env.wait_until("events after resume", || {
        env.get_int("spy1", "lastevent") > a
    });
    // The same through the farm: pause there stops serving, connections stay.
    cmd(&env, "farm1", &["pause"]).ok();
    std::thread::sleep(Duration::from_millis(600));
    let b = env.get_int("spy1", "lastevent");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(env.get_int("spy1", "lastevent"), b);
    assert_eq!(env.get_int("farm1", "clients"), 1);
    cmd(&env, "farm1", &["resume"]).ok();
    env.wait_until("events after farm resume", || {
        env.get_int("spy1", "lastevent") > b
    });
}

#[test]
fn reconnect_to_a_second_farm_and_disconnect() {
    let mut env = Env::new();
    let _p1 = Producer::start(env.path("B_1"), 1 << 20, 500, Duration::from_micros(500));
    let _p2 = Producer::start_at(env.path("B_2"), 1 << 20, 500, Duration::from_micros(500), 0);
    let port1 = start_farm(&mut env, "farm1", "B_1");
    let port2 = start_farm(&mut env, "farm2", "B_2");
    // Old events welcome (no age bound): after disconnect the buffer keeps what it holds.
    start_spy(
        &mut env,
        "spy1",
        "L_1",
        &[
            "-c",
            "set maxage_ms 0",
            "-c",
            &format!("start 127.0.0.1 {port1}"),
        ],
    );
    let mut r = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
    read_events(&env, &mut r, 50, 500, 0);
    cmd(
        &env,
        "spy1",
        &["reconnect", "127.0.0.1", &port2.to_string()],
    )
    .ok();
    env.wait_until("farm2 to serve spy1", || {
        env.get_int("farm2", "clients") == 1
    });
    env.wait_until("farm1 to lose spy1", || {
        env.get_int("farm1", "clients") == 0
    });
    // farm2's numbering is its own: the local buffer starts a new instance, readers follow.
    let mut got = 0;
    let mut buf = vec![0u8; 4096];
    let t0 = Instant::now();
    while got < 50 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{}",
            env.stderr_of("spy1")
        );
        match r.try_read(&mut buf) {
            Ok(ev) => {
                assert_eq!(&buf[..ev.len], &payload(ev.evnr, 500)[..]);
                got += 1;
            }
            Err(TryReadError::Empty) => std::thread::sleep(Duration::from_millis(2)),
            Err(TryReadError::ProducerGone(g)) if g.recreated => {
                r = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    cmd(&env, "spy1", &["disconnect"]).ok();
    env.wait_until("disconnect", || env.get_int("farm2", "clients") == 0);
    assert_eq!(env.get_int("spy1", "no_conn"), 1);
    let last = env.get_int("spy1", "lastevent");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.get_int("spy1", "lastevent"), last);
    // What the buffer holds is still served.
    let mut r2 = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
    assert!(r2.try_read(&mut buf).is_ok());
    cmd(&env, "spy1", &["reconnect"]).ok();
    env.wait_until("reconnected", || env.get_int("spy1", "lastevent") > last);
}

/// Events per packet since the last start/resume, from the sg_* statistics.
fn events_per_packet(env: &Env) -> (i64, i64) {
    cmd(env, "spy1", &["update"]).ok();
    (
        env.get_int("spy1", "sg_events"),
        env.get_int("spy1", "sg_packs"),
    )
}

#[test]
fn maxevents_takes_effect_while_running() {
    let mut env = Env::new();
    let mut w = CircWriter::create(&env.path("B_1_1"), 8 << 20).unwrap();
    let mut evnr = 0u64;
    let mut burst = |w: &mut CircWriter, n: u64| {
        for _ in 0..n {
            evnr += 1;
            w.write(evnr, &payload(evnr, 100)).unwrap();
        }
        evnr
    };
    let port = start_farm(&mut env, "farm1", "B_1_1");
    start_spy_to(
        &mut env,
        "spy1",
        "L_1",
        port,
        // The backlog is old by the time it is fetched: ask for old events.
        &["set circsize 8000000", "set maxage_ms 0", "init"],
    );
    env.wait_until("connected", || env.get_int("spy1", "no_conn") == 0);
    // Paused, a backlog builds up in the farm buffer; after resume it comes in big packets.
    cmd(&env, "spy1", &["pause"]).ok();
    // Requests already in flight are answered (with no data) before the backlog is made.
    std::thread::sleep(Duration::from_millis(200));
    let last = burst(&mut w, 3000);
    cmd(&env, "spy1", &["resume"]).ok();
    env.wait_until("the backlog", || {
        env.get_int("spy1", "lastevent") == last as i64
    });
    let (ev, packs) = events_per_packet(&env);
    assert_eq!(ev, 3000);
    assert!(
        packs < 60,
        "{ev} events in {packs} packets: no big packets without a limit"
    );
    // maxevents 50, set while running, limits the next packets.
    env.shvar(&["set", "spy1", "maxevents", "50"])
        .ok()
        .stdout_has("maxevents: -1 -> 50");
    cmd(&env, "spy1", &["pause"]).ok();
    // Requests already in flight are answered (with no data) before the backlog is made.
    std::thread::sleep(Duration::from_millis(200));
    let last = burst(&mut w, 3000);
    cmd(&env, "spy1", &["resume"]).ok();
    env.wait_until("the backlog", || {
        env.get_int("spy1", "lastevent") == last as i64
    });
    let (ev, packs) = events_per_packet(&env);
    assert!(ev > 2000, "{ev}");
    assert!(
        ev <= 50 * packs,
        "{ev} events in {packs} packets with maxevents 50"
    );
    let n = env.get_int("spy1", "packevents");
    assert!((1..=50).contains(&n), "last packet {n}");
}

#[test]
fn counters_reset_on_start_and_ignored_counts_large_events() {
    let mut env = Env::new();
    let mut w = CircWriter::create(&env.path("B_1_1"), 4 << 20).unwrap();
    let port = start_farm(&mut env, "farm1", "B_1_1");
    start_spy_to(
        &mut env,
        "spy1",
        "L_1",
        port,
        // No age bound: on a loaded machine the events below may be older than it by the
        // time they are asked for, and would be skipped, not ignored.
        &[
            "set timeout_us 1000",
            "set timeoutcounts 3",
            "set maxage_ms 0",
        ],
    );
    env.wait_until("connected", || env.get_int("spy1", "no_conn") == 0);
    // No events: waits time out, every 3 in a row count one.
    env.wait_until("timeouts", || env.get_int("spy1", "timeouts") >= 3);
    // A 600 kB event does not fit a 1 MiB local buffer (at most half of it per event).
    w.write(1, &payload(1, 600_000)).unwrap();
    w.write(2, &payload(2, 100)).unwrap();
    env.wait_until("the big event ignored", || {
        env.get_int("spy1", "ignored") == 1
    });
    env.wait_until("the small one delivered", || {
        env.get_int("spy1", "lastevent") == 2
    });
    // Publish the statistics now (they refresh every `upfreq` packets otherwise), so that the
    // reset below has something to reset.
    cmd(&env, "spy1", &["update"]).ok();
    assert!(env.get_int("spy1", "sg_packs") >= 1, "no packets counted");
    cmd(&env, "spy1", &["end"]).ok();
    assert!(env.get_int("spy1", "timeouts") > 0);
    // Long waits from now on, so that no new timeout can be counted before we look (with 1 ms
    // waits a loaded machine counted one between `start` and the check).
    env.shvar(&["set", "spy1", "timeout_us", "10000000"]).ok();
    cmd(&env, "spy1", &["start"]).ok();
    assert_eq!(
        env.get_int("spy1", "timeouts"),
        0,
        "timeouts not reset by start"
    );
    assert_eq!(
        env.get_int("spy1", "ignored"),
        0,
        "ignored not reset by start"
    );
    assert_eq!(
        env.get_int("spy1", "sg_packs"),
        0,
        "sg_packs not reset by start"
    );
    drop(w);
}

#[test]
fn farm_killed_and_restarted_rspy_recovers_by_itself() {
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1_1"), 1 << 20, 400, Duration::from_micros(500));
    let port = free_port();
    start_farm_on(&mut env, "farm1", "B_1_1", port);
    // Old events welcome (no age bound): what the buffer holds stays readable meanwhile.
    start_spy_to(&mut env, "spy1", "L_1", port, &["set maxage_ms 0"]);
    let mut r = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
    let last = read_events(&env, &mut r, 50, 400, 0);
    env.kill9("farm1");
    env.wait_until("no_conn", || env.get_int("spy1", "no_conn") == 1);
    let e = env.get("spy1", "lasterror");
    assert!(e.contains("127.0.0.1"), "lasterror {e:?}");
    // The local buffer keeps serving what it holds.
    let mut r2 = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(r2.try_read(&mut buf).is_ok());
    // Commands are still answered while it retries.
    cmd(&env, "spy1", &["status"])
        .ok()
        .stdout_has("not connected");
    start_farm_on(&mut env, "farm1", "B_1_1", port);
    env.wait_until("reconnected", || env.get_int("spy1", "no_conn") == 0);
    read_events(&env, &mut r, 50, 400, last);
    assert!(env.get_int("spy1", "reconnects") >= 1);
}

#[test]
fn rspy_killed_and_restarted_readers_reattach() {
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1_1"), 1 << 20, 400, Duration::from_micros(500));
    let port = start_farm(&mut env, "farm1", "B_1_1");
    connect_spy(&mut env, port);
    let mut r = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
    read_events(&env, &mut r, 20, 400, 0);
    env.kill9("spy1");
    start_spy(&mut env, "spy1", "L_1", &[]);
    cmd(&env, "spy1", &["start", "127.0.0.1", &port.to_string()]).ok();
    // The reader learns that the buffer was re-created and re-attaches.
    let mut buf = vec![0u8; 4096];
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(20));
        match r.try_read(&mut buf) {
            Err(TryReadError::ProducerGone(g)) if g.recreated => break,
            Err(TryReadError::ProducerGone(_)) | Ok(_) | Err(TryReadError::Empty) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
    r.reopen().unwrap();
    read_events(&env, &mut r, 20, 400, 0);
}

pub fn start_evgen(env: &mut Env, name: &str, buffer: &str, extra: &[&str]) -> u32 {
    let mut c = env.command("evgen");
    c.args(["-n", name, "--buffer", buffer]).args(extra);
    let pid = env.spawn(name, c);
    env.wait_ready(name, pid);
    env.wait_until("evgen to produce", || {
        env.get(name, "runstate") == "RUNNING_STATE"
    });
    pid
}

#[test]
fn farm_start_needs_a_live_producer() {
    let mut env = Env::new();
    start_evgen(&mut env, "gen1", "B_1_1", &["--rate", "100"]);
    env.kill9("gen1");
    let mut c = env.command("farmspydaemon");
    c.args(["-n", "farm1", "-c", "init B_1_1"]);
    let pid = env.spawn("farm1", c);
    env.wait_ready("farm1", pid);
    env.wait_until("init", || env.get("farm1", "runstate") == "INIT_STATE");
    cmd(&env, "farm1", &["start"])
        .expect_code(1)
        .stderr_has("cannot serve B_1_1: its producer (pid")
        .stderr_has("is not running");
    assert_eq!(env.get("farm1", "runstate"), "INIT_STATE");
}

#[test]
fn no_fetching_while_nobody_reads_beyond_the_lookahead() {
    let mut env = Env::new();
    start_evgen(
        &mut env,
        "gen1",
        "B_1_1",
        // 64 MiB keep more than 10 s of events: whatever is skipped below is skipped by the
        // fresh start, not because the farm's buffer wrapped.
        &["--circsize", "64M", "--size", "1000", "--rate", "5000"],
    );
    let port = start_farm(&mut env, "farm1", "B_1_1");
    start_spy_to(&mut env, "spy1", "L_1_1", port, &["set lookahead 100000"]);
    env.wait_until("connected", || env.get_int("spy1", "no_conn") == 0);
    // Nobody reads: about 100 kB of events (100 of 1 kB) and then nothing more.
    std::thread::sleep(Duration::from_millis(500));
    let a = env.get_int("spy1", "sg_events");
    cmd(&env, "spy1", &["update"]).ok();
    let a2 = env.get_int("spy1", "sg_events");
    std::thread::sleep(Duration::from_millis(500));
    cmd(&env, "spy1", &["update"]).ok();
    let b = env.get_int("spy1", "sg_events");
    assert!(a2 <= 130, "fetched {a2} events with nobody reading ({a})");
    assert_eq!(b, a2, "kept fetching with nobody reading");
    assert_eq!(env.get_int("spy1", "readers"), 0);
    let (idle_last, lost_before) = (
        env.get_int("spy1", "lastevent"),
        env.get_int("spy1", "lost"),
    );
    // A reader comes: events flow again, fresh ones first, and it is counted.
    let mut c = env.command("spycat");
    c.args([
        "--follow", "--verify", "-q", "--stats", "--from", "next", "L_1_1",
    ]);
    env.spawn("reader", c);
    env.wait_until("the reader to be seen", || {
        env.get_int("spy1", "readers") == 1
    });
    let newest = env.get_int("gen1", "lastevnr");
    env.wait_until("fresh events", || env.get_int("spy1", "lastevent") > newest);
    // Resuming after the idle time started from the freshest events, not from where fetching
    // stopped: what was skipped is counted.
    let skipped = env.get_int("spy1", "lost") - lost_before;
    assert!(
        skipped >= (newest - idle_last) / 2,
        "resumed after {idle_last} past {newest} but counted {skipped} lost"
    );
    env.signal("reader", nix::sys::signal::Signal::SIGTERM);
    assert_eq!(env.wait_exit("reader"), 0);
    assert!(
        env.stderr_of("reader").contains("every payload intact"),
        "{}",
        env.stderr_of("reader")
    );
}

/// The README's main job ends with Ctrl-C, which the terminal sends to the whole process
/// group: the chain's processes end on their own at the same moment, which spydemo must not
/// report as a failure ("gen1 exited unexpectedly" it said, exit 1).
#[test]
fn spydemo_ends_cleanly_on_ctrl_c_to_its_process_group() {
    use std::os::unix::process::CommandExt;
    struct Group(i32);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let mut env = Env::new();
    let mut c = env.command("spydemo");
    c.process_group(0);
    let pid = env.spawn_capturing("demo", c);
    let group = Group(pid as i32);
    env.wait_until("the first status line", || {
        env.stdout_of("demo").contains("s | ")
    });
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(group.0),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let code = env.wait_exit("demo");
    let out = env.stdout_of("demo");
    let err = std::fs::read_to_string(env.path("demo.stderr")).unwrap_or_default();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("all stopped, nothing left behind"), "{out}");
    assert!(!err.contains("exited unexpectedly"), "{err}");
}
