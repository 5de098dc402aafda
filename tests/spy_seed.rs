//! The seed's semantics of the spy daemons (issue 12): reconnect in PAUSE_STATE, the same farm
//! by buffer identity, statistics cadence through timeout loops, update times, the farm's run
//! number and nice value, circfulls.

use std::time::Duration;

use shvars::circ::{CircWriter, SamplingReader, StartAt, TryReadError};

use crate::spy::{cmd, connect_spy, read_events, start_farm, start_spy_to, Producer};
use crate::spy_hostile::pid_of;
use crate::util::Env;

#[test]
fn issue12_reconnect_in_pause_connects_and_the_same_farm_keeps_its_position() {
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1"), 1 << 22, 500, Duration::from_micros(500));
    let port = start_farm(&mut env, "farm1", "B_1");
    connect_spy(&mut env, port);
    let mut r = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
    let last = read_events(&env, &mut r, 50, 500, 0);
    cmd(&env, "spy1", &["pause"]).ok();
    // The same farm by another name: reconnect in PAUSE_STATE connects, and asks nothing.
    cmd(&env, "spy1", &["reconnect", "localhost", &port.to_string()]).ok();
    env.wait_until("spy1 to connect while paused", || {
        env.get_int("spy1", "no_conn") == 0 && env.get_int("farm1", "clients") == 1
    });
    assert_eq!(env.get("spy1", "runstate"), "PAUSE_STATE");
    cmd(&env, "spy1", &["resume"]).ok();
    // Same position, same local buffer: the reader goes on, nothing comes twice.
    let mut buf = vec![0u8; 4096];
    let mut prev = last;
    let mut got = 0;
    env.wait_until("events after the reconnect", || {
        match r.try_read(&mut buf) {
            Ok(ev) => {
                assert!(ev.evnr > prev, "event {} after {prev}", ev.evnr);
                prev = ev.evnr;
                got += 1;
            }
            Err(TryReadError::Empty) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("the local buffer changed under the reader: {e}"),
        }
        got >= 50
    });
    assert!(
        !env.stderr_of("spy1").contains("re-created"),
        "{}",
        env.stderr_of("spy1")
    );
    // After disconnect too.
    cmd(&env, "spy1", &["disconnect"]).ok();
    cmd(&env, "spy1", &["reconnect", "127.0.0.1", &port.to_string()]).ok();
    read_events(&env, &mut r, 20, 500, prev);
    assert!(!env.stderr_of("spy1").contains("re-created"));
}

#[test]
fn issue12_statistics_keep_their_cadence_while_no_data_comes() {
    let mut env = Env::new();
    // A live producer that writes nothing.
    let _w = CircWriter::create(&env.path("B_1"), 1 << 20).unwrap();
    let port = start_farm(&mut env, "farm1", "B_1");
    start_spy_to(
        &mut env,
        "spy1",
        "L_1",
        port,
        &[
            "set timeout_us 2000",
            "set timeoutcounts 5",
            "set upfreq 1",
            "set upfreq_l 0",
        ],
    );
    // Until the first update, the seed says 0.
    env.wait_until("connected", || env.get_int("spy1", "no_conn") == 0);
    let mut seen = Vec::new();
    env.wait_until("sg_msecs to move on three times with no data", || {
        let v = env.get_int("spy1", "sg_msecs");
        if seen.last() != Some(&v) {
            seen.push(v);
        }
        seen.len() >= 4
    });
    assert!(env.get_int("spy1", "sg_uptime") > 1_700_000_000);
    assert_eq!(env.get_int("spy1", "sg_packs"), 0);
    assert_eq!(
        env.get_int("spy1", "sl_uptime"),
        0,
        "no short-term update yet"
    );
    // The farm's loops are its answers, "no data" ones included.
    env.shvar(&["set", "farm1", "upfreq", "1"]).ok();
    let mut seen = Vec::new();
    env.wait_until("the farm's sg_msecs to move on with no data", || {
        let v = env.get_int("farm1", "sg_msecs");
        if seen.last() != Some(&v) {
            seen.push(v);
        }
        seen.len() >= 3
    });
}

