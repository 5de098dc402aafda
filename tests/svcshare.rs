//! svcshare as processes: the seed's commands and aliases, the three client kinds (proxy,
//! framework process, commands), the proxy holding connections while paused and counting
//! bytes, lease files planted by another user, local and etcd peers (a real etcd), the IRC
//! front (a real ngircd driven by a scripted client), and the safety test: never two holders,
//! never a stale token accepted, a new holder within TTL + 0.5 s of the holder's death (TTL + 1 s
//! with etcd, whose lessor looks for expired leases every 0.5 s).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::util::{free_port, Env, Out};

mod irc;
mod safety;

fn svcshare(env: &mut Env, name: &str, extra: &[&str]) -> u32 {
    let mut c = env.command("svcshare");
    c.args(["-n", name, "--poll", "10ms"]).args(extra);
    let pid = env.spawn(name, c);
    env.wait_ready(name, pid);
    pid
}

fn cmd(env: &Env, name: &str, line: &str) -> Out {
    let mut a = vec!["cmd", name];
    a.extend(line.split_whitespace());
    env.shvar(&a)
}

/// Runs `line` on `name` and expects success; returns the reply.
#[track_caller]
fn ok(env: &Env, name: &str, line: &str) -> String {
    let o = cmd(env, name, line);
    o.ok();
    o.stdout
}

fn state(env: &Env, name: &str) -> String {
    env.get(name, "state")
}

/// The fenced resource and its users, shared with the soak (`tools/svcsoak`): a resource that
/// checks fencing tokens (each connection starts with `SVCSHARE-TOKEN T PEER`, the proxy's
/// stamp; each `access` line is answered `ok`, or `stale` and the connection closed when T is
/// older than a token it has seen), and clients that use it through a proxy as fast as they
/// are let through.
#[path = "../tools/svcsoak/resource.rs"]
mod resource;
use resource::{Grant, Resource as Fenced, User};

fn files_of(env: &Env, name: &str) -> (String, String) {
    (
        env.path(&format!("{name}.paused")).display().to_string(),
        env.path(&format!("{name}.resumed")).display().to_string(),
    )
}

/// A peer whose client is two commands that append the token to files.
fn cmd_peer(env: &mut Env, name: &str, extra: &[&str]) {
    let (p, r) = files_of(env, name);
    let pause = format!("echo $SVCSHARE_TOKEN >> {p}");
    let resume = format!("echo $SVCSHARE_TOKEN >> {r}");
    let mut a = vec!["--pause-cmd", &pause, "--resume-cmd", &resume];
    a.extend_from_slice(extra);
    svcshare(env, name, &a);
}

