//! `shvar`'s verbs and output formats.

use std::fs;

use crate::util::Env;

#[test]
fn list_dump_get_json() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init", "-c", "set label hello"]);
    env.ticker("t2", &[]);
    let l = env.shvar(&["list", "--json"]);
    l.ok();
    let v: serde_json::Value = serde_json::from_str(&l.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["name"], "t1");
    assert_eq!(arr[0]["status"], "alive");
    assert_eq!(arr[0]["runstate"], "INIT_STATE");
    assert!(arr[0]["heartbeat_age"].as_f64().unwrap() < 5.0);

    let d = env.shvar(&["dump", "t1"]);
    d.ok()
        .stdout_has("t1 (pid ")
        .stdout_has("rate")
        .stdout_has("R/W")
        .stdout_has("Ticks per second while RUNNING_STATE");
    let row = d.stdout.lines().find(|l| l.starts_with("rate ")).unwrap();
    assert!(
        row.contains("INTEGER") && row.contains("10") && row.contains("Hz"),
        "{row}"
    );

    let dj = env.shvar(&["dump", "--json", "t1"]);
    dj.ok();
    let v: serde_json::Value = serde_json::from_str(&dj.stdout).unwrap();
    let label = v["vars"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "label")
        .unwrap();
    assert_eq!(label["value"], "hello");
    assert_eq!(label["type"], "STRING");

    let g = env.shvar(&["get", "t1", "runstate", "rate", "label"]);
    g.ok();
    assert_eq!(g.stdout, "INIT_STATE\n10\nhello\n");
    let g = env.shvar(&["get", "--raw", "t1", "runstate"]);
    assert_eq!(g.stdout, "1\n");
    let g = env.shvar(&["get", "-a", "t1", "rate"]);
    let f: Vec<&str> = g.stdout.trim_end().split('\t').collect();
    let [val, time, status, severity] = f[..] else {
        panic!("{}", g.stdout)
    };
    assert_eq!(val, "10");
    assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");
    assert_eq!((status, severity), ("NO_ALARM", "NO_ALARM"));
    let g = env.shvar(&["get", "--json", "t1", "rate", "runstate"]);
    let v: serde_json::Value = serde_json::from_str(&g.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"rate": 10, "runstate": "INIT_STATE"}));
}

#[test]
fn watch_prints_changes_with_timestamps() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init", "-c", "set rate 100", "-c", "start"]);
    let o = env.shvar(&["watch", "t1", "ticks", "--count", "5", "--interval", "0.05"]);
    o.ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", o.stdout);
    let mut last = -1;
    for l in lines {
        let parts: Vec<&str> = l.split(' ').collect();
        assert_eq!(parts.len(), 4, "{l}");
        assert!(parts[0].ends_with('Z'));
        assert_eq!(&parts[1..3], ["t1", "ticks"]);
        let v: i64 = parts[3].parse().unwrap();
        assert!(v > last, "{v} after {last}");
        last = v;
    }
    env.shvar(&["watch", "t1", "nosuch"])
        .expect_code(1)
        .stderr_has("t1 has no variable nosuch");
}

#[test]
fn cmd_no_wait_and_exit_codes() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    env.shvar(&["cmd", "--no-wait", "t1", "init"]).ok();
    env.wait_until("init", || env.get("t1", "runstate") == "INIT_STATE");
    // Usage errors exit 2.
    env.shvar(&["get", "t1"]).expect_code(2);
    env.shvar(&["frob"]).expect_code(2);
    env.shvar(&["-w", "-1", "cmd", "t1", "status"])
        .expect_code(2);
}

#[test]
fn cleanup_removes_only_dead_processes() {
    let mut env = Env::new();
    env.ticker("live", &[]);
    env.ticker("dead", &[]);
    env.kill9("dead");
    // A reply FIFO left by a client that died (pid 1 is never ours, use an impossible pid).
    fs::write(env.path("x.999999999.0.reply"), "").unwrap();
    let o = env.shvar(&["cleanup", "--dry-run"]);
    o.ok().stdout_has("would remove");
    assert!(env.path("dead.shv").exists());
    let o = env.shvar(&["cleanup"]);
    o.ok().stdout_has("kept 1 live process");
    assert!(!env.path("dead.shv").exists());
    assert!(!env.path("dead.ctl").exists());
    assert!(
        !env.path("dead.sock").exists(),
        "the dead process's control socket was left"
    );
    assert!(env.path("live.sock").exists());
    assert!(!env.path("x.999999999.0.reply").exists());
    assert!(env.path("live.shv").exists());
    env.shvar(&["cmd", "live", "status"]).ok();
}

