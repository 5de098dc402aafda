//! Synthetic, self-checking event payloads: what `evgen` writes and what `spycat --verify`, the
//! spy daemons' tests and the benchmarks check, byte for byte.
//!
//! A payload of `len` bytes (at least [`HEADER_LEN`], at most [`MAX_LEN`]) is
//!
//! ```text
//! offset 0   u64 LE  event number
//! offset 8   u32 LE  len: the payload's total size, header included
//! offset 12  u32 LE  check: 32-bit hash of (event number, len, Fletcher sums of the body)
//! offset 16  body    little-endian words w[i] = start + i * STEP (mod 2^64), where
//!                    start = fmix64(event number ^ START_SALT); the last word cut to fit
//! ```
//!
//! A consumer that knows nothing of the generator checks the header and the `check` hash
//! ([`check`]); one that knows the expected event number regenerates the body and compares every
//! byte ([`verify`]). The format is built for speed, so that checking every byte of every event
//! costs a consumer about as much as reading it: the body is an arithmetic progression (one
//! addition per word, which the compiler vectorises), the check uses only additions over the
//! words (a Fletcher-style pair of sums), and for a generated body both sums have a closed form,
//! so [`fill`] and [`verify`] never hash the body at all. This module owns only the format: it
//! never touches a buffer.

pub use shvars::circ::fmix64;
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

/// Increment between consecutive body words (odd, so the words of one payload never repeat).
pub const STEP: u64 = 0x9e37_79b9_7f4a_7c15;
/// Salt of the first body word.
pub const START_SALT: u64 = 0x5350_5942_4f44_5931; // "1YDOBYPS"
/// Salt of the check.
pub const CHECK_SALT: u64 = 0x4b43_4548_4359_5053; // "SPYCHECK"

/// The first body word of event `evnr`.
#[inline]
pub const fn start_word(evnr: u64) -> u64 {
    fmix64(evnr ^ START_SALT)
}

/// The 32-bit check of a payload from its event number, its length and the two sums of its
/// body words (`a = sum of w[i]`, `b = sum of (n - i) * w[i]` over the `n` words, the last partial
/// word zero-padded, all modulo 2^64).
#[inline]
pub const fn check_value(evnr: u64, len: u32, a: u64, b: u64) -> u32 {
    let h = fmix64(evnr ^ ((len as u64) << 32) ^ CHECK_SALT);
    let h = fmix64(h ^ a);
    let h = fmix64(h ^ b);
    (h ^ (h >> 32)) as u32
}

/// The body's last, partial word as a zero-padded little-endian word.
#[inline]
fn tail_word(tail: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..tail.len()].copy_from_slice(tail);
    u64::from_le_bytes(w)
}

/// The sums (a, b) of a body as stored: `a += w; b += a` over its words.
#[inline]
fn sums(body: &[u8]) -> (u64, u64) {
    let (mut a, mut b) = (0u64, 0u64);
    let mut words = body.chunks_exact(8);
    for c in &mut words {
        a = a.wrapping_add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        b = b.wrapping_add(a);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        a = a.wrapping_add(tail_word(tail));
        b = b.wrapping_add(a);
    }
    (a, b)
}

/// The sums (a, b) of the generated body of `body_len` bytes starting at `start`, in closed
/// form: with `m` full words, `n` words in all and `t` the zero-padded last partial word (0 if
/// none), `a = m*start + STEP*m(m-1)/2 + t` and
/// `b = start*(m*n - m(m-1)/2) + STEP*(n*m(m-1)/2 - (m-1)m(2m-1)/6) + t`.
#[inline]
fn generated_sums(start: u64, body_len: usize) -> (u64, u64) {
    let m = (body_len / 8) as u128;
    let rest = body_len % 8;
    let n = m + u128::from(rest != 0);
    let t = if rest == 0 {
        0
    } else {
        let last = start.wrapping_add((m as u64).wrapping_mul(STEP));
        last & (u64::MAX >> (64 - 8 * rest))
    };
    let tri = if m == 0 { 0 } else { m * (m - 1) / 2 };
    let sq = if m == 0 {
        0
    } else {
        (m - 1) * m * (2 * m - 1) / 6
    };
    let (s, k) = (u128::from(start), u128::from(STEP));
    let a = (m.wrapping_mul(s) as u64)
        .wrapping_add(tri.wrapping_mul(k) as u64)
        .wrapping_add(t);
    let b = ((m * n - tri).wrapping_mul(s) as u64)
        .wrapping_add((n * tri - sq).wrapping_mul(k) as u64)
        .wrapping_add(t);
    (a, b)
}

/// Fills `buf` with the payload of event `evnr` (its size is `buf.len()`).
///
/// # Panics
/// If `buf` is shorter than [`MIN_LEN`] or longer than [`MAX_LEN`].
///
/// # Examples
/// ```
/// use daqproc::daemons::payload::{fill, verify};
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
    let start = start_word(evnr);
    let mut w = start;
    let mut words = body.chunks_exact_mut(8);
    for c in &mut words {
        c.copy_from_slice(&w.to_le_bytes());
        w = w.wrapping_add(STEP);
    }
    let tail = words.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&w.to_le_bytes()[..n]);
    let (a, b) = generated_sums(start, body.len());
    head[0..8].copy_from_slice(&evnr.to_le_bytes());
    head[8..12].copy_from_slice(&len.to_le_bytes());
    head[12..16].copy_from_slice(&check_value(evnr, len, a, b).to_le_bytes());
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
    let (a, b) = sums(&data[HEADER_LEN..]);
    let computed = check_value(evnr, len, a, b);
    if computed != stored {
        return Err(PayloadError::BadChecksum {
            evnr,
            stored,
            computed,
        });
    }
    Ok(evnr)
}