fn lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn svcshare_commands_and_aliases_follow_the_seed() {
    let mut env = Env::new();
    cmd_peer(&mut env, "a", &[]);
    cmd_peer(&mut env, "b", &[]);
    let (a_paused, a_resumed) = files_of(&env, "a");
    // Paused at start-up, as the seed does.
    env.wait_until("a's client paused at start", || {
        !lines(&a_paused).is_empty()
    });
    assert_eq!(state(&env, "a"), "PAUSED");
    // enqueue / enq, and the queue as variables.
    ok(&env, "a", "enqueue r1");
    ok(&env, "a", "enq r2");
    ok(&env, "b", "enq s1");
    assert_eq!(env.get_int("a", "queue"), 2);
    assert_eq!(env.get("a", "queue_items"), "r1 r2");
    cmd(&env, "a", "enq r1")
        .expect_code(1)
        .stderr_has("already in the queue");
    // election: the only candidate wins and its client resumes with the token.
    let r = ok(&env, "a", "election");
    assert!(r.contains("running under token"), "{r}");
    let tok_a = env.get_int("a", "token");
    env.wait_until("a resumed", || lines(&a_resumed) == [tok_a.to_string()]);
    // resume (alias) on b: b's queue (1) is smaller: a gives the resource back, b runs.
    ok(&env, "b", "resume");
    env.wait_until("b running", || state(&env, "b") == "RUNNING");
    env.wait_until("a waiting", || state(&env, "a") == "WAITING");
    let tok_b = env.get_int("b", "token");
    assert!(tok_b > tok_a, "tokens grow: {tok_a} then {tok_b}");
    // a's pause command ran with the token of the grant it ended.
    assert_eq!(lines(&a_paused).last(), Some(&tok_a.to_string()));
    assert_eq!(env.get("a", "holder"), "b");
    ok(&env, "a", "peers").contains("b has the smallest queue");
    // done: b's queue empties, it gives the resource back; a (still asking) takes it.
    cmd(&env, "b", "done nothere")
        .expect_code(1)
        .stderr_has("not in the queue");
    let r = ok(&env, "b", "done s1");
    assert!(r.contains("giving the resource back"), "{r}");
    env.wait_until("a running again", || state(&env, "a") == "RUNNING");
    // continue (alias) on b with an empty queue: 0 < 2, b wins.
    ok(&env, "b", "continue");
    env.wait_until("b running", || state(&env, "b") == "RUNNING");
    // force on a: runs at once, without an election.
    let r = ok(&env, "a", "force");
    env.wait_until("a forced", || state(&env, "a") == "FORCED");
    assert!(r.contains("force"), "{r}");
    assert_eq!(env.get_int("a", "force"), 1);
    // force without MB: peers' elections are not ignored.
    ok(&env, "b", "election");
    env.wait_until("b running after its election", || {
        state(&env, "b") == "RUNNING"
    });
    assert_eq!(
        env.get_int("a", "force"),
        0,
        "losing an election ends a's force"
    );
    // force MB needs the proxy to count bytes.
    cmd(&env, "a", "force 5")
        .expect_code(1)
        .stderr_has("no proxy");
    cmd(&env, "a", "force lots")
        .expect_code(1)
        .stderr_has("megabytes");
    // pause clears a force.
    ok(&env, "a", "force");
    env.wait_until("a forced", || state(&env, "a") == "FORCED");
    let r = ok(&env, "a", "pause");
    assert!(r.contains("force cleared"), "{r}");
    assert_eq!(state(&env, "a"), "PAUSED");
    assert_eq!(env.get_int("a", "force"), 0);
    // halt: paused at once, no elections, an empty queue reported.
    ok(&env, "b", "enq s2");
    ok(&env, "b", "enq s3");
    ok(&env, "b", "enq s4");
    ok(&env, "a", "election");
    env.wait_until("a running", || state(&env, "a") == "RUNNING");
    let r = ok(&env, "a", "halt");
    assert!(r.contains("indefinitely"), "{r}");
    assert_eq!(state(&env, "a"), "HALTED");
    assert_eq!(
        env.get_int("a", "queue"),
        0,
        "a halted peer reports an empty queue"
    );
    assert_eq!(env.get_int("a", "halt_remaining"), -1);
    env.wait_until("b running", || state(&env, "b") == "RUNNING");
    cmd(&env, "a", "election")
        .expect_code(1)
        .stderr_has("halted");
    // unhalt: a's queue is not empty, so it asks again: 2 < 3, a runs.
    ok(&env, "a", "unhalt");
    env.wait_until("a running after unhalt", || state(&env, "a") == "RUNNING");
    // halt MINUTES ends by itself (0.01 min = 0.6 s) and asks for an election again.
    let r = ok(&env, "a", "halt 0.01");
    assert!(r.contains("0.01 minutes"), "{r}");
    assert_eq!(state(&env, "a"), "HALTED");
    env.wait_until("the halt to end", || state(&env, "a") != "HALTED");
    env.wait_until("a running after the halt", || state(&env, "a") == "RUNNING");
    // force ends a halt too.
    ok(&env, "a", "halt");
    ok(&env, "a", "force");
    env.wait_until("a forced", || state(&env, "a") == "FORCED");
    // version and status (every peer answers).
    ok(&env, "a", "version").contains("svcshare ");
    let s = ok(&env, "b", "status");
    assert!(s.contains("b (share): WAITING, queue 3"), "{s}");
    // Every decision is in the event log.
    let ev = ok(&env, "a", "events 200");
    for what in [
        "granted the resource: token",
        "gave the resource back",
        "halted",
        "forced",
    ] {
        assert!(ev.contains(what), "event log lacks {what:?}:\n{ev}");
    }
    // Bad arguments: the usage.
    cmd(&env, "a", "halt soon")
        .expect_code(1)
        .stderr_has("MINUTES");
    cmd(&env, "a", "enqueue")
        .expect_code(1)
        .stderr_has("enqueue ID");
}

