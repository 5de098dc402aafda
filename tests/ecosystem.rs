//! The operator's ecosystem: `shvar export` checked by the real `promtool`, `shvar serve`
//! scraped over HTTP, and the systemd notifications of a `Type=notify` unit, received on a
//! socket of the test's own.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{free_port, Env, Out};

/// Runs `promtool check metrics` on `text`. Fails the test if promtool is missing: CI installs
/// it (Debian package `prometheus`), and a skipped check would hide a broken exporter.
fn promtool_check(text: &str) -> Out {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install it with \
                 `apt-get install --no-install-recommends prometheus` (.ci/run does)"
            )
        });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Three tickers: t1 running, t2 initialised, t3 killed with SIGKILL (stale).
fn three_tickers(env: &mut Env) -> (u32, u32) {
    let p1 = env.ticker("t1", &["-c", "init", "-c", "start"]);
    let p2 = env.ticker("t2", &["-c", "init"]);
    env.ticker("t3", &[]);
    env.kill9("t3");
    env.wait_until("t1 to tick", || env.get_int("t1", "ticks") > 0);
    (p1, p2)
}

/// The series of an exposition, without values: `name{labels}`, in order.
fn series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            l.rsplit_once(' ')
                .expect("sample line has a value")
                .0
                .to_owned()
        })
        .collect()
}

fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(str::to_owned)
        .collect()
}

fn value_of(text: &str, series_name: &str) -> String {
    let prefix = format!("{series_name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no sample {series_name} in:\n{text}"))
        .to_owned()
}

