//! The process lifecycle every daemon shares: region, standard variables, control FIFO, command
//! dispatch through the run-state machine, main loop, signals, detaching, clean exit.
//!
//! A daemon supplies an [`App`]: its own command table and handlers, plus a few optional hooks.
//! Everything else — `help`, `set`, `get`, `status`, `events`, `exit`, refusing a command in the
//! wrong state, the event log, `lastcmd`/`lasterror`, the heartbeat — is done here once.
//! Handlers run on the main thread, one command at a time; daemons do their real work on their
//! own threads and talk to them through shared variables, atomics and channels.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::RecvTimeoutError;
use shvars::region::{Access, CreateOptions, IntVar, SetError, StrVar, Value, VarRegion, VarSpec};
use shvars::{ProcName, RuntimeDir};

use crate::command::{check_state, tokenize, Command, CommandInfo, Outcome};
use crate::ctl::{send_reply, ControlFifo, Incoming};
use crate::eventlog::{EventLog, Level};
use crate::state::{RunState, ANY, RUNSTATE_LABELS};
use crate::stats::{Stats, StatsConfig};

/// Boxed error of an application's set-up.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// How often the main loop beats when no command arrives.
pub const TICK: Duration = Duration::from_millis(100);

/// Options every framework process takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessArgs {
    /// Process name: 1-31 characters of [A-Za-z0-9_.-]; names its files NAME.shv and NAME.ctl
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,
    /// Runtime directory [default: $SHVAR_DIR, else /dev/shm/shvars, else $XDG_RUNTIME_DIR/shvars]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Detach from the terminal and log to DIR/NAME.log (or --log)
    #[arg(long)]
    pub daemon: bool,
    /// Log file when detached
    #[arg(long, value_name = "FILE", requires = "daemon")]
    pub log: Option<PathBuf>,
    /// Run COMMAND at start-up, in order, before serving the control FIFO (repeatable):
    /// -c init -c 'start farm1 2115'
    #[arg(short = 'c', long = "command", value_name = "COMMAND")]
    pub commands: Vec<String>,
    /// Let members of GROUP send commands too (the control FIFO is the owner's alone by default)
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

/// What a daemon is, for the framework.
pub trait App: Sized + 'static {
    /// The daemon's own commands (`init`, `start`, ...). The framework adds `help`, `set`,
    /// `get`, `status`, `events` and `exit`.
    fn commands() -> Vec<Command<Self>>;

    /// Called from the main loop about every [`TICK`].
    fn tick(&mut self, _ctx: &mut Ctx) {}

    /// Extra lines for `status`.
    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        Vec::new()
    }

    /// Vets a `set` that passed the type and limit checks (e.g. refuse a change in a state).
    ///
    /// # Errors
    /// Why the change is refused.
    fn check_set(
        &mut self,
        _ctx: &mut Ctx,
        _var: &VarSpec,
        _value: &Value,
    ) -> Result<(), SetError> {
        Ok(())
    }

    /// Called after a `set` changed a variable.
    fn after_set(&mut self, _ctx: &mut Ctx, _var: &VarSpec) {}

    /// Called once before the process exits.
    fn shutdown(&mut self, _ctx: &mut Ctx) {}
}

/// What a daemon declares besides its App.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSpec {
    /// Name used when `-n` is not given.
    pub default_name: &'static str,
    /// The statistics cadence, if the daemon keeps `sg_*`/`sl_*` statistics.
    pub stats: Option<StatsConfig>,
}

/// The framework's state that handlers see.
#[derive(Debug)]
pub struct Ctx {
    name: ProcName,
    dir: RuntimeDir,
    region: Arc<VarRegion>,
    runstate: IntVar,
    lastcmd: StrVar,
    lasterror: StrVar,
    heartbeat: IntVar,
    state: RunState,
    log: Arc<EventLog>,
    stats: Option<Stats>,
    started: SystemTime,
    exit: bool,
    notify: crate::notify::Notifier,
}

