//! isectd part 2: transactions through isectd to transaction workers (isdecho, the stdio
//! adapter), pieces, routing to idle workers only, priorities and preempt, block, service
//! moves, reject, the intervention error, junk from either side, many clients at once.

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use daqproc::daemons::isectd::xlib::{XClient, XError, XWorker};

use super::{isd, isd_try, isectd, kill9, pid_of, state};
use crate::util::{bin, Env};

fn echo_path() -> String {
    bin("isdecho").display().to_string()
}

fn addr(env: &Env, name: &str) -> String {
    format!("127.0.0.1:{}", env.get_int(name, "req_port"))
}

/// isectd `name` with service `echo` and one isdecho worker (extra isdecho options `opts`)
/// configured, not started.
fn echo_configured(env: &mut Env, name: &str, opts: &str) {
    isectd(env, name, &[]);
    isd(env, name, "config service echo");
    isd(
        env,
        name,
        &format!("config worker echo localhost tp:{} {opts}", echo_path()),
    );
}

/// The pid of worker `wid`, from `worker WID`.
fn worker_pid(env: &Env, name: &str, wid: u32) -> u32 {
    isd(env, name, &format!("worker {wid}"))
        .lines()
        .find_map(|l| l.strip_prefix("worker->hostpid = "))
        .unwrap()
        .parse()
        .unwrap()
}

/// isectd `name` with service `echo` of `n` isdecho workers (extra isdecho options `opts`),
/// all logged in.
fn with_echo(env: &mut Env, name: &str, n: usize, opts: &str) {
    echo_configured(env, name, opts);
    for _ in 1..n {
        isd(env, name, "clone 1");
    }
    isd(env, name, "start echo");
    env.wait_until("the echo workers to log in", || {
        env.get_int(name, "IdleWorkers") == n as i64
    });
}

#[test]
fn transactions_go_to_idle_workers_in_pieces_and_are_counted() {
    let mut env = Env::new();
    with_echo(&mut env, "t1", 2, "");
    let a = addr(&env, "t1");
    let mut c = XClient::connect(&a, "echo").unwrap();
    assert_eq!(c.transact(b"hello").unwrap(), b"hello");
    // A request larger than a frame goes in pieces, and comes back whole.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(c.transact(&big).unwrap(), big);
    // isdclient: one message, then one per line of stdin.
    let o = isd_try(&env, "t1", "");
    assert!(
        o.stdout.contains("isdData.PriList          = 1"),
        "{}",
        o.stdout
    );
    let mut cmd = env.command("isdclient");
    cmd.args(["-n", "t1", "-s", "echo", "hi there"]);
    assert_eq!(env.run(cmd).stdout, "hi there\n");
    // It came in on isectd's Unix socket; --addr still takes the TCP port.
    let ev = isd(&env, "t1", "listevents 5");
    assert!(ev.contains("logged in from local for service echo"), "{ev}");
    let mut cmd = env.command("isdclient");
    cmd.args(["-n", "t1", "--addr", &a, "-s", "echo", "over tcp"]);
    assert_eq!(env.run(cmd).stdout, "over tcp\n");
    let from: i64 = (1..=2)
        .map(|w| env.get_int("t1", &format!("worker.{w}.xactions")))
        .sum();
    assert_eq!(from, 4);
    let w1 = isd(&env, "t1", "worker 1");
    assert!(w1.contains("worker->kind = Tp"), "{w1}");
    // isdecho, started here, logged in on the Unix socket isectd gave it (ISD_SOCKET).
    assert!(w1.contains("worker->link = unix"), "{w1}");
    assert!(
        isd(&env, "t1", "").contains("isdData.PeakBucket       = 4"),
        "the histogram counts the transactions"
    );
    assert_eq!(env.get_int("t1", "xactions"), 4);
    // A client on this machine may use it too.
    let sock = env.get("t1", "xact_socket");
    assert_eq!(sock, env.path("t1.xact").display().to_string());
    let mut local = XClient::connect(&format!("unix:{sock}"), "echo").unwrap();
    assert_eq!(local.transact(b"over unix").unwrap(), b"over unix");
    let cl = isd(&env, "t1", &format!("client {}", local.id()));
    assert!(cl.contains("client->link = unix"), "{cl}");
    drop(local);
    let cl = isd(&env, "t1", &format!("client {}", c.id()));
    assert!(cl.contains("client->link = tcp"), "{cl}");
    // Replies in pieces: the worker stays BUSY until the last.
    isd(
        &env,
        "t1",
        &format!("config worker echo localhost tp:{} --pieces 3", echo_path()),
    );
    isd(&env, "t1", "pause 1");
    isd(&env, "t1", "pause 2");
    env.wait_until("worker 3 idle", || state(&env, "t1", 3) == "IDLE");
    assert_eq!(c.transact(b"abcdefghi").unwrap(), b"abcdefghi");
    let w3 = isd(&env, "t1", "worker 3");
    assert!(
        w3.contains("worker->fromCount = 3") && w3.contains("worker->toCount = 1"),
        "{w3}"
    );
    // send reinit|status to transaction workers.
    assert_eq!(
        isd(&env, "t1", "send 3 status"),
        "worker 3 (echo): echoed 1 transactions\n"
    );
    assert_eq!(
        isd(&env, "t1", "send 3 reinit"),
        "worker 3 (echo): reinitialised\n"
    );
}

