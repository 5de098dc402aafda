//! `svcshare`: sharing one resource among peers (seed 000). Each peer has a client that uses
//! the resource (the proxy gate it runs, a framework process, or any program through commands);
//! svcshare decides whose client may run, pauses the others, and never lets two run at once.
//!
//! - [`policy`]: the election (smallest queue, forces, ties), a pure function of the board.
//! - [`local`]: peers of one machine: the board is their regions, the right to run a lease file
//!   with a fencing counter. [`etcd`]: peers on many machines, through etcd.
//! - [`gate`]: the proxy (`--listen`/`--upstream`), which forwards only under a current grant.
//! - [`client`]: the other client kinds. [`irc`]: the seed's IRC front. `commands`: the seed's
//!   commands and aliases, for the control channel and IRC alike.
//!
//! Every decision (grants, yields, refusals, lease losses) goes to the event log. The seed's
//! commands keep their names and aliases. See docs/svcshare.md.

pub mod client;
mod commands;
pub mod etcd;
pub mod gate;
pub mod irc;
mod lease;
pub mod local;
pub mod policy;
mod report;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use shvars::region::{IntVar, StrVar, VarSpec};

use self::client::{Client, GrantInfo};
use self::etcd::{EtcdConfig, FromEtcd, ToEtcd};
use self::gate::{Gate, GateConfig, Pumped};
use self::irc::{Irc, IrcConfig, IrcRequest};
use self::local::{mono_ns, Busy, LocalBoard, LocalLock};
use self::policy::{Board, Entry, Force};
use crate::framework::{
    App, BoxError, Command, Ctx, Done, FdToken, ProcessSpec, Readiness, TimerId,
};

/// The version `version` reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How the framework runs svcshare (its own timer drives it).
pub const SPEC: ProcessSpec = ProcessSpec::new("svcshare");

/// One megabyte of `force MB`: 10^6 bytes.
pub const MB: u64 = 1_000_000;

/// The labels of the `state` variable.
pub const STATE_LABELS: [&str; 5] = ["PAUSED", "WAITING", "RUNNING", "FORCED", "HALTED"];

/// What this peer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareState {
    /// Not asking to run.
    Paused = 0,
    /// Asking to run, not holding.
    Waiting = 1,
    /// Holding the resource after an election.
    Running = 2,
    /// Holding it after a `force`.
    Forced = 3,
    /// Halted.
    Halted = 4,
}

/// The command line's own options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The share: peers with the same share compete for one resource.
    pub share: String,
    /// How often the board is read and the lease kept.
    pub poll: Duration,
    /// The lease's time to live.
    pub ttl: Duration,
    /// The proxy gate, if any.
    pub gate: Option<GateConfig>,
    /// The other client, if any.
    pub client: Option<Client>,
    /// etcd, if the peers meet there.
    pub etcd: Option<EtcdConfig>,
    /// The IRC front, if any.
    pub irc: Option<IrcConfig>,
}

impl Options {
    /// How long before the lease's end the holder pauses its client: a quarter of the TTL.
    pub fn margin(&self) -> Duration {
        self.ttl / 4
    }
}

/// The grant this peer holds.
#[derive(Debug, Clone, Copy)]
struct Grant {
    token: u64,
    /// Pause before this CLOCK_MONOTONIC instant (the lease's end minus the margin).
    deadline_ns: u64,
    since: Instant,
}

/// Halt mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halt {
    No,
    Until(Instant),
    Indefinite,
}

/// Where the peers meet.
enum Peers {
    Local {
        lock: LocalLock,
        board: LocalBoard,
    },
    Etcd {
        tx: Sender<ToEtcd>,
        thread: Option<std::thread::JoinHandle<()>>,
        board: Board,
        lease_until: u64,
        acquiring: bool,
        trouble: Option<String>,
        sent: Option<Entry>,
    },
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peers::Local { lock, .. } => write!(f, "Local({})", lock.path().display()),
            Peers::Etcd { .. } => write!(f, "Etcd"),
        }
    }
}

#[derive(Debug)]
struct Vars {
    state: IntVar,
    queue: IntVar,
    want: IntVar,
    force: IntVar,
    asked_ns: IntVar,
    items: StrVar,
    holder: StrVar,
    token: IntVar,
    force_remaining: IntVar,
    halt_remaining: IntVar,
    bytes: IntVar,
    grants: IntVar,
    stale_refused: IntVar,
    lease_lost: IntVar,
    peers: IntVar,
    connections: IntVar,
    dropped: IntVar,
    verdict: StrVar,
}

