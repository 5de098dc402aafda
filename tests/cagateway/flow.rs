//! Flow control on the CA wire: a client that cannot keep up gets the latest value, not a
//! backlog; writes waiting for a stuck owner are bounded.

use super::wire::header;
use super::*;

/// Reads one CA message: (command, p1, p2, payload).
fn read_msg(s: &mut TcpStream) -> (u16, u32, u32, Vec<u8>) {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).expect("a message from the gateway");
    let cmd = u16::from_be_bytes([h[0], h[1]]);
    let size = u16::from_be_bytes([h[2], h[3]]) as usize;
    let p1 = u32::from_be_bytes(h[8..12].try_into().unwrap());
    let p2 = u32::from_be_bytes(h[12..16].try_into().unwrap());
    let mut payload = vec![0u8; size];
    s.read_exact(&mut payload).unwrap();
    (cmd, p1, p2, payload)
}

/// Sends an echo and returns the monitor updates (their DBR_LONG values) that arrive before
/// its answer: everything the gateway had to say up to the echo.
fn updates_until_echo(s: &mut TcpStream) -> Vec<i32> {
    s.write_all(&header(23, 0, 0, 0, 0, 0)).unwrap();
    let mut v = Vec::new();
    loop {
        let (cmd, _, _, payload) = read_msg(s);
        match cmd {
            23 => return v,
            1 => v.push(i32::from_be_bytes(payload[..4].try_into().unwrap())),
            _ => {}
        }
    }
}

#[test]
fn a_client_that_cannot_keep_up_gets_the_latest_value_not_a_backlog() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    env.shvar(&["set", "t1", "rate", "1000"]).ok();
    let gw = start_gateway(&mut env, "ca1", &[]);
    gw.wait_serving(&env, 2);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = header(0, 0, 0, 13, 0, 0);
    req.extend(header(18, 16, 0, 0, 1, 13));
    req.extend_from_slice(b"t1:ticks\0\0\0\0\0\0\0\0");
    s.write_all(&req).unwrap();
    let sid = loop {
        let (cmd, _, p2, _) = read_msg(&mut s);
        if cmd == 18 {
            break p2;
        }
    };
    let mut sub = header(1, 16, 5, 1, sid, 7);
    sub.extend_from_slice(&[0u8; 12]);
    sub.extend_from_slice(&[0, 1, 0, 0]);
    s.write_all(&sub).unwrap();
    assert_eq!(updates_until_echo(&mut s), [0], "the value at once");
    // Flow control off (as a client that is behind asks): changes are only marked.
    s.write_all(&header(8, 0, 0, 0, 0, 0)).unwrap();
    let _ = updates_until_echo(&mut s);
    env.shvar(&["cmd", "t1", "start"]).ok();
    env.wait_until("500 ticks", || env.get_int("t1", "ticks") >= 500);
    assert_eq!(
        updates_until_echo(&mut s),
        Vec::<i32>::new(),
        "nothing while off"
    );
    env.shvar(&["cmd", "t1", "pause"]).ok();
    let last = env.get_int("t1", "ticks");
    // On again: one update, the latest value, not the hundreds of changes it missed.
    s.write_all(&header(9, 0, 0, 0, 0, 0)).unwrap();
    let got = updates_until_echo(&mut s);
    // (A tick the ticker was already counting when it paused may still land: then that one
    // change follows.)
    let now = env.get_int("t1", "ticks");
    assert!(!got.is_empty() && got.len() <= 2, "{got:?}");
    assert!(
        i64::from(got[0]) >= last && i64::from(got[got.len() - 1]) == now,
        "{got:?}, {last}..{now}"
    );
}

#[test]
fn writes_waiting_for_a_stuck_owner_are_bounded() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let gw = start_gateway_with_access(&mut env);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = header(0, 0, 0, 13, 0, 0);
    req.extend(header(18, 16, 0, 0, 1, 13));
    req.extend_from_slice(b"t1:rate\0\0\0\0\0\0\0\0\0");
    s.write_all(&req).unwrap();
    let sid = loop {
        let (cmd, _, p2, _) = read_msg(&mut s);
        if cmd == 18 {
            break p2;
        }
    };
    // The owner stops answering (SIGSTOP): the writes to it wait, up to a bound.
    env.signal("t1", nix::sys::signal::Signal::SIGSTOP);
    let mut writes = Vec::new();
    for i in 0..300u32 {
        writes.extend(header(4, 8, 5, 1, sid, i));
        writes.extend_from_slice(&20i32.to_be_bytes());
        writes.extend_from_slice(&[0; 4]);
    }
    s.write_all(&writes).unwrap();
    s.write_all(&header(23, 0, 0, 0, 0, 0)).unwrap();
    let mut refused = 0;
    loop {
        let (cmd, _, _, payload) = read_msg(&mut s);
        if cmd == 23 {
            break;
        }
        if cmd == 11 && String::from_utf8_lossy(&payload).contains("still waiting") {
            refused += 1;
        }
    }
    assert_eq!(refused, 300 - 256);
    // Others are still served meanwhile.
    let r = pyget(&gw, &env, &["t1:rate,5"]);
    assert_eq!(r["t1:rate,5"]["value"], 10);
    env.signal("t1", nix::sys::signal::Signal::SIGCONT);
    env.wait_until("the waiting writes to land", || {
        env.get_int("t1", "rate") == 20
    });
}
