//! Operators' interventions on transactions: the PROTOCOL INTERVENTION error, a worker gone,
//! `idle WID`, `shutdown FD|all`, `send WID` to a transaction worker, `delete client ID`.

use std::os::fd::AsRawFd;

use super::super::xproto::{self as xp, Kind};
use super::super::Isectd;
use super::{flush, Role};
use crate::framework::Ctx;

impl Isectd {
    /// Tells client `cid` its transaction was interrupted (the seed's header error -1).
    pub(in crate::daemons::isectd) fn intervene(&mut self, ctx: &mut Ctx, cid: u32, why: &str) {
        let Some(c) = self.broker().clients.get_mut(&cid) else {
            return;
        };
        c.worker = None;
        // What it sent of this transaction is gone with the worker.
        while c.pending.front().is_some_and(|(h, _)| h.more()) {
            c.pending.pop_front();
        }
        let t = c.token;
        self.broker()
            .send_error(t, cid, xp::Error::Intervention, xp::INTERVENTION);
        self.event(ctx, format!("client {cid}: PROTOCOL INTERVENTION ({why})"));
    }

    /// A transaction worker's process ended: its connection goes, its client is told.
    pub(in crate::daemons::isectd) fn x_worker_gone(&mut self, ctx: &mut Ctx, wid: u32) {
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        let (t, cid) = (w.conn.take(), w.client.take());
        w.orphans.clear();
        if let Some(cid) = cid {
            self.intervene(ctx, cid, &format!("worker {wid} died"));
        }
        if let Some(t) = t {
            if let Some(c) = self.broker().conns.remove(&t) {
                self.fds.remove(&t);
                let _ = ctx.deregister_fd(c.stream.as_raw_fd());
            }
        }
    }

    /// `idle WID`: a busy transaction worker made idle; its client gets the intervention.
    pub(in crate::daemons::isectd) fn idle_worker(
        &mut self,
        ctx: &mut Ctx,
        wid: u32,
    ) -> Result<String, String> {
        let w = self
            .workers
            .get_mut(&wid)
            .ok_or_else(|| format!("no worker {wid}"))?;
        let Some(cid) = w.client.take() else {
            return Err(format!(
                "worker {wid} is not busy on a transaction ({})",
                w.state().label()
            ));
        };
        w.busy = w.busy.saturating_sub(1);
        w.busy_since = None;
        if w.orphans.len() < 64 {
            w.orphans.push(cid);
        }
        self.intervene(ctx, cid, &format!("worker {wid} idled by an operator"));
        let svc = self.workers[&wid].spec.service.clone();
        self.schedule(ctx, &svc);
        Ok(format!("idled worker {wid}"))
    }

    /// `shutdown FD|all`: shuts down the sending side of sockets.
    pub(in crate::daemons::isectd) fn shutdown_fds(&mut self, fd: Option<i32>) -> Vec<String> {
        let mut out = Vec::new();
        let b = self.broker();
        for c in b.conns.values() {
            let f = c.stream.as_raw_fd();
            if fd.is_none_or(|x| x == f) && !matches!(c.role, Role::New) {
                let _ = c.stream.shutdown_write();
                out.push(format!("fd {f} ({}) shut down for sending", c.role));
            }
        }
        out
    }

    /// Sends a CONTROL command to a transaction worker (`send WID reinit|status`).
    pub(in crate::daemons::isectd) fn x_control(&mut self, wid: u32, line: &str) -> bool {
        let Some(t) = self.workers.get(&wid).and_then(|w| w.conn) else {
            return false;
        };
        self.broker()
            .send(t, xp::hdr(Kind::Control, 0, 0, 0, 1), line.as_bytes())
    }

    pub(super) fn worker_control_reply(&mut self, ctx: &mut Ctx, wid: u32, p: Vec<u8>) {
        let text = String::from_utf8_lossy(&p).into_owned();
        if let Some((job, who, t0)) = self.x_controls.remove(&wid) {
            let r = Ok(crate::control::reply::Reply::ok(text));
            self.send_answered(ctx, job, wid, who, r, t0.elapsed());
        }
    }

    /// Removes client `id` (`delete client`).
    pub(in crate::daemons::isectd) fn delete_client(
        &mut self,
        ctx: &mut Ctx,
        id: u32,
    ) -> Result<(), String> {
        let t = self
            .broker()
            .clients
            .get(&id)
            .map(|c| c.token)
            .ok_or_else(|| format!("no client {id}"))?;
        self.broker()
            .send_error(t, id, xp::Error::Deleted, b"deleted by an operator");
        if let Some(c) = self.broker().conns.get_mut(&t) {
            let _ = flush(c);
        }
        self.drop_x(ctx, t, None);
        Ok(())
    }
}
