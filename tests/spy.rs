//! The spy daemons end to end: a producer writes a farm buffer, farmspydaemon serves it,
//! rspydaemon fills a local buffer, readers check every event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shvars::circ::{CircWriter, SamplingReader, StartAt, TryReadError};

use crate::util::Env;

/// Payload of event `evnr` with `len` bytes: recognisable and checkable.
pub fn payload(evnr: u64, len: usize) -> Vec<u8> {
    let mut x = evnr.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            if i < 8 {
                evnr.to_le_bytes()[i]
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

/// A producer thread writing events of `size` bytes every `period` into a farm buffer.
pub struct Producer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Producer {
    pub fn start(path: std::path::PathBuf, cap: u64, size: usize, period: Duration) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let mut w = CircWriter::create(&path, cap).expect("farm buffer");
        let handle = std::thread::spawn(move || {
            let mut evnr = 0;
            while !s.load(Ordering::Relaxed) {
                evnr += 1;
                w.write(evnr, &payload(evnr, size)).unwrap();
                std::thread::sleep(period);
            }
            evnr
        });
        Producer {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn start_farm(env: &mut Env, name: &str, buffer: &str) -> u16 {
    let mut c = env.command("farmspydaemon");
    c.args([
        "-n",
        name,
        "-c",
        &format!("init {buffer}"),
        "-c",
        "set port 0",
        "-c",
        "start",
    ]);
    let pid = env.spawn(name, c);
    env.wait_ready(name, pid);
    env.wait_until("the farm to listen", || {
        env.get(name, "runstate") == "RUNNING_STATE"
    });
    env.get_int(name, "port") as u16
}

#[test]
fn events_flow_end_to_end() {
    let mut env = Env::new();
    let _p = Producer::start(env.path("B_1_1"), 1 << 22, 1000, Duration::from_micros(500));
    let port = start_farm(&mut env, "farm1", "B_1_1");
    let mut c = env.command("rspydaemon");
    c.args([
        "-n",
        "spy1",
        "-c",
        "init L_1",
        "-c",
        &format!("start 127.0.0.1 {port}"),
    ]);
    let pid = env.spawn("spy1", c);
    env.wait_ready("spy1", pid);
    env.wait_until("rspydaemon to connect", || {
        env.get_int("spy1", "no_conn") == 0
    });
    let mut r = SamplingReader::open_with(&env.path("L_1"), StartAt::Oldest).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    let mut last = 0;
    let t0 = Instant::now();
    while got < 200 && t0.elapsed() < Duration::from_secs(20) {
        match r.try_read(&mut buf) {
            Ok(ev) => {
                assert!(ev.evnr > last, "{} after {last}", ev.evnr);
                assert_eq!(
                    &buf[..ev.len],
                    &payload(ev.evnr, 1000)[..],
                    "event {}",
                    ev.evnr
                );
                last = ev.evnr;
                got += 1;
            }
            Err(TryReadError::Empty) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, 200, "{}", env.stderr_of("spy1"));
    assert!(env.get_int("spy1", "lastevent") > 0);
}
