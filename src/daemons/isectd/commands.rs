//! isectd's command language (the seed's), as rows of the framework's command table, and what
//! each prints. `isdclient -c "..."` sends them over the control socket; `-c` and `--script` run
//! them at start-up.

use std::time::Duration;

use super::model::{Queue, WorkerSpec};
use super::vars::Policy;
use super::{Due, Isectd};
use crate::control::reply::{ErrorKind, Failure};
use crate::control::words::tokenize;
use crate::framework::{Command, Ctx, Done, Outcome};

mod clients;
mod show;
use clients::*;
use show::*;

/// What a service-or-worker argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    All,
    Service(String),
    Worker(u32),
}

fn usage(u: &str) -> Failure {
    Failure::usage(u)
}

fn parse_id(word: &str, what: &str) -> Result<u32, Failure> {
    word.parse::<u32>().map_err(|_| {
        Failure::new(
            ErrorKind::Usage,
            format!("{word:?} is not a {what} id (a number)"),
        )
    })
}

impl Isectd {
    fn target(&self, word: &str, workers_too: bool) -> Result<Target, Failure> {
        if word == "all" {
            return Ok(Target::All);
        }
        if workers_too && word.chars().all(|c| c.is_ascii_digit()) {
            let id = parse_id(word, "worker")?;
            self.worker_ref(id)?;
            return Ok(Target::Worker(id));
        }
        if self.service(word).is_some() {
            return Ok(Target::Service(word.to_owned()));
        }
        Err(Failure::refused(format!(
            "no service {word}{} (services: {})",
            if workers_too { " nor worker" } else { "" },
            self.service_names()
        )))
    }

    pub(super) fn service_names(&self) -> String {
        if self.services.is_empty() {
            "none yet: config service NAME".to_owned()
        } else {
            self.services
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    fn worker_ref(&self, id: u32) -> Result<&super::Worker, Failure> {
        match self.workers.get(&id) {
            Some(w) if !w.deleted => Ok(w),
            _ => Err(Failure::refused(format!(
                "no worker {id} (workers: {})",
                self.worker_ids()
            ))),
        }
    }

    fn worker_ids(&self) -> String {
        let ids: Vec<String> = self.live_workers().map(|w| w.id.to_string()).collect();
        if ids.is_empty() {
            "none yet: config worker SERVICE HOST PATH".to_owned()
        } else {
            ids.join(", ")
        }
    }

    /// The workers a target names, newest first (as the seed lists them).
    fn targets(&self, t: &Target) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .live_workers()
            .filter(|w| match t {
                Target::All => true,
                Target::Service(s) => &w.spec.service == s,
                Target::Worker(id) => w.id == *id,
            })
            .map(|w| w.id)
            .collect();
        v.reverse();
        v
    }

    pub(super) fn set_buckets(&mut self, num: i64, secs: i64) {
        let (num, secs) = (num.clamp(1, 1000), secs.clamp(1, 86_400));
        self.v.num_buckets.set(num);
        self.v.bucket_secs.set(secs);
        self.buckets = super::events::Buckets::new(num as usize, secs as u64);
        self.count_done(0);
    }
}

/// Runs one line of a `--script` file at start-up (blank lines and `#` comments skipped).
///
/// # Errors
/// What the command answered when it failed.
pub fn run_script_line(d: &mut Isectd, ctx: &mut Ctx, line: &str) -> Result<(), String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(());
    }
    let words = tokenize(line)?;
    let (word, args) = words.split_first().ok_or("empty")?;
    let h: crate::framework::table::Handler<Isectd> = match word.as_str() {
        "config" => config,
        "start" => start,
        "pause" => pause,
        "ready" => ready,
        "clone" => clone,
        "buckets" => buckets,
        other => {
            return Err(format!(
                "'{other}' cannot be used in a script (config, start, pause, ready, clone, buckets can)"
            ))
        }
    };
    match h(d, ctx, args) {
        Ok(_) => Ok(()),
        Err(f) => Err(f.text),
    }
}

