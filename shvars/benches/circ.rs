//! Throughput of the circular buffer: one writer thread and one reader thread on a file-backed
//! ring (in /dev/shm when there is one, as in production), against two references measured in
//! the same run:
//! - `memcpy_in`: one thread copying the same events into a ring-sized buffer (one streaming
//!   copy, no synchronisation: the producer side's bandwidth bound), and `memcpy_through`: the
//!   same plus copying each chunk back out (the data movement of producer + consumer, on one
//!   thread);
//! - `bcast` 0.0.31, a shared-memory SPMC broadcast ring, with the same event and ring sizes,
//!   its reader copying each message out like ours.
//!
//! After criterion's own report, a summary prints the median throughput of every case (the
//! producer's rate; `received` is the share of events the reader got: a sampling reader skips
//! when overtaken, ours to the oldest valid event, bcast's `reset` to the newest) and the ratios
//! the issue asks about. Run: `cargo bench -p shvars --bench circ` (criterion options
//! such as a filter work as usual).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use memmap2::MmapRaw;
use shvars::circ::{CircOptions, CircWriter, LosslessReader, ReadError, SamplingReader, StartAt};

const MIB: usize = 1 << 20;
/// Criterion's samples per case; the summary uses only these last ones (criterion's warm-up
/// calls go through the same recording, with much shorter and noisier runs).
const SAMPLE_SIZE: usize = 20;

/// Per case: event size, nanoseconds per event of every sample, and the fraction of the events
/// the reader received (sampling readers skip when overtaken).
type Samples = BTreeMap<String, (usize, Vec<f64>, Vec<f64>)>;
static SAMPLES: Mutex<Samples> = Mutex::new(BTreeMap::new());

fn record(name: &str, event: usize, iters: u64, (d, received): (Duration, u64)) -> Duration {
    let mut s = SAMPLES.lock().unwrap();
    let e = s
        .entry(name.to_owned())
        .or_insert((event, Vec::new(), Vec::new()));
    e.1.push(d.as_nanos() as f64 / iters.max(1) as f64);
    e.2.push(received as f64 / iters.max(1) as f64);
    d
}

