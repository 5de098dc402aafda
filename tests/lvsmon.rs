//! lvsmon as a process: a bad file refused with its line, the checks against real local servers,
//! exactly one notification per edge over a flapping target, the ipvsadm action through a
//! stand-in, reloads, no allocation in the checker, Prometheus names, and the verdicts of
//! Debian's prometheus-blackbox-exporter side by side. (Every reason is also checked in-process
//! in src/daemons/lvsmon/tests.rs.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{free_port, Env};

#[path = "../src/daemons/lvsmon/fake_servers.rs"]
mod fake_servers;
use fake_servers::{answer, serve};

/// The local targets of the side-by-side test.
struct Targets {
    ok: u16,
    not_found: u16,
    refused: u16,
    silent: u16,
    ssh: u16,
    smtp: u16,
    _silent: TcpListener,
}

fn targets() -> Targets {
    let ok = serve(|c| {
        answer(
            c,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nall is well",
        )
    });
    let not_found = serve(|c| {
        answer(
            c,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
    });
    let refused = free_port();
    let silent_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = silent_l.local_addr().unwrap().port();
    let ssh = serve(|mut c| {
        let _ = c.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
        let mut b = [0u8; 64];
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = c.read(&mut b);
    });
    let smtp = serve(|mut c| {
        let _ = c.write_all(b"220 mail.example.org ESMTP Postfix\r\n");
        let mut b = [0u8; 64];
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = c.read(&mut b);
    });
    Targets {
        ok,
        not_found,
        refused,
        silent,
        ssh,
        smtp,
        _silent: silent_l,
    }
}

/// A checks file as an administrator leaves it: mode 0644 whatever the umask (lvsmon refuses
/// one every user may write: it names the commands lvsmon runs).
fn write(env: &Env, name: &str, text: &str) -> PathBuf {
    let p = env.path(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// A script that appends one line per run: its arguments and the notify environment.
fn recorder(env: &Env, name: &str, log: &Path) -> PathBuf {
    let p = env.path(name);
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"args=$* check=$LVSMON_CHECK old=$LVSMON_OLD_STATE new=$LVSMON_STATE reason=$LVSMON_REASON process=$LVSMON_PROCESS\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn start_lvsmon(env: &mut Env, name: &str, file: &Path, extra: &[&str]) -> u32 {
    let mut c = env.command("lvsmon");
    c.args(["-n", name, "--file"]).arg(file).args(extra);
    let pid = env.spawn(name, c);
    env.wait_ready(name, pid);
    pid
}

#[test]
fn a_bad_file_is_refused_at_start_with_its_line() {
    let env = Env::new();
    let f = write(
        &env,
        "checks.conf",
        "[check.web]\ntype = \"http\"\nurl = \"http://127.0.0.1:1/\"\nstatus = [\"6xx\"]\n",
    );
    let mut c = env.command("lvsmon");
    c.args(["-n", "mon1", "--file"]).arg(&f);
    let out = env.run(c);
    out.expect_code(1)
        .stderr_has("checks.conf:4: check web: status \"6xx\": write 1xx to 5xx");
    assert!(!env.path("mon1.ctl").exists());
    let mut c = env.command("lvsmon");
    c.args(["-n", "mon1", "--file", "/nonexistent/checks.conf"]);
    env.run(c)
        .expect_code(1)
        .stderr_has("/nonexistent/checks.conf: cannot read it");
    // A file any local user could have changed (its commands run as lvsmon's user, root for
    // ipvs actions): refused before anything starts.
    let f = write(
        &env,
        "open.conf",
        "[check.t]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\n",
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut c = env.command("lvsmon");
    c.args(["-n", "mon1", "--file"]).arg(&f);
    env.run(c)
        .expect_code(1)
        .stderr_has("open.conf: refusing it: every user may write it (mode 0666)");
    assert!(!env.path("mon1.ctl").exists());
    // A FIFO in its place: refused at once (it used to hang start-up, read to size the region).
    let fifo = env.path("fifo.conf");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let mut c = env.command("lvsmon");
    c.args(["-n", "mon1", "--file"]).arg(&fifo);
    env.run(c)
        .expect_code(1)
        .stderr_has("fifo.conf: refusing it: it is a FIFO, not a regular file");
}

#[test]
fn checks_against_real_servers_and_the_prometheus_names() {
    let t = targets();
    let mut env = Env::new();
    let f = write(
        &env,
        "checks.conf",
        &format!(
            r#"
[defaults]
interval = "100ms"
connect_timeout = "500ms"
recv_timeout = "500ms"
rise = 1
fall = 1
[check.web]
type = "http"
url = "http://127.0.0.1:{}/health"
body = "is well"
[check.missing]
type = "http"
url = "http://127.0.0.1:{}/"
[check.closed]
type = "tcp"
address = "127.0.0.1:{}"
[check.silent]
type = "http"
url = "http://127.0.0.1:{}/"
[check.ssh]
type = "banner"
address = "127.0.0.1:{}"
expect = "SSH-2.0-"
[check.smtp]
type = "banner"
address = "127.0.0.1:{}"
expect_regex = "^SSH-2\\.0-"
"#,
            t.ok, t.not_found, t.refused, t.silent, t.ssh, t.smtp
        ),
    );
    start_lvsmon(&mut env, "mon1", &f, &[]);
    env.wait_until("every check to have a verdict", || {
        ["web", "missing", "closed", "silent", "ssh", "smtp"]
            .iter()
            .all(|c| env.get("mon1", &format!("check.{c}.status")) != "UNKNOWN")
    });
    for (c, status, reason) in [
        ("web", "UP", ""),
        ("missing", "DOWN", "bad HTTP status 404"),
        ("closed", "DOWN", "connection refused"),
        ("silent", "DOWN", "receive timeout"),
        ("ssh", "UP", ""),
        ("smtp", "DOWN", "bad banner"),
    ] {
        assert_eq!(env.get("mon1", &format!("check.{c}.status")), status, "{c}");
        assert_eq!(env.get("mon1", &format!("check.{c}.reason")), reason, "{c}");
    }
    let table = env.shvar(&["cmd", "mon1", "checks"]);
    table.ok().stdout_has("missing");
    assert!(table.stdout.lines().any(|l| l.starts_with("missing")
        && l.contains("DOWN")
        && l.ends_with("bad HTTP status 404")));
    env.shvar(&["cmd", "mon1", "checks", "nope"])
        .expect_code(1)
        .stderr_has("no check named nope; checks: closed, missing, silent, smtp, ssh, web");
    let export = env.shvar(&["export"]);
    export
        .ok()
        .stdout_has("probe_success{process=\"mon1\",check=\"web\"} 1\n")
        .stdout_has("probe_success{process=\"mon1\",check=\"missing\"} 0\n")
        .stdout_has("# TYPE probe_duration_seconds gauge")
        .stdout_has("lvsmon_check_status{process=\"mon1\",check=\"closed\",state=\"DOWN\"} 1");
    assert!(env.get_int("mon1", "checks_done_since_start") > 6);
}

#[test]
fn exactly_one_notification_per_edge_over_a_flapping_target() {
    let mut env = Env::new();
    let log = env.path("notify.log");
    let script = recorder(&env, "notify.sh", &log);
    let port = free_port();
    let f = write(
        &env,
        "checks.conf",
        &format!(
            "[defaults]\ninterval = \"20ms\"\nrise = 2\nfall = 2\nnotify = \"{}\"\n\n[check.flappy]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n",
            script.display()
        ),
    );
    start_lvsmon(&mut env, "mon1", &f, &[]);
    env.wait_until("the first verdict", || {
        env.get("mon1", "check.flappy.status") == "DOWN"
    });
    let mut want = vec!["old=UNKNOWN new=DOWN reason=connection refused"];
    for _ in 0..3 {
        let server = TcpListener::bind(("127.0.0.1", port)).unwrap();
        env.wait_until("UP", || env.get("mon1", "check.flappy.status") == "UP");
        want.push("old=DOWN new=UP reason=");
        drop(server);
        env.wait_until("DOWN", || env.get("mon1", "check.flappy.status") == "DOWN");
        want.push("old=UP new=DOWN reason=connection refused");
    }
    // Let many more probes pass while it stays down: no further notification.
    let done = env.get_int("mon1", "checks_done_since_start");
    env.wait_until("20 more probes", || {
        env.get_int("mon1", "checks_done_since_start") > done + 20
    });
    env.wait_until("the notify commands to finish", || {
        lines(&log).len() >= want.len() && env.get_int("mon1", "notifications") == want.len() as i64
    });
    let got = lines(&log);
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(&want) {
        assert!(
            g.contains(&format!("check=flappy {w}")) && g.ends_with("process=mon1"),
            "{g} lacks {w}"
        );
    }
    assert_eq!(env.get_int("mon1", "edges"), want.len() as i64);
    assert_eq!(env.get_int("mon1", "notify_failures"), 0);
}

#[test]
fn ipvsadm_adds_and_removes_the_real_server_on_edges_only() {
    let mut env = Env::new();
    let log = env.path("ipvsadm.log");
    let ipvsadm = recorder(&env, "ipvsadm", &log);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let f = write(
        &env,
        "checks.conf",
        &format!(
            r#"[ipvsadm]
command = "{}"
[defaults]
interval = "20ms"
rise = 1
fall = 1
[check.rs1]
type = "tcp"
address = "127.0.0.1:{port}"
ipvs = {{ service = "10.1.1.1:80", real = "127.0.0.1:{port}", forward = "nat", weight = 3 }}
"#,
            ipvsadm.display()
        ),
    );
    start_lvsmon(&mut env, "mon1", &f, &[]);
    env.wait_until("UP", || env.get("mon1", "check.rs1.status") == "UP");
    let done = env.get_int("mon1", "checks_done_since_start");
    env.wait_until("more probes", || {
        env.get_int("mon1", "checks_done_since_start") > done + 10
    });
    drop(l);
    env.wait_until("DOWN", || env.get("mon1", "check.rs1.status") == "DOWN");
    env.wait_until("two ipvsadm runs", || lines(&log).len() >= 2);
    let done = env.get_int("mon1", "checks_done_since_start");
    env.wait_until("more probes", || {
        env.get_int("mon1", "checks_done_since_start") > done + 10
    });
    let got = lines(&log);
    assert_eq!(
        got,
        vec![
            format!("args=-a -t 10.1.1.1:80 -r 127.0.0.1:{port} -m -w 3 check= old= new= reason= process="),
            format!("args=-d -t 10.1.1.1:80 -r 127.0.0.1:{port} check= old= new= reason= process="),
        ]
    );
    assert_eq!(env.get_int("mon1", "ipvs_failures"), 0);
}

#[test]
fn reload_keeps_the_running_set_when_the_file_is_bad() {
    let mut env = Env::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let good = |extra: &str| {
        format!(
            "[defaults]\ninterval = \"50ms\"\nrise = 1\nfall = 1\n[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n{extra}"
        )
    };
    let f = write(
        &env,
        "checks.conf",
        &good("[check.b]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\n"),
    );
    start_lvsmon(&mut env, "mon1", &f, &[]);
    env.wait_until("a UP", || env.get("mon1", "check.a.status") == "UP");
    assert_eq!(env.get_int("mon1", "nchecks"), 2);
    // A bad file, by SIGHUP: nothing changes, the reason is published and logged.
    write(&env, "checks.conf", &good("[check.c]\ntype = \"tcp\"\n"));
    env.signal("mon1", nix::sys::signal::Signal::SIGHUP);
    env.wait_until("the refusal", || {
        !env.get("mon1", "config_error").is_empty()
    });
    let why = env.get("mon1", "config_error");
    assert!(
        why.contains("checks.conf:9: check c: a tcp check needs address")
            && why.contains("still running the 2 checks"),
        "{why}"
    );
    assert_eq!(env.get_int("mon1", "nchecks"), 2);
    let probes = env.get_int("mon1", "check.a.checks");
    env.wait_until("a still probed", || {
        env.get_int("mon1", "check.a.checks") > probes + 3
    });
    // By command: the error is the reply.
    env.shvar(&["cmd", "mon1", "reload"])
        .expect_code(1)
        .stderr_has("checks.conf:9: check c: a tcp check needs address");
    // A good file: b removed, c added, a keeps its counters.
    write(
        &env,
        "checks.conf",
        &good(&format!(
            "[check.c]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n"
        )),
    );
    let before = env.get_int("mon1", "check.a.checks");
    env.shvar(&["cmd", "mon1", "reload"])
        .ok()
        .stdout_has("2 checks (1 added: c; 1 removed: b; 1 unchanged)");
    assert_eq!(env.get("mon1", "config_error"), "");
    assert!(env.get_int("mon1", "check.a.checks") >= before);
    // b's row is retired: gone from listings, and reading it says so.
    env.shvar(&["get", "mon1", "check.b.status"])
        .expect_code(1)
        .stderr_has("was removed by its owner at");
    let d = env.shvar(&["dump", "mon1", "check.*.status"]);
    d.ok();
    assert!(!d.stdout.contains("check.b."), "{}", d.stdout);
    env.wait_until("c UP", || env.get("mon1", "check.c.status") == "UP");
    assert_eq!(env.get_int("mon1", "reloads"), 1);
    drop(l);
}

#[test]
fn the_checker_does_not_allocate_in_the_real_binary() {
    let mut env = Env::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let file = |n: usize| {
        let mut s = String::from("[defaults]\ninterval = \"10ms\"\nrise = 1\nfall = 1\n");
        for i in 0..n {
            // Half succeed, half are refused.
            let p = if i % 2 == 0 { port } else { 1 };
            s.push_str(&format!(
                "[check.c{i}]\ntype = \"tcp\"\naddress = \"127.0.0.1:{p}\"\n"
            ));
        }
        s
    };
    let f = write(&env, "checks.conf", &file(10));
    start_lvsmon(&mut env, "mon1", &f, &[]);
    env.wait_until("1,000 probes", || {
        env.get_int("mon1", "checks_done_since_start") > 1000
    });
    write(&env, "checks.conf", &file(12));
    env.shvar(&["cmd", "mon1", "reload"]).ok();
    let done = env.get_int("mon1", "checks_done_since_start");
    env.wait_until("2,000 more probes", || {
        env.get_int("mon1", "checks_done_since_start") > done + 2000
    });
    assert_eq!(env.get_int("mon1", "loop_allocs"), 0);
    drop(l);
}

#[test]
fn a_framework_check_watches_another_process() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init", "-c", "start"]);
    let f = write(
        &env,
        "checks.conf",
        "[defaults]\ninterval = \"50ms\"\nrise = 1\nfall = 1\n[check.t1]\ntype = \"framework\"\nprocess = \"t1\"\ncondition = \"rate <= 100\"\n",
    );
    start_lvsmon(&mut env, "mon1", &f, &[]);
    env.wait_until("UP", || env.get("mon1", "check.t1.status") == "UP");
    env.shvar(&["set", "t1", "rate", "500"]).ok();
    env.wait_until("DOWN", || env.get("mon1", "check.t1.status") == "DOWN");
    assert_eq!(
        env.get("mon1", "check.t1.reason"),
        "variable out of range: rate = 500 (wanted <= 100)"
    );
    env.shvar(&["set", "t1", "rate", "50"]).ok();
    env.wait_until("UP again", || env.get("mon1", "check.t1.status") == "UP");
    env.kill9("t1");
    env.wait_until("dead", || {
        env.get("mon1", "check.t1.reason")
            .starts_with("framework process dead")
    });
    // It comes back: the check finds its new region.
    env.ticker("t1", &["-c", "init"]);
    env.wait_until("UP after the restart", || {
        env.get("mon1", "check.t1.status") == "UP"
    });
}

/// Runs Debian's blackbox_exporter on loopback with `config`; returns its port.
fn start_blackbox(env: &mut Env, config: &str) -> u16 {
    let exe = [
        "/usr/bin/prometheus-blackbox-exporter",
        "/usr/local/bin/blackbox_exporter",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap_or_else(|| {
        panic!(
            "prometheus-blackbox-exporter is not installed: tests/prereqs.sh installs it \
                 (apt-get install --no-install-recommends prometheus-blackbox-exporter)"
        )
    });
    let cfg = write(env, "blackbox.yml", config);
    let port = free_port();
    let mut c = Command::new(exe);
    c.arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null());
    env.spawn("blackbox", c);
    env.wait_until("blackbox_exporter to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    port
}

/// `probe_success` of one blackbox probe.
fn blackbox_probe(port: u16, module: &str, target: &str) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /probe?module={module}&target={target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let line = body
        .lines()
        .find(|l| l.starts_with("probe_success "))
        .unwrap_or_else(|| panic!("no probe_success in blackbox's answer:\n{body}"));
    line.ends_with(" 1")
}

#[test]
fn blackbox_exporter_and_lvsmon_agree_on_every_target() {
    let t = targets();
    let mut env = Env::new();
    let bb = start_blackbox(
        &mut env,
        r#"modules:
  http_2xx:
    prober: http
    timeout: 1s
    http:
      preferred_ip_protocol: ip4
  tcp_connect:
    prober: tcp
    timeout: 1s
    tcp:
      preferred_ip_protocol: ip4
  ssh_banner:
    prober: tcp
    timeout: 1s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^SSH-2.0-"
"#,
    );
    let f = write(
        &env,
        "checks.conf",
        &format!(
            r#"
[defaults]
interval = "200ms"
connect_timeout = "1s"
recv_timeout = "1s"
rise = 1
fall = 1
[check.http_ok]
type = "http"
url = "http://127.0.0.1:{ok}/"
[check.http_404]
type = "http"
url = "http://127.0.0.1:{nf}/"
[check.refused]
type = "tcp"
address = "127.0.0.1:{refused}"
[check.silent_tcp]
type = "tcp"
address = "127.0.0.1:{silent}"
[check.silent_http]
type = "http"
url = "http://127.0.0.1:{silent}/"
[check.banner_ok]
type = "banner"
address = "127.0.0.1:{ssh}"
expect_regex = "^SSH-2.0-"
[check.banner_bad]
type = "banner"
address = "127.0.0.1:{smtp}"
expect_regex = "^SSH-2.0-"
"#,
            ok = t.ok,
            nf = t.not_found,
            refused = t.refused,
            silent = t.silent,
            ssh = t.ssh,
            smtp = t.smtp
        ),
    );
    start_lvsmon(&mut env, "mon1", &f, &[]);
    let cases = [
        (
            "http_ok",
            "http_2xx",
            format!("http://127.0.0.1:{}/", t.ok),
            true,
        ),
        (
            "http_404",
            "http_2xx",
            format!("http://127.0.0.1:{}/", t.not_found),
            false,
        ),
        (
            "refused",
            "tcp_connect",
            format!("127.0.0.1:{}", t.refused),
            false,
        ),
        (
            "silent_tcp",
            "tcp_connect",
            format!("127.0.0.1:{}", t.silent),
            true,
        ),
        (
            "silent_http",
            "http_2xx",
            format!("http://127.0.0.1:{}/", t.silent),
            false,
        ),
        (
            "banner_ok",
            "ssh_banner",
            format!("127.0.0.1:{}", t.ssh),
            true,
        ),
        (
            "banner_bad",
            "ssh_banner",
            format!("127.0.0.1:{}", t.smtp),
            false,
        ),
    ];
    env.wait_until("every check to have a verdict", || {
        cases
            .iter()
            .all(|(c, ..)| env.get("mon1", &format!("check.{c}.status")) != "UNKNOWN")
    });
    for (check, module, target, up) in &cases {
        let theirs = blackbox_probe(bb, module, target);
        let ours = env.get("mon1", &format!("check.{check}.status")) == "UP";
        assert_eq!(
            theirs, *up,
            "blackbox_exporter on {check} ({module} {target})"
        );
        assert_eq!(
            ours, theirs,
            "lvsmon and blackbox_exporter disagree on {check}"
        );
    }
}

#[test]
fn lvsmon_and_lvsbench_print_completions_and_man_pages() {
    let env = Env::new();
    for bin in ["lvsmon", "lvsbench"] {
        let mut c = env.command(bin);
        c.args(["--completions", "bash"]);
        env.run(c).ok().stdout_has(bin);
        let mut c = env.command(bin);
        c.arg("--man");
        env.run(c).ok().stdout_has(".TH");
    }
    let mut c = env.command("lvsmon");
    c.args(["--file", "x.conf", "--interval", "soon"]);
    env.run(c)
        .expect_code(2)
        .stderr_has("--interval soon: not a duration");
}

#[test]
fn started_as_root_it_becomes_the_user_it_is_told() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: dropping root needs root (CI runs the tests as root)");
        return;
    }
    let user = "lvsmontest";
    if nix::unistd::User::from_name(user).ok().flatten().is_none() {
        let st = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ])
            .status();
        if !st.is_ok_and(|s| s.success()) {
            eprintln!("skipped: cannot create user {user} (no useradd?)");
            return;
        }
    }
    let uid = nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let mut env = Env::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let f = write(
        &env,
        "checks.conf",
        &format!("[defaults]\ninterval = \"50ms\"\nrise = 1\n[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n"),
    );
    let pid = start_lvsmon(&mut env, "mon1", &f, &["--user", user]);
    env.wait_until("the drop", || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some(&uid.to_string()))
    });
    // Still commanded (its files went to the user with it), still probing.
    env.wait_until("a UP", || env.get("mon1", "check.a.status") == "UP");
    env.shvar(&["cmd", "mon1", "checks"]).ok().stdout_has("UP");
    assert!(env
        .stderr_of("mon1")
        .contains(&format!("dropped root: now uid {uid}")));
    // ipvs actions need root: refused at start with --user.
    let f2 = write(
        &env,
        "ipvs.conf",
        &format!("[ipvsadm]\ncommand = \"/bin/true\"\n[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\nipvs = {{ service = \"10.0.0.1:80\", real = \"10.0.0.2:80\" }}\n"),
    );
    let mut c = env.command("lvsmon");
    c.args(["-n", "mon2", "--user", user, "--file"]).arg(&f2);
    env.run(c)
        .expect_code(1)
        .stderr_has("ipvs actions need root");
    drop(l);
}