#[test]
fn waiting_transactions_are_served_by_priority_then_arrival() {
    let mut env = Env::new();
    with_echo(&mut env, "t2", 1, "--delay-ms 300");
    let a = addr(&env, "t2");
    let (tx, rx) = mpsc::channel();
    // One transaction keeps the only worker busy.
    let mut first = XClient::connect(&a, "echo").unwrap();
    first.send_piece(1, b"first", false).unwrap();
    env.wait_until("the worker busy", || state(&env, "t2", 1) == "BUSY");
    let mut low = XClient::connect(&a, "echo").unwrap();
    let mut high = XClient::connect(&a, "echo").unwrap();
    isd(&env, "t2", &format!("pri {} 5", high.id()));
    assert!(isd(&env, "t2", &format!("client {}", high.id())).contains("client->priority = 5"));
    let wait_held = |id: u32| {
        env.wait_until("the request held", || {
            isd(&env, "t2", &format!("client {id}")).contains("client->held = 1")
        })
    };
    low.send_piece(1, b"low", false).unwrap();
    wait_held(low.id());
    high.send_piece(1, b"high", false).unwrap();
    wait_held(high.id());
    for (name, mut c) in [("low", low), ("high", high)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let p = c.recv_piece().unwrap();
            tx.send((name, p.data)).unwrap();
        });
    }
    assert_eq!(first.recv_piece().unwrap().data, b"first");
    let order: Vec<&str> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).unwrap().0)
        .collect();
    assert_eq!(order, ["high", "low"]);
    let ev = isd(&env, "t2", "listevents 30");
    assert!(
        ev.contains("transaction waits: no idle worker of echo"),
        "{ev}"
    );
    assert!(ev.contains("transaction (priority 5) to worker 1"), "{ev}");
    // preempt off: arrival order whatever the priority.
    assert_eq!(isd(&env, "t2", "preempt off"), "preempt off\n");
    let mut first = XClient::connect(&a, "echo").unwrap();
    first.send_piece(1, b"first", false).unwrap();
    env.wait_until("the worker busy", || state(&env, "t2", 1) == "BUSY");
    let mut low = XClient::connect(&a, "echo").unwrap();
    let mut high = XClient::connect(&a, "echo").unwrap();
    isd(&env, "t2", &format!("pri {} 5", high.id()));
    low.send_piece(1, b"low", false).unwrap();
    wait_held(low.id());
    high.send_piece(1, b"high", false).unwrap();
    wait_held(high.id());
    for (name, mut c) in [("low", low), ("high", high)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let p = c.recv_piece().unwrap();
            tx.send((name, p.data)).unwrap();
        });
    }
    let order: Vec<&str> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).unwrap().0)
        .collect();
    assert_eq!(order, ["low", "high"]);
}

