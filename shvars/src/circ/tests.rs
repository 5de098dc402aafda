//! In-process tests of the algorithm on heap storage (these are the ones Miri can run:
//! `MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-disable-weak-memory-emulation"
//! cargo +nightly miri test -p shvars --lib circ::`).

use std::time::Duration;

use super::*;

/// Payload byte `i` of event `evnr`: an xorshift stream seeded by the event number.
pub(crate) fn fill(evnr: u64, buf: &mut [u8]) {
    let mut x = evnr.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn check(evnr: u64, got: &[u8]) {
    let mut want = vec![0u8; got.len()];
    fill(evnr, &mut want);
    assert!(
        want == got,
        "payload of event {evnr} ({} bytes) differs",
        got.len()
    );
}

/// Size of event `evnr` in 1..=max, pseudo-random.
fn size_of_event(evnr: u64, max: usize) -> usize {
    (super::layout::fmix64(evnr) % max as u64) as usize + 1
}

fn heap(cap: u64) -> (HeapStorage, CircWriter<HeapStorage>) {
    let mem = HeapStorage::for_capacity(cap);
    let w = CircWriter::on_storage(mem.clone(), &CircOptions::new(cap)).unwrap();
    (mem, w)
}

fn write_ev(w: &mut CircWriter<HeapStorage>, evnr: u64, len: usize) {
    let mut r = w.reserve(evnr, len).unwrap();
    fill(evnr, r.buf());
    r.commit();
}

#[test]
fn write_then_read_in_order_with_counters() {
    let (mem, mut w) = heap(4096);
    let mut r = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
    let mut buf = vec![0u8; 2048];
    assert_eq!(r.try_read(&mut buf), Err(TryReadError::Empty));
    for n in 1..=5u64 {
        write_ev(&mut w, n * 10, n as usize * 3);
    }
    for n in 1..=5u64 {
        let ev = r.try_read(&mut buf).unwrap();
        assert_eq!(
            ev,
            EventInfo {
                evnr: n * 10,
                len: n as usize * 3
            }
        );
        check(ev.evnr, &buf[..ev.len]);
    }
    assert_eq!(r.try_read(&mut buf), Err(TryReadError::Empty));
    let s = w.stats();
    assert_eq!(
        (s.events_written, s.bytes_written, s.last_evnr),
        (5, 45, Some(50))
    );
    assert_eq!(r.stats().events_read, 5);
    assert_eq!(r.stats().events_lost, 0);
}

#[test]
fn refusals_too_large_empty_not_increasing() {
    let (_mem, mut w) = heap(1024);
    assert_eq!(w.max_event(), 512);
    let e = w.write(1, &[0; 513]).unwrap_err();
    assert!(
        matches!(
            e,
            WriteError::TooLarge {
                len: 513,
                max: 512,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("at most 512 bytes"), "{e}");
    assert!(matches!(w.write(1, &[]), Err(WriteError::Empty { .. })));
    w.write(5, b"x").unwrap();
    let e = w.write(5, b"y").unwrap_err();
    assert!(
        matches!(
            e,
            WriteError::NotIncreasing {
                evnr: 5,
                last: 5,
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        w.write(4, b"y"),
        Err(WriteError::NotIncreasing { .. })
    ));
    w.write(6, b"y").unwrap();
    let s = w.stats();
    assert_eq!(s.events_refused, 1);
    assert_eq!(s.events_written, 2);
}

#[test]
fn event_number_zero_is_a_valid_first_event_and_only_once() {
    let mem = HeapStorage::for_capacity(4096);
    let mut w = CircWriter::on_storage(mem, &CircOptions::new(4096)).unwrap();
    w.write(0, b"first").unwrap();
    assert!(matches!(
        w.write(0, b"again"),
        Err(WriteError::NotIncreasing {
            evnr: 0,
            last: 0,
            ..
        })
    ));
    w.write(u64::MAX, b"last possible").unwrap();
    assert!(matches!(
        w.write(u64::MAX, b"no more"),
        Err(WriteError::NotIncreasing { .. })
    ));
    assert_eq!(w.stats().events_written, 2);
    assert_eq!(w.stats().last_evnr, Some(u64::MAX));
}

#[test]
fn bad_capacities_are_refused_with_the_rule() {
    for cap in [0u64, 8, 100, 1001] {
        let mem = HeapStorage::for_capacity(4096);
        let e = CircWriter::on_storage(mem, &CircOptions::new(cap)).unwrap_err();
        assert!(matches!(e, CreateError::BadCapacity { .. }), "{cap}: {e}");
    }
    let small = HeapStorage::with_len(4096 + 100);
    assert!(CircWriter::on_storage(small, &CircOptions::new(4096)).is_err());
}

#[test]
fn second_producer_on_same_storage_is_refused() {
    let (mem, _w) = heap(1024);
    let e = CircWriter::on_storage(mem, &CircOptions::new(1024)).unwrap_err();
    assert!(matches!(e, CreateError::AlreadyProduced { .. }), "{e}");
}

/// Every position of a record's end relative to the end of the ring: a first event moves the
/// write offset, the next ones of another size then end before, exactly at, or across the end
/// (implicit wrap for 8/16/24 bytes left, a padding record otherwise).
#[test]
fn wrap_around_at_every_offset_class() {
    let cap = 256u64;
    let max = (cap / 2) as usize;
    let step = if cfg!(miri) { 31 } else { 1 };
    let mut buf = vec![0u8; max];
    for first in (1..=max).step_by(step) {
        for size in (1..=max).step_by(step) {
            let (mem, mut w) = heap(cap);
            let mut r = SamplingReader::on_storage(mem.clone(), StartAt::Oldest).unwrap();
            let mut l = LosslessReader::on_storage(mem, StartAt::Oldest).unwrap();
            write_ev(&mut w, 1, first);
            for n in 1..=7u64 {
                if n > 1 {
                    write_ev(&mut w, n, size);
                }
                for ev in [r.try_read(&mut buf).unwrap(), l.try_read(&mut buf).unwrap()] {
                    assert_eq!(ev.evnr, n, "first {first} size {size}");
                    assert_eq!(ev.len, if n == 1 { first } else { size });
                    check(ev.evnr, &buf[..ev.len]);
                }
            }
            assert_eq!(r.try_read(&mut buf), Err(TryReadError::Empty));
            assert_eq!(r.stats().events_lost, 0);
            assert_eq!(r.stats().corrupt_records, 0);
            assert_eq!(l.stats().events_read, 7);
            assert_eq!(w.stats().readers_evicted, 0);
        }
    }
}

#[test]
fn events_of_exactly_half_the_capacity() {
    for cap in [64u64, 1000, 4096] {
        let (mem, mut w) = heap(cap);
        let half = (cap / 2) as usize;
        let mut r = LosslessReader::on_storage(mem, StartAt::Oldest).unwrap();
        let mut buf = vec![0u8; half];
        for n in 1..=20u64 {
            // alternate with small events so that the big ones land at every kind of offset
            write_ev(&mut w, 2 * n, half);
            let ev = r.try_read(&mut buf).unwrap();
            assert_eq!((ev.evnr, ev.len), (2 * n, half));
            check(ev.evnr, &buf[..ev.len]);
            write_ev(&mut w, 2 * n + 1, (n as usize * 7) % half + 1);
            let ev = r.try_read(&mut buf).unwrap();
            check(ev.evnr, &buf[..ev.len]);
        }
        assert!(matches!(
            w.write(1000, &vec![0; half + 1]),
            Err(WriteError::TooLarge { .. })
        ));
        assert_eq!(w.stats().events_refused, 1);
    }
}

#[test]
fn caller_buffer_too_small_loses_nothing() {
    let (mem, mut w) = heap(4096);
    let mut r = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
    write_ev(&mut w, 1, 100);
    write_ev(&mut w, 2, 10);
    let mut small = [0u8; 99];
    let e = r.try_read(&mut small).unwrap_err();
    assert_eq!(
        e,
        TryReadError::TooSmall(TooSmall {
            evnr: 1,
            needed: 100,
            given: 99
        })
    );
    assert!(e.to_string().contains("100 bytes"), "{e}");
    // again: still the same event
    assert!(matches!(
        r.try_read(&mut small),
        Err(TryReadError::TooSmall(_))
    ));
    let mut v = Vec::new();
    let ev = r.try_read_vec(&mut v).unwrap();
    assert_eq!((ev.evnr, v.len()), (1, 100));
    check(1, &v);
    assert_eq!(r.try_read(&mut small).unwrap().evnr, 2);
    assert_eq!(r.stats().events_lost, 0);
}

#[test]
fn refresh_jumps_to_the_freshest_event() {
    let (mem, mut w) = heap(4096);
    let mut r = SamplingReader::on_storage(mem.clone(), StartAt::Oldest).unwrap();
    for n in 1..=10u64 {
        write_ev(&mut w, n, 20);
    }
    let mut buf = [0u8; 64];
    assert_eq!(r.try_read(&mut buf).unwrap().evnr, 1);
    r.refresh();
    assert_eq!(r.try_read(&mut buf).unwrap().evnr, 10);
    assert_eq!(r.try_read(&mut buf), Err(TryReadError::Empty));
    assert_eq!(r.stats().events_lost, 0, "refresh skips on purpose");
    // The default start is the freshest event too, and Next waits for a new one.
    let mut latest = SamplingReader::on_storage(mem.clone(), StartAt::Latest).unwrap();
    assert_eq!(latest.try_read(&mut buf).unwrap().evnr, 10);
    let mut next = SamplingReader::on_storage(mem, StartAt::Next).unwrap();
    assert_eq!(next.try_read(&mut buf), Err(TryReadError::Empty));
    write_ev(&mut w, 11, 5);
    assert_eq!(next.try_read(&mut buf).unwrap().evnr, 11);
}

/// A sampling reader that is lapped skips to the oldest valid event, never returns an event
/// whose bytes were overwritten, and its read + lost add up to what was written.
#[test]
fn overrun_sampling_reader_skips_and_counts() {
    let (mem, mut w) = heap(2048);
    let mut r = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
    let mut buf = vec![0u8; 1024];
    let total = if cfg!(miri) { 300 } else { 20_000u64 };
    let mut last = 0;
    for n in 1..=total {
        write_ev(&mut w, n, size_of_event(n, 200));
        // read one event every 3 written: the reader falls behind and is lapped
        if n % 3 == 0 {
            if let Ok(ev) = r.try_read(&mut buf) {
                assert!(ev.evnr > last);
                last = ev.evnr;
                check(ev.evnr, &buf[..ev.len]);
            }
        }
    }
    while let Ok(ev) = r.try_read(&mut buf) {
        assert!(ev.evnr > last);
        last = ev.evnr;
        check(ev.evnr, &buf[..ev.len]);
    }
    assert_eq!(last, total);
    let s = r.stats();
    assert!(s.overruns > 0 && s.events_lost > 0, "{s:?}");
    assert_eq!(s.events_read + s.events_lost, total, "{s:?}");
    assert_eq!(s.corrupt_records, 0);
    assert!(w.stats().events_overwritten > 0);
}

#[test]
fn peek_in_place_and_detect_overwrite_during_use() {
    let (mem, mut w) = heap(1024);
    let mut r = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
    write_ev(&mut w, 1, 100);
    let ev = r.try_peek().unwrap();
    assert_eq!((ev.evnr(), ev.len()), (1, 100));
    check(1, ev.bytes());
    assert_eq!(ev.finish().unwrap().evnr, 1);
    write_ev(&mut w, 2, 100);
    // dropping without finish leaves the event next
    drop(r.try_peek().unwrap());
    let ev = r.try_peek().unwrap();
    assert_eq!(ev.evnr(), 2);
    // The producer laps the reader while it looks at event 2. (The guard borrows the reader,
    // not the writer; the test writes in between like another process would.)
    for n in 3..=30 {
        write_ev(&mut w, n, 100);
    }
    let e = ev.finish().unwrap_err();
    assert_eq!(e.evnr, 2);
    // the reader moved on to valid events
    let ev = r.try_peek().unwrap();
    let n = ev.evnr();
    assert!(n > 2);
    check(n, ev.bytes());
    ev.finish().unwrap();
}

#[test]
fn corrupt_records_are_skipped_never_returned() {
    let (mem, mut w) = heap(4096);
    let mut r = SamplingReader::on_storage(mem.clone(), StartAt::Oldest).unwrap();
    for n in 1..=20u64 {
        write_ev(&mut w, n, 50);
    }
    // Scribble over the ring, as a stray process might.
    let ring = mem.as_ptr().wrapping_add(DATA_OFFSET);
    let mut x = 0x1234_5678_u64;
    for i in 0..800 {
        x = super::layout::fmix64(x);
        // SAFETY: within the heap storage's ring; single-threaded test.
        unsafe { *ring.add(200 + i) = x as u8 };
    }
    let mut buf = vec![0u8; 4096];
    let mut got = vec![];
    while let Ok(ev) = r.try_read(&mut buf) {
        let mut want = vec![0u8; ev.len];
        fill(ev.evnr, &mut want);
        if buf[..ev.len] == want[..] {
            got.push(ev.evnr);
        } else {
            // a payload hit by the junk while its header survived: the format cannot tell
            // (payloads carry no checksum), but the header fields must be coherent
            assert_eq!(ev.len, 50);
        }
    }
    assert!(r.stats().corrupt_records >= 1, "{:?}", r.stats());
    assert!(got.windows(2).all(|p| p[0] < p[1]));
    // The writer goes on over the damage and the reader follows.
    for n in 21..=200u64 {
        write_ev(&mut w, n, 50);
    }
    let mut last = 0;
    while let Ok(ev) = r.try_read(&mut buf) {
        check(ev.evnr, &buf[..ev.len]);
        last = ev.evnr;
    }
    assert_eq!(last, 200);
}

#[test]
fn lossless_reader_sees_everything_across_threads() {
    let (mem, mut w) = heap(8192);
    let mut r = LosslessReader::on_storage(mem, StartAt::Oldest).unwrap();
    let total = if cfg!(miri) { 200 } else { 100_000u64 };
    let t = std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        for n in 1..=total {
            let ev = r.read(&mut buf).unwrap();
            assert_eq!(ev.evnr, n);
            check(n, &buf[..ev.len]);
        }
        r.stats()
    });
    for n in 1..=total {
        write_ev(&mut w, n, size_of_event(n, 700));
    }
    let s = t.join().unwrap();
    assert_eq!((s.events_read, s.events_lost), (total, 0));
    assert_eq!(w.stats().readers_evicted, 0);
}

#[test]
fn stuck_lossless_reader_is_evicted_after_the_timeout_and_can_rejoin() {
    let mem = HeapStorage::for_capacity(1024);
    let opts = CircOptions::new(1024).lossless_timeout(Duration::from_millis(50));
    let mut w = CircWriter::on_storage(mem.clone(), &opts).unwrap();
    let mut r = LosslessReader::on_storage(mem, StartAt::Oldest).unwrap();
    assert_eq!(w.stats().lossless_readers, 1);
    // the reader never reads: the writer must not block for more than the timeout
    for n in 1..=100u64 {
        write_ev(&mut w, n, 100);
    }
    let s = w.stats();
    assert_eq!(s.readers_evicted, 1);
    assert_eq!(s.lossless_readers, 0);
    let mut buf = [0u8; 256];
    let e = r.try_read(&mut buf).unwrap_err();
    assert!(matches!(e, TryReadError::Evicted(_)), "{e:?}");
    assert!(e.to_string().contains("rejoin"), "{e}");
    assert!(
        matches!(r.try_read(&mut buf), Err(TryReadError::Evicted(_))),
        "evicted stays evicted"
    );
    r.rejoin().unwrap();
    let mut last = 0;
    while let Ok(ev) = r.try_read(&mut buf) {
        check(ev.evnr, &buf[..ev.len]);
        last = ev.evnr;
    }
    assert_eq!(last, 100);
    assert!(r.stats().events_lost > 0 || r.stats().events_read < 100);
}

#[test]
fn blocking_reads_wake_up_time_out_and_end() {
    let (mem, mut w) = heap(4096);
    let mut r = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        r.read_timeout(&mut buf, Duration::from_millis(20)),
        Err(ReadTimeoutError::Timeout)
    );
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let a = r.read(&mut buf).unwrap().evnr;
        let b = r.read(&mut buf).unwrap().evnr;
        // the producer closes: what is left is read, then the end is reported
        let end = r.read(&mut buf).unwrap_err();
        (a, b, end)
    });
    std::thread::sleep(Duration::from_millis(30));
    write_ev(&mut w, 1, 8);
    std::thread::sleep(Duration::from_millis(30));
    write_ev(&mut w, 2, 8);
    drop(w);
    let (a, b, end) = t.join().unwrap();
    assert_eq!((a, b), (1, 2));
    match end {
        ReadError::ProducerGone(g) => assert!(g.closed && !g.recreated, "{g}"),
        e => panic!("{e:?}"),
    }
}

