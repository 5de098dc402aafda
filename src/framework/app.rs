//! [`App`]: what a daemon is, for the framework. A daemon supplies its command table and the
//! callbacks it needs; every callback has a default, so a daemon that only needs a tick keeps
//! the simple shape (`commands` and `tick`).

use std::time::Duration;

use nix::sys::signal::Signal;
use shvars::region::{SetError, Value, VarSpec};

use super::ctx::{Ctx, FdToken, Readiness};
use super::stats::StatsConfig;
use super::table::Command;
use super::timers::TimerId;

/// What SIGHUP does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hangup {
    /// The framework's rule: a process that logs to a file (`--daemon`, `--log`) re-opens it
    /// (after logrotate moved it); one whose stderr is a terminal exits as on `exit` (its
    /// terminal is gone); anything else logs that there was nothing to re-open.
    Default,
    /// The daemon handled it (e.g. re-read its configuration); the framework does nothing more.
    Handled,
    /// Exit as on `exit`.
    Exit,
}

/// What a daemon is, for the framework.
pub trait App: Sized + 'static {
    /// The daemon's own commands (`init`, `start`, ...). The framework adds `help`, `set`,
    /// `get`, `status`, `events` and `exit` where the daemon has no command of that name.
    fn commands() -> Vec<Command<Self>>;

    /// Called every [`ProcessSpec::tick`], if the spec asks for a tick.
    fn tick(&mut self, _ctx: &mut Ctx) {}

    /// A timer armed with [`Ctx::timer_after`] or [`Ctx::timer_every`] is due.
    fn timer(&mut self, _ctx: &mut Ctx, _id: TimerId) {}

    /// A descriptor registered with [`Ctx::register_fd`] is ready.
    fn ready(&mut self, _ctx: &mut Ctx, _fd: FdToken, _r: Readiness) {}

    /// A signal other than SIGTERM, SIGINT and SIGHUP arrived: SIGCHLD (a child changed state:
    /// reap with `waitpid(WNOHANG)` until none is left; signals coalesce).
    fn signal(&mut self, _ctx: &mut Ctx, _sig: Signal) {}

    /// SIGHUP arrived.
    fn hangup(&mut self, _ctx: &mut Ctx) -> Hangup {
        Hangup::Default
    }

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

/// The classic period of a daemon's tick (and of the framework's heartbeat).
pub const TICK: Duration = Duration::from_millis(100);

/// What a daemon declares besides its App.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSpec {
    /// Name used when `-n` is not given.
    pub default_name: &'static str,
    /// The statistics cadence, if the daemon keeps `sg_*`/`sl_*` statistics.
    pub stats: Option<StatsConfig>,
    /// How often [`App::tick`] is called; `None`: never.
    pub tick: Option<Duration>,
}

impl ProcessSpec {
    /// A daemon named `default_name` by default, without statistics or tick.
    pub const fn new(default_name: &'static str) -> ProcessSpec {
        ProcessSpec {
            default_name,
            stats: None,
            tick: None,
        }
    }
}
