//! The seed's worker displays: `worker WID` (the detailed block) and `workers [QUEUE]`.

use super::super::model::{Queue, WState};
use super::super::Isectd;
use super::{parse_id, usage};
use crate::framework::{Ctx, Outcome};

pub(super) fn us(v: i64) -> String {
    format!("{:.3}s", v as f64 / 1e6)
}

pub(super) fn worker(d: &mut Isectd, _ctx: &mut Ctx, args: &[String]) -> Outcome {
    let id = parse_id(&args[0], "worker")?;
    let w = d.worker_ref(id)?;
    let sid = d.service(&w.spec.service).map_or(0, |s| s.id);
    let s = w.state();
    let p = w.policy();
    let q = |s: String| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let rows: Vec<(&str, String)> = vec![
        ("id", id.to_string()),
        ("service_id", sid.to_string()),
        ("kind", format!("{:?}", w.spec.kind)),
        ("hostpid", w.proc.as_ref().map_or(0, |p| p.pid).to_string()),
        ("name", q(w.spec.service.clone())),
        ("host", q(w.spec.host.clone())),
        ("path", q(w.spec.path.clone())),
        ("args", q(w.spec.args_text())),
        ("Transactions", w.xactions.to_string()),
        ("fromCount", w.from_count.to_string()),
        ("toCount", w.to_count.to_string()),
        ("restarts", w.v.restarts.get().to_string()),
        ("stopped", i32::from(!w.wanted).to_string()),
        ("up_not_log_in", i32::from(s == WState::Starting).to_string()),
        ("state", s.label().to_owned()),
        ("queue", s.queue().label().to_owned()),
        ("paused", i32::from(w.paused).to_string()),
        ("fwname", q(w.fwname.as_ref().map(ToString::to_string).unwrap_or_default())),
        (
            "link",
            match (&d.broker, w.conn) {
                (Some(b), Some(t)) => b.link_of(t).to_owned(),
                _ => "-".to_owned(),
            },
        ),
        (
            "busy_poll_us",
            w.proc
                .as_ref()
                .and_then(|p| p.busy_poll_us)
                .map_or("-".to_owned(), |u| u.to_string()),
        ),
        ("status", q(w.v.status.get())),
        ("avg_resp", us(w.v.avg_resp_us.get())),
        ("last_resp", us(w.v.last_resp_us.get())),
        ("last_exit", q(w.v.exit.get())),
        ("log", q(d.home.log_path(id).display().to_string())),
        (
            "policy",
            format!(
                "quick_ms={} backoff_ms={} backoff_max_ms={} fail_after={} grace_ms={} ready_after_ms={}",
                p.quick_ms, p.backoff_ms, p.backoff_max_ms, p.fail_after, p.grace_ms, p.ready_after_ms
            ),
        ),
    ];
    let mut out: Vec<String> = rows
        .into_iter()
        .map(|(k, v)| format!("worker->{k} = {v}"))
        .collect();
    let tail = w.v.stderr.get();
    if matches!(s, WState::Failed | WState::Backoff) && !tail.is_empty() {
        out.push("worker->log_tail =".into());
        out.extend(tail.lines().map(|l| format!("    {l}")));
    }
    Ok(out.join("\n").into())
}

pub(super) fn workers(d: &mut Isectd, _ctx: &mut Ctx, args: &[String]) -> Outcome {
    let queues: Vec<Queue> = match args.first().map(String::as_str) {
        None | Some("all") => vec![Queue::Lazy, Queue::Idle, Queue::Busy],
        Some(q) => {
            vec![Queue::parse(q).ok_or_else(|| usage("workers [lazy | idle | busy | all]"))?]
        }
    };
    let mut out = Vec::new();
    for q in queues {
        let ws: Vec<&super::super::Worker> = d
            .live_workers()
            .filter(|w| w.state().queue() == q)
            .collect();
        out.push(format!("{} ({}):", q.label(), ws.len()));
        if ws.is_empty() {
            continue;
        }
        out.push(format!(
            "  {:<12} {:>9} {:<6} {:<16} {:>8} {:>8} {:>10} {:>10} {:>8} {:>9} {:>4}  {}",
            "service",
            "worker id",
            "avail?",
            "hostname",
            "host pid",
            "xactions",
            "avg. resp.",
            "last resp.",
            "restarts",
            "client id",
            "fd",
            "state"
        ));
        for w in ws {
            let s = w.state();
            out.push(format!(
                "  {:<12} {:>9} {:<6} {:<16} {:>8} {:>8} {:>10} {:>10} {:>8} {:>9} {:>4}  {}",
                w.spec.service,
                w.id,
                if s == WState::Idle { "yes" } else { "no" },
                w.spec.host,
                w.proc.as_ref().map_or(0, |p| p.pid),
                w.xactions,
                us(w.v.avg_resp_us.get()),
                us(w.v.last_resp_us.get()),
                w.v.restarts.get(),
                w.client.map_or("-".to_owned(), |c| c.to_string()),
                w.conn
                    .map_or(-1, |t| d.broker.as_ref().expect("broker").fd_of(t)),
                s.label()
            ));
        }
    }
    Ok(out.join("\n").into())
}