#[test]
fn block_service_moves_reject_and_a_shell_script_worker() {
    let mut env = Env::new();
    with_echo(&mut env, "t3", 1, "");
    // A program that knows nothing of the protocol, through the adapter.
    isd(&env, "t3", "config service shout");
    isd(
        &env,
        "t3",
        &format!(
            "config worker shout localhost tp:{} --stdio /bin/sh -c 'while read l; do echo \"got: $l\"; done'",
            echo_path()
        ),
    );
    isd(&env, "t3", "start shout");
    env.wait_until("the adapter logged in", || state(&env, "t3", 2) == "IDLE");
    let a = addr(&env, "t3");
    let mut s = XClient::connect(&a, "shout").unwrap();
    assert_eq!(s.transact(b"one line").unwrap(), b"got: one line");
    assert_eq!(
        s.transact(b"two\nlines").unwrap(),
        b"error: the adapter takes one line per transaction (no newline in a request)"
    );
    // block holds a client's transactions; unblock lets them go.
    let mut c = XClient::connect(&a, "echo").unwrap();
    let id = c.id();
    assert_eq!(
        isd(&env, "t3", &format!("block {id}")),
        format!("client {id} blocked\n")
    );
    c.send_piece(1, b"held", false).unwrap();
    env.wait_until("held", || {
        isd(&env, "t3", &format!("client {id}")).contains("client->held = 1")
    });
    assert_eq!(env.get_int("t3", "worker.1.xactions"), 0);
    isd(&env, "t3", &format!("unblock {id}"));
    assert_eq!(c.recv_piece().unwrap().data, b"held");
    // service moves a client to another service.
    assert_eq!(
        isd(&env, "t3", &format!("service {id} shout")),
        format!("client {id}: service echo -> shout\n")
    );
    assert_eq!(c.transact(b"moved").unwrap(), b"got: moved");
    assert!(isd(&env, "t3", "clients").contains(&format!("{id:>11} shout")));
    // reject refuses new logins until reject off.
    isd(&env, "t3", "reject");
    match XClient::connect(&a, "echo") {
        Err(XError::Reply { code: -3, text }) => {
            assert!(text.contains("logins are refused"), "{text}")
        }
        other => panic!("login while rejecting: {other:?}"),
    }
    assert_eq!(isd(&env, "t3", "reject off"), "accepting client logins\n");
    XClient::connect(&a, "echo").unwrap();
    match XClient::connect(&a, "nosuch") {
        Err(XError::Reply { code: -2, text }) => {
            assert!(text.contains("no service \"nosuch\" (services: "), "{text}")
        }
        other => panic!("login to no service: {other:?}"),
    }
    // delete client closes it.
    assert_eq!(
        isd(&env, "t3", &format!("delete client {id}")),
        format!("client {id} deleted\n")
    );
    assert!(matches!(
        c.transact(b"x"),
        Err(XError::Reply { code: -4, .. }) | Err(XError::Closed) | Err(XError::Io(_))
    ));
}

