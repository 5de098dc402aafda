//! The grant's life: asking for the resource, being granted it (resuming the client), keeping
//! the lease (renewal, the gate), giving it back or losing it (pausing the client first), and
//! what the etcd thread reports.

use super::*;

impl Svcshare {
    pub(super) fn acquire(&mut self, ctx: &mut Ctx, why: &str) {
        let margin = self.opts.margin().as_nanos() as u64;
        match &mut self.peers {
            Peers::Local { lock, board } => {
                let r = lock.acquire(|n, p| board.alive(n, p));
                match r {
                    Ok(Ok(lease)) => {
                        self.last_renew_ns = mono_ns();
                        self.granted(
                            ctx,
                            lease.token,
                            lease.expiry_ns.saturating_sub(margin),
                            why,
                        );
                    }
                    Ok(Err(Busy::HeldBy(h))) => {
                        if self.last_busy.as_deref() != Some(h.as_str()) {
                            ctx.log().info(format!(
                                "won the election, waiting for {h} to give the resource back"
                            ));
                            self.last_busy = Some(h);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => ctx.error(&format!("lease file {}: {e}", lock.path().display())),
                }
            }
            Peers::Etcd {
                tx,
                acquiring,
                lease_until,
                ..
            } => {
                if !*acquiring && mono_ns() + margin < *lease_until {
                    *acquiring = true;
                    let _ = tx.send(ToEtcd::Acquire);
                }
            }
        }
    }

    pub(super) fn granted(&mut self, ctx: &mut Ctx, token: u64, deadline_ns: u64, why: &str) {
        self.grant = Some(Grant {
            token,
            deadline_ns,
            since: Instant::now(),
        });
        self.last_busy = None;
        self.vars.grants.add(1);
        self.vars.token.set(token as i64);
        ctx.log().info(format!(
            "granted the resource: token {token} ({why}); resuming the client"
        ));
        if let Some(c) = &self.opts.client {
            let g = GrantInfo {
                token,
                share: &self.opts.share,
                peer: &self.me,
            };
            match c.resume(ctx.dir(), g) {
                Ok(t) => ctx
                    .log()
                    .info(format!("client resumed under token {token}: {t}")),
                Err(e) => {
                    // A client that cannot run must not keep the resource from the others.
                    ctx.error(&format!(
                        "resuming the client: {e}; giving the resource back and no longer asking (fix the client, then election)"
                    ));
                    self.want = false;
                    self.force = Force::None;
                    self.give_back(ctx, "the client could not be resumed");
                    return;
                }
            }
        }
        self.pump_gate(ctx);
        self.publish();
    }

    pub(super) fn pump_gate(&mut self, ctx: &mut Ctx) {
        let Some(g) = self.grant else { return };
        let Some(gate) = self.gate.as_mut() else {
            return;
        };
        let mut logs = Vec::new();
        let mut fence = || fence_ok(g);
        let r = gate.pump_all(ctx, g.token, &mut fence, &mut |s| logs.push(s));
        for l in logs {
            ctx.log().info(l);
        }
        if r == Pumped::Stale {
            self.vars.stale_refused.add(1);
            self.lose(
                ctx,
                "the gate found the grant stale before a write and refused it",
            );
        }
    }

    pub(super) fn renew(&mut self, ctx: &mut Ctx) {
        let Some(g) = self.grant else { return };
        let margin = self.opts.margin().as_nanos() as u64;
        match &mut self.peers {
            Peers::Local { lock, .. } => {
                let now = mono_ns();
                if now.saturating_sub(self.last_renew_ns) < self.opts.ttl.as_nanos() as u64 / 4 {
                    return;
                }
                match lock.renew(g.token) {
                    Ok(Some(l)) => {
                        self.last_renew_ns = now;
                        if let Some(gr) = &mut self.grant {
                            gr.deadline_ns = l.expiry_ns.saturating_sub(margin);
                        }
                    }
                    Ok(None) => {
                        self.lose(ctx, "the lease is no longer ours (it ended and was taken)")
                    }
                    // Busy: try next round; the deadline still stands.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => ctx.error(&format!("renewing the lease: {e}")),
                }
            }
            Peers::Etcd { lease_until, .. } => {
                let d = lease_until.saturating_sub(margin);
                if let Some(gr) = &mut self.grant {
                    gr.deadline_ns = d;
                }
            }
        }
    }

    /// Pauses the client; `token` is the grant that ends (0: none).
    pub(super) fn pause_client(&mut self, ctx: &mut Ctx, token: u64, why: &str) {
        if let Some(g) = self.gate.as_mut() {
            g.paused();
        }
        if let Some(c) = &self.opts.client {
            let g = GrantInfo {
                token,
                share: &self.opts.share,
                peer: &self.me,
            };
            match c.pause(ctx.dir(), g) {
                Ok(t) => ctx.log().info(format!("client paused ({why}): {t}")),
                Err(e) => ctx.error(&format!("pausing the client ({why}): {e}")),
            }
        }
    }

    /// Pauses the client, then releases the lease.
    pub(super) fn give_back(&mut self, ctx: &mut Ctx, why: &str) {
        let Some(g) = self.grant.take() else { return };
        self.pause_client(ctx, g.token, why);
        match &mut self.peers {
            Peers::Local { lock, .. } => {
                if let Err(e) = lock.release(g.token) {
                    ctx.error(&format!("releasing the lease: {e}"));
                }
            }
            Peers::Etcd { tx, .. } => {
                let _ = tx.send(ToEtcd::Release(g.token));
            }
        }
        ctx.log().info(format!(
            "gave the resource back after {:.3} s (token {}): {why}",
            g.since.elapsed().as_secs_f64(),
            g.token
        ));
        self.publish();
    }

    /// The lease is gone (or about to be): pause at once.
    pub(super) fn lose(&mut self, ctx: &mut Ctx, why: &str) {
        let Some(g) = self.grant.take() else { return };
        self.pause_client(ctx, g.token, why);
        self.vars.lease_lost.add(1);
        ctx.error(&format!(
            "lost the grant of token {} after {:.3} s: {why}; the client is paused",
            g.token,
            g.since.elapsed().as_secs_f64()
        ));
        match &self.peers {
            Peers::Etcd { tx, .. } => {
                let _ = tx.send(ToEtcd::Release(g.token));
            }
            // Still ours in the file (a late renewal): free it now rather than at its end.
            Peers::Local { lock, .. } => {
                let _ = lock.release(g.token);
            }
        }
        self.publish();
    }

    /// What the etcd thread says.
    pub(crate) fn on_etcd(&mut self, ctx: &mut Ctx, ev: FromEtcd) {
        let margin = self.opts.margin().as_nanos() as u64;
        let Peers::Etcd {
            board,
            lease_until,
            acquiring,
            trouble,
            tx,
            ..
        } = &mut self.peers
        else {
            return;
        };
        match ev {
            FromEtcd::Lease(u) => {
                *lease_until = u;
                if let Some(g) = &mut self.grant {
                    g.deadline_ns = u.saturating_sub(margin);
                }
            }
            FromEtcd::LeaseLost(why) => {
                *lease_until = 0;
                self.lose(ctx, &why);
            }
            FromEtcd::Board(b) => *board = b,
            FromEtcd::Granted { token, until_ns } => {
                *acquiring = false;
                let still = self.want && self.halt == Halt::No;
                if !still {
                    let _ = tx.send(ToEtcd::Release(token));
                    return;
                }
                *lease_until = until_ns;
                self.granted(
                    ctx,
                    token,
                    until_ns.saturating_sub(margin),
                    "etcd transaction on the holder key",
                );
            }
            FromEtcd::Busy(h) => {
                *acquiring = false;
                if self.last_busy.as_deref() != Some(h.as_str()) {
                    ctx.log().info(format!(
                        "won the election, waiting for {h} to give the resource back"
                    ));
                    self.last_busy = Some(h);
                }
            }
            FromEtcd::Trouble(Some(e)) => {
                *acquiring = false;
                ctx.error(&format!(
                    "etcd: {e} (retrying; the client pauses before the lease can end)"
                ));
                *trouble = Some(e);
            }
            FromEtcd::Trouble(None) => {
                ctx.log().info("etcd: reachable again");
                *trouble = None;
            }
        }
    }
}
