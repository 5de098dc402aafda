//! What the checker runs: each check's definition, compiled once from the file on the main
//! thread (addresses resolved, requests built, patterns compiled to DFAs, rows made), so that
//! running it needs no allocation.

use std::net::SocketAddr;
use std::sync::Arc;

use shvars::region::{FloatReader, IntReader, RegionReader};
use shvars::{ProcName, RuntimeDir};

use super::probe::{HttpExpect, Matcher};
use super::rows::Row;
use super::verdict::Thresholds;

/// Where a network check connects.
#[derive(Debug, Clone)]
pub enum Target {
    /// A resolved address.
    Addr(SocketAddr),
    /// A host name that did not resolve (the check fails with `DNS failure` until it does;
    /// the main loop tries again every interval).
    Unresolved {
        /// `host:port` as written.
        host: String,
        /// What the resolver said.
        why: String,
    },
}

impl Target {
    /// Resolves `host:port` (blocking: main thread only).
    pub fn resolve(hostport: &str) -> Target {
        use std::net::ToSocketAddrs;
        match hostport.to_socket_addrs() {
            Ok(mut it) => match it.next() {
                Some(a) => Target::Addr(a),
                None => Target::Unresolved {
                    host: hostport.to_owned(),
                    why: "no address".to_owned(),
                },
            },
            Err(e) => Target::Unresolved {
                host: hostport.to_owned(),
                why: e.to_string(),
            },
        }
    }
}

/// A comparison of a framework check's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    /// The operator as written.
    pub fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    /// Whether `a OP b`.
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }
}

/// `VAR OP NUMBER`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The variable of the watched process.
    pub var: String,
    /// The comparison.
    pub op: Op,
    /// The number.
    pub value: f64,
}

/// A numeric variable of another process, read without a lock.
#[derive(Debug)]
pub enum NumReader {
    /// INTEGER or ENUM.
    Int(IntReader),
    /// FLOAT.
    Float(FloatReader),
}

impl NumReader {
    /// The value as a float.
    pub fn get(&self) -> f64 {
        match self {
            NumReader::Int(r) => r.get() as f64,
            NumReader::Float(r) => r.get(),
        }
    }
}

/// The open region of a watched framework process, with its variables.
#[derive(Debug)]
pub struct Watched {
    /// The region.
    pub region: RegionReader,
    /// One reader per condition (`None`: the process has no such numeric variable).
    pub vars: Vec<Option<NumReader>>,
}

impl Watched {
    /// Opens process `name`'s region in `dir` (main thread: it reads files and allocates).
    /// `None` if it does not run.
    pub fn open(dir: &RuntimeDir, name: &ProcName, conds: &[Condition]) -> Option<Watched> {
        let region = RegionReader::open(dir, name).ok()?;
        if !region.is_alive() {
            return None;
        }
        let vars = conds
            .iter()
            .map(|c| {
                region
                    .int(&c.var)
                    .map(NumReader::Int)
                    .or_else(|_| region.float(&c.var).map(NumReader::Float))
                    .ok()
            })
            .collect();
        Some(Watched { region, vars })
    }
}

/// A framework check: another local process's liveness, heartbeat and variables.
#[derive(Debug)]
pub struct FrameworkProbe {
    /// The process.
    pub process: ProcName,
    /// Its runtime directory.
    pub dir: RuntimeDir,
    /// Largest heartbeat age accepted.
    pub max_age_ms: u64,
    /// Conditions its variables must meet.
    pub conditions: Vec<Condition>,
    /// Its open region (`None` while it does not run; the main loop opens it again).
    pub watched: Option<Box<Watched>>,
}

