//! The client svcshare controls besides its proxy: a framework process on this machine (paused
//! and resumed through its control socket, as `shvar cmd spy1 pause` does), or any program,
//! through commands run with `sh -c` for pause and resume.
//!
//! With `--client-token-var VAR`, a framework client's variable VAR carries the grant's token
//! (set before it is resumed, 0 after it is paused), for the client to stamp its own writes.
//!
//! Pausing is synchronous and bounded: svcshare gives the resource back only after the client
//! said it paused (or the bound passed, which is logged). Every command sees the grant in its
//! environment: `SVCSHARE_TOKEN` (the fencing token, for a resource that checks it),
//! `SVCSHARE_SHARE`, `SVCSHARE_PEER`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shvars::{ProcName, RuntimeDir};

use crate::control::client;
use crate::control::reply::{ErrorKind, Reply};

/// How long a pause or resume may take.
pub const CLIENT_BOUND: Duration = Duration::from_secs(2);

/// The controlled client.
#[derive(Debug, Clone)]
pub enum Client {
    /// A framework process (`--client NAME`), and the variable of it that carries the grant's
    /// token (`--client-token-var VAR`), if any.
    Framework(ProcName, Option<String>),
    /// Commands (`--pause-cmd`, `--resume-cmd`).
    Commands {
        /// Run to pause.
        pause: String,
        /// Run to resume.
        resume: String,
    },
}

/// What the grant is, for the client.
#[derive(Debug, Clone, Copy)]
pub struct GrantInfo<'a> {
    /// The fencing token (0 when pausing without a grant).
    pub token: u64,
    /// The share.
    pub share: &'a str,
    /// This peer.
    pub peer: &'a str,
}

impl Client {
    /// Pauses the client; the text says what happened.
    ///
    /// # Errors
    /// Why the client could not be paused.
    pub fn pause(&self, dir: &RuntimeDir, g: GrantInfo) -> Result<String, String> {
        match self {
            Client::Framework(n, var) => {
                let t = framework(dir, n, "pause", g)?;
                match var {
                    // Paused: the stamp goes back to 0 (no grant).
                    Some(v) => Ok(format!("{t}; {}", stamp(dir, n, v, 0)?)),
                    None => Ok(t),
                }
            }
            Client::Commands { pause, .. } => run(pause, "--pause-cmd", g),
        }
    }

    /// Resumes the client.
    ///
    /// # Errors
    /// Why the client could not be resumed.
    pub fn resume(&self, dir: &RuntimeDir, g: GrantInfo) -> Result<String, String> {
        match self {
            Client::Framework(n, var) => {
                // The stamp first: a client that cannot carry its token is not resumed.
                let st = match var {
                    Some(v) => format!("; {}", stamp(dir, n, v, g.token)?),
                    None => String::new(),
                };
                Ok(format!("{}{st}", framework(dir, n, "resume", g)?))
            }
            Client::Commands { resume, .. } => run(resume, "--resume-cmd", g),
        }
    }
}

fn framework(dir: &RuntimeDir, n: &ProcName, verb: &str, g: GrantInfo) -> Result<String, String> {
    match client::send(dir, n, verb, CLIENT_BOUND) {
        Ok(Reply::Ok { text: t }) => Ok(format!(
            "{n}: {verb}: {}",
            if t.is_empty() { "ok" } else { t.trim() }
        )),
        // Already in the state asked for: fine.
        Ok(r) if r.kind() == Some(ErrorKind::State) => {
            Ok(format!("{n}: {verb}: already so ({})", r.text().trim()))
        }
        Ok(r) => Err(format!("{n} refused '{verb}': {}", r.text().trim())),
        Err(e) => Err(format!(
            "cannot send '{verb}' to the client {n} (token {}): {e}",
            g.token
        )),
    }
}

/// Sets the client's token variable (`set VAR TOKEN` on its control socket).
fn stamp(dir: &RuntimeDir, n: &ProcName, var: &str, token: u64) -> Result<String, String> {
    match client::send(dir, n, &format!("set {var} {token}"), CLIENT_BOUND) {
        Ok(r) if r.is_ok() => Ok(format!("{n}.{var} = {token}")),
        Ok(r) => Err(format!(
            "{n} refused to take the token in {var} (--client-token-var): {}",
            r.text().trim()
        )),
        Err(e) => Err(format!("cannot set {n}.{var} to the token {token}: {e}")),
    }
}

fn run(cmd: &str, what: &str, g: GrantInfo) -> Result<String, String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("SVCSHARE_TOKEN", g.token.to_string())
        .env("SVCSHARE_SHARE", g.share)
        .env("SVCSHARE_PEER", g.peer)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{what} {cmd:?}: cannot start /bin/sh: {e}"))?;
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(format!("{what} {cmd:?}: done")),
            Ok(Some(st)) => return Err(format!("{what} {cmd:?}: failed ({st})")),
            Ok(None) if t0.elapsed() > CLIENT_BOUND => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} {cmd:?}: still running after {} s: killed",
                    CLIENT_BOUND.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("{what} {cmd:?}: {e}")),
        }
    }
}
