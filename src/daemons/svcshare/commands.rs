//! svcshare's commands: the seed's names and aliases, each a handler on the daemon; the same
//! table serves the control channel and the IRC front.

use std::time::{Duration, Instant};

use super::policy::{self, Force};
use super::{now_ns, Halt, ShareState, Svcshare, MB, STATE_LABELS, VERSION};
use crate::control::reply::{ErrorKind, Failure};
use crate::framework::{Command, Ctx, Outcome};

pub(super) fn version_text(s: &Svcshare) -> String {
    format!(
        "svcshare {VERSION} (daqproc; {} peers, fencing tokens)",
        match &s.opts.etcd {
            Some(_) => "etcd",
            None => "local",
        }
    )
}

fn check_item(id: &str) -> Result<(), Failure> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Failure::new(
            ErrorKind::Usage,
            format!("item id {id:?}: 1-64 printable characters without spaces"),
        ));
    }
    Ok(())
}

fn outcome_of_round(m: &Svcshare, what: &str) -> String {
    let st = m.state();
    let holder = m.vars.holder.get();
    match st {
        ShareState::Running | ShareState::Forced => format!(
            "{what}: running under token {} ({})",
            m.grant.map_or(0, |g| g.token),
            m.last_verdict
        ),
        ShareState::Waiting if !holder.is_empty() && holder != m.me => format!(
            "{what}: waiting; {holder} holds the resource ({})",
            m.last_verdict
        ),
        ShareState::Waiting => format!("{what}: waiting ({})", m.last_verdict),
        _ => format!("{what}: {}", STATE_LABELS[st as usize]),
    }
}

fn election(m: &mut Svcshare, ctx: &mut Ctx, _: &[String]) -> Outcome {
    if m.halt != Halt::No {
        return Err(Failure::refused(format!(
            "halted ({}): no elections; unhalt or force first",
            m.status_lines().last().cloned().unwrap_or_default()
        )));
    }
    m.want = true;
    m.force = Force::None;
    m.asked_ns = now_ns();
    ctx.log().info(format!(
        "election asked (queue {}): peers' queues decide",
        m.queue.len()
    ));
    m.round(ctx);
    Ok(outcome_of_round(m, "election").into())
}

fn enqueue(m: &mut Svcshare, ctx: &mut Ctx, a: &[String]) -> Outcome {
    let id = &a[0];
    check_item(id)?;
    if m.queue.iter().any(|q| q == id) {
        return Err(Failure::failed(format!("{id} is already in the queue")));
    }
    m.queue.push(id.clone());
    ctx.log()
        .info(format!("enqueued {id} (queue {})", m.queue.len()));
    m.round(ctx);
    Ok(format!("queued {id}: queue {}", m.queue.len()).into())
}

fn done(m: &mut Svcshare, ctx: &mut Ctx, a: &[String]) -> Outcome {
    let id = &a[0];
    let Some(i) = m.queue.iter().position(|q| q == id) else {
        return Err(Failure::failed(format!(
            "{id} is not in the queue (queue: {})",
            if m.queue.is_empty() {
                "empty".to_owned()
            } else {
                m.queue.join(" ")
            }
        )));
    };
    m.queue.remove(i);
    let mut text = format!("{id} done: queue {}", m.queue.len());
    if m.queue.is_empty() && m.want && m.force == Force::None {
        m.want = false;
        text.push_str("; the queue is empty: giving the resource back");
        ctx.log()
            .info(format!("{id} done: queue empty, no longer asking to run"));
    } else {
        ctx.log()
            .info(format!("{id} done (queue {})", m.queue.len()));
    }
    m.round(ctx);
    Ok(text.into())
}

fn force(m: &mut Svcshare, ctx: &mut Ctx, a: &[String]) -> Outcome {
    let mb = match a.first() {
        None => 0.0,
        Some(s) => match s.parse::<f64>() {
            Ok(v) if v >= 0.0 && v.is_finite() => v,
            _ => {
                return Err(Failure::new(
                    ErrorKind::Usage,
                    format!("force {s}: MB is a number of megabytes (10^6 bytes), 0 or more"),
                ))
            }
        },
    };
    if mb > 0.0 && m.gate.is_none() {
        return Err(Failure::failed(
            "force MB counts the proxy's bytes, and this svcshare has no proxy (--listen); use force without MB",
        ));
    }
    if m.halt != Halt::No {
        ctx.log().info("force ends the halt");
    }
    m.halt = Halt::No;
    m.want = true;
    m.asked_ns = now_ns();
    if mb > 0.0 {
        m.force = Force::Monopoly;
        m.force_until = m.bytes() + (mb * MB as f64) as u64;
    } else {
        m.force = Force::Open;
    }
    ctx.log().info(format!(
        "forced{}",
        if mb > 0.0 {
            format!(": peers' elections ignored for {mb} MB")
        } else {
            String::new()
        }
    ));
    m.round(ctx);
    Ok(outcome_of_round(m, "force").into())
}