/// Compares `body` with the generated words from `start`: true if every byte matches. One
/// addition, one xor and one or per word, in blocks the compiler vectorises.
#[inline]
fn body_matches(start: u64, body: &[u8]) -> bool {
    const LANES: usize = 4;
    let mut want = [0u64; LANES];
    for (k, w) in want.iter_mut().enumerate() {
        *w = start.wrapping_add((k as u64).wrapping_mul(STEP));
    }
    let step4 = STEP.wrapping_mul(LANES as u64);
    let mut diff = [0u64; LANES];
    let mut blocks = body.chunks_exact(8 * LANES);
    for blk in &mut blocks {
        for k in 0..LANES {
            let got = u64::from_le_bytes(blk[8 * k..8 * k + 8].try_into().expect("8 bytes"));
            diff[k] |= got ^ want[k];
            want[k] = want[k].wrapping_add(step4);
        }
    }
    let mut w = want[0];
    let mut d = diff.iter().fold(0, |x, y| x | y);
    let mut words = blocks.remainder().chunks_exact(8);
    for c in &mut words {
        d |= u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ w;
        w = w.wrapping_add(STEP);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        d |= tail_word(tail) ^ tail_word(&w.to_le_bytes()[..tail.len()]);
    }
    d == 0
}

/// The offset in `body` of the first byte that differs from the generated words.
fn first_difference(start: u64, body: &[u8]) -> Option<usize> {
    let mut w = start;
    for (i, c) in body.chunks(8).enumerate() {
        let want = w.to_le_bytes();
        if let Some(j) = c.iter().zip(want).position(|(g, x)| *g != x) {
            return Some(8 * i + j);
        }
        w = w.wrapping_add(STEP);
    }
    None
}

/// Verifies that `data` is exactly the payload [`fill`] makes for event `evnr` at its size:
/// header, check hash and every byte of the body.
///
/// # Errors
/// The first failed check, as a [`PayloadError`] naming the event.
pub fn verify(evnr: u64, data: &[u8]) -> Result<(), PayloadError> {
    let (_, len, stored) = check_header(Some(evnr), data)?;
    let body = &data[HEADER_LEN..];
    let start = start_word(evnr);
    if !body_matches(start, body) {
        let off = first_difference(start, body).unwrap_or(0);
        return Err(PayloadError::Content {
            evnr,
            len: data.len(),
            offset: HEADER_LEN + off,
        });
    }
    // The body is the generated one, so its sums are the closed-form ones.
    let (a, b) = generated_sums(start, body.len());
    let computed = check_value(evnr, len, a, b);
    if computed != stored {
        return Err(PayloadError::BadChecksum {
            evnr,
            stored,
            computed,
        });
    }
    Ok(())
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
        let (a, b) = sums(&forged[HEADER_LEN..]);
        forged[12..16].copy_from_slice(&check_value(5, 64, a, b).to_le_bytes());
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
    fn a_damaged_check_is_reported_as_such() {
        let mut ev = make(9, 1000);
        ev[13] ^= 0x01;
        assert!(matches!(
            verify(9, &ev),
            Err(PayloadError::BadChecksum { evnr: 9, .. })
        ));
        assert!(matches!(check(&ev), Err(PayloadError::BadChecksum { .. })));
    }

    #[test]
    fn closed_form_sums_equal_the_sums_of_the_bytes() {
        let mut sizes: Vec<usize> = (MIN_LEN..400).collect();
        sizes.extend([4096, 4099, 65536, 65541, 1 << 20, (1 << 20) + 7]);
        for (i, &len) in sizes.iter().enumerate() {
            let evnr = (i as u64).wrapping_mul(0x1234_5678_9abc_def1);
            let ev = make(evnr, len);
            assert_eq!(
                generated_sums(start_word(evnr), len - HEADER_LEN),
                sums(&ev[HEADER_LEN..]),
                "len {len}"
            );
            assert_eq!(check(&ev), Ok(evnr), "len {len}");
            assert_eq!(verify(evnr, &ev), Ok(()), "len {len}");
        }
    }

    #[test]
    fn a_damaged_byte_anywhere_in_a_large_payload_is_found() {
        let ev = make(77, 65536 + 5);
        for off in [16, 17, 23, 24, 31, 32, 4095, 4096, 40_000, 65536 + 4] {
            let mut bad = ev.clone();
            bad[off] = bad[off].wrapping_add(1);
            assert_eq!(
                verify(77, &bad),
                Err(PayloadError::Content {
                    evnr: 77,
                    len: ev.len(),
                    offset: off
                }),
                "offset {off}"
            );
            assert!(check(&bad).is_err(), "offset {off}");
        }
    }

    /// The example in docs/tools.md, byte for byte.
    #[test]
    fn the_documented_example() {
        let want: [u8; 27] = [
            0x01, 0, 0, 0, 0, 0, 0, 0, 0x1b, 0, 0, 0, 0xe8, 0x50, 0x4b, 0x37, 0x6c, 0x38, 0x91,
            0x42, 0x1c, 0xd2, 0x77, 0x94, 0x81, 0xb4, 0xdb,
        ];
        assert_eq!(make(1, 27), want);
        assert_eq!(start_word(1), 0x9477_d21c_4291_386c);
        assert_eq!(start_word(1).wrapping_add(STEP), 0x32af_4bd5_c1db_b481);
    }

    #[test]
    fn different_events_differ() {
        assert_ne!(make(1, 64)[HEADER_LEN..], make(2, 64)[HEADER_LEN..]);
    }
}
