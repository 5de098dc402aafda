//! The wire format between isectd and `isdexecd` (the process starter on another host), all of
//! it: framing, the messages, and the mutual authentication.
//!
//! **Framing.** TCP; every message is a frame: a 4-byte little-endian length `n`
//! (1 ..= [`MAX_FRAME`]) followed by `n` bytes of UTF-8 JSON, one object externally tagged by
//! the message name (`{"Run":{"id":3,...}}`). A bad length or a frame that does not parse
//! ends the connection.
//!
//! **Authentication** (a shared key file of at least 16 bytes, mode 0600, on both hosts):
//!
//! 1. isdexecd, on accept: `Hello {version, nonce}` (32 random bytes, hex).
//! 2. isectd: `Auth {name, nonce, mac}` with its own nonce and
//!    `mac = HMAC-SHA256(key, "isectd-auth\0" || server_nonce || "\0" || client_nonce || "\0" || name)` (hex).
//! 3. isdexecd checks it (constant time) and answers `Welcome {mac, running}` with
//!    `mac = HMAC-SHA256(key, "isdexecd-auth\0" || client_nonce || "\0" || server_nonce)`
//!    and the workers of that isectd it still runs, or `Denied {why}` and closes.
//! 4. isectd checks the Welcome's mac: a server without the key cannot pose as isdexecd.
//!
//! Nonces are fresh per connection, so a recorded exchange cannot be replayed. The channel is
//! not encrypted: the key proves who is talking, the network must still be trusted not to
//! tamper with an established connection (use a private network, as a DAQ farm does).
//!
//! **Then** isectd sends `Run`, `Signal`, `Control`; isdexecd answers `Started` or `Refused`,
//! and sends `Exited`, `Ready`, `Status`, `ControlReply` as things happen.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Largest frame body.
pub const MAX_FRAME: usize = 1 << 20;
/// Protocol version.
pub const VERSION: u32 = 1;

/// A worker isdexecd still runs, as `Welcome` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningWorker {
    /// The worker id (isectd's).
    pub id: u32,
    /// Its pid on the remote host.
    pub pid: i32,
    /// Whether it said it is ready.
    pub ready: bool,
    /// Its framework name, if recognised.
    pub fwname: Option<String>,
}

/// Every message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// isdexecd's greeting.
    Hello {
        /// Protocol version.
        version: u32,
        /// Its nonce (hex).
        nonce: String,
    },
    /// isectd's proof.
    Auth {
        /// isectd's process name (isdexecd keeps each isectd's workers apart).
        name: String,
        /// isectd's nonce (hex).
        nonce: String,
        /// The HMAC (hex).
        mac: String,
    },
    /// Accepted.
    Welcome {
        /// isdexecd's proof (hex).
        mac: String,
        /// Workers of this isectd still running.
        running: Vec<RunningWorker>,
    },
    /// Refused; the connection closes.
    Denied {
        /// Why.
        why: String,
    },
    /// Start worker `id`.
    Run {
        /// Worker id.
        id: u32,
        /// The program (must be allowed by isdexecd's configuration).
        path: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment (the rendezvous).
        env: Vec<(String, String)>,
    },
    /// It started.
    Started {
        /// Worker id.
        id: u32,
        /// Its pid.
        pid: i32,
    },
    /// It could not be started (not allowed, not found...).
    Refused {
        /// Worker id.
        id: u32,
        /// Why.
        why: String,
    },
    /// Send a signal to worker `id`'s process (and its group).
    Signal {
        /// Worker id.
        id: u32,
        /// Signal number.
        sig: i32,
    },
    /// It ended.
    Exited {
        /// Worker id.
        id: u32,
        /// Its pid.
        pid: i32,
        /// How (`exit 1`, `signal 9 (SIGKILL)`).
        how: String,
        /// The tail of its log.
        tail: String,
    },
    /// It said it is ready (READY=1, or its framework region serves).
    Ready {
        /// Worker id.
        id: u32,
        /// Its framework name, if recognised.
        fwname: Option<String>,
    },
    /// It sent STATUS=.
    Status {
        /// Worker id.
        id: u32,
        /// The text.
        text: String,
    },
    /// Send a command line to worker `id`'s control socket (a framework process).
    Control {
        /// Request number, echoed in the reply.
        seq: u64,
        /// Worker id.
        id: u32,
        /// The line.
        line: String,
        /// Milliseconds to wait for its answer.
        timeout_ms: u64,
    },
    /// The answer to a `Control`.
    ControlReply {
        /// Request number.
        seq: u64,
        /// It succeeded.
        ok: bool,
        /// Its text (or what failed).
        text: String,
    },
}

/// Encodes a frame.
pub fn encode(m: &Msg) -> Vec<u8> {
    let body = serde_json::to_vec(m).expect("messages always serialise");
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Collects frames from a byte stream.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, if one arrived.
    ///
    /// # Errors
    /// A bad length or body: the connection must be dropped.
    pub fn next_msg(&mut self) -> Result<Option<Msg>, String> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let n = u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if n == 0 || n > MAX_FRAME {
            return Err(format!("bad frame length {n} (1 to {MAX_FRAME})"));
        }
        if self.buf.len() < 4 + n {
            return Ok(None);
        }
        let m =
            serde_json::from_slice(&self.buf[4..4 + n]).map_err(|e| format!("bad message: {e}"));
        self.buf.drain(..4 + n);
        m.map(Some)
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            m.update(b"\0");
        }
        m.update(p);
    }
    m
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A fresh nonce (32 bytes from the kernel, hex).
///
/// # Errors
/// If `/dev/urandom` cannot be read.
pub fn nonce() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex(&b))
}