/// An upstream that answers each line with the line upper-cased.
fn upper_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = c.try_clone().unwrap();
                for line in BufReader::new(c).lines() {
                    let Ok(line) = line else { return };
                    if w.write_all(format!("{}\n", line.to_uppercase()).as_bytes())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn read_line_within(r: &mut BufReader<TcpStream>, t: Duration) -> Option<String> {
    r.get_ref().set_read_timeout(Some(t)).unwrap();
    let mut s = String::new();
    match r.read_line(&mut s) {
        Ok(n) if n > 0 => Some(s),
        _ => None,
    }
}

#[test]
fn the_proxy_holds_connections_while_paused_forwards_when_granted_and_counts_bytes() {
    let mut env = Env::new();
    let up = upper_server();
    let (pa, pb) = (free_port(), free_port());
    let (la, lb) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    let ups = format!("127.0.0.1:{up}");
    svcshare(
        &mut env,
        "a",
        &["--listen", &la, "--upstream", &ups, "--hold", "3s"],
    );
    svcshare(
        &mut env,
        "b",
        &["--listen", &lb, "--upstream", &ups, "--hold-max", "1"],
    );
    // Paused: the connection is accepted and held; nothing goes through.
    let c = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    w.write_all(b"hello\n").unwrap();
    assert_eq!(read_line_within(&mut r, Duration::from_millis(300)), None);
    assert_eq!(env.get_int("a", "bytes_forwarded"), 0);
    env.wait_until("a to count the held connection", || {
        env.get_int("a", "connections") == 1
    });
    // Granted: the held bytes go through, both ways, and are counted.
    ok(&env, "a", "election");
    assert_eq!(
        read_line_within(&mut r, Duration::from_secs(10)).as_deref(),
        Some("HELLO\n")
    );
    env.wait_until("the bytes counted", || {
        env.get_int("a", "bytes_forwarded") == 12
    });
    // force MB on b: b takes the resource and ignores a's elections until 0.00002 MB (20 bytes)
    // went through its proxy.
    ok(&env, "b", "enq big"); // b's queue (1) is longer than a's (0): a wins elections
    let r2 = ok(&env, "b", "force 0.00002");
    assert!(r2.contains("force"), "{r2}");
    env.wait_until("b forced", || state(&env, "b") == "FORCED");
    assert_eq!(env.get_int("b", "force"), 2);
    assert_eq!(env.get_int("b", "force_remaining"), 20);
    // a's connection is held again (a's elections are ignored meanwhile).
    ok(&env, "a", "election");
    w.write_all(b"again\n").unwrap();
    assert_eq!(read_line_within(&mut r, Duration::from_millis(300)), None);
    assert_eq!(state(&env, "b"), "FORCED");
    let cb = TcpStream::connect(("127.0.0.1", pb)).unwrap();
    let mut wb = cb.try_clone().unwrap();
    let mut rb = BufReader::new(cb);
    wb.write_all(b"0123456789abcd\n").unwrap(); // 15 bytes out, 15 back: 30 >= 20
    assert_eq!(
        read_line_within(&mut rb, Duration::from_secs(10)).as_deref(),
        Some("0123456789ABCD\n")
    );
    // The megabytes went through: a's election counts again, and a (asked later) wins.
    env.wait_until("a running once b's MB went through", || {
        state(&env, "a") == "RUNNING"
    });
    assert_eq!(
        read_line_within(&mut r, Duration::from_secs(10)).as_deref(),
        Some("AGAIN\n")
    );
    // b paused now: holds one connection (its bound); a second is closed at once.
    let extra = TcpStream::connect(("127.0.0.1", pb)).unwrap();
    let mut eb = [0u8; 1];
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        (&extra).read(&mut eb).unwrap_or(0),
        0,
        "over the bound: closed"
    );
    env.wait_until("b logs the bound", || {
        ok(&env, "b", "events 100").contains("already holding 1 connections (the bound)")
    });
    // Held longer than --hold (3 s) while paused: closed.
    ok(&env, "a", "pause");
    assert_eq!(
        (&r.get_ref().try_clone().unwrap()).read(&mut eb).ok(),
        Some(0)
    );
    env.wait_until("a to log the closing", || {
        ok(&env, "a", "events 100").contains("held paused for more than 3 s")
    });
    env.wait_until("the dropped counter", || env.get_int("a", "dropped") >= 1);
}

