//! The transaction path: a client's pieces to a worker (at once when it has one, else held),
//! scheduling of waiting transactions to idle workers by priority and arrival, refusal of what
//! no worker will serve, and the worker's reply pieces back to its client.

use std::time::Instant;

use super::super::xproto::{self as xp, Header, Kind};
use super::super::Isectd;
use super::MAX_HELD;
use crate::framework::Ctx;

impl Isectd {
    pub(super) fn client_piece(
        &mut self,
        ctx: &mut Ctx,
        id: u32,
        h: Header,
        p: Vec<u8>,
    ) -> Result<(), String> {
        let Some(c) = self.broker().clients.get_mut(&id) else {
            return Ok(());
        };
        if let Some(wid) = c.worker {
            if c.pending.is_empty() {
                self.forward_to_worker(ctx, wid, id, h, &p);
                return Ok(());
            }
        }
        let held: usize = c.pending.iter().map(|(_, p)| p.len()).sum::<usize>() + p.len();
        if held > MAX_HELD {
            return Err(format!(
                "client {id} sent {held} bytes that wait for a worker (at most {MAX_HELD})"
            ));
        }
        let first = c.pending.is_empty() && c.worker.is_none();
        c.pending.push_back((h, p));
        self.broker().waiting.insert(id);
        if first {
            self.broker().arrivals += 1;
            let a = self.broker().arrivals;
            let c = self.broker().clients.get_mut(&id).expect("here");
            c.arrival = a;
        }
        let svc = self.broker().clients[&id].service.clone();
        self.schedule(ctx, &svc);
        Ok(())
    }

    pub(super) fn forward_to_worker(
        &mut self,
        ctx: &mut Ctx,
        wid: u32,
        client: u32,
        h: Header,
        p: &[u8],
    ) {
        let Some(t) = self.workers.get(&wid).and_then(|w| w.conn) else {
            return;
        };
        let ok = self
            .broker()
            .send(t, xp::hdr(Kind::Data, h.flags, 0, client, h.seq), p);
        if let Some(w) = self.workers.get_mut(&wid) {
            w.to_count += 1;
        }
        if !ok {
            self.drop_x(ctx, t, Some("worker does not read its requests"));
        }
    }

    /// Gives waiting transactions of `service` to its idle workers.
    pub(in crate::daemons::isectd) fn schedule(&mut self, ctx: &mut Ctx, service: &str) {
        let preempt = self.broker().preempt();
        loop {
            let idle = self
                .workers
                .values()
                .find(|w| {
                    w.spec.service == service
                        && w.conn.is_some()
                        && w.client.is_none()
                        && w.state() == super::super::model::WState::Idle
                })
                .map(|w| w.id);
            let b = self.broker.as_mut().expect("broker");
            let mut next: Option<(std::cmp::Reverse<i64>, u64, u32)> = None;
            let clients = &b.clients;
            b.waiting.retain(|id| {
                let Some(c) = clients.get(id) else {
                    return false;
                };
                if c.pending.is_empty() {
                    return false;
                }
                if c.service == service && !c.blocked && c.worker.is_none() {
                    let key = (
                        std::cmp::Reverse(if preempt { c.pri } else { 0 }),
                        c.arrival,
                        c.id,
                    );
                    if next.is_none_or(|n| key < n) {
                        next = Some(key);
                    }
                }
                true
            });
            let next = next.map(|(_, _, id)| id);
            let (Some(wid), Some(cid)) = (idle, next) else {
                if let (None, Some(cid)) = (idle, next) {
                    if let Some(why) = self.unservable(service) {
                        self.refuse_stranded(ctx, service, &why);
                        return;
                    }
                    self.events.push(format!(
                        "client {cid}'s transaction waits: no idle worker of {service}"
                    ));
                }
                return;
            };
            let c = self.broker().clients.get_mut(&cid).expect("found");
            c.worker = Some(wid);
            let pri = c.pri;
            let w = self.workers.get_mut(&wid).expect("found");
            w.client = Some(cid);
            w.busy += 1;
            w.busy_since = Some(Instant::now());
            self.events.push(format!(
                "client {cid}'s transaction (priority {pri}) to worker {wid}"
            ));
            // Its pieces so far, up to the end of this request.
            loop {
                let c = self.broker().clients.get_mut(&cid).expect("found");
                let Some((h, p)) = c.pending.pop_front() else {
                    break;
                };
                let more = h.more();
                self.forward_to_worker(ctx, wid, cid, h, &p);
                if !more {
                    break;
                }
            }
        }
    }

