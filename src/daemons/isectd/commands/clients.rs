//! The seed's client control: `clients`, `client ID`, `block`/`unblock`, `idle WID`,
//! `preempt`, `pri ID N`, `reject`, `service ID NEWSERVICE`.

use super::super::Isectd;
use super::{parse_id, usage};
use crate::control::reply::Failure;
use crate::framework::{Ctx, Outcome};

pub(super) fn client_ref(d: &Isectd, word: &str) -> Result<u32, Failure> {
    let id = parse_id(word, "client")?;
    if d.broker.as_ref().expect("broker").clients.contains_key(&id) {
        Ok(id)
    } else {
        Err(Failure::refused(format!("no client {id}")))
    }
}

/// Client `id`, known to exist (from [`client_ref`]).
fn client_mut(d: &mut Isectd, id: u32) -> &mut super::super::broker::Client {
    d.broker
        .as_mut()
        .expect("broker")
        .clients
        .get_mut(&id)
        .expect("checked")
}

pub(super) fn set_blocked(d: &mut Isectd, ctx: &mut Ctx, args: &[String], on: bool) -> Outcome {
    let id = client_ref(d, &args[0])?;
    let c = client_mut(d, id);
    c.blocked = on;
    let svc = c.service.clone();
    let what = if on { "blocked" } else { "unblocked" };
    d.event(ctx, format!("client {id} {what}"));
    if !on {
        d.schedule(ctx, &svc);
    }
    d.refresh(ctx);
    Ok(format!("client {id} {what}").into())
}

pub(super) fn block(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    set_blocked(d, ctx, args, true)
}

pub(super) fn unblock(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    set_blocked(d, ctx, args, false)
}

pub(super) fn client(d: &mut Isectd, _ctx: &mut Ctx, args: &[String]) -> Outcome {
    let id = client_ref(d, &args[0])?;
    let b = d.broker.as_ref().expect("broker");
    let c = &b.clients[&id];
    let rows = [
        ("id", id.to_string()),
        ("service", format!("\"{}\"", c.service)),
        ("priority", c.pri.to_string()),
        ("loghost", format!("\"{}\"", c.peer)),
        ("blocked", i32::from(c.blocked).to_string()),
        ("held", c.held().to_string()),
        ("worker", c.worker.map_or("-".into(), |w| w.to_string())),
        ("Transactions", c.xactions.to_string()),
        ("fd", b.fd_of(c.token_of()).to_string()),
        ("link", b.link_of(c.token_of()).to_owned()),
        (
            "connected",
            format!("{:.1} s", c.since.elapsed().as_secs_f64()),
        ),
    ];
    Ok(rows
        .iter()
        .map(|(k, v)| format!("client->{k} = {v}"))
        .collect::<Vec<_>>()
        .join("\n")
        .into())
}

pub(super) fn clients(d: &mut Isectd, _ctx: &mut Ctx, _: &[String]) -> Outcome {
    let b = d.broker.as_ref().expect("broker");
    let mut out = vec![format!(
        "  {:>9} {:<12} {:>8} {:<7} {:>6} {:>8} {:>4}  loghost",
        "client id", "service", "priority", "blocked", "worker", "xactions", "fd"
    )];
    for c in b.clients.values() {
        out.push(format!(
            "  {:>9} {:<12} {:>8} {:<7} {:>6} {:>8} {:>4}  {}",
            c.id,
            c.service,
            c.pri,
            if c.blocked { "yes" } else { "no" },
            c.worker.map_or("-".into(), |w| w.to_string()),
            c.xactions,
            b.fd_of(c.token_of()),
            c.peer
        ));
    }
    Ok(out.join("\n").into())
}

pub(super) fn idle(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let id = parse_id(&args[0], "worker")?;
    d.worker_ref(id)?;
    let r = d.idle_worker(ctx, id).map_err(Failure::refused)?;
    d.refresh(ctx);
    Ok(r.into())
}

pub(super) fn on_off(args: &[String], u: &str) -> Result<Option<bool>, Failure> {
    match args.first().map(String::as_str) {
        None => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(_) => Err(usage(u)),
    }
}

pub(super) fn preempt(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    if let Some(on) = on_off(args, "preempt [on|off]")? {
        d.broker.as_mut().expect("broker").set_preempt(on);
        d.event(ctx, format!("preempt {}", if on { "on" } else { "off" }));
    }
    let on = d.broker.as_ref().expect("broker").preempt();
    Ok(format!("preempt {}", if on { "on" } else { "off" }).into())
}

pub(super) fn pri(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let id = client_ref(d, &args[0])?;
    let n: i64 = args[1]
        .parse()
        .ok()
        .filter(|n: &i64| n.abs() <= 1_000_000)
        .ok_or_else(|| usage("pri id n (n an integer, -1000000 to 1000000)"))?;
    let c = client_mut(d, id);
    let old = c.pri;
    c.pri = n;
    d.event(ctx, format!("client {id} priority {old} -> {n}"));
    Ok(format!("client {id}: priority {old} -> {n}").into())
}

pub(super) fn reject(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let on = on_off(args, "reject [on|off]")?.unwrap_or(true);
    d.broker.as_ref().expect("broker").set_rejecting(on);
    d.event(
        ctx,
        format!(
            "client logins {}",
            if on { "rejected" } else { "accepted again" }
        ),
    );
    Ok(if on {
        "rejecting new client logins (reject off to accept them again)".into()
    } else {
        "accepting client logins".into()
    })
}

pub(super) fn service_move(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let id = client_ref(d, &args[0])?;
    let new = &args[1];
    if d.service(new).is_none() {
        return Err(Failure::refused(format!(
            "no service {new} (services: {})",
            d.service_names()
        )));
    }
    let c = client_mut(d, id);
    let old = std::mem::replace(&mut c.service, new.clone());
    d.event(
        ctx,
        format!("client {id} moved from service {old} to {new}"),
    );
    d.schedule(ctx, new);
    Ok(format!("client {id}: service {old} -> {new}").into())
}
