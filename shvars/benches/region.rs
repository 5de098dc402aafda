//! Reads through the variable region: an integer and a 48-byte string through handles resolved
//! once, and lookup by name among 1,000 variables.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use shvars::region::{CreateOptions, RegionReader, VarRegion, VarSpec};
use shvars::{ProcName, RuntimeDir};

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
    let counter = owner.add_int(VarSpec::int("counter", 0)).unwrap();
    counter.set(123_456);
    let label = owner.add_str(VarSpec::string("label", 64, "")).unwrap();
    label.set("farm node fibm05, builder B_L3BHA_1_1, run 47110");
    assert_eq!(label.get().len(), 48);
    for i in 0..998 {
        owner
            .add_int(VarSpec::int(&format!("var_{i:04}"), i).desc("one of many"))
            .unwrap();
    }

    let reader = RegionReader::open(&dir, &name).unwrap();
    assert_eq!(reader.specs().len(), 1000);
    let int = reader.int("counter").unwrap();
    let s = reader.string("label").unwrap();

    let mut g = c.benchmark_group("region");
    g.bench_function("read_int", |b| b.iter(|| black_box(int.get())));
    let mut buf = Vec::with_capacity(64);
    g.bench_function("read_str48", |b| {
        b.iter(|| black_box(s.read_into(&mut buf).unwrap().len()))
    });
    g.bench_function("lookup_1000", |b| {
        let mut i = 0usize;
        let names: Vec<String> = (0..998).map(|i| format!("var_{i:04}")).collect();
        b.iter(|| {
            i = (i + 337) % names.len();
            black_box(reader.find(&names[i]).unwrap());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
