use super::*;

fn setup() -> (tempfile::TempDir, RuntimeDir, ProcName) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = RuntimeDir::at(tmp.path());
    (tmp, dir, ProcName::new("t1").unwrap())
}

#[test]
fn create_read_write() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    let i = r.add_int(VarSpec::int("ticks", 7).desc("ticks")).unwrap();
    let f = r.add_float(VarSpec::float("temp", 1.5).unit("K")).unwrap();
    let s = r.add_str(VarSpec::string("label", 16, "hello")).unwrap();
    let e = r
        .add_int(VarSpec::enumeration("runstate", &["A", "B", "C"], 1))
        .unwrap();
    let rd = RegionReader::open(&dir, &name).unwrap();
    assert_eq!(rd.name(), "t1");
    assert_eq!(rd.int("ticks").unwrap().get(), 7);
    assert_eq!(rd.float("temp").unwrap().get(), 1.5);
    assert_eq!(rd.string("label").unwrap().get().unwrap(), "hello");
    assert_eq!(rd.int("runstate").unwrap().get(), 1);
    i.add(3);
    f.set(-2.25);
    assert!(!s.set("world"));
    assert!(s.set("a much longer text than sixteen"));
    e.set(2);
    assert_eq!(rd.int("ticks").unwrap().get(), 10);
    assert_eq!(rd.float("temp").unwrap().get(), -2.25);
    assert_eq!(
        rd.string("label").unwrap().get().unwrap(),
        "a much longer te"
    );
    let v = rd.find("runstate").unwrap();
    assert_eq!(rd.read(&v).unwrap(), Value::Int(2));
    assert_eq!(v.spec().display(&Value::Int(2)), "C");
    assert!(rd.changed_ns(&v) > 0);
    assert!(rd.is_alive());
    // Typed handles refuse other types.
    assert!(rd.int("label").is_err());
    let err = rd.find("tick").unwrap_err().to_string();
    assert!(err.contains("did you mean ticks"), "{err}");
}

#[test]
fn string_truncation_keeps_utf8() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    let s = r.add_str(VarSpec::string("s", 5, "")).unwrap();
    s.set("aéééé");
    assert_eq!(s.get(), "aéé");
}

#[test]
fn second_owner_refused_then_takeover_after_death() {
    let (_t, dir, name) = setup();
    let first = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    first.add_int(VarSpec::int("x", 1)).unwrap();
    let err = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "t1 is already running as pid {} (stop it first, or pick another name with -n)",
            std::process::id()
        )
    );
    let old_reader = RegionReader::open(&dir, &name).unwrap();
    drop(first); // releases the flock, like a process that died
    assert!(!old_reader.is_alive());
    let second = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    second.add_int(VarSpec::int("y", 2)).unwrap();
    assert!(old_reader.is_replaced());
    let rd = RegionReader::open(&dir, &name).unwrap();
    assert!(rd.is_alive());
    assert!(rd.find("x").is_err());
    assert_eq!(rd.int("y").unwrap().get(), 2);
    assert_ne!(rd.info().instance_id, old_reader.info().instance_id);
}

#[test]
fn schema_grows_while_read() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    r.add_int(VarSpec::int("a", 1)).unwrap();
    let mut rd = RegionReader::open(&dir, &name).unwrap();
    assert_eq!(rd.specs().len(), 1);
    assert!(!rd.refresh_schema().unwrap());
    r.add_int(VarSpec::int("b", 2)).unwrap();
    assert!(rd.refresh_schema().unwrap());
    assert_eq!(rd.int("b").unwrap().get(), 2);
    assert!(matches!(
        r.add_int(VarSpec::int("a", 3)),
        Err(AddError::Duplicate(_))
    ));
}

