//! isectd and isdclient, part 1: the seed's commands and replies, framework and plain workers,
//! restarts, backoff and failure, stopping, run-control fan-out in service order, a hanging
//! worker, readiness, and adoption after `kill -9` of isectd. Real processes, each test in its
//! own runtime directory. Part 2 (transactions) is in `xact.rs`.

mod xact;

use crate::util::{bin, Env, Out};

/// Starts `isectd -n NAME` (plus `extra`) and waits until it answers.
fn isectd(env: &mut Env, name: &str, extra: &[&str]) -> u32 {
    let mut c = env.command("isectd");
    c.args(["-n", name]).args(extra);
    let pid = env.spawn(name, c);
    env.wait_until(&format!("{name} to answer"), || {
        isd_try(env, name, "services").code == 0
    });
    pid
}

fn isd_try(env: &Env, name: &str, cmd: &str) -> Out {
    let mut c = env.command("isdclient");
    c.args(["-n", name, "-c", cmd]);
    env.run(c)
}

/// `isdclient -n NAME -c CMD`, which must succeed; its stdout.
#[track_caller]
fn isd(env: &Env, name: &str, cmd: &str) -> String {
    let o = isd_try(env, name, cmd);
    o.ok();
    o.stdout
}

fn ticker() -> String {
    bin("ticker").display().to_string()
}

fn state(env: &Env, name: &str, wid: u32) -> String {
    env.get(name, &format!("worker.{wid}.state"))
}

fn pid_of(env: &Env, name: &str, wid: u32) -> i64 {
    env.get_int(name, &format!("worker.{wid}.pid"))
}

/// Whether process `pid` runs (a zombie nobody reaped yet does not).
fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            != Some("Z")
    })
}