#[test]
fn a_worker_idled_or_killed_mid_transaction_gives_its_client_the_intervention() {
    let mut env = Env::new();
    with_echo(&mut env, "t4", 1, "--delay-ms 3000");
    let a = addr(&env, "t4");
    let mut c = XClient::connect(&a, "echo").unwrap();
    c.send_piece(1, b"slow", false).unwrap();
    env.wait_until("busy", || state(&env, "t4", 1) == "BUSY");
    let ws = isd(&env, "t4", "workers busy");
    assert!(ws.contains(&format!("{:>9}", c.id())), "{ws}");
    isd_try(&env, "t4", "idle 1")
        .ok()
        .stdout_has("idled worker 1");
    let p = c.recv_piece().unwrap();
    assert_eq!(
        (p.header.error, p.data.as_slice()),
        (-1, &b"PROTOCOL INTERVENTION"[..])
    );
    assert_eq!(state(&env, "t4", 1), "IDLE");
    isd_try(&env, "t4", "idle 1")
        .expect_code(1)
        .stderr_has("worker 1 is not busy on a transaction (IDLE)");
    // Its late reply is thrown away; the next transaction gets its own answer.
    assert_eq!(c.transact(b"next").unwrap(), b"next");
    // Killed while busy: the client is told, the worker restarted and logs in again.
    c.send_piece(1, b"doomed", false).unwrap();
    env.wait_until("busy", || state(&env, "t4", 1) == "BUSY");
    let p1 = pid_of(&env, "t4", 1);
    isd(&env, "t4", "set worker.1.quick_ms 1");
    kill9(p1);
    let p = c.recv_piece().unwrap();
    assert_eq!(
        (p.header.error, p.data.as_slice()),
        (-1, &b"PROTOCOL INTERVENTION"[..])
    );
    env.wait_until("restarted and logged in", || {
        pid_of(&env, "t4", 1) != p1 && state(&env, "t4", 1) == "IDLE"
    });
    assert_eq!(env.get_int("t4", "worker.1.restarts"), 1);
    // shutdown of its socket: the worker sees isectd closing, exits, and is restarted.
    let p2 = pid_of(&env, "t4", 1);
    let fd = isd(&env, "t4", "workers idle")
        .lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().nth(10).map(str::to_owned))
        .unwrap();
    isd_try(&env, "t4", &format!("shutdown {fd}"))
        .ok()
        .stdout_has("(worker 1) shut down for sending");
    env.wait_until("restarted after shutdown", || {
        pid_of(&env, "t4", 1) != p2 && state(&env, "t4", 1) == "IDLE"
    });
    assert!(env.get("t4", "worker.1.exit").contains("exit 0"));
}

#[test]
fn junk_from_a_client_or_a_worker_costs_only_its_connection() {
    let mut env = Env::new();
    with_echo(&mut env, "t5", 1, "");
    let a = addr(&env, "t5");
    let mut good = XClient::connect(&a, "echo").unwrap();
    // Garbage, an absurd length, a frame before login.
    let mut s = TcpStream::connect(&a).unwrap();
    s.write_all(&crate::util::junk(4096, 7)).unwrap();
    let mut s2 = TcpStream::connect(&a).unwrap();
    let mut f = b"ISD1\x03\x00\x00\x00".to_vec();
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&u32::MAX.to_le_bytes());
    s2.write_all(&f).unwrap();
    // And garbage on the Unix socket.
    let mut u = std::os::unix::net::UnixStream::connect(env.path("t5.xact")).unwrap();
    u.write_all(&crate::util::junk(4096, 9)).unwrap();
    env.wait_until("all three dropped", || {
        env.get_int("t5", "proto_errors") >= 3
    });
    assert_eq!(good.transact(b"still served").unwrap(), b"still served");
    // A worker that replies for a transaction it was not given: a transaction worker whose
    // program is a shell, and an impostor logging in with its rendezvous.
    let script = env.path("sleeper");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $4 > {}\nexec sleep 1000\n",
            env.path("token").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    isd(&env, "t5", "config service sh");
    isd(
        &env,
        "t5",
        &format!("config worker sh localhost tp:{}", script.display()),
    );
    isd(&env, "t5", "start sh");
    env.wait_until("running", || pid_of(&env, "t5", 2) > 0);
    env.wait_until("the token", || env.path("token").exists());
    // The script got SCRIPT HOST PORT ID TOKEN and wrote the token down.
    let (host, port, id) = ("127.0.0.1", env.get_int("t5", "port") as u16, 2u32);
    let token = std::fs::read_to_string(env.path("token")).unwrap();
    let token = token.trim();
    assert!(XWorker::login(host, port, id, "wrong-token").is_err());
    let mut w = XWorker::login(host, port, id, token).unwrap();
    env.wait_until("the impostor idle", || state(&env, "t5", 2) == "IDLE");
    // Without ISD_SOCKET (as here) a worker logs in over TCP, the seed's way.
    let w2 = isd(&env, "t5", "worker 2");
    assert!(w2.contains("worker->link = tcp"), "{w2}");
    let before = env.get_int("t5", "proto_errors");
    w.reply(77, 1, b"unasked", false).unwrap();
    env.wait_until("the unasked reply dropped", || {
        env.get_int("t5", "proto_errors") > before
    });
    assert!(isd(&env, "t5", "listevents 20").contains("replied for a transaction it was not given"));
    assert_eq!(good.transact(b"and again").unwrap(), b"and again");
    // A client that sends and never reads is dropped once its replies pile up.
    let before = env.get_int("t5", "proto_errors");
    let mut deaf = XClient::connect(&a, "echo").unwrap();
    let mb = vec![7u8; 1 << 20];
    let mut sent = 0;
    while env.get_int("t5", "proto_errors") == before && sent < 200 {
        if deaf.send_piece(1, &mb, false).is_err() {
            break;
        }
        sent += 1;
    }
    env.wait_until("the deaf client dropped", || {
        env.get_int("t5", "proto_errors") > before
    });
    assert_eq!(good.transact(b"unharmed").unwrap(), b"unharmed");
}

