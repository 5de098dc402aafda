//! The spy daemons against hostile peers and paths (issue 12): clients that do not read, that
//! trickle, that sit idle; buffer paths that are not buffers; farms that accept and refuse.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileTypeExt;
use std::time::Duration;

use crate::spy::{cmd, start_farm, Producer};
use crate::util::Env;

/// A raw request: `mode` 0 next, 1 latest, 2 push; limits 0 = none.
pub fn request(mode: u16, max_events: u32, max_bytes: u32, last: u64) -> Vec<u8> {
    let mut b = b"KSpQ".to_vec();
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&mode.to_le_bytes());
    b.extend_from_slice(&max_events.to_le_bytes());
    b.extend_from_slice(&max_bytes.to_le_bytes());
    b.extend_from_slice(&last.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b
}

/// Anonymous resident memory of process `pid` (heap and stacks, not the mapped buffers).
fn rss_anon(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("RssAnon in /proc/PID/status");
    kb * 1024
}

/// The pid that owns process `name`'s region.
pub fn pid_of(env: &Env, name: &str) -> u32 {
    let dir = shvars::RuntimeDir::at(env.dir());
    let n = shvars::ProcName::new(name).unwrap();
    shvars::region::RegionReader::open(&dir, &n)
        .unwrap()
        .info()
        .pid
}

/// A farm buffer of 16 MiB full of 16 KiB events (so one unlimited `next` request asks for all
/// of it), with the producer going on slowly.
fn full_farm(env: &mut Env) -> (Producer, u16) {
    let p = Producer::start(
        env.path("B_1_1"),
        16 << 20,
        16 << 10,
        Duration::from_micros(200),
    );
    let port = start_farm(env, "farm1", "B_1_1");
    env.shvar(&["set", "farm1", "maxclients", "64"]).ok();
    (p, port)
}

/// Clients that ask and never read.
fn deaf_clients(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            // Many requests ahead (they fit the socket buffers), as a pipelining client would.
            let reqs: Vec<u8> = (0..1000).flat_map(|_| request(0, 0, 0, 0)).collect();
            s.write_all(&reqs).unwrap();
            s
        })
        .collect()
}

#[test]
fn issue12_farm_memory_is_bounded_for_clients_that_do_not_read() {
    let mut env = Env::new();
    let (_p, port) = full_farm(&mut env);
    let pid = pid_of(&env, "farm1");
    let base = rss_anon(pid);
    let _deaf = deaf_clients(port, 8);
    env.wait_until("the 8 clients to be served", || {
        env.get_int("farm1", "clients") == 8
    });
    let mut peak = 0;
    // A client that does not take its packet within 5 s is dropped; until then it costs at
    // most one packet (4 MiB) plus one event.
    env.wait_until("the deaf clients to be dropped", || {
        peak = peak.max(rss_anon(pid));
        env.get_int("farm1", "dropped") >= 8
    });
    assert_eq!(env.get_int("farm1", "clients"), 0);
    let grown = peak.saturating_sub(base);
    eprintln!(
        "8 clients that do not read: farm RssAnon {} KiB -> peak {} KiB",
        base >> 10,
        peak >> 10
    );
    assert!(
        grown < 8 * (5 << 20),
        "8 clients that do not read grew the farm by {} MiB",
        grown >> 20
    );
    env.wait_until("the log to say why", || {
        env.stderr_of("farm1")
            .contains("did not read a packet within 5 s")
    });
}