fn kill9(pid: i64) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[test]
fn the_seeds_commands_answer_as_the_seed_shows() {
    let mut env = Env::new();
    isectd(&mut env, "isd1", &[]);
    isd(&env, "isd1", "config service op");
    isd(&env, "isd1", "config service echo");
    isd(&env, "isd1", "config service eat");
    assert_eq!(
        isd(&env, "isd1", "services"),
        "                         service          id\n                             eat           3\n                            echo           2\n                              op           1\n"
    );
    assert_eq!(
        isd(&env, "isd1", "config events 20"),
        "isdData.NumEvents=20\n"
    );
    let help = isd(&env, "isd1", "help");
    for line in [
        "abort                    isectd calls abort() - creates a core file",
        "clone workerid           clones a worker id",
        "delete {worker|client} id\n                         deletes a client or worker",
        "workers [lazy | idle | busy | all]\n                         displays the worker queues",
        "<nil>                    examine isdData",
    ] {
        assert!(help.contains(line), "help lacks {line:?}:\n{help}");
    }
    // Any unknown command prints the list too, and fails.
    let o = isd_try(&env, "isd1", "razmafritz");
    o.expect_code(1).stderr_has("unknown command 'razmafritz'");
    assert!(o.stdout.contains("clone workerid"), "{}", o.stdout);
    // A worker needs its service.
    let o = isd_try(&env, "isd1", "config worker nosuch localhost /bin/true");
    o.expect_code(1)
        .stderr_has("no service nosuch (services: op, echo, eat): config service nosuch first");
    let o = isd_try(&env, "isd1", "config service echo");
    o.expect_code(1).stderr_has("service echo already exists");
    isd(&env, "isd1", "config worker eat localhost /bin/sleep 1000");
    assert_eq!(isd(&env, "isd1", "clone 1"), "cloned 2 from 1\n");
    isd(&env, "isd1", "set worker.1.ready_after_ms 1");
    isd(&env, "isd1", "set worker.2.ready_after_ms 1");
    assert_eq!(isd(&env, "isd1", "start eat"), "Ok.\n");
    env.wait_until("both workers idle", || {
        env.get_int("isd1", "IdleWorkers") == 2
    });
    let status = isd(&env, "isd1", "");
    for line in [
        "isdData.ServiceList      = 3",
        "isdData.LazyWorkers      = 0",
        "isdData.IdleWorkers      = 2",
        "isdData.NumEvents        = 20",
        "isdData.Buckets          = 0  0  0  0  0  0",
    ] {
        assert!(status.contains(line), "isdData lacks {line:?}:\n{status}");
    }
    let w = isd(&env, "isd1", "worker 2");
    for line in [
        "worker->id = 2",
        "worker->service_id = 3",
        &format!("worker->hostpid = {}", pid_of(&env, "isd1", 2)),
        "worker->name = \"eat\"",
        "worker->host = \"localhost\"",
        "worker->path = \"/bin/sleep\"",
        "worker->args = \"1000\"",
        "worker->restarts = 0",
        "worker->stopped = 0",
        "worker->state = IDLE",
    ] {
        assert!(w.contains(line), "worker 2 lacks {line:?}:\n{w}");
    }
    let ws = isd(&env, "isd1", "workers idle");
    assert!(ws.starts_with("IDLE (2):"), "{ws}");
    assert!(
        ws.contains("eat                  1 yes    localhost"),
        "{ws}"
    );
    assert_eq!(
        isd(&env, "isd1", "pause all"),
        "paused worker->id = 2, worker->name = eat\npaused worker->id = 1, worker->name = eat\n"
    );
    assert_eq!(
        isd(&env, "isd1", "workers lazy").lines().next(),
        Some("LAZY (2):")
    );
    assert_eq!(
        isd(&env, "isd1", "ready 2"),
        "readied worker->id = 2, worker->name = eat\n"
    );
    assert_eq!(isd(&env, "isd1", "ready eat"), "Ok.\n");
    // Deleting needs the LAZY queue, which means stopped.
    let o = isd_try(&env, "isd1", "delete worker 1");
    o.expect_code(1).stderr_has(
        "worker 1 is on the IDLE queue: before a worker can be deleted it must be on the LAZY queue, which means it must first be stopped (stop eat)",
    );
    assert_eq!(isd(&env, "isd1", "stop eat"), "Ok.\n");
    assert_eq!(state(&env, "isd1", 1), "STOPPED");
    assert_eq!(isd(&env, "isd1", "delete worker 1"), "worker 1 deleted\n");
    isd_try(&env, "isd1", "worker 1")
        .expect_code(1)
        .stderr_has("no worker 1 (workers: 2)");
    // Its row of variables is gone from the listings; reading one says it was removed.
    let d = env.shvar(&["dump", "isd1", "worker.*"]);
    d.ok();
    assert!(
        !d.stdout.contains("worker.1.") && d.stdout.contains("worker.2.state"),
        "{}",
        d.stdout
    );
    env.shvar(&["get", "isd1", "worker.1.state"])
        .expect_code(1)
        .stderr_has("was removed by its owner at");
    // Bad arguments: usage (exit 2) or a clear refusal.
    isd_try(&env, "isd1", "workers bogus")
        .expect_code(2)
        .stderr_has("usage: workers [lazy | idle | busy | all]");
    isd_try(&env, "isd1", "pause nosuch")
        .expect_code(1)
        .stderr_has("no service nosuch nor worker");
    isd_try(&env, "isd1", "config service a.b")
        .expect_code(1)
        .stderr_has("character '.' is not allowed");
    assert_eq!(
        isd(&env, "isd1", "buckets 12 5"),
        "isdData.NumBuckets=12, isdData.BucketSecs=5\n"
    );
    assert_eq!(env.get_int("isd1", "NumBuckets"), 12);
    isd_try(&env, "isd1", "buckets 0 5")
        .expect_code(1)
        .stderr_has("num must be 1 to 1000");
    assert_eq!(isd(&env, "isd1", "reset"), "statistics reset\n");
    let ev = isd(&env, "isd1", "listevents 3");
    assert!(
        ev.lines().nth(1).unwrap().ends_with("worker 1 deleted"),
        "{ev}"
    );
    isd(&env, "isd1", "exit");
    assert_eq!(env.wait_exit("isd1"), 0);
}