/// isectd's mac for `Auth`.
pub fn client_mac(key: &[u8], server_nonce: &str, client_nonce: &str, name: &str) -> String {
    hex(&mac(
        key,
        &[
            b"isectd-auth",
            server_nonce.as_bytes(),
            client_nonce.as_bytes(),
            name.as_bytes(),
        ],
    )
    .finalize()
    .into_bytes())
}

/// isdexecd's mac for `Welcome`.
pub fn server_mac(key: &[u8], client_nonce: &str, server_nonce: &str) -> String {
    hex(&mac(
        key,
        &[
            b"isdexecd-auth",
            client_nonce.as_bytes(),
            server_nonce.as_bytes(),
        ],
    )
    .finalize()
    .into_bytes())
}

/// Checks isectd's mac (constant time).
pub fn check_client(
    key: &[u8],
    server_nonce: &str,
    client_nonce: &str,
    name: &str,
    got: &str,
) -> bool {
    let Some(got) = unhex(got) else { return false };
    mac(
        key,
        &[
            b"isectd-auth",
            server_nonce.as_bytes(),
            client_nonce.as_bytes(),
            name.as_bytes(),
        ],
    )
    .verify_slice(&got)
    .is_ok()
}

/// Checks isdexecd's mac (constant time).
pub fn check_server(key: &[u8], client_nonce: &str, server_nonce: &str, got: &str) -> bool {
    let Some(got) = unhex(got) else { return false };
    mac(
        key,
        &[
            b"isdexecd-auth",
            client_nonce.as_bytes(),
            server_nonce.as_bytes(),
        ],
    )
    .verify_slice(&got)
    .is_ok()
}

/// Reads a key file: a regular file of ours, not a link, mode without group or other bits,
/// at least 16 bytes (surrounding white space is not part of the key).
///
/// # Errors
/// What is wrong with it, and how to make a good one.
pub fn read_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let make = "make one with: head -c 32 /dev/urandom | base64 > KEY; chmod 600 KEY";
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(crate::support::files::NONBLOCK_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("key file {}: {e} ({make})", path.display()))?;
    let m = f
        .metadata()
        .map_err(|e| format!("key file {}: {e}", path.display()))?;
    if !m.is_file() {
        return Err(format!("key file {} is not a regular file", path.display()));
    }
    if m.uid() != crate::support::files::euid() {
        return Err(format!(
            "key file {} belongs to {}, not to us: refusing it",
            path.display(),
            crate::support::files::user_text(m.uid())
        ));
    }
    if m.mode() & 0o077 != 0 {
        return Err(format!(
            "key file {} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            m.mode() & 0o777
        ));
    }
    let mut k = Vec::new();
    f.by_ref()
        .take(4096)
        .read_to_end(&mut k)
        .map_err(|e| format!("key file {}: {e}", path.display()))?;
    let k = k.trim_ascii().to_vec();
    if k.len() < 16 {
        return Err(format!(
            "key file {} holds {} bytes, at least 16 are needed ({make})",
            path.display(),
            k.len()
        ));
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let msgs = vec![
            Msg::Hello {
                version: 1,
                nonce: "ab".into(),
            },
            Msg::Run {
                id: 3,
                path: "/bin/x".into(),
                args: vec!["a b".into()],
                env: vec![("K".into(), "V".into())],
            },
            Msg::Exited {
                id: 3,
                pid: 9,
                how: "exit 1".into(),
                tail: "é\n".into(),
            },
        ];
        let bytes: Vec<u8> = msgs.iter().flat_map(encode).collect();
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in bytes.chunks(3) {
            d.push(b);
            while let Some(m) = d.next_msg().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn the_macs_need_the_key() {
        let k = b"0123456789abcdef0123";
        let m = client_mac(k, "s1", "c1", "isd1");
        assert!(check_client(k, "s1", "c1", "isd1", &m));
        assert!(!check_client(b"another key of 16b", "s1", "c1", "isd1", &m));
        assert!(!check_client(k, "s2", "c1", "isd1", &m));
        assert!(!check_client(k, "s1", "c1", "isd2", &m));
        assert!(!check_client(k, "s1", "c1", "isd1", "zz"));
        let w = server_mac(k, "c1", "s1");
        assert!(check_server(k, "c1", "s1", &w));
        assert!(!check_server(k, "c1", "s1", &m));
    }

    /// Mutated and random input never panics: it is a message, more bytes wanted, or an error.
    #[test]
    fn the_decoder_survives_garbage() {
        let good = encode(&Msg::Signal { id: 1, sig: 15 });
        let mut rng = crate::support::fuzz::Rng::new(0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..(rng.next_u64() % 4 + 1) {
                let i = rng.below(b.len());
                b[i] = rng.next_u64() as u8;
            }
            if rng.next_u64().is_multiple_of(3) {
                b.truncate(rng.below(b.len()));
            }
            let mut d = Decoder::default();
            d.push(&b);
            for _ in 0..4 {
                match d.next_msg() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let mut d = Decoder::default();
        d.push(&(u32::MAX).to_le_bytes());
        assert!(d.next_msg().unwrap_err().contains("bad frame length"));
    }
}
