//! What a peer says of itself (`status`) and the requests of the IRC front.

use super::*;

impl Svcshare {
    pub(super) fn status_lines(&self) -> Vec<String> {
        let st = STATE_LABELS[self.state() as usize];
        let mut l = vec![format!(
            "{} ({}): {st}, queue {}{}, holder {}{}",
            self.me,
            self.opts.share,
            self.queue.len(),
            if self.queue.is_empty() {
                String::new()
            } else {
                format!(" [{}]", self.queue.join(" "))
            },
            match self.vars.holder.get() {
                h if h.is_empty() => "nobody".to_owned(),
                h => h,
            },
            match self.grant {
                Some(g) => format!(", token {}", g.token),
                None => String::new(),
            }
        )];
        match self.force {
            Force::Monopoly => l.push(format!(
                "forced: {:.3} MB to go before peers' elections count again",
                self.force_until.saturating_sub(self.bytes()) as f64 / MB as f64
            )),
            Force::Open => l.push("forced (peers' elections count)".to_owned()),
            Force::None => {}
        }
        match self.halt {
            Halt::Until(t) => l.push(format!(
                "halted: {} s to go",
                t.saturating_duration_since(Instant::now()).as_secs()
            )),
            Halt::Indefinite => l.push("halted indefinitely (unhalt, force or restart)".to_owned()),
            Halt::No => {}
        }
        if let Some(g) = &self.gate {
            l.push(format!(
                "proxy: {} bytes forwarded, {} connections",
                g.bytes,
                g.connections()
            ));
        }
        if let Peers::Etcd {
            trouble: Some(t), ..
        } = &self.peers
        {
            l.push(format!("etcd trouble: {t}"));
        }
        l
    }

    pub(super) fn irc_request(&mut self, ctx: &mut Ctx, req: IrcRequest) {
        let words = match crate::control::words::tokenize(&req.line) {
            Ok(w) if !w.is_empty() => w,
            Ok(_) => return,
            Err(e) => {
                self.irc_answer(ctx, &req, &[format!("error: {e}")]);
                return;
            }
        };
        let name = words[0].to_ascii_lowercase();
        if req.only_public && name != "status" && name != "version" {
            return;
        }
        if !req.allowed && name != "status" && name != "version" {
            ctx.log().warn(format!(
                "irc: refused '{}' from {} (not in --irc-allow)",
                req.line, req.from
            ));
            self.irc_answer(
                ctx,
                &req,
                &[format!(
                    "refused: {} may not command {} (ask an operator to add you to --irc-allow)",
                    req.from, self.me
                )],
            );
            return;
        }
        let lines = match name.as_str() {
            "status" => self.status_lines(),
            "version" => vec![commands::version_text(self)],
            _ => match commands::ROWS.iter().find(|r| r.0 == name) {
                Some(&(n, h, min, max, usage)) => {
                    let args = &words[1..];
                    if args.len() < min || args.len() > max {
                        vec![format!("usage: {n} {usage}")]
                    } else {
                        ctx.log()
                            .info(format!("irc: {} asks '{}'", req.from, req.line));
                        match h(self, ctx, args) {
                            Ok(Done::Text(t)) => t.lines().map(str::to_owned).collect(),
                            Ok(Done::Later) => vec!["started".to_owned()],
                            Err(f) => vec![format!("error: {}", f.text)],
                        }
                    }
                }
                None => vec![format!(
                    "unknown command '{name}'; commands: {}",
                    commands::ROWS
                        .iter()
                        .map(|r| r.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                )],
            },
        };
        self.irc_answer(ctx, &req, &lines);
    }

    pub(super) fn irc_answer(&mut self, ctx: &mut Ctx, req: &IrcRequest, lines: &[String]) {
        if let Some(irc) = self.irc.as_mut() {
            irc.answer(ctx, req, lines);
        }
    }
}