#[test]
fn a_killed_worker_is_restarted_then_backs_off_then_fails() {
    let mut env = Env::new();
    isectd(&mut env, "isd2", &[]);
    isd(&env, "isd2", "config service s");
    isd(
        &env,
        "isd2",
        "config worker s localhost /bin/sh -c 'echo worker %w says hello; echo oops >&2; exec sleep 1000'",
    );
    isd(&env, "isd2", "start s");
    env.wait_until("the worker to run", || pid_of(&env, "isd2", 1) > 0);
    // A worker that lived long enough is restarted at once.
    isd(&env, "isd2", "set worker.1.quick_ms 1");
    let p1 = pid_of(&env, "isd2", 1);
    env.wait_until("the log", || isd(&env, "isd2", "tail 1").contains("oops"));
    assert_eq!(isd(&env, "isd2", "tail 1 2"), "worker 1 says hello\noops\n");
    kill9(p1);
    env.wait_until("a new process", || {
        let p = pid_of(&env, "isd2", 1);
        p > 0 && p != p1
    });
    assert_eq!(env.get_int("isd2", "worker.1.restarts"), 1);
    assert_eq!(env.get("isd2", "worker.1.exit"), "signal 9 (SIGKILL)");
    // Quick deaths back off, doubling, then the worker is FAILED.
    isd(&env, "isd2", "set worker.1.quick_ms 600000");
    isd(&env, "isd2", "set worker.1.backoff_ms 50");
    isd(&env, "isd2", "set worker.1.fail_after 3");
    for _ in 0..2 {
        let p = pid_of(&env, "isd2", 1);
        kill9(p);
        env.wait_until("the next process", || {
            let q = pid_of(&env, "isd2", 1);
            q > 0 && q != p
        });
    }
    let ev = isd(&env, "isd2", "listevents 20");
    assert!(
        ev.contains("quick death 1 in a row, restarting in 50 ms (backoff)"),
        "{ev}"
    );
    assert!(
        ev.contains("quick death 2 in a row, restarting in 100 ms (backoff)"),
        "{ev}"
    );
    kill9(pid_of(&env, "isd2", 1));
    env.wait_until("FAILED", || state(&env, "isd2", 1) == "FAILED");
    assert_eq!(env.get_int("isd2", "worker.1.restarts"), 4);
    assert!(env.get("isd2", "worker.1.stderr").contains("oops"));
    let w = isd(&env, "isd2", "worker 1");
    assert!(
        w.contains("worker->last_exit = \"signal 9 (SIGKILL)\""),
        "{w}"
    );
    assert!(w.contains("worker->log_tail =\n    "), "{w}");
    assert!(w.contains("\n    oops"), "{w}");
    assert!(env.stderr_of("isd2").contains("FAILED after 3 deaths"));
    // `start` tries again.
    isd(&env, "isd2", "start s");
    env.wait_until("running again", || pid_of(&env, "isd2", 1) > 0);
    assert_eq!(state(&env, "isd2", 1), "STARTING");
}

#[test]
fn a_program_that_dies_at_once_ends_failed_and_stop_always_stops() {
    let mut env = Env::new();
    isectd(&mut env, "isd3", &[]);
    isd(&env, "isd3", "config service s");
    isd(
        &env,
        "isd3",
        "config worker s localhost /bin/sh -c 'echo broken >&2; exit 3'",
    );
    isd(&env, "isd3", "set worker.1.backoff_ms 10");
    isd(&env, "isd3", "start s");
    env.wait_until("FAILED", || state(&env, "isd3", 1) == "FAILED");
    assert_eq!(env.get("isd3", "worker.1.exit"), "exit 3");
    assert_eq!(env.get_int("isd3", "worker.1.restarts"), 5);
    assert!(env.get("isd3", "worker.1.stderr").contains("broken"));
    // A program that ignores SIGTERM is killed after its grace.
    isd(&env, "isd3", "config service h");
    isd(
        &env,
        "isd3",
        "config worker h localhost /bin/sh -c 'trap \"\" TERM; while :; do sleep 0.05; done'",
    );
    isd(&env, "isd3", "set worker.2.grace_ms 300");
    isd(&env, "isd3", "start h");
    env.wait_until("it runs", || pid_of(&env, "isd3", 2) > 0);
    assert_eq!(isd(&env, "isd3", "stop h"), "Ok.\n");
    assert_eq!(state(&env, "isd3", 2), "STOPPED");
    assert!(isd(&env, "isd3", "listevents 5").contains("still running after its grace: SIGKILL"));
    // A missing program is an error naming it, and the worker is FAILED.
    isd(&env, "isd3", "config worker h localhost /nonexistent/prog");
    let o = isd_try(&env, "isd3", "start h");
    o.expect_code(1)
        .stderr_has("worker 3: cannot start /nonexistent/prog: No such file or directory");
    isd(&env, "isd3", "stop h");
}