#[test]
fn region_grows_beyond_its_first_chunks() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(
        &dir,
        &name,
        &CreateOptions {
            schema_cap: 4096,
            data_cap: 1024,
            log_cap: 64,
        },
    )
    .unwrap();
    let first = r.add_int(VarSpec::int("v0", 0)).unwrap();
    let mut rd = RegionReader::open(&dir, &name).unwrap();
    let kept = rd.int("v0").unwrap();
    let size0 = rd.info().file_size;
    for n in 1..5000 {
        r.add_int(VarSpec::int(&format!("v{n}"), n)).unwrap();
        if n % 997 == 0 {
            // Readers follow the growth while it happens.
            rd.refresh_schema().unwrap();
            assert_eq!(rd.specs().len(), n as usize + 1);
        }
    }
    first.set(77);
    rd.refresh_schema().unwrap();
    assert_eq!(rd.specs().len(), 5000);
    assert!(rd.info().file_size > size0);
    assert_eq!(rd.int("v4999").unwrap().get(), 4999);
    // A handle made before the growth still reads through its own (older) mapping.
    assert_eq!(kept.get(), 77);
    let fresh = RegionReader::open(&dir, &name).unwrap();
    assert_eq!(fresh.specs().len(), 5000);
    assert_eq!(fresh.int("v2500").unwrap().get(), 2500);
}

#[test]
fn retire_reuses_slots_and_kept_handles_notice() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    let row = |i: usize| {
        vec![
            VarSpec::int(&format!("worker.{i}.pid"), 1000 + i as i64),
            VarSpec::string(&format!("worker.{i}.state"), 16, "IDLE"),
        ]
    };
    let h3 = r.add_vars(&row(3)).unwrap();
    assert_eq!(h3.len(), 2);
    let mut rd = RegionReader::open(&dir, &name).unwrap();
    let pid = rd.int("worker.3.pid").unwrap();
    let state = rd.string("worker.3.state").unwrap();
    let pref = rd.find("worker.3.pid").unwrap();
    assert_eq!(pid.get(), 1003);
    let used = rd.info().file_size;
    assert_eq!(r.retire_prefix("worker.3.").unwrap(), 2);
    assert!(matches!(pid.try_get(), Err(ReadError::Removed { .. })));
    assert!(matches!(state.get(), Err(ReadError::Removed { .. })));
    let e = pid.try_get().unwrap_err().to_string();
    assert!(
        e.contains("worker.3.pid was removed by its owner at 20"),
        "{e}"
    );
    // The writer's stale handle does nothing.
    h3[0].set(&Value::Int(5));
    // A new row takes the freed slots: the old handles still say removed, never the new value.
    let h4 = r.add_vars(&row(4)).unwrap();
    assert_eq!(h4[0].spec().offset, h3[0].spec().offset);
    h4[0].set(&Value::Int(4444));
    assert!(matches!(pid.try_get(), Err(ReadError::Removed { .. })));
    assert!(matches!(rd.read(&pref), Err(ReadError::Removed { .. })));
    rd.refresh_schema().unwrap();
    assert!(rd.spec("worker.3.pid").is_none());
    let e = rd.find("worker.3.state").unwrap_err();
    assert!(
        matches!(e, ReadError::Removed { removed_ns, .. } if removed_ns > 0),
        "{e}"
    );
    assert_eq!(rd.int("worker.4.pid").unwrap().get(), 4444);
    assert_eq!(
        rd.info().file_size,
        used,
        "the slots were reused, the file did not grow"
    );
    assert_eq!(rd.info().retired, 2);
    // A name can come back, as a new variable.
    r.add_vars(&row(3)).unwrap();
    rd.refresh_schema().unwrap();
    assert_eq!(rd.int("worker.3.pid").unwrap().get(), 1003);
    assert!(
        pid.try_get().is_err(),
        "an old handle never comes back to life"
    );
    let fresh = RegionReader::open(&dir, &name).unwrap();
    let names: Vec<&str> = fresh.specs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "worker.4.pid",
            "worker.4.state",
            "worker.3.pid",
            "worker.3.state"
        ]
    );
    assert!(matches!(
        r.retire_name("nope"),
        Err(RetireError::NoSuchVar(_))
    ));
}

