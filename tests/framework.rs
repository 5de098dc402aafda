//! The framework through its example process `ticker`: run states, commands, the control FIFO
//! and everything bad that can arrive on it.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::{junk, write_fifo, Env};

/// The "done means" walk-through, step by step.
#[test]
fn ticker_walkthrough() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    assert_eq!(env.get("t1", "runstate"), "UNDEFINED_STATE");
    env.shvar(&["cmd", "t1", "init"]).ok();
    assert_eq!(env.get("t1", "runstate"), "INIT_STATE");
    env.shvar(&["cmd", "t1", "start"]).ok();
    assert_eq!(env.get("t1", "runstate"), "RUNNING_STATE");
    let a = env.get_int("t1", "ticks");
    env.wait_until("ticks to grow", || env.get_int("t1", "ticks") > a + 2);

    let o = env.shvar(&["set", "t1", "rate", "50"]);
    o.ok();
    assert_eq!(o.stdout, "rate: 10 -> 50\n");
    assert_eq!(env.get_int("t1", "rate"), 50);

    env.shvar(&["set", "t1", "ticks", "5"])
        .expect_code(1)
        .stderr_has("variable ticks is read-only (R)");

    env.shvar(&["cmd", "t1", "resume"])
        .expect_code(1)
        .stderr_has("command 'resume' is not allowed in RUNNING_STATE (allowed in: PAUSE_STATE)");
    // The refusal is remembered where an operator looks.
    assert!(env
        .get("t1", "lasterror")
        .contains("not allowed in RUNNING_STATE"));

    // pause stops the count, resume restarts it.
    env.shvar(&["cmd", "t1", "pause"]).ok();
    let p = env.get_int("t1", "ticks");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        env.get_int("t1", "ticks") <= p + 1,
        "ticks kept growing while paused"
    );
    env.shvar(&["cmd", "t1", "resume"]).ok();
    env.wait_until("ticks to grow after resume", || {
        env.get_int("t1", "ticks") > p + 3
    });

    // kill -9, then a new process with the same name takes the stale region over.
    let old_pid = env.get_int("t1", "pid");
    env.kill9("t1");
    let l = env.shvar(&["list"]);
    l.ok();
    assert!(l.stdout.contains("stale"), "{}", l.stdout);
    env.shvar(&["cmd", "t1", "status"])
        .expect_code(1)
        .stderr_has(&format!("t1 is not running (pid {old_pid} is gone"));
    let new_pid = env.ticker("t1", &[]);
    let l = env.shvar(&["list"]);
    l.ok();
    let line = l.stdout.lines().find(|l| l.starts_with("t1 ")).unwrap();
    assert!(line.contains("alive"), "{line}");
    assert!(line.contains(&new_pid.to_string()), "{line}");
    assert!(line.contains("UNDEFINED_STATE"), "{line}");
    env.shvar(&["cmd", "t1", "init"]).ok();
}

#[test]
fn second_live_owner_is_refused_with_the_first_pid() {
    let mut env = Env::new();
    let pid = env.ticker("t1", &[]);
    let o = env.run({
        let mut c = env.command("ticker");
        c.args(["-n", "t1"]);
        c
    });
    o.expect_code(1)
        .stderr_has(&format!("t1 is already running as pid {pid}"));
    // The first one is untouched.
    env.shvar(&["cmd", "t1", "status"]).ok();
}

#[test]
fn startup_commands_and_exit_by_command_and_signal() {
    let mut env = Env::new();
    env.ticker(
        "t1",
        &["-c", "init", "-c", "set label 'night shift'", "-c", "start"],
    );
    assert_eq!(env.get("t1", "runstate"), "RUNNING_STATE");
    assert_eq!(env.get("t1", "label"), "night shift");
    // exit runs end first, removes the FIFO and marks the region stopped.
    let o = env.shvar(&["cmd", "t1", "exit"]);
    o.ok().stdout_has("exiting");
    assert_eq!(env.wait_exit("t1"), 0);
    assert!(!env.path("t1.ctl").exists());
    let l = env.shvar(&["list"]);
    assert!(l.stdout.contains("stopped"), "{}", l.stdout);
    assert_eq!(env.get("t1", "runstate"), "INIT_STATE");
    env.shvar(&["cmd", "t1", "status"])
        .expect_code(1)
        .stderr_has("t1 has exited");

    env.ticker("t2", &["-c", "init"]);
    env.signal("t2", nix::sys::signal::Signal::SIGTERM);
    assert_eq!(env.wait_exit("t2"), 0);
    assert!(!env.path("t2.ctl").exists());
    assert!(env.stderr_of("t2").contains("SIGTERM received"));
}