/// The daemon.
#[derive(Debug)]
pub struct Svcshare {
    opts: Options,
    me: String,
    vars: Vars,
    queue: Vec<String>,
    want: bool,
    force: Force,
    force_until: u64,
    halt: Halt,
    asked_ns: i64,
    grant: Option<Grant>,
    peers: Peers,
    gate: Option<Gate>,
    irc: Option<Irc>,
    poll: TimerId,
    last_renew_ns: u64,
    last_busy: Option<String>,
    last_verdict: String,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Svcshare {
    /// Publishes the variables, opens the lease file (or starts the etcd thread), the proxy
    /// and the IRC connection, and pauses the client, as the seed does at start.
    ///
    /// # Errors
    /// A bad option, a lease file that is not ours, an address that cannot be bound.
    pub fn build(ctx: &mut Ctx, opts: Options) -> Result<Svcshare, BoxError> {
        shvars::ProcName::new(&opts.share).map_err(|e| format!("--share {}: {e}", opts.share))?;
        let r = ctx.region().clone();
        let int = |n: &str, d: &str| r.add_int(VarSpec::int(n, 0).desc(d));
        let counter = |n: &str, d: &str| r.add_int(VarSpec::int(n, 0).counter().desc(d));
        r.add_str(
            VarSpec::string("share", 64, &opts.share)
                .desc("The share: peers of the same share compete for one resource"),
        )?;
        r.add_str(
            VarSpec::string(
                "peering",
                256,
                &match &opts.etcd {
                    Some(e) => format!("etcd {} prefix {}", e.url, e.prefix),
                    None => "local".to_owned(),
                },
            )
            .desc("Where the peers meet: local (the runtime directory) or etcd"),
        )?;
        r.add_int(
            VarSpec::int("ttl_ms", opts.ttl.as_millis() as i64)
                .unit("ms")
                .desc("Lease time to live (--ttl)"),
        )?;
        let vars = Vars {
            state: r.add_int(
                VarSpec::enumeration("state", &STATE_LABELS, 0)
                    .desc("PAUSED, WAITING (asks to run), RUNNING, FORCED or HALTED"),
            )?,
            queue: int("queue", "Queue size reported to peers (0 while halted)")?,
            want: int("want", "1 if this peer asks to run (election or force)")?,
            force: int(
                "force",
                "0 not forced, 1 forced, 2 forced with megabytes to go",
            )?,
            asked_ns: int(
                "asked_ns",
                "When this peer last asked to run (ns since the epoch)",
            )?,
            items: r.add_str(
                VarSpec::string("queue_items", 1024, "").desc("The queue's items, in order"),
            )?,
            holder: r.add_str(
                VarSpec::string("holder", 64, "")
                    .desc("Who holds the resource now (empty: nobody)"),
            )?,
            token: int("token", "Fencing token of this peer's grant (0: none)")?,
            force_remaining: r.add_int(
                VarSpec::int("force_remaining", 0)
                    .unit("B")
                    .desc("Bytes still to go before peers' elections count again (force MB)"),
            )?,
            halt_remaining: r.add_int(
                VarSpec::int("halt_remaining", 0)
                    .unit("s")
                    .desc("Seconds left of a halt (-1: indefinite, 0: not halted)"),
            )?,
            bytes: r.add_int(
                VarSpec::int("bytes_forwarded", 0)
                    .unit("B")
                    .counter()
                    .desc("Bytes the proxy forwarded, both directions"),
            )?,
            grants: counter("grants", "Times this peer was granted the resource")?,
            stale_refused: counter(
                "stale_refused",
                "Writes the gate refused because the grant was no longer current",
            )?,
            lease_lost: counter(
                "lease_lost",
                "Grants lost because the lease could not be renewed",
            )?,
            peers: int("peers", "Other peers of the share seen")?,
            connections: int("connections", "Proxy connections open")?,
            dropped: counter(
                "dropped",
                "Proxy connections closed for being held over the bound",
            )?,
            verdict: r.add_str(
                VarSpec::string("election", 256, "").desc("The last election's outcome and why"),
            )?,
        };
        let me = ctx.name().as_str().to_owned();
        let poll_every = opts.poll;
        let peers = match &opts.etcd {
            None => Peers::Local {
                lock: LocalLock::open(ctx.dir().path(), &opts.share, &me, opts.ttl)?,
                board: LocalBoard::new(ctx.dir().clone(), &opts.share, &me, opts.ttl)?,
            },
            Some(cfg) => {
                if opts.ttl.subsec_nanos() != 0 || opts.ttl < Duration::from_secs(2) {
                    return Err(format!(
                        "--ttl {} ms: etcd leases are whole seconds, at least 2 (write e.g. --ttl 2s)",
                        opts.ttl.as_millis()
                    )
                    .into());
                }
                let (tx, thread) = etcd::start(
                    cfg,
                    &opts.share,
                    &me,
                    opts.ttl,
                    poll_every,
                    ctx.mailbox::<Svcshare>(),
                )?;
                Peers::Etcd {
                    tx,
                    thread: Some(thread),
                    board: Board::default(),
                    lease_until: 0,
                    acquiring: false,
                    trouble: None,
                    sent: None,
                }
            }
        };
        let gate = match &opts.gate {
            Some(g) => Some(Gate::open(ctx, g.clone())?),
            None => None,
        };
        let irc = opts.irc.as_ref().map(|c| Irc::connect(ctx, c.clone()));
        let poll = ctx.timer_every(poll_every);
        let mut s = Svcshare {
            opts,
            me,
            vars,
            queue: Vec::new(),
            want: false,
            force: Force::None,
            force_until: 0,
            halt: Halt::No,
            asked_ns: 0,
            grant: None,
            peers,
            gate,
            irc,
            poll,
            last_renew_ns: 0,
            last_busy: None,
            last_verdict: String::new(),
        };
        // The seed: on start-up, pause the client and the proxy.
        s.pause_client(ctx, 0, "at start-up");
        ctx.log().info(format!(
            "share {}: {} peers, lease {} ms (pause {} ms before its end); client: {}",
            s.opts.share,
            match &s.opts.etcd {
                Some(e) => format!("etcd ({})", e.url),
                None => "local".to_owned(),
            },
            s.opts.ttl.as_millis(),
            s.opts.margin().as_millis(),
            s.client_text()
        ));
        s.publish();
        Ok(s)
    }

    fn client_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(g) = &self.opts.gate {
            parts.push(format!("proxy {} -> {}", g.listen, g.upstream));
        }
        match &self.opts.client {
            Some(Client::Framework(n, _)) => parts.push(format!("framework process {n}")),
            Some(Client::Commands { .. }) => parts.push("pause/resume commands".to_owned()),
            None => {}
        }
        parts.join(", ")
    }

