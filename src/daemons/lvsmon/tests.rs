//! The checker in-process, against real local servers: every reason, and no allocation on its
//! thread over thousands of probes, failures and reloads included. (The daemon as a process is
//! tested in tests/lvsmon.rs.)

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use shvars::region::{CreateOptions, RegionReader, VarRegion, VarSpec};
use shvars::{ProcName, RuntimeDir};

use super::config::{self, Defaults};
use super::engine::{CheckerVars, Engine, FromChecker, Handle, Table, ToChecker};
use super::fake_servers::{answer, listener, read_request, serve};
use super::plan::{Probe, Watched};
use super::rows::Rows;

// Every test of the library runs under the counting allocator (it only adds a thread-local
// increment per allocation), so the checker's count is real.
#[global_allocator]
static ALLOC: shvars::alloc::CountingAlloc = shvars::alloc::CountingAlloc;

/// Local targets, one of each kind of behaviour.
struct Targets {
    ok: u16,
    not_found: u16,
    refused: u16,
    silent: u16,
    one_byte: u16,
    cut: u16,
    reset: u16,
    ssh: u16,
    smtp: u16,
    udp: u16,
    udp_closed: u16,
    _keep: Vec<TcpListener>,
    _udp: UdpSocket,
}

fn targets() -> Targets {
    let ok = serve(|c| {
        answer(
            c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nall is well",
        )
    });
    let not_found = serve(|c| answer(c, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"));
    let refused = listener().1;
    // Accepts (the kernel completes the handshake) and never answers.
    let (silent_l, silent) = listener();
    let one_byte = serve(|mut c| {
        read_request(&mut c);
        for b in b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nall is well" {
            if c.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let cut = serve(|c| answer(c, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nall is"));
    let reset = serve(|mut c| {
        read_request(&mut c);
        let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
    });
    let ssh = serve(|mut c| {
        let _ = c.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n");
        std::thread::sleep(Duration::from_millis(50));
    });
    let smtp = serve(|mut c| {
        let _ = c.write_all(b"220 mail.example ESMTP\r\n");
        std::thread::sleep(Duration::from_millis(50));
    });
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = u.local_addr().unwrap().port();
    let u2 = u.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = u2.recv_from(&mut buf) {
            if &buf[..n] == b"ping" {
                let _ = u2.send_to(b"pong", from);
            }
        }
    });
    let udp_closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Targets {
        ok,
        not_found,
        refused,
        silent,
        one_byte,
        cut,
        reset,
        ssh,
        smtp,
        udp,
        udp_closed,
        _keep: vec![silent_l],
        _udp: u,
    }
}

fn file(t: &Targets, interval: &str) -> String {
    format!(
        r#"
[defaults]
interval = "{interval}"
connect_timeout = "300ms"
recv_timeout = "300ms"
rise = 1
fall = 1

[check.ok]
type = "http"
url = "http://127.0.0.1:{ok}/health"
body = "is well"
[check.notfound]
type = "http"
url = "http://127.0.0.1:{nf}/"
[check.refused]
type = "tcp"
address = "127.0.0.1:{refused}"
[check.silent]
type = "http"
url = "http://127.0.0.1:{silent}/"
[check.silenttcp]
type = "tcp"
address = "127.0.0.1:{silent}"
[check.onebyte]
type = "http"
url = "http://127.0.0.1:{one}/"
body_regex = "all is w[a-z]+"
[check.cut]
type = "http"
url = "http://127.0.0.1:{cut}/"
body = "never there"
[check.body]
type = "http"
url = "http://127.0.0.1:{ok}/"
body = "broken"
[check.reset]
type = "http"
url = "http://127.0.0.1:{reset}/"
[check.ssh]
type = "banner"
address = "127.0.0.1:{ssh}"
expect = "SSH-2.0-"
[check.smtp]
type = "banner"
address = "127.0.0.1:{smtp}"
expect = "SSH-2.0-"
[check.udp]
type = "udp"
address = "127.0.0.1:{udp}"
send = "ping"
expect = "pong"
[check.udpclosed]
type = "udp"
address = "127.0.0.1:{udpc}"
send = "ping"
[check.dns]
type = "tcp"
address = "{longname}.invalid:80"
[check.fw]
type = "framework"
process = "fw1"
condition = "no_conn == 0"
[check.fwgone]
type = "framework"
process = "nobody"
"#,
        ok = t.ok,
        nf = t.not_found,
        refused = t.refused,
        silent = t.silent,
        one = t.one_byte,
        cut = t.cut,
        reset = t.reset,
        ssh = t.ssh,
        smtp = t.smtp,
        udp = t.udp,
        udpc = t.udp_closed,
        // A label longer than 63 bytes: the resolver refuses it without sending a query (a
        // test sends nothing off this machine).
        longname = "a".repeat(64),
    )
}

struct World {
    _tmp: tempfile::TempDir,
    dir: RuntimeDir,
    region: VarRegion,
    rows: Rows,
    handle: Handle,
    gen: u32,
    names: Vec<String>,
    edges: Vec<(String, String)>,
    fw: VarRegion,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RuntimeDir::at(tmp.path());
        let region = VarRegion::create(
            &dir,
            &ProcName::new("mon").unwrap(),
            &CreateOptions::default(),
        )
        .unwrap();
        let v = |n: &str| region.add_int(VarSpec::int(n, 0)).unwrap();
        let vars = CheckerVars {
            done: v("checks_done_since_start"),
            beat: v("checker_heartbeat"),
            allocs: v("loop_allocs"),
            in_flight: v("in_flight"),
        };
        let fw = VarRegion::create(
            &dir,
            &ProcName::new("fw1").unwrap(),
            &CreateOptions::default(),
        )
        .unwrap();
        fw.add_int(VarSpec::int("no_conn", 0)).unwrap();
        fw.beat();
        let (engine, handle) = Engine::new(vars, 100).unwrap();
        engine.spawn().unwrap();
        World {
            _tmp: tmp,
            dir,
            region,
            rows: Rows::default(),
            handle,
            gen: 0,
            names: Vec::new(),
            edges: Vec::new(),
            fw,
        }
    }

    fn load(&mut self, text: &str) {
        let path = self.dir.path().join("checks.conf");
        std::fs::write(&path, text).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let cfg = config::load(
            &path,
            &Defaults::with_interval(10_000),
            &self.dir,
            &mut self.rows,
            &self.region,
        )
        .unwrap();
        let carry = cfg
            .checks
            .iter()
            .map(|c| {
                self.names
                    .iter()
                    .position(|n| **n == *c.name)
                    .map(|j| j as u32)
            })
            .collect();
        self.names = cfg.checks.iter().map(|c| c.name.to_string()).collect();
        self.gen += 1;
        let table = Table::new(self.gen, cfg.checks);
        self.handle.send(ToChecker::Load { table, carry });
        self.handle.send(ToChecker::Resume);
    }

    /// Does what the main loop does with the checker's messages.
    fn pump(&mut self) {
        while let Ok(m) = self.handle.rx.try_recv() {
            match m {
                FromChecker::Edge(e) => {
                    if e.gen == self.gen {
                        self.edges.push((
                            self.names[e.idx as usize].clone(),
                            format!("{}->{}", e.change.old.label(), e.change.new.label()),
                        ));
                    }
                }
                FromChecker::Reopen { gen, idx } => {
                    let p = ProcName::new(if self.names[idx as usize] == "fw" {
                        "fw1"
                    } else {
                        "nobody"
                    })
                    .unwrap();
                    let conds = if self.names[idx as usize] == "fw" {
                        vec![config::parse_condition("no_conn == 0").unwrap()]
                    } else {
                        vec![]
                    };
                    let watched = Watched::open(&self.dir, &p, &conds).map(Box::new);
                    self.handle.send(ToChecker::Watched { gen, idx, watched });
                }
                FromChecker::Retired(_) => {}
            }
        }
    }

    fn get(&self, var: &str) -> String {
        let r = RegionReader::open(&self.dir, &ProcName::new("mon").unwrap()).unwrap();
        let v = r.find(var).unwrap();
        match r.read(&v).unwrap() {
            shvars::region::Value::Int(i) => r
                .spec(var)
                .and_then(|s| s.label(i))
                .map_or(i.to_string(), str::to_owned),
            other => other.to_string(),
        }
    }

    fn int(&self, var: &str) -> i64 {
        self.get(var).parse().unwrap_or(-99)
    }

    /// Pumps until `f` holds (20 s at most).
    fn wait(&mut self, what: &str, mut f: impl FnMut(&World) -> bool) {
        let t0 = Instant::now();
        while !f(self) {
            self.pump();
            self.fw.beat();
            assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn every_plugin_and_reason_against_real_servers() {
    let t = targets();
    let mut w = World::new();
    w.load(&file(&t, "50ms"));
    w.wait("three probes of every check", |w| {
        w.names
            .iter()
            .all(|n| w.int(&format!("check.{n}.checks")) >= 3)
    });
    let expect = [
        ("ok", "UP", ""),
        ("notfound", "DOWN", "bad HTTP status 404"),
        ("refused", "DOWN", "connection refused"),
        ("silent", "DOWN", "receive timeout"),
        ("silenttcp", "UP", ""),
        ("onebyte", "UP", ""),
        ("cut", "DOWN", "closed mid-response"),
        ("body", "DOWN", "unexpected body"),
        ("reset", "DOWN", "connection reset"),
        ("ssh", "UP", ""),
        ("smtp", "DOWN", "bad banner"),
        ("udp", "UP", ""),
        ("udpclosed", "DOWN", "connection refused"),
        ("dns", "DOWN", "DNS failure: aaaaaaaa"),
        ("fw", "UP", ""),
        (
            "fwgone",
            "DOWN",
            "framework process dead: nobody does not run",
        ),
    ];
    for (name, status, reason) in expect {
        assert_eq!(w.get(&format!("check.{name}.status")), status, "{name}");
        let got = w.get(&format!("check.{name}.reason"));
        assert!(
            got.starts_with(reason),
            "{name}: reason {got:?}, wanted {reason:?}"
        );
        assert_eq!(
            w.int(&format!("check.{name}.ok")),
            i64::from(status == "UP"),
            "{name}"
        );
    }
    assert!(w.int("check.refused.fails") >= 3);
    assert_eq!(w.int("check.ok.fails"), 0);
    // Exactly one edge per check so far: its first verdict.
    for n in w.names.clone() {
        assert_eq!(
            w.edges.iter().filter(|(c, _)| *c == n).count(),
            1,
            "{n}: {:?}",
            w.edges
        );
    }

    // The watched process's variable leaves its range: the check goes down, with the value.
    w.fw.var("no_conn")
        .unwrap()
        .set(&shvars::region::Value::Int(3));
    w.wait("fw down, announced", |w| {
        w.get("check.fw.status") == "DOWN"
            && w.edges.iter().any(|(c, e)| c == "fw" && e == "UP->DOWN")
    });
    assert_eq!(
        w.get("check.fw.reason"),
        "variable out of range: no_conn = 3 (wanted == 0)"
    );
    assert_eq!(w.edges.iter().filter(|(c, _)| c == "fw").count(), 2);
}

#[test]
fn the_checker_never_allocates_in_steady_state() {
    let t = targets();
    let mut w = World::new();
    // Every kind of outcome, probed every 10 ms (about 1,600 probes a second).
    w.load(&file(&t, "10ms"));
    w.wait("the loop to count", |w| {
        w.int("loop_allocs") == 0 && w.int("checks_done_since_start") > 0
    });
    // A flapping target: the watched variable toggles, so edges keep being announced.
    let fw_var = w.fw.var("no_conn").unwrap();
    let done0 = w.int("checks_done_since_start");
    for round in 0..3 {
        let until = w.int("checks_done_since_start") + 1500;
        let mut flip = 0i64;
        w.wait("1500 more probes", |w| {
            flip += 1;
            if flip % 20 == 0 {
                fw_var.set(&shvars::region::Value::Int((flip / 20) % 2));
            }
            w.int("checks_done_since_start") >= until
        });
        // A reload in steady state: the same checks plus one, then without it.
        let mut text = file(&t, "10ms");
        if round % 2 == 0 {
            text.push_str(&format!(
                "[check.extra{round}]\ntype = \"tcp\"\naddress = \"127.0.0.1:{}\"\n",
                t.ok
            ));
        }
        w.load(&text);
    }
    w.wait("the counters to be published", |w| {
        w.int("checks_done_since_start") > done0 + 4500
    });
    let fw_edges = w.edges.iter().filter(|(c, _)| c == "fw").count();
    assert!(
        fw_edges >= 4,
        "the flapping check changed state only {fw_edges} times"
    );
    assert_eq!(
        w.int("loop_allocs"),
        0,
        "the checker thread allocated after its loop started"
    );
    // The test is not vacuous: the counter counts.
    let before = shvars::alloc::thread_allocations();
    let v: Vec<u8> = Vec::with_capacity(10);
    assert!(shvars::alloc::thread_allocations() > before, "{v:?}");
    assert!(shvars::alloc::installed());
    let _ = Probe::kind;
}

#[test]
fn memory_per_check() {
    // The figures docs/lvsmon.md quotes; a change here is a change to document.
    let slot = std::mem::size_of::<super::engine::Slot>();
    let def = std::mem::size_of::<super::plan::CheckDef>();
    eprintln!(
        "slot {slot} B, per check in the table {} B, CheckDef {def} B, Row {} B",
        Table::bytes_per_check(),
        std::mem::size_of::<super::rows::Row>()
    );
    assert!(slot <= 160, "a check's running state grew to {slot} bytes");
}
