//! Synthetic, self-checking event payloads: what `evgen` writes and what `spycat --verify`, the
//! spy daemons' tests and the benchmarks check, byte for byte.
//!
//! A payload of `len` bytes (at least [`HEADER_LEN`], at most [`MAX_LEN`]) is
//!
//! ```text
//! offset 0   u64 LE  event number
//! offset 8   u32 LE  len: the payload's total size, header included
//! offset 12  u32 LE  check: 32-bit hash of (event number, len, body)
//! offset 16  body    little-endian words from four xorshift64 generators seeded from the
//!                    event number (word i from generator i % 4), the last word cut to fit
//! ```
//!
//! A consumer that knows nothing of the generator checks the header and the `check` hash
//! ([`check`]); one that knows the expected event number regenerates the body and compares every
//! byte ([`verify`]). Both run a word (8 bytes) at a time, so they keep up with millions of small
//! events per second. This module owns only the format: it never touches a buffer.

use thiserror::Error;

/// Bytes of the payload header (event number, length, check).
pub const HEADER_LEN: usize = 16;
/// Smallest payload: the header alone.
pub const MIN_LEN: usize = HEADER_LEN;
/// Largest payload: the length field is 32 bits.
pub const MAX_LEN: usize = u32::MAX as usize;

/// A payload failed a check. Every variant names the event it was read as.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayloadError {
    /// Shorter than the header.
    #[error("event {evnr}: payload of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort {
        /// The event number the payload was read as.
        evnr: u64,
        /// Its size.
        len: usize,
    },
    /// The header carries another event number.
    #[error("event {evnr}: payload header says event {found}")]
    WrongEvnr {
        /// The event number the payload was read as.
        evnr: u64,
        /// The number in the header.
        found: u64,
    },
    /// The header's length is not the payload's size.
    #[error("event {evnr}: payload has {len} bytes, its header says {found}")]
    WrongLength {
        /// The event number the payload was read as.
        evnr: u64,
        /// Its size.
        len: usize,
        /// The length in the header.
        found: u32,
    },
    /// The check hash does not match the bytes.
    #[error("event {evnr}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadChecksum {
        /// The event number the payload was read as.
        evnr: u64,
        /// The check in the header.
        stored: u32,
        /// The check of the bytes received.
        computed: u32,
    },
    /// The body differs from what the generator makes for this event.
    #[error("event {evnr}: byte {offset} of {len} differs from the generated payload")]
    Content {
        /// The event number the payload was read as.
        evnr: u64,
        /// Its size.
        len: usize,
        /// The first differing byte.
        offset: usize,
    },
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Word `i` of the body comes from generator (and feeds hash lane) `i % LANES`: four
/// independent dependency chains, so generating and checking run several words at a time.
const LANES: usize = 4;

/// The generators' states for event `evnr` (never zero: xorshift would stay at zero).
#[inline]
fn seeds(evnr: u64) -> [u64; LANES] {
    let mut x = [0u64; LANES];
    for (k, s) in x.iter_mut().enumerate() {
        *s = fmix64(evnr.wrapping_add(K).wrapping_add((k as u64) << 56)) | 1;
    }
    x
}

#[inline]
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[inline]
fn hash_start(evnr: u64, len: u32) -> [u64; LANES] {
    let h = fmix64(evnr ^ (u64::from(len) << 32 | 0x5e4d)) ^ K;
    let mut l = [0u64; LANES];
    for (k, v) in l.iter_mut().enumerate() {
        *v = h ^ (k as u64).wrapping_mul(K);
    }
    l
}

#[inline]
fn hash_step(h: u64, w: u64) -> u64 {
    (h.rotate_left(23) ^ w).wrapping_mul(K)
}

#[inline]
fn hash_end(l: [u64; LANES]) -> u32 {
    let mut h = l[0];
    for v in &l[1..] {
        h = hash_step(h, fmix64(*v));
    }
    let h = fmix64(h);
    (h ^ (h >> 32)) as u32
}

/// The body's last, partial word as a zero-padded little-endian word.
#[inline]
fn tail_word(tail: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..tail.len()].copy_from_slice(tail);
    u64::from_le_bytes(w)
}