#[test]
fn a_thousand_clients_at_once_are_bounded_and_a_good_one_is_served() {
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if hard < 2600 {
        eprintln!("skipped: the descriptor limit ({hard}) is too low for 1000 clients");
        return;
    }
    nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        soft.max(2600),
        hard,
    )
    .unwrap();
    let mut env = Env::new();
    with_echo(&mut env, "t6", 1, "");
    isd(&env, "t6", "set MaxUsers 600");
    let a = addr(&env, "t6");
    let mut good = XClient::connect(&a, "echo").unwrap();
    let mut conns = Vec::new();
    let mut login = Vec::new();
    daqproc::daemons::isectd::xproto::put(
        &mut login,
        daqproc::daemons::isectd::xproto::Kind::Login,
        0,
        0,
        0,
        1,
        b"echo",
    );
    for _ in 0..1000 {
        let mut s = TcpStream::connect(&a).unwrap();
        s.write_all(&login).unwrap();
        conns.push(s);
    }
    assert_eq!(
        good.transact(b"served among a crowd").unwrap(),
        b"served among a crowd"
    );
    env.wait_until("600 logged in, the rest refused", || {
        env.get_int("t6", "PriList") == 600
    });
    assert!(isd(&env, "t6", "listevents 5").contains("isectd has its maximum of 600 clients"));
    drop(conns);
    env.wait_until("all gone", || env.get_int("t6", "PriList") == 1);
    assert_eq!(good.transact(b"after").unwrap(), b"after");
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// `busy_poll_us`: isectd polls without sleeping for that long after a transaction's traffic
/// (lower latency), and sleeps again once the traffic stops: an idle isectd with busy polling
/// on uses no CPU.
#[test]
fn busy_polling_serves_and_stops_when_the_traffic_does() {
    let mut env = Env::new();
    with_echo(&mut env, "t7", 1, "");
    let pid = env.get_int("t7", "pid") as u32;
    env.shvar(&["set", "t7", "busy_poll_us", "100000"]).ok();
    env.shvar(&["set", "t7", "busy_poll_us", "100001"])
        .expect_code(1);
    let mut c = XClient::connect(&addr(&env, "t7"), "echo").unwrap();
    for i in 0..200u32 {
        let m = i.to_le_bytes();
        assert_eq!(c.transact(&m).unwrap(), m);
    }
    // The last traffic is at most 0.1 s old from here: after that isectd sleeps.
    std::thread::sleep(Duration::from_millis(150));
    let before = cpu_secs(pid);
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_secs(pid) - before;
    assert!(used < 0.3, "an idle isectd used {used} s of CPU in 1 s");
}

