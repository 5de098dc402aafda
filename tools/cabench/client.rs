//! A small Channel Access client, the same for every server measured: search over UDP, one
//! TCP circuit, channels, reads, subscriptions. Blocking, one circuit per thread.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use daqproc::daemons::cagateway::proto::{self, cmd, decode_header, Header, DONT_REPLY};

/// One circuit.
pub struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    next_io: u32,
}

/// Finds the TCP port of the server that has `name`, searching on UDP `port` of loopback.
pub fn find(udp_port: u16, name: &str, within: Duration) -> anyhow::Result<u16> {
    let u = UdpSocket::bind("127.0.0.1:0")?;
    u.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut d = Vec::new();
    Header::new(cmd::VERSION, 0, 0, 13, 0, 0).encode(&mut d);
    proto::push_string_message(
        &mut d,
        Header::new(cmd::SEARCH, 0, DONT_REPLY, 13, 1, 1),
        name,
    );
    let t0 = Instant::now();
    let mut b = [0u8; 1500];
    while t0.elapsed() < within {
        u.send_to(&d, ("127.0.0.1", udp_port))?;
        if let Ok((n, _)) = u.recv_from(&mut b) {
            let mut rest = &b[..n];
            while let Ok(Some((h, len))) = decode_header(rest, 64) {
                if h.cmd == cmd::SEARCH {
                    return Ok(h.data_type);
                }
                rest = &rest[(len + h.payload_size as usize).min(rest.len())..];
            }
        }
    }
    bail!("no server answered a search for {name} on UDP port {udp_port} within {within:?}")
}

impl Client {
    /// Opens a circuit to TCP `port` of loopback.
    pub fn connect(port: u16) -> anyhow::Result<Client> {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("connecting to TCP port {port}"))?;
        s.set_nodelay(true)?;
        let mut out = Vec::new();
        Header::new(cmd::VERSION, 0, 0, 13, 0, 0).encode(&mut out);
        proto::push_string_message(
            &mut out,
            Header::new(cmd::CLIENT_NAME, 0, 0, 0, 0, 0),
            "bench",
        );
        proto::push_string_message(
            &mut out,
            Header::new(cmd::HOST_NAME, 0, 0, 0, 0, 0),
            "localhost",
        );
        s.write_all(&out)?;
        Ok(Client {
            s,
            buf: Vec::new(),
            next_io: 1,
        })
    }

    /// The next message (header and payload).
    pub fn next(&mut self, deadline: Instant) -> anyhow::Result<(Header, Vec<u8>)> {
        loop {
            if let Some((h, n)) = decode_header(&self.buf, 1 << 24)? {
                let total = n + h.payload_size as usize;
                if self.buf.len() >= total {
                    let payload = self.buf[n..total].to_vec();
                    self.buf.drain(..total);
                    if h.cmd == cmd::ECHO {
                        // The server checks we are alive: answer, as a client library does.
                        let mut e = Vec::new();
                        Header::new(cmd::ECHO, 0, 0, 0, 0, 0).encode(&mut e);
                        self.s.write_all(&e)?;
                        continue;
                    }
                    return Ok((h, payload));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("timed out waiting for the server");
            }
            self.s.set_read_timeout(Some(left))?;
            let mut b = [0u8; 64 * 1024];
            let n = self.s.read(&mut b)?;
            if n == 0 {
                bail!("the server closed the circuit");
            }
            self.buf.extend_from_slice(&b[..n]);
        }
    }

    /// Opens channels; returns their sids in order.
    pub fn create(&mut self, names: &[String]) -> anyhow::Result<Vec<u32>> {
        let mut out = Vec::new();
        for (i, n) in names.iter().enumerate() {
            proto::push_string_message(
                &mut out,
                Header::new(cmd::CREATE_CHAN, 0, 0, 0, i as u32, 13),
                n,
            );
        }
        self.s.write_all(&out)?;
        let mut sids = vec![0; names.len()];
        let mut left = names.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while left > 0 {
            let (h, _) = self.next(deadline)?;
            match h.cmd {
                cmd::CREATE_CHAN => {
                    sids[h.p1 as usize] = h.p2;
                    left -= 1;
                }
                cmd::CREATE_CH_FAIL => bail!("the server has no {}", names[h.p1 as usize]),
                _ => {}
            }
        }
        Ok(sids)
    }

    /// One READ_NOTIFY of DBR_LONG; returns the round-trip time.
    pub fn read(&mut self, sid: u32) -> anyhow::Result<Duration> {
        let io = self.next_io;
        self.next_io += 1;
        let mut out = Vec::new();
        Header::new(cmd::READ_NOTIFY, 0, 5, 1, sid, io).encode(&mut out);
        let t0 = Instant::now();
        self.s.write_all(&out)?;
        let deadline = t0 + Duration::from_secs(10);
        loop {
            let (h, _) = self.next(deadline)?;
            if h.cmd == cmd::READ_NOTIFY && h.p2 == io {
                return Ok(t0.elapsed());
            }
        }
    }

    /// Subscribes to each channel (DBR_LONG, value changes).
    pub fn subscribe(&mut self, sids: &[u32]) -> anyhow::Result<()> {
        let mut out = Vec::new();
        for (i, sid) in sids.iter().enumerate() {
            let mut p = [0u8; 16];
            p[12..14].copy_from_slice(&proto::DBE_VALUE.to_be_bytes());
            proto::push_message(
                &mut out,
                Header::new(cmd::EVENT_ADD, 0, 5, 1, *sid, i as u32),
                &p,
            );
        }
        self.s.write_all(&out)?;
        Ok(())
    }

    /// Counts monitor updates for `d`.
    pub fn count_updates(&mut self, d: Duration) -> anyhow::Result<u64> {
        let end = Instant::now() + d;
        let mut n = 0;
        while Instant::now() < end {
            match self.next(end) {
                Ok((h, _)) if h.cmd == cmd::EVENT_ADD => n += 1,
                Ok(_) => {}
                Err(_) if Instant::now() >= end => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}
