//! The variable region, format 2:
//! - a counter update (`IntVar::add`) in a region without a change log and in one with it (the
//!   issue's goal: within 2x), in the same run, and the ratio printed at the end;
//! - reads of one variable among 10,000: by name (lookup + read) and by a kept handle;
//! - an integer and a 48-byte string through handles resolved once.
//!
//! Run: `cargo bench -p shvars --bench region`

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use shvars::region::{CreateOptions, IntVar, RegionReader, VarRegion, VarSpec};
use shvars::{ProcName, RuntimeDir};

/// ns per `add(1)`, the best of a few runs of `n` updates.
fn per_add(c: &IntVar, n: u64) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                black_box(c.add(1));
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::Builder::new()
        .prefix("shvars-bench")
        .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .unwrap();
    let dir = RuntimeDir::at(tmp.path());
    let name = ProcName::new("bench").unwrap();
    let owner = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    assert!(owner.has_change_log());
    let counter = owner.add_int(VarSpec::int("counter", 0)).unwrap();
    counter.set(123_456);
    let label = owner.add_str(VarSpec::string("label", 64, "")).unwrap();
    label.set("farm node fibm05, builder B_L3BHA_1_1, run 47110");
    assert_eq!(label.get().len(), 48);
    let specs: Vec<VarSpec> = (0..9998)
        .map(|i| VarSpec::int(&format!("worker.{i:04}.value"), i).desc("one of many"))
        .collect();
    owner.add_vars(&specs).unwrap();

    let bare_name = ProcName::new("bare").unwrap();
    let bare = VarRegion::create(
        &dir,
        &bare_name,
        &CreateOptions {
            log_cap: 0,
            ..CreateOptions::default()
        },
    )
    .unwrap();
    assert!(!bare.has_change_log());
    let bare_counter = bare.add_int(VarSpec::int("counter", 0)).unwrap();

    let reader = RegionReader::open(&dir, &name).unwrap();
    assert_eq!(reader.specs().len(), 10_000);
    let int = reader.int("counter").unwrap();
    let s = reader.string("label").unwrap();
    let names: Vec<String> = (0..9998).map(|i| format!("worker.{i:04}.value")).collect();
    let kept = reader.int(&names[4321]).unwrap();

    let mut g = c.benchmark_group("region");
    g.bench_function("counter_add_without_log", |b| {
        b.iter(|| black_box(bare_counter.add(1)))
    });
    g.bench_function("counter_add_with_log", |b| {
        b.iter(|| black_box(counter.add(1)))
    });
    g.bench_function("read_int", |b| b.iter(|| black_box(int.get())));
    let mut buf = Vec::with_capacity(64);
    g.bench_function("read_str48", |b| {
        b.iter(|| black_box(s.read_into(&mut buf).unwrap().len()))
    });
    g.bench_function("read_1_of_10000_by_name", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 337) % names.len();
            let v = reader.find(&names[i]).unwrap();
            black_box(reader.read(&v).unwrap());
        })
    });
    g.bench_function("read_1_of_10000_by_kept_handle", |b| {
        b.iter(|| black_box(kept.try_get().unwrap()))
    });
    g.finish();

    // The ratio the issue asks for, measured back to back in this run.
    let n = 2_000_000;
    let without = per_add(&bare_counter, n);
    let with = per_add(&counter, n);
    println!(
        "counter update: {without:.1} ns without the change log, {with:.1} ns with it: ratio {:.2}x (goal: within 2x)",
        with / without
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