/// A transaction that no worker will serve (none started, the last one stopped, all failed)
/// is answered at once with the error NO SERVICE and what to do, instead of waiting for ever;
/// one that waits for a busy worker still waits.
#[test]
fn a_transaction_no_worker_will_serve_is_refused_with_what_to_do() {
    let mut env = Env::new();
    echo_configured(&mut env, "t12", "--delay-ms 2000");
    let a = addr(&env, "t12");
    let refused = |c: &mut XClient, what: &str| match c.transact(b"anyone?") {
        Err(XError::Reply { code, text }) => {
            assert_eq!(code, -2, "{text}");
            assert!(text.contains(what), "{text}");
        }
        other => panic!("not refused: {other:?}"),
    };
    // Configured, not started. (Read timeouts: a client left waiting fails the test.)
    let mut c = XClient::connect(&a, "echo").unwrap();
    c.set_timeout(Some(Duration::from_secs(20))).unwrap();
    refused(&mut c, "no worker of echo is started (start echo)");
    let mut cmd = env.command("isdclient");
    cmd.args(["-n", "t12", "-s", "echo", "hello"]);
    let o = env.run(cmd);
    o.expect_code(1);
    assert!(o.stderr.contains("start echo"), "{o:?}");
    assert!(isd(&env, "t12", "listevents 10").contains("transaction refused: no worker of echo"));
    // Started: a transaction waits for the busy worker, and is refused when it is stopped.
    isd(&env, "t12", "start echo");
    env.wait_until("the worker to log in", || {
        env.get_int("t12", "IdleWorkers") == 1
    });
    let mut busy = XClient::connect(&a, "echo").unwrap();
    busy.send_piece(1, b"slow", false).unwrap();
    env.wait_until("the worker busy", || state(&env, "t12", 1) == "BUSY");
    c.send_piece(1, b"waits", false).unwrap();
    env.wait_until("the request held", || {
        isd(&env, "t12", &format!("client {}", c.id())).contains("client->held = 1")
    });
    isd(&env, "t12", "stop echo");
    let p = c.recv_piece().unwrap();
    assert_eq!(p.header.error, -2);
    assert!(
        String::from_utf8_lossy(&p.data).contains("no worker of echo is started"),
        "{p:?}"
    );
    // The interrupted one got the intervention.
    assert_eq!(busy.recv_piece().unwrap().header.error, -1);
    // A service whose only worker keeps dying: refused once it has failed.
    isd(&env, "t12", "config service dies");
    isd(&env, "t12", "config worker dies localhost tp:/bin/false");
    isd(&env, "t12", "set worker.2.fail_after 2");
    isd(&env, "t12", "set worker.2.backoff_ms 10");
    isd(&env, "t12", "start dies");
    env.wait_until("the worker to fail", || state(&env, "t12", 2) == "FAILED");
    let mut d = XClient::connect(&a, "dies").unwrap();
    d.set_timeout(Some(Duration::from_secs(20))).unwrap();
    match d.transact(b"x") {
        Err(XError::Reply { code: -2, text }) => {
            assert!(text.contains("every worker of dies failed"), "{text}")
        }
        other => panic!("not refused: {other:?}"),
    }
}

/// The voluntary context switches of `pid` so far: a process that sleeps waiting for input
/// adds one per wait.
fn sleeps(pid: u32) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `worker_busy_poll_us`: workers isectd starts after it is set poll for their next request
/// that long after each reply (they then take a request without sleeping for it), and sleep
/// again once the traffic stops; `worker ID` shows what a worker was started with.
#[test]
fn workers_started_with_busy_polling_take_requests_without_sleeping() {
    let mut env = Env::new();
    echo_configured(&mut env, "t11", "");
    env.shvar(&["set", "t11", "worker_busy_poll_us", "100001"])
        .expect_code(1);
    env.shvar(&["set", "t11", "worker_busy_poll_us", "100000"])
        .ok();
    isd(&env, "t11", "start echo");
    env.wait_until("the echo worker to log in", || {
        env.get_int("t11", "IdleWorkers") == 1
    });
    let w1 = isd(&env, "t11", "worker 1");
    assert!(w1.contains("worker->busy_poll_us = 100000"), "{w1}");
    let pid = worker_pid(&env, "t11", 1);
    let mut c = XClient::connect(&addr(&env, "t11"), "echo").unwrap();
    assert_eq!(c.transact(b"first").unwrap(), b"first");
    // Each next request comes well within the 100 ms the worker polls for: it never sleeps
    // for one (a worker that does not poll sleeps once per request).
    let before = sleeps(pid);
    for i in 0..200u32 {
        let m = i.to_le_bytes();
        assert_eq!(c.transact(&m).unwrap(), m);
    }
    let slept = sleeps(pid) - before;
    assert!(
        slept < 50,
        "the polling worker slept {slept} times for 200 requests"
    );
    // After the traffic it sleeps: no CPU when idle.
    std::thread::sleep(Duration::from_millis(150));
    let cpu = cpu_secs(pid);
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_secs(pid) - cpu;
    assert!(
        used < 0.3,
        "an idle polling worker used {used} s of CPU in 1 s"
    );
    // Workers started once it is 0 again do not poll.
    env.shvar(&["set", "t11", "worker_busy_poll_us", "0"]).ok();
    isd(&env, "t11", "stop echo");
    env.wait_until("the worker to stop", || {
        isd(&env, "t11", "worker 1").contains("worker->hostpid = 0")
    });
    isd(&env, "t11", "start echo");
    env.wait_until("the restarted worker to log in", || {
        isd(&env, "t11", "worker 1").contains("worker->busy_poll_us = 0")
            && env.get_int("t11", "IdleWorkers") == 1
    });
    let pid = worker_pid(&env, "t11", 1);
    let before = sleeps(pid);
    for i in 0..100u32 {
        let m = i.to_le_bytes();
        assert_eq!(c.transact(&m).unwrap(), m);
    }
    let slept = sleeps(pid) - before;
    assert!(
        slept >= 90,
        "a worker without polling slept {slept} times for 100 requests"
    );
}