    fn state(&self) -> ShareState {
        if self.halt != Halt::No {
            ShareState::Halted
        } else if self.grant.is_some() {
            if self.force != Force::None {
                ShareState::Forced
            } else {
                ShareState::Running
            }
        } else if self.want {
            ShareState::Waiting
        } else {
            ShareState::Paused
        }
    }

    fn bytes(&self) -> u64 {
        self.gate.as_ref().map_or(0, |g| g.bytes)
    }

    fn my_entry(&self) -> Entry {
        let halted = self.halt != Halt::No;
        Entry {
            name: self.me.clone(),
            queue: if halted { 0 } else { self.queue.len() as i64 },
            want: self.want && !halted,
            force: if halted { Force::None } else { self.force },
            asked_ns: self.asked_ns,
        }
    }

    /// Writes this peer's entry where the peers read it, and the variables.
    fn publish(&mut self) {
        let e = self.my_entry();
        self.vars.queue.set(e.queue);
        self.vars.want.set(i64::from(e.want));
        self.vars.force.set(e.force as i64);
        self.vars.asked_ns.set(e.asked_ns);
        self.vars.items.set(&self.queue.join(" "));
        self.vars.state.set(self.state() as i64);
        self.vars
            .token
            .set(self.grant.map_or(0, |g| g.token as i64));
        self.vars
            .force_remaining
            .set(if self.force == Force::Monopoly {
                self.force_until.saturating_sub(self.bytes()) as i64
            } else {
                0
            });
        self.vars.halt_remaining.set(match self.halt {
            Halt::No => 0,
            Halt::Indefinite => -1,
            Halt::Until(t) => t.saturating_duration_since(Instant::now()).as_secs() as i64,
        });
        if let Some(g) = &self.gate {
            self.vars.bytes.set(g.bytes as i64);
            self.vars.connections.set(g.connections() as i64);
            self.vars.dropped.set(g.dropped as i64);
        }
        if let Peers::Etcd { tx, sent, .. } = &mut self.peers {
            if sent.as_ref() != Some(&e) {
                let _ = tx.send(ToEtcd::Advert(e.clone()));
                *sent = Some(e);
            }
        }
    }

    fn board(&mut self) -> Board {
        let mine = self.my_entry();
        match &mut self.peers {
            Peers::Local { lock, board } => {
                let b = board.read(mine, lock);
                self.vars.peers.set(board.peer_count() as i64);
                b
            }
            Peers::Etcd { board, .. } => {
                let mut b = board.clone();
                b.entries.retain(|e| e.name != mine.name);
                self.vars.peers.set(b.entries.len() as i64);
                b.entries.insert(0, mine);
                b
            }
        }
    }