/// How one check probes.
#[derive(Debug)]
pub enum Probe {
    /// TCP connect: success once connected.
    Tcp {
        /// Where.
        target: Target,
    },
    /// HTTP request and response.
    Http {
        /// Where.
        target: Target,
        /// The whole request, built once.
        request: Box<[u8]>,
        /// What the response must be.
        expect: HttpExpect,
    },
    /// Connect, optionally send, then match the first line the server sends.
    Banner {
        /// Where.
        target: Target,
        /// Bytes sent first, if any.
        send: Option<Box<[u8]>>,
        /// The line's pattern.
        expect: Matcher,
    },
    /// Send a datagram, wait for one back.
    Udp {
        /// Where.
        target: Target,
        /// What to send.
        send: Box<[u8]>,
        /// What the answer must contain (any answer if `None`).
        expect: Option<Matcher>,
    },
    /// Another framework process.
    Framework(FrameworkProbe),
}

impl Probe {
    /// The kind, as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Tcp { .. } => "tcp",
            Probe::Http { .. } => "http",
            Probe::Banner { .. } => "banner",
            Probe::Udp { .. } => "udp",
            Probe::Framework(_) => "framework",
        }
    }

    /// The network target, if it has one.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Probe::Tcp { target }
            | Probe::Http { target, .. }
            | Probe::Banner { target, .. }
            | Probe::Udp { target, .. } => Some(target),
            Probe::Framework(_) => None,
        }
    }

    /// The network target, to change it (re-resolution).
    pub fn target_mut(&mut self) -> Option<&mut Target> {
        match self {
            Probe::Tcp { target }
            | Probe::Http { target, .. }
            | Probe::Banner { target, .. }
            | Probe::Udp { target, .. } => Some(target),
            Probe::Framework(_) => None,
        }
    }
}

/// An LVS real server that a check adds and removes with `ipvsadm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipvs {
    /// `-t` (TCP) or `-u` (UDP).
    pub protocol: &'static str,
    /// The virtual service, `VIP:PORT`.
    pub service: String,
    /// The real server, `RIP:PORT`.
    pub real: String,
    /// `-g` (direct routing), `-m` (NAT) or `-i` (tunnel).
    pub forward: &'static str,
    /// Its weight.
    pub weight: u32,
}

impl Ipvs {
    /// The arguments that add the real server.
    pub fn add_args(&self) -> Vec<String> {
        vec![
            "-a".into(),
            self.protocol.into(),
            self.service.clone(),
            "-r".into(),
            self.real.clone(),
            self.forward.into(),
            "-w".into(),
            self.weight.to_string(),
        ]
    }

    /// The arguments that remove it.
    pub fn remove_args(&self) -> Vec<String> {
        vec![
            "-d".into(),
            self.protocol.into(),
            self.service.clone(),
            "-r".into(),
            self.real.clone(),
        ]
    }
}

/// What the main loop does on a check's edges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actions {
    /// The notify command (argv), run once per edge.
    pub notify: Option<Vec<String>>,
    /// The real server to add on UP and remove on DOWN.
    pub ipvs: Option<Ipvs>,
}

/// One check, ready to run.
#[derive(Debug)]
pub struct CheckDef {
    /// Its name (the row `check.NAME.*`).
    pub name: Arc<str>,
    /// What it does.
    pub probe: Probe,
    /// Probe every this often.
    pub interval_ms: u64,
    /// Limit for the connection.
    pub connect_timeout_ms: u64,
    /// Limit for the answer, from the moment the query is sent.
    pub recv_timeout_ms: u64,
    /// Rise, fall, maximum time without success.
    pub thresholds: Thresholds,
    /// Its variables.
    pub row: Row,
    /// What happens on its edges.
    pub actions: Actions,
    /// One line for `checks` and the log: `http http://127.0.0.1:8080/health`.
    pub summary: String,
    /// The 1-based line of the file where it is defined.
    pub line: usize,
}

impl CheckDef {
    /// Whether `other` probes the same way (a reload keeps the state of an unchanged check).
    pub fn same_probe(&self, other: &CheckDef) -> bool {
        self.summary == other.summary
            && self.interval_ms == other.interval_ms
            && self.connect_timeout_ms == other.connect_timeout_ms
            && self.recv_timeout_ms == other.recv_timeout_ms
    }
}
