//! What isectd is configured with and what it knows about each worker: services, worker
//! specifications (`config worker SERVICE HOST PATH [params]`), the worker's state and queue.
//! Pure data and the rules over it; no I/O.

use serde::{Deserialize, Serialize};

/// Longest service name.
pub const MAX_SERVICE: usize = 31;

/// Checks a service name: 1 to 31 characters of `[A-Za-z0-9_-]` (it names variables
/// `service.NAME.*`, so no dots), and not a word of the command language.
///
/// # Errors
/// Why the name is refused.
pub fn check_service_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_SERVICE {
        return Err(format!(
            "service name {name:?} must be 1 to {MAX_SERVICE} characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(format!(
            "service name {name:?}: character {c:?} is not allowed (use letters, digits, '_', '-')"
        ));
    }
    if name == "all" || name.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "service name {name:?} cannot be told from a worker id or 'all' in commands: choose another"
        ));
    }
    Ok(())
}

/// Where a worker runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Host {
    /// This machine: isectd starts the program itself.
    Local,
    /// Another machine: its isdexecd (at `addr`, `host:port`) starts it.
    Remote {
        /// `host:port` of the isdexecd.
        addr: String,
    },
}

/// isdexecd's port when `config worker` names a host without one.
pub const EXECD_PORT: u16 = 5502;

/// Tells a local host name from a remote one: `localhost`, `127.0.0.1`, `::1`, `-` and this
/// machine's host name are local; anything else is reached through its isdexecd
/// (`HOST[:PORT]`, port 5502 by default).
pub fn parse_host(host: &str) -> Result<Host, String> {
    if host.is_empty() || host.len() > 255 || host.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("bad host name {host:?}"));
    }
    let me = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    if matches!(host, "localhost" | "127.0.0.1" | "::1" | "-") || host == me {
        return Ok(Host::Local);
    }
    let addr = if host.starts_with('[') || host.matches(':').count() == 1 {
        host.to_owned()
    } else if host.contains(':') {
        format!("[{host}]:{EXECD_PORT}")
    } else {
        format!("{host}:{EXECD_PORT}")
    };
    Ok(Host::Remote { addr })
}

/// What a worker is, as far as isectd needs to know before starting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A framework process or any other program: its command line is given unchanged, the
    /// rendezvous is in its environment. A framework process is recognised once it runs (it
    /// holds a region of its own in the runtime directory).
    Program,
    /// A transaction worker (`tp:PATH`): the rendezvous comes first in its arguments (host,
    /// port, worker id, login token; [`ISDARGMAX`]), it is ready when it logs in.
    Tp,
}

/// The argv index of a transaction worker's first configured parameter: `argv[1]` is isectd's
/// host, `argv[2]` its worker port, `argv[3]` the worker id, `argv[4]` the login token.
pub const ISDARGMAX: u32 = 5;

/// A worker as configured (`config worker`), the same for every clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Its service.
    pub service: String,
    /// The host as configured (shown in `workers`).
    pub host: String,
    /// The program.
    pub path: String,
    /// The configured parameters (`%w` stands for the worker id, `%%` for `%`).
    pub args: Vec<String>,
    /// What kind of worker.
    pub kind: Kind,
}

impl WorkerSpec {
    /// Parses the words after `config worker`: `SERVICE HOST PATH [params]`.
    ///
    /// # Errors
    /// What is wrong, with the usage.
    pub fn parse(words: &[String]) -> Result<WorkerSpec, String> {
        let [service, host, path, params @ ..] = words else {
            return Err("usage: config worker SERVICE HOST PATH [params]".to_owned());
        };
        parse_host(host)?;
        let (kind, path) = match path.strip_prefix("tp:") {
            Some(p) => (Kind::Tp, p),
            None => (Kind::Program, path.as_str()),
        };
        if path.is_empty() || path.len() > 4096 || path.contains('\0') {
            return Err(format!("bad program path {path:?}"));
        }
        Ok(WorkerSpec {
            service: service.clone(),
            host: host.clone(),
            path: path.to_owned(),
            args: params.to_vec(),
            kind,
        })
    }

    /// The parameters for worker `id`, `%w` replaced by the id.
    pub fn args_for(&self, id: u32) -> Vec<String> {
        self.args.iter().map(|a| expand(a, id)).collect()
    }

