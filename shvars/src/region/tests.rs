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
fn region_full_is_an_error() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(
        &dir,
        &name,
        &CreateOptions {
            schema_cap: 4096,
            data_cap: 1024,
        },
    )
    .unwrap();
    let mut n = 0;
    let err = loop {
        match r.add_int(VarSpec::int(&format!("v{n}"), 0)) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, AddError::Full { .. }), "{err}");
    assert!(n > 10);
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
    // Newer version.
    let mut newer = full.clone();
    newer[8..12].copy_from_slice(&99u32.to_ne_bytes());
    std::fs::write(&path, &newer).unwrap();
    let e = RegionReader::open(&dir, &name).unwrap_err();
    assert!(matches!(e, OpenError::TooNew { found: 99, .. }), "{e}");
    // Damaged schema.
    let mut bad = full.clone();
    bad[HEADER_SIZE..HEADER_SIZE + 8].copy_from_slice(b"{garbage");
    std::fs::write(&path, &bad).unwrap();
    let e = RegionReader::open(&dir, &name).unwrap_err().to_string();
    assert!(e.contains("schema entry 0"), "{e}");
    // A slot offset pointing outside the data area.
    let text = String::from_utf8_lossy(&full[HEADER_SIZE..HEADER_SIZE + 400]).into_owned();
    let line_end = text.find('\n').unwrap();
    let line = &text[..line_end];
    let evil = line.replace("\"offset\":0", "\"offset\":9");
    let mut bad = full.clone();
    let mut evil_b = evil.into_bytes();
    evil_b.resize(line_end, b' ');
    bad[HEADER_SIZE..HEADER_SIZE + line_end].copy_from_slice(&evil_b[..line_end]);
    std::fs::write(&path, &bad).unwrap();
    let e = RegionReader::open(&dir, &name).unwrap_err().to_string();
    assert!(e.contains("outside the data area"), "{e}");
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
