//! `cagateway`: every variable of every live local framework process served as an EPICS
//! Channel Access process variable (`NAME:VAR`), read, written through the owner as
//! `shvar set` does, and monitored. See docs/ca.md.
//!
//! The gateway is a framework process itself: its variables count clients, channels,
//! monitors, searches, writes and errors, and it serves them too (`ca1:clients`). The CA
//! server runs on a thread of its own ([`server`]) so the framework's loop never waits on the
//! network; the modules, from the wire up:
//!
//! - [`proto`]: the whole wire format (headers, commands, status codes, DBR payloads);
//! - [`names`]: how a PV name maps to a process, a variable and a field;
//! - [`pv`]: how a variable becomes each DBR type, and a client's write a `set` line;
//! - [`access`]: the access file (UAG/HAG rules; read-only for everyone by default);
//! - [`pvlist`]: the PV list (which PVs are served, in which access group);
//! - [`source`]: where values and changes come from (today: a timer that compares values);
//! - [`circuit`]: one client connection and the limits that protect the others;
//! - [`search`]: UDP name searches, with a budget per source;
//! - [`beacon`]: the beacons that announce the server;
//! - [`writes`]: writes through the owners, a thread per process;
//! - [`config`](mod@config): EPICS' environment variables;
//! - [`server`]: the loop, circuits' requests, monitors, housekeeping.

pub mod access;
pub mod beacon;
pub mod circuit;
pub mod config;
pub mod names;
pub mod proto;
pub mod pv;
pub mod pvlist;
pub mod search;
pub mod server;
pub mod source;
pub mod writes;

use std::path::PathBuf;
use std::time::Duration;

use shvars::region::VarSpec;

use self::access::Access;
use self::server::{Config, Counters, Handle};
use self::source::PollSource;
use crate::control::reply::Failure;
use crate::framework::state::ANY;
use crate::framework::{App, BoxError, Command, Ctx, Hangup, Outcome, ProcessSpec};

/// How the framework runs the gateway (the CA server keeps its own counters up to date).
pub const SPEC: ProcessSpec = ProcessSpec {
    default_name: "cagateway",
    stats: None,
    tick: None,
};

/// The command line's own options (EPICS' environment variables give the rest).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The access file (none: read-only for everyone).
    pub access: Option<PathBuf>,
    /// The PV list (none: every PV, in ASG DEFAULT).
    pub pvlist: Option<PathBuf>,
    /// TCP and UDP port, overriding EPICS_CAS_SERVER_PORT.
    pub port: Option<u16>,
    /// Beacon destination port, overriding EPICS_CAS_BEACON_PORT.
    pub beacon_port: Option<u16>,
    /// How often watched values are compared, in microseconds (default 1000).
    pub tick_us: Option<u64>,
    /// Seconds of silence before a client is sent an echo (EPICS_CA_CONN_TMO, 30).
    pub echo_secs: Option<f64>,
}

/// The gateway.
#[derive(Debug)]
pub struct Gateway {
    server: Handle,
    access_file: Option<PathBuf>,
    pvlist_file: Option<PathBuf>,
}

/// The access rules from the access file and the PV list, each optional.
///
/// # Errors
/// What is wrong in which file, at which line.
pub fn load_access(
    access: Option<&std::path::Path>,
    pvlist: Option<&std::path::Path>,
) -> Result<Access, String> {
    let a = match access {
        Some(f) => Access::load(f)?,
        None => Access::read_only(),
    };
    match pvlist {
        Some(f) => {
            let l = self::pvlist::PvList::load(f)?;
            a.with_pvlist(l).map_err(|e| {
                let hint = if access.is_none() {
                    "; no --access file is given, so only ASG(DEFAULT) exists (read-only)"
                } else {
                    ""
                };
                format!("PV list {}: {e}{hint}", f.display())
            })
        }
        None => Ok(a),
    }
}

/// The configuration from the environment and the options.
///
/// # Errors
/// A bad environment variable, option or access file.
pub fn config(opts: &Options, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
    let mut cfg = Config::from_env(&env)?;
    if let Some(p) = opts.port {
        cfg.port = p;
    }
    if let Some(bp) = opts.beacon_port {
        for a in &mut cfg.beacon_addrs {
            a.set_port(bp);
        }
    }
    if let Some(t) = opts.tick_us {
        if !(50..=1_000_000).contains(&t) {
            return Err(format!("--tick-us {t}: give 50 to 1000000 microseconds"));
        }
        cfg.tick = Duration::from_micros(t);
    }
    if let Some(s) = opts.echo_secs {
        if !(s > 0.0 && s < 86_400.0) {
            return Err(format!("--echo-secs {s}: give a number of seconds above 0"));
        }
        cfg.echo_after = Duration::from_secs_f64(s);
    }
    cfg.access = load_access(opts.access.as_deref(), opts.pvlist.as_deref())?;
    Ok(cfg)
}

