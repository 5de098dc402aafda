//! The runner's event loop through `examples/eventdemo.rs`: every event source wakes it (a
//! timer, a registered socket, SIGCHLD, a thread's mailbox, the control channels), a command
//! that answers later does not hold up the others, and a handler that blocks or panics still
//! gives its caller a proper reply.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use crate::util::Env;

fn start_demo(env: &mut Env, name: &str, period_ms: u64) -> u32 {
    let mut c = env.example_command("eventdemo");
    c.args(["-n", name, "--period", &period_ms.to_string()]);
    let pid = env.spawn(name, c);
    env.wait_ready(name, pid);
    pid
}

#[test]
fn every_event_source_wakes_the_loop() {
    let mut env = Env::new();
    start_demo(&mut env, "d1", 20);
    // The timer.
    env.wait_until("the timer to fire", || {
        env.get_int("d1", "timer_fires") >= 10
    });
    // The registered socket: every line comes back.
    let port = env.get_int("d1", "port") as u16;
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    for i in 0..50 {
        writeln!(w, "line {i}").unwrap();
        let mut back = String::new();
        r.read_line(&mut back).unwrap();
        assert_eq!(back, format!("line {i}\n"));
    }
    env.wait_until("the echo count", || env.get_int("d1", "echoed") == 50);
    // SIGCHLD: every child is reaped, however the signals coalesce.
    env.shvar(&["cmd", "d1", "spawn", "40"]).ok();
    env.wait_until("40 children reaped", || env.get_int("d1", "reaped") == 40);
    // A thread's mailbox.
    env.shvar(&["cmd", "d1", "post", "1000"]).ok();
    env.wait_until("1000 jobs run", || env.get_int("d1", "posted") == 1000);
    // No zombie is left.
    let zombies = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|st| {
            let pid = st.split_whitespace().nth(3).unwrap_or("");
            let state = st
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            pid == env.get_int("d1", "pid").to_string() && state == Some("Z")
        })
        .count();
    assert_eq!(zombies, 0);
}

#[test]
fn a_command_that_answers_later_holds_up_nothing() {
    let mut env = Env::new();
    start_demo(&mut env, "d2", 1000);
    let (tx, rx) = mpsc::channel();
    let slow = {
        let mut c = env.command("shvar");
        c.args(["-w", "30", "cmd", "d2", "slow", "3"]);
        c
    };
    let out = std::thread::scope(|s| {
        let env = &env;
        s.spawn(move || {
            let o = env.run(slow);
            tx.send(o).unwrap();
        });
        // While `slow` runs: get, status, help and the heartbeat all go on.
        let hb = env.get_int("d2", "heartbeat");
        env.wait_until("the heartbeat to beat while slow runs", || {
            env.get_int("d2", "heartbeat") > hb + 3
        });
        let st = env.shvar(&["cmd", "d2", "status"]);
        st.ok().stdout_has("in progress: slow");
        env.shvar(&["cmd", "d2", "get", "heartbeat"]).ok();
        env.shvar(&["cmd", "d2", "help"]).ok();
        // All of that happened before the slow answer.
        assert!(rx.try_recv().is_err(), "slow answered before the others");
        rx.recv_timeout(Duration::from_secs(30)).unwrap()
    });
    out.ok().stdout_has("slow answer");
}

#[test]
fn a_handler_that_blocks_or_panics_still_gives_a_proper_reply() {
    let mut env = Env::new();
    start_demo(&mut env, "d3", 1000);
    // `block` has a time limit of 1 s and blocks 3 s: the guard answers for it.
    let o = env.shvar(&["-w", "20", "cmd", "d3", "block", "3"]);
    o.expect_code(1)
        .stderr_has("'block 3' is still running after its time limit of 1.0 s");
    // Then the process serves again, and says what happened.
    env.shvar(&["cmd", "d3", "status"]).ok();
    env.wait_until("the late answer to be logged", || {
        env.stderr_of("d3")
            .contains("returned after its caller was told it timed out")
    });
    let o = env.shvar(&["cmd", "d3", "crash"]);
    o.expect_code(1)
        .stderr_has("internal error (panic: crash on purpose)");
    env.shvar(&["cmd", "d3", "status"]).ok();
    assert!(env.get("d3", "lasterror").contains("crash: internal error"));
}
