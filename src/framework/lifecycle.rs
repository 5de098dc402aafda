//! The life of a framework process, from the command line to a clean exit: runtime directory,
//! detaching, region and standard variables, the daemon's set-up, control FIFO and socket,
//! start-up commands, the event loop, shutdown.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shvars::region::{CreateOptions, IntVar, StrVar, VarRegion, VarSpec};
use shvars::{ProcName, RuntimeDir};

use super::app::{App, ProcessSpec};
use super::ctx::{Ctx, Job, LoopServices};
use super::event_loop::EventLoop;
use super::eventlog::EventLog;
use super::guard::Guard;
use super::notify::Notifier;
use super::runner::{Caller, Origin, Runner};
use super::server::{Auth, Server};
use super::state::{RunState, RUNSTATE_LABELS};
use super::stats::Stats;
use super::timers::Timers;
use crate::control::fifo::{ControlFifo, ControlSocket};
use crate::control::reply::Reply;
use crate::support::files::{euid, open_log};
use crate::support::units::cut;

/// Boxed error of an application's set-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Options every framework process takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessArgs {
    /// Process name: 1-31 characters of [A-Za-z0-9_.-]; names its files NAME.shv, NAME.ctl, NAME.sock
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,
    /// Runtime directory [default: $SHVAR_DIR, else /dev/shm/shvars, else $XDG_RUNTIME_DIR/shvars]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Detach from the terminal and log to DIR/NAME.log (or --log); SIGHUP re-opens the log
    #[arg(long)]
    pub daemon: bool,
    /// Log file when detached
    #[arg(long, value_name = "FILE", requires = "daemon")]
    pub log: Option<PathBuf>,
    /// Run COMMAND at start-up, in order, before serving commands (repeatable):
    /// -c init -c 'start farm1 2115'
    #[arg(short = 'c', long = "command", value_name = "COMMAND")]
    pub commands: Vec<String>,
    /// Let members of GROUP send commands too (by default only the owner and root may)
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

fn fail(detached: &mut Option<shvars::sys::Detached>, msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    if let Some(d) = detached {
        d.failed(msg);
    }
    ExitCode::FAILURE
}

/// Points stdout and stderr at the log file `path` (opened as [`open_log`] does).
///
/// # Errors
/// If the file cannot be opened safely.
pub fn redirect_output(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = open_log(path)?;
    nix::unistd::dup2(f.as_raw_fd(), 1)?;
    nix::unistd::dup2(f.as_raw_fd(), 2)?;
    Ok(())
}

struct StdVars {
    runstate: IntVar,
    lastcmd: StrVar,
    lasterror: StrVar,
    heartbeat: IntVar,
    ctlerrors: IntVar,
}

fn std_vars(region: &VarRegion) -> Result<StdVars, BoxError> {
    let runstate = region.add_int(
        VarSpec::enumeration("runstate", &RUNSTATE_LABELS, 0).desc("Status of the process"),
    )?;
    region
        .add_int(VarSpec::int("pid", std::process::id() as i64).desc("Process id of the owner"))?;
    let lastcmd = region.add_str(
        VarSpec::string("lastcmd", 256, "").desc("Last command received (cut to 256 bytes)"),
    )?;
    let lasterror = region.add_str(
        VarSpec::string("lasterror", 256, "")
            .desc("Last error, prefixed with the command or part that failed"),
    )?;
    let heartbeat = region.add_int(
        VarSpec::int("heartbeat", 0)
            .desc("Main loop heartbeats (10 per second); its change time says the loop is alive")
            .counter(),
    )?;
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    region.add_int(
        VarSpec::int("started", started)
            .desc("Start time (Unix seconds)")
            .unit("s")
            .metric("shvar_started_timestamp_seconds"),
    )?;
    let args: Vec<String> = std::env::args().collect();
    let cmdline = crate::control::words::join(&args);
    region.add_str(
        VarSpec::string("cmdline", 1024, cut(&cmdline, 1024))
            .desc("The command line that started the process (quoted as the control words are)"),
    )?;
    let cwd = std::env::current_dir()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    region.add_str(
        VarSpec::string("cwd", 512, cut(&cwd, 512))
            .desc("The directory the process was started in"),
    )?;
    let supervisor = std::env::var("DAQPROC_SUPERVISOR").unwrap_or_default();
    region.add_str(
        VarSpec::string("supervisor", 128, cut(&supervisor, 128)).desc(
            "Who starts and restarts this process, if a supervisor does (its DAQPROC_SUPERVISOR)",
        ),
    )?;
    let ctlerrors = region.add_int(VarSpec::int("ctlerrors", 0).counter().desc(
        "Bad input on the control FIFO and socket, and clients dropped (see the event log)",
    ))?;
    Ok(StdVars {
        runstate,
        lastcmd,
        lasterror,
        heartbeat,
        ctlerrors,
    })
}