#[test]
fn watch_follows_a_restart() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let mut c = env.command("shvar");
    c.args(["watch", "t1", "pid", "--interval", "0.05"]);
    env.spawn("watcher", c);
    std::thread::sleep(std::time::Duration::from_millis(300));
    env.kill9("t1");
    let pid2 = env.ticker("t1", &[]);
    env.wait_until("the watcher to notice the restart", || {
        env.stderr_of("watcher")
            .contains(&format!("t1 restarted (pid {pid2})"))
    });
}

#[test]
fn watch_stops_when_the_restarted_process_lacks_the_variable() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let mut c = env.command("shvar");
    c.args(["watch", "t1", "ticks", "--interval", "0.05"]);
    env.spawn("watcher", c);
    std::thread::sleep(std::time::Duration::from_millis(300));
    env.kill9("t1");
    // Another kind of process takes the name: it has no `ticks`.
    let mut f = env.command("farmspydaemon");
    f.args(["-n", "t1"]);
    let pid2 = env.spawn("t1", f);
    env.wait_ready("t1", pid2);
    assert_eq!(env.wait_exit("watcher"), 1);
    let err = env.stderr_of("watcher");
    assert!(
        err.contains(&format!(
            "t1 restarted (pid {pid2}): t1 has no variable ticks"
        )),
        "{err}"
    );
    assert!(err.contains("`shvar list t1`"), "{err}");
}