fn scratch_dir() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        if let Ok(d) = tempfile::tempdir_in("/dev/shm") {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// The payload: a fixed pattern whose first 8 bytes carry the event's sequence number.
fn payload(event: usize) -> Vec<u8> {
    (0..event).map(|i| (i * 7) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// memcpy references

fn memcpy_in(ring: &mut [u8], src: &[u8], iters: u64, pos: &mut usize) -> (Duration, u64) {
    let t = Instant::now();
    for i in 0..iters {
        if *pos + src.len() > ring.len() {
            *pos = 0;
        }
        let dst = &mut ring[*pos..*pos + src.len()];
        dst.copy_from_slice(src);
        dst[..8].copy_from_slice(&i.to_le_bytes());
        *pos += src.len();
    }
    std::hint::black_box(&ring);
    (t.elapsed(), iters)
}

fn memcpy_through(
    ring: &mut [u8],
    src: &[u8],
    out: &mut [u8],
    iters: u64,
    pos: &mut usize,
) -> (Duration, u64) {
    let t = Instant::now();
    for i in 0..iters {
        if *pos + src.len() > ring.len() {
            *pos = 0;
        }
        let slot = &mut ring[*pos..*pos + src.len()];
        slot.copy_from_slice(src);
        slot[..8].copy_from_slice(&i.to_le_bytes());
        out.copy_from_slice(slot);
        std::hint::black_box(&out);
        *pos += src.len();
    }
    (t.elapsed(), iters)
}

// ---------------------------------------------------------------------------------------------
// ours

struct Ours {
    _dir: tempfile::TempDir,
    w: CircWriter,
    sampling: SamplingReader,
    lossless: Option<LosslessReader>,
    evnr: u64,
}

impl Ours {
    fn new(ring: usize, lossless: bool) -> Ours {
        let dir = scratch_dir();
        let path = dir.path().join("bench");
        let w = CircWriter::create_with(
            &path,
            &CircOptions::new(ring as u64).lossless_timeout(Duration::from_secs(30)),
        )
        .unwrap();
        let sampling = SamplingReader::open_with(&path, StartAt::Next).unwrap();
        let lossless = lossless.then(|| LosslessReader::open_with(&path, StartAt::Next).unwrap());
        Ours {
            _dir: dir,
            w,
            sampling,
            lossless,
            evnr: 0,
        }
    }

    /// Writes `iters` events on this thread while a second thread reads them; returns the time
    /// until both are done.
    fn run(&mut self, src: &[u8], iters: u64) -> (Duration, u64) {
        let first = self.evnr + 1;
        let last = self.evnr + iters;
        self.evnr = last;
        let start = Barrier::new(2);
        let w = &mut self.w;
        let sampling = &mut self.sampling;
        let lossless = &mut self.lossless;
        let len = src.len();
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut buf = vec![0u8; len];
                let mut got = 0;
                start.wait();
                match lossless {
                    Some(r) => {
                        for n in first..=last {
                            let ev = r.read(&mut buf).unwrap();
                            debug_assert_eq!(ev.evnr, n);
                            got += 1;
                        }
                    }
                    None => loop {
                        match sampling.read(&mut buf) {
                            Ok(ev) => {
                                got += 1;
                                if ev.evnr >= last {
                                    break;
                                }
                            }
                            Err(ReadError::TooSmall(_)) => unreachable!(),
                            Err(e) => panic!("{e}"),
                        }
                    },
                }
                std::hint::black_box(&buf);
                got
            });
            start.wait();
            let t = Instant::now();
            for n in first..=last {
                let mut r = w.reserve(n, len).unwrap();
                let b = r.buf();
                b.copy_from_slice(src);
                b[..8].copy_from_slice(&n.to_le_bytes());
                r.commit();
            }
            let got = reader.join().unwrap();
            (t.elapsed(), got)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// bcast

struct Bcast {
    _dir: tempfile::TempDir,
    map: MmapRaw,
    seq: u64,
}

impl Bcast {
    fn new(ring: usize) -> Bcast {
        let dir = scratch_dir();
        let path = dir.path().join("bcast");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        f.set_len((bcast::HEADER_SIZE + ring) as u64).unwrap();
        let map = MmapRaw::map_raw(&f).unwrap();
        // Initialise (marks the ring ready); later samples join the writer at its position.
        let _w = bcast::RingBuffer::new(Self::bytes_of(&map)).into_writer();
        Bcast {
            _dir: dir,
            map,
            seq: 0,
        }
    }

    fn bytes_of(map: &MmapRaw) -> &'static [u8] {
        // SAFETY: the mapping lives as long as the Bcast value, which outlives every use of the
        // slice (the bench threads are scoped inside `run`); bcast requires a 'static-free
        // byte slice and accesses it through its own atomics and raw pointers.
        unsafe { std::slice::from_raw_parts(map.as_ptr(), map.len()) }
    }

    fn run(&mut self, src: &[u8], iters: u64) -> (Duration, u64) {
        let first = self.seq + 1;
        let last = self.seq + iters;
        self.seq = last;
        let bytes = Self::bytes_of(&self.map);
        let ready = Barrier::new(2);
        let done = AtomicBool::new(false);
        let len = src.len();
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let rx = bcast::RingBuffer::new(bytes).into_reader();
                let mut buf = vec![0u8; len];
                let mut got = 0;
                ready.wait();
                loop {
                    match rx.receive_next() {
                        Some(Ok(msg)) => match msg.read(&mut buf) {
                            Ok(n) => {
                                got += 1;
                                let v = u64::from_le_bytes(buf[..8].try_into().unwrap());
                                if n == len && v >= last {
                                    break;
                                }
                            }
                            Err(_) => rx.reset(),
                        },
                        Some(Err(_)) => rx.reset(),
                        None => {
                            if done.load(Ordering::Acquire) {
                                // the last message may have been skipped by a reset
                                break;
                            }
                            std::hint::spin_loop();
                        }
                    }
                }
                std::hint::black_box(&buf);
                got
            });
            let w = bcast::RingBuffer::new(bytes).join_writer();
            ready.wait();
            let t = Instant::now();
            for n in first..=last {
                let mut c = w.claim(len, true);
                let b = c.get_buffer_mut();
                b.copy_from_slice(src);
                b[..8].copy_from_slice(&n.to_le_bytes());
                c.commit();
            }
            done.store(true, Ordering::Release);
            let got = reader.join().unwrap();
            (t.elapsed(), got)
        })
    }
}

// ---------------------------------------------------------------------------------------------