#[test]
fn failing_startup_command_stops_the_process_with_its_reason() {
    let env = Env::new();
    let mut c = env.command("ticker");
    c.args(["-n", "t1", "-c", "init", "-c", "pause"]);
    let o = env.run(c);
    o.expect_code(1).stderr_has(
        "start-up command 'pause' failed: command 'pause' is not allowed in INIT_STATE (allowed in: RUNNING_STATE)",
    );
    assert!(!env.path("t1.ctl").exists());
}

#[test]
fn echo_to_the_fifo_works_without_a_reply() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    write_fifo(&env.path("t1.ctl"), b"init\n").unwrap();
    env.wait_until("init by echo", || env.get("t1", "runstate") == "INIT_STATE");
    assert_eq!(env.get("t1", "lastcmd"), "init");
    // The outcome of a bad one is visible in lasterror and the event log.
    write_fifo(&env.path("t1.ctl"), b"frobnicate\n").unwrap();
    env.wait_until("lasterror", || {
        env.get("t1", "lasterror").contains("unknown command")
    });
    let ev = env.shvar(&["cmd", "t1", "events", "5"]);
    ev.ok()
        .stdout_has("frobnicate")
        .stdout_has("unknown command 'frobnicate'; known commands: init, start");
}

#[test]
fn bad_process_names_are_refused() {
    let env = Env::new();
    for bad in [
        "../etc",
        "a/b",
        "..",
        "",
        "x y",
        "averyveryveryverylongname_over31",
    ] {
        env.shvar(&["get", bad, "ticks"])
            .expect_code(1)
            .stderr_has("invalid process name");
        let mut c = env.command("ticker");
        c.args(["-n", bad]);
        env.run(c).expect_code(1).stderr_has("invalid process name");
    }
    env.shvar(&["cmd", "../../tmp/x", "init"])
        .expect_code(1)
        .stderr_has("invalid process name");
    // Nothing was created outside the runtime directory.
    assert!(!std::path::Path::new("/tmp/x.ctl").exists());
}

#[test]
fn unknown_process_and_variable() {
    let mut env = Env::new();
    env.shvar(&["get", "nope", "ticks"])
        .expect_code(1)
        .stderr_has("no process named nope in");
    env.shvar(&["cmd", "nope", "init"])
        .expect_code(1)
        .stderr_has("no process named nope");
    env.ticker("t1", &[]);
    env.shvar(&["get", "t1", "tick"])
        .expect_code(1)
        .stderr_has("t1 has no variable tick (did you mean ticks?)");
    env.shvar(&["set", "t1", "rte", "5"])
        .expect_code(1)
        .stderr_has("no variable rte (did you mean rate?)");
    env.shvar(&["cmd", "t1", "status"]).ok();
}

#[test]
fn wrong_type_and_out_of_range() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    env.shvar(&["set", "t1", "rate", "fast"])
        .expect_code(1)
        .stderr_has("bad value \"fast\" for rate: not an integer");
    env.shvar(&["set", "t1", "rate", "0"])
        .expect_code(1)
        .stderr_has("value 0 for rate is out of range (allowed 1 to 1000000)");
    env.shvar(&["set", "t1", "rate", "2e6"])
        .expect_code(1)
        .stderr_has("out of range");
    env.shvar(&["set", "t1", "label", &"x".repeat(65)])
        .expect_code(1)
        .stderr_has("65 bytes long, the variable holds at most 64");
    assert_eq!(env.get_int("t1", "rate"), 10);
    env.shvar(&["set", "t1", "rate", "0x20"])
        .ok()
        .stdout_has("rate: 10 -> 32");
    env.shvar(&["set", "t1", "label", "two", "words"])
        .ok()
        .stdout_has("label:  -> two words");
    env.shvar(&["cmd", "t1", "start"])
        .expect_code(1)
        .stderr_has("not allowed in UNDEFINED_STATE (allowed in: INIT_STATE)");
    env.shvar(&["cmd", "t1", "init", "extra"])
        .expect_code(1)
        .stderr_has("usage: init");
}

