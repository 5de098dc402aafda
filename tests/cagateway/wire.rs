//! Hostile clients on the CA wire: malformed, oversized and silent clients cost only
//! themselves.

use super::*;

pub(super) fn header(cmd: u16, size: u16, dtype: u16, count: u16, p1: u32, p2: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [cmd, size, dtype, count] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(&p1.to_be_bytes());
    v.extend_from_slice(&p2.to_be_bytes());
    v
}

/// Reads until the gateway closes the connection; what it sent.
fn read_to_close(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A signal to this (shared) test process: not the gateway's doing.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "the gateway did not close the connection within {within:?} ({e}); got {} bytes",
                got.len()
            ),
        }
        assert!(
            t0.elapsed() < within,
            "the gateway keeps the connection open"
        );
    }
}

#[test]
fn bad_clients_cost_only_themselves() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    env.shvar(&["set", "t1", "rate", "1000"]).ok();
    env.shvar(&["cmd", "t1", "start"]).ok();
    let gw = start_gateway(&mut env, "ca1", &["--echo-secs", "1"]);
    gw.wait_serving(&env, 2);
    let addr = format!("127.0.0.1:{}", gw.port);

    // Junk: unknown commands are answered with errors; the circuit survives them.
    let mut s = TcpStream::connect(&addr).unwrap();
    let mut junk = Vec::new();
    for i in 0..50u32 {
        junk.extend(header(200 + i as u16, 0, 0, 0, i, i));
    }
    junk.extend(header(23, 0, 0, 0, 0, 0));
    s.write_all(&junk).unwrap();
    // An absurd size (4 GiB, in the extended header) closes it.
    let mut absurd = header(4, 0xFFFF, 6, 0, 1, 1);
    absurd.extend_from_slice(&u32::MAX.to_be_bytes());
    absurd.extend_from_slice(&1u32.to_be_bytes());
    s.write_all(&absurd).unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(10));
    assert!(
        got.len() >= 50 * 16,
        "errors for the junk ({} bytes)",
        got.len()
    );
    assert!(env.get_int("ca1", "errors") >= 51);

    // Random bytes from many connections at once.
    let mut conns: Vec<TcpStream> = (0..20u64)
        .map(|i| {
            let mut c = TcpStream::connect(&addr).unwrap();
            let _ = c.write_all(&crate::util::junk(4096, i + 1));
            c
        })
        .collect();

    // Half-open: a client that says nothing is sent an echo, then dropped.
    let mut quiet = TcpStream::connect(&addr).unwrap();
    let got = read_to_close(&mut quiet, Duration::from_secs(10));
    assert_eq!(&got[..2], &[0, 23], "an echo first");

    // A client that subscribes a thousand times to a counter written at 1 kHz and never
    // reads: it is throttled then dropped; it costs bounded memory.
    let mut deaf = TcpStream::connect(&addr).unwrap();
    let mut req = header(0, 0, 0, 13, 0, 0);
    let name = b"t1:ticks\0\0\0\0\0\0\0\0";
    req.extend(header(18, 16, 0, 0, 1, 13));
    req.extend_from_slice(name);
    deaf.write_all(&req).unwrap();
    let mut sid = [0u8; 64];
    deaf.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut n = 0;
    while n < 48 {
        n += deaf.read(&mut sid[n..]).unwrap();
    }
    // VERSION, ACCESS_RIGHTS, CREATE_CHAN: the sid is the last word of the third.
    let sid = u32::from_be_bytes(sid[44..48].try_into().unwrap());
    let mut subs = Vec::new();
    for id in 0..1000u32 {
        subs.extend(header(1, 16, 34, 1, sid, id));
        subs.extend_from_slice(&[0u8; 12]);
        subs.extend_from_slice(&[0, 1, 0, 0]);
    }
    deaf.write_all(&subs).unwrap();
    env.wait_until("the thousand subscriptions", || {
        env.get_int("ca1", "monitors") >= 1000
    });

    // A search flood from one socket.
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut d = header(0, 0, 0, 13, 0, 0);
    for i in 0..60u32 {
        d.extend(header(6, 16, 5, 13, i, i));
        d.extend_from_slice(b"t1:nosuchvar\0\0\0\0");
    }
    for _ in 0..1000 {
        let _ = flood.send_to(&d, ("127.0.0.1", gw.port));
    }

    // Meanwhile a good client is served, and monitors flow to it.
    let r = pyget(&gw, &env, &["t1:rate,5"]);
    assert_eq!(r["t1:rate,5"]["value"], 1000);
    let o = gw.caproto(&env, "caproto-monitor", &["--maximum", "20", "t1:ticks"]);
    o.ok();
    assert_eq!(o.stdout.lines().count(), 20, "{o:?}");

    env.wait_until("the deaf client to be dropped", || {
        env.get_int("ca1", "monitors") < 1000
    });
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", env.get_int("ca1", "pid"))).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(rss_kb < 64 * 1024, "the gateway holds {rss_kb} KiB");
    assert!(env.get_int("ca1", "dropped") >= 2);
    assert!(env.get_int("ca1", "searches") > 0);
    conns.clear();
    drop(deaf);
}