#[test]
fn export_prometheus_passes_promtool() {
    let mut env = Env::new();
    let (p1, p2) = three_tickers(&mut env);
    let out = env.shvar(&["export", "--format", "prometheus"]);
    out.ok();
    let text = &out.stdout;

    let check = promtool_check(text);
    assert_eq!(
        (check.code, check.stdout.as_str(), check.stderr.as_str()),
        (0, "", ""),
        "promtool check metrics found problems in:\n{text}"
    );

    // Liveness of every process, the stale one included.
    assert_eq!(value_of(text, r#"shvar_up{process="t1"}"#), "1");
    assert_eq!(value_of(text, r#"shvar_up{process="t2"}"#), "1");
    assert_eq!(value_of(text, r#"shvar_up{process="t3"}"#), "0");
    let age: f64 = value_of(text, r#"shvar_heartbeat_age_seconds{process="t1"}"#)
        .parse()
        .unwrap();
    assert!((0.0..60.0).contains(&age), "heartbeat age {age}");
    // The stale process has no variables.
    assert!(!text.contains(r#"{process="t3",state="#), "{text}");
    assert!(!text.contains(r#"shvar_pid{process="t3"}"#), "{text}");

    // Real values, as `shvar get` reads them.
    assert_eq!(value_of(text, r#"shvar_pid{process="t1"}"#), p1.to_string());
    assert_eq!(value_of(text, r#"shvar_pid{process="t2"}"#), p2.to_string());
    assert_eq!(
        value_of(text, r#"shvar_ticker_target_rate_hertz{process="t1"}"#),
        env.get_int("t1", "rate").to_string()
    );
    let ticks: i64 = value_of(text, r#"shvar_ticks_total{process="t1"}"#)
        .parse()
        .unwrap();
    assert!(ticks > 0 && ticks <= env.get_int("t1", "ticks"));

    // Enums as state sets: 1 for the current label, 0 for the others.
    assert_eq!(
        value_of(
            text,
            r#"shvar_runstate{process="t1",state="RUNNING_STATE"}"#
        ),
        "1"
    );
    assert_eq!(
        value_of(text, r#"shvar_runstate{process="t1",state="INIT_STATE"}"#),
        "0"
    );
    assert_eq!(
        value_of(text, r#"shvar_runstate{process="t2",state="INIT_STATE"}"#),
        "1"
    );
    assert_eq!(
        value_of(
            text,
            r#"shvar_runstate{process="t2",state="RUNNING_STATE"}"#
        ),
        "0"
    );

    // One HELP and TYPE per family, the samples of both processes under it; strings left out.
    let fams = families(text);
    let unique: BTreeSet<_> = fams.iter().collect();
    assert_eq!(
        unique.len(),
        fams.len(),
        "a family declared twice: {fams:?}"
    );
    assert!(fams.contains(&"shvar_ticks_total counter".to_owned()));
    assert!(fams.contains(&"shvar_runstate gauge".to_owned()));
    assert!(fams.contains(&"shvar_ticker_target_rate_hertz gauge".to_owned()));
    // Base units, as exporters name them: CPU and elapsed time in seconds, bytes in one
    // counter, timestamps as such.
    for f in [
        "shvar_sg_cpu_seconds_total counter",
        "shvar_sg_seconds_total counter",
        "shvar_sg_bytes_total counter",
        "shvar_sl_cpu_seconds gauge",
        "shvar_started_timestamp_seconds gauge",
        "shvar_sg_update_timestamp_seconds gauge",
    ] {
        assert!(fams.contains(&f.to_owned()), "no family {f}: {fams:?}");
    }
    assert!(!text.contains("gbytes"), "{text}");
    assert!(!text.contains("shvar_sg_cpu_total"), "{text}");
    assert!(text.contains("# HELP shvar_ticks_total Ticks counted since the last start\n"));
    assert!(!text.contains("lastcmd") && !text.contains("shvar_label"));
    let ticks_lines: Vec<_> = text
        .lines()
        .skip_while(|l| !l.starts_with("# TYPE shvar_ticks_total"))
        .skip(1)
        .take(2)
        .collect();
    assert!(
        ticks_lines[0].starts_with(r#"shvar_ticks_total{process="t1"}"#)
            && ticks_lines[1].starts_with(r#"shvar_ticks_total{process="t2"}"#),
        "{ticks_lines:?}"
    );
}

#[test]
fn export_json_has_the_same_data() {
    let mut env = Env::new();
    let (p1, _) = three_tickers(&mut env);
    let out = env.shvar(&["export", "--format", "json"]);
    out.ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let procs = v["processes"].as_array().unwrap();
    let names: Vec<_> = procs
        .iter()
        .map(|p| p["process"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["t1", "t2", "t3"]);
    let t1 = &procs[0];
    assert_eq!(t1["up"], true);
    assert_eq!(t1["pid"], p1);
    let vars = t1["variables"].as_array().unwrap();
    let find = |n: &str| vars.iter().find(|x| x["name"] == n).unwrap();
    assert_eq!(find("ticks")["kind"], "counter");
    assert_eq!(find("ticks")["metric"], "shvar_ticks_total");
    assert_eq!(find("runstate")["kind"], "stateset");
    assert_eq!(find("runstate")["label"], "RUNNING_STATE");
    assert_eq!(find("rate")["value"], 10);
    assert!(vars.iter().all(|x| x["name"] != "lastcmd"));
    assert_eq!(procs[2]["up"], false);
    assert_eq!(procs[2]["status"], "stale");
    assert_eq!(procs[2]["variables"].as_array().unwrap().len(), 0);
}

/// `GET path` over HTTP/1.0; returns (status code, head, body).
fn http_get(port: u16, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (code, head.to_owned(), body.to_owned())
}

/// `shvar` has its own C `main` (`shvars::lean`, for a fast cold start), which must still do
/// what Rust's runtime did: started with its standard error closed, the listening socket must
/// not become descriptor 2 (its start-up line would be written into the listener, fail, and
/// end the server).
#[test]
fn serve_started_with_standard_error_closed_still_serves() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let port = free_port();
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(r#"exec 2>&-; exec "$0" serve --listen "127.0.0.1:$1""#)
        .arg(crate::util::bin("shvar"))
        .arg(port.to_string())
        .env("SHVAR_DIR", env.dir());
    env.spawn("serve", c);
    env.wait_until("shvar serve to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (code, _, body) = http_get(port, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert_eq!(value_of(&body, r#"shvar_up{process="t1"}"#), "1");
}

#[test]
fn serve_answers_scrapes_with_a_fresh_export() {
    let mut env = Env::new();
    three_tickers(&mut env);
    let port = free_port();
    let mut c = env.command("shvar");
    c.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    env.spawn("serve", c);
    env.wait_until("shvar serve to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let (code, head, body) = http_get(port, "/metrics");
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let check = promtool_check(&body);
    assert_eq!(
        (check.code, check.stdout.as_str(), check.stderr.as_str()),
        (0, "", "")
    );
    let export = env.shvar(&["export"]);
    export.ok();
    assert_eq!(families(&body), families(&export.stdout));
    assert_eq!(series(&body), series(&export.stdout));
    assert!(series(&body).contains(&r#"shvar_up{process="t3"}"#.to_owned()));

    // Each scrape reads afresh: a process started now shows up at the next one.
    env.ticker("t4", &["-c", "init"]);
    let (_, _, body2) = http_get(port, "/metrics");
    assert_eq!(value_of(&body2, r#"shvar_up{process="t4"}"#), "1");
    assert_eq!(
        value_of(&body2, r#"shvar_runstate{process="t4",state="INIT_STATE"}"#),
        "1"
    );
    env.shvar(&["cmd", "t1", "pause"]).ok();
    let (_, _, body3) = http_get(port, "/metrics");
    assert_eq!(
        value_of(
            &body3,
            r#"shvar_runstate{process="t1",state="PAUSE_STATE"}"#
        ),
        "1"
    );

    let (code, _, body) = http_get(port, "/");
    assert_eq!(code, 200);
    assert!(body.contains("/metrics"), "{body}");
    let (code, _, _) = http_get(port, "/nothing-here");
    assert_eq!(code, 404);
}

#[test]
fn serve_refuses_bad_listen_addresses() {
    let env = Env::new();
    env.shvar(&["serve", "--listen", "nonsense"])
        .expect_code(2)
        .stderr_has("'nonsense'")
        .stderr_has("is not an address: give HOST:PORT");
    env.shvar(&["serve", "--listen", "1.2.3.4:99999"])
        .expect_code(2)
        .stderr_has("port \"99999\" is not a number from 0 to 65535");
    // Parsable, but the port is taken.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    env.shvar(&["serve", "--listen", &addr.to_string()])
        .expect_code(1)
        .stderr_has(&format!("cannot listen on {addr}"))
        .stderr_has("choose another port");
}

/// Collects the notifications arriving on `sock` until `done` says so (at most 20 s).
fn notifications(
    sock: &UnixDatagram,
    mut step: impl FnMut(&[String]),
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got: Vec<String> = Vec::new();
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while !done(&got) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out; notifications so far: {got:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            got.extend(text.lines().map(str::to_owned));
        }
        step(&got);
    }
    got
}

/// Starts ticker NAME as systemd would: notifications to `sock_path`, and the watchdog
/// variables given in `watchdog` (none inherited from the test's environment). Waits until it
/// is ready (its control FIFO exists) if `wait` is set.
fn start_ticker_under_systemd(
    env: &mut Env,
    name: &str,
    sock_path: &Path,
    watchdog: &[(&str, &str)],
    wait: bool,
) {
    let mut c = env.command("ticker");
    c.args(["-n", name, "-c", "init"])
        .env("NOTIFY_SOCKET", sock_path)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .envs(watchdog.iter().copied());
    let pid = env.spawn(name, c);
    if wait {
        env.wait_ready(name, pid);
    }
}

#[test]
fn systemd_notify_ready_status_stopping() {
    let mut env = Env::new();
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // Not waiting for the FIFO here: READY=1 itself must come only once it is up.
    start_ticker_under_systemd(&mut env, "t1", &sock_path, &[], false);

    let fifo = env.path("t1.ctl");
    let mut sent = 0;
    let got = notifications(
        &sock,
        |got| {
            if got.last().map(String::as_str) == Some("READY=1") {
                // READY=1 comes once the control FIFO is up.
                assert!(fifo.exists(), "READY=1 before {} exists", fifo.display());
            }
            let want = got.len();
            let cmds = ["start", "pause", "exit"];
            // One command after each expected notification, so the order is the process's.
            if sent < cmds.len() && want == 2 + sent {
                env.shvar(&["cmd", "t1", cmds[sent]]).ok();
                sent += 1;
            }
        },
        |got| got.iter().any(|l| l == "STOPPING=1"),
    );
    assert_eq!(
        got,
        [
            "STATUS=INIT_STATE",
            "READY=1",
            "STATUS=RUNNING_STATE",
            "STATUS=PAUSE_STATE",
            "STOPPING=1"
        ]
    );
    assert_eq!(env.wait_exit("t1"), 0);
}

#[test]
fn systemd_watchdog_pings_from_the_main_loop() {
    let mut env = Env::new();
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    start_ticker_under_systemd(
        &mut env,
        "t1",
        &sock_path,
        &[("WATCHDOG_USEC", "400000")],
        true,
    );
    let got = notifications(
        &sock,
        |_| {},
        |got| got.iter().filter(|l| *l == "WATCHDOG=1").count() >= 3,
    );
    assert_eq!(got[..2], ["STATUS=INIT_STATE", "READY=1"], "{got:?}");
    assert!(
        got[2..].iter().all(|l| l == "WATCHDOG=1"),
        "only watchdog pings expected: {got:?}"
    );
    env.shvar(&["cmd", "t1", "exit"]).ok();
    // Drain t1's last pings, up to its goodbye.
    let rest = notifications(&sock, |_| {}, |got| got.iter().any(|l| l == "STOPPING=1"));
    assert!(
        rest[..rest.len() - 1].iter().all(|l| l == "WATCHDOG=1"),
        "{rest:?}"
    );
    assert_eq!(env.wait_exit("t1"), 0);

    // A watchdog meant for another pid (WATCHDOG_PID) is not this process's business.
    start_ticker_under_systemd(
        &mut env,
        "t2",
        &sock_path,
        &[("WATCHDOG_USEC", "400000"), ("WATCHDOG_PID", "1")],
        true,
    );
    // Many watchdog intervals of main loop beats.
    let hb = env.get_int("t2", "heartbeat");
    env.wait_until("t2 to beat 10 times", || {
        env.get_int("t2", "heartbeat") >= hb + 10
    });
    env.shvar(&["cmd", "t2", "exit"]).ok();
    let got = notifications(&sock, |_| {}, |got| got.iter().any(|l| l == "STOPPING=1"));
    assert_eq!(got, ["STATUS=INIT_STATE", "READY=1", "STOPPING=1"]);
    assert_eq!(env.wait_exit("t2"), 0);
}

/// Reads one HTTP response with a Content-Length from a kept-alive connection.
fn read_response(r: &mut std::io::BufReader<TcpStream>) -> (String, String) {
    use std::io::BufRead;
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a Content-Length");
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[test]
fn serve_keeps_http11_connections_alive() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let port = free_port();
    let mut c = env.command("shvar");
    c.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    env.spawn("serve", c);
    env.wait_until("shvar serve to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = std::io::BufReader::new(s);
    // Three scrapes on one connection, the last two sent before reading (pipelined).
    write!(w, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut r);
    assert!(head.contains("Connection: keep-alive"), "{head}");
    assert!(body.contains(r#"shvar_up{process="t1"} 1"#), "{body}");
    write!(w, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let (_, page) = read_response(&mut r);
    assert!(page.contains("/metrics"), "{page}");
    let (head, _) = read_response(&mut r);
    assert!(head.contains("Connection: close"), "{head}");
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "the connection closes after Connection: close");
}

/// A real Prometheus server (from the package that has promtool) scrapes `shvar serve`, and the
/// names arrive as exporters name them.
#[test]
fn a_real_prometheus_scrapes_shvar_serve() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init", "-c", "start"]);
    let port = free_port();
    let mut c = env.command("shvar");
    c.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    env.spawn("serve", c);
    let prom_port = free_port();
    let cfg = env.path("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: shvar\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let mut p = std::process::Command::new("prometheus");
    p.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            env.path("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdin(std::process::Stdio::null());
    env.spawn("prometheus", p);
    let query = |q: &str| -> String {
        match TcpStream::connect(("127.0.0.1", prom_port)) {
            Ok(_) => http_get(prom_port, &format!("/api/v1/query?query={q}")).2,
            Err(_) => String::new(),
        }
    };
    env.wait_until("Prometheus to have scraped t1", || {
        query("shvar_up").contains(r#""process":"t1""#)
    });
    for name in [
        "shvar_ticks_total",
        "shvar_sg_cpu_seconds_total",
        "shvar_sg_bytes_total",
        "shvar_started_timestamp_seconds",
        "shvar_ticker_target_rate_hertz",
    ] {
        env.wait_until(&format!("{name} in Prometheus"), || {
            let r = query(name);
            r.contains(r#""status":"success""#) && r.contains(r#""process":"t1""#)
        });
    }
    let started = query("shvar_started_timestamp_seconds");
    assert!(
        started.contains(&format!(r#""{}"#, env.get_int("t1", "started"))),
        "{started}"
    );
}