#[test]
fn reply_tokens_on_the_fifo_are_refused_and_never_run() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    env.ticker("victim", &[]);
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("target");
    nix::unistd::mkfifo(&target, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    // A link inside the runtime directory that points outside it.
    std::os::unix::fs::symlink(&target, env.path("evil.reply")).unwrap();
    fs::write(env.path("plain.reply"), "untouched").unwrap();
    let ctl = env.path("t1.ctl");
    let lines: [&[u8]; 5] = [
        b"@../victim init\n",
        b"@evil.reply init\n",
        b"@plain.reply init\n",
        // The first protocol would have written "ok ...\nexiting" lines into victim's FIFO.
        b"@victim.ctl exit\n",
        b"@victim.ctl help\n",
    ];
    for l in lines {
        write_fifo(&ctl, l).unwrap();
    }
    env.wait_until("the five refusals to be counted", || {
        env.stderr_of("t1").matches("reply tokens (@").count() == 5
    });
    assert!(env.stderr_of("t1").contains("the line was not run"));
    assert_eq!(
        fs::read_to_string(env.path("plain.reply")).unwrap(),
        "untouched"
    );
    // None of them ran, and nothing was written anywhere: the victim got no command and still
    // runs, t1 too.
    assert_eq!(env.get("t1", "runstate"), "UNDEFINED_STATE");
    assert!(
        !env.stderr_of("victim").contains(" cmd "),
        "{}",
        env.stderr_of("victim")
    );
    env.shvar(&["cmd", "victim", "status"]).ok();
    env.shvar(&["cmd", "t1", "status"]).ok();
}

#[test]
fn lines_longer_than_pipe_buf() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let long = "y".repeat(5000);
    env.shvar(&["cmd", "t1", "set", "label", &long])
        .expect_code(1)
        .stderr_has("a command line takes at most");
    // Written raw, the owner drops it whole and keeps serving.
    let mut raw = b"set label ".to_vec();
    raw.extend(std::iter::repeat_n(b'z', 10_000));
    raw.extend_from_slice(b"\ninit\n");
    write_fifo(&env.path("t1.ctl"), &raw).unwrap();
    env.wait_until("init after the long line", || {
        env.get("t1", "runstate") == "INIT_STATE"
    });
    assert_eq!(env.get("t1", "label"), "");
    env.shvar(&["cmd", "t1", "events", "10"])
        .ok()
        .stdout_has("bytes ignored: the limit is 4096 bytes (PIPE_BUF)");
}

#[test]
fn garbage_bytes_on_the_fifo() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let ctl = env.path("t1.ctl");
    for seed in 1..20u64 {
        let mut g = junk(3000, seed);
        g.push(b'\n');
        write_fifo(&ctl, &g).unwrap();
    }
    write_fifo(&ctl, b"\0\0\0\n\x1b[31mred\n").unwrap();
    let o = env.shvar(&["cmd", "t1", "init"]);
    o.ok().stdout_has("initialised");
    let e = env.get("t1", "lasterror");
    assert!(e.starts_with("control FIFO:"), "{e}");
    assert_eq!(env.get("t1", "runstate"), "INIT_STATE");
}

#[test]
fn region_overwritten_with_random_bytes() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let path = env.path("t1.shv");
    let len = fs::metadata(&path).unwrap().len() as usize;
    // Overwrite the live region in place: no truncation (fs::write would truncate first, and a
    // mapped file that shrinks, even for a moment, faults its owner: see docs/region.md).
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all(&junk(len, 7)).unwrap();
    }
    env.shvar(&["get", "t1", "ticks"])
        .expect_code(1)
        .stderr_has("is not a usable variable region: bad magic number");
    let l = env.shvar(&["list"]);
    l.ok().stdout_has("not a usable variable region");
    env.shvar(&["dump", "t1"])
        .expect_code(1)
        .stderr_has("bad magic");
    // The process still answers on its FIFO.
    env.shvar(&["cmd", "t1", "status"])
        .ok()
        .stdout_has("t1 INIT_STATE");
}

#[test]
fn truncated_region() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    // A dead process's region, truncated.
    let full = fs::read(env.path("t1.shv")).unwrap();
    fs::write(env.path("t2.shv"), &full[..10_000]).unwrap();
    env.shvar(&["get", "t2", "ticks"])
        .expect_code(1)
        .stderr_has(&format!("t2.shv is not a usable variable region: header says {} bytes but the file has 10000 (truncated)", full.len()));
    fs::write(env.path("t3.shv"), &full[..100]).unwrap();
    env.shvar(&["dump", "t3"])
        .expect_code(1)
        .stderr_has("shorter than the 256-byte header");
    env.shvar(&["list"]).ok().stdout_has("t2");
    env.shvar(&["cmd", "t1", "status"]).ok();
    // cleanup removes the broken ones, never the live one.
    let c = env.shvar(&["cleanup"]);
    c.ok();
    assert!(!env.path("t2.shv").exists() && !env.path("t3.shv").exists());
    assert!(env.path("t1.shv").exists() && env.path("t1.ctl").exists());
    env.shvar(&["cmd", "t1", "status"]).ok();
}

