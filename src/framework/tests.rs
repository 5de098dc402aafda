//! The runner in-process: table, states, effects, deferred replies, time limits, exit, access.

use std::time::Duration;

use super::testing::TestProcess;
use super::*;
use crate::control::reply::{ErrorKind, Reply};
use crate::framework::runner::Caller;
use crate::framework::stats::StatsConfig;

/// A daemon whose `halt` answers later (when told with `finish`), whose `end` answers later
/// too, and which counts what ran.
#[derive(Default)]
struct T {
    halt: Option<Deferred>,
    end: Option<Deferred>,
    ends: u32,
}

fn halt(t: &mut T, ctx: &mut Ctx, _: &[String]) -> Outcome {
    t.halt = Some(ctx.defer());
    Ok(Done::Later)
}

fn finish(t: &mut T, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let d = t.halt.take().ok_or("nothing to finish")?;
    let r = if args.first().map(String::as_str) == Some("fail") {
        Err("it failed".into())
    } else {
        Ok("halted".to_owned())
    };
    ctx.complete(d, r);
    Ok("finished".into())
}

fn end(t: &mut T, ctx: &mut Ctx, _: &[String]) -> Outcome {
    t.ends += 1;
    t.end = Some(ctx.defer());
    ctx.timer_after(Duration::from_millis(20));
    Ok(Done::Later)
}

impl App for T {
    fn commands() -> Vec<Command<Self>> {
        vec![
            Command::init("init").reply("initialised"),
            Command::start("start").reply("started"),
            Command::pause("pause (answers later)")
                .handler(halt)
                .time_limit(Duration::from_millis(200)),
            Command::resume("resume").reply("resumed"),
            Command::new("finish", "complete the pending pause")
                .args("[fail]", 0, 1)
                .handler(finish),
            Command::end("end (answers later)")
                .allowed(state::SERVING)
                .handler(end),
            Command::update("update"),
        ]
    }

    fn timer(&mut self, ctx: &mut Ctx, _id: TimerId) {
        if let Some(d) = self.end.take() {
            ctx.complete(d, Ok("ended".to_owned()));
        }
    }
}

const SPEC: ProcessSpec = ProcessSpec {
    default_name: "t",
    stats: Some(StatsConfig {
        upfreq: 0,
        upfreq_l: 0,
        pack_name: "x",
    }),
    tick: None,
};

fn proc() -> TestProcess<T> {
    TestProcess::new(SPEC, |_| Ok(T::default())).unwrap()
}

fn ok(r: Option<Reply>) -> String {
    match r {
        Some(Reply::Ok { text }) => text,
        other => panic!("expected ok, got {other:?}"),
    }
}

fn err(r: Option<Reply>) -> (ErrorKind, String) {
    match r {
        Some(Reply::Error(f)) => (f.kind, f.text),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn states_and_kinds_of_refusal() {
    let mut p = proc();
    let (k, t) = err(p.cmd("start"));
    assert_eq!(k, ErrorKind::State);
    assert!(
        t.contains("not allowed in UNDEFINED_STATE (allowed in: INIT_STATE)"),
        "{t}"
    );
    assert_eq!(err(p.cmd("frobnicate")).0, ErrorKind::Unknown);
    assert_eq!(err(p.cmd("init extra")).0, ErrorKind::Usage);
    assert_eq!(
        err(p.cmd("exit now")).0,
        ErrorKind::Usage,
        "exit takes no argument"
    );
    assert_eq!(err(p.cmd("set label \"open")).0, ErrorKind::BadRequest);
    assert_eq!(err(p.cmd("@victim.ctl exit")).0, ErrorKind::BadRequest);
    assert_eq!(ok(p.cmd("init")), "initialised");
    assert_eq!(p.state(), RunState::Init);
    assert_eq!(ok(p.cmd("start")), "started");
    assert_eq!(p.state(), RunState::Running);
}

#[test]
fn a_deferred_transition_applies_when_it_completes_and_blocks_other_transitions() {
    let mut p = proc();
    p.cmd("init");
    p.cmd("start");
    assert_eq!(p.cmd("pause"), None);
    let client = p.last_client();
    // Still RUNNING until it completes; another transition is busy; reads go on.
    assert_eq!(p.state(), RunState::Running);
    let (k, t) = err(p.cmd("end"));
    assert_eq!(k, ErrorKind::Busy);
    assert!(t.contains("'pause' is still running"), "{t}");
    assert!(ok(p.cmd("status")).contains("in progress: pause"));
    assert_eq!(ok(p.cmd("finish")), "finished");
    let d = p.deliveries();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].origin, runner::Origin::Client(client));
    assert_eq!(d[0].reply, Reply::ok("halted"));
    assert_eq!(p.state(), RunState::Pause);
    // A failure leaves the state, and says so in lasterror.
    p.cmd("resume");
    p.cmd("pause");
    p.cmd("finish fail");
    let d = p.deliveries();
    assert_eq!(d[0].reply.kind(), Some(ErrorKind::Failed));
    assert_eq!(p.state(), RunState::Running);
    assert_eq!(p.ctx().lasterror_var().get(), "pause: it failed");
}