/// Fills `buf` with the payload of event `evnr` (its size is `buf.len()`).
///
/// # Panics
/// If `buf` is shorter than [`MIN_LEN`] or longer than [`MAX_LEN`].
///
/// # Examples
/// ```
/// use daqproc::payload::{fill, verify};
/// let mut ev = vec![0u8; 100];
/// fill(7, &mut ev);
/// assert_eq!(verify(7, &ev), Ok(()));
/// ev[50] ^= 1;
/// assert!(verify(7, &ev).is_err());
/// ```
pub fn fill(evnr: u64, buf: &mut [u8]) {
    assert!(
        (MIN_LEN..=MAX_LEN).contains(&buf.len()),
        "a payload has {MIN_LEN} to {MAX_LEN} bytes, not {}",
        buf.len()
    );
    let len = buf.len() as u32;
    let (head, body) = buf.split_at_mut(HEADER_LEN);
    let mut x = seeds(evnr);
    let mut h = hash_start(evnr, len);
    let mut blocks = body.chunks_exact_mut(8 * LANES);
    for b in &mut blocks {
        for (k, c) in b.chunks_exact_mut(8).enumerate() {
            let w = next(&mut x[k]);
            c.copy_from_slice(&w.to_le_bytes());
            h[k] = hash_step(h[k], w);
        }
    }
    let rest = blocks.into_remainder();
    let mut k = 0;
    let mut words = rest.chunks_exact_mut(8);
    for c in &mut words {
        let w = next(&mut x[k]);
        c.copy_from_slice(&w.to_le_bytes());
        h[k] = hash_step(h[k], w);
        k += 1;
    }
    let tail = words.into_remainder();
    if !tail.is_empty() {
        let w = next(&mut x[k]);
        let n = tail.len();
        tail.copy_from_slice(&w.to_le_bytes()[..n]);
        h[k] = hash_step(h[k], tail_word(tail));
    }
    head[0..8].copy_from_slice(&evnr.to_le_bytes());
    head[8..12].copy_from_slice(&len.to_le_bytes());
    head[12..16].copy_from_slice(&hash_end(h).to_le_bytes());
}

/// A new payload of `len` bytes for event `evnr`.
///
/// # Panics
/// As [`fill`].
pub fn make(evnr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(evnr, &mut v);
    v
}

/// The header fields of a payload: event number, length, check. `None` if it is shorter than
/// the header.
pub fn header(data: &[u8]) -> Option<(u64, u32, u32)> {
    let h = data.get(..HEADER_LEN)?;
    Some((
        u64::from_le_bytes(h[0..8].try_into().ok()?),
        u32::from_le_bytes(h[8..12].try_into().ok()?),
        u32::from_le_bytes(h[12..16].try_into().ok()?),
    ))
}

fn check_header(evnr: Option<u64>, data: &[u8]) -> Result<(u64, u32, u32), PayloadError> {
    let Some((found, len, stored)) = header(data) else {
        return Err(PayloadError::TooShort {
            evnr: evnr.unwrap_or(0),
            len: data.len(),
        });
    };
    let evnr = evnr.unwrap_or(found);
    if found != evnr {
        return Err(PayloadError::WrongEvnr { evnr, found });
    }
    if len as usize != data.len() {
        return Err(PayloadError::WrongLength {
            evnr,
            len: data.len(),
            found: len,
        });
    }
    Ok((evnr, len, stored))
}

