//! Throughput of the circular buffer: one writer thread and one reader thread on a file-backed
//! ring (in /dev/shm when there is one, as in production), against references measured in the
//! same run:
//! - `memcpy_in`: one thread copying the same events into a ring-sized buffer (one streaming
//!   copy, no synchronisation: the producer side's bandwidth bound), and `memcpy_through`: the
//!   same plus copying each chunk back out (the data movement of producer + consumer, on one
//!   thread);
//! - `bcast` 0.0.31, a shared-memory SPMC broadcast ring, with the same event and ring sizes,
//!   its reader copying each message out like ours;
//! - `circ_write_only` and `bcast_write_only`: the writer alone, nobody reading (the producer's
//!   own cost per event, on one CPU: the least noisy figure of the lot).
//!
//! The cases are measured head to head: in every round each case moves one batch of events, in
//! an order that rotates from round to round, so that a machine whose speed drifts (a shared
//! VM: the latency between its two CPUs was seen to vary from 90 to 480 ns within seconds)
//! weighs on all of them alike. The writer runs on one CPU and every reader on another.
//! Printed: per case the median over the rounds of ns/event, GB/s, M events/s and the share of
//! events the reader received (a sampling reader skips when overtaken, ours to the oldest valid
//! event, bcast's `reset` to the newest); then per comparison the median of the per-round
//! ratios and their quartiles.
//!
//! Run: `cargo bench -p shvars --bench circ [-- ROUNDS] [CONFIG...]`, where CONFIG selects
//! configurations by a part of their tag (`4096B/8MiB`, `64MiB`, `128B`). Environment:
//! `CIRC_CASES=bcast,circ_sampling` runs only the cases named (for profiling one alone; the
//! ratios need both sides), `CIRC_VERBOSE=1` prints every round's time to stderr,
//! `CIRC_SIZES=128x1,128x8` measures other configurations (event bytes `x` ring MiB) instead of
//! the three standard ones (a 1 MiB ring fits in L2: the writer's compute cost alone).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use memmap2::MmapRaw;
use shvars::circ::{CircOptions, CircWriter, LosslessReader, ReadError, SamplingReader, StartAt};

const MIB: usize = 1 << 20;

/// The two CPUs the bench runs on: the writer (and the memcpy references) on the first, every
/// reader on the second, so that runs differ in nothing but the code measured (no migrations,
/// no reader and writer sharing a CPU). `None` on a machine with one CPU.
static CPUS: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();

fn cpus() -> Option<(usize, usize)> {
    *CPUS.get_or_init(|| {
        let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
        let mut it = (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false));
        Some((it.next()?, it.next()?))
    })
}

/// Pins the calling thread to `cpu` (best effort: a bench on a restricted machine still runs).
fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn pin_writer() {
    if let Some((w, _)) = cpus() {
        pin(w);
    }
}