#[test]
fn issue12_end_closes_every_connection_at_once() {
    let mut env = Env::new();
    let (_p, port) = full_farm(&mut env);
    env.shvar(&["set", "farm1", "maxclients", "2"]).ok();
    // Small socket buffers: the farm is soon blocked writing to clients that do not read.
    env.shvar(&["set", "farm1", "sndbuf", "8192"]).ok();
    let deaf = deaf_clients(port, 2);
    env.wait_until("2 clients", || env.get_int("farm1", "clients") == 2);
    // Their packets have begun to arrive: the farm is now stuck writing to them.
    for s in &deaf {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 40];
        env.wait_until("a packet to begin", || {
            s.peek(&mut b).is_ok_and(|n| n == 40)
        });
    }
    cmd(&env, "farm1", &["end"])
        .ok()
        .stdout_has("listener and connections closed");
    assert_eq!(env.get_int("farm1", "clients"), 0);
    for mut s in deaf {
        // What was sent before is there to read, then the end of the stream.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut sink = Vec::new();
        match s.read_to_end(&mut sink) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
    cmd(&env, "farm1", &["start"]).ok();
    let port = env.get_int("farm1", "port") as u16;
    for _ in 0..2 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&request(1, 1, 0, 0)).unwrap();
        let mut h = [0u8; 40];
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.read_exact(&mut h).unwrap();
        assert_eq!(&h[0..4], b"KSpA");
        assert_ne!(
            h[6],
            2,
            "an error packet after start: {}",
            env.stderr_of("farm1")
        );
        std::mem::forget(s);
    }
}