    /// The parameters as one line, for `worker ID`.
    pub fn args_text(&self) -> String {
        crate::control::words::join(&self.args)
    }
}

fn expand(arg: &str, id: u32) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut it = arg.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('w') => out.push_str(&id.to_string()),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

/// A worker's state, as `worker.N.state` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WState {
    /// Not running and not wanted (its service is stopped, or never started).
    Stopped,
    /// Its process runs but has not said it is ready yet.
    Starting,
    /// Ready for work.
    Idle,
    /// Working (a transaction, or a command sent with `send`).
    Busy,
    /// Paused by an operator: it runs (or ran) but gets no work, and is not restarted.
    Paused,
    /// Being stopped (SIGTERM or `exit` sent, SIGKILL after the grace).
    Stopping,
    /// Died soon after start: waiting before the next restart.
    Backoff,
    /// Died too often right after start: given up until `start` or `ready`.
    Failed,
    /// On a host whose isdexecd cannot be reached: not known to be dead.
    Lost,
    /// Deleted (its row of variables is retired).
    Deleted,
}

/// Labels of [`WState`], in order (the ENUM `worker.N.state`).
pub const WSTATE_LABELS: [&str; 10] = [
    "STOPPED", "STARTING", "IDLE", "BUSY", "PAUSED", "STOPPING", "BACKOFF", "FAILED", "LOST",
    "DELETED",
];

impl WState {
    /// Its label.
    pub fn label(self) -> &'static str {
        WSTATE_LABELS[self as usize]
    }

    /// The queue a worker in this state is on.
    pub fn queue(self) -> Queue {
        match self {
            WState::Idle => Queue::Idle,
            WState::Busy => Queue::Busy,
            _ => Queue::Lazy,
        }
    }
}

/// The seed's three queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Configured but not available: not started, not ready, paused, stopped, failed.
    Lazy,
    /// Ready for work.
    Idle,
    /// Working.
    Busy,
}

/// Labels of [`Queue`] (the ENUM `worker.N.queue`).
pub const QUEUE_LABELS: [&str; 3] = ["LAZY", "IDLE", "BUSY"];

impl Queue {
    /// Its label.
    pub fn label(self) -> &'static str {
        QUEUE_LABELS[self as usize]
    }

    /// `lazy`, `idle`, `busy` as typed in `workers`.
    pub fn parse(word: &str) -> Option<Queue> {
        match word.to_ascii_lowercase().as_str() {
            "lazy" => Some(Queue::Lazy),
            "idle" => Some(Queue::Idle),
            "busy" => Some(Queue::Busy),
            _ => None,
        }
    }
}

/// A worker's exit, for people: `exit 1`, `signal 9 (SIGKILL)`.
pub fn exit_text(status: &nix::sys::wait::WaitStatus) -> String {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, c) => format!("exit {c}"),
        WaitStatus::Signaled(_, s, core) => format!(
            "signal {} ({}){}",
            *s as i32,
            s.as_str(),
            if *core { ", core dumped" } else { "" }
        ),
        other => format!("{other:?}"),
    }
}

/// Commands that take the system down: `send all` runs them in reverse service order.
pub const DOWN_COMMANDS: [&str; 4] = ["end", "pause", "exit", "stop"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert!(check_service_name("echo").is_ok());
        assert!(check_service_name("daq-1_a").is_ok());
        for bad in ["", "all", "12", "a.b", "a b", &"x".repeat(32)] {
            assert!(check_service_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(parse_host("localhost"), Ok(Host::Local));
        assert_eq!(
            parse_host("127.0.0.2"),
            Ok(Host::Remote {
                addr: "127.0.0.2:5502".into()
            })
        );
        assert_eq!(
            parse_host("127.0.0.2:7000"),
            Ok(Host::Remote {
                addr: "127.0.0.2:7000".into()
            })
        );
        assert!(parse_host("a b").is_err());
    }

    #[test]
    fn worker_parameters_name_their_worker() {
        let w: Vec<String> = ["daq", "localhost", "/bin/ticker", "-n", "t%w", "100%%"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = WorkerSpec::parse(&w).unwrap();
        assert_eq!(s.args_for(7), ["-n", "t7", "100%"]);
        assert!(WorkerSpec::parse(&w[..2]).is_err());
    }
}