impl Ctx {
    /// The process name.
    pub fn name(&self) -> &ProcName {
        &self.name
    }

    /// The runtime directory.
    pub fn dir(&self) -> &RuntimeDir {
        &self.dir
    }

    /// The process's variable region (to add variables).
    pub fn region(&self) -> &Arc<VarRegion> {
        &self.region
    }

    /// The current run state.
    pub fn state(&self) -> RunState {
        self.state
    }

    /// A handle on the `runstate` variable, for worker threads that follow the state.
    pub fn runstate_var(&self) -> IntVar {
        self.runstate.clone()
    }

    /// A handle on the `lasterror` variable, for worker threads that report failures.
    pub fn lasterror_var(&self) -> StrVar {
        self.lasterror.clone()
    }

    /// The event log (shared with worker threads).
    pub fn log(&self) -> &Arc<EventLog> {
        &self.log
    }

    /// The statistics, if the daemon declared them.
    pub fn stats(&self) -> Option<&Stats> {
        self.stats.as_ref()
    }

    /// Records an error in `lasterror` and the event log.
    pub fn error(&self, text: &str) {
        self.lasterror.set(text);
        self.log.error(text);
    }

    /// Asks the main loop to exit after the current command.
    pub fn request_exit(&mut self) {
        self.exit = true;
    }

    fn set_state(&mut self, s: RunState) {
        if s != self.state {
            self.log
                .info(format!("state {} -> {}", self.state.label(), s.label()));
            self.state = s;
            self.runstate.set(s as i64);
            self.notify.status(s.label());
        }
    }
}

const BUILTINS: [(&str, &str, &str); 6] = [
    (
        "help",
        "[COMMAND | --json]",
        "List the commands, their arguments and the states where they are allowed",
    ),
    (
        "set",
        "VAR VALUE",
        "Change a R/W variable (checked: type, limits, state); answers VAR: old -> new",
    ),
    ("get", "VAR...", "Show variable values, one per line"),
    (
        "status",
        "",
        "Show the process's state, uptime, last command and last error",
    ),
    (
        "events",
        "[N]",
        "Show the last N entries of the event log (default 20)",
    ),
    (
        "exit",
        "",
        "End serving (runs end first where it is allowed) and exit",
    ),
];

struct Runner<A: App> {
    app: A,
    ctx: Ctx,
    table: Vec<Command<A>>,
}

impl<A: App> Runner<A> {
    fn infos(&self) -> Vec<CommandInfo> {
        let mut v: Vec<CommandInfo> = self.table.iter().map(Command::info).collect();
        for (name, args, help) in BUILTINS {
            if !self.table.iter().any(|c| c.name == name) {
                v.push(CommandInfo::new(name, args, help, ANY, None));
            }
        }
        v
    }