#[test]
fn readiness_comes_from_notify_socket_or_uptime() {
    let mut env = Env::new();
    isectd(&mut env, "isd4", &[]);
    isd(&env, "isd4", "config service s");
    // READY=1 once the worker says so: here after a file appears.
    let flag = env.path("go");
    let script = env.path("notify.sh");
    std::fs::write(
        &script,
        format!(
            "while [ ! -e {} ]; do sleep 0.01; done\nexec python3 -c \"import socket,os,time; s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.sendto(b'STATUS=warming up\\nREADY=1',os.environ['NOTIFY_SOCKET']); time.sleep(1000)\"\n",
            flag.display()
        ),
    )
    .unwrap();
    isd(
        &env,
        "isd4",
        &format!("config worker s localhost /bin/sh {}", script.display()),
    );
    isd(&env, "isd4", "config worker s localhost /bin/sleep 1000");
    isd(&env, "isd4", "set worker.2.ready_after_ms 200");
    isd(&env, "isd4", "start s");
    env.wait_until("both running", || {
        pid_of(&env, "isd4", 1) > 0 && pid_of(&env, "isd4", 2) > 0
    });
    env.wait_until("the second ready by uptime", || {
        state(&env, "isd4", 2) == "IDLE"
    });
    assert_eq!(state(&env, "isd4", 1), "STARTING");
    assert_eq!(env.get_int("isd4", "worker.1.avail"), 0);
    std::fs::write(&flag, b"").unwrap();
    env.wait_until("READY=1", || state(&env, "isd4", 1) == "IDLE");
    assert_eq!(env.get("isd4", "worker.1.status"), "warming up");
    assert_eq!(env.get("isd4", "worker.1.queue"), "IDLE");
}

