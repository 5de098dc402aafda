//! `evgen` and `spycat` as real processes: millions of verified events through a circular
//! buffer (sampling and lossless), evgen's variables and run control, spycat's errors, its
//! re-attaching to a restarted producer, `--count` and `--raw`.

use std::process::Command;

use nix::sys::signal::Signal;

use crate::util::Env;

/// Parses `WORD N` out of spycat's summary line (`... 2000000 events, ... lost 0 ... last event 7`).
#[track_caller]
fn summary_number(stderr: &str, before: &str, after: &str) -> u64 {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains(" events, ") && l.contains("; last event "))
        .unwrap_or_else(|| panic!("no spycat summary in:\n{stderr}"));
    let text = if before.is_empty() {
        line.split(after).next().unwrap()
    } else {
        line.split(before).nth(1).unwrap()
    };
    let word = if before.is_empty() {
        text.split_whitespace().last().unwrap()
    } else {
        text.split(|c: char| !c.is_ascii_digit()).next().unwrap()
    };
    word.parse()
        .unwrap_or_else(|_| panic!("no number {before:?}/{after:?} in {line:?}"))
}

fn events_read(stderr: &str) -> u64 {
    summary_number(stderr, "", " events, ")
}

fn lost(stderr: &str) -> u64 {
    summary_number(stderr, "; lost ", "")
}

fn last_event(stderr: &str) -> u64 {
    summary_number(stderr, "; last event ", "")
}

impl Env {
    fn evgen(&self, name: &str, args: &[&str]) -> Command {
        let mut c = self.command("evgen");
        c.args(["-n", name]).args(args);
        c
    }

    fn spycat(&self, args: &[&str]) -> Command {
        let mut c = self.command("spycat");
        c.args(args);
        c
    }

    /// Starts evgen `name` and waits until it serves commands and has run its start-up
    /// commands (the control FIFO appears before them).
    fn start_evgen(&mut self, name: &str, args: &[&str]) -> u32 {
        let c = self.evgen(name, args);
        let pid = self.spawn(name, c);
        self.wait_ready(name, pid);
        self.wait_until(&format!("{name} to leave UNDEFINED_STATE"), || {
            self.get(name, "runstate") != "UNDEFINED_STATE"
        });
        pid
    }
}

#[test]
fn lossless_reader_gets_two_million_random_size_events_in_order() {
    const N: u64 = 2_000_000;
    let mut env = Env::new();
    env.start_evgen(
        "gen1",
        &[
            "--size",
            "16-256",
            "--circsize",
            "64K",
            "--count",
            &N.to_string(),
            "--exit-when-done",
            "--wait-start",
            "-c",
            "init",
        ],
    );
    assert_eq!(env.get("gen1", "runstate"), "INIT_STATE");
    assert_eq!(env.get_int("gen1", "events"), 0, "produced before start");
    let c = env.spycat(&[
        "gen1",
        "--lossless",
        "--follow",
        "--verify",
        "--stats",
        "--quiet",
        "--count",
        &N.to_string(),
    ]);
    env.spawn("cat", c);
    env.wait_until("spycat to register as a lossless reader", || {
        env.get_int("gen1", "readers") == 1
    });
    env.shvar(&["cmd", "gen1", "start"]).ok();
    assert_eq!(env.wait_exit("cat"), 0, "{}", env.stderr_of("cat"));
    assert_eq!(env.wait_exit("gen1"), 0, "{}", env.stderr_of("gen1"));
    let err = env.stderr_of("cat");
    assert_eq!(events_read(&err), N, "{err}");
    assert_eq!(lost(&err), 0, "{err}");
    assert_eq!(last_event(&err), N, "{err}");
    assert!(
        err.contains("every payload intact, event numbers increasing"),
        "{err}"
    );
    // The producer removed its buffer when it exited.
    assert!(!env.path("gen1").exists());
}