// Under Miri this test reports the data race the design accepts (module doc, "Safety"): a
// lapped sampling reader copies bytes the producer is rewriting, and discards the copy after the
// `tail` re-check. Miri runs every other test here.
#[test]
#[cfg_attr(miri, ignore)]
fn sampling_reader_in_a_thread_never_returns_a_torn_event() {
    let (mem, mut w) = heap(1 << 14);
    let mut r = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
    let total = if cfg!(miri) { 100 } else { 200_000u64 };
    let t = std::thread::spawn(move || {
        let mut buf = vec![0u8; 8192];
        let mut last = 0;
        loop {
            match r.read(&mut buf) {
                Ok(ev) => {
                    assert!(ev.evnr > last);
                    last = ev.evnr;
                    check(ev.evnr, &buf[..ev.len]);
                }
                Err(ReadError::ProducerGone(_)) => break,
                Err(e) => panic!("{e}"),
            }
        }
        (last, r.stats())
    });
    for n in 1..=total {
        write_ev(&mut w, n, size_of_event(n, 3000));
    }
    drop(w);
    let (last, s) = t.join().unwrap();
    assert_eq!(last, total);
    assert_eq!(s.events_read + s.events_lost, total, "{s:?}");
}

#[test]
fn reader_activity_tells_who_reads_and_how_far() {
    let (mem, mut w) = heap(1 << 16);
    let within = Duration::from_secs(2);
    assert_eq!(w.reader_activity(within).active, 0);
    for e in 1..=10 {
        write_ev(&mut w, e, 100);
    }
    let mut r = SamplingReader::on_storage(mem.clone(), StartAt::Oldest).unwrap();
    let a = w.reader_activity(within);
    assert_eq!(a.active, 1);
    assert_eq!(a.consumed_to, Some(0));
    let mut buf = vec![0u8; 200];
    while r.try_read(&mut buf).is_ok() {}
    // Found the buffer empty: it published how far it got.
    let a = w.reader_activity(within);
    assert_eq!(a.consumed_to, Some(a.head));
    let mut r2 = LosslessReader::on_storage(mem.clone(), StartAt::Oldest).unwrap();
    assert_eq!(w.reader_activity(within).active, 2);
    assert!(r2.try_read(&mut buf).is_ok());
    drop(r);
    drop(r2);
    assert_eq!(w.reader_activity(within).active, 0);
    // A reader silent for longer than the window does not count.
    let _r3 = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
    assert_eq!(w.reader_activity(Duration::ZERO).active, 0);
}