fn bench_size(c: &mut Criterion, event: usize, rings: &[usize]) {
    let src = payload(event);
    let mut g = c.benchmark_group(format!("circ_{event}B"));
    g.throughput(if event >= 1024 {
        Throughput::Bytes(event as u64)
    } else {
        Throughput::Elements(1)
    });
    g.sample_size(SAMPLE_SIZE);
    g.warm_up_time(Duration::from_millis(1500));
    g.measurement_time(Duration::from_secs(3));
    for &ring in rings {
        let tag = format!("{}MiB", ring / MIB);
        let name = |what: &str| format!("{event}B/{tag}/{what}");
        {
            let mut buf = vec![0u8; ring];
            let mut pos = 0;
            g.bench_function(BenchmarkId::new("memcpy_in", &tag), |b| {
                b.iter_custom(|n| {
                    record(
                        &name("memcpy_in"),
                        event,
                        n,
                        memcpy_in(&mut buf, &src, n, &mut pos),
                    )
                })
            });
            let mut out = vec![0u8; event];
            g.bench_function(BenchmarkId::new("memcpy_through", &tag), |b| {
                b.iter_custom(|n| {
                    record(
                        &name("memcpy_through"),
                        event,
                        n,
                        memcpy_through(&mut buf, &src, &mut out, n, &mut pos),
                    )
                })
            });
        }
        {
            let mut o = Ours::new(ring, false);
            g.bench_function(BenchmarkId::new("circ_sampling", &tag), |b| {
                b.iter_custom(|n| record(&name("circ_sampling"), event, n, o.run(&src, n)))
            });
        }
        {
            let mut o = Ours::new(ring, true);
            g.bench_function(BenchmarkId::new("circ_lossless", &tag), |b| {
                b.iter_custom(|n| record(&name("circ_lossless"), event, n, o.run(&src, n)))
            });
        }
        {
            let mut bc = Bcast::new(ring);
            g.bench_function(BenchmarkId::new("bcast", &tag), |b| {
                b.iter_custom(|n| record(&name("bcast"), event, n, bc.run(&src, n)))
            });
        }
    }
    g.finish();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn summary() {
    let mut s = SAMPLES.lock().unwrap();
    if s.is_empty() {
        return;
    }
    let mut med: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    println!(
        "\n== circ summary (medians over criterion's measured samples, warm-up excluded; writer + reader threads)"
    );
    println!(
        "{:<32} {:>10} {:>8} {:>10} {:>9}",
        "case", "ns/event", "GB/s", "Mevents/s", "received"
    );
    for (name, (event, v, recv)) in s.iter_mut() {
        let measured = v.len().saturating_sub(SAMPLE_SIZE);
        let ns = median(&mut v[measured..]);
        let recv_measured = recv.len().saturating_sub(SAMPLE_SIZE);
        med.insert(name.clone(), (*event, ns));
        println!(
            "{:<32} {:>10.1} {:>8.2} {:>10.2} {:>8.1}%",
            name,
            ns,
            *event as f64 / ns,
            1e3 / ns,
            100.0 * median(&mut recv[recv_measured..])
        );
    }
    println!("\n== ratios (throughput of ours / reference; >1 means ours is faster)");
    let groups: std::collections::BTreeSet<String> = med
        .keys()
        .filter_map(|k| k.rsplit_once('/').map(|(g, _)| g.to_owned()))
        .collect();
    for g in groups {
        let get = |what: &str| med.get(&format!("{g}/{what}")).map(|x| x.1);
        for ours in ["circ_sampling", "circ_lossless"] {
            let Some(o) = get(ours) else { continue };
            let mut line = format!("{g:<14} {ours:<14}");
            for refname in ["memcpy_in", "memcpy_through", "bcast"] {
                if let Some(r) = get(refname) {
                    line += &format!("  vs {refname}: {:>5.2}", r / o);
                }
            }
            println!("{line}");
        }
    }
}

fn main() {
    // Reports go to the workspace's target directory, not to a `target/` inside shvars/ (the
    // directory cargo runs benches in).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let mut c = Criterion::default()
        .output_directory(&target.join("criterion"))
        .configure_from_args();
    bench_size(&mut c, 4096, &[8 * MIB, 64 * MIB]);
    bench_size(&mut c, 128, &[8 * MIB]);
    c.final_summary();
    summary();
}
