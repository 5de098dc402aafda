//! The safety test: never two holders, never a stale token accepted, a new holder in time
//! after the holder's death, with local peers and with etcd peers (a real etcd).

use super::*;

/// A tiny deterministic generator for the random schedule.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Three peers with stamped proxies in front of one fenced server, a user behind each.
struct Cluster {
    names: Vec<String>,
    ports: Vec<u16>,
    args: Vec<String>,
    server: Fenced,
    users: Vec<User>,
    ttl: Duration,
}

impl Cluster {
    fn start(env: &mut Env, peering: &[&str], ttl: Duration) -> Cluster {
        let server = Fenced::start().expect("the fenced resource listens on loopback");
        let mut c = Cluster {
            names: (0..3).map(|i| format!("p{i}")).collect(),
            ports: (0..3).map(|_| free_port()).collect(),
            args: peering.iter().map(|s| s.to_string()).collect(),
            server,
            users: Vec::new(),
            ttl,
        };
        for i in 0..3 {
            c.spawn(env, i);
        }
        for i in 0..3 {
            c.users.push(User::start(c.ports[i]));
        }
        c
    }

    fn spawn(&self, env: &mut Env, i: usize) {
        let listen = format!("127.0.0.1:{}", self.ports[i]);
        let up = format!("127.0.0.1:{}", self.server.port);
        let ttl = format!("{}ms", self.ttl.as_millis());
        let mut a: Vec<&str> = vec![
            "--listen",
            &listen,
            "--upstream",
            &up,
            "--stamp",
            "--ttl",
            &ttl,
        ];
        a.extend(self.args.iter().map(String::as_str));
        svcshare(env, &self.names[i], &a);
    }

    /// The longest a fail-over may take (docs/svcshare.md, "Timing and fencing"): the lease
    /// runs out at most a TTL after the holder died (it renews every T/4 locally, T/3 with
    /// etcd), then the next poll (20 ms) and an election give a new holder, whose first access
    /// reaches the resource; 0.5 s covers those. With etcd add 0.5 s more: etcd's lessor looks
    /// for expired leases only every 500 ms.
    fn failover_bound(&self) -> Duration {
        let etcd = self.args.iter().any(|a| a == "--etcd");
        self.ttl + Duration::from_millis(if etcd { 1000 } else { 500 })
    }

    /// Accesses the server accepted so far.
    fn accepted(&self) -> u64 {
        self.server.seen.lock().unwrap().accepted
    }

    /// Waits until the server accepted `n` more accesses.
    fn progress(&self, env: &Env, n: u64, what: &str) {
        let base = self.accepted();
        env.wait_until(&format!("{n} accesses after {what}"), || {
            self.accepted() >= base + n
        });
    }

    /// The newest grant: the holder's.
    fn holder(&self) -> Grant {
        self.server.newest().expect("an access")
    }

    fn overlaps(&self) -> u64 {
        self.server.seen.lock().unwrap().overlaps()
    }

    /// Makes peer `i` ask to run, unless it is halted.
    fn ask(&self, env: &Env, i: usize) {
        let _ = cmd(env, &self.names[i], "election");
    }

    /// Kills (or stops) the holder; returns how long until another peer's access was accepted.
    fn fail_holder(&self, env: &mut Env, stop: bool) -> (String, Duration) {
        // Every other peer asks, so someone is there to take over.
        for i in 0..3 {
            self.ask(env, i);
        }
        self.progress(env, 5, "everyone asking");
        let h = self.holder();
        let t0 = Instant::now();
        if stop {
            env.signal(&h.peer, Signal::SIGSTOP);
        } else {
            env.kill9(&h.peer);
        }
        env.wait_until("another peer to take over", || {
            self.holder().token > h.token
        });
        let g = self.server.seen.lock().unwrap();
        let next = g.grants.iter().find(|a| a.token > h.token).unwrap();
        (h.peer, next.first.duration_since(t0))
    }

    fn random_ops(&self, env: &Env, rng: &mut Rng, n: usize) {
        for step in 0..n {
            let i = rng.below(3);
            let p = &self.names[i];
            let line = match rng.below(8) {
                0 | 1 => "election".to_owned(),
                2 => "force".to_owned(),
                3 => "force 0.002".to_owned(),
                4 => "halt 0.005".to_owned(),
                5 => "pause".to_owned(),
                6 => format!("enq item{step}"),
                _ => "unhalt".to_owned(),
            };
            let _ = cmd(env, p, &line);
            // Someone must be asking for the resource to move on.
            let j = (i + 1 + rng.below(2)) % 3;
            self.ask(env, j);
            self.progress(env, 3, &format!("step {step}: {p} {line}"));
        }
    }

    /// The holder killed (kill -9) and started again, `ops` random operations, then the new
    /// holder stopped (SIGSTOP) for longer than its lease and woken: a third takes over, the
    /// woken one never touches the resource again and notices that its lease is gone. Returns
    /// the peer that was stopped and the two fail-over times.
    fn kill_then_stop_holder(
        &self,
        env: &mut Env,
        rng: &mut Rng,
        ops: usize,
    ) -> (String, Vec<Duration>) {
        let (dead, killed) = self.fail_holder(env, false);
        let i = self.names.iter().position(|n| *n == dead).unwrap();
        self.spawn(env, i);
        self.random_ops(env, rng, ops);
        let (stopped, paused) = self.fail_holder(env, true);
        self.progress(env, 5, "the new holder");
        env.signal(&stopped, Signal::SIGCONT);
        self.progress(env, 20, "the stopped holder woke");
        assert_eq!(
            self.overlaps(),
            0,
            "the woken holder went on using the resource"
        );
        env.wait_until("the woken holder to notice its lease is gone", || {
            env.get_int(&stopped, "lease_lost") >= 1
        });
        (stopped, vec![killed, paused])
    }