/// A reader working through a backlog slowly (it never finds the buffer empty) still refreshes
/// its activity entry once 100 ms have passed, at its next event: a producer that counts the
/// readers of the last moments sees it.
#[test]
fn a_slow_reader_with_a_backlog_stays_active() {
    let (mem, mut w) = heap(1 << 16);
    for e in 1..=50 {
        write_ev(&mut w, e, 100);
    }
    let mut r = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
    let mut buf = vec![0u8; 200];
    let within = Duration::from_millis(120);
    let mut before = None;
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(w.reader_activity(within).active, 0, "silent for 250 ms");
        r.try_read(&mut buf).unwrap();
        let a = w.reader_activity(within);
        assert_eq!(a.active, 1, "the read after 250 ms refreshed the entry");
        // (The position published is the one before the event being consumed.)
        if i > 0 {
            assert!(
                a.consumed_to > before,
                "{:?} after {before:?}",
                a.consumed_to
            );
        }
        before = a.consumed_to;
    }
}

/// A damaged (or hostile) header with positions that are not multiples of 8: readers never read a
/// record header at an unaligned offset (a debug build checks every such access), they only
/// find no valid record there and resynchronise.
#[test]
fn unaligned_positions_in_the_header_are_never_used_as_offsets() {
    let (mem, mut w) = heap(4096);
    for n in 1..=20u64 {
        write_ev(&mut w, n, 40);
    }
    let h = w.header();
    let (tail, head, last) = (
        h.tail.load(std::sync::atomic::Ordering::Relaxed),
        h.head.load(std::sync::atomic::Ordering::Relaxed),
        h.last.load(std::sync::atomic::Ordering::Relaxed),
    );
    h.tail.store(tail + 3, std::sync::atomic::Ordering::Relaxed);
    h.last.store(last + 5, std::sync::atomic::Ordering::Relaxed);
    let mut buf = vec![0u8; 2048];
    for start in [StartAt::Oldest, StartAt::Latest, StartAt::Next] {
        let mut r = SamplingReader::on_storage(mem.clone(), start).unwrap();
        for _ in 0..25 {
            match r.try_read(&mut buf) {
                Ok(ev) => check(ev.evnr, &buf[..ev.len]),
                Err(_) => break,
            }
        }
    }
    // Lossless readers register at the (damaged) tail too.
    let mut l = LosslessReader::on_storage(mem.clone(), StartAt::Oldest).unwrap();
    let _ = l.try_read(&mut buf);
    h.tail.store(head - 1, std::sync::atomic::Ordering::Relaxed);
    let mut r = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
    let _ = r.try_read(&mut buf);
}

