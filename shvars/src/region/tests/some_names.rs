//! A reader of some names (`RegionReader::open_only`, the cold `shvar get` path) against a
//! full reader: same answers, same refusals.

use super::*;

/// What a reader says about a variable: its spec, value and last change, or the error; and
/// when it was retired.
type Seen = (Result<(VarSpec, Value, u64), String>, Option<u64>);

/// What `rd` says about `n`.
fn seen(rd: &RegionReader, n: &str) -> Seen {
    let found = rd.find(n).map_err(|e| e.to_string()).and_then(|v| {
        let val = rd.read(&v).map_err(|e| e.to_string())?;
        Ok((v.spec().clone(), val, rd.changed_ns(&v)))
    });
    (found, rd.removed(n))
}

/// A reader of some names sees exactly what a full reader sees of them, as variables are
/// added, retired, added again and the file grows.
fn only_agrees(dir: &RuntimeDir, name: &ProcName, sets: &[&[&str]], only: &mut [RegionReader]) {
    let full = RegionReader::open(dir, name).unwrap();
    for (names, rd) in sets.iter().zip(only.iter_mut()) {
        // A reader opened now, and one opened earlier that follows the owner.
        let fresh = RegionReader::open_only(dir, name, names).unwrap();
        rd.refresh_schema().unwrap();
        for r in [&fresh, &*rd] {
            for n in *names {
                let (f, o) = (seen(&full, n), seen(r, n));
                match (&f.0, &o.0) {
                    // Suggestions come from the variables a reader knows.
                    (Err(a), Err(b)) if a.contains("has no variable") => {
                        assert!(b.contains("has no variable"), "{n}: {a} / {b}");
                        assert_eq!(f.1, o.1, "{n}");
                    }
                    _ => assert_eq!(f, o, "{n} in {names:?}"),
                }
            }
            let want: Vec<&VarSpec> = full
                .specs()
                .iter()
                .filter(|s| names.contains(&s.name.as_str()))
                .map(|s| &**s)
                .collect();
            let got: Vec<&VarSpec> = r
                .specs()
                .iter()
                .filter(|s| names.contains(&s.name.as_str()))
                .map(|s| &**s)
                .collect();
            assert_eq!(want, got, "{names:?}");
            assert_eq!(full.info(), r.info());
        }
    }
}

