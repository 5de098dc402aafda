//! Cross-process tests of the circular buffer: producers and readers in separate processes,
//! killed at the worst moments, and files damaged on disk.
//!
//! Child processes are this test binary run again with `CIRC_CHILD_ROLE` set: the test
//! `child_process_entry` then plays that role (and does nothing in a normal run).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use shvars::circ::{
    CircOptions, CircWriter, CreateError, LosslessReader, OpenError, ReadError, SamplingReader,
    StartAt, TryReadError,
};
use shvars::RuntimeDir;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Payload of event `evnr`: an xorshift stream seeded by the event number.
fn fill(evnr: u64, buf: &mut [u8]) {
    let mut x = evnr.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn verify(evnr: u64, got: &[u8]) -> bool {
    let mut want = vec![0u8; got.len()];
    fill(evnr, &mut want);
    want == got
}

/// Pseudo-random size in 1..=max for event `evnr`.
fn size_for(evnr: u64, max: usize) -> usize {
    let mut x = evnr ^ 0x5555_5555_5555_5555;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % max as u64) as usize + 1
}

fn write_ev<S: shvars::circ::Storage>(w: &mut CircWriter<S>, evnr: u64, len: usize) {
    let mut r = w.reserve(evnr, len).unwrap();
    fill(evnr, r.buf());
    r.commit();
}

/// A child process playing `role` on `path`; killed when dropped.
struct ChildProc {
    child: Child,
    lines: BufReader<ChildStdout>,
}

impl ChildProc {
    fn spawn(role: &str, path: &Path, extra: &str) -> ChildProc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CIRC_CHILD_ROLE", role)
            .env("CIRC_CHILD_PATH", path)
            .env("CIRC_CHILD_ARG", extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        ChildProc { child, lines }
    }