/// Checks a payload without knowing which event it should be: its header is consistent with its
/// size and its check hash matches. Returns the event number in the header.
///
/// # Errors
/// [`PayloadError::TooShort`], [`PayloadError::WrongLength`], [`PayloadError::BadChecksum`].
pub fn check(data: &[u8]) -> Result<u64, PayloadError> {
    let (evnr, len, stored) = check_header(None, data)?;
    let mut h = hash_start(evnr, len);
    let body = &data[HEADER_LEN..];
    let mut blocks = body.chunks_exact(8 * LANES);
    for b in &mut blocks {
        for (k, c) in b.chunks_exact(8).enumerate() {
            h[k] = hash_step(h[k], u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
    }
    let mut k = 0;
    let mut words = blocks.remainder().chunks_exact(8);
    for c in &mut words {
        h[k] = hash_step(h[k], u64::from_le_bytes(c.try_into().expect("8 bytes")));
        k += 1;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        h[k] = hash_step(h[k], tail_word(tail));
    }
    let computed = hash_end(h);
    if computed != stored {
        return Err(PayloadError::BadChecksum {
            evnr,
            stored,
            computed,
        });
    }
    Ok(evnr)
}

/// Verifies that `data` is exactly the payload [`fill`] makes for event `evnr` at its size:
/// header, check hash and every byte of the body.
///
/// # Errors
/// The first failed check, as a [`PayloadError`] naming the event.
pub fn verify(evnr: u64, data: &[u8]) -> Result<(), PayloadError> {
    let (_, len, stored) = check_header(Some(evnr), data)?;
    let mut x = seeds(evnr);
    let mut h = hash_start(evnr, len);
    let mut first_bad = None;
    let body = &data[HEADER_LEN..];
    let mut note = |at: usize, got: u64, want: u64| {
        if got != want && first_bad.is_none() {
            first_bad = Some(at + ((got ^ want).trailing_zeros() / 8) as usize);
        }
    };
    let mut blocks = body.chunks_exact(8 * LANES);
    let mut at = 0;
    for b in &mut blocks {
        for (k, c) in b.chunks_exact(8).enumerate() {
            let got = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            let want = next(&mut x[k]);
            if got != want {
                note(at + 8 * k, got, want);
            }
            h[k] = hash_step(h[k], got);
        }
        at += 8 * LANES;
    }
    let mut k = 0;
    let mut words = blocks.remainder().chunks_exact(8);
    for c in &mut words {
        let got = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        note(at, got, next(&mut x[k]));
        h[k] = hash_step(h[k], got);
        at += 8;
        k += 1;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let got = tail_word(tail);
        let want = tail_word(&next(&mut x[k]).to_le_bytes()[..tail.len()]);
        note(at, got, want);
        h[k] = hash_step(h[k], got);
    }
    let computed = hash_end(h);
    if computed != stored {
        return Err(PayloadError::BadChecksum {
            evnr,
            stored,
            computed,
        });
    }
    match first_bad {
        Some(off) => Err(PayloadError::Content {
            evnr,
            len: data.len(),
            offset: HEADER_LEN + off,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_round_trips_and_every_flipped_byte_is_caught() {
        for len in MIN_LEN..80 {
            let ev = make(42, len);
            assert_eq!(verify(42, &ev), Ok(()), "len {len}");
            assert_eq!(check(&ev), Ok(42));
            for i in 0..len {
                let mut bad = ev.clone();
                bad[i] ^= 0x10;
                assert!(verify(42, &bad).is_err(), "len {len}, byte {i}");
            }
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let ev = make(5, 64);
        assert_eq!(
            verify(6, &ev),
            Err(PayloadError::WrongEvnr { evnr: 6, found: 5 })
        );
        assert!(matches!(
            verify(5, &ev[..63]),
            Err(PayloadError::WrongLength { found: 64, .. })
        ));
        assert!(matches!(
            verify(5, &ev[..10]),
            Err(PayloadError::TooShort { len: 10, .. })
        ));
        // A body that is consistent with its checksum but not the generator's.
        let mut forged = ev.clone();
        forged[40] ^= 0xff;
        let mut h = hash_start(5, 64);
        for (i, c) in forged[HEADER_LEN..].chunks_exact(8).enumerate() {
            h[i % LANES] = hash_step(h[i % LANES], u64::from_le_bytes(c.try_into().unwrap()));
        }
        forged[12..16].copy_from_slice(&hash_end(h).to_le_bytes());
        assert_eq!(check(&forged), Ok(5));
        assert_eq!(
            verify(5, &forged),
            Err(PayloadError::Content {
                evnr: 5,
                len: 64,
                offset: 40
            })
        );
    }

    #[test]
    fn different_events_differ() {
        assert_ne!(make(1, 64)[HEADER_LEN..], make(2, 64)[HEADER_LEN..]);
    }
}