#[test]
fn a_framework_process_is_paused_and_resumed_through_its_control_socket() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init", "-c", "start"]);
    env.wait_until("ticker running", || {
        env.get("t1", "runstate") == "RUNNING_STATE"
    });
    // The ticker's writable `label` carries the grant's token.
    svcshare(
        &mut env,
        "s1",
        &["--client", "t1", "--client-token-var", "label"],
    );
    env.wait_until("the client paused at start", || {
        env.get("t1", "runstate") == "PAUSE_STATE"
    });
    assert_eq!(env.get("t1", "label"), "0");
    ok(&env, "s1", "election");
    env.wait_until("the client resumed", || {
        env.get("t1", "runstate") == "RUNNING_STATE"
    });
    assert_eq!(
        env.get("t1", "label"),
        env.get_int("s1", "token").to_string()
    );
    ok(&env, "s1", "pause");
    assert_eq!(env.get("t1", "runstate"), "PAUSE_STATE");
    assert_eq!(env.get("t1", "label"), "0");
    let ev = ok(&env, "s1", "events 50");
    assert!(ev.contains("client resumed under token"), "{ev}");
    // A client that cannot carry the token is not resumed.
    env.ticker("t2", &["-c", "init", "-c", "start"]);
    svcshare(
        &mut env,
        "s3",
        &[
            "--client",
            "t2",
            "--client-token-var",
            "nosuchvar",
            "--share",
            "third",
        ],
    );
    ok(&env, "s3", "election");
    env.wait_until("the stamp error", || {
        env.get("s3", "lasterror")
            .contains("refused to take the token in nosuchvar")
    });
    assert_eq!(env.get("t2", "runstate"), "PAUSE_STATE");
    // A client that is not there: a clear error, in the reply's log.
    svcshare(&mut env, "s2", &["--client", "nosuch", "--share", "other"]);
    let r = ok(&env, "s2", "election");
    env.wait_until("the error", || {
        ok(&env, "s2", "events 50").contains("cannot send 'resume' to the client nosuch")
    });
    // ... and the resource is not kept from the others meanwhile.
    assert!(r.contains("PAUSED"), "{r}");
    assert_eq!(state(&env, "s2"), "PAUSED");
    assert_eq!(env.get("s2", "holder"), "");
}

#[test]
fn bad_options_are_refused_with_what_to_do() {
    let env = Env::new();
    let run = |args: &[&str]| {
        let mut c = env.command("svcshare");
        c.args(args);
        env.run(c)
    };
    run(&["-n", "x"])
        .expect_code(2)
        .stderr_has("nothing to control");
    run(&["-n", "x", "--client", "t1", "--ttl", "soon"])
        .expect_code(2)
        .stderr_has("--ttl");
    run(&[
        "-n",
        "x",
        "--client",
        "t1",
        "--etcd",
        "http://127.0.0.1:1",
        "--ttl",
        "500ms",
    ])
    .expect_code(1)
    .stderr_has("whole seconds");
    run(&["-n", "x", "--client", "t1", "--etcd", "localhost:2379"])
        .expect_code(1)
        .stderr_has("write http://HOST:PORT");
    run(&[
        "-n",
        "x",
        "--client",
        "t1",
        "--irc",
        "h:1",
        "--channel",
        "share",
        "--nick",
        "b",
    ])
    .expect_code(2)
    .stderr_has("starts with #");
    for bin in ["svcshare", "svcsoak"] {
        let mut c = env.command(bin);
        c.args(["--completions", "bash"]);
        env.run(c).ok().stdout_has(bin);
        let mut c = env.command(bin);
        c.arg("--man");
        env.run(c).ok().stdout_has(".TH");
    }
}

#[test]
fn a_lease_file_planted_by_another_user_is_refused() {
    let who = crate::need_stranger!();
    let env = Env::new();
    env.share();
    let planted = env.path("share.svcshare.lock");
    let st = env
        .program_as("/bin/sh", who)
        .args(["-c", &format!("umask 077; : > {}", planted.display())])
        .status()
        .unwrap();
    assert!(st.success());
    let mut c = env.command("svcshare");
    c.args(["-n", "p1", "--client", "t1"]);
    env.run(c)
        .expect_code(1)
        .stderr_has("refusing a lease file another user planted");
}

#[test]
fn a_holder_that_exits_pauses_its_client_and_hands_over_at_once() {
    let mut env = Env::new();
    cmd_peer(&mut env, "a", &["--ttl", "30s"]);
    cmd_peer(&mut env, "b", &["--ttl", "30s"]);
    ok(&env, "a", "election");
    env.wait_until("a running", || state(&env, "a") == "RUNNING");
    let tok = env.get_int("a", "token");
    ok(&env, "b", "enq big");
    ok(&env, "b", "election");
    assert_eq!(state(&env, "b"), "WAITING");
    env.signal("a", Signal::SIGTERM);
    assert_eq!(env.wait_exit("a"), 0);
    // a paused its client with the grant's token on its way out, and gave the lease back:
    // b runs without waiting for the 30 s lease to end.
    let (a_paused, _) = files_of(&env, "a");
    assert_eq!(lines(&a_paused).last(), Some(&tok.to_string()));
    assert!(
        env.stderr_of("a")
            .contains(&format!("(token {tok}): exiting")),
        "{}",
        env.stderr_of("a")
    );
    env.wait_until("b running", || state(&env, "b") == "RUNNING");
    assert!(env.get_int("b", "token") > tok);
}
