//! `eventdemo`: a small framework daemon that uses every event source of the runner, as a model
//! for daemon writers and as the subject of the event-loop tests.
//!
//! - a periodic timer (`--period MS`): counts `timer_fires`, records how late it fired
//!   (`timer_late_us`, the worst so far);
//! - a TCP listener on 127.0.0.1 registered in the loop (`port`): echoes every line back, counts
//!   `echoed`;
//! - SIGCHLD: `spawn N` starts N short children; their exits are reaped on SIGCHLD (`reaped`,
//!   `last_status`);
//! - a thread posting to the mailbox: `post N` starts a thread that posts N jobs (`posted`);
//! - `slow SECS`: a command that answers later (a one-shot timer), while everything else goes on;
//! - `block SECS`: a handler that blocks the loop (what a daemon must not do): with its time
//!   limit of 1 s, the caller still gets a `timeout` reply;
//! - `crash`: a handler that panics: the caller gets an `internal` error, the process goes on.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use daqproc::framework::{
    App, BoxError, Command, Ctx, Deferred, Done, FdToken, Interest, Outcome, ProcessArgs,
    ProcessSpec, Readiness, TimerId,
};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use shvars::region::{IntVar, VarSpec};

/// A framework daemon that uses every event source of the runner.
#[derive(Debug, Parser)]
#[command(name = "eventdemo")]
struct Cli {
    #[command(flatten)]
    process: ProcessArgs,
    /// Period of the timer in milliseconds
    #[arg(long, default_value_t = 50)]
    period: u64,
}

struct Demo {
    period: Duration,
    timer: TimerId,
    next_due: Instant,
    listener: TcpListener,
    listen_token: FdToken,
    clients: HashMap<FdToken, TcpStream>,
    slow: Vec<(TimerId, Deferred)>,
    v: Vars,
}

struct Vars {
    timer_fires: IntVar,
    timer_late_us: IntVar,
    echoed: IntVar,
    reaped: IntVar,
    last_status: IntVar,
    posted: IntVar,
}

impl Demo {
    fn build(ctx: &mut Ctx, period: Duration) -> Result<Demo, BoxError> {
        let r = ctx.region();
        let v = Vars {
            timer_fires: r.add_int(
                VarSpec::int("timer_fires", 0)
                    .counter()
                    .desc("Times the periodic timer fired"),
            )?,
            timer_late_us: r.add_int(
                VarSpec::int("timer_late_us", 0)
                    .unit("us")
                    .desc("Worst lateness of the periodic timer"),
            )?,
            echoed: r.add_int(
                VarSpec::int("echoed", 0)
                    .counter()
                    .desc("Lines echoed on the TCP port"),
            )?,
            reaped: r.add_int(
                VarSpec::int("reaped", 0)
                    .counter()
                    .desc("Children reaped on SIGCHLD"),
            )?,
            last_status: r.add_int(
                VarSpec::int("last_status", -1).desc("Exit status of the last child reaped"),
            )?,
            posted: r.add_int(
                VarSpec::int("posted", 0)
                    .counter()
                    .desc("Jobs run from the mailbox"),
            )?,
        };
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        r.add_int(
            VarSpec::int("port", i64::from(listener.local_addr()?.port())).desc("TCP echo port"),
        )?;
        let listen_token = ctx.register_fd(listener.as_raw_fd(), Interest::Read)?;
        let timer = ctx.timer_every(period);
        Ok(Demo {
            period,
            timer,
            next_due: Instant::now() + period,
            listener,
            listen_token,
            clients: HashMap::new(),
            slow: Vec::new(),
            v,
        })
    }

    fn accept(&mut self, ctx: &mut Ctx) {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(true);
                    match ctx.register_fd(s.as_raw_fd(), Interest::Read) {
                        Ok(t) => {
                            self.clients.insert(t, s);
                        }
                        Err(e) => ctx.error(&format!("cannot watch a client: {e}")),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    ctx.error(&format!("accept: {e}"));
                    return;
                }
            }
        }
    }

    fn echo(&mut self, ctx: &mut Ctx, t: FdToken) {
        let Some(s) = self.clients.get_mut(&t) else {
            return;
        };
        let mut buf = [0u8; 4096];
        let mut closed = false;
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    let _ = s.write_all(&buf[..n]);
                    let lines = buf[..n].iter().filter(|b| **b == b'\n').count();
                    self.v.echoed.add(lines as i64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            if let Some(s) = self.clients.remove(&t) {
                let _ = ctx.deregister_fd(s.as_raw_fd());
            }
        }
    }
}