/// The table.
pub fn table() -> Vec<Command<Isectd>> {
    const MANY: usize = usize::MAX;
    vec![
        Command::new("abort", "isectd calls abort() - creates a core file").handler(abort),
        Command::new("block", "[un]blocks incoming transactions from clientid (they are held until unblock)")
            .args("clientid", 1, 1)
            .handler(block),
        Command::new("client", "examine the client structure for client id id")
            .args("id", 1, 1)
            .public()
            .handler(client),
        Command::new("clients", "displays the client list").public().handler(clients),
        Command::new("idle", "forcibly idles the busy worker id")
            .args("id", 1, 1)
            .handler(idle),
        Command::new("preempt", "sets or reports preempting option")
            .args("[on|off]", 0, 1)
            .handler(preempt),
        Command::new("pri", "changes a client's priority to n (higher first)")
            .args("id n", 2, 2)
            .handler(pri),
        Command::new("reject", "force isectd to reject new client logins (reject off undoes it)")
            .args("[on|off]", 0, 1)
            .handler(reject),
        Command::new("service", "changes a client's service to newservice")
            .args("id newservice", 2, 2)
            .handler(service_move),
        Command::new("unblock", "reverses \"block clientid\"")
            .args("clientid", 1, 1)
            .handler(unblock),
        Command::new("buckets", "set the number of buckets to 'num' and the bucket size to 'secs' seconds")
            .args("num secs", 2, 2)
            .handler(buckets),
        Command::new("clone", "clones a worker id")
            .args("workerid", 1, 1)
            .handler(clone),
        Command::new("config", "config service name; config worker service host path [params]; config events n (remember n events, listevents)")
            .args("{service|worker|events} ...", 2, MANY)
            .handler(config),
        Command::new("delete", "deletes a client or worker")
            .args("{worker|client} id", 2, 2)
            .handler(delete),
        Command::new("end", "stop every worker's process (as stop all); exit and SIGTERM run it first")
            .before_exit()
            .time_limit(Duration::from_secs(120))
            .handler(end),
        Command::new("halt", "isectd calls exit(1), leaving its workers running (a new isectd adopts them)")
            .handler(halt),
        Command::new("isddata", "examine isdData (what isdclient -c \"\" sends)")
            .public()
            .handler(isddata),
        Command::new("listevents", "list interesting events, most recent first")
            .args("[n]", 0, 1)
            .public()
            .handler(listevents),
        Command::new("pause", "pauses a worker (makes lazy) without killing it")
            .args("service | worker | all", 1, 1)
            .handler(pause),
        Command::new("ready", "unpauses a worker (and starts a failed one again)")
            .args("service | worker | all", 1, 1)
            .handler(ready),
        Command::new("reset", "resets statistics").handler(reset),
        Command::new("send", "sends command to a worker, service or all services")
            .args("worker_id|service_name|all command...", 2, MANY)
            .time_limit(Duration::from_secs(600))
            .handler(send),
        Command::new("services", "lists isectd's services").public().handler(services),
        Command::new("shutdown", "shutdown the fd for sending")
            .args("fd | all", 1, 1)
            .handler(shutdown),
        Command::new("start", "start processing messages for service")
            .args("service | all", 1, 1)
            .handler(start),
        Command::new("stop", "stop processing messages for service")
            .args("service | all", 1, 1)
            .time_limit(Duration::from_secs(120))
            .handler(stop),
        Command::new("tail", "the last n lines (default 20) of a worker's log (stdout and stderr)")
            .args("workerid [n]", 1, 2)
            .handler(tail),
        Command::new("worker", "examine the worker structure for worker id id")
            .args("id", 1, 1)
            .public()
            .handler(worker),
        Command::new("workers", "displays the worker queues")
            .args("[lazy | idle | busy | all]", 0, 1)
            .public()
            .handler(workers),
    ]
}

fn abort(d: &mut Isectd, ctx: &mut Ctx, _: &[String]) -> Outcome {
    // A moment for the reply to reach the caller first.
    let t = ctx.timer_after(Duration::from_millis(50));
    d.timers.insert(t, Due::Abort);
    Ok("aborting: isectd calls abort() (a core file where the system allows)".into())
}

fn buckets(d: &mut Isectd, _ctx: &mut Ctx, args: &[String]) -> Outcome {
    let num: i64 = args[0].parse().map_err(|_| usage("buckets num secs"))?;
    let secs: i64 = args[1].parse().map_err(|_| usage("buckets num secs"))?;
    if !(1..=1000).contains(&num) || !(1..=86_400).contains(&secs) {
        return Err(Failure::refused(
            "buckets: num must be 1 to 1000 and secs 1 to 86400",
        ));
    }
    d.set_buckets(num, secs);
    d.dirty = true;
    Ok(format!("isdData.NumBuckets={num}, isdData.BucketSecs={secs}").into())
}

