//! [`Ctx`]: what a daemon's handlers and callbacks see of the framework. The process's name,
//! directory, region and standard variables; its run state, event log and statistics; and the
//! event loop's services: timers, file descriptors to watch, a mailbox for its threads, deferred
//! replies.

use std::any::Any;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;
use shvars::region::{IntVar, StrVar, VarRegion};
use shvars::{ProcName, RuntimeDir};

use super::eventlog::EventLog;
use super::notify::Notifier;
use super::state::RunState;
use super::stats::Stats;
use super::timers::{Owner, TimerId, Timers};
use crate::control::reply::Failure;

/// A registered file descriptor, as given to [`crate::framework::App::ready`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdToken(pub(crate) usize);

/// Tokens of the daemon's descriptors start here (the framework's own are below).
pub(crate) const APP_TOKEN_BASE: usize = 1 << 24;

/// What to watch a descriptor for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Data to read (or a connection to accept, a pidfd's process exit).
    Read,
    /// Room to write.
    Write,
    /// Both.
    ReadWrite,
}

impl Interest {
    fn mio(self) -> mio::Interest {
        match self {
            Interest::Read => mio::Interest::READABLE,
            Interest::Write => mio::Interest::WRITABLE,
            Interest::ReadWrite => mio::Interest::READABLE | mio::Interest::WRITABLE,
        }
    }
}

/// What happened on a registered descriptor. The loop is edge-triggered: read (or write) until
/// `WouldBlock` before returning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    /// Readable (or closed for reading).
    pub readable: bool,
    /// Writable.
    pub writable: bool,
    /// The other side hung up.
    pub closed: bool,
    /// An error is pending on it.
    pub error: bool,
}

/// A command that answers later: keep it, then pass it to [`Ctx::complete`]. Dropping it without
/// completing leaves the caller to the command's time limit.
#[derive(Debug)]
#[must_use = "a deferred command must be completed with Ctx::complete"]
pub struct Deferred {
    pub(crate) id: u64,
}

impl Deferred {
    /// Which command this is, for logs.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// A job a thread hands to the main loop: it runs there with the daemon and its context.
pub type Job<A> = Box<dyn FnOnce(&mut A, &mut Ctx) + Send>;

/// A handle for the daemon's threads to run code on the main loop ([`Mailbox::post`]); the loop
/// wakes at once. Cloning shares it.
pub struct Mailbox<A> {
    tx: Sender<Job<A>>,
    waker: Option<Arc<mio::Waker>>,
}

impl<A> Clone for Mailbox<A> {
    fn clone(&self) -> Self {
        Mailbox {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<A> std::fmt::Debug for Mailbox<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").finish_non_exhaustive()
    }
}

impl<A: 'static> Mailbox<A> {
    pub(crate) fn new(tx: Sender<Job<A>>, waker: Option<Arc<mio::Waker>>) -> Self {
        Mailbox { tx, waker }
    }

    /// Runs `job` on the main loop, with the daemon and the context, as soon as the loop is free.
    /// Returns false if the process is shutting down (the job is dropped).
    pub fn post(&self, job: impl FnOnce(&mut A, &mut Ctx) + Send + 'static) -> bool {
        if self.tx.send(Box::new(job)).is_err() {
            return false;
        }
        if let Some(w) = &self.waker {
            let _ = w.wake();
        }
        true
    }
}

/// Where the runner's services come from (the real event loop, or none in in-process tests).
pub(crate) struct LoopServices {
    pub(crate) registry: Option<mio::Registry>,
    pub(crate) waker: Option<Arc<mio::Waker>>,
    /// The mailbox sender, type-erased (`Sender<Job<A>>` of the daemon's `A`).
    pub(crate) mailbox: Box<dyn Any + Send>,
}

/// A completion waiting for the runner.
#[derive(Debug)]
pub(crate) struct Completion {
    pub(crate) id: u64,
    pub(crate) result: Result<String, Failure>,
}

/// The framework's state that handlers see.
pub struct Ctx {
    pub(crate) name: ProcName,
    pub(crate) dir: RuntimeDir,
    pub(crate) region: Arc<VarRegion>,
    pub(crate) runstate: IntVar,
    pub(crate) lastcmd: StrVar,
    pub(crate) lasterror: StrVar,
    pub(crate) heartbeat: IntVar,
    pub(crate) ctlerrors: IntVar,
    pub(crate) state: RunState,
    pub(crate) log: Arc<EventLog>,
    pub(crate) stats: Option<Stats>,
    pub(crate) started: SystemTime,
    pub(crate) exit_requested: bool,
    /// The process is exiting: the `end` running now runs before exit.
    pub(crate) exiting: bool,
    pub(crate) exit_code: u8,
    pub(crate) notify: Notifier,
    pub(crate) timers: Timers,
    pub(crate) services: LoopServices,
    pub(crate) next_token: usize,
    pub(crate) next_deferred: u64,
    /// Set by `defer` during a handler: the id of the command that answers later.
    pub(crate) deferred_now: Option<u64>,
    pub(crate) completions: Vec<Completion>,
    pub(crate) log_file: Option<PathBuf>,
    /// How long the loop keeps polling without sleeping after an event (0: it sleeps at once).
    pub(crate) busy_poll: Duration,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("name", &self.name)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
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

    /// When the process started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// Records an error in `lasterror` and the event log.
    pub fn error(&self, text: &str) {
        self.lasterror.set(text);
        self.log.error(text);
    }