#[test]
fn issue12_update_times_are_zero_until_the_first_update() {
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1"), 1 << 20, 300, Duration::from_millis(1));
    let port = start_farm(&mut env, "farm1", "B_1");
    start_spy_to(
        &mut env,
        "spy1",
        "L_1",
        port,
        &["set upfreq 0", "set upfreq_l 0"],
    );
    env.wait_until("running", || env.get("spy1", "runstate") == "RUNNING_STATE");
    assert_eq!(env.get_int("spy1", "sg_uptime"), 0);
    assert_eq!(env.get_int("spy1", "sl_uptime"), 0);
    cmd(&env, "spy1", &["update"]).ok();
    assert!(env.get_int("spy1", "sg_uptime") > 1_700_000_000);
    assert!(env.get_int("spy1", "sl_uptime") > 1_700_000_000);
    cmd(&env, "spy1", &["pause"]).ok();
    cmd(&env, "spy1", &["resume"]).ok();
    assert_eq!(
        env.get_int("spy1", "sg_uptime"),
        0,
        "resume starts a new interval"
    );
}

/// The nice value of every thread of process `pid`.
fn thread_nices(pid: u32) -> Vec<i64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .map(|st| {
            // Fields after the command name (which may hold spaces): state is field 3, nice 19.
            let rest = &st[st.rfind(')').unwrap() + 2..];
            rest.split_whitespace().nth(16).unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn issue12_farm_runs_at_its_nice_value_and_takes_a_run_number() {
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1"), 1 << 20, 300, Duration::from_millis(1));
    let port = start_farm(&mut env, "farm1", "B_1");
    assert_eq!(env.get_int("farm1", "nice"), 10);
    let pid = pid_of(&env, "farm1");
    // A client: its thread runs at the farm's nice value too.
    connect_spy(&mut env, port);
    env.wait_until("a client", || env.get_int("farm1", "clients") == 1);
    let nices = thread_nices(pid);
    assert!(
        nices.iter().filter(|n| **n == 10).count() >= 3,
        "main, accept and client threads at nice 10: {nices:?}"
    );
    cmd(&env, "farm1", &["end"]).ok();
    env.shvar(&["set", "farm1", "runnr", "4711"]).ok();
    cmd(&env, "farm1", &["start"]).ok();
    assert_eq!(env.get_int("farm1", "runnr"), 4711);
    assert!(env.stderr_of("farm1").contains("(run 4711)"));
    if !nix::unistd::geteuid().is_root() {
        // Lowering it needs the privilege: a clear refusal.
        cmd(&env, "farm1", &["end"]).ok();
        env.shvar(&["set", "farm1", "nice", "0"]).ok();
        cmd(&env, "farm1", &["start"])
            .expect_code(1)
            .stderr_has("cannot change the nice value from 10 to 0");
    }
}

#[test]
fn issue12_circfulls_count_how_often_the_buffers_went_full() {
    let mut env = Env::new();
    crate::spy::start_evgen(
        &mut env,
        "gen1",
        "B_1",
        &["--circsize", "64K", "--size", "1000", "--rate", "5000"],
    );
    env.wait_until("evgen's buffer to go full", || {
        env.get_int("gen1", "circfulls") > 2
    });
    let port = start_farm(&mut env, "farm1", "B_1");
    start_spy_to(
        &mut env,
        "spy1",
        "L_1",
        port,
        &["set circsize 65536", "init"],
    );
    env.wait_until("the local buffer to go full", || {
        env.get_int("spy1", "circfulls") > 2
    });
}

#[test]
fn issue12_pause_answers_at_once_while_the_farm_is_unreachable() {
    let mut env = Env::new();
    // Nobody listens there: rspydaemon backs off between attempts.
    let port = crate::util::free_port();
    connect_spy(&mut env, port);
    env.wait_until("a failed attempt", || {
        env.get("spy1", "lasterror").contains("cannot connect")
    });
    cmd(&env, "spy1", &["pause"])
        .ok()
        .stdout_has("paused: no new events");
    cmd(&env, "spy1", &["resume"]).ok();
}