#[test]
fn sampling_reader_reports_lost_events_and_verifies_the_rest() {
    const N: u64 = 2_000_000;
    let mut env = Env::new();
    env.start_evgen(
        "gen1",
        &[
            "--size",
            "16-600",
            "--circsize",
            "64K",
            "--count",
            &N.to_string(),
            "--exit-when-done",
            "--wait-start",
            "-c",
            "init",
        ],
    );
    let c = env.spycat(&["gen1", "--follow", "--verify", "--stats", "--quiet"]);
    env.spawn("cat", c);
    env.wait_until("spycat to attach", || {
        env.stderr_of("cat").contains("attached to")
    });
    env.shvar(&["cmd", "gen1", "start"]).ok();
    env.wait_until("events to flow", || env.get_int("gen1", "events") > 100_000);
    // A stopped reader is overtaken: it must skip and count, never fail or slow the producer.
    env.signal("cat", Signal::SIGSTOP);
    let at = env.get_int("gen1", "events");
    env.wait_until("the producer to lap the stopped reader", || {
        env.get_int("gen1", "events") > at + 20_000
    });
    env.signal("cat", Signal::SIGCONT);
    assert_eq!(env.wait_exit("gen1"), 0, "{}", env.stderr_of("gen1"));
    // spycat reports the producer gone only once it has read everything that was left.
    env.wait_until("spycat to drain the buffer", || {
        env.stderr_of("cat").contains("waiting for a new producer")
    });
    env.signal("cat", Signal::SIGINT);
    assert_eq!(env.wait_exit("cat"), 0, "{}", env.stderr_of("cat"));
    let err = env.stderr_of("cat");
    let (read, lost) = (events_read(&err), lost(&err));
    assert!(lost > 0, "the stopped reader lost nothing?\n{err}");
    assert!(read > 100_000, "{err}");
    assert_eq!(
        read + lost,
        N,
        "every event is either read or counted lost\n{err}"
    );
    assert_eq!(last_event(&err), N, "{err}");
    assert!(err.contains("every payload intact"), "{err}");
}

#[test]
fn evgen_variables_and_pause_resume() {
    let mut env = Env::new();
    env.start_evgen("gen1", &["--size", "64", "--rate", "5000"]);
    assert_eq!(env.get("gen1", "runstate"), "RUNNING_STATE");
    let a = env.get_int("gen1", "events");
    env.wait_until("events to grow", || {
        env.get_int("gen1", "events") > a + 1000
    });
    env.wait_until("the measured rate", || {
        let r: f64 = env
            .get("gen1", "rate")
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        r > 1000.0 && r < 20_000.0
    });
    assert_eq!(env.get_int("gen1", "target_rate"), 5000);
    assert!(env.get("gen1", "buffer").ends_with("/gen1"));

    // pause answers once production has stopped: the counters stand still.
    env.shvar(&["cmd", "gen1", "pause"])
        .ok()
        .stdout_has("paused after");
    assert_eq!(env.get("gen1", "runstate"), "PAUSE_STATE");
    let p = env.get_int("gen1", "events");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(env.get_int("gen1", "events"), p, "events grew while paused");
    assert_eq!(env.get_int("gen1", "bytes"), p * 64);
    assert_eq!(env.get_int("gen1", "lastevnr"), p, "numbering starts at 1");
    assert_eq!(env.get_int("gen1", "refused"), 0);

    env.shvar(&["set", "gen1", "target_rate", "0"])
        .ok()
        .stdout_has("target_rate: 5000 -> 0");
    env.shvar(&["cmd", "gen1", "resume"]).ok();
    env.wait_until("events to grow after resume", || {
        env.get_int("gen1", "events") > p + 10_000
    });
    // end stops it too; start continues the numbering.
    env.shvar(&["cmd", "gen1", "end"]).ok();
    let e = env.get_int("gen1", "lastevnr");
    env.shvar(&["cmd", "gen1", "start"]).ok();
    env.wait_until("events after restart", || {
        env.get_int("gen1", "lastevnr") > e
    });
    let o = env.run(env.spycat(&["gen1", "--from", "latest", "--count", "1", "--verify"]));
    o.ok();
    let evnr: i64 = o.stdout.split_whitespace().next().unwrap().parse().unwrap();
    assert!(evnr > e, "{}", o.stdout);

    env.shvar(&["cmd", "gen1", "exit"]).ok();
    assert_eq!(env.wait_exit("gen1"), 0);
    assert!(!env.path("gen1").exists(), "buffer left behind");
}

#[test]
fn spycat_refuses_missing_and_foreign_files_clearly() {
    let env = Env::new();
    env.run(env.spycat(&["nosuch"]))
        .expect_code(1)
        .stderr_has("buffer nosuch")
        .stderr_has("does not exist (is its producer running? check the name and --dir)");
    std::fs::write(env.path("junk"), crate::util::junk(8192, 7)).unwrap();
    env.run(env.spycat(&["junk", "--follow"]))
        .expect_code(1)
        .stderr_has("is not a circular event buffer");
    let abs = env.path("junk").display().to_string();
    env.run(env.spycat(&[&abs]))
        .expect_code(1)
        .stderr_has("is not a circular event buffer");
    // Usage errors.
    env.run(env.spycat(&[])).expect_code(2);
    env.run(env.spycat(&["x", "--from", "middle"]))
        .expect_code(2);
    env.run(env.spycat(&["bad/name"]))
        .expect_code(1)
        .stderr_has("bad/name");
}