fn clone(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let from = parse_id(&args[0], "worker")?;
    let w = d.worker_ref(from)?;
    let (spec, policy): (WorkerSpec, Policy) = (w.spec.clone(), w.policy());
    let started = d.service(&spec.service).is_some_and(|s| s.started);
    let id = d.next_wid;
    d.add_worker(ctx, id, spec, &policy)
        .map_err(Failure::failed)?;
    d.event(ctx, format!("worker {id} cloned from {from}"));
    if started {
        let _ = d.start_worker(ctx, id, "cloned into a started service");
    }
    d.refresh(ctx);
    Ok(format!("cloned {id} from {from}").into())
}

fn config(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let u = "config {service name | worker service host path [params] | events n}";
    match args[0].as_str() {
        "service" => {
            let [_, name] = args else {
                return Err(usage("config service name"));
            };
            let id = d.add_service(ctx, name, None).map_err(Failure::refused)?;
            d.event(ctx, format!("service {name} configured (id {id})"));
            d.refresh(ctx);
            Ok(format!("service {name} configured (id {id})").into())
        }
        "worker" => {
            let spec =
                WorkerSpec::parse(&args[1..]).map_err(|e| Failure::new(ErrorKind::Usage, e))?;
            let Some(s) = d.service(&spec.service) else {
                return Err(Failure::refused(format!(
                    "no service {} (services: {}): config service {} first",
                    spec.service,
                    d.service_names(),
                    spec.service
                )));
            };
            let started = s.started;
            let id = d.next_wid;
            let svc = spec.service.clone();
            d.add_worker(ctx, id, spec, &Policy::default())
                .map_err(Failure::failed)?;
            d.event(ctx, format!("worker {id} configured in service {svc}"));
            if started {
                let _ = d.start_worker(ctx, id, "configured into a started service");
            }
            d.refresh(ctx);
            Ok(format!("worker {id} configured (service {svc})").into())
        }
        "events" => {
            let [_, n] = args else {
                return Err(usage("config events n"));
            };
            let n: i64 = n
                .parse()
                .ok()
                .filter(|n| (0..=1_000_000).contains(n))
                .ok_or_else(|| Failure::refused("config events: n must be 0 to 1000000"))?;
            d.v.num_events.set(n);
            d.events.resize(n as usize);
            d.v.events.set(d.events.len() as i64);
            d.dirty = true;
            d.refresh(ctx);
            Ok(format!("isdData.NumEvents={n}").into())
        }
        _ => Err(usage(u)),
    }
}

fn delete(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    match args[0].as_str() {
        "worker" => {
            let id = parse_id(&args[1], "worker")?;
            let w = d.worker_ref(id)?;
            let s = w.state();
            if s.queue() != Queue::Lazy {
                return Err(Failure::refused(format!(
                    "worker {id} is on the {} queue: before a worker can be deleted it must be on the LAZY queue, which means it must first be stopped (stop {})",
                    s.queue().label(),
                    w.spec.service
                )));
            }
            if let Some(p) = &w.proc {
                return Err(Failure::refused(format!(
                    "worker {id} is on the LAZY queue ({}) but its process (pid {}) still runs: it must first be stopped (stop {})",
                    s.label(),
                    p.pid,
                    w.spec.service
                )));
            }
            let w = d.workers.get_mut(&id).expect("checked");
            w.deleted = true;
            w.wanted = false;
            if let Some(t) = w.restart_timer.take() {
                ctx.cancel_timer(t);
            }
            w.v.pid.set(0);
            // Its row goes from every listing; `get` of one of them says when it was removed.
            if let Err(e) = ctx.region().retire_prefix(&format!("worker.{id}.")) {
                ctx.error(&format!("worker {id}: cannot retire its variables: {e}"));
            }
            let svc = w.spec.service.clone();
            if let Some(s) = d.service(&svc) {
                s.v.workers.add(-1);
            }
            d.v.workers.set(d.live_workers().count() as i64);
            d.dirty = true;
            d.event(ctx, format!("worker {id} deleted"));
            d.refresh(ctx);
            Ok(format!("worker {id} deleted").into())
        }
        "client" => {
            let id = parse_id(&args[1], "client")?;
            d.delete_client(ctx, id).map_err(Failure::refused)?;
            d.event(ctx, format!("client {id} deleted"));
            Ok(format!("client {id} deleted").into())
        }
        _ => Err(usage("delete {worker|client} id")),
    }
}

fn end(d: &mut Isectd, ctx: &mut Ctx, _: &[String]) -> Outcome {
    if d.halting {
        return Ok("leaving the workers running (halt)".into());
    }
    let ids: Vec<u32> = d.live_workers().map(|w| w.id).collect();
    for id in &ids {
        d.stop_worker(ctx, *id);
    }
    for s in &mut d.services {
        s.started = false;
    }
    d.refresh(ctx);
    let reply = ctx.defer();
    d.wait_stopped(ctx, reply, ids, "every worker stopped");
    Ok(Done::Later)
}