/// Runs a framework process until `exit` or SIGTERM/SIGINT: parses nothing itself (the binary's
/// clap parser gives `args`), creates the region, calls `build` to make the [`App`] (which adds
/// its variables, arms its timers and starts its threads), opens the control FIFO and socket,
/// runs the `-c` commands, then serves.
///
/// Returns exit code 0 after a clean exit (or the code the daemon asked for with
/// [`Ctx::set_exit_code`]), 1 if start-up failed (the reason printed once).
pub fn run<A: App>(
    args: ProcessArgs,
    spec: ProcessSpec,
    build: impl FnOnce(&mut Ctx) -> Result<A, BoxError>,
) -> ExitCode {
    run_sized(args, spec, CreateOptions::default(), build)
}

/// [`run`] with a region of the given sizes, for a daemon whose number of variables is known
/// only at run time (a table with a row per entry of its configuration file). Pages of the
/// region that are never touched cost no memory, so generous sizes are cheap.
pub fn run_sized<A: App>(
    args: ProcessArgs,
    spec: ProcessSpec,
    sizes: CreateOptions,
    build: impl FnOnce(&mut Ctx) -> Result<A, BoxError>,
) -> ExitCode {
    let mut detached = None;
    let name = match ProcName::new(args.name.as_deref().unwrap_or(spec.default_name)) {
        Ok(n) => n,
        Err(e) => return fail(&mut detached, &e.to_string()),
    };
    let dir = RuntimeDir::resolve(args.dir.as_deref());
    if let Err(e) = dir.ensure() {
        return fail(&mut detached, &e.to_string());
    }
    let mut log_file = None;
    if args.daemon {
        let log = args
            .log
            .clone()
            .unwrap_or_else(|| dir.path().join(format!("{name}.log")));
        let f = match open_log(&log) {
            Ok(f) => f,
            Err(e) => return fail(&mut detached, &format!("cannot detach: {e}")),
        };
        match shvars::sys::daemonize(f, &log) {
            Ok(d) => detached = Some(d),
            Err(e) => return fail(&mut detached, &format!("cannot detach: {e}")),
        }
        log_file = Some(log);
    }
    match start::<A>(
        &args,
        spec,
        sizes,
        name,
        dir,
        build,
        &mut detached,
        log_file,
    ) {
        Ok(code) => code,
        Err(msg) => fail(&mut detached, &msg),
    }
}

fn group_id(group: &str) -> Result<u32, String> {
    nix::unistd::Group::from_name(group)
        .map_err(|e| format!("group {group}: {e}"))?
        .map(|g| g.gid.as_raw())
        .ok_or_else(|| format!("no group named {group}"))
}

/// Removes the region file when dropped, unless disarmed (start-up got as far as publishing).
struct Unpublished(Option<PathBuf>);