    fn check(&self, failovers: &[Duration]) {
        let g = self.server.seen.lock().unwrap();
        eprintln!(
            "safety: {} accesses under {} grants, {} stale refused by the resource ({} late), failovers {:?}",
            g.accepted,
            g.grants.len(),
            g.stale,
            g.late,
            failovers
        );
        drop(g);
        assert_eq!(self.overlaps(), 0, "two holders overlapped");
        for f in failovers {
            assert!(
                *f <= self.failover_bound(),
                "a new holder took {f:?}, more than {:?} (docs/svcshare.md, Timing)",
                self.failover_bound()
            );
        }
    }
}

#[test]
fn never_two_holders_with_local_peers_through_elections_forces_halts_kill_and_stop() {
    let mut env = Env::new();
    let ttl = Duration::from_secs(1);
    let cl = Cluster::start(&mut env, &[], ttl);
    for (i, n) in cl.names.iter().enumerate() {
        for k in 0..=i {
            ok(&env, n, &format!("enq {n}-{k}"));
        }
        ok(&env, n, "election");
    }
    cl.progress(&env, 5, "the first elections");
    assert_eq!(cl.holder().peer, "p0", "the smallest queue wins");
    let mut rng = Rng(0x5eed_0001);
    cl.random_ops(&env, &mut rng, 20);
    // kill -9 of the holder: its lease file entry stays, but its region's liveness says dead.
    let (stopped, failovers) = cl.kill_then_stop_holder(&mut env, &mut rng, 5);
    let ev = ok(&env, &stopped, "events 50");
    eprintln!("woken holder {stopped}:\n{ev}");
    assert!(ev.contains("lost the grant of token"), "{ev}");
    cl.random_ops(&env, &mut rng, 5);
    cl.check(&failovers);
}

/// A real etcd (Debian's etcd-server) on loopback ports chosen now, its data in a temp dir.
struct Etcd {
    url: String,
    peer: String,
    data: tempfile::TempDir,
}

impl Etcd {
    fn start(env: &mut Env) -> Etcd {
        let bin = std::path::Path::new("/usr/bin/etcd");
        assert!(
            bin.exists(),
            "/usr/bin/etcd is missing: install Debian's etcd-server (tests/prereqs.sh does: apt-get install -y etcd-server)"
        );
        let shm = std::path::Path::new("/dev/shm");
        let data = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("svcshare-etcd")
                .tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("svcshare-etcd").tempdir()
        }
        .unwrap();
        let e = Etcd {
            url: format!("http://127.0.0.1:{}", free_port()),
            peer: format!("http://127.0.0.1:{}", free_port()),
            data,
        };
        e.spawn(env);
        e
    }

    fn spawn(&self, env: &mut Env) {
        let mut c = Command::new("/usr/bin/etcd");
        c.args(["--name", "t", "--data-dir"])
            .arg(self.data.path())
            .args(["--listen-client-urls", &self.url])
            .args(["--advertise-client-urls", &self.url])
            .args(["--listen-peer-urls", &self.peer])
            .args(["--initial-advertise-peer-urls", &self.peer])
            .args(["--initial-cluster", &format!("t={}", self.peer)]);
        env.spawn("etcd", c);
        let addr = self.url.trim_start_matches("http://").to_owned();
        env.wait_until("etcd to answer", || {
            let Ok(mut s) = TcpStream::connect(&addr) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = s.write_all(b"GET /health HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out.contains("\"health\":\"true\"")
        });
    }
}

#[test]
fn never_two_holders_with_etcd_peers_through_holder_death_stop_and_an_etcd_restart() {
    let mut env = Env::new();
    let etcd = Etcd::start(&mut env);
    let ttl = Duration::from_secs(2);
    let cl = Cluster::start(
        &mut env,
        &["--etcd", &etcd.url, "--etcd-prefix", "/test"],
        ttl,
    );
    assert_eq!(
        env.get("p0", "peering"),
        format!("etcd {} prefix /test", etcd.url)
    );
    for (i, n) in cl.names.iter().enumerate() {
        for k in 0..=i {
            ok(&env, n, &format!("enq {n}-{k}"));
        }
    }
    // Every peer sees the others through etcd before the first election.
    env.wait_until("the peers to see each other in etcd", || {
        cl.names.iter().all(|n| env.get_int(n, "peers") == 2)
    });
    for n in &cl.names {
        ok(&env, n, "election");
    }
    cl.progress(&env, 5, "the first elections");
    env.wait_until("p0 (smallest queue) to hold", || cl.holder().peer == "p0");
    let mut rng = Rng(0x5eed_e7cd);
    cl.random_ops(&env, &mut rng, 12);
    let (_stopped, failovers) = cl.kill_then_stop_holder(&mut env, &mut rng, 4);
    // etcd restarts: every holder pauses before its lease could end, then the peers go on.
    let h = cl.holder().peer;
    env.kill9("etcd");
    env.wait_until("the holder to pause without etcd", || {
        !["RUNNING", "FORCED"].contains(&state(&env, &h).as_str())
    });
    // Every peer says why: `status` names the etcd trouble (lasterror may already hold a
    // later error, such as the holder's lost grant).
    env.wait_until("p0 to report the etcd trouble in its status", || {
        ok(&env, "p0", "status").contains("etcd trouble: ")
    });
    let before = cl.accepted();
    etcd.spawn(&mut env);
    for i in 0..3 {
        cl.ask(&env, i);
    }
    env.wait_until("accesses again after the etcd restart", || {
        cl.accepted() > before + 5
    });
    cl.check(&failovers);
}