#[test]
fn no_torn_or_foreign_value_while_slots_are_reused() {
    let (_t, dir, name) = setup();
    let r = std::sync::Arc::new(VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap());
    // Generation g of "x" only ever holds g (its default, and what its handle writes); after
    // retirement its stale handle writes -1, which must go nowhere. A reader with a kept
    // handle must never see another generation's value.
    let v = r.add_int(VarSpec::int("x", 0)).unwrap();
    let mut rd = RegionReader::open(&dir, &name).unwrap();
    // The writer makes a fixed number of generations (the schema keeps a line for each, so
    // it is bounded rather than timed), while the reader reads through kept handles.
    const GENERATIONS: i64 = 20_000;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (r2, dn) = (r.clone(), done.clone());
    let w = std::thread::spawn(move || {
        let mut v = v;
        for g in 1..=GENERATIONS {
            r2.retire(&v).unwrap();
            v.set(-1);
            v = r2.add_int(VarSpec::int("x", g)).unwrap();
            v.set(g);
        }
        dn.store(true, Ordering::Release);
        v
    });
    let (mut ok, mut removed) = (0u64, 0u64);
    while !done.load(Ordering::Acquire) {
        rd.refresh_schema().unwrap();
        let Ok(h) = rd.int("x") else { continue };
        let Some(Value::Int(want)) = rd.spec("x").map(|s| s.default.clone()) else {
            unreachable!()
        };
        for _ in 0..50 {
            match h.try_get() {
                Ok(x) => {
                    assert_eq!(x, want, "a kept handle read another generation's value");
                    ok += 1;
                }
                Err(ReadError::Removed { .. }) => {
                    removed += 1;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    let v = w.join().unwrap();
    // And, without any race: a handle kept across a retirement says so.
    rd.refresh_schema().unwrap();
    let h = rd.int("x").unwrap();
    assert_eq!(h.try_get().unwrap(), GENERATIONS);
    r.retire(&v).unwrap();
    assert!(matches!(h.try_get(), Err(ReadError::Removed { .. })));
    eprintln!(
        "{ok} reads and {removed} removals seen while {GENERATIONS} generations came and went"
    );
}

fn corrupt_open(bytes: &[u8]) -> String {
    let (_t, dir, name) = setup();
    std::fs::write(dir.region_path(&name), bytes).unwrap();
    RegionReader::open(&dir, &name).unwrap_err().to_string()
}

#[test]
fn corrupt_files_are_refused() {
    assert!(corrupt_open(b"").contains("truncated"));
    assert!(corrupt_open(&[0xAB; 4096]).contains("bad magic"));
    // Deterministic pseudo-random junk.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let junk: Vec<u8> = (0..65536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert!(corrupt_open(&junk).contains("not a usable variable region"));
}

#[test]
fn truncated_and_newer_regions_are_refused() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    r.add_int(VarSpec::int("a", 1)).unwrap();
    let path = dir.region_path(&name);
    let full = std::fs::read(&path).unwrap();
    drop(r);
    // Truncated copy.
    std::fs::write(&path, &full[..4096]).unwrap();
    let e = RegionReader::open(&dir, &name).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    // Newer and older versions: a clear error naming the file and both versions.
    let mut newer = full.clone();
    newer[8..12].copy_from_slice(&99u32.to_ne_bytes());
    std::fs::write(&path, &newer).unwrap();
    let e = RegionReader::open(&dir, &name).unwrap_err();
    assert!(matches!(e, OpenError::TooNew { found: 99, .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("t1.shv") && msg.contains("version 99") && msg.contains("up to 2"),
        "{msg}"
    );
    let mut older = full.clone();
    older[8..12].copy_from_slice(&1u32.to_ne_bytes());
    std::fs::write(&path, &older).unwrap();
    let e = RegionReader::open(&dir, &name).unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::TooOld {
                found: 1,
                supported: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("restart it"), "{e}");
    // Damaged schema.
    let line_at = full
        .windows(10)
        .position(|w| w == b"{\"name\":\"a")
        .unwrap();
    let mut bad = full.clone();
    bad[line_at..line_at + 8].copy_from_slice(b"{garbage");
    std::fs::write(&path, &bad).unwrap();
    let e = RegionReader::open(&dir, &name).unwrap_err().to_string();
    assert!(e.contains("schema entry 0"), "{e}");
    // A slot offset pointing outside the file.
    let line_end = line_at + full[line_at..].iter().position(|&b| b == b'\n').unwrap();
    let line = String::from_utf8(full[line_at..line_end].to_vec()).unwrap();
    let spec: VarSpec = serde_json::from_str(line.trim()).unwrap();
    let evil = line.replace(
        &format!("\"offset\":{}", spec.offset),
        &format!("\"offset\":{}", full.len() - 8),
    );
    assert!(evil.len() <= line.len(), "{evil}");
    let mut evil_b = evil.into_bytes();
    evil_b.resize(line_end - line_at, b' ');
    let mut bad = full.clone();
    bad[line_at..line_end].copy_from_slice(&evil_b);
    std::fs::write(&path, &bad).unwrap();
    let e = RegionReader::open(&dir, &name).unwrap_err().to_string();
    assert!(e.contains("outside the data area"), "{e}");
    // Chunk and log fields pointing anywhere are refused, never followed.
    for (at, val) in [
        (24usize, u64::MAX),
        (24, 3),
        (144, 1 << 40),
        (152, 3),
        (16, 1 << 50),
    ] {
        let mut bad = full.clone();
        bad[at..at + 8].copy_from_slice(&val.to_ne_bytes());
        std::fs::write(&path, &bad).unwrap();
        let e = RegionReader::open(&dir, &name).unwrap_err().to_string();
        assert!(
            e.contains("not a usable variable region"),
            "{at}={val}: {e}"
        );
    }
}

#[test]
fn torn_strings_never_seen() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    let s = r.add_str(VarSpec::string("s", 64, "")).unwrap();
    let rd = RegionReader::open(&dir, &name).unwrap();
    let sr = rd.string("s").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let w = std::thread::spawn(move || {
        let a = "a".repeat(60);
        let b = "b".repeat(30);
        let n = if cfg!(miri) { 100 } else { 200_000 };
        for i in 0..n {
            s.set(if i % 2 == 0 { &a } else { &b });
        }
        st.store(true, Ordering::Relaxed);
    });
    let mut buf = Vec::new();
    let mut reads = 0;
    while !stop.load(Ordering::Relaxed) {
        match sr.read_into(&mut buf) {
            Ok(t) => {
                assert!(
                    t.is_empty() || t == "a".repeat(60) || t == "b".repeat(30),
                    "torn read {t:?}"
                );
                reads += 1;
            }
            Err(ReadError::Busy(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    w.join().unwrap();
    assert!(reads > 0);
}

fn drain(c: &mut ChangeReader) -> Vec<ChangeEvent> {
    let mut out = Vec::new();
    while c.poll(&mut out, 100) == 100 {}
    out
}

#[test]
fn change_log_has_every_write_in_order() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    let n = r.add_int(VarSpec::int("n", 0)).unwrap();
    let f = r.add_float(VarSpec::float("f", 0.0)).unwrap();
    let s = r.add_str(VarSpec::string("s", 16, "")).unwrap();
    let rd = RegionReader::open(&dir, &name).unwrap();
    let mut c = rd.changes().unwrap();
    assert!(c.next_event().is_none());
    for i in 1..=1000 {
        n.set(i);
    }
    n.set(1000); // unchanged: not a change
    f.set(2.5);
    s.set("hello");
    let ev = drain(&mut c);
    assert_eq!(ev.len(), 1002);
    for (i, e) in ev[..1000].iter().enumerate() {
        let ChangeEvent::Change(ch) = e else {
            panic!("{e:?}")
        };
        assert_eq!(ch.kind, ChangeKind::Value);
        assert_eq!(rd.spec_by_id(ch.id).unwrap().name, "n");
        assert_eq!(ch.raw as i64, i as i64 + 1);
        assert_eq!(ch.seq, ev_seq(&ev[0]) + i as u64);
    }
    let ChangeEvent::Change(fc) = ev[1000] else {
        panic!()
    };
    assert_eq!(f64::from_bits(fc.raw), 2.5);
    let ChangeEvent::Change(sc) = ev[1001] else {
        panic!()
    };
    let sr = rd.string("s").unwrap();
    assert_eq!(sc.raw, sr.seq(), "the entry names the slot's version");
    // Additions and retirements are in the log too.
    let row = r.add_vars(&[VarSpec::int("row.1.a", 7)]).unwrap();
    r.retire(&row[0]).unwrap();
    let ev = drain(&mut c);
    let kinds: Vec<_> = ev
        .iter()
        .map(|e| match e {
            ChangeEvent::Change(c) => (c.kind, c.raw),
            ChangeEvent::Missed(n) => panic!("missed {n}"),
        })
        .collect();
    assert_eq!(kinds, [(ChangeKind::Added, 7), (ChangeKind::Retired, 0)]);
}

fn ev_seq(e: &ChangeEvent) -> u64 {
    match e {
        ChangeEvent::Change(c) => c.seq,
        ChangeEvent::Missed(_) => panic!(),
    }
}

#[test]
fn a_reader_that_falls_behind_is_told_exactly_how_much_it_missed() {
    let (_t, dir, name) = setup();
    let opts = CreateOptions {
        log_cap: 64,
        ..CreateOptions::default()
    };
    let r = VarRegion::create(&dir, &name, &opts).unwrap();
    let n = r.add_int(VarSpec::int("n", 0)).unwrap();
    let rd = RegionReader::open(&dir, &name).unwrap();
    let mut c = rd.changes().unwrap();
    for i in 1..=200 {
        n.set(i);
    }
    let ev = drain(&mut c);
    assert_eq!(ev[0], ChangeEvent::Missed(200 - 64));
    let values: Vec<i64> = ev[1..]
        .iter()
        .map(|e| match e {
            ChangeEvent::Change(c) => c.raw as i64,
            ChangeEvent::Missed(n) => panic!("missed {n}"),
        })
        .collect();
    assert_eq!(values, (137..=200).collect::<Vec<_>>());
    // With a writer racing a slow reader, seen + missed is always the number written.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let w = std::thread::spawn(move || {
        for i in 201..=100_200 {
            n.set(i);
        }
        st.store(true, Ordering::Release);
    });
    let (mut seen, mut missed, mut last, mut pending) = (0u64, 0u64, 200i64, 0i64);
    loop {
        let done = stop.load(Ordering::Acquire);
        while let Some(e) = c.next_event() {
            match e {
                ChangeEvent::Change(ch) => {
                    // Each value follows the last one seen, plus exactly what was missed.
                    let v = ch.raw as i64;
                    assert_eq!(v, last + pending + 1, "missed count is not exact");
                    last = v;
                    pending = 0;
                    seen += 1;
                }
                ChangeEvent::Missed(m) => {
                    missed += m;
                    pending += m as i64;
                }
            }
        }
        if done {
            break;
        }
    }
    w.join().unwrap();
    assert_eq!(last, 100_200);
    assert_eq!(seen + missed, 100_000, "seen {seen} missed {missed}");
}

#[test]
fn a_waiting_reader_sleeps_on_the_futex_and_wakes_fast() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    let n = r.add_int(VarSpec::int("n", 0)).unwrap();
    let rd = RegionReader::open(&dir, &name).unwrap();
    let mut c = rd.changes().unwrap();
    assert!(c.uses_futex());
    // Nothing to read: the wait times out.
    let t0 = std::time::Instant::now();
    assert!(!c.wait(Duration::from_millis(30)));
    assert!(t0.elapsed() >= Duration::from_millis(25));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let w = std::thread::spawn(move || {
        for i in 1..=20 {
            rx.recv().unwrap();
            // Let the reader fall asleep first (the latency measured is a wake-up's).
            std::thread::sleep(Duration::from_millis(5));
            n.set(i);
        }
    });
    let mut lat = Vec::new();
    for _ in 0..20 {
        tx.send(()).unwrap();
        assert!(c.wait(Duration::from_secs(10)));
        let woke = now_ns();
        let Some(ChangeEvent::Change(ch)) = c.next_event() else {
            panic!()
        };
        lat.push(woke.saturating_sub(ch.time_ns));
    }
    w.join().unwrap();
    lat.sort_unstable();
    let median = lat[lat.len() / 2];
    assert!(median < 1_000_000, "median wake-up {median} ns: {lat:?}");
}

#[test]
fn damaged_files_give_errors_never_panics() {
    let (_t, dir, name) = setup();
    let opts = CreateOptions {
        schema_cap: 1024,
        data_cap: 1024,
        log_cap: 8,
    };
    let r = VarRegion::create(&dir, &name, &opts).unwrap();
    // Enough to use a second schema chunk, a second data chunk, retirements and log laps.
    for i in 0..40 {
        r.add_vars(&[
            VarSpec::int(&format!("row.{i}.n"), i),
            VarSpec::string(&format!("row.{i}.s"), 12, "text"),
        ])
        .unwrap();
    }
    r.retire_prefix("row.3.").unwrap();
    r.var("row.4.n").unwrap().set(&Value::Int(44));
    let path = dir.region_path(&name);
    let good = std::fs::read(&path).unwrap();
    drop(r);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut opened, mut refused) = (0, 0);
    for _ in 0..400 {
        let mut bad = good.clone();
        for _ in 0..1 + rnd() % 4 {
            // Mostly the header, where damage matters most.
            let at = if rnd() % 2 == 0 {
                (rnd() % 256) as usize & !7
            } else {
                (rnd() as usize % bad.len()) & !7
            };
            let v: u64 = match rnd() % 4 {
                0 => rnd(),
                1 => rnd() % 4096,
                2 => u64::MAX,
                _ => good.len() as u64 + rnd() % 64,
            };
            bad[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        }
        std::fs::write(&path, &bad).unwrap();
        match RegionReader::open(&dir, &name) {
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
            Ok(mut rd) => {
                opened += 1;
                let _ = rd.refresh_schema();
                for s in rd.specs().to_vec() {
                    if let Ok(v) = rd.find(&s.name) {
                        let _ = rd.read(&v);
                        let _ = rd.changed_ns(&v);
                    }
                }
                if let Some(mut c) = rd.changes() {
                    for _ in 0..64 {
                        if c.next_event().is_none() {
                            break;
                        }
                    }
                }
            }
        }
    }
    assert!(
        opened > 0 && refused > 0,
        "opened {opened}, refused {refused}"
    );
}

#[test]
fn a_stale_handle_writing_in_another_thread_never_lands_in_a_reused_slot() {
    let (_t, dir, name) = setup();
    let r = std::sync::Arc::new(VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap());
    let first = r.add_int(VarSpec::int("x0", 0)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let w = std::thread::spawn(move || {
        let mut i = 0i64;
        while !st.load(Ordering::Relaxed) {
            i += 1;
            first.set(-i);
            first.add(-1);
        }
    });
    let mut prev = "x0".to_owned();
    for g in 1..2000 {
        r.retire_name(&prev).unwrap();
        prev = format!("x{g}");
        let v = r.add_int(VarSpec::int(&prev, 5)).unwrap();
        for _ in 0..20 {
            assert_eq!(
                v.get(),
                5,
                "a write of the retired variable landed in its successor"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
}

mod some_names;
