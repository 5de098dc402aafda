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
    let size = DIRECT_SEND;
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
    let size = DIRECT_SEND;
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
/// reaches the local buffer is byte-exact and in order. (rspydaemon reads fast, so an event
/// overwritten in flight is rare here; the test above forces it.)
#[test]
fn rspy_from_a_lapped_farm_buffer_commits_only_valid_events() {
    let mut env = Env::new();
    let size = DIRECT_SEND;
    let _p = Producer::start(
        env.path("B_1_1"),
        (size as u64 + 64) * 8,
        size,
        Duration::ZERO,
    );
    let port = start_farm(&mut env, "farm1", "B_1_1");
    crate::spy::start_spy_to(
        &mut env,
        "spy1",
        "L_1",
        port,
        &["set circsize 16000000", "set maxage_ms 0", "init"],
    );
    // The second `init` re-creates the local buffer at the new size: open it only once every
    // `-c` command ran (`start` makes it RUNNING), not between the two inits.
    env.wait_until("spy1 to run its start-up commands", || {
        env.get("spy1", "runstate") == "RUNNING_STATE"
    });
    let mut r =
        shvars::circ::SamplingReader::open_with(&env.path("L_1"), shvars::circ::StartAt::Oldest)
            .unwrap();
    crate::spy::read_events(&env, &mut r, 20, size, 0);
}

/// A streamed packet from a fake farm: `records` (event number, bytes, verdict) and an end
/// record that counts `count` records and `skipped`.
fn streamed(records: &[(u64, &[u8], u32)], count: u32, skipped: u64) -> Vec<u8> {
    use daqproc::daemons::spy::proto::{end_record, event_header, PacketHeader};
    let mut b = PacketHeader {
        version: 2,
        status: Status::Stream,
        nevents: 0,
        payload_len: 0,
        skipped: 0,
        last_evnr: 0,
        buffer_id: 7,
    }
    .encode()
    .to_vec();
    let mut last = 0;
    for &(evnr, body, verdict) in records {
        b.extend_from_slice(&event_header(evnr, body.len() as u32));
        b.extend_from_slice(body);
        b.extend_from_slice(&verdict.to_le_bytes());
        if verdict == 0 {
            last = evnr;
        }
    }
    b.extend_from_slice(&end_record(last, count, skipped));
    b
}

/// Events (number, bytes) handed out, and the skipped count.
type Taken = (Vec<(u64, Vec<u8>)>, u64);

/// What a client makes of `packet` sent by a fake farm in answer to its first request.
fn receive_from_fake(packet: Vec<u8>) -> Result<Taken, daqproc::daemons::spy::client::SpyError> {
    use daqproc::daemons::spy::client::Received;
    use std::io::{Read, Write};
    let port = crate::spy::fake_farm(move |mut s| {
        let mut req = [0u8; 32];
        if s.read_exact(&mut req).is_ok() {
            let _ = s.write_all(&packet);
        }
        // Keep the connection until the client is done.
        let _ = s.read(&mut req);
    });
    let mut c = SpyClient::connect("127.0.0.1", port, Duration::from_secs(5))?;
    c.ask(Mode::Next, 0, 0, 0)?;
    match c.receive(Duration::from_secs(10))? {
        Received::Packet(h) => {
            let evs = c
                .events()
                .map(|e| e.map(|(n, b)| (n, b.to_vec())))
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            assert_eq!(h.nevents as usize, evs.len());
            Ok((evs, h.skipped))
        }
        other => panic!("{other:?}"),
    }
}

/// The client side of the verdicts: an overwritten event is never handed out and counts as
/// skipped; a verdict that is neither 0 nor 1, or an end record that miscounts, is a protocol
/// error, not events.
#[test]
fn the_client_keeps_only_events_with_a_valid_verdict() {
    let (evs, skipped) = receive_from_fake(streamed(
        &[(5, b"good", 0), (6, b"torn", 1), (7, b"fine", 0)],
        3,
        2,
    ))
    .unwrap();
    assert_eq!(evs, [(5, b"good".to_vec()), (7, b"fine".to_vec())]);
    assert_eq!(skipped, 3, "2 skipped by the farm, 1 overwritten in flight");

    let e = receive_from_fake(streamed(&[(5, b"good", 7)], 1, 0)).unwrap_err();
    assert!(e.to_string().contains("unknown verdict 7"), "{e}");
    let e = receive_from_fake(streamed(&[(5, b"good", 0)], 2, 0)).unwrap_err();
    assert!(
        e.to_string()
            .contains("end record counts 2 events, 1 were sent"),
        "{e}"
    );
}