#[test]
fn issue12_a_trickled_request_is_dropped_within_its_deadline() {
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1_1"), 1 << 20, 300, Duration::from_millis(1));
    let port = start_farm(&mut env, "farm1", "B_1_1");
    env.shvar(&["set", "farm1", "maxclients", "1"]).ok();
    // One byte a second: a valid request that would take 32 s.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req = request(0, 10, 0, 0);
    let trickle = std::thread::spawn(move || {
        for b in req {
            if s.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    env.wait_until("the trickler to be dropped", || {
        env.get_int("farm1", "badreqs") >= 1
    });
    assert!(env
        .stderr_of("farm1")
        .contains("no complete request within 5 s of connecting"));
    // A later request trickled after a good one is dropped too.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&request(0, 10, 0, 0)).unwrap();
    let mut h = [0u8; 40];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_exact(&mut h).unwrap();
    assert_eq!(&h[0..4], b"KSpA");
    s.write_all(&request(0, 10, 0, 0)[..5]).unwrap();
    env.wait_until("the second trickler to be dropped", || {
        env.get_int("farm1", "badreqs") >= 2
    });
    assert!(env
        .stderr_of("farm1")
        .contains("a request not complete within 5 s of its first byte"));
    drop(trickle);
}

#[test]
fn issue12_an_idle_client_gives_its_slot_to_a_new_one() {
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1_1"), 1 << 20, 300, Duration::from_millis(1));
    let port = start_farm(&mut env, "farm1", "B_1_1");
    env.shvar(&["set", "farm1", "maxclients", "1"]).ok();
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.write_all(&request(1, 1, 0, 0)).unwrap();
    let mut h = [0u8; 40];
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.read_exact(&mut h).unwrap();
    // Then it sits there. A new client is refused while the idle one is recent, and served
    // once it has been idle for 5 s.
    let mut served = false;
    env.wait_until("a new client to get the idle one's slot", || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&request(1, 1, 0, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut h = [0u8; 40];
        if s.read_exact(&mut h).is_err() {
            return false;
        }
        served = h[6] != 2;
        if served {
            std::mem::forget(s);
        } else {
            std::thread::sleep(Duration::from_millis(300));
        }
        served
    });
    env.wait_until("dropped to count it", || {
        env.get_int("farm1", "dropped") == 1
    });
    assert!(env.stderr_of("farm1").contains("idle, its slot given to"));
    // The idle one's connection is closed.
    let mut rest = Vec::new();
    let r = idle.read_to_end(&mut rest);
    assert!(r.is_ok() || r.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset);
}

#[test]
fn issue12_a_buffer_path_replaces_only_a_stale_buffer_in_a_buffer_directory() {
    let mut env = Env::new();
    crate::spy::start_spy(&mut env, "spy1", "L_1", &[]);
    let precious = env.path("precious");
    std::fs::write(&precious, "do not touch").unwrap();
    let p = precious.to_str().unwrap().to_owned();
    cmd(&env, "spy1", &["init", &p])
        .expect_code(1)
        .stderr_has("refusing to create buffer")
        .stderr_has("a regular file of 12 bytes that is not a circular buffer");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "do not touch");
    // The same for evgen, and for a symbolic link to the file.
    let mut c = env.command("evgen");
    c.args(["-n", "gen1", "--buffer", &p]);
    env.run(c)
        .expect_code(1)
        .stderr_has("a regular file of 12 bytes that is not a circular buffer");
    let link = env.path("link");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    cmd(&env, "spy1", &["init", link.to_str().unwrap()])
        .expect_code(1)
        .stderr_has("a symbolic link is already there");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "do not touch");
    // A directory not meant for buffers: nothing is created there.
    let sub = env.path("sub");
    std::fs::create_dir(&sub).unwrap();
    let inside = sub.join("L_2");
    cmd(&env, "spy1", &["init", inside.to_str().unwrap()])
        .expect_code(1)
        .stderr_has("is not a directory for buffers");
    assert!(std::fs::read_dir(&sub).unwrap().next().is_none());
    // Unless the operator allows it.
    let mut c = env.command("rspydaemon");
    c.env("SHVAR_BUFFER_DIRS", &sub).args([
        "-n",
        "spy2",
        "-c",
        &format!("init {}", inside.display()),
    ]);
    let pid = env.spawn("spy2", c);
    env.wait_ready("spy2", pid);
    env.wait_until("spy2 to create its buffer there", || inside.exists());
    // A stale buffer (its producer was killed) is taken over.
    crate::spy::start_evgen(&mut env, "gen2", "B_stale", &["--rate", "100"]);
    env.kill9("gen2");
    cmd(&env, "spy1", &["init", "B_stale"]).ok();
    // A live one is not.
    crate::spy::start_evgen(&mut env, "gen3", "B_live", &["--rate", "100"]);
    cmd(&env, "spy1", &["init", "B_live"])
        .expect_code(1)
        .stderr_has("is already produced by pid");
}

#[test]
fn issue12_a_fifo_at_a_buffer_path_is_refused_without_blocking() {
    let mut env = Env::new();
    crate::spy::start_spy(&mut env, "spy1", "L_1", &[]);
    let fifo = env.path("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    cmd(&env, "spy1", &["init", "fifo"])
        .expect_code(1)
        .stderr_has("a FIFO is already there");
    let mut c = env.command("evgen");
    c.args(["-n", "gen1", "--buffer", "fifo"]);
    env.spawn("gen1", c);
    assert_ne!(env.wait_exit("gen1"), 0);
    assert!(env.stderr_of("gen1").contains("a FIFO is already there"));
    // A reader is refused too, at once.
    let mut c = env.command("spycat");
    c.args(["--count", "1", "fifo"]);
    let o = env.run(c);
    assert_ne!(o.code, 0);
    o.stderr_has("is not a circular event buffer");
    // rspydaemon still answers, and SIGTERM still ends it.
    cmd(&env, "spy1", &["status"]).ok();
    env.signal("spy1", nix::sys::signal::Signal::SIGTERM);
    assert_eq!(env.wait_exit("spy1"), 0);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn issue12_rspy_backs_off_from_a_farm_that_accepts_then_refuses() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let mut env = Env::new();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    let port = crate::spy::fake_farm(move |mut s| {
        a.fetch_add(1, Ordering::SeqCst);
        let mut b = [0u8; 32];
        let _ = s.read_exact(&mut b);
        let msg = b"cannot serve B_1_1: its producer is not running";
        let mut h = vec![0u8; 40];
        h[0..4].copy_from_slice(b"KSpA");
        h[4..6].copy_from_slice(&1u16.to_le_bytes());
        h[6..8].copy_from_slice(&2u16.to_le_bytes());
        h[16..24].copy_from_slice(&(msg.len() as u64).to_le_bytes());
        h.extend_from_slice(msg);
        let _ = s.write_all(&h);
    });
    crate::spy::start_spy_to(&mut env, "spy1", "L_1", port, &[]);
    // Waits of 0.1, 0.2, 0.4, 0.8, 1.6 s between the six attempts.
    env.wait_until("six attempts", || accepted.load(Ordering::SeqCst) >= 6);
    let log = env.stderr_of("spy1");
    let lines = log.matches("its producer is not running").count();
    assert_eq!(
        lines, 1,
        "the repeated failure logged {lines} times:\n{log}"
    );
    assert!(env
        .get("spy1", "lasterror")
        .contains("its producer is not running"));
    // Had it not backed off, it would have made dozens of attempts by now.
    let n = accepted.load(Ordering::SeqCst);
    assert!(n <= 7, "{n} attempts");
    // A farm that works: the end of the failure is logged with its count.
    let _p = Producer::start(env.path("B_1_1"), 1 << 20, 300, Duration::from_millis(1));
    let good = start_farm(&mut env, "farm1", "B_1_1");
    cmd(&env, "spy1", &["reconnect", "127.0.0.1", &good.to_string()]).ok();
    env.wait_until("the end of the failure to be logged", || {
        env.stderr_of("spy1").contains("before it stopped")
    });
}

#[test]
fn issue12_evgen_exits_promptly_with_a_stopped_lossless_reader() {
    use nix::sys::signal::Signal;
    let mut env = Env::new();
    crate::spy::start_evgen(
        &mut env,
        "gen1",
        "B_1_1",
        &[
            "--circsize",
            "64K",
            "--size",
            "1000",
            "--lossless-timeout",
            "60s",
        ],
    );
    let mut c = env.command("spycat");
    c.args(["--follow", "--lossless", "-q", "B_1_1"]);
    env.spawn("reader", c);
    env.wait_until("the lossless reader", || {
        env.get_int("gen1", "readers") == 1
    });
    env.signal("reader", Signal::SIGSTOP);
    // The producer is blocked by the stopped reader: events no longer grow.
    env.wait_until("the producer to be blocked", || {
        let a = env.get_int("gen1", "events");
        std::thread::sleep(Duration::from_millis(300));
        env.get_int("gen1", "events") == a
    });
    assert!(env.get_int("gen1", "circfulls") > 0);
    let t0 = std::time::Instant::now();
    cmd(&env, "gen1", &["exit"]).ok();
    assert_eq!(env.wait_exit("gen1"), 0);
    eprintln!("evgen exited {:?} after exit", t0.elapsed());
    let log = env.stderr_of("gen1");
    assert!(
        !log.contains("did not stop within"),
        "exit waited for the stopped reader:\n{log}"
    );
    assert!(!env.path("B_1_1").exists(), "the buffer is left behind");
}

#[test]
fn issue12_shvar_cleanup_removes_dead_producers_buffers() {
    let mut env = Env::new();
    crate::spy::start_evgen(&mut env, "gen1", "B_dead", &["--rate", "100"]);
    let dead_pid = pid_of(&env, "gen1");
    env.kill9("gen1");
    crate::spy::start_evgen(&mut env, "gen2", "B_live", &["--rate", "100"]);
    std::fs::write(env.path("notes"), "not a buffer").unwrap();
    nix::unistd::mkfifo(
        &env.path("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let dry = env.shvar(&["cleanup", "--dry-run"]);
    dry.ok().stdout_has("would remove 1 dead producer's buffer");
    assert!(env.path("B_dead").exists());
    let o = env.shvar(&["cleanup"]);
    o.ok()
        .stdout_has(&format!(
            "B_dead (circular buffer of 4.0 MiB, its producer pid {dead_pid} is gone)"
        ))
        .stdout_has("removed 1 dead producer's buffer: 4.0 MiB freed");
    assert!(!env.path("B_dead").exists());
    assert!(
        env.path("B_live").exists(),
        "a live producer's buffer removed"
    );
    assert!(env.path("notes").exists() && env.path("fifo").exists());
    assert!(!o.stdout.contains("B_live"), "{}", o.stdout);
}
