//! Tests of rspydaemon's fetching rules.

use super::prefetch::Freshness;
use super::*;

#[test]
fn freshness_expires_unread_events_and_fetches_what_readers_take() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = CircWriter::create(&dir.path().join("L"), 1 << 20).unwrap();
    let mut f = Freshness::new();
    f.set_bound(400);
    let t0 = Instant::now();
    for n in 1..=10 {
        w.write(n, &[0u8; 1000]).unwrap();
    }
    f.packet(10, 10_000, 10_000, 0, w.position(), t0);
    assert!(!f.stale(t0 + Duration::from_millis(100)));
    // Within half the bound nothing expires; after it, what nobody read does.
    assert_eq!(f.expire(&mut w, 0, t0 + Duration::from_millis(150)), 0);
    let before = f.fetch_size();
    assert_eq!(f.expire(&mut w, 0, t0 + Duration::from_millis(250)), 10);
    assert_eq!(f.fetch_size(), (before / 4).max(1000));
    assert!(f.stale(t0 + Duration::from_millis(250)));
    // What the reader had read goes quietly.
    for n in 11..=20 {
        w.write(n, &[0u8; 1000]).unwrap();
    }
    let t1 = t0 + Duration::from_millis(300);
    f.packet(10, 10_000, 10_000, 0, w.position(), t1);
    let consumed = w.position();
    assert_eq!(
        f.expire(&mut w, consumed, t1 + Duration::from_millis(200)),
        0
    );
    // A full packet drained quickly doubles the fetch size; readers with data left do
    // not ask.
    let s = f.fetch_size();
    f.packet(2, 2000, 2000, 0, w.position(), t1);
    assert!(f.wanted(0, t1 + Duration::from_millis(10)));
    assert_eq!(f.fetch_size(), s * 2);
    assert!(!f.wanted(f.fetch_size(), t1 + Duration::from_millis(20)));
    // Skipped events mean sampling: ask for the freshest.
    assert!(!f.sampling());
    f.packet(1, 1000, 1000, 5, w.position(), t1);
    assert!(f.sampling());
    // No bound: nothing of this applies.
    f.set_bound(0);
    assert!(!f.stale(t1 + Duration::from_secs(10)) && !f.sampling() && f.pipelined());
}
