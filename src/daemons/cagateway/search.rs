//! The UDP side: answering name searches, and what a flood of them may cost.
//!
//! A datagram holds a VERSION message and any number of SEARCH messages. Every name we serve
//! gets a reply; a name we do not serve gets NOT_FOUND only if the search asked for it (clients
//! searching many servers ask not to). Replies to one datagram are packed into datagrams of at
//! most [`MAX_REPLY_DATAGRAM`] bytes, each starting with our VERSION.
//!
//! Each source address has a budget of names per second ([`Budget`]); names past it are
//! dropped unanswered (clients search again with back-off), so a flood from one host costs
//! that host its answers and the gateway a hash look-up per name, nothing more.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::proto::{self, cmd, decode_header, parse_request, Request};

/// Largest reply datagram.
pub const MAX_REPLY_DATAGRAM: usize = 1400;
/// Names a source may have answered per second, on average.
pub const NAMES_PER_SECOND: f64 = 20_000.0;
/// Names a source may have answered in a burst.
pub const BURST: f64 = 40_000.0;
/// Source addresses whose budgets are remembered.
const MAX_SOURCES: usize = 4096;

/// Per-source budgets of names.
#[derive(Debug, Default)]
pub struct Budget {
    sources: HashMap<IpAddr, (f64, Instant)>,
}

impl Budget {
    /// Takes one name from `ip`'s budget; false if it is spent.
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&ip) {
            // Forget the sources that have a full budget again (idle ones).
            self.sources.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * NAMES_PER_SECOND < BURST
            });
            if self.sources.len() >= MAX_SOURCES {
                return false;
            }
        }
        let (tokens, at) = self.sources.entry(ip).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * NAMES_PER_SECOND).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What answering one datagram found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// Names searched for.
    pub names: u64,
    /// Names we serve.
    pub hits: u64,
    /// Names dropped for the source's budget.
    pub dropped: u64,
    /// Messages that were not valid.
    pub bad: u64,
}

/// Answers the searches in `datagram` from `ip`: `serves(name)` says whether we serve a
/// name; each reply datagram is passed to `send`. `port` is our TCP port, `our_ip` the address
/// to announce (`0xFFFF_FFFF`: the one the reply comes from).
pub fn answer(
    datagram: &[u8],
    ip: IpAddr,
    port: u16,
    our_ip: u32,
    budget: &mut Budget,
    mut serves: impl FnMut(&str) -> bool,
    mut send: impl FnMut(&[u8]),
) -> Answered {
    let mut a = Answered::default();
    let mut out = Vec::with_capacity(MAX_REPLY_DATAGRAM);
    let start = |out: &mut Vec<u8>| {
        out.clear();
        proto::push_version(out);
    };
    start(&mut out);
    let now = Instant::now();
    let mut rest = datagram;
    loop {
        let (h, n) = match decode_header(rest, rest.len() as u32) {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(_) => {
                a.bad += 1;
                break;
            }
        };
        let end = n + h.payload_size as usize;
        if end > rest.len() {
            a.bad += 1;
            break;
        }
        let payload = &rest[n..end];
        rest = &rest[end..];
        if h.cmd != cmd::SEARCH {
            continue;
        }
        match parse_request(&h, payload) {
            Ok(Request::Search {
                reply,
                minor,
                cid,
                name,
            }) => {
                a.names += 1;
                if !budget.take(ip, now) {
                    a.dropped += 1;
                    continue;
                }
                let before = out.len();
                if serves(name) {
                    a.hits += 1;
                    proto::push_search_reply(&mut out, port, our_ip, cid);
                } else if reply {
                    proto::push_not_found(&mut out, minor, cid);
                }
                if out.len() > MAX_REPLY_DATAGRAM {
                    let msg = out[before..].to_vec();
                    out.truncate(before);
                    send(&out);
                    start(&mut out);
                    out.extend_from_slice(&msg);
                }
            }
            _ => a.bad += 1,
        }
    }
    if out.len() > proto::HEADER_SIZE {
        send(&out);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemons::cagateway::proto::{Header, DONT_REPLY, DO_REPLY};

    fn search(out: &mut Vec<u8>, name: &str, cid: u32, flag: u16) {
        proto::push_string_message(out, Header::new(cmd::SEARCH, 0, flag, 13, cid, cid), name);
    }

    #[test]
    fn hits_misses_and_packing() {
        let mut d = Vec::new();
        Header::new(cmd::VERSION, 0, 0, 13, 0, 0).encode(&mut d);
        search(&mut d, "a:x", 1, DONT_REPLY);
        search(&mut d, "a:nothere", 2, DONT_REPLY);
        search(&mut d, "a:gone", 3, DO_REPLY);
        for i in 0..200 {
            search(&mut d, "a:x", 10 + i, DONT_REPLY);
        }
        let mut sent = Vec::new();
        let mut b = Budget::default();
        let ip = "127.0.0.1".parse().unwrap();
        let a = answer(
            &d,
            ip,
            5064,
            !0,
            &mut b,
            |n| n == "a:x",
            |p| sent.push(p.to_vec()),
        );
        assert_eq!((a.names, a.hits, a.dropped, a.bad), (203, 201, 0, 0));
        assert!(sent.len() > 1);
        let mut replies = 0;
        let mut not_found = 0;
        for p in &sent {
            assert!(p.len() <= MAX_REPLY_DATAGRAM + 24);
            let mut rest = &p[..];
            let mut first = true;
            while let Ok(Some((h, n))) = decode_header(rest, 64) {
                if first {
                    assert_eq!(h.cmd, cmd::VERSION);
                    first = false;
                }
                match h.cmd {
                    cmd::SEARCH => {
                        assert_eq!(h.data_type, 5064);
                        replies += 1;
                    }
                    cmd::NOT_FOUND => {
                        assert_eq!(h.p1, 3);
                        not_found += 1;
                    }
                    _ => {}
                }
                rest = &rest[n + h.payload_size as usize..];
            }
        }
        assert_eq!((replies, not_found), (201, 1));
    }

    #[test]
    fn a_flood_spends_only_its_own_budget() {
        let mut b = Budget::default();
        let now = Instant::now();
        let flood: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let taken = (0..(BURST as usize + 1000))
            .filter(|_| b.take(flood, now))
            .count();
        assert_eq!(taken, BURST as usize);
        assert!(b.take(other, now));
        assert!(b.take(flood, now + std::time::Duration::from_millis(10)));
    }

    #[test]
    fn junk_is_counted_not_answered() {
        let mut b = Budget::default();
        let ip = "127.0.0.1".parse().unwrap();
        let mut sent = 0;
        for seed in 0..2000u64 {
            let junk: Vec<u8> = (0..64)
                .map(|i| (((seed * 31 + i).wrapping_mul(2654435761)) >> 13) as u8)
                .collect();
            answer(&junk, ip, 1, 0, &mut b, |_| false, |_| sent += 1);
        }
        assert_eq!(sent, 0);
    }
}