/// Something not ours to remove at `NAME.xact` (here a directory; in a shared runtime
/// directory, another user's file): isectd starts anyway, says why its Unix socket is missing,
/// and its workers and isdclient use TCP, the seed's way.
#[test]
fn a_name_in_the_way_of_the_unix_socket_leaves_everyone_on_tcp() {
    let mut env = Env::new();
    std::fs::create_dir(env.path("t8.xact")).unwrap();
    with_echo(&mut env, "t8", 1, "");
    assert_eq!(env.get("t8", "xact_socket"), "");
    let ev = isd(&env, "t8", "listevents 50");
    assert!(
        ev.contains("no Unix socket for local workers") && ev.contains("t8.xact"),
        "{ev}"
    );
    let w1 = isd(&env, "t8", "worker 1");
    assert!(w1.contains("worker->link = tcp"), "{w1}");
    let mut cmd = env.command("isdclient");
    cmd.args(["-n", "t8", "-s", "echo", "still served"]);
    assert_eq!(env.run(cmd).stdout, "still served\n");
    assert!(env.path("t8.xact").is_dir(), "isectd removed a directory");
}

/// Another local user cannot even reach isectd's Unix socket (mode 0600); the TCP ports, which
/// anyone on the machine can reach, need a service name (clients) or a token (workers).
#[test]
fn a_stranger_cannot_connect_to_the_unix_socket() {
    let who = crate::need_stranger!();
    let mut env = Env::new();
    with_echo(&mut env, "t9", 1, "");
    let mut c = env.program_as("/usr/bin/python3", who);
    c.args([
        "-c",
        r#"
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("t9.xact")
    print("connected")
except PermissionError:
    print("denied")
"#,
    ]);
    let o = env.run(c);
    assert_eq!(o.stdout.trim(), "denied", "{o:?}");
    // It was made 0600 in a private directory before it was moved into place; nothing of that
    // is left.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(env.path("t9.xact"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let left: Vec<String> = std::fs::read_dir(env.path("."))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".xact-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // And isectd goes on serving.
    let mut x = XClient::connect(&addr(&env, "t9"), "echo").unwrap();
    assert_eq!(x.transact(b"fine").unwrap(), b"fine");
}

/// After a `kill -9` of isectd, `shvar cleanup` removes its Unix socket with its other files.
#[test]
fn cleanup_removes_a_dead_isectds_unix_socket() {
    let mut env = Env::new();
    isectd(&mut env, "t10", &[]);
    assert!(env.path("t10.xact").exists());
    env.kill9("t10");
    env.shvar(&["cleanup"])
        .ok()
        .stdout_has("transaction socket of dead t10");
    assert!(!env.path("t10.xact").exists());
    assert!(!env.path("t10.sock").exists());
}