#[test]
fn expired_events_are_skipped_and_counted_as_lost() {
    let (mem, mut w) = heap(1 << 16);
    let mut r = SamplingReader::on_storage(mem.clone(), StartAt::Oldest).unwrap();
    let mut buf = vec![0u8; 1024];
    for n in 1..=10 {
        write_ev(&mut w, n, 100);
    }
    assert_eq!(r.try_read(&mut buf).unwrap().evnr, 1);
    let mark = w.position();
    for n in 11..=15 {
        write_ev(&mut w, n, 100);
    }
    // Everything written up to the mark goes: the reader skips 2..=10.
    assert_eq!(w.expire_before(mark), 10);
    assert_eq!(w.expire_before(mark), 0, "nothing more to expire");
    let ev = r.try_read(&mut buf).unwrap();
    assert_eq!(ev.evnr, 11);
    check(ev.evnr, &buf[..ev.len]);
    assert_eq!(r.stats().events_lost, 9);
    // Expiring all of it leaves the buffer empty until the next event.
    assert_eq!(w.expire_before(w.position()), 5);
    assert!(matches!(r.try_read(&mut buf), Err(TryReadError::Empty)));
    write_ev(&mut w, 16, 100);
    assert_eq!(r.try_read(&mut buf).unwrap().evnr, 16);
    // A new reader starting at the oldest starts after what expired.
    let mut r2 = SamplingReader::on_storage(mem, StartAt::Oldest).unwrap();
    assert_eq!(r2.try_read(&mut buf).unwrap().evnr, 16);
}

