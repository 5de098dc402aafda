//! A framework process driven in-process, for fast tests of a daemon's command table and state
//! machine: no FIFO, no socket, no signal handling, no event loop. The region is real (in a
//! temporary runtime directory removed on drop), so variables can be read as tools read them.
//!
//! ```
//! use daqproc::framework::testing::TestProcess;
//! use daqproc::daemons::ticker::{Ticker, SPEC};
//! let mut p = TestProcess::new(SPEC, Ticker::build).unwrap();
//! assert!(p.cmd("start").unwrap().kind().is_some()); // not allowed before init
//! assert!(p.cmd("init").unwrap().is_ok());
//! assert_eq!(p.state(), daqproc::framework::RunState::Init);
//! ```

use std::time::{Duration, Instant};

use shvars::{ProcName, RuntimeDir};

use super::app::{App, ProcessSpec};
use super::ctx::{Ctx, Job, LoopServices};
use super::lifecycle::{make_ctx, BoxError};
use super::runner::{Caller, Delivery, Origin, Runner};
use super::state::RunState;
use crate::control::reply::Reply;

/// A process under test.
pub struct TestProcess<A: App> {
    runner: Runner<A>,
    next_client: u64,
    /// Replies taken out while waiting for another one.
    kept: Vec<Delivery>,
    _tmp: tempfile::TempDir,
}

impl<A: App> std::fmt::Debug for TestProcess<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestProcess").finish_non_exhaustive()
    }
}

impl<A: App> TestProcess<A> {
    /// Builds the daemon in a fresh temporary runtime directory, as process `spec.default_name`.
    ///
    /// # Errors
    /// If the region or the daemon cannot be made.
    pub fn new(
        spec: ProcessSpec,
        build: impl FnOnce(&mut Ctx) -> Result<A, BoxError>,
    ) -> Result<TestProcess<A>, BoxError> {
        let tmp = tempfile::Builder::new()
            .prefix("daqproc-inproc")
            .tempdir()?;
        let dir = RuntimeDir::at(tmp.path());
        let name = ProcName::new(spec.default_name)?;
        let (tx, rx) = crossbeam_channel::unbounded::<Job<A>>();
        let services = LoopServices {
            registry: None,
            waker: None,
            mailbox: Box::new(tx),
        };
        let mut ctx = make_ctx(
            &name,
            &dir,
            spec,
            shvars::region::CreateOptions::default(),
            services,
        )?;
        let app = build(&mut ctx)?;
        ctx.region.publish();
        Ok(TestProcess {
            runner: Runner::new(app, ctx, rx, spec.tick),
            next_client: 1,
            kept: Vec::new(),
            _tmp: tmp,
        })
    }

    /// Sends a command as the owner; its reply, or `None` if it answers later.
    pub fn cmd(&mut self, line: &str) -> Option<Reply> {
        self.cmd_from(line, &Caller::trusted("the test"))
    }

    /// Sends a command as `caller`, from a new client; its reply, or `None` if it answers later
    /// (then [`TestProcess::wait_reply`] or [`TestProcess::deliveries`]).
    pub fn cmd_from(&mut self, line: &str, caller: &Caller) -> Option<Reply> {
        let id = self.next_client;
        self.next_client += 1;
        self.runner.submit(line, Origin::Client(id), caller)
    }

    /// The client id the last command was sent from.
    pub fn last_client(&self) -> u64 {
        self.next_client - 1
    }

    /// Fires what is due and runs the mailbox.
    pub fn advance(&mut self) {
        self.runner.run_mailbox();
        self.runner.advance(Instant::now());
    }

    /// Replies that came out since the last look.
    pub fn deliveries(&mut self) -> Vec<Delivery> {
        let mut d = std::mem::take(&mut self.kept);
        d.extend(self.runner.take_outbox());
        d
    }

    /// Runs timers and the mailbox until the reply for client `client` arrives, for at most
    /// `timeout`.
    pub fn wait_reply(&mut self, client: u64, timeout: Duration) -> Option<Reply> {
        let until = Instant::now() + timeout;
        loop {
            self.advance();
            let mut got = None;
            for d in self.runner.take_outbox() {
                if d.origin == Origin::Client(client) && got.is_none() {
                    got = Some(d.reply);
                } else {
                    self.kept.push(d);
                }
            }
            if got.is_some() || Instant::now() >= until {
                return got;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The run state.
    pub fn state(&self) -> RunState {
        self.runner.ctx.state()
    }

    /// Whether the exit sequence finished.
    pub fn exited(&self) -> bool {
        self.runner.finished()
    }

    /// The daemon.
    pub fn app(&self) -> &A {
        &self.runner.app
    }

    /// The context.
    pub fn ctx(&mut self) -> &mut Ctx {
        &mut self.runner.ctx
    }
}

impl<A: App> Drop for TestProcess<A> {
    fn drop(&mut self) {
        self.runner.shutdown();
    }
}
