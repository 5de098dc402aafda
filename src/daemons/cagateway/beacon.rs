//! Beacons: the UDP datagram (CA_PROTO_RSRV_IS_UP) that tells clients a server is up, so
//! that clients with channels not yet found search again at once. The first come 20 ms apart,
//! then twice as far apart each time up to the period (EPICS_CAS_BEACON_PERIOD), as an IOC
//! sends them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::proto;

/// The first gap between beacons.
const FIRST_GAP: Duration = Duration::from_millis(20);

/// The beacons of one server.
#[derive(Debug)]
pub struct Beacons {
    sock: UdpSocket,
    to: Vec<SocketAddr>,
    /// When the next one is due.
    pub next: Instant,
    gap: Duration,
    period: Duration,
    seq: u32,
    port: u16,
    ip: u32,
}

impl Beacons {
    /// Beacons for a server on TCP `port` at `ip` (0: not said), sent to `to`.
    ///
    /// # Errors
    /// If the sending socket cannot be made.
    pub fn new(to: Vec<SocketAddr>, period: Duration, port: u16, ip: u32) -> io::Result<Beacons> {
        let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))?;
        sock.set_broadcast(true)?;
        sock.set_nonblocking(true)?;
        Ok(Beacons {
            sock,
            to,
            next: Instant::now(),
            gap: FIRST_GAP,
            period,
            seq: 0,
            port,
            ip,
        })
    }

    /// Sends one to every destination (a destination that refuses is skipped) and schedules
    /// the next.
    pub fn send(&mut self) {
        let mut b = Vec::with_capacity(proto::HEADER_SIZE);
        proto::push_beacon(&mut b, self.port, self.seq, self.ip);
        self.seq = self.seq.wrapping_add(1);
        for a in &self.to {
            let _ = self.sock.send_to(&b, a);
        }
        self.next = Instant::now() + self.gap;
        self.gap = (self.gap * 2).min(self.period);
    }
}
