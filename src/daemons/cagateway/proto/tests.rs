//! Tests of the Channel Access wire format (and the fuzzing of its decoders).

use super::*;

fn msg(h: Header, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    push_message(&mut v, h, payload);
    v
}

#[test]
fn headers_round_trip_plain_and_extended() {
    for h in [
        Header::new(cmd::READ_NOTIFY, 0, 6, 1, 7, 9),
        Header::new(cmd::EVENT_ADD, 0x1_0000, 6, 0x20000, 1, 2),
        Header::new(cmd::WRITE, 0xFFFF, 4, 3, 1, 2),
    ] {
        let mut b = Vec::new();
        h.encode(&mut b);
        assert_eq!(b.len(), if h.is_extended() { 24 } else { 16 });
        let (back, len) = decode_header(&b, u32::MAX).unwrap().unwrap();
        assert_eq!((back, len), (h, b.len()));
        assert_eq!(decode_header(&b[..len - 1], u32::MAX).unwrap(), None);
    }
    let mut b = Vec::new();
    Header::new(cmd::WRITE, 1 << 20, 0, 1, 0, 0).encode(&mut b);
    assert!(matches!(
        decode_header(&b, 16384),
        Err(ProtoError::TooLarge { size: 1048576, .. })
    ));
}

#[test]
fn search_and_create_decode_names() {
    let b = msg(
        Header::new(cmd::SEARCH, 0, DO_REPLY, 13, 5, 5),
        b"ca1:ticks\0",
    );
    let (h, n) = decode_header(&b, 1024).unwrap().unwrap();
    let r = parse_request(&h, &b[n..n + h.payload_size as usize]).unwrap();
    assert_eq!(
        r,
        Request::Search {
            reply: true,
            minor: 13,
            cid: 5,
            name: "ca1:ticks"
        }
    );
    for bad in [&b""[..], b"\0", b"a b\0", b"\xff\0"] {
        assert_eq!(name_of(bad), Err(ProtoError::BadName));
    }
    assert_eq!(name_of(&[b'a'; 300]), Err(ProtoError::BadName));
}

/// The payload sizes are those of EPICS' `db_access.h` structures (`dbr_size[]`).
#[test]
fn dbr_sizes_are_epics_sizes() {
    // dbr_size[] of EPICS base for codes 0..=34 (one element), before padding.
    let sizes = [
        40, 2, 4, 2, 1, 4, 8, // plain
        44, 6, 8, 6, 6, 8, 16, // sts
        52, 16, 16, 16, 16, 16, 24, // time
        44, 26, 44, 424, 20, 40, 72, // gr
        44, 30, 52, 424, 22, 48, 88, // ctrl
    ];
    for (code, size) in sizes.iter().enumerate() {
        let t = DbrType::from_code(code as u16).unwrap();
        assert_eq!(t.code(), code as u16);
        assert_eq!(meta_size(t) + t.base.size(), *size, "{t:?}");
    }
    assert!(DbrType::from_code(35).is_err());
}

#[test]
fn ctrl_double_layout() {
    let labels = Vec::new();
    let meta = Meta {
        status: alarm::HIHI,
        severity: alarm::SEV_MAJOR,
        stamp_ns: (EPICS_EPOCH_OFFSET + 5) * 1_000_000_000 + 7,
        units: "Hz",
        precision: 3,
        limits: Limits {
            disp_hi: 100.0,
            ..Limits::default()
        },
        labels: &labels,
    };
    let mut out = Vec::new();
    let t = DbrType::from_code(34).unwrap();
    encode_dbr(&mut out, t, 1, &meta, &Elements::Double(2.5));
    assert_eq!(out.len(), 88);
    assert_eq!(&out[0..4], &[0, 3, 0, 2]);
    assert_eq!(&out[4..6], &[0, 3]);
    assert_eq!(&out[8..11], b"Hz\0");
    assert_eq!(&out[16..24], &100.0f64.to_be_bytes());
    assert_eq!(&out[80..88], &2.5f64.to_be_bytes());
    let mut out = Vec::new();
    encode_dbr(
        &mut out,
        DbrType::from_code(20).unwrap(),
        1,
        &meta,
        &Elements::Double(1.0),
    );
    assert_eq!(&out[4..8], &5u32.to_be_bytes());
    assert_eq!(&out[8..12], &7u32.to_be_bytes());
}