#[test]
fn a_reader_of_some_names_agrees_with_a_full_one() {
    let (_t, dir, name) = setup();
    let opts = CreateOptions {
        schema_cap: 1024,
        data_cap: 1024,
        log_cap: 64,
    };
    let r = VarRegion::create(&dir, &name, &opts).unwrap();
    r.add_vars(&[
        VarSpec::enumeration("runstate", &["A", "B"], 1),
        VarSpec::int("x", 1),
        // Names inside other names, and in another variable's text, escaped or not.
        VarSpec::int("x.y", 2).desc(r#"not "name":"x" nor \ "runstate""#),
        VarSpec::string("label", 8, "x.y").unit("\"x\""),
        VarSpec::float("row.1.n", 0.5),
    ])
    .unwrap();
    let sets: &[&[&str]] = &[
        &["runstate"],
        &["x"],
        &["x.y", "x"],
        &["row.1.n", "label"],
        &["row.2.n"],
        &["nosuch"],
        &["x", "nosuch"],
        &["row.1.n", "row.1.n"],
    ];
    let mut only: Vec<RegionReader> = sets
        .iter()
        .map(|s| RegionReader::open_only(&dir, &name, s).unwrap())
        .collect();
    only_agrees(&dir, &name, sets, &mut only);
    r.var("x").unwrap().set(&Value::Int(42));
    // Retired; added again (another type, another slot); retired again; grown past the first
    // chunks of schema and data.
    r.retire_name("x").unwrap();
    r.retire_name("row.1.n").unwrap();
    only_agrees(&dir, &name, sets, &mut only);
    r.add_vars(&[VarSpec::string("x", 32, "back"), VarSpec::int("row.2.n", 2)])
        .unwrap();
    only_agrees(&dir, &name, sets, &mut only);
    let size0 = RegionReader::open(&dir, &name).unwrap().info().file_size;
    for i in 0..60 {
        r.add_vars(&[
            VarSpec::int(&format!("row.{}.n", i + 10), i),
            VarSpec::string(&format!("row.{}.s", i + 10), 16, "x"),
        ])
        .unwrap();
    }
    r.retire_name("row.2.n").unwrap();
    r.add_vars(&[VarSpec::float("row.1.n", 9.5)]).unwrap();
    assert!(RegionReader::open(&dir, &name).unwrap().info().file_size > size0);
    only_agrees(&dir, &name, sets, &mut only);
    // Names not asked for are not known (but for x.y, whose text names runstate, and label,
    // whose unit has an escape in it).
    let rd = RegionReader::open_only(&dir, &name, &["runstate"]).unwrap();
    let known: Vec<&str> = rd.specs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(known, ["runstate", "x.y", "label"]);
    assert!(rd.find("x").is_err());
}

#[test]
fn a_reader_of_some_names_refuses_damage_in_their_entries_as_a_full_one() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    r.add_vars(&[
        VarSpec::int("alpha", 1),
        VarSpec::int("beta", 2),
        VarSpec::int("gamma", 3),
    ])
    .unwrap();
    r.retire_name("alpha").unwrap();
    let path = dir.region_path(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(14)
        .position(|w| w == br#"{"name":"gamma"#)
        .unwrap();
    // `"type"` becomes `"typo"`: same length, no longer a spec.
    let t = at
        + bytes[at..]
            .windows(6)
            .position(|w| w == b"\"type\"")
            .unwrap();
    bytes[t + 4] = b'o';
    std::fs::write(&path, &bytes).unwrap();
    let full = RegionReader::open(&dir, &name).unwrap_err().to_string();
    assert!(full.contains("schema entry 2 is not valid JSON"), "{full}");
    // The entry counts every entry before it, read or skipped.
    for names in [&["gamma"][..], &["gamma", "beta"], &["alpha", "gamma"]] {
        let e = RegionReader::open_only(&dir, &name, names)
            .unwrap_err()
            .to_string();
        assert_eq!(e, full, "{names:?}");
    }
    // Damage in an entry it does not read is not looked at.
    let rd = RegionReader::open_only(&dir, &name, &["beta"]).unwrap();
    assert_eq!(rd.int("beta").unwrap().get(), 2);
    assert!(rd.removed("alpha").is_none());
}

#[test]
fn a_reader_of_some_names_finds_a_name_written_with_escapes() {
    let (_t, dir, name) = setup();
    let r = VarRegion::create(&dir, &name, &CreateOptions::default()).unwrap();
    r.add_vars(&[VarSpec::int("beta", 2), VarSpec::int("gamma", 3)])
        .unwrap();
    let path = dir.region_path(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    // Valid JSON the owner never writes: an escape in the name, spaces, no default desc. The
    // same length, so the entry keeps its place.
    let was = br#"{"name":"gamma","type":"INTEGER","access":"R","desc":"","#;
    let now = br#"{"name":"g\u0061mma","type":"INTEGER","access":"R"     ,"#;
    assert_eq!(was.len(), now.len());
    let at = bytes.windows(was.len()).position(|w| w == was).unwrap();
    bytes[at..at + now.len()].copy_from_slice(now);
    std::fs::write(&path, &bytes).unwrap();
    let full = RegionReader::open(&dir, &name).unwrap();
    let only = RegionReader::open_only(&dir, &name, &["gamma"]).unwrap();
    assert_eq!(seen(&full, "gamma"), seen(&only, "gamma"));
    assert_eq!(only.int("gamma").unwrap().get(), 3);
}