fn halt(d: &mut Isectd, ctx: &mut Ctx, _: &[String]) -> Outcome {
    d.halting = true;
    d.dirty = true;
    d.refresh(ctx);
    d.event(
        ctx,
        "halt: exiting with status 1, the workers left running".into(),
    );
    ctx.set_exit_code(1);
    ctx.request_exit();
    Ok("halting: isectd exits 1 and leaves its workers running (a new isectd of the same name adopts them)".into())
}

fn isddata(d: &mut Isectd, _ctx: &mut Ctx, _: &[String]) -> Outcome {
    d.count_done(0);
    let v = &d.v;
    let b = d.broker.as_ref().expect("the broker runs");
    let rows: Vec<(&str, String)> = vec![
        ("host", format!("\"{}\"", v.host.get())),
        ("ServiceList", v.service_list.get().to_string()),
        ("PriList", b.clients.len().to_string()),
        ("LazyWorkers", v.lazy.get().to_string()),
        ("IdleWorkers", v.idle.get().to_string()),
        ("BusyWorkers", v.busy.get().to_string()),
        ("socket", b.listeners().0.to_string()),
        ("port", b.port.to_string()),
        ("req_socket", b.listeners().1.to_string()),
        ("req_port", b.req_port.to_string()),
        ("NextClientID", b.next_client().to_string()),
        ("MaxUsers", b.max_users_var().to_string()),
        ("Events", v.events.get().to_string()),
        ("NumEvents", v.num_events.get().to_string()),
        ("NumBuckets", v.num_buckets.get().to_string()),
        ("BucketSecs", v.bucket_secs.get().to_string()),
        ("PeakBucket", v.peak_bucket.get().to_string()),
        ("Buckets", v.buckets.get()),
    ];
    Ok(rows
        .into_iter()
        .map(|(k, v)| format!("{:<25}= {v}", format!("isdData.{k}")))
        .collect::<Vec<_>>()
        .join("\n")
        .into())
}

fn listevents(d: &mut Isectd, _ctx: &mut Ctx, args: &[String]) -> Outcome {
    let n = match args.first() {
        Some(a) => a.parse::<usize>().map_err(|_| usage("listevents [n]"))?,
        None => d.events.len(),
    };
    if d.v.num_events.get() == 0 {
        return Ok("no events are remembered: config events N first".into());
    }
    Ok(d.events.list(n).into())
}

fn pause(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let t = d.target(&args[0], true)?;
    let ids = d.targets(&t);
    let mut out = Vec::new();
    for id in ids {
        let w = d.workers.get_mut(&id).expect("listed");
        w.paused = true;
        out.push(format!(
            "paused worker->id = {id}, worker->name = {}",
            w.spec.service
        ));
        d.events.push(format!("worker {id} paused"));
    }
    d.dirty = true;
    d.refresh(ctx);
    if out.is_empty() {
        return Ok("no worker to pause".into());
    }
    Ok(out.join("\n").into())
}

fn ready(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let t = d.target(&args[0], true)?;
    let ids = d.targets(&t);
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for id in ids {
        let w = d.workers.get_mut(&id).expect("listed");
        w.paused = false;
        let name = w.spec.service.clone();
        let again = w.failed || (w.wanted && w.proc.is_none() && w.restart_timer.is_none());
        out.push(format!("readied worker->id = {id}, worker->name = {name}"));
        d.events.push(format!("worker {id} readied"));
        if again {
            if let Err(e) = d.start_worker(ctx, id, "ready") {
                errors.push(format!("worker {id}: {e}"));
            }
        }
    }
    d.dirty = true;
    d.refresh(ctx);
    if !errors.is_empty() {
        return Err(Failure::failed(errors.join("\n")));
    }
    match t {
        Target::Worker(_) => Ok(out.join("\n").into()),
        _ => Ok("Ok.".into()),
    }
}

fn reset(d: &mut Isectd, ctx: &mut Ctx, _: &[String]) -> Outcome {
    for w in d.workers.values_mut() {
        w.xactions = 0;
        w.resp_total_us = 0;
        w.v.xactions.set(0);
        w.v.avg_resp_us.set(0);
        w.v.last_resp_us.set(0);
        w.v.restarts.set(0);
    }
    for s in &d.services {
        s.v.xactions.set(0);
    }
    d.v.restarts.set(0);
    let (n, s) = (d.v.num_buckets.get(), d.v.bucket_secs.get());
    d.set_buckets(n, s);
    d.event(ctx, "statistics reset".into());
    d.refresh(ctx);
    Ok("statistics reset".into())
}

