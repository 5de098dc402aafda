//! The integration-test harness: every test gets its own runtime directory (`SHVAR_DIR`) and an
//! [`Env`] that kills every process it started when the test ends, even by panic.

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of one of the workspace's binaries (built by cargo before the integration tests).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/tests-HASH -> target/<profile>/NAME
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(p.exists(), "binary {} not built", p.display());
    p
}

/// Path of one of the workspace's examples (`cargo test` builds them).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join("examples").join(name);
    assert!(p.exists(), "example {} not built", p.display());
    p
}

/// A second local user for tests that play a hostile neighbour: created (once) when the tests
/// run as root, else `None` (the caller skips, saying why).
#[derive(Debug, Clone, Copy)]
pub struct Stranger {
    pub uid: u32,
    pub gid: u32,
}

static STRANGER: std::sync::OnceLock<Option<Stranger>> = std::sync::OnceLock::new();

pub fn stranger() -> Option<Stranger> {
    *STRANGER.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        const NAME: &str = "daqproc-stranger";
        let lookup = || nix::unistd::User::from_name(NAME).ok().flatten();
        if lookup().is_none() {
            let _ = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    NAME,
                ])
                .status();
        }
        lookup().map(|u| Stranger {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        })
    })
}

/// Skips a test that needs a second user, saying why.
#[macro_export]
macro_rules! need_stranger {
    () => {
        match $crate::util::stranger() {
            Some(s) => s,
            None => {
                eprintln!(
                    "skipped: this test needs a second user; run the tests as root to create one"
                );
                return;
            }
        }
    };
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panics with everything printed unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// `shvar get` printed values: 0, or 3 for the last values of a process that is gone.
    #[track_caller]
    pub fn values(&self) -> &Self {
        if self.code != 3 {
            self.expect_code(0);
        }
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, s: &str) -> &Self {
        assert!(
            self.stderr.contains(s),
            "stderr lacks {s:?}:\n{}\n(stdout: {})",
            self.stderr,
            self.stdout
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, s: &str) -> &Self {
        assert!(
            self.stdout.contains(s),
            "stdout lacks {s:?}:\n{}\n(stderr: {})",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A test's world: a runtime directory and the processes started in it.
pub struct Env {
    tmp: tempfile::TempDir,
    children: Vec<(String, Child)>,
    adopted: Vec<i32>,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            tmp: tempfile::Builder::new()
                .prefix("daqproc-test")
                .tempdir()
                .expect("temp dir"),
            children: Vec::new(),
            adopted: Vec::new(),
        }
    }

    /// Makes the runtime directory shared like /tmp (mode 1777), for tests with a stranger.
    pub fn share(&self) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(self.dir(), fs::Permissions::from_mode(0o1777)).unwrap();
    }

    /// A command for binary `name` run as the stranger, in this test's directory.
    pub fn command_as(&self, name: &str, who: Stranger) -> Command {
        self.program_as(&bin(name).to_string_lossy(), who)
    }

    /// Any program run as the stranger (e.g. `python3`), in this test's directory: through
    /// `setpriv`, which also drops root's supplementary groups.
    pub fn program_as(&self, program: &str, who: Stranger) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", who.uid))
            .arg(format!("--regid={}", who.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(program)
            .env("SHVAR_DIR", self.dir())
            .env_remove("NOTIFY_SOCKET")
            .current_dir(self.dir())
            .stdin(Stdio::null());
        c
    }

    /// Kills process `pid` (started by a child, e.g. a detached daemon) when the test ends.
    pub fn adopt(&mut self, pid: u32) {
        self.adopted.push(pid as i32);
    }

    /// The runtime directory.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir().join(file)
    }

    /// A command for binary `name` with SHVAR_DIR set to this test's directory.
    pub fn command(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env("SHVAR_DIR", self.dir())
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null());
        c
    }

    /// A command for example `name` (see [`example`]) with SHVAR_DIR set.
    pub fn example_command(&self, name: &str) -> Command {
        let mut c = Command::new(example(name));
        c.env("SHVAR_DIR", self.dir())
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null());
        c
    }

    /// Starts a long-running process; its stderr goes to DIR/LABEL.stderr. Killed on drop.
    pub fn spawn(&mut self, label: &str, mut cmd: Command) -> u32 {
        cmd.stdout(Stdio::null());
        self.spawn_keeping_stdout(label, cmd)
    }

    /// As [`Env::spawn`], with stdout kept in DIR/LABEL.stdout (see [`Env::stdout_of`]).
    pub fn spawn_capturing(&mut self, label: &str, mut cmd: Command) -> u32 {
        let out = fs::File::create(self.path(&format!("{label}.stdout"))).unwrap();
        cmd.stdout(out);
        self.spawn_keeping_stdout(label, cmd)
    }

    fn spawn_keeping_stdout(&mut self, label: &str, mut cmd: Command) -> u32 {
        let log = fs::File::create(self.path(&format!("{label}.stderr"))).unwrap();
        cmd.stderr(log);
        let child = cmd.spawn().expect("spawning a test process");
        let pid = child.id();
        self.children.push((label.to_owned(), child));
        pid
    }

    /// What a process started by [`Env::spawn_capturing`] wrote to stdout so far.
    pub fn stdout_of(&self, label: &str) -> String {
        fs::read_to_string(self.path(&format!("{label}.stdout"))).unwrap_or_default()
    }

    /// What a spawned process wrote to stderr so far.
    pub fn stderr_of(&self, label: &str) -> String {
        fs::read_to_string(self.path(&format!("{label}.stderr"))).unwrap_or_default()
    }

    /// Starts `ticker -n NAME` (plus `extra` arguments) and waits for its control FIFO.
    pub fn ticker(&mut self, name: &str, extra: &[&str]) -> u32 {
        let mut c = self.command("ticker");
        c.args(["-n", name]).args(extra);
        let pid = self.spawn(name, c);
        self.wait_ready(name, pid);
        if extra.contains(&"-c") {
            // The region is published before the start-up commands run; the loop serves the
            // first command from outside only after them (the ticker's are all immediate), so
            // one round trip waits them out.
            self.shvar(&["cmd", name, "status"]).ok();
        }
        pid
    }

    /// Waits until process `name` with pid `pid` owns its region and its control FIFO is up.
    #[track_caller]
    pub fn wait_ready(&self, name: &str, pid: u32) {
        let dir = shvars::RuntimeDir::at(self.dir());
        let n = shvars::ProcName::new(name).unwrap();
        let fifo = self.path(&format!("{name}.ctl"));
        self.wait_until(&format!("{name} (pid {pid}) to be ready"), || {
            shvars::region::RegionReader::open(&dir, &n)
                .is_ok_and(|r| r.info().pid == pid && r.is_alive())
                && fifo.exists()
        });
    }

    /// Waits until NAME.ctl exists.
    #[track_caller]
    pub fn wait_for_fifo(&self, name: &str) {
        let fifo = self.path(&format!("{name}.ctl"));
        self.wait_until(&format!("{} to appear", fifo.display()), || fifo.exists());
    }

    /// Polls `f` for up to 20 s.
    #[track_caller]
    pub fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            if t0.elapsed() > Duration::from_secs(20) {
                panic!("timed out waiting for {what}\n{}", self.all_stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn all_stderr(&self) -> String {
        self.children
            .iter()
            .map(|(l, _)| format!("--- {l} stderr:\n{}", self.stderr_of(l)))
            .collect()
    }

    /// Runs a command to completion (at most 60 s, then it is killed and the test fails).
    #[track_caller]
    pub fn run(&self, mut cmd: Command) -> Out {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning a command");
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = so.read_to_string(&mut s);
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = se.read_to_string(&mut s);
            s
        });
        let t0 = Instant::now();
        let status: ExitStatus = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("command {cmd:?} did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Out {
            code: status.code().unwrap_or(-1),
            stdout: t_out.join().unwrap(),
            stderr: t_err.join().unwrap(),
        }
    }

    /// Runs `shvar ARGS...`.
    #[track_caller]
    pub fn shvar(&self, args: &[&str]) -> Out {
        let mut c = self.command("shvar");
        c.args(args);
        self.run(c)
    }

    /// `shvar get NAME VAR` as an integer.
    #[track_caller]
    pub fn get_int(&self, name: &str, var: &str) -> i64 {
        let o = self.shvar(&["get", "--raw", name, var]);
        o.values();
        o.stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("not an integer: {:?}", o.stdout))
    }

    /// `shvar get NAME VAR` as text.
    #[track_caller]
    pub fn get(&self, name: &str, var: &str) -> String {
        let o = self.shvar(&["get", name, var]);
        o.values();
        o.stdout.trim_end_matches('\n').to_owned()
    }

    /// Sends SIGKILL to the spawned process `label` and reaps it.
    pub fn kill9(&mut self, label: &str) {
        if let Some(i) = self.children.iter().position(|(l, _)| l == label) {
            let (_, mut c) = self.children.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` to process `label`.
    pub fn signal(&self, label: &str, sig: nix::sys::signal::Signal) {
        let (_, c) = self
            .children
            .iter()
            .find(|(l, _)| l == label)
            .expect("no such child");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig).unwrap();
    }

    /// Waits (up to 20 s) for process `label` to exit by itself; returns its exit code.
    #[track_caller]
    pub fn wait_exit(&mut self, label: &str) -> i32 {
        let i = self
            .children
            .iter()
            .position(|(l, _)| l == label)
            .expect("no such child");
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.children[i].1.try_wait().unwrap() {
                self.children.remove(i);
                return st.code().unwrap_or(-1);
            }
            if t0.elapsed() > Duration::from_secs(20) {
                panic!("{label} did not exit within 20 s\n{}", self.all_stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for pid in &self.adopted {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for (_, c) in &mut self.children {
            let _ = c.kill();
        }
        for (_, c) in &mut self.children {
            let _ = c.wait();
        }
    }
}

/// Writes raw bytes into a FIFO (non-blocking open: fails if nobody reads it). A full pipe is
/// waited out (up to 10 s): the reader is slow, not gone.
pub fn write_fifo(path: &Path, mut bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let t0 = Instant::now();
    while !bytes.is_empty() {
        match f.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && t0.elapsed() < Duration::from_secs(10) =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deterministic pseudo-random bytes.
pub fn junk(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