#[test]
fn send_all_runs_services_in_order_and_reports_a_hanging_worker() {
    let mut env = Env::new();
    isectd(&mut env, "isd5", &[]);
    isd(&env, "isd5", "config service front");
    isd(&env, "isd5", "config service back");
    let t = ticker();
    isd(
        &env,
        "isd5",
        &format!("config worker front localhost {t} -n f%w -c init"),
    );
    isd(&env, "isd5", "clone 1");
    isd(
        &env,
        "isd5",
        &format!("config worker back localhost {t} -n b%w -c init"),
    );
    // back goes first.
    isd(&env, "isd5", "set service.back.order 0");
    isd(&env, "isd5", "start all");
    env.wait_until("three tickers ready", || {
        env.get_int("isd5", "IdleWorkers") == 3
    });
    assert_eq!(env.get("isd5", "worker.3.fwname"), "b3");
    let out = isd(&env, "isd5", "send all start");
    assert_eq!(
        out,
        "worker 3 (back, b3): ticking\nworker 1 (front, f1): ticking\nworker 2 (front, f2): ticking\n"
    );
    let changed = |proc: &str| {
        let dir = shvars::RuntimeDir::at(env.dir());
        let r = shvars::region::RegionReader::open(&dir, &shvars::ProcName::new(proc).unwrap())
            .unwrap();
        let v = r.find("runstate").unwrap();
        r.changed_ns(&v)
    };
    // Each service answered before the next was sent the command.
    assert!(changed("b3") < changed("f1") && changed("b3") < changed("f2"));
    let out = isd(&env, "isd5", "send all pause");
    assert_eq!(
        out,
        "worker 1 (front, f1): paused\nworker 2 (front, f2): paused\nworker 3 (back, b3): paused\n"
    );
    assert!(changed("f1") < changed("b3") && changed("f2") < changed("b3"));
    assert_eq!(env.get("f1", "runstate"), "PAUSE_STATE");
    assert_eq!(env.get_int("isd5", "worker.1.xactions"), 2);
    // A worker that does not answer is named; the others still get the command.
    isd(&env, "isd5", "set send_timeout_ms 500");
    let stopped = pid_of(&env, "isd5", 2);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(stopped as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let o = isd_try(&env, "isd5", "send all resume");
    o.expect_code(1);
    assert!(
        o.stderr.contains("worker 2 (front, f2): no answer from f2"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("worker 1 (front, f1): ticking again"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("worker 3 (back, b3): ticking again"),
        "{}",
        o.stderr
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(stopped as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    // A worker that is not a framework process cannot be sent commands, and says why.
    isd(&env, "isd5", "config service plain");
    isd(
        &env,
        "isd5",
        "config worker plain localhost /bin/sleep 1000",
    );
    isd(&env, "isd5", "start plain");
    let o = isd_try(&env, "isd5", "send plain init");
    o.expect_code(1).stderr_has(
        "worker 4 (plain): cannot send it commands: /bin/sleep is not a framework process",
    );
    // `send ... exit` stops a worker: it is not restarted.
    isd_try(&env, "isd5", "send back exit");
    env.wait_until("b3 stopped", || state(&env, "isd5", 3) == "STOPPED");
    // exit stops every worker (framework ones through their own exit), and forgets the state.
    isd(&env, "isd5", "exit");
    assert_eq!(env.wait_exit("isd5"), 0);
    assert!(env
        .stderr_of("isd5")
        .contains("stopping ('exit' sent to f1)"));
    assert!(!alive(pid_of(&env, "isd5", 1)));
    assert!(!env.path("isd5.isd/state.json").exists());
}

#[test]
fn kill_9_of_isectd_and_a_new_one_adopts_its_workers() {
    let mut env = Env::new();
    isectd(&mut env, "isd6", &[]);
    isd(&env, "isd6", "config service daq");
    isd(
        &env,
        "isd6",
        &format!("config worker daq localhost {} -n a%w -c init", ticker()),
    );
    isd(&env, "isd6", "config worker daq localhost /bin/sleep 1000");
    isd(&env, "isd6", "config worker daq localhost /bin/sleep 1001");
    isd(&env, "isd6", "set worker.2.ready_after_ms 1");
    isd(&env, "isd6", "start daq");
    env.wait_until("ready", || env.get_int("isd6", "IdleWorkers") == 2);
    let (p1, p2, p3) = (
        pid_of(&env, "isd6", 1),
        pid_of(&env, "isd6", 2),
        pid_of(&env, "isd6", 3),
    );
    env.kill9("isd6");
    // While isectd is gone, one worker dies.
    kill9(p3);
    env.wait_until("worker 3 gone", || !alive(p3));
    isectd(&mut env, "isd6", &[]);
    assert_eq!(pid_of(&env, "isd6", 1), p1);
    assert_eq!(pid_of(&env, "isd6", 2), p2);
    assert_eq!(state(&env, "isd6", 1), "IDLE");
    env.wait_until("the missing one started again", || {
        let p = pid_of(&env, "isd6", 3);
        p > 0 && p != p3
    });
    assert!(
        isd(&env, "isd6", "listevents 10").contains("2 processes still running adopted, 1 gone")
    );
    // The adopted framework worker takes commands, and its death is noticed (pidfd).
    assert_eq!(
        isd(&env, "isd6", "send 1 start"),
        "worker 1 (daq, a1): ticking\n"
    );
    isd(&env, "isd6", "set worker.2.quick_ms 1");
    kill9(p2);
    env.wait_until("worker 2 restarted", || {
        let p = pid_of(&env, "isd6", 2);
        p > 0 && p != p2
    });
    assert_eq!(env.get_int("isd6", "worker.2.restarts"), 1);
    // halt leaves the workers running for the next isectd.
    let o = isd_try(&env, "isd6", "halt");
    o.ok().stdout_has("halting");
    assert_eq!(env.wait_exit("isd6"), 1);
    assert!(alive(p1));
    isectd(&mut env, "isd6", &[]);
    assert_eq!(pid_of(&env, "isd6", 1), p1);
    // abort: a core where the system allows, the workers left for the next isectd too.
    isd_try(&env, "isd6", "abort").ok().stdout_has("aborting");
    assert_eq!(env.wait_exit("isd6"), -1);
    isectd(&mut env, "isd6", &[]);
    assert_eq!(pid_of(&env, "isd6", 1), p1);
    isd(&env, "isd6", "stop all");
    assert!(!alive(p1));
}

#[test]
fn a_script_configures_isectd_at_start_up() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = Env::new();
    let script = env.path("node.isd");
    std::fs::write(
        &script,
        "# the node\nconfig service echo\n\nconfig worker echo localhost /bin/sleep 1000\nclone 1\nstart echo\n",
    )
    .unwrap();
    // As an administrator leaves it, whatever the umask (one every user may write is refused).
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    isectd(&mut env, "isd7", &["--script", script.to_str().unwrap()]);
    env.wait_until("two running", || {
        pid_of(&env, "isd7", 1) > 0 && pid_of(&env, "isd7", 2) > 0
    });
    assert_eq!(env.get_int("isd7", "ServiceList"), 1);
    // A bad script line stops start-up with the line and the reason.
    std::fs::write(&script, "config worker nosuch localhost /bin/true\n").unwrap();
    let mut c = env.command("isectd");
    c.args(["-n", "isd8", "--script", script.to_str().unwrap()]);
    let o = env.run(c);
    o.expect_code(1)
        .stderr_has("--script: 'config worker nosuch localhost /bin/true': no service nosuch");
    // A script any local user could have changed (it starts programs): refused, nothing runs.
    std::fs::write(
        &script,
        "config service echo\nconfig worker echo localhost /bin/sleep 1000\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut c = env.command("isectd");
    c.args(["-n", "isd9", "--script", script.to_str().unwrap()]);
    env.run(c)
        .expect_code(1)
        .stderr_has("node.isd: refusing it: every user may write it (mode 0666)");
    assert!(!env.path("isd9.ctl").exists());
}

fn key_file(env: &Env, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = env.path(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

fn isdexecd(env: &mut Env, label: &str, addr: &str, key: &str) -> u32 {
    let mut c = env.command("isdexecd");
    c.args([
        "-n",
        label,
        "--listen",
        addr,
        "--key",
        key,
        "--allow",
        "/bin/sleep",
    ]);
    let pid = env.spawn(label, c);
    env.wait_ready(label, pid);
    pid
}

#[test]
fn workers_on_another_host_run_through_an_authenticated_isdexecd() {
    let mut env = Env::new();
    let key = key_file(&env, "key", "a shared secret of the farm\n");
    let addr = format!("127.0.0.2:{}", crate::util::free_port());
    isdexecd(&mut env, "x1", &addr, &key);
    isectd(&mut env, "isd9", &["--key", &key]);
    isd(&env, "isd9", "config service far");
    isd(
        &env,
        "isd9",
        &format!("config worker far {addr} /bin/sleep 1000"),
    );
    isd(&env, "isd9", &format!("config worker far {addr} /bin/true"));
    isd(&env, "isd9", "start far");
    env.wait_until("the remote worker to run", || pid_of(&env, "isd9", 1) > 0);
    let p1 = pid_of(&env, "isd9", 1);
    env.adopt(p1 as u32);
    assert!(env.stderr_of("x1").contains(&format!(
        "isd9 worker 1: started /bin/sleep 1000 as pid {p1}"
    )));
    // A program the remote host does not allow is refused there, and said so here.
    env.wait_until("worker 2 refused", || state(&env, "isd9", 2) == "FAILED");
    assert!(env
        .get("isd9", "worker.2.stderr")
        .contains("/bin/true is not among the programs this isdexecd may run"));
    assert_eq!(env.get_int("x1", "refused"), 1);
    // A remote death is noticed and the worker restarted.
    isd(&env, "isd9", "set worker.1.quick_ms 1");
    kill9(p1);
    env.wait_until("a new remote process", || {
        let p = pid_of(&env, "isd9", 1);
        p > 0 && p != p1
    });
    assert_eq!(env.get("isd9", "worker.1.exit"), "signal 9 (SIGKILL)");
    // Losing isdexecd makes its workers LOST, not dead; once it is back they run again.
    let p2 = pid_of(&env, "isd9", 1);
    env.adopt(p2 as u32);
    env.kill9("x1");
    env.wait_until("LOST", || state(&env, "isd9", 1) == "LOST");
    assert_eq!(env.get("isd9", "worker.1.queue"), "LAZY");
    isdexecd(&mut env, "x1", &addr, &key);
    env.wait_until("running again", || {
        let p = pid_of(&env, "isd9", 1);
        p > 0 && p != p2 && state(&env, "isd9", 1) != "LOST"
    });
    env.adopt(pid_of(&env, "isd9", 1) as u32);
    // An isectd with another key is refused, and counted.
    let bad = key_file(&env, "bad", "not the farm's secret at all\n");
    isectd(&mut env, "isd10", &["--key", &bad]);
    isd(&env, "isd10", "config service far");
    isd(
        &env,
        "isd10",
        &format!("config worker far {addr} /bin/sleep 1000"),
    );
    isd(&env, "isd10", "start far");
    env.wait_until("the refusal", || env.get_int("x1", "authfail") >= 1);
    env.wait_until("isd10's worker LOST", || state(&env, "isd10", 1) == "LOST");
    assert!(env
        .stderr_of("isd10")
        .contains("refused us: authentication failed"));
    // A key others can read is refused outright.
    let open = env.path("open");
    std::fs::write(&open, "a shared secret of the farm\n").unwrap();
    let mut c = env.command("isectd");
    c.args(["-n", "isd11", "--key", open.to_str().unwrap()]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.run(c)
        .expect_code(1)
        .stderr_has("is readable by others (mode 644): chmod 600 it");
    isd(&env, "isd9", "stop all");
}

#[test]
fn every_isectd_binary_prints_its_man_page_and_completions() {
    let env = Env::new();
    for b in ["isectd", "isdclient", "isdexecd", "isdecho", "isdbench"] {
        let mut c = env.command(b);
        c.arg("--man");
        let o = env.run(c);
        o.ok();
        assert!(
            o.stdout.contains(&format!(".TH {b} 1")),
            "{b}: {}",
            o.stdout
        );
        let mut c = env.command(b);
        c.args(["--completions", "bash"]);
        env.run(c).ok().stdout_has(&format!("_{b}()"));
    }
}

/// A worker knows who supervises it: `shvar`'s and spyctl's advice for it, once it is stopped,
/// is to ask isectd, and `spyctl launch` does so.
#[test]
fn a_supervised_worker_is_started_again_through_isectd() {
    let mut env = Env::new();
    isectd(&mut env, "isd9", &[]);
    isd(&env, "isd9", "config service daq");
    let t = ticker();
    isd(
        &env,
        "isd9",
        &format!("config worker daq localhost {t} -n d%w -c init"),
    );
    isd(&env, "isd9", "start daq");
    env.wait_until("the ticker ready", || {
        env.get_int("isd9", "IdleWorkers") == 1
    });
    assert_eq!(env.get("d1", "supervisor"), "isd9: start daq");
    isd(&env, "isd9", "stop daq");
    env.wait_until("the ticker stopped", || {
        env.shvar(&["cmd", "d1", "status"]).code == 1
    });
    env.shvar(&["cmd", "d1", "status"])
        .expect_code(1)
        .stderr_has("it is managed by isd9: `shvar cmd isd9 start daq` starts it again");
    let mut c = env.command("spyctl");
    c.args(["launch", "d1"]);
    env.run(c)
        .ok()
        .stdout_has("d1 is managed by isd9: sending it 'start daq'");
    env.wait_until("d1 running again", || {
        env.shvar(&["cmd", "d1", "status"]).code == 0
    });
    isd(&env, "isd9", "stop all");
}