#[test]
fn a_process_that_does_not_answer() {
    use nix::sys::signal::Signal;
    let mut env = Env::new();
    env.ticker("t1", &[]);
    env.signal("t1", Signal::SIGSTOP);
    let o = env.shvar(&["-w", "0.5", "cmd", "t1", "status"]);
    o.expect_code(1)
        .stderr_has("no answer from t1")
        .stderr_has("within 0.5 s");
    // Reading variables never needs the owner.
    assert_eq!(env.get("t1", "runstate"), "UNDEFINED_STATE");
    env.signal("t1", Signal::SIGCONT);
    // The queued command is served once it runs again; so is a new one.
    env.shvar(&["cmd", "t1", "init"]).ok();
    // No reply FIFO is left behind.
    let left: Vec<_> = fs::read_dir(env.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".reply"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn control_fifo_is_private_to_the_owner() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let m = fs::metadata(env.path("t1.ctl")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    let r = fs::metadata(env.path("t1.shv")).unwrap();
    assert_eq!(r.permissions().mode() & 0o777, 0o644);
}

#[test]
fn help_lists_the_table_and_json_for_tools() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let o = env.shvar(&["cmd", "t1", "help"]);
    o.ok()
        .stdout_has("t1 in UNDEFINED_STATE - commands:")
        .stdout_has("start")
        .stdout_has("[INIT_STATE -> RUNNING_STATE]");
    let j = env.shvar(&["cmd", "t1", "help", "--json"]);
    j.ok();
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let resume = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "resume")
        .unwrap();
    assert_eq!(resume["allowed"], serde_json::json!(["PAUSE_STATE"]));
    assert_eq!(resume["next"], "RUNNING_STATE");
    env.shvar(&["cmd", "t1", "help", "resume"])
        .ok()
        .stdout_has("allowed in: PAUSE_STATE");
}

#[test]
fn statistics_cadence_and_update() {
    let mut env = Env::new();
    env.ticker(
        "t1",
        &[
            "-c",
            "init",
            "-c",
            "set rate 200",
            "-c",
            "set upfreq 0",
            "-c",
            "set upfreq_l 0",
            "-c",
            "start",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Automatic refresh disabled: nothing published yet beyond the reset at start, and the
    // update times say "no update yet" (issue 12).
    assert_eq!(env.get_int("t1", "sg_events"), 0);
    assert_eq!(env.get_int("t1", "sg_uptime"), 0);
    assert_eq!(env.get_int("t1", "sl_uptime"), 0);
    env.shvar(&["cmd", "t1", "update"]).ok();
    let ev = env.get_int("t1", "sg_events");
    assert!(ev > 10, "sg_events {ev}");
    assert!(env.get_int("t1", "sg_msecs") >= 250);
    assert!(env.get_int("t1", "sl_uptime") > 1_700_000_000);
    // With a cadence, the values follow by themselves.
    env.shvar(&["set", "t1", "upfreq", "5"]).ok();
    env.wait_until("sg_events to refresh", || {
        env.get_int("t1", "sg_events") > ev + 20
    });
    // pause + resume starts a new long-term interval.
    env.shvar(&["cmd", "t1", "pause"]).ok();
    env.shvar(&["cmd", "t1", "resume"]).ok();
    assert!(
        env.get_int("t1", "sg_events") < ev,
        "sg_events not reset by resume"
    );
}

#[test]
fn daemon_mode_detaches_and_logs_to_a_file() {
    let mut env = Env::new();
    let mut c = env.command("ticker");
    c.args(["-n", "d1", "--daemon", "-c", "init"]);
    // The parent returns once the daemon is ready.
    env.run(c).ok();
    let pid = env.get_int("d1", "pid");
    env.adopt(pid as u32);
    assert_eq!(env.get("d1", "runstate"), "INIT_STATE");
    let log = env.path("d1.log");
    assert!(fs::read_to_string(&log)
        .unwrap()
        .contains("state UNDEFINED_STATE -> INIT_STATE"));
    env.shvar(&["cmd", "d1", "exit"]).ok();
    env.wait_until("the daemon to exit", || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err()
    });
    // A failing daemon start reports the reason through the parent.
    let mut c = env.command("ticker");
    c.args(["-n", "d2", "--daemon", "-c", "start"]);
    env.run(c)
        .expect_code(1)
        .stderr_has("start-up command 'start' failed");
    assert!(!env.path("d2.ctl").exists());
}

#[test]
fn a_process_that_fails_to_start_leaves_no_region_behind() {
    let env = Env::new();
    let mut c = env.command("evgen");
    // The buffer cannot be made: evgen's set-up fails after the region was created.
    c.args(["-n", "g1", "--buffer", "/nonexistent-daqproc-dir/b"]);
    env.run(c).expect_code(1).stderr_has("g1: start-up failed");
    assert!(
        !env.path("g1.shv").exists(),
        "a region of a process that never ran"
    );
    assert!(!env.path("g1.ctl").exists() && !env.path("g1.sock").exists());
    let l = env.shvar(&["list"]);
    assert!(!l.stdout.contains("g1"), "{}", l.stdout);
}