fn send(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let t = d.target(&args[0], true)?;
    let line = crate::control::words::join(&args[1..]);
    let groups: Vec<Vec<u32>> = match &t {
        Target::Worker(id) => vec![vec![*id]],
        Target::Service(s) => vec![d.in_service(s)],
        Target::All => {
            let mut svcs: Vec<(i64, u32, String)> = d
                .services
                .iter()
                .map(|s| (s.v.order.get(), s.id, s.name.clone()))
                .collect();
            svcs.sort();
            svcs.into_iter()
                .map(|(_, _, s)| d.in_service(&s))
                .filter(|g| !g.is_empty())
                .collect()
        }
    };
    if groups.iter().all(Vec::is_empty) {
        return Err(Failure::refused(format!("no worker to send '{line}' to")));
    }
    let reply = ctx.defer();
    d.start_send(ctx, reply, line, groups);
    d.refresh(ctx);
    Ok(Done::Later)
}

impl Isectd {
    fn in_service(&self, s: &str) -> Vec<u32> {
        self.live_workers()
            .filter(|w| w.spec.service == s)
            .map(|w| w.id)
            .collect()
    }
}

fn services(d: &mut Isectd, _ctx: &mut Ctx, _: &[String]) -> Outcome {
    let mut out = vec![format!("{:>32}{:>12}", "service", "id")];
    for s in d.services.iter().rev() {
        out.push(format!("{:>32}{:>12}", s.name, s.id));
    }
    Ok(out.join("\n").into())
}

fn shutdown(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let what = args[0].as_str();
    let fd = if what == "all" {
        None
    } else {
        Some(parse_id(what, "socket fd")? as i32)
    };
    let done = d.shutdown_fds(fd);
    if done.is_empty() {
        return Err(Failure::refused(format!(
            "{}: only transaction workers and clients have a socket with isectd; framework processes and other programs are commanded through their control socket or signals (stop them with stop, or send SERVICE exit)",
            if what == "all" { "no socket to shut down".to_owned() } else { format!("no worker or client socket with fd {what}") }
        )));
    }
    d.event(ctx, format!("shutdown {what}: {}", done.join("; ")));
    Ok(done.join("\n").into())
}

fn start(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let t = d.target(&args[0], false)?;
    let names: Vec<String> = match &t {
        Target::Service(s) => vec![s.clone()],
        _ => d.services.iter().map(|s| s.name.clone()).collect(),
    };
    let mut errors = Vec::new();
    for n in &names {
        if let Some(s) = d.service_mut(n) {
            s.started = true;
        }
        let mut ids = d.in_service(n);
        ids.sort();
        for id in ids {
            if d.workers[&id].paused && d.workers[&id].proc.is_some() {
                continue;
            }
            if let Err(e) = d.start_worker(ctx, id, &format!("start {}", args[0])) {
                errors.push(format!("worker {id}: {e}"));
            }
        }
    }
    d.dirty = true;
    d.refresh(ctx);
    if errors.is_empty() {
        Ok("Ok.".into())
    } else {
        Err(Failure::failed(errors.join("\n")))
    }
}

fn stop(d: &mut Isectd, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let t = d.target(&args[0], false)?;
    let names: Vec<String> = match &t {
        Target::Service(s) => vec![s.clone()],
        _ => d.services.iter().map(|s| s.name.clone()).collect(),
    };
    let mut all = Vec::new();
    for n in &names {
        if let Some(s) = d.service_mut(n) {
            s.started = false;
        }
        for id in d.in_service(n) {
            d.stop_worker(ctx, id);
            all.push(id);
        }
    }
    d.refresh(ctx);
    let reply = ctx.defer();
    d.wait_stopped(ctx, reply, all, "Ok.");
    Ok(Done::Later)
}

fn tail(d: &mut Isectd, _ctx: &mut Ctx, args: &[String]) -> Outcome {
    let id = parse_id(&args[0], "worker")?;
    d.worker_ref(id)?;
    let n = match args.get(1) {
        Some(a) => a
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| usage("tail workerid [n]"))?,
        None => 20,
    };
    let text = d
        .home
        .tail(id, n)
        .map_err(|e| Failure::failed(format!("cannot read worker {id}'s log: {e}")))?;
    if text.is_empty() {
        return Ok(format!("(worker {id}'s log is empty)").into());
    }
    Ok(text.into())
}