#[test]
fn evgen_refuses_events_that_do_not_fit() {
    let env = Env::new();
    env.run(env.evgen("gen1", &["--size", "100-40000", "--circsize", "64K"]))
        .expect_code(2)
        .stderr_has("events of up to 40000 bytes do not fit a buffer of 65536 bytes")
        .stderr_has("--circsize 80000 or more");
    env.run(env.evgen("gen1", &["--size", "8"]))
        .expect_code(2)
        .stderr_has("events need at least 16 bytes");
    env.run(env.evgen("gen1", &["--size", "64", "--circsize", "1001"]))
        .expect_code(1)
        .stderr_has("not usable");
    assert!(!env.path("gen1").exists());
    assert!(!env.path("gen1.ctl").exists());
}

#[test]
fn spycat_follows_a_producer_killed_and_restarted() {
    let mut env = Env::new();
    let args = ["--size", "100", "--count", "1000", "--rate", "20000"];
    env.start_evgen("gen1", &args);
    let c = env.spycat(&["gen1", "--follow", "--verify", "--stats", "--count", "2000"]);
    env.spawn("cat", c);
    env.wait_until("spycat to attach", || {
        env.stderr_of("cat").contains("attached to")
    });
    env.wait_until("the first 1000 events", || {
        env.get_int("gen1", "events") == 1000
    });
    env.kill9("gen1");
    env.wait_until("spycat to see the producer die", || {
        env.stderr_of("cat")
            .contains("died; waiting for a new producer")
    });
    // The new producer takes the stale buffer over and numbers from 1 again.
    env.start_evgen("gen1", &args);
    assert_eq!(env.wait_exit("cat"), 0, "{}", env.stderr_of("cat"));
    let err = env.stderr_of("cat");
    assert!(err.contains("re-attached to the new producer"), "{err}");
    assert_eq!(events_read(&err), 2000, "{err}");
    assert_eq!(lost(&err), 0, "{err}");
    assert_eq!(last_event(&err), 1000, "{err}");
}

#[test]
fn spycat_count_lines_and_raw_payloads() {
    let mut env = Env::new();
    env.start_evgen(
        "gen1",
        &["--size", "16-300", "--count", "50", "--first", "100"],
    );
    env.wait_until("50 events", || env.get_int("gen1", "events") == 50);

    let o = env.run(env.spycat(&["gen1", "--count", "10"]));
    o.ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 10, "{}", o.stdout);
    for (i, l) in lines.iter().enumerate() {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f[0], (100 + i).to_string(), "{l}");
        let size: usize = f[1].parse().unwrap();
        assert!((16..=300).contains(&size), "{l}");
        assert_eq!(f[2], "ok", "{l}");
    }
    // Without --count: everything there, then exit.
    let o = env.run(env.spycat(&["gen1"]));
    o.ok();
    assert_eq!(o.stdout.lines().count(), 50);

    // --raw: exactly the payload bytes, back to back.
    let mut c = env.spycat(&["gen1", "--raw", "--count", "50"]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let mut expected = Vec::new();
    let mut at = 0;
    for evnr in 100..150u64 {
        let (_, len, _) = daqproc::daemons::payload::header(&raw[at..]).expect("a payload header");
        let ev = daqproc::daemons::payload::make(evnr, len as usize);
        expected.extend_from_slice(&ev);
        at += len as usize;
    }
    assert_eq!(raw.len(), expected.len());
    assert!(
        raw == expected,
        "raw output differs from the generated payloads"
    );
}

#[test]
fn spycat_verify_fails_on_a_corrupt_event() {
    let env = Env::new();
    let path = env.path("bad");
    let mut w = shvars::circ::CircWriter::create(&path, 1 << 16).unwrap();
    w.write(1, &daqproc::daemons::payload::make(1, 100))
        .unwrap();
    let mut ev = daqproc::daemons::payload::make(2, 100);
    ev[60] ^= 4;
    w.write(2, &ev).unwrap();
    w.write(3, &daqproc::daemons::payload::make(3, 100))
        .unwrap();
    // The payload of event 3 under number 4.
    w.write(4, &daqproc::daemons::payload::make(3, 100))
        .unwrap();

    let o = env.run(env.spycat(&["bad"]));
    o.ok();
    assert_eq!(o.stdout, "1 100 ok\n2 100 BAD\n3 100 ok\n4 100 BAD\n");
    env.run(env.spycat(&["bad", "--verify"]))
        .expect_code(1)
        .stdout_has("1 100 ok\n")
        .stderr_has(
            "buffer bad: corrupt event: event 2: byte 60 of 100 differs from the generated payload",
        );
    env.run(env.spycat(&["bad", "--verify", "--from", "latest"]))
        .expect_code(1)
        .stderr_has("event 4: payload header says event 3");
    drop(w);
}