    /// Waits for a line containing `prefix` and returns what follows it.
    fn expect(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.lines.read_line(&mut line).unwrap();
            assert!(n > 0, "child ended before saying {prefix:?}");
            // libtest may have printed "test child_process_entry ... " before our line
            if let Some(i) = line.find(prefix) {
                return line[i + prefix.len()..].trim_end().to_owned();
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_success(mut self) {
        let st = self.child.wait().unwrap();
        assert!(st.success(), "child failed: {st}");
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Runs `f` on a thread and fails if it does not finish within `limit` (a hang guard, far
/// above the time the operation needs).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("operation hung")
}

fn events() -> u64 {
    if cfg!(debug_assertions) {
        1_000_000
    } else {
        3_000_000
    }
}

// ---------------------------------------------------------------------------------------------
// The child side

/// Entry point of child processes (see the file's doc). Does nothing in a normal test run.
#[test]
fn child_process_entry() {
    let role = env("CIRC_CHILD_ROLE");
    if role.is_empty() {
        return;
    }
    let path = PathBuf::from(env("CIRC_CHILD_PATH"));
    let arg = env("CIRC_CHILD_ARG");
    match role.as_str() {
        // Produce 100 events, reserve the 101st, half fill it and die without committing.
        "abort_mid_write" => {
            let mut w = CircWriter::create(&path, 1 << 16).unwrap();
            for n in 1..=100 {
                write_ev(&mut w, n, 500);
            }
            let mut r = w.reserve(101, 1000).unwrap();
            r.buf()[..500].fill(0xEE);
            println!("RESERVED");
            std::process::abort();
        }
        // Produce one event and stay alive until killed.
        "live_producer" => {
            let mut w = CircWriter::create(&path, 1 << 16).unwrap();
            write_ev(&mut w, 1, 10);
            println!("PRODUCING");
            std::thread::sleep(Duration::from_secs(600));
        }
        // Register as a lossless reader, then stay alive (without reading) until killed.
        "lossless_then_hang" => {
            let _r = LosslessReader::open(&path).unwrap();
            println!("REGISTERED");
            std::thread::sleep(Duration::from_secs(600));
        }
        // Read every event until the producer closes, verifying each byte.
        "reader" => {
            let lossless = arg == "lossless";
            let mut buf = vec![0u8; 1 << 16];
            let (mut read, mut bad, mut order) = (0u64, 0u64, 0u64);
            let mut last = 0;
            let mut check = |evnr: u64, ok: bool| {
                read += 1;
                if !ok {
                    bad += 1;
                }
                if evnr <= last || (lossless && evnr != last + 1) {
                    order += 1;
                }
                last = evnr;
            };
            let stats = if lossless {
                let mut r = LosslessReader::open(&path).unwrap();
                println!("READY");
                loop {
                    match r.read(&mut buf) {
                        Ok(ev) => check(ev.evnr, verify(ev.evnr, &buf[..ev.len])),
                        Err(ReadError::ProducerGone(_)) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                r.stats()
            } else {
                let mut r = SamplingReader::open_with(&path, StartAt::Oldest).unwrap();
                println!("READY");
                // Alternate copies and in-place reads.
                let mut flip = false;
                loop {
                    flip = !flip;
                    if flip {
                        match r.read(&mut buf) {
                            Ok(ev) => check(ev.evnr, verify(ev.evnr, &buf[..ev.len])),
                            Err(ReadError::ProducerGone(_)) => break,
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        match r.peek() {
                            Ok(ev) => {
                                let (n, ok) = (ev.evnr(), verify(ev.evnr(), ev.bytes()));
                                if ev.finish().is_ok() {
                                    check(n, ok);
                                }
                            }
                            Err(ReadError::ProducerGone(_)) => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                r.stats()
            };
            println!(
                "RESULT read={read} bad={bad} order={order} last={last} lost={}",
                stats.events_lost
            );
        }
        other => panic!("unknown child role {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} missing in {line}"))
        .parse()
        .unwrap()
}

#[test]
fn millions_of_events_across_processes_sampling_and_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("B_1_1");
    let mut w = CircWriter::create(&path, 1 << 20).unwrap();
    let mut lossless = ChildProc::spawn("reader", &path, "lossless");
    let mut sampling = ChildProc::spawn("reader", &path, "sampling");
    lossless.expect("READY");
    sampling.expect("READY");
    let total = events();
    for n in 1..=total {
        write_ev(&mut w, n, size_for(n, 300));
    }
    let stats = w.stats();
    drop(w);
    let l = lossless.expect("RESULT ");
    let s = sampling.expect("RESULT ");
    assert_eq!(field(&l, "read"), total, "lossless: {l}");
    assert_eq!(field(&l, "lost"), 0, "lossless: {l}");
    assert_eq!(field(&l, "bad"), 0, "lossless: {l}");
    assert_eq!(field(&l, "order"), 0, "lossless: {l}");
    assert_eq!(field(&s, "bad"), 0, "sampling: {s}");
    assert_eq!(field(&s, "order"), 0, "sampling: {s}");
    assert_eq!(field(&s, "last"), total, "sampling: {s}");
    assert!(
        field(&s, "read") + field(&s, "lost") <= total,
        "sampling: {s}"
    );
    assert!(field(&s, "read") > 0, "sampling: {s}");
    assert_eq!(stats.events_written, total);
    assert_eq!(stats.readers_evicted, 0);
    lossless.wait_success();
    sampling.wait_success();
    assert!(!path.exists(), "a closed buffer removes its file");
}

#[test]
fn producer_killed_mid_write_leaves_no_corrupt_event_and_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("B_1_1");
    let mut child = ChildProc::spawn("abort_mid_write", &path, "");
    child.expect("RESERVED");
    let dead_pid = child.pid();
    let _ = child.child.wait();
    let mut r = SamplingReader::open_with(&path, StartAt::Oldest).unwrap();
    let mut buf = vec![0u8; 2000];
    let mut n = 0;
    loop {
        match r.try_read(&mut buf) {
            Ok(ev) => {
                n += 1;
                assert_eq!(ev.evnr, n);
                assert!(verify(ev.evnr, &buf[..ev.len]));
            }
            Err(TryReadError::ProducerGone(g)) => {
                assert_eq!(g.pid, dead_pid);
                assert!(!g.closed && !g.recreated, "{g}");
                assert!(g.to_string().contains("died"), "{g}");
                break;
            }
            Err(TryReadError::Empty) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(n, 100, "the uncommitted event 101 is never seen");
    // A restarted producer takes the stale buffer over.
    let mut w = CircWriter::create(&path, 1 << 16).unwrap();
    assert_eq!(w.stats().producer_pid, std::process::id());
    write_ev(&mut w, 1, 10);
    // The old reader is told; reopening follows the new producer.
    match r.try_read(&mut buf) {
        Err(TryReadError::ProducerGone(g)) => assert!(g.recreated, "{g}"),
        other => panic!("{other:?}"),
    }
    r.reopen().unwrap();
    assert_eq!(r.header().producer_pid(), std::process::id());
    r.refresh();
    let ev = r.read_timeout(&mut buf, Duration::from_secs(5)).unwrap();
    assert_eq!(ev.evnr, 1);
    assert!(verify(1, &buf[..ev.len]));
}

#[test]
fn a_live_producer_is_refused_with_its_pid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("B_1_1");
    let mut child = ChildProc::spawn("live_producer", &path, "");
    child.expect("PRODUCING");
    let e = CircWriter::create(&path, 1 << 16).unwrap_err();
    match &e {
        CreateError::AlreadyProduced { pid, .. } => assert_eq!(*pid, child.pid()),
        other => panic!("{other}"),
    }
    assert!(
        e.to_string()
            .contains(&format!("is already produced by pid {}", child.pid())),
        "{e}"
    );
    // its event is readable meanwhile
    let mut r = SamplingReader::open(&path).unwrap();
    assert_eq!(r.try_read(&mut [0u8; 64]).unwrap().evnr, 1);
    child.kill();
    // once it is dead the name can be produced again
    let _w = CircWriter::create(&path, 1 << 16).unwrap();
}

#[test]
fn killed_lossless_reader_is_evicted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("B");
    // A timeout far longer than the hang guard below: only the liveness check can evict in time.
    let opts = CircOptions::new(1 << 14).lossless_timeout(Duration::from_secs(120));
    let mut w = CircWriter::create_with(&path, &opts).unwrap();
    let mut child = ChildProc::spawn("lossless_then_hang", &path, "");
    child.expect("REGISTERED");
    assert_eq!(w.stats().lossless_readers, 1);
    child.kill();
    let stats = within(Duration::from_secs(60), move || {
        for n in 1..=1000 {
            write_ev(&mut w, n, 200); // 12x the capacity: the dead reader blocks at once
        }
        w.stats()
    });
    assert_eq!(stats.readers_evicted, 1);
    assert_eq!(stats.lossless_readers, 0);
    assert_eq!(stats.events_written, 1000);
}

#[test]
fn live_stuck_lossless_reader_in_another_process_is_evicted_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("B");
    let opts = CircOptions::new(1 << 14).lossless_timeout(Duration::from_millis(100));
    let mut w = CircWriter::create_with(&path, &opts).unwrap();
    let mut child = ChildProc::spawn("lossless_then_hang", &path, "");
    child.expect("REGISTERED");
    let stats = within(Duration::from_secs(60), move || {
        for n in 1..=1000 {
            write_ev(&mut w, n, 200);
        }
        w.stats()
    });
    assert_eq!(stats.readers_evicted, 1);
    child.kill();
}

#[test]
fn truncated_files_give_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("B");
    let opts = CircOptions::new(1 << 14).remove_on_drop(false);
    let mut w = CircWriter::create_with(&path, &opts).unwrap();
    write_ev(&mut w, 1, 100);
    drop(w);
    let full = std::fs::read(&path).unwrap();
    for len in [100usize, 4095, 4096, full.len() - 1] {
        let p = dir.path().join(format!("cut{len}"));
        std::fs::write(&p, &full[..len]).unwrap();
        let e = SamplingReader::open(&p).unwrap_err();
        match &e {
            OpenError::Truncated { len: l, .. } => assert_eq!(*l, len as u64),
            other => panic!("{len}: {other}"),
        }
        assert!(e.to_string().contains("is truncated"), "{e}");
        assert!(LosslessReader::open(&p).is_err());
    }
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        SamplingReader::open(&empty),
        Err(OpenError::NotACircBuffer { .. })
    ));
    let e = SamplingReader::open(&dir.path().join("nothing")).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e}");
}

#[test]
fn random_bytes_give_a_clear_error_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CircOptions::new(1 << 14).remove_on_drop(false);
    let path = dir.path().join("B");
    let mut w = CircWriter::create_with(&path, &opts).unwrap();
    write_ev(&mut w, 1, 100);
    drop(w);
    let good = std::fs::read(&path).unwrap();
    let mut x = 0x0123_4567_89ab_cdefu64;
    let mut junk = |buf: &mut [u8]| {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    };
    // All random: not a buffer.
    let mut bytes = good.clone();
    junk(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        SamplingReader::open(&path),
        Err(OpenError::NotACircBuffer { .. })
    ));
    // Random after the magic: a corrupt header.
    for range in [8..64, 16..24, 40..44] {
        let mut bytes = good.clone();
        junk(&mut bytes[range.clone()]);
        std::fs::write(&path, &bytes).unwrap();
        let e = SamplingReader::open(&path).unwrap_err();
        assert!(
            matches!(
                e,
                OpenError::Corrupt { .. } | OpenError::UnsupportedVersion { .. }
            ),
            "{range:?}: {e}"
        );
    }
    // A newer format version.
    let mut bytes = good.clone();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let e = SamplingReader::open(&path).unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade"), "{e}");
    // Header intact, reader table and ring random: opens, and nothing invalid comes out.
    let mut bytes = good.clone();
    junk(&mut bytes[1024..]);
    std::fs::write(&path, &bytes).unwrap();
    let mut r = SamplingReader::open_with(&path, StartAt::Oldest).unwrap();
    let mut buf = vec![0u8; 1 << 14];
    let mut returned = 0;
    loop {
        match r.try_read(&mut buf) {
            Ok(_) => returned += 1,
            Err(TryReadError::ProducerGone(_)) | Err(TryReadError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(returned, 0, "junk is never an event");
    assert!(r.stats().corrupt_records >= 1);
    // Junk in the reader table does not stop a lossless reader from registering (the slots'
    // locks are free, so their junk owners count as dead).
    let _l = LosslessReader::open(&path).unwrap();
}

#[test]
fn named_buffers_live_in_the_runtime_directory() {
    let dir = tempfile::tempdir().unwrap();
    let rt = RuntimeDir::at(dir.path().join("rt"));
    let mut w = CircWriter::create_named(&rt, "B_1_1", 4096).unwrap();
    assert_eq!(w.path(), rt.path().join("B_1_1"));
    write_ev(&mut w, 3, 33);
    let mut r = SamplingReader::open_named(&rt, "B_1_1").unwrap();
    let mut buf = [0u8; 64];
    let ev = r.try_read(&mut buf).unwrap();
    assert_eq!((ev.evnr, ev.len), (3, 33));
    assert!(matches!(
        CircWriter::create_named(&rt, "../x", 4096),
        Err(CreateError::Name(_))
    ));
    assert!(matches!(
        SamplingReader::open_named(&rt, "a/b"),
        Err(OpenError::Name(_))
    ));
    drop(w);
    assert!(!rt.path().join("B_1_1").exists());
    // nothing left behind but the directory
    assert_eq!(std::fs::read_dir(rt.path()).unwrap().count(), 0);
}