impl Unpublished {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Unpublished {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The region with the standard (and statistics) variables, and the context around it.
pub(crate) fn make_ctx(
    name: &ProcName,
    dir: &RuntimeDir,
    spec: ProcessSpec,
    sizes: CreateOptions,
    services: LoopServices,
) -> Result<Ctx, String> {
    let region = Arc::new(VarRegion::create_pending(dir, name, &sizes).map_err(|e| e.to_string())?);
    let v = std_vars(&region).map_err(|e| format!("cannot publish the standard variables: {e}"))?;
    let stats = match spec.stats {
        Some(cfg) => Some(Stats::new(&region, cfg).map_err(|e| e.to_string())?),
        None => None,
    };
    let log = Arc::new(EventLog::new(name.as_str()));
    Ok(Ctx {
        name: name.clone(),
        dir: dir.clone(),
        region,
        runstate: v.runstate,
        lastcmd: v.lastcmd,
        lasterror: v.lasterror,
        heartbeat: v.heartbeat,
        ctlerrors: v.ctlerrors,
        state: RunState::Undefined,
        notify: Notifier::from_env(log.clone()),
        log,
        stats,
        started: SystemTime::now(),
        exit_requested: false,
        exiting: false,
        exit_code: 0,
        timers: Timers::default(),
        services,
        next_token: 0,
        next_deferred: 0,
        deferred_now: None,
        completions: Vec::new(),
        log_file: None,
        busy_poll: Duration::ZERO,
    })
}

#[allow(clippy::too_many_arguments)]
fn start<A: App>(
    args: &ProcessArgs,
    spec: ProcessSpec,
    sizes: CreateOptions,
    name: ProcName,
    dir: RuntimeDir,
    build: impl FnOnce(&mut Ctx) -> Result<A, BoxError>,
    detached: &mut Option<shvars::sys::Detached>,
    log_file: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let gid = args.group.as_deref().map(group_id).transpose()?;
    // Signals are taken over first: from here on SIGTERM ends the process cleanly.
    let mut el = EventLoop::new().map_err(|e| format!("cannot set up the event loop: {e}"))?;
    let (tx, rx) = crossbeam_channel::unbounded::<Job<A>>();
    let services = LoopServices {
        registry: Some(el.registry().map_err(|e| e.to_string())?),
        waker: Some(el.waker()),
        mailbox: Box::new(tx),
    };
    let mut ctx = make_ctx(&name, &dir, spec, sizes, services)?;
    ctx.log_file = log_file;
    let region = ctx.region.clone();
    // Until it is published, a region whose process fails to start is removed: it never ran,
    // and a region left "being created" would have readers wait for an owner that is gone.
    let unpublished = Unpublished(Some(region.path().to_owned()));
    let app = build(&mut ctx).map_err(|e| format!("{name}: start-up failed: {e}"))?;
    let mut notes = Vec::new();
    let (fifo, fifo_file) = ControlFifo::create(&dir.ctl_path(&name), gid.is_some(), &mut notes)
        .map_err(|e| e.to_string())?;
    if let Some(g) = gid {
        nix::unistd::chown(fifo.path(), None, Some(nix::unistd::Gid::from_raw(g)))
            .map_err(|e| format!("cannot give the control FIFO to group {g}: {e}"))?;
    }
    let (sock, listener) =
        ControlSocket::bind(&dir.sock_path(&name), &mut notes).map_err(|e| e.to_string())?;
    el.attach_fifo(fifo_file)
        .map_err(|e| format!("cannot watch the control FIFO: {e}"))?;
    el.attach_server(Server::new(
        mio::net::UnixListener::from_std(listener),
        Auth {
            owner_uid: euid(),
            group: gid,
        },
    ))
    .map_err(|e| format!("cannot watch the control socket: {e}"))?;
    // Every variable is declared and the control channels are up: readers may look now (a
    // process seen alive always takes commands).
    region.publish();
    unpublished.disarm();
    let guard =
        Guard::start(ctx.log.clone()).map_err(|e| format!("cannot start the guard thread: {e}"))?;
    el.attach_guard(guard);
    let mut runner = Runner::new(app, ctx, rx, spec.tick);
    runner.ctx.log.info(format!(
        "started as pid {} in {} (region {}, control FIFO {}, socket {})",
        std::process::id(),
        dir,
        region.path().display(),
        fifo.path().display(),
        sock.path().display()
    ));
    for n in notes {
        runner.ctx.log.warn(n);
    }
    let startup = Caller::trusted("a start-up command");
    for (i, cmd) in args.commands.iter().enumerate() {
        let reply = match runner.submit(cmd, Origin::Startup(i), &startup) {
            Some(r) => r,
            None => {
                let mut got = None;
                el.run(&mut runner, |ds| {
                    got = ds
                        .iter()
                        .find(|d| d.origin == Origin::Startup(i))
                        .map(|d| d.reply.clone());
                    got.is_some()
                });
                got.unwrap_or_else(|| Reply::ok(""))
            }
        };
        if let Reply::Error(f) = reply {
            let msg = format!("start-up command '{cmd}' failed: {}", f.text);
            el.stop();
            runner.shutdown();
            drop((fifo, sock));
            return Err(msg);
        }
        if runner.finished() {
            break;
        }
    }
    if let Some(d) = detached {
        d.ready();
    }
    runner.ctx.notify.ready();
    el.run(&mut runner, |_| false);
    el.stop();
    runner.shutdown();
    let code = runner.ctx.exit_code;
    drop((fifo, sock));
    Ok(ExitCode::from(code))
}