fn counter(ctx: &Ctx, name: &str, desc: &str) -> Result<shvars::region::IntVar, BoxError> {
    Ok(ctx
        .region()
        .add_int(VarSpec::int(name, 0).counter().desc(desc))?)
}

fn gauge(ctx: &Ctx, name: &str, desc: &str) -> Result<shvars::region::IntVar, BoxError> {
    Ok(ctx.region().add_int(VarSpec::int(name, 0).desc(desc))?)
}

impl Gateway {
    /// Publishes the gateway's variables, binds its ports and starts serving.
    ///
    /// # Errors
    /// A bad configuration, or a port that cannot be bound.
    pub fn build(ctx: &mut Ctx, opts: Options) -> Result<Gateway, BoxError> {
        let cfg = config(&opts, |k| std::env::var(k).ok())?;
        let counters = Counters {
            clients: gauge(ctx, "clients", "CA clients connected (TCP circuits)")?,
            channels: gauge(ctx, "channels", "CA channels open")?,
            monitors: gauge(ctx, "monitors", "CA subscriptions")?,
            processes: gauge(ctx, "processes", "Local processes served")?,
            searches: counter(ctx, "searches", "Names searched for over UDP")?,
            search_hits: counter(ctx, "search_hits", "Names searched for that we serve")?,
            puts: counter(ctx, "puts", "Writes the owners accepted")?,
            put_errors: counter(ctx, "put_errors", "Writes refused (access, owner, type)")?,
            updates: counter(ctx, "updates", "Monitor updates sent")?,
            errors: counter(
                ctx,
                "errors",
                "Bad input from clients (junk, unknown commands, absurd sizes)",
            )?,
            dropped: counter(
                ctx,
                "dropped",
                "Clients dropped (protocol errors, unresponsive, too many)",
            )?,
            port: gauge(ctx, "port", "The TCP port CA clients connect to")?,
        };
        let tick = cfg.tick;
        ctx.region().add_float(
            VarSpec::float("tick_ms", tick.as_secs_f64() * 1e3)
                .unit("ms")
                .desc("How often watched variables are compared with their last value"),
        )?;
        let dir = ctx.dir().clone();
        let intf = cfg.intf.clone();
        let udp_port = cfg.port;
        let server = server::start(
            cfg,
            |wake| PollSource::start(dir.clone(), tick, wake),
            ctx.dir().clone(),
            counters,
            ctx.log().clone(),
        )?;
        ctx.log().info(format!(
            "serving Channel Access on TCP port {} and UDP port {udp_port} of {}",
            server.port,
            intf.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(Gateway {
            server,
            access_file: opts.access,
            pvlist_file: opts.pvlist,
        })
    }

    fn reload_access(&mut self) -> Result<String, String> {
        if self.access_file.is_none() && self.pvlist_file.is_none() {
            return Ok("no access file: everyone may read, no one may write".to_owned());
        }
        let a = load_access(self.access_file.as_deref(), self.pvlist_file.as_deref())?;
        self.server.set_access(a);
        let files: Vec<String> = [
            self.access_file
                .as_ref()
                .map(|f| format!("access file {}", f.display())),
            self.pvlist_file
                .as_ref()
                .map(|f| format!("PV list {}", f.display())),
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok(format!("{} read again", files.join(" and ")))
    }
}

fn reload(g: &mut Gateway, ctx: &mut Ctx, _: &[String]) -> Outcome {
    match g.reload_access() {
        Ok(t) => {
            ctx.log().info(&t);
            Ok(t.into())
        }
        Err(e) => Err(Failure::failed(format!(
            "{e}; the rules in force are unchanged"
        ))),
    }
}

impl App for Gateway {
    fn commands() -> Vec<Command<Self>> {
        vec![Command::new(
            "reload",
            "Read the access file and the PV list again (a bad file changes nothing); SIGHUP does the same",
        )
        .allowed(ANY)
        .handler(reload)]
    }

    fn hangup(&mut self, ctx: &mut Ctx) -> Hangup {
        match self.reload_access() {
            Ok(t) => ctx.log().info(t),
            Err(e) => ctx.error(&format!("{e}; the rules in force are unchanged")),
        }
        Hangup::Handled
    }

    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        vec![format!("Channel Access on TCP port {}", self.server.port)]
    }

    fn shutdown(&mut self, _ctx: &mut Ctx) {
        self.server.stop();
    }
}