#[test]
fn long_values_keep_the_dump_a_table_and_json_whole() {
    let mut env = Env::new();
    let long = "x".repeat(60);
    env.ticker("t1", &["-c", &format!("set label {long}")]);
    // An error with a long text lands in lasterror.
    env.shvar(&["cmd", "t1", "set", "rate", &"9".repeat(80)])
        .expect_code(1);
    let d = env.shvar(&["dump", "t1"]);
    d.ok();
    let header = d.stdout.lines().find(|l| l.starts_with("NAME ")).unwrap();
    let unit_col = header.find("UNIT").unwrap();
    for name in ["label", "lasterror", "rate"] {
        let row = d
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap();
        let cut = row.chars().take(unit_col).collect::<String>();
        assert!(
            !cut.contains("x".repeat(41).as_str()),
            "the value of {name} spills into the next column:\n{row}"
        );
    }
    let label = d.stdout.lines().find(|l| l.starts_with("label ")).unwrap();
    assert!(label.contains(&format!("{}…", "x".repeat(39))), "{label}");
    let j = env.shvar(&["dump", "--json", "t1"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let l = v["vars"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "label")
        .unwrap();
    assert_eq!(l["value"], serde_json::json!(long));
}

#[test]
fn durations_are_read_alike_everywhere() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    env.shvar(&["-w", "500ms", "cmd", "t1", "status"]).ok();
    env.shvar(&["cmd", "-w", "2s", "t1", "status"]).ok();
    env.shvar(&["set", "-w", "1.5", "t1", "rate", "20"]).ok();
    env.shvar(&["watch", "t1", "rate", "--count", "1", "--interval", "50ms"])
        .ok()
        .stdout_has("rate 20");
    env.shvar(&["-w", "soon", "cmd", "t1", "status"])
        .expect_code(2)
        .stderr_has("is not a positive duration");
    // -w belongs to the verbs that wait.
    let h = env.shvar(&["list", "--help"]);
    h.ok();
    assert!(!h.stdout.contains("--wait"), "{}", h.stdout);
    env.shvar(&["export", "--json"])
        .ok()
        .stdout_has("\"processes\"");
}

/// Structured names: wildcards in get and dump, a table as a table, nested JSON, and spyctl's
/// get and vars with the same patterns. isectd's worker rows are the table.
#[test]
fn wildcards_tables_and_nested_json_over_structured_names() {
    let mut env = Env::new();
    let mut c = env.command("isectd");
    c.args([
        "-n",
        "isd1",
        "-c",
        "config service s",
        "-c",
        "config worker s localhost /bin/sleep 1000",
        "-c",
        "clone 1",
    ]);
    let pid = env.spawn("isd1", c);
    env.wait_ready("isd1", pid);
    // Its start-up commands run after it is published: one round trip comes after them.
    env.shvar(&["cmd", "isd1", "status"]).ok();
    let g = env.shvar(&["get", "isd1", "worker.*.state"]);
    g.ok();
    let lines: Vec<&str> = g.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", g.stdout);
    assert!(
        lines[0].starts_with("worker.1.state\t") && lines[1].starts_with("worker.2.state\t"),
        "{}",
        g.stdout
    );
    env.shvar(&["get", "isd1", "nosuch.*"])
        .expect_code(1)
        .stderr_has("no variable of isd1 matches \"nosuch.*\"");
    // A plain name still prints its value alone.
    assert_eq!(
        env.get("isd1", "worker.2.state"),
        lines[1].split('\t').nth(1).unwrap()
    );
    let j = env.shvar(&["get", "--json", "isd1", "worker.*.pid", "ServiceList"]);
    j.ok();
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert!(
        v["worker"]["1"]["pid"].is_i64() && v["worker"]["2"]["pid"].is_i64(),
        "{v}"
    );
    assert!(v["ServiceList"].is_i64(), "{v}");
    let d = env.shvar(&["dump", "isd1", "worker.2.*"]);
    d.ok();
    assert!(
        d.stdout.lines().skip(2).all(|l| l.starts_with("worker.2.")),
        "{}",
        d.stdout
    );
    let t = env.shvar(&["dump", "isd1", "--table", "worker"]);
    t.ok();
    let tl: Vec<&str> = t.stdout.lines().collect();
    assert!(
        tl[0].starts_with("WORKER") && tl[0].contains("STATE") && tl[0].contains("PID"),
        "{}",
        t.stdout
    );
    assert!(
        tl[1].starts_with("1 ") && tl[2].starts_with("2 ") && tl.len() == 3,
        "{}",
        t.stdout
    );
    env.shvar(&["dump", "isd1", "--table", "nosuch"])
        .expect_code(1)
        .stderr_has("has no table \"nosuch\"");
    let dj = env.shvar(&["dump", "--json", "isd1"]);
    let v: serde_json::Value = serde_json::from_str(&dj.stdout).unwrap();
    assert!(
        v["values"]["worker"]["2"]["state"].is_string(),
        "{}",
        dj.stdout
    );
    let mut c = env.command("spyctl");
    c.args(["-n", "isd1", "get", "worker.*.state"]);
    let o = env.run(c);
    o.ok();
    assert_eq!(o.stdout.lines().count(), 2, "{}", o.stdout);
    let mut c = env.command("spyctl");
    c.args(["-n", "isd1", "vars", "worker.1.*"]);
    let o = env.run(c);
    o.ok();
    assert!(
        o.stdout.lines().skip(1).all(|l| l.starts_with("worker.1.")),
        "{}",
        o.stdout
    );
}

/// `shvar` defines its own C `main` (`shvars::lean`, for a fast cold start): what Rust's
/// runtime did for it must still hold. Started with its standard descriptors closed it writes
/// into no file or socket it opens, and its exit statuses come through as they are (status 3:
/// `hostile::get_of_a_dead_process_says_so_and_exits_3`; the descriptors that are reopened on
/// /dev/null: `ecosystem::serve_started_with_standard_error_closed_still_serves`).
#[test]
fn shvar_with_closed_standard_descriptors_writes_into_no_file() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let region = env.path("t1.shv");
    let before = fs::read(&region).unwrap().len();
    // Standard output closed: the control connection `cmd` opens would get descriptor 1, and
    // its printed reply would go back into the socket as a request.
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(r#"exec 1>&-; "$0" cmd t1 status; echo "cmd $?" >&2; exec 0<&-; "$0" get t1 runstate; echo "get $?" >&2; "$0" get t1 nosuchvar 2>/dev/null; echo "missing $?" >&2"#)
        .arg(crate::util::bin("shvar"))
        .env("SHVAR_DIR", env.dir());
    let o = env.run(c);
    assert_eq!(o.stderr.trim(), "cmd 0\nget 0\nmissing 1", "{o:?}");
    assert_eq!(fs::read(&region).unwrap().len(), before);
    // One more round trip, so anything the first one sent back would have been read by now.
    env.shvar(&["cmd", "t1", "status"]).ok();
    assert_eq!(env.get_int("t1", "ctlerrors"), 0, "t1 was sent junk");
    env.shvar(&["get", "t1", "runstate"])
        .ok()
        .stdout_has("INIT_STATE");
}
