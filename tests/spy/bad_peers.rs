//! Farms that answer garbage or nothing, junk clients, too many clients: rspydaemon and
//! farmspydaemon keep serving and say what went wrong.

use super::*;

/// A fake farm: accepts connections and does `f` with each.
pub fn fake_farm(f: impl Fn(std::net::TcpStream) + Send + Sync + 'static) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let f = Arc::new(f);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let f = f.clone();
            std::thread::spawn(move || f(s));
        }
    });
    port
}

#[test]
fn a_farm_that_answers_garbage() {
    use std::io::{Read, Write};
    let mut env = Env::new();
    let port = fake_farm(|mut s| {
        let mut b = [0u8; 32];
        let _ = s.read_exact(&mut b);
        let _ = s.write_all(&crate::util::junk(10_000, 3));
        std::thread::sleep(Duration::from_millis(500));
    });
    connect_spy(&mut env, port);
    env.wait_until("the garbage to be reported", || {
        env.get("spy1", "lasterror")
            .contains("is not a farm spy daemon")
    });
    assert_eq!(env.get_int("spy1", "lastevent"), 0);
    cmd(&env, "spy1", &["status"]).ok();
    // It keeps retrying, with backoff, and stays responsive.
    std::thread::sleep(Duration::from_millis(500));
    cmd(&env, "spy1", &["end"]).ok();
}

#[test]
fn a_farm_that_never_answers() {
    use std::io::Read;
    let mut env = Env::new();
    let port = fake_farm(|mut s| {
        let mut b = [0u8; 1024];
        while matches!(s.read(&mut b), Ok(n) if n > 0) {}
    });
    start_spy_to(
        &mut env,
        "spy1",
        "L_1",
        port,
        &["set timeout_us 2000", "set timeoutcounts 5"],
    );
    env.wait_until("connected", || env.get_int("spy1", "no_conn") == 0);
    env.wait_until("timeouts to grow", || env.get_int("spy1", "timeouts") >= 5);
    let t = env.get_int("spy1", "timeouts");
    env.wait_until("timeouts to keep growing", || {
        env.get_int("spy1", "timeouts") > t
    });
    // Nothing hangs: commands are answered at once.
    cmd(&env, "spy1", &["pause"]).ok();
    cmd(&env, "spy1", &["resume"]).ok();
    cmd(&env, "spy1", &["end"]).ok();
    cmd(&env, "spy1", &["exit"]).ok();
    assert_eq!(env.wait_exit("spy1"), 0);
}

#[test]
fn junk_clients_do_not_hurt_a_good_one() {
    use std::io::{Read, Write};
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1_1"), 1 << 20, 300, Duration::from_micros(300));
    let port = start_farm(&mut env, "farm1", "B_1_1");
    cmd(&env, "farm1", &["update"]).ok();
    connect_spy(&mut env, port);
    let mut r = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
    let mut last = read_events(&env, &mut r, 20, 300, 0);
    let mut bad = 0;
    for seed in 1..=20u64 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // Garbage, a wrong magic, a valid magic with an absurd version.
        let junk = match seed % 3 {
            0 => crate::util::junk(5000, seed),
            1 => b"GET / HTTP/1.0\r\n\r\n\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(),
            _ => {
                let mut b = b"KSpQ".to_vec();
                b.extend_from_slice(&[0xff; 28]);
                b
            }
        };
        let _ = s.write_all(&junk);
        // The farm answers with an error packet and closes.
        let mut reply = Vec::new();
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = s.read_to_end(&mut reply);
        assert!(
            reply.starts_with(b"KSpA"),
            "no error packet for junk {seed}"
        );
        bad += 1;
        last = read_events(&env, &mut r, 2, 300, last);
    }
    env.wait_until("badreqs", || env.get_int("farm1", "badreqs") >= bad);
    // Silence is dropped too (after 5 s), and the good client never stopped.
    let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    env.wait_until("the silent one dropped", || {
        env.get_int("farm1", "badreqs") > bad
    });
    read_events(&env, &mut r, 20, 300, last);
    assert_eq!(env.get_int("farm1", "clients"), 1);
}

#[test]
fn maxclients_refuses_more() {
    use std::io::{Read, Write};
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1_1"), 1 << 20, 300, Duration::from_millis(1));
    let port = start_farm(&mut env, "farm1", "B_1_1");
    env.shvar(&["set", "farm1", "maxclients", "1"]).ok();
    connect_spy(&mut env, port);
    env.wait_until("one client", || env.get_int("farm1", "clients") == 1);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = s.write_all(&[0u8; 32]);
    let mut reply = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.read_to_end(&mut reply);
    assert!(String::from_utf8_lossy(&reply)
        .contains("too many clients: this daemon serves at most 1 (maxclients)"));
    assert_eq!(env.get_int("farm1", "clients"), 1);
}
