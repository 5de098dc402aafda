//! systemd's service notifications (`sd_notify(3)`) for framework processes run as
//! `Type=notify` units: `READY=1` once the control FIFO serves (after the `-c` start-up
//! commands), `STATUS=<run state>` at each state change, `WATCHDOG=1` from the main loop at half
//! the interval systemd asks for (`WATCHDOG_USEC`, for this pid if `WATCHDOG_PID` is set), and
//! `STOPPING=1` when the process exits.
//!
//! Without `NOTIFY_SOCKET` in the environment every call does nothing. A notification that
//! cannot be sent never stops or slows the process: the first failure is logged, later ones are
//! not (a watchdog that fails every 5 s would flood the log).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::eventlog::EventLog;

/// Sends the process's notifications to the service manager, if there is one.
#[derive(Debug)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
    next_watchdog: Instant,
    warned: bool,
    log: Arc<EventLog>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env(log: Arc<EventLog>) -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let watchdog = if enabled {
            sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
        } else {
            None
        };
        if let Some(d) = watchdog {
            log.info(format!(
                "systemd watchdog every {} ms: WATCHDOG=1 every {} ms",
                d.as_millis(),
                (d / 2).as_millis()
            ));
        }
        Notifier {
            enabled,
            watchdog,
            next_watchdog: Instant::now(),
            warned: false,
            log,
        }
    }

    fn send(&mut self, what: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(what) {
            if !self.warned {
                self.warned = true;
                let sock = std::env::var("NOTIFY_SOCKET").unwrap_or_default();
                self.log.warn(format!(
                    "cannot notify systemd on {sock:?} ({}): {e}; systemd may take the service for not started or hung (check that this user may write to the socket, and NotifyAccess= in the unit); further failures are not logged",
                    what.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
        }
    }

    /// `READY=1`: start-up is over, commands are served.
    pub fn ready(&mut self) {
        self.send(&[NotifyState::Ready]);
    }

    /// `STATUS=text`: shown by `systemctl status`.
    pub fn status(&mut self, text: &str) {
        // One line: the protocol is newline-separated assignments.
        let line = text.replace('\n', " ");
        self.send(&[NotifyState::Status(&line)]);
    }

    /// `WATCHDOG=1` if half the watchdog interval has passed since the last one; call it from
    /// the main loop (about every [`super::runner::HEARTBEAT`]).
    pub fn watchdog_tick(&mut self) {
        let Some(interval) = self.watchdog else {
            return;
        };
        let now = Instant::now();
        if now >= self.next_watchdog {
            self.next_watchdog = now + interval / 2;
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// `STOPPING=1`: the process is shutting down.
    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
    }
}