#[test]
fn a_deferred_command_past_its_time_limit_gets_a_timeout_and_goes_on() {
    let mut p = proc();
    p.cmd("init");
    p.cmd("start");
    assert_eq!(p.cmd("pause"), None);
    let client = p.last_client();
    let r = p.wait_reply(client, Duration::from_secs(10)).unwrap();
    assert_eq!(r.kind(), Some(ErrorKind::Timeout));
    assert!(
        r.text()
            .contains("did not finish within its time limit of 0.2 s"),
        "{}",
        r.text()
    );
    // Its late completion still changes the state (nobody is told twice).
    p.cmd("finish");
    assert!(p.deliveries().is_empty());
    assert_eq!(p.state(), RunState::Pause);
}

#[test]
fn exit_runs_the_before_exit_command_and_waits_for_it() {
    let mut p = proc();
    p.cmd("init");
    p.cmd("start");
    assert_eq!(p.cmd("exit"), None, "exit waits for the deferred end");
    let client = p.last_client();
    assert!(!p.exited());
    // Transitions are refused while exiting; reads are not.
    assert_eq!(err(p.cmd("pause")).0, ErrorKind::Busy);
    ok(p.cmd("get runstate"));
    let r = p.wait_reply(client, Duration::from_secs(10)).unwrap();
    assert_eq!(r, Reply::ok("exiting"));
    assert!(p.exited());
    assert_eq!(p.app().ends, 1);
    assert_eq!(p.state(), RunState::Init);
    // Outside the states where end is allowed, exit exits at once.
    let mut q = proc();
    assert_eq!(ok(q.cmd("exit")), "exiting");
    assert_eq!(q.app().ends, 0);
}

#[test]
fn exit_abandons_commands_still_running() {
    let mut p = proc();
    p.cmd("init");
    p.cmd("start");
    p.cmd("pause");
    let pauser = p.last_client();
    p.cmd("exit");
    let d = p.deliveries();
    let abandoned = d
        .iter()
        .find(|d| d.origin == runner::Origin::Client(pauser))
        .unwrap();
    assert_eq!(abandoned.reply.kind(), Some(ErrorKind::Abandoned));
}

#[test]
fn strangers_may_read_but_not_command() {
    let mut p = proc();
    let stranger = Caller {
        privileged: false,
        who: "uid 1001 (pid 7)".to_owned(),
    };
    let (k, t) = err(p.cmd_from("init", &stranger));
    assert_eq!(k, ErrorKind::Denied);
    assert!(
        t.contains("uid 1001 (pid 7) may not run 'init' on t"),
        "{t}"
    );
    assert_eq!(err(p.cmd_from("exit", &stranger)).0, ErrorKind::Denied);
    assert_eq!(
        err(p.cmd_from("set upfreq 3", &stranger)).0,
        ErrorKind::Denied
    );
    assert!(ok(p.cmd_from("status", &stranger)).contains("UNDEFINED_STATE"));
    assert_eq!(ok(p.cmd_from("get runstate", &stranger)), "UNDEFINED_STATE");
    ok(p.cmd_from("help", &stranger));
    // A stranger's commands do not overwrite lastcmd.
    assert_eq!(p.ctx().lasterror_var().get(), "");
    assert_eq!(p.state(), RunState::Undefined);
}

#[test]
fn effects_are_data_in_the_table() {
    let mut p = proc();
    p.cmd("init");
    p.cmd("start");
    let sg_events = |p: &mut TestProcess<T>| match p.ctx().region().var("sg_events").unwrap().get()
    {
        shvars::region::Value::Int(i) => i,
        v => panic!("{v:?}"),
    };
    p.ctx().stats().unwrap().count(5, 1, 100);
    assert_eq!(sg_events(&mut p), 0, "not refreshed yet (upfreq 0)");
    ok(p.cmd("update"));
    assert_eq!(sg_events(&mut p), 5, "update refreshes");
    p.cmd("pause");
    p.cmd("finish");
    ok(p.cmd("resume"));
    assert_eq!(sg_events(&mut p), 0, "resume starts a new interval");
}
