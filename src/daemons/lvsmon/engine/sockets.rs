//! The checker's socket events: a probe's phases CONRESULT, QUERY and RECV, from the poll
//! loop's readiness to the verdict.

use super::*;

impl Engine {
    /// A socket event.
    pub(super) fn io_event(&mut self, token: Token, readable: bool, writable: bool, failed: bool) {
        let i = (token.0 & 0xffff_ffff).wrapping_sub(1);
        let gen = (token.0 >> 32) as u32;
        let Some(s) = self.table.slots.get(i) else {
            return;
        };
        if s.gen != gen || s.sock.is_none() {
            return;
        }
        match s.phase {
            Phase::Wait => {}
            // Any event: getpeername says whether the connection is up yet.
            Phase::ConResult => self.conresult(i, readable),
            Phase::Query => {
                if writable || failed {
                    self.query(i, readable);
                }
            }
            Phase::Recv => {
                if readable || failed {
                    self.recv(i);
                }
            }
        }
    }

    /// PHASE_CONRESULT: did the connection succeed?
    fn conresult(&mut self, i: usize, readable: bool) {
        let Some(Sock::Tcp(stream)) = &self.table.slots[i].sock else {
            return;
        };
        match stream.take_error() {
            Ok(Some(e)) | Err(e) => return self.finish(i, Reason::from_io(&e)),
            Ok(None) => {}
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.finish(i, Reason::from_io(&e)),
        }
        match &self.table.defs[i].probe {
            Probe::Tcp { .. } => self.finish(i, Reason::Ok),
            Probe::Http { .. } => {
                self.table.slots[i].phase = Phase::Query;
                self.query(i, readable);
            }
            Probe::Banner { send: Some(_), .. } => {
                self.table.slots[i].phase = Phase::Query;
                self.query(i, readable);
            }
            Probe::Banner { send: None, .. } => {
                self.enter_recv(i);
                if readable {
                    self.recv(i);
                }
            }
            _ => {}
        }
    }

    fn enter_recv(&mut self, i: usize) {
        let now = self.now_ms();
        let t = &mut *self.table;
        let s = &mut t.slots[i];
        s.phase = Phase::Recv;
        arm(&mut t.heap, s, i, now + t.defs[i].recv_timeout_ms);
    }

    /// PHASE_QUERY: sends the request (usually at once: the socket has just become writable).
    fn query(&mut self, i: usize, readable: bool) {
        let t = &mut *self.table;
        let req: &[u8] = match &t.defs[i].probe {
            Probe::Http { request, .. } => request,
            Probe::Banner { send: Some(b), .. } => b,
            _ => &[],
        };
        let s = &mut t.slots[i];
        let Some(Sock::Tcp(stream)) = &mut s.sock else {
            return;
        };
        while (s.written as usize) < req.len() {
            match stream.write(&req[s.written as usize..]) {
                Ok(n) => s.written += n as u32,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.finish(i, Reason::from_io(&e)),
            }
        }
        self.enter_recv(i);
        if readable {
            self.recv(i);
        }
    }

    /// PHASE_RECV: reads what arrived and judges it.
    fn recv(&mut self, i: usize) {
        let t = &mut *self.table;
        let def = &t.defs[i];
        let s = &mut t.slots[i];
        let verdict = match &mut s.sock {
            Some(Sock::Udp(sock)) => match sock.recv(&mut self.buf) {
                Ok(n) => {
                    let expect = match &def.probe {
                        Probe::Udp { expect, .. } => expect.as_ref(),
                        _ => None,
                    };
                    judge_datagram(expect, &self.buf[..n])
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => Reason::from_io(&e),
            },
            Some(Sock::Tcp(stream)) => loop {
                match stream.read(&mut self.buf) {
                    Ok(0) => {
                        break match (&s.parse, &def.probe) {
                            (Parse::Http(h), Probe::Http { expect, .. }) => h.eof(expect),
                            (Parse::Line(l), Probe::Banner { expect, .. }) => {
                                l.eof(expect, Reason::BadBanner)
                            }
                            _ => Reason::ClosedEarly,
                        }
                    }
                    Ok(n) => {
                        let data = &self.buf[..n];
                        let j = match (&mut s.parse, &def.probe) {
                            (Parse::Http(h), Probe::Http { expect, .. }) => h.feed(expect, data),
                            (Parse::Line(l), Probe::Banner { expect, .. }) => {
                                l.feed(expect, data, Reason::BadBanner)
                            }
                            _ => Judged::Done(Reason::Ok),
                        };
                        if let Judged::Done(r) = j {
                            break r;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Reason::from_io(&e),
                }
            },
            None => return,
        };
        self.finish(i, verdict);
    }
}