#[test]
fn enum_labels_and_long_strings() {
    let labels: Vec<String> = [
        "UNDEFINED_STATE",
        "INIT_STATE",
        "a label longer than twenty-five",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let meta = Meta {
        status: 0,
        severity: 0,
        stamp_ns: 0,
        units: "",
        precision: 0,
        limits: Limits::default(),
        labels: &labels,
    };
    let mut out = Vec::new();
    encode_dbr(
        &mut out,
        DbrType::from_code(31).unwrap(),
        1,
        &meta,
        &Elements::Enum(1),
    );
    assert_eq!(&out[4..6], &3u16.to_be_bytes());
    assert_eq!(&out[6..22], b"UNDEFINED_STATE\0");
    assert_eq!(&out[32..43], b"INIT_STATE\0");
    assert_eq!(&out[58..58 + 25], &b"a label longer than twenty-five"[..25]);
    assert_eq!(out[58 + 25], 0);
    assert_eq!(&out[422..424], &1u16.to_be_bytes());
    let mut out = Vec::new();
    encode_dbr(
        &mut out,
        DbrType::plain(Base::Char),
        5,
        &meta,
        &Elements::Chars(b"abc"),
    );
    assert_eq!(out, b"abc\0\0\0\0\0");
    assert_eq!(
        decode_put(4, 8, b"hello\0\0\0").unwrap(),
        PutValue::Text("hello".into())
    );
}

#[test]
fn puts_decode() {
    assert_eq!(
        decode_put(5, 1, &(-7i32).to_be_bytes()).unwrap(),
        PutValue::Int(-7)
    );
    assert_eq!(
        decode_put(6, 1, &2.5f64.to_be_bytes()).unwrap(),
        PutValue::Float(2.5)
    );
    let mut s = [0u8; 40];
    s[..4].copy_from_slice(b"PAUS");
    assert_eq!(decode_put(0, 1, &s).unwrap(), PutValue::Text("PAUS".into()));
    assert!(matches!(
        decode_put(6, 1, &[0; 4]),
        Err(ProtoError::Short { .. })
    ));
    assert!(matches!(
        decode_put(20, 1, &[0; 64]),
        Err(ProtoError::BadType(20))
    ));
}

/// Random and mutated input: the decoders never panic, never accept a payload above the
/// limit, and what they accept re-encodes to the same header.
#[test]
fn fuzz_decoders() {
    let mut rng = crate::support::fuzz::Rng::new(0x9e37_79b9_7f4a_7c15u64);
    let mut seeds: Vec<Vec<u8>> = vec![
        msg(Header::new(cmd::SEARCH, 0, DO_REPLY, 13, 1, 1), b"a:b\0"),
        msg(
            Header::new(cmd::CREATE_CHAN, 0, 0, 0, 1, 13),
            b"ca1:ticks\0",
        ),
        msg(Header::new(cmd::EVENT_ADD, 0, 34, 1, 1, 2), &[0; 16]),
        msg(Header::new(cmd::WRITE_NOTIFY, 0, 0, 1, 1, 2), &[b'x'; 40]),
        msg(Header::new(cmd::WRITE, 0, 4, 9, 1, 2), b"abcdefgh"),
    ];
    let mut ext = Vec::new();
    Header::new(cmd::WRITE, 0x10000, 6, 0x10001, 0, 0).encode(&mut ext);
    seeds.push(ext);
    const LIMIT: u32 = 16 * 1024;
    for _ in 0..100_000 {
        let mut input = seeds[rng.below(seeds.len())].clone();
        if rng.next_u64().is_multiple_of(4) {
            let extra = seeds[rng.below(seeds.len())].clone();
            input.extend(extra);
        }
        crate::support::fuzz::mutate(&mut input, &mut rng, 5);
        let mut rest = &input[..];
        while let Ok(Some((h, n))) = decode_header(rest, LIMIT) {
            assert!(h.payload_size <= LIMIT);
            let mut again = Vec::new();
            h.encode(&mut again);
            let (back, _) = decode_header(&again, LIMIT).unwrap().unwrap();
            assert_eq!(back, h);
            let end = (n + h.payload_size as usize).min(rest.len());
            let payload = &rest[n..end];
            if let Ok(Request::Write {
                dtype, count, data, ..
            }) = parse_request(&h, payload)
            {
                let _ = decode_put(dtype, count, data);
            }
            if let Ok(t) = DbrType::from_code(h.data_type) {
                assert_eq!(t.code(), h.data_type);
            }
            rest = &rest[end..];
        }
    }
}