    /// One round: halts and forces that end, the board, the election, the lease.
    fn round(&mut self, ctx: &mut Ctx) {
        if let Halt::Until(t) = self.halt {
            if Instant::now() >= t {
                self.halt = Halt::No;
                self.want = !self.queue.is_empty();
                if self.want {
                    self.asked_ns = now_ns();
                }
                ctx.log().info(format!(
                    "halt over: {}",
                    if self.want {
                        "the queue is not empty: asking for an election"
                    } else {
                        "the queue is empty: staying paused"
                    }
                ));
            }
        }
        if self.force == Force::Monopoly && self.bytes() >= self.force_until {
            self.force = Force::Open;
            ctx.log()
                .info("force: its megabytes went through: peers' elections count again".to_owned());
        }
        self.publish();
        let board = self.board();
        self.vars.holder.set(board.holder.as_deref().unwrap_or(""));
        let verdict = policy::elect(&board);
        if let Some(v) = &verdict {
            if v.why != self.last_verdict {
                self.last_verdict = v.why.clone();
                self.vars.verdict.set(&v.why);
            }
        }
        let winner = verdict.as_ref().map(|v| v.winner.as_str());
        if let Some(g) = self.grant {
            if mono_ns() >= g.deadline_ns {
                self.lose(ctx, "the lease was not renewed in time");
                return;
            }
            if !self.want || winner != Some(self.me.as_str()) {
                let why = match &verdict {
                    Some(v) if self.want => {
                        format!("the election now goes to {}: {}", v.winner, v.why)
                    }
                    _ => "no longer asking to run".to_owned(),
                };
                if self.force == Force::Open {
                    // A peer's election after our force won: the force is over.
                    self.force = Force::None;
                }
                self.give_back(ctx, &why);
                return;
            }
            self.renew(ctx);
        } else if self.want
            && self.halt == Halt::No
            && winner == Some(self.me.as_str())
            && board.holder.as_deref().is_none_or(|h| h == self.me)
        {
            let why = verdict.map(|v| v.why).unwrap_or_default();
            self.acquire(ctx, &why);
        }
        self.publish();
    }
}

/// The gate's check before every write: the grant's lease has not reached its deadline. Nobody
/// else can be granted before the lease ends (or this process dies), so a grant within its
/// deadline is the current one; the resource checks the stamped token as well.
fn fence_ok(g: Grant) -> bool {
    mono_ns() < g.deadline_ns
}

impl App for Svcshare {
    fn commands() -> Vec<Command<Self>> {
        commands::table()
    }

    fn timer(&mut self, ctx: &mut Ctx, id: TimerId) {
        if id == self.poll {
            self.round(ctx);
            if self.grant.is_none() {
                if let Some(g) = self.gate.as_mut() {
                    let mut logs = Vec::new();
                    g.expire_held(ctx, &mut |s| logs.push(s));
                    for l in logs {
                        ctx.log().warn(l);
                    }
                }
            }
            if let Some(irc) = self.irc.as_mut() {
                irc.upkeep(ctx);
            }
        }
    }

    fn ready(&mut self, ctx: &mut Ctx, fd: FdToken, r: Readiness) {
        if self.gate.as_ref().is_some_and(|g| g.owns(fd)) {
            let g = self.grant;
            let gate = self.gate.as_mut().expect("checked above");
            let mut fence = || g.is_some_and(fence_ok);
            let mut logs = Vec::new();
            let res = gate.ready(ctx, fd, g.map(|g| g.token), &mut fence, &mut |s| {
                logs.push(s)
            });
            for l in logs {
                ctx.log().info(l);
            }
            if res == Pumped::Stale {
                self.vars.stale_refused.add(1);
                self.lose(
                    ctx,
                    "the gate found the grant stale before a write and refused it",
                );
            }
            return;
        }
        if self.irc.as_ref().is_some_and(|i| i.owns(fd)) {
            let reqs = self
                .irc
                .as_mut()
                .map(|i| i.ready(ctx, r))
                .unwrap_or_default();
            for q in reqs {
                self.irc_request(ctx, q);
            }
        }
    }

    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        self.status_lines()
    }

    fn shutdown(&mut self, ctx: &mut Ctx) {
        self.want = false;
        self.give_back(ctx, "exiting");
        if let Peers::Etcd { tx, thread, .. } = &mut self.peers {
            let _ = tx.send(ToEtcd::Stop);
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
        if let Some(i) = self.irc.as_mut() {
            i.quit(ctx);
        }
    }
}