fn secs(args: &[String]) -> Result<Duration, String> {
    args[0]
        .parse::<f64>()
        .ok()
        .filter(|s| *s >= 0.0 && *s < 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{:?} is not a number of seconds", args[0]))
}

fn slow(d: &mut Demo, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let wait = secs(args)?;
    let reply = ctx.defer();
    let t = ctx.timer_after(wait);
    d.slow.push((t, reply));
    Ok(Done::Later)
}

fn block(_: &mut Demo, _: &mut Ctx, args: &[String]) -> Outcome {
    std::thread::sleep(secs(args)?);
    Ok("blocked, and back".into())
}

fn crash(_: &mut Demo, _: &mut Ctx, _: &[String]) -> Outcome {
    panic!("crash on purpose");
}

fn spawn(_: &mut Demo, _: &mut Ctx, args: &[String]) -> Outcome {
    let n: u32 = args[0]
        .parse()
        .map_err(|_| format!("{:?} is not a count", args[0]))?;
    for i in 0..n {
        // Exit statuses 0, 1, 2...: the last one reaped is visible in last_status.
        std::process::Command::new("/bin/sh")
            .args(["-c", &format!("exit {}", i % 4)])
            .spawn()
            .map_err(|e| format!("cannot spawn: {e}"))?;
    }
    Ok(format!("{n} children started").into())
}

fn post(_: &mut Demo, ctx: &mut Ctx, args: &[String]) -> Outcome {
    let n: u32 = args[0]
        .parse()
        .map_err(|_| format!("{:?} is not a count", args[0]))?;
    let mb = ctx.mailbox::<Demo>();
    std::thread::spawn(move || {
        for _ in 0..n {
            mb.post(|d, _| {
                d.v.posted.add(1);
            });
        }
    });
    Ok(format!("posting {n} jobs").into())
}

impl App for Demo {
    fn commands() -> Vec<Command<Self>> {
        vec![
            Command::new(
                "slow",
                "Answer after SECS seconds (the process goes on serving)",
            )
            .args("SECS", 1, 1)
            .handler(slow),
            Command::new(
                "block",
                "Block the main loop for SECS seconds (what not to do)",
            )
            .args("SECS", 1, 1)
            .time_limit(Duration::from_secs(1))
            .handler(block),
            Command::new("crash", "Panic in the handler").handler(crash),
            Command::new(
                "spawn",
                "Start N children that exit at once (reaped on SIGCHLD)",
            )
            .args("N", 1, 1)
            .handler(spawn),
            Command::new("post", "Post N jobs to the main loop from a thread")
                .args("N", 1, 1)
                .handler(post),
        ]
    }

    fn timer(&mut self, ctx: &mut Ctx, id: TimerId) {
        if id == self.timer {
            let late = Instant::now().saturating_duration_since(self.next_due);
            self.next_due = Instant::now().max(self.next_due) + self.period;
            self.v.timer_fires.add(1);
            if late.as_micros() as i64 > self.v.timer_late_us.get() {
                self.v.timer_late_us.set(late.as_micros() as i64);
            }
            return;
        }
        if let Some(i) = self.slow.iter().position(|(t, _)| *t == id) {
            let (_, reply) = self.slow.swap_remove(i);
            ctx.complete(reply, Ok("slow answer".to_owned()));
        }
    }

    fn ready(&mut self, ctx: &mut Ctx, fd: FdToken, _r: Readiness) {
        if fd == self.listen_token {
            self.accept(ctx);
        } else {
            self.echo(ctx, fd);
        }
    }

    fn signal(&mut self, _ctx: &mut Ctx, sig: Signal) {
        if sig != Signal::SIGCHLD {
            return;
        }
        // Signals coalesce: reap until no child is left to reap.
        while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            match st {
                WaitStatus::Exited(_, code) => {
                    self.v.reaped.add(1);
                    self.v.last_status.set(i64::from(code));
                }
                WaitStatus::Signaled(..) => {
                    self.v.reaped.add(1);
                }
                _ => break,
            }
        }
    }

    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        vec![format!("clients: {}", self.clients.len())]
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let period = Duration::from_millis(cli.period.max(1));
    daqproc::framework::run(cli.process, ProcessSpec::new("eventdemo"), move |ctx| {
        Demo::build(ctx, period)
    })
}
