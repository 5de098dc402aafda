//! `svcsoak`: the svcshare soak (see `svcsoak --help`). Spawns the `svcshare` binary that sits
//! beside it three times per run, with stamped proxies in front of one token-checking resource.
#![forbid(unsafe_code)]

mod cli;
mod resource;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use daqproc::control::client;
use daqproc::daemons::svcshare::local::LocalLock;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shvars::{ProcName, RuntimeDir};

use resource::{Resource, User};

/// How long one hand-over or fail-over may take before the soak calls it a failure.
const STUCK: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn summary(what: &str, v: &mut [Duration]) -> String {
    format!(
        "{what}: median {}, p99 {}, max {} (n={})",
        ms(pct(v, 0.5)),
        ms(pct(v, 0.99)),
        ms(pct(v, 1.0)),
        v.len()
    )
}

/// Three svcshare peers in a runtime directory of their own.
struct Peers {
    bin: PathBuf,
    dir: tempfile::TempDir,
    names: Vec<String>,
    ports: Vec<u16>,
    args: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Peers {
    fn start(bin: &Path, upstream: u16, args: &[String]) -> Result<Peers, String> {
        let dir = tempfile::Builder::new()
            .prefix("svcsoak")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let mut p = Peers {
            bin: bin.to_owned(),
            dir,
            names: (0..3).map(|i| format!("p{i}")).collect(),
            ports: (0..3).map(|_| free_port()).collect(),
            args: args.to_vec(),
            children: (0..3).map(|_| None).collect(),
        };
        p.args.extend([
            "--upstream".to_owned(),
            format!("127.0.0.1:{upstream}"),
            "--stamp".to_owned(),
        ]);
        for i in 0..3 {
            p.spawn(i)?;
        }
        Ok(p)
    }

    fn rundir(&self) -> RuntimeDir {
        RuntimeDir::at(self.dir.path())
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join(format!("{}.stderr", self.names[i])))
            .map_err(|e| e.to_string())?;
        let child = Command::new(&self.bin)
            .args(["-n", &self.names[i], "--listen"])
            .arg(format!("127.0.0.1:{}", self.ports[i]))
            .args(&self.args)
            .env("SHVAR_DIR", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.children[i] = Some(child);
        let t0 = Instant::now();
        while self.send(i, "version").is_err() {
            if t0.elapsed() > STUCK {
                return Err(format!("{} did not come up", self.names[i]));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.send(i, "election")?;
        Ok(())
    }

    fn send(&self, i: usize, line: &str) -> Result<String, String> {
        let n = ProcName::new(&self.names[i]).map_err(|e| e.to_string())?;
        match client::send(&self.rundir(), &n, line, Duration::from_secs(5)) {
            Ok(r) if r.is_ok() => Ok(r.text().to_owned()),
            Ok(r) => Err(r.text().to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn index(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).unwrap_or(0)
    }

    fn signal(&self, i: usize, s: Signal) {
        if let Some(c) = &self.children[i] {
            let _ = kill(Pid::from_raw(c.id() as i32), s);
        }
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for i in 0..3 {
            self.signal(i, Signal::SIGCONT);
            self.kill9(i);
        }
    }
}

/// Waits until the resource has accepted a token newer than `after` (from `want`, if given,
/// else from anyone but `not`); returns when that token was first accepted.
fn wait_newer(
    r: &Resource,
    after: u64,
    want: Option<&str>,
    not: Option<&str>,
) -> Result<(u64, String, Instant), String> {
    let t0 = Instant::now();
    loop {
        let newest = r.newest();
        if let Some(g) = newest.as_ref().filter(|g| {
            g.token > after && want.is_none_or(|w| w == g.peer) && not.is_none_or(|n| n != g.peer)
        }) {
            return Ok((g.token, g.peer.clone(), g.first));
        }
        if t0.elapsed() > STUCK {
            let (tok, peer) = newest.map_or((0, "nobody".to_owned()), |g| (g.token, g.peer));
            return Err(format!(
                "no new grant for {} s after token {after} (newest {tok} of {peer})",
                STUCK.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One soak: `grants` hand-overs by `force` on a random other peer, a holder killed or
/// stopped every `fail_every`.
fn soak(
    label: &str,
    bin: &Path,
    args: &[String],
    ttl: Duration,
    grants: u64,
    fail_every: u64,
    seed: u64,
) -> Result<bool, String> {
    let res = Resource::start().map_err(|e| format!("resource: {e}"))?;
    let mut peers = Peers::start(bin, res.port, args)?;
    let _users: Vec<User> = peers.ports.iter().map(|p| User::start(*p)).collect();
    let (mut tok, _, _) = wait_newer(&res, 0, None, None)?;
    let mut rng = Rng(seed | 1);
    let mut hand = Vec::new();
    let (mut kills, mut stops) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut n = 0u64;
    while n < grants {
        let holder = res.newest().ok_or("no grant yet")?.peer;
        let h = peers.index(&holder);
        if fail_every > 0 && n > 0 && n.is_multiple_of(fail_every) {
            let stop = (n / fail_every).is_multiple_of(2);
            let t0 = Instant::now();
            if stop {
                peers.signal(h, Signal::SIGSTOP);
            } else {
                peers.kill9(h);
            }
            let (t, _, at) = wait_newer(&res, tok, None, Some(&holder))?;
            let d = at.saturating_duration_since(t0);
            if stop {
                stops.push(d);
                // Longer than the lease: then wake it (its gate and its round must notice).
                std::thread::sleep((ttl + Duration::from_millis(200)).saturating_sub(t0.elapsed()));
                peers.signal(h, Signal::SIGCONT);
            } else {
                kills.push(d);
                peers.spawn(h)?;
            }
            tok = t;
            n += 1;
            continue;
        }
        let p = (h + 1 + rng.below(2)) % 3;
        let t0 = Instant::now();
        peers.send(p, "force")?;
        let (t, _, at) = wait_newer(&res, tok, Some(&peers.names[p]), None)?;
        hand.push(at.saturating_duration_since(t0));
        tok = t;
        n += 1;
        if n.is_multiple_of(1000) {
            eprintln!(
                "{label}: {n} grants in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    // Let the users run a moment under the last grant, then read the verdict.
    let _ = wait_newer(&res, tok.saturating_sub(1), None, None);
    let g = res.seen.lock().unwrap();
    let overlaps = g.overlaps();
    println!(
        "{label}: {n} grants in {:.1} s, {} accesses; overlaps {overlaps}; stale writes refused by the resource {}",
        started.elapsed().as_secs_f64(),
        g.accepted,
        g.stale
    );
    println!(
        "{label}: {}",
        summary(
            "hand-over (force -> first access under the new token)",
            &mut hand
        )
    );
    println!(
        "{label}: {}",
        summary("fail-over after kill -9 of the holder", &mut kills)
    );
    println!(
        "{label}: {}",
        summary(
            "fail-over after SIGSTOP of the holder (lease ends)",
            &mut stops
        )
    );
    let ttl_ok = kills
        .iter()
        .chain(stops.iter())
        .filter(|d| **d > ttl + Duration::from_millis(500))
        .count();
    println!("{label}: fail-overs over TTL + 0.5 s: {ttl_ok}");
    Ok(overlaps == 0)
}

fn lock_bench(rounds: u64) -> Result<(), String> {
    // Where the runtime directory is by default (tmpfs), as svcshare's lease file would be.
    let shm = Path::new("/dev/shm");
    let d = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("svcsoak-lock")
            .tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .map_err(|e| e.to_string())?;
    let l = LocalLock::open(d.path(), "bench", "me", Duration::from_secs(1))?;
    let mut v = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let t0 = Instant::now();
        let lease = l
            .acquire(|_, _| true)
            .map_err(|e| e.to_string())?
            .map_err(|b| format!("{b:?}"))?;
        l.release(lease.token).map_err(|e| e.to_string())?;
        v.push(t0.elapsed());
    }
    let p = |v: &mut [Duration], q| pct(v, q).as_secs_f64() * 1e6;
    println!(
        "local lease acquire+release: median {:.2} µs, p99 {:.2} µs (goal <= 50 µs; n={rounds}, file in {})",
        p(&mut v, 0.5),
        p(&mut v, 0.99),
        d.path().parent().unwrap_or(d.path()).display()
    );
    Ok(())
}

/// etcd on loopback ports chosen now.
struct Etcd {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Etcd {
    fn start(bin: &str) -> Result<Etcd, String> {
        let shm = Path::new("/dev/shm");
        let data = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("svcsoak-etcd")
                .tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("svcsoak-etcd").tempdir()
        }
        .map_err(|e| e.to_string())?;
        let url = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = Command::new(bin)
            .args(["--name", "soak", "--data-dir"])
            .arg(data.path())
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("soak={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start {bin}: {e} (apt-get install etcd-server, or --etcd-grants 0)")
            })?;
        let e = Etcd {
            child,
            url,
            _data: data,
        };
        let addr = e.url.trim_start_matches("http://").to_owned();
        let t0 = Instant::now();
        loop {
            if let Ok(mut s) = TcpStream::connect(&addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = s.write_all(b"GET /health HTTP/1.0\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.contains("\"health\":\"true\"") {
                    return Ok(e);
                }
            }
            if t0.elapsed() > STUCK {
                return Err("etcd did not become healthy".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cli: &cli::Cli) -> Result<bool, String> {
    let bin = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("svcshare");
    if !bin.exists() {
        return Err(format!(
            "{} is missing: build it (cargo build --release --bin svcshare)",
            bin.display()
        ));
    }
    lock_bench(cli.lock_rounds)?;
    let mut clean = true;
    if cli.grants > 0 {
        let args: Vec<String> = ["--ttl", "1s", "--poll", "2ms"].map(String::from).to_vec();
        clean &= soak(
            "local",
            &bin,
            &args,
            Duration::from_secs(1),
            cli.grants,
            cli.fail_every,
            cli.seed,
        )?;
    }
    if cli.etcd_grants > 0 {
        let etcd = Etcd::start(&cli.etcd_bin)?;
        let args: Vec<String> = vec![
            "--etcd".into(),
            etcd.url.clone(),
            "--ttl".into(),
            "2s".into(),
            "--poll".into(),
            "5ms".into(),
        ];
        clean &= soak(
            "etcd",
            &bin,
            &args,
            Duration::from_secs(2),
            cli.etcd_grants,
            cli.fail_every,
            cli.seed,
        )?;
    }
    Ok(clean)
}

fn main() -> ExitCode {
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("svcsoak: overlaps seen: two holders used the resource at once");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("svcsoak: error: {e}");
            ExitCode::FAILURE
        }
    }
}