/// Reads what a new reader from the oldest event gets: (first event number, how many).
fn what_is_left(mem: &HeapStorage) -> (Option<u64>, u64) {
    let mut r = SamplingReader::on_storage(mem.clone(), StartAt::Oldest).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let (mut first, mut n) = (None, 0);
    while let Ok(ev) = r.try_read(&mut buf) {
        check(ev.evnr, &buf[..ev.len]);
        first.get_or_insert(ev.evnr);
        n += 1;
    }
    (first, n)
}

#[test]
fn expiry_is_exact_at_any_position_though_few_record_starts_are_kept() {
    // A 64 KiB ring keeps one record start per 256 bytes or so; events of 1..300 bytes
    // wrap it several times (with end-of-ring padding of every size class).
    let (mem, mut w) = heap(1 << 16);
    let mut starts = vec![]; // (position before the event, its number)
    let mut evnr = 0;
    let mut rng = crate::circ::layout::fmix64(7);
    for round in 0..40u64 {
        for _ in 0..(50 + round % 7 * 30) {
            evnr += 1;
            starts.push((w.position(), evnr));
            write_ev(&mut w, evnr, size_of_event(evnr, 300));
        }
        // What is in the ring now: a new reader tells, and so do the counters.
        let (first, n) = what_is_left(&mem);
        let first = first.unwrap();
        assert_eq!(n, evnr - first + 1);
        assert_eq!(w.stats().events_overwritten, first - 1, "round {round}");
        // Expire up to a position: a record start, or a few bytes past one.
        rng = crate::circ::layout::fmix64(rng);
        let in_ring: Vec<_> = starts.iter().filter(|&&(_, e)| e >= first).collect();
        let &(pos, e) = in_ring[(rng % in_ring.len() as u64) as usize];
        let (mark, want_first) = if round % 3 == 0 {
            (pos + 8 + rng % 16 / 8 * 8, e + 1)
        } else {
            (pos, e)
        };
        let expired = w.expire_before(mark);
        assert_eq!(expired, want_first - first, "round {round}: mark {mark}");
        let (first2, n2) = what_is_left(&mem);
        assert_eq!(first2.unwrap_or(evnr + 1), want_first, "round {round}");
        assert_eq!(n2, evnr + 1 - want_first);
        assert_eq!(w.stats().events_overwritten, want_first - 1);
    }
}

