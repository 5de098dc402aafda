//! The farm's one-copy path (protocol version 2, issue 19): large events go from the farm
//! buffer's mapping to the socket, and are checked only after the kernel took them. An event
//! overwritten meanwhile must reach the client marked as such, never as a good event.

use std::time::{Duration, Instant};

use daqproc::daemons::spy::client::SpyClient;
use daqproc::daemons::spy::proto::{Mode, Request, Status, VERSION};
use daqproc::daemons::spy::serve::DIRECT_SEND;

use crate::spy::{payload, start_farm, Producer};
use crate::util::Env;

/// A tiny farm buffer (four events), a producer writing as fast as it can, and a client that
/// reads slowly, so that the farm's writes block with an event half sent while the producer
/// laps the buffer: many events are overwritten while the kernel copies them. Every event the
/// client is handed as valid must be byte-exact; the overwritten ones must come with the verdict
/// that says so (and be counted lost).
#[test]
fn events_overwritten_while_sent_are_never_delivered_corrupt() {
    let mut env = Env::new();
    let size = DIRECT_SEND * 2;
    let _p = Producer::start(
        env.path("B_1_1"),
        (size as u64 + 64) * 8,
        size,
        Duration::ZERO,
    );
    let port = start_farm(&mut env, "farm1", "B_1_1");
    let mut c = SpyClient::connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
    c.request(&Request {
        version: VERSION,
        mode: Mode::Push,
        // Short packets: each must be read within the client's 5 s, slow as it reads.
        max_events: 4,
        max_bytes: 0,
        last_evnr: 0,
        buffer_id: 0,
        maxage_ms: 0,
    })
    .unwrap();
    let (mut good, mut abandoned, mut skipped, mut last) = (0u64, 0u64, 0u64, 0u64);
    let mut body = vec![0u8; size];
    let t0 = Instant::now();
    while abandoned < 3 || good < 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "in 60 s: {good} good events, {abandoned} overwritten in flight"
        );
        let Some(h) = c.receive_header(Duration::from_secs(5)).unwrap() else {
            continue;
        };
        assert_eq!(
            h.status,
            Status::Stream,
            "a version-2 client gets streamed packets"
        );
        while let Some((evnr, len)) = c.next_event().unwrap() {
            assert_eq!(len, size);
            assert!(evnr > last, "event {evnr} after {last}");
            let valid = c.read_body(&mut body).unwrap();
            if valid {
                assert!(
                    body == payload(evnr, size),
                    "event {evnr} was handed out as valid with bytes that are not the producer's"
                );
                good += 1;
                last = evnr;
            }
            // Read slowly: once the socket buffers are full, the farm's writes wait for room
            // in the middle of an event while the producer laps the buffer.
            std::thread::sleep(Duration::from_millis(1));
        }
        let end = c.packet_end();
        abandoned += end.abandoned;
        skipped += end.skipped;
    }
    eprintln!(
        "{good} good, {abandoned} overwritten in flight, {skipped} skipped in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        skipped >= abandoned,
        "the {abandoned} events overwritten in flight are counted in skipped ({skipped})"
    );
}

/// A version-1 client (as before the one-copy path) still gets version-1 packets, with every
/// event checked before it is sent.
#[test]
fn a_version_1_client_still_gets_version_1_packets() {
    let mut env = Env::new();
    let size = DIRECT_SEND * 2;
    let _p = Producer::start(env.path("B_1_1"), 4 << 20, size, Duration::from_millis(1));
    let port = start_farm(&mut env, "farm1", "B_1_1");
    let mut c = SpyClient::connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
    let req = Request {
        version: 1,
        mode: Mode::Next,
        max_events: 4,
        max_bytes: 0,
        last_evnr: 0,
        buffer_id: 0,
        maxage_ms: 0,
    };
    let mut got = 0;
    while got < 10 {
        c.request(&req).unwrap();
        let Some(h) = c.receive_header(Duration::from_secs(5)).unwrap() else {
            panic!("no answer in 5 s");
        };
        assert_eq!(h.version, 1);
        assert!(matches!(h.status, Status::Ok | Status::NoData));
        let mut body = vec![0u8; size];
        while let Some((evnr, len)) = c.next_event().unwrap() {
            assert_eq!(len, size);
            assert!(c.read_body(&mut body).unwrap());
            assert!(body == payload(evnr, size), "event {evnr} corrupt");
            got += 1;
        }
    }
}

/// The same through rspydaemon: from a tiny farm buffer lapped all the time, every event that
/// reaches the local buffer is byte-exact and in order, and the losses are counted.
#[test]
fn rspy_from_a_lapped_farm_buffer_commits_only_valid_events() {
    let mut env = Env::new();
    let size = DIRECT_SEND * 2;
    let _p = Producer::start(
        env.path("B_1_1"),
        (size as u64 + 64) * 8,
        size,
        Duration::ZERO,
    );
    let port = start_farm(&mut env, "farm1", "B_1_1");
    // A small socket buffer at the farm: its writes wait for room in the middle of an event.
    env.shvar(&["set", "farm1", "sndbuf", "4096"]).ok();
    crate::spy::start_spy(
        &mut env,
        "spy1",
        "L_1",
        &[
            "-c",
            "set circsize 4000000",
            "-c",
            "set maxage_ms 0",
            "-c",
            "init",
            "-c",
            &format!("start 127.0.0.1 {port}"),
        ],
    );
    let mut r =
        shvars::circ::SamplingReader::open_with(&env.path("L_1"), shvars::circ::StartAt::Oldest)
            .unwrap();
    crate::spy::read_events(&env, &mut r, 100, size, 0);
    env.wait_until("losses counted", || env.get_int("spy1", "lost") > 0);
}