    fn known(&self) -> String {
        self.infos()
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Runs one command line; returns the reply text (`ok ...` / `error ...`).
    fn execute(&mut self, line: &str) -> String {
        self.ctx.log.push(Level::Cmd, line);
        self.ctx.lastcmd.set(line);
        let outcome = self.dispatch(line);
        match outcome {
            Ok(msg) => {
                if msg.is_empty() {
                    "ok\n".to_owned()
                } else if msg.contains('\n') {
                    format!("ok\n{msg}\n")
                } else {
                    format!("ok {msg}\n")
                }
            }
            Err(msg) => {
                let word = line.split_whitespace().next().unwrap_or("");
                self.ctx.lasterror.set(&format!("{word}: {msg}"));
                self.ctx.log.error(format!("{word}: {msg}"));
                format!("error {msg}\n")
            }
        }
    }

    fn dispatch(&mut self, line: &str) -> Outcome {
        let words = tokenize(line)?;
        let Some((word, args)) = words.split_first() else {
            return Err("empty command".to_owned());
        };
        if let Some(i) = self.table.iter().position(|c| c.name == word) {
            return self.run_app_command(i, args);
        }
        match word.as_str() {
            "help" => self.help(args),
            "set" => self.set(args),
            "get" => self.get(args),
            "status" => Ok(self.status()),
            "events" => self.events(args),
            "exit" => self.exit(),
            _ => Err(format!(
                "unknown command '{word}'; known commands: {}",
                self.known()
            )),
        }
    }

    fn run_app_command(&mut self, i: usize, args: &[String]) -> Outcome {
        let cmd = &self.table[i];
        check_state(cmd.name, cmd.allowed, self.ctx.state)?;
        if args.len() < cmd.min_args || args.len() > cmd.max_args {
            return Err(format!("usage: {}", cmd.info().usage));
        }
        let (handler, next, name) = (cmd.handler, cmd.next, cmd.name);
        let msg = handler(&mut self.app, &mut self.ctx, args)?;
        if let Some(next) = next {
            let from = self.ctx.state;
            self.ctx.set_state(next);
            // sg_* cover the time since the last start or resume.
            if next == RunState::Running && from != RunState::Running {
                if let Some(s) = &self.ctx.stats {
                    s.reset();
                }
            }
        }
        if name == "update" {
            if let Some(s) = &self.ctx.stats {
                s.update();
            }
        }
        Ok(msg)
    }

    fn help(&self, args: &[String]) -> Outcome {
        let infos = self.infos();
        match args.first().map(String::as_str) {
            Some("--json") => serde_json::to_string(&infos).map_err(|e| e.to_string()),
            Some(name) => {
                let i = infos.iter().find(|i| i.name == name).ok_or_else(|| {
                    format!("unknown command '{name}'; known commands: {}", self.known())
                })?;
                Ok(format!(
                    "usage: {}\n  {}\n  allowed in: {}{}",
                    i.usage,
                    i.help,
                    i.allowed_text(),
                    i.next
                        .as_ref()
                        .map(|n| format!("\n  leads to: {n}"))
                        .unwrap_or_default()
                ))
            }
            None => {
                let w = infos.iter().map(|i| i.usage.len()).max().unwrap_or(0);
                let mut out = format!(
                    "{} in {} - commands:\n",
                    self.ctx.name,
                    self.ctx.state.label()
                );
                for i in &infos {
                    let here = if i.allowed.is_empty()
                        || i.allowed.iter().any(|a| a == self.ctx.state.label())
                    {
                        ' '
                    } else {
                        '-'
                    };
                    out.push_str(&format!(
                        "{here} {:<w$}  {}  [{}{}]\n",
                        i.usage,
                        i.help,
                        i.allowed_text(),
                        i.next
                            .as_ref()
                            .map(|n| format!(" -> {n}"))
                            .unwrap_or_default()
                    ));
                }
                out.push_str("('-': not allowed in the current state)");
                Ok(out)
            }
        }
    }

    fn set(&mut self, args: &[String]) -> Outcome {
        if args.len() < 2 {
            return Err("usage: set VAR VALUE".to_owned());
        }
        let name = &args[0];
        let text = args[1..].join(" ");
        let var = self.ctx.region.var(name).ok_or_else(|| {
            SetError::NoSuchVar {
                var: name.clone(),
                hint: self.ctx.region.suggest(name),
            }
            .to_string()
        })?;
        let spec = var.spec().clone();
        if spec.access != Access::ReadWrite {
            return Err(SetError::ReadOnly(name.clone()).to_string());
        }
        let value = spec.parse_value(&text).map_err(|e| e.to_string())?;
        self.app
            .check_set(&mut self.ctx, &spec, &value)
            .map_err(|e| e.to_string())?;
        let old = var.set(&value);
        self.app.after_set(&mut self.ctx, &spec);
        Ok(format!(
            "{name}: {} -> {}",
            spec.display(&old),
            spec.display(&value)
        ))
    }

    fn get(&self, args: &[String]) -> Outcome {
        if args.is_empty() {
            return Err("usage: get VAR...".to_owned());
        }
        let mut out = Vec::new();
        for name in args {
            let var =
                self.ctx.region.var(name).ok_or_else(|| {
                    format!("no variable {name}{}", self.ctx.region.suggest(name))
                })?;
            out.push(var.spec().display(&var.get()));
        }
        Ok(out.join("\n"))
    }

    fn status(&self) -> String {
        let c = &self.ctx;
        let up = c.started.elapsed().unwrap_or_default();
        let mut lines = vec![
            format!("{} {}", c.name, c.state.label()),
            format!("pid: {}", std::process::id()),
            format!(
                "uptime: {}",
                humantime::format_duration(Duration::from_secs(up.as_secs()))
            ),
            format!("lastcmd: {}", c.lastcmd.get()),
            format!("lasterror: {}", c.lasterror.get()),
        ];
        lines.extend(self.app.status(c));
        lines.join("\n")
    }

    fn events(&self, args: &[String]) -> Outcome {
        let n = match args {
            [] => 20,
            [n] => n
                .parse::<usize>()
                .map_err(|_| format!("usage: events [N] (N a count, not {n:?})"))?,
            _ => return Err("usage: events [N]".to_owned()),
        };
        let evs = self.ctx.log.last(n.min(EventLog::CAPACITY));
        Ok(evs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"))
    }

    fn exit(&mut self) -> Outcome {
        if let Some(i) = self.table.iter().position(|c| c.name == "end") {
            if check_state("end", self.table[i].allowed, self.ctx.state).is_ok() {
                if let Err(e) = self.run_app_command(i, &[]) {
                    self.ctx.error(&format!("end before exit: {e}"));
                }
            }
        }
        self.ctx.request_exit();
        Ok("exiting".to_owned())
    }
}

enum Msg {
    Fifo(Incoming),
    Signal(i32),
}

fn fail(detached: &mut Option<shvars::sys::Detached>, msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    if let Some(d) = detached {
        d.failed(msg);
    }
    ExitCode::FAILURE
}

/// Runs a framework process until `exit` or SIGTERM/SIGINT: parses nothing itself (the binary's
/// clap parser gives `args`), creates the region, calls `build` to make the [`App`] (which adds
/// its variables and starts its threads), opens the control FIFO, runs the `-c` commands, then
/// serves commands.
///
/// Returns exit code 0 after a clean exit, 1 if start-up failed (the reason printed once).
pub fn run<A: App>(
    args: ProcessArgs,
    spec: ProcessSpec,
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
    if args.daemon {
        let log = args
            .log
            .clone()
            .unwrap_or_else(|| dir.path().join(format!("{name}.log")));
        match shvars::sys::daemonize(&log) {
            Ok(d) => detached = Some(d),
            Err(e) => return fail(&mut detached, &format!("cannot detach: {e}")),
        }
    }
    match start::<A>(&args, spec, name, dir, build, &mut detached) {
        Ok(code) => code,
        Err(msg) => fail(&mut detached, &msg),
    }
}

fn std_vars(region: &VarRegion) -> Result<(IntVar, StrVar, StrVar, IntVar), BoxError> {
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
            .desc("Main loop iterations; its change time says the loop is alive")
            .counter(),
    )?;
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    region.add_int(
        VarSpec::int("started", started)
            .desc("Start time (Unix seconds)")
            .unit("s"),
    )?;
    Ok((runstate, lastcmd, lasterror, heartbeat))
}

fn start<A: App>(
    args: &ProcessArgs,
    spec: ProcessSpec,
    name: ProcName,
    dir: RuntimeDir,
    build: impl FnOnce(&mut Ctx) -> Result<A, BoxError>,
    detached: &mut Option<shvars::sys::Detached>,
) -> Result<ExitCode, String> {
    let region = Arc::new(
        VarRegion::create_pending(&dir, &name, &CreateOptions::default())
            .map_err(|e| e.to_string())?,
    );
    let (runstate, lastcmd, lasterror, heartbeat) =
        std_vars(&region).map_err(|e| format!("cannot publish the standard variables: {e}"))?;
    let stats = match spec.stats {
        Some(cfg) => Some(Stats::new(&region, cfg).map_err(|e| e.to_string())?),
        None => None,
    };
    let log = Arc::new(EventLog::new(name.as_str()));
    let mut ctx = Ctx {
        name: name.clone(),
        dir: dir.clone(),
        region: region.clone(),
        runstate,
        lastcmd,
        lasterror,
        heartbeat,
        state: RunState::Undefined,
        notify: crate::notify::Notifier::from_env(log.clone()),
        log,
        stats,
        started: SystemTime::now(),
        exit: false,
    };
    let app = build(&mut ctx).map_err(|e| format!("{name}: start-up failed: {e}"))?;
    // Every variable is declared: readers may look now.
    region.publish();
    let (fifo, file) = ControlFifo::create(&dir.ctl_path(&name), args.group.is_some())
        .map_err(|e| e.to_string())?;
    if let Some(g) = &args.group {
        let grp = nix::unistd::Group::from_name(g)
            .map_err(|e| format!("group {g}: {e}"))?
            .ok_or_else(|| format!("no group named {g}"))?;
        nix::unistd::chown(fifo.path(), None, Some(grp.gid))
            .map_err(|e| format!("cannot give the control FIFO to group {g}: {e}"))?;
    }
    let (tx, rx) = crossbeam_channel::unbounded::<Msg>();
    let tx_fifo = tx.clone();
    ControlFifo::spawn_reader(file, move |i| tx_fifo.send(Msg::Fifo(i)).is_ok());
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if tx.send(Msg::Signal(s)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;

    let table = A::commands();
    let mut runner = Runner { app, ctx, table };
    runner.ctx.log.info(format!(
        "started as pid {} in {} (region {}, control FIFO {})",
        std::process::id(),
        dir,
        region.path().display(),
        fifo.path().display()
    ));
    for cmd in &args.commands {
        let reply = runner.execute(cmd);
        if let Some(msg) = reply.strip_prefix("error ") {
            let msg = format!("start-up command '{cmd}' failed: {}", msg.trim_end());
            shutdown(&mut runner, fifo, &region);
            return Err(msg);
        }
        if runner.ctx.exit {
            break;
        }
    }
    if let Some(d) = detached {
        d.ready();
    }
    runner.ctx.notify.ready();
    let mut next_tick = Instant::now() + TICK;
    while !runner.ctx.exit {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Msg::Fifo(Incoming::Line { text, reply })) => {
                let answer = runner.execute(&text);
                if let Some(tok) = reply {
                    if let Err(e) = send_reply(&dir, &tok, &answer) {
                        runner
                            .ctx
                            .log
                            .warn(format!("reply to '{text}' not delivered: {e}"));
                    }
                }
            }
            Ok(Msg::Fifo(Incoming::Bad { why, reply })) => {
                runner.ctx.error(&format!("control FIFO: {why}"));
                if let Some(tok) = reply {
                    let _ = send_reply(&dir, &tok, &format!("error {why}\n"));
                }
            }
            Ok(Msg::Signal(s)) => {
                let sname = if s == signal_hook::consts::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                runner.ctx.log.info(format!("{sname} received: exiting"));
                let _ = runner.exit();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_tick {
            runner.ctx.heartbeat.add(1);
            region.beat();
            runner.app.tick(&mut runner.ctx);
            runner.ctx.notify.watchdog_tick();
            next_tick = Instant::now() + TICK;
        }
    }
    shutdown(&mut runner, fifo, &region);
    Ok(ExitCode::SUCCESS)
}

fn shutdown<A: App>(runner: &mut Runner<A>, fifo: ControlFifo, region: &VarRegion) {
    runner.ctx.notify.stopping();
    runner.app.shutdown(&mut runner.ctx);
    drop(fifo);
    region.mark_stopped();
    runner.ctx.log.info("exited");
}