#[test]
fn a_damaged_header_makes_expiry_stop_short_never_go_further() {
    let (mem, mut w) = heap(1 << 16);
    let mut pos = vec![];
    for n in 1..=100u64 {
        pos.push(w.position());
        write_ev(&mut w, n, 40);
    }
    // 72-byte records, a start kept every 256 bytes: events 1, 5, 9, 13 ... are kept. Damage
    // the header of event 11; expiring to the middle of event 12 walks the headers from the
    // kept start of event 9 and stops at the damage: events 1-10 go, nothing from 11 on.
    let ring = mem.as_ptr().wrapping_add(DATA_OFFSET);
    // SAFETY: within the heap storage's ring (event 11's header); single-threaded test.
    unsafe { *ring.add(pos[10] as usize + 9) ^= 0x40 };
    assert_eq!(w.expire_before(pos[11] + 16), 10);
    assert_eq!(w.stats().events_overwritten, 10);
    // A record start past the damage is found directly.
    assert_eq!(w.expire_before(pos[20]), 10);
    let (first, n) = what_is_left(&mem);
    assert_eq!((first, n), (Some(21), 80));
    // An unaligned position expires the event it falls in, and no more; past the head, all.
    assert_eq!(w.expire_before(pos[20] + 3), 1);
    assert_eq!(what_is_left(&mem), (Some(22), 79));
    assert_eq!(w.expire_before(u64::MAX), 79);
    assert_eq!(what_is_left(&mem), (None, 0));
    assert_eq!(w.stats().events_overwritten, 100);
}