fn pin_reader() {
    if let Some((_, r)) = cpus() {
        pin(r);
    }
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

    /// Writes `iters` events with no reader reading: the producer's own cost.
    fn write_only(&mut self, src: &[u8], iters: u64) -> (Duration, u64) {
        let first = self.evnr + 1;
        self.evnr += iters;
        let t = Instant::now();
        Self::write(&mut self.w, src, first..=self.evnr);
        (t.elapsed(), iters)
    }

    /// The producer's loop: events `evnrs`, each `src` stamped with its number.
    fn write(w: &mut CircWriter, src: &[u8], evnrs: std::ops::RangeInclusive<u64>) {
        for n in evnrs {
            let mut r = w.reserve(n, src.len()).unwrap();
            let b = r.buf();
            b.copy_from_slice(src);
            b[..8].copy_from_slice(&n.to_le_bytes());
            r.commit();
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
                pin_reader();
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
            Self::write(w, src, first..=last);
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

    /// Writes `iters` events with no reader reading: the producer's own cost.
    fn write_only(&mut self, src: &[u8], iters: u64) -> (Duration, u64) {
        let w = bcast::RingBuffer::new(Self::bytes_of(&self.map)).join_writer();
        let first = self.seq + 1;
        self.seq += iters;
        let t = Instant::now();
        Self::write(&w, src, first..=self.seq);
        (t.elapsed(), iters)
    }

    /// The producer's loop, as for ours.
    fn write(w: &bcast::Writer, src: &[u8], evnrs: std::ops::RangeInclusive<u64>) {
        for n in evnrs {
            let mut c = w.claim(src.len(), true);
            let b = c.get_buffer_mut();
            b.copy_from_slice(src);
            b[..8].copy_from_slice(&n.to_le_bytes());
            c.commit();
        }
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
                pin_reader();
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
            Self::write(&w, src, first..=last);
            done.store(true, Ordering::Release);
            let got = reader.join().unwrap();
            (t.elapsed(), got)
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// One case of a configuration: runs `n` events, returns (elapsed, events received).
type Case<'a> = (&'static str, Box<dyn FnMut(u64) -> (Duration, u64) + 'a>);

/// Per case: ns/event and received share of every round.
#[derive(Default)]
struct Series {
    ns: Vec<f64>,
    recv: Vec<f64>,
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let x = q * (v.len() - 1) as f64;
    let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
}

fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// Measures one configuration head to head and prints its lines.
fn head_to_head(event: usize, ring: usize, rounds: usize) {
    let src = payload(event);
    // A batch: 16 ring-fulls of bytes but at least 512 MiB for large events (tens to hundreds
    // of milliseconds), 2 M events for small ones.
    let batch = if event >= 1024 {
        ((16 * ring).max(512 * MIB) / event) as u64
    } else {
        2_000_000
    };
    let mut buf = vec![0u8; ring];
    let mut out = vec![0u8; event];
    let (mut pos_in, mut pos_through) = (0usize, 0usize);
    let mut sampling = Ours::new(ring, false);
    let mut lossless = Ours::new(ring, true);
    let mut bc = Bcast::new(ring);
    let mut ours_alone = Ours::new(ring, false);
    let mut bc_alone = Bcast::new(ring);
    let buf_cell = std::cell::RefCell::new(&mut buf);
    let mut cases: Vec<Case> = vec![
        (
            "memcpy_in",
            Box::new(|n| memcpy_in(&mut buf_cell.borrow_mut(), &src, n, &mut pos_in)),
        ),
        (
            "memcpy_through",
            Box::new(|n| {
                memcpy_through(
                    &mut buf_cell.borrow_mut(),
                    &src,
                    &mut out,
                    n,
                    &mut pos_through,
                )
            }),
        ),
        ("circ_sampling", Box::new(|n| sampling.run(&src, n))),
        ("circ_lossless", Box::new(|n| lossless.run(&src, n))),
        ("bcast", Box::new(|n| bc.run(&src, n))),
        (
            "circ_write_only",
            Box::new(|n| ours_alone.write_only(&src, n)),
        ),
        (
            "bcast_write_only",
            Box::new(|n| bc_alone.write_only(&src, n)),
        ),
    ];
    if let Ok(only) = std::env::var("CIRC_CASES") {
        cases.retain(|(name, _)| only.split(',').any(|o| o == *name));
    }
    // Warm up every case (page faults, caches, the rings' first lap).
    for (_, f) in cases.iter_mut() {
        f(batch / 4);
    }
    let mut series: BTreeMap<&str, Series> = BTreeMap::new();
    let k = cases.len();
    for r in 0..rounds {
        for j in 0..k {
            let (name, f) = &mut cases[(r + j) % k];
            let (d, got) = f(batch);
            if std::env::var_os("CIRC_VERBOSE").is_some() {
                eprintln!(
                    "round {r:>3} {name:<15} {:>8.1} ns/event",
                    d.as_nanos() as f64 / batch as f64
                );
            }
            let s = series.entry(name).or_default();
            s.ns.push(d.as_nanos() as f64 / batch as f64);
            s.recv.push(got as f64 / batch as f64);
        }
    }
    let tag = format!("{event}B/{}MiB", ring / MIB);
    for (name, s) in &series {
        let ns = median(&s.ns);
        println!(
            "{:<30} {:>9.1} {:>8.2} {:>10.2} {:>8.1}%",
            format!("{tag}/{name}"),
            ns,
            event as f64 / ns,
            1e3 / ns,
            100.0 * median(&s.recv)
        );
    }
    let comparisons: [(&str, &[&str]); 3] = [
        ("circ_sampling", &["memcpy_in", "memcpy_through", "bcast"]),
        ("circ_lossless", &["memcpy_in", "memcpy_through", "bcast"]),
        ("circ_write_only", &["bcast_write_only"]),
    ];
    for (ours, references) in comparisons {
        if !series.contains_key(ours) {
            continue;
        }
        let mut line = format!("  {ours:<16}");
        for &reference in references {
            if !series.contains_key(reference) {
                continue;
            }
            // Per round: reference time / our time (>1: ours is faster).
            let ratios: Vec<f64> = series[reference]
                .ns
                .iter()
                .zip(&series[ours].ns)
                .map(|(r, o)| r / o)
                .collect();
            line += &format!(
                "  vs {reference}: {:.2} [{:.2}-{:.2}]",
                median(&ratios),
                quantile(&ratios, 0.25),
                quantile(&ratios, 0.75)
            );
        }
        println!("{line}");
    }
}

/// The (event bytes, ring bytes) configurations: the standard three, or `CIRC_SIZES`.
fn configurations() -> Vec<(usize, usize)> {
    let Ok(spec) = std::env::var("CIRC_SIZES") else {
        return vec![(4096, 8 * MIB), (4096, 64 * MIB), (128, 8 * MIB)];
    };
    spec.split(',')
        .map(|c| {
            let parsed = c.split_once('x').and_then(|(e, r)| {
                let (e, r) = (
                    e.trim().parse::<usize>().ok()?,
                    r.trim().parse::<usize>().ok()?,
                );
                (e >= 8 && r >= 1 && e as u64 <= (r * MIB) as u64 / 2).then_some((e, r * MIB))
            });
            parsed.unwrap_or_else(|| {
                eprintln!(
                    "circ bench: CIRC_SIZES entry {c:?} is not EVENTxRING_MIB with an event of \
                     at least 8 bytes and at most half the ring (e.g. 128x8)"
                );
                std::process::exit(2)
            })
        })
        .collect()
}

fn main() {
    pin_writer();
    // `cargo bench` passes `--bench`; a number is the count of rounds.
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(15);
    println!(
        "circ head to head: {rounds} rounds, cases interleaved; writer on CPU {:?}, readers on CPU {:?}",
        cpus().map(|c| c.0),
        cpus().map(|c| c.1)
    );
    println!(
        "{:<30} {:>9} {:>8} {:>10} {:>9}",
        "case (medians)", "ns/event", "GB/s", "Mevents/s", "received"
    );
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<usize>().is_err())
        .collect();
    for (event, ring) in configurations() {
        let tag = format!("{event}B/{}MiB", ring / MIB);
        if filters.is_empty() || filters.iter().any(|f| tag.contains(f.as_str())) {
            head_to_head(event, ring, rounds);
        }
    }
    println!("(ratios: median of the per-round ratios [quartiles]; throughput of ours / reference, >1: ours is faster)");
}