    /// Why no worker of `service` can take a transaction, now or later without an operator
    /// (`None`: one runs, is starting, or will be restarted; paused and lost ones count, as they
    /// come back).
    fn unservable(&self, service: &str) -> Option<String> {
        let mut any = false;
        let mut failed = false;
        for w in self.workers.values() {
            if w.spec.service != service
                || w.deleted
                || w.spec.kind != super::super::model::Kind::Tp
            {
                continue;
            }
            if w.wanted && !w.failed {
                return None;
            }
            any = true;
            failed |= w.failed;
        }
        Some(if !any {
            format!("service {service} has no transaction worker (config worker {service} HOST tp:PATH, then start {service})")
        } else if failed {
            format!("every worker of {service} failed (see workers and worker ID; start {service} tries again)")
        } else {
            format!("no worker of {service} is started (start {service})")
        })
    }

    /// Answers every whole transaction waiting for `service` (of clients not blocked) with
    /// the error NO SERVICE and `why`, so that no client waits for a worker that will not come.
    /// A transaction whose last piece has not come yet is answered when it comes.
    fn refuse_stranded(&mut self, ctx: &Ctx, service: &str, why: &str) {
        let ids: Vec<u32> = {
            let b = self.broker();
            b.waiting
                .iter()
                .copied()
                .filter(|id| {
                    b.clients.get(id).is_some_and(|c| {
                        c.service == service
                            && !c.blocked
                            && c.worker.is_none()
                            && c.pending.iter().any(|(h, _)| !h.more())
                    })
                })
                .collect()
        };
        for cid in ids {
            let b = self.broker();
            let c = b.clients.get_mut(&cid).expect("listed");
            while let Some((h, _)) = c.pending.pop_front() {
                if !h.more() {
                    break;
                }
            }
            let t = c.token;
            b.send_error(t, cid, xp::Error::NoService, why.as_bytes());
            self.event(ctx, format!("client {cid}'s transaction refused: {why}"));
        }
    }

    /// After a change of workers: refuses what waits for a service that no worker will serve.
    pub(in crate::daemons::isectd) fn refuse_all_stranded(&mut self, ctx: &Ctx) {
        let Some(b) = self.broker.as_ref() else {
            return;
        };
        let mut services: Vec<String> = b
            .waiting
            .iter()
            .filter_map(|id| b.clients.get(id))
            .filter(|c| !c.pending.is_empty())
            .map(|c| c.service.clone())
            .collect();
        services.sort();
        services.dedup();
        for s in services {
            if let Some(why) = self.unservable(&s) {
                self.refuse_stranded(ctx, &s, &why);
            }
        }
    }

    pub(super) fn worker_piece(
        &mut self,
        ctx: &mut Ctx,
        wid: u32,
        h: Header,
        p: Vec<u8>,
    ) -> Result<(), String> {
        let w = self.workers.get_mut(&wid).ok_or("no such worker")?;
        if let Some(i) = w.orphans.iter().position(|t| *t == h.tag) {
            // The late reply of a transaction taken from it (idle WID): thrown away.
            if !h.more() {
                w.orphans.remove(i);
            }
            return Ok(());
        }
        let Some(cid) = w.client else {
            return Err(format!(
                "worker {wid} replied for a transaction it was not given"
            ));
        };
        if h.tag != cid {
            return Err(format!(
                "worker {wid} replied for client {} while serving client {cid}",
                h.tag
            ));
        }
        w.from_count += 1;
        let done = !h.more();
        if done {
            w.client = None;
            w.busy = w.busy.saturating_sub(1);
            let took = w.busy_since.take().map(|t| t.elapsed()).unwrap_or_default();
            w.xactions += 1;
            w.resp_total_us += took.as_micros() as u64;
            w.v.xactions.set(w.xactions as i64);
            w.v.last_resp_us.set(took.as_micros() as i64);
            w.v.avg_resp_us.set((w.resp_total_us / w.xactions) as i64);
            let svc = w.spec.service.clone();
            if let Some(s) = self.services.iter().find(|s| s.name == svc) {
                s.v.xactions.add(1);
            }
            self.broker().v.xactions.add(1);
            self.count_done(1);
        }
        let ct = self.broker().clients.get(&cid).map(|c| c.token);
        if let Some(ct) = ct {
            if !self
                .broker()
                .send(ct, xp::hdr(Kind::Data, h.flags, h.error, cid, h.seq), &p)
            {
                self.drop_x(ctx, ct, Some("client does not read its replies"));
            }
        }
        if done {
            if let Some(c) = self.broker().clients.get_mut(&cid) {
                c.worker = None;
                c.xactions += 1;
                if !c.pending.is_empty() {
                    self.broker().arrivals += 1;
                    let a = self.broker().arrivals;
                    if let Some(c) = self.broker().clients.get_mut(&cid) {
                        c.arrival = a;
                    }
                }
            }
            let svc = self.workers[&wid].spec.service.clone();
            self.schedule(ctx, &svc);
        }
        Ok(())
    }
}