fn halt(m: &mut Svcshare, ctx: &mut Ctx, a: &[String]) -> Outcome {
    let min = match a.first() {
        None => 0.0,
        Some(s) => match s.parse::<f64>() {
            Ok(v) if v >= 0.0 && v.is_finite() => v,
            _ => {
                return Err(Failure::new(
                    ErrorKind::Usage,
                    format!("halt {s}: MINUTES is a number, 0 or more (0 or none: indefinite)"),
                ))
            }
        },
    };
    m.halt = if min > 0.0 {
        Halt::Until(Instant::now() + Duration::from_secs_f64(min * 60.0))
    } else {
        Halt::Indefinite
    };
    m.want = false;
    m.force = Force::None;
    let text = if min > 0.0 {
        format!("halted for {min} minutes: no elections, an empty queue reported to peers")
    } else {
        "halted indefinitely (until unhalt, force or restart): no elections, an empty queue reported to peers".to_owned()
    };
    // Holding: giving back pauses the client; else pause it anyway (it may have been resumed
    // behind our back), as the seed's halt does.
    if m.grant.is_some() {
        m.give_back(ctx, "halt");
    } else {
        m.pause_client(ctx, 0, "halt");
    }
    ctx.log().info(&text);
    m.round(ctx);
    Ok(text.into())
}

fn unhalt(m: &mut Svcshare, ctx: &mut Ctx, _: &[String]) -> Outcome {
    if m.halt == Halt::No {
        return Ok("not halted".into());
    }
    m.halt = Halt::No;
    m.want = !m.queue.is_empty();
    if m.want {
        m.asked_ns = now_ns();
    }
    ctx.log().info("unhalted");
    m.round(ctx);
    Ok(if m.want {
        outcome_of_round(m, "unhalted; the queue is not empty, so an election")
    } else {
        "unhalted; the queue is empty: paused until an election".to_owned()
    }
    .into())
}

fn pause(m: &mut Svcshare, ctx: &mut Ctx, _: &[String]) -> Outcome {
    let had_force = m.force != Force::None;
    m.want = false;
    m.force = Force::None;
    // Holding: giving back pauses the client; else pause it anyway (it may have been resumed
    // behind our back), as the seed's pause does.
    if m.grant.is_some() {
        m.give_back(ctx, "pause");
    } else {
        m.pause_client(ctx, 0, "pause");
    }
    ctx.log().info("paused by command");
    m.round(ctx);
    Ok(if had_force {
        "paused: client and proxy stopped; force cleared"
    } else {
        "paused: client and proxy stopped"
    }
    .into())
}

fn version(m: &mut Svcshare, _ctx: &mut Ctx, _: &[String]) -> Outcome {
    Ok(version_text(m).into())
}

fn peers(m: &mut Svcshare, _ctx: &mut Ctx, _: &[String]) -> Outcome {
    let b = m.board();
    let mut out = format!(
        "{:20} {:>6} {:>5} {:>6}  HOLDER",
        "PEER", "QUEUE", "WANT", "FORCE"
    );
    for e in &b.entries {
        out.push_str(&format!(
            "\n{:20} {:>6} {:>5} {:>6}  {}",
            e.name,
            e.queue,
            if e.want { "yes" } else { "no" },
            e.force as i64,
            if b.holder.as_deref() == Some(e.name.as_str()) {
                "*"
            } else {
                ""
            }
        ));
    }
    if let Some(v) = policy::elect(&b) {
        out.push_str(&format!("\nelection: {}", v.why));
    }
    Ok(out.into())
}

pub(super) type Row = (
    &'static str,
    fn(&mut Svcshare, &mut Ctx, &[String]) -> Outcome,
    usize,
    usize,
    &'static str,
);

/// The seed's commands (and ours), with their aliases: name, handler, arguments, usage.
pub(super) const ROWS: &[Row] = &[
    ("election", election, 0, 0, ""),
    ("resume", election, 0, 0, ""),
    ("continue", election, 0, 0, ""),
    ("enqueue", enqueue, 1, 1, "ID"),
    ("enq", enqueue, 1, 1, "ID"),
    ("done", done, 1, 1, "ID"),
    ("force", force, 0, 1, "[MB]"),
    ("halt", halt, 0, 1, "[MINUTES]"),
    ("unhalt", unhalt, 0, 0, ""),
    ("pause", pause, 0, 0, ""),
    ("version", version, 0, 0, ""),
    ("peers", peers, 0, 0, ""),
];

pub(super) fn table() -> Vec<Command<Svcshare>> {
    let help = |n: &str| -> &'static str {
        match n {
            "election" => "A major election: the peer with the smallest queue among those asking runs its client",
            "resume" => "Alias of election",
            "continue" => "Alias of election",
            "enqueue" => "Add item ID to this peer's queue",
            "enq" => "Alias of enqueue",
            "done" => "Item ID is done: it leaves the queue (an empty queue gives the resource back)",
            "force" => "Run at once without an election; with MB, ignore peers' elections until MB more went through the proxy",
            "halt" => "Pause at once, start no elections, report an empty queue; for MINUTES, or indefinitely",
            "unhalt" => "End a halt",
            "pause" => "Pause client and proxy; clears a force",
            "version" => "The version (every peer answers .version on IRC)",
            _ => "The peers of the share, their queues, the holder and the election's verdict",
        }
    };
    ROWS.iter()
        .map(|&(n, h, min, max, usage)| {
            let c = Command::new(n, help(n)).args(usage, min, max).handler(h);
            if n == "version" || n == "peers" {
                c.public()
            } else {
                c
            }
        })
        .collect()
}