    /// Asks the process to exit as on `exit`: the command marked `before_exit` (`end`) runs
    /// first where it is allowed.
    pub fn request_exit(&mut self) {
        self.exit_requested = true;
    }

    /// True while the process is exiting (`exit`, SIGTERM, SIGINT): the `end` that runs now is
    /// the one before exit, and should not wait for anything that can be abandoned.
    pub fn exiting(&self) -> bool {
        self.exiting
    }

    /// The exit code the process will end with (0 unless set): e.g. a daemon's `halt` that
    /// exits 1. Call [`Ctx::request_exit`] too to exit.
    pub fn set_exit_code(&mut self, code: u8) {
        self.exit_code = code;
    }

    /// Busy polling, for a daemon whose peers answer within microseconds (isectd's
    /// transactions): after an event the loop goes on polling its sources without sleeping, for
    /// up to `d`, yielding the CPU between polls, so the next event finds it awake instead of
    /// paying a wake-up (on a virtual machine, tens of microseconds). Costs up to `d` of CPU
    /// after each burst of events; `Duration::ZERO` (the default) turns it off.
    pub fn set_busy_poll(&mut self, d: Duration) {
        self.busy_poll = d;
    }

    /// Arms a one-shot timer: [`crate::framework::App::timer`] is called once after `after`.
    pub fn timer_after(&mut self, after: Duration) -> TimerId {
        self.timers.arm(Owner::App, Instant::now() + after, None)
    }

    /// Arms a periodic timer, first after `period`, then every `period` (a timer that falls
    /// behind fires once and goes on from then, never in a burst).
    pub fn timer_every(&mut self, period: Duration) -> TimerId {
        self.timers
            .arm(Owner::App, Instant::now() + period, Some(period))
    }

    /// Disarms a timer; returns whether it was armed.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.timers.cancel(id)
    }

    /// Whether a timer is still armed.
    pub fn timer_armed(&self, id: TimerId) -> bool {
        self.timers.is_armed(id)
    }

    fn registry(&self) -> std::io::Result<&mio::Registry> {
        self.services.registry.as_ref().ok_or_else(|| {
            std::io::Error::other("no event loop runs this process (an in-process test?)")
        })
    }

    /// Watches descriptor `fd` (a socket, a pidfd, an eventfd, a pipe...) for `interest`:
    /// [`crate::framework::App::ready`] is called with the returned token when it is ready.
    /// The daemon keeps the descriptor open until it calls [`Ctx::deregister_fd`].
    ///
    /// # Errors
    /// If the kernel refuses to watch it.
    pub fn register_fd(&mut self, fd: RawFd, interest: Interest) -> std::io::Result<FdToken> {
        let token = FdToken(APP_TOKEN_BASE + self.next_token);
        self.registry()?.register(
            &mut mio::unix::SourceFd(&fd),
            mio::Token(token.0),
            interest.mio(),
        )?;
        self.next_token += 1;
        Ok(token)
    }

    /// Changes what a registered descriptor is watched for.
    ///
    /// # Errors
    /// If the kernel refuses.
    pub fn reregister_fd(
        &mut self,
        fd: RawFd,
        token: FdToken,
        interest: Interest,
    ) -> std::io::Result<()> {
        self.registry()?.reregister(
            &mut mio::unix::SourceFd(&fd),
            mio::Token(token.0),
            interest.mio(),
        )
    }

    /// Stops watching a descriptor (before closing it).
    ///
    /// # Errors
    /// If it was not registered.
    pub fn deregister_fd(&mut self, fd: RawFd) -> std::io::Result<()> {
        self.registry()?.deregister(&mut mio::unix::SourceFd(&fd))
    }

    /// A mailbox for the daemon's threads to run code on the main loop.
    ///
    /// # Panics
    /// If `A` is not the daemon type this process runs (a programming error).
    pub fn mailbox<A: 'static>(&self) -> Mailbox<A> {
        let tx = self
            .services
            .mailbox
            .downcast_ref::<Sender<Job<A>>>()
            .expect("Ctx::mailbox::<A>() with the A of the running daemon")
            .clone();
        Mailbox::new(tx, self.services.waker.clone())
    }

    /// Inside a command handler: the command will answer later. Return `Ok(Done::Later)` and
    /// keep the [`Deferred`] until [`Ctx::complete`]. The process goes on serving every other
    /// command meanwhile; another state change is refused as busy until this one completes.
    ///
    /// # Panics
    /// If called twice in one handler, or outside a command handler.
    pub fn defer(&mut self) -> Deferred {
        assert!(
            self.deferred_now.is_none(),
            "Ctx::defer called twice in one handler"
        );
        self.next_deferred += 1;
        let id = self.next_deferred;
        self.deferred_now = Some(id);
        Deferred { id }
    }

    /// Answers a deferred command: its transition and effects apply now if it succeeded, and
    /// its caller gets the reply.
    pub fn complete(&mut self, d: Deferred, result: Result<String, Failure>) {
        self.completions.push(Completion { id: d.id, result });
    }

    pub(crate) fn set_state(&mut self, s: RunState) {
        if s != self.state {
            self.log
                .info(format!("state {} -> {}", self.state.label(), s.label()));
            self.state = s;
            self.runstate.set(s as i64);
            self.notify.status(s.label());
        }
    }
}
