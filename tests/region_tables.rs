//! Region format 2 through real processes: a table whose rows come and go (`examples/tabled`),
//! alarm limits, and `shvar watch` on the change log.

use crate::util::Env;

/// Starts `tabled -n NAME` with `extra` arguments and waits until it is ready.
fn tabled(env: &mut Env, name: &str, extra: &[&str]) -> u32 {
    let mut c = env.example_command("tabled");
    c.args(["-n", name]).args(extra);
    let pid = env.spawn(name, c);
    env.wait_ready(name, pid);
    pid
}

fn get_a(env: &Env, var: &str) -> Vec<String> {
    let g = env.shvar(&["get", "-a", "tb", var]);
    g.ok();
    g.stdout.trim_end().split('\t').map(str::to_owned).collect()
}

#[test]
fn alarm_state_in_get_and_limits_in_dump() {
    let mut env = Env::new();
    tabled(&mut env, "tb", &[]);
    let f = get_a(&env, "temp");
    assert_eq!(f[0], "20.0", "precision 1: {f:?}");
    assert_eq!(f[2..], ["NO_ALARM", "NO_ALARM"]);
    for (v, status, severity) in [
        ("45", "HIGH", "MINOR"),
        ("60", "HIHI", "MAJOR"),
        ("10", "LOW", "MINOR"),
        ("-3.25", "LOLO", "MAJOR"),
        ("39.99", "NO_ALARM", "NO_ALARM"),
    ] {
        env.shvar(&["set", "tb", "temp", v]).ok();
        let f = get_a(&env, "temp");
        assert_eq!(f[2..], [status, severity], "temp {v}: {f:?}");
    }
    assert_eq!(get_a(&env, "temp")[0], "40.0");
    let g = env.shvar(&["get", "-a", "--json", "tb", "temp"]);
    let j: serde_json::Value = serde_json::from_str(&g.stdout).unwrap();
    assert_eq!(j["temp"]["severity"], "NO_ALARM");
    assert_eq!(j["temp"]["value"], 39.99);
    env.shvar(&["set", "tb", "temp", "50"]).ok();
    let d = env.shvar(&["dump", "tb", "temp"]);
    d.ok();
    let line = d.stdout.lines().find(|l| l.starts_with("temp ")).unwrap();
    assert!(line.contains("LOLO=0 LOW=10 HIGH=40 HIHI=60"), "{line}");
    assert!(line.contains(" 50.0 "), "{line}");
    let d = env.shvar(&["dump", "--json", "tb", "temp"]);
    let j: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    let t = &j["vars"][0];
    assert_eq!(
        (t["lolo"].as_f64(), t["hihi"].as_f64()),
        (Some(0.0), Some(60.0))
    );
    assert_eq!(
        (t["status"].as_str(), t["alarm"].as_str()),
        (Some("HIGH"), Some("MINOR"))
    );
    assert_eq!(t["prec"], 1);
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

#[test]
fn a_watcher_gets_every_value_of_a_counter_written_at_10_khz() {
    let mut env = Env::new();
    // 6.5 s of writes fit the log: the watcher keeps every value even on a loaded machine
    // (it normally follows within a millisecond; the default log holds 1.6 s at 10 kHz).
    tabled(&mut env, "tb", &["--log-cap", "65536"]);
    let mut c = env.command("shvar");
    c.args([
        "watch", "tb", "counter", "--json", "--time", "none", "--count", "20001",
    ]);
    env.spawn_capturing("watcher", c);
    // The current value comes first: from then on the watcher follows the log.
    env.wait_until("the watcher to start", || {
        env.stdout_of("watcher").lines().count() >= 1
    });
    env.shvar(&["cmd", "tb", "burst", "10000", "2"]).ok();
    assert_eq!(env.wait_exit("watcher"), 0, "{}", env.stderr_of("watcher"));
    assert_eq!(env.get_int("tb", "burst_done"), 20000);
    let lines = json_lines(&env.stdout_of("watcher"));
    assert_eq!(lines.len(), 20001);
    assert_eq!(lines[0]["current"], true);
    assert_eq!(lines[0]["value"], 0);
    let mut last_seq = 0;
    for (i, l) in lines[1..].iter().enumerate() {
        assert_eq!(l["var"], "counter");
        assert_eq!(l["value"], i as i64 + 1, "value {i} out of order: {l}");
        let seq = l["seq"].as_u64().unwrap();
        assert!(seq > last_seq || i == 0, "{l}");
        last_seq = seq;
        assert!(l.get("missed").is_none());
    }
    // Written at 10 kHz indeed: 20,000 values over about 2 s.
    let t = |l: &serde_json::Value| l["time_ns"].as_u64().unwrap() as f64 / 1e9;
    let span = t(&lines[20000]) - t(&lines[1]);
    assert!((1.9..4.0).contains(&span), "the burst took {span} s");
}

#[test]
fn a_watcher_behind_a_tiny_log_reports_exactly_what_it_missed() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mut env = Env::new();
    tabled(&mut env, "tb", &["--log-cap", "16"]);
    let mut c = env.command("shvar");
    // Every variable: then every entry of the log is either printed or counted as missed.
    c.args(["watch", "tb", "--json", "--time", "none"]);
    let pid = env.spawn_capturing("watcher", c);
    env.wait_until("the watcher to start", || {
        env.stdout_of("watcher").contains("\"burst_done\"")
    });
    // A change it sees gives the sequence number the count of missed ones starts from.
    env.shvar(&["set", "tb", "temp", "21"]).ok();
    env.wait_until("the watcher to see temp change", || {
        env.stdout_of("watcher").contains("\"value\":21.0")
    });
    // The watcher stops reading (as if the machine were busy) during the burst.
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
    env.shvar(&["cmd", "tb", "burst", "10000", "2"]).ok();
    env.wait_until("the burst to end", || {
        env.get_int("tb", "burst_done") == 20000
    });
    kill(Pid::from_raw(pid as i32), Signal::SIGCONT).unwrap();
    env.wait_until("the watcher to see the last value", || {
        json_lines(&env.stdout_of("watcher"))
            .iter()
            .any(|l| l["var"] == "counter" && l["value"] == 20000)
    });
    let lines = json_lines(&env.stdout_of("watcher"));
    let (mut missed_total, mut pending, mut last_seq, mut last_counter) =
        (0u64, 0u64, None::<u64>, 0i64);
    for l in lines.iter().filter(|l| l.get("current").is_none()) {
        if let Some(m) = l["missed"].as_u64() {
            missed_total += m;
            pending += m;
            continue;
        }
        let seq = l["seq"].as_u64().unwrap();
        if let Some(prev) = last_seq {
            assert_eq!(
                seq,
                prev + 1 + pending,
                "missed count not exact before {l} (after seq {prev})"
            );
        }
        last_seq = Some(seq);
        pending = 0;
        if l["var"] == "counter" {
            let v = l["value"].as_i64().unwrap();
            assert!(v > last_counter, "{l}");
            last_counter = v;
        }
    }
    assert!(missed_total >= 20000 - 16, "missed {missed_total}");
    assert!(lines
        .iter()
        .any(|l| l["var"] == "temp" && l["seq"].is_u64()));
    assert_eq!(last_counter, 20000);
}

#[test]
fn watch_wildcards_added_and_removed_rows_deadband_and_time_modes() {
    let mut env = Env::new();
    tabled(&mut env, "tb", &[]);
    // Rows that are not there yet: the pattern selects them when they are added.
    let mut c = env.command("shvar");
    c.args(["watch", "tb", "row.*.value", "--json", "--count", "4"]);
    env.spawn_capturing("rows", c);
    env.wait_until("the watcher to say it waits", || {
        env.stderr_of("rows")
            .contains("matches \"row.*.value\" yet")
    });
    env.shvar(&["cmd", "tb", "add", "4"]).ok();
    assert_eq!(env.wait_exit("rows"), 0, "{}", env.stderr_of("rows"));
    let lines = json_lines(&env.stdout_of("rows"));
    let names: Vec<&str> = lines.iter().map(|l| l["var"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["row.0.value", "row.1.value", "row.2.value", "row.3.value"]
    );
    assert!(lines.iter().all(|l| l["added"] == true), "{lines:?}");
    env.wait_until("the rows", || env.get_int("tb", "rows_added") == 4);

    // Retired rows are reported as removed (text lines).
    let mut c = env.command("shvar");
    c.args(["watch", "tb", "row.?.name", "--time", "none"]);
    env.spawn_capturing("names", c);
    env.wait_until("the current names", || {
        env.stdout_of("names").lines().count() == 4
    });
    env.shvar(&["cmd", "tb", "retire-odd"]).ok();
    env.wait_until("the removals", || {
        env.stdout_of("names").lines().count() == 6
    });
    let out = env.stdout_of("names");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "tb row.0.name row-0");
    assert_eq!(
        lines[4..],
        ["tb row.1.name <removed>", "tb row.3.name <removed>"]
    );
    let g = env.shvar(&["get", "tb", "row.1.name"]);
    g.expect_code(1)
        .stderr_has("variable row.1.name was removed by its owner at 20");
    env.shvar(&["set", "tb", "row.1.name", "x"])
        .expect_code(1)
        .stderr_has("no variable row.1.name (it was removed at 20");

    // Deadband: only changes of more than 1 from the last printed value; relative times.
    let mut c = env.command("shvar");
    c.args([
        "watch",
        "tb",
        "temp",
        "--deadband",
        "1",
        "--time",
        "rel",
        "--count",
        "4",
    ]);
    env.spawn_capturing("temp", c);
    env.wait_until("the current temp", || {
        env.stdout_of("temp").lines().count() == 1
    });
    for v in ["20.5", "21.5", "22", "22.4", "25", "45"] {
        env.shvar(&["set", "tb", "temp", v]).ok();
    }
    assert_eq!(env.wait_exit("temp"), 0, "{}", env.stderr_of("temp"));
    let out = env.stdout_of("temp");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split(' ').collect()).collect();
    let values: Vec<&str> = lines.iter().map(|l| l[3]).collect();
    assert_eq!(values, ["20.0", "21.5", "25.0", "45.0"], "{out}");
    assert_eq!(lines[0][0], "0.000000", "{out}");
    assert!(lines[2][0].parse::<f64>().unwrap() > 0.0, "{out}");
    // In alarm: the status and severity follow the value, as camonitor prints them.
    assert_eq!(lines[3][4..], ["HIGH", "MINOR"], "{out}");
    // Bad options are refused with what is expected.
    env.shvar(&["watch", "tb", "temp", "--deadband=-1"])
        .expect_code(2)
        .stderr_has("not a deadband");
    env.shvar(&["watch", "tb", "nosuch"])
        .expect_code(1)
        .stderr_has("tb has no variable nosuch");
}

/// Checks every row of a `shvar dump --json` output: row.K.value is K, row.K.check 7 K and
/// row.K.name "row-K" (a torn, stale or foreign value breaks one of them). Returns the rows.
fn check_rows(json: &str) -> std::collections::BTreeSet<u64> {
    let j: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
    let mut rows = std::collections::BTreeMap::<u64, u8>::new();
    for v in j["vars"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let Some(rest) = name.strip_prefix("row.") else {
            continue;
        };
        let (k, col) = rest.split_once('.').unwrap();
        let k: u64 = k.parse().unwrap();
        *rows.entry(k).or_default() += 1;
        // Retired between the dump's look at the schema and its read: said so, never a value.
        if let Some(e) = v["value"]["error"].as_str() {
            assert!(
                e.contains(&format!("{name} was removed by its owner at 20")),
                "{v}"
            );
            continue;
        }
        match col {
            "value" => assert_eq!(v["value"], k, "{v}"),
            "check" => assert_eq!(v["value"], 7 * k, "{v}"),
            "name" => assert_eq!(v["value"], format!("row-{k}"), "{v}"),
            _ => panic!("{v}"),
        }
    }
    // A dump is one reading of the schema: rows are whole.
    assert!(rows.values().all(|&n| n == 3), "{rows:?}");
    rows.into_keys().collect()
}

#[test]
fn five_thousand_rows_added_then_half_retired_while_read() {
    let mut env = Env::new();
    tabled(&mut env, "tb", &[]);
    let size0 = std::fs::metadata(env.path("tb.shv")).unwrap().len();
    env.shvar(&["cmd", "tb", "add", "5000"]).ok();
    let mut dumps = 0;
    loop {
        let added = env.get_int("tb", "rows_added");
        let d = env.shvar(&["dump", "--json", "tb", "row.*"]);
        d.ok();
        let rows = check_rows(&d.stdout);
        assert!(rows.iter().all(|&k| k < 5000));
        assert!(
            rows.len() as i64 >= added,
            "{} rows, {added} added",
            rows.len()
        );
        dumps += 1;
        if added == 5000 {
            assert_eq!(rows.len(), 5000);
            break;
        }
    }
    assert!(
        std::fs::metadata(env.path("tb.shv")).unwrap().len() > size0,
        "5,000 rows do not fit the first chunks: the file grew"
    );
    env.shvar(&["cmd", "tb", "retire-odd"]).ok();
    loop {
        let retired = env.get_int("tb", "rows_retired");
        let d = env.shvar(&["dump", "--json", "tb", "row.*"]);
        d.ok();
        let rows = check_rows(&d.stdout);
        assert!(rows.len() as i64 <= 5000 - retired);
        // A get of one row while rows around it go.
        let g = env.shvar(&["get", "tb", "row.4998.check"]);
        assert_eq!(g.stdout, "34986\n");
        dumps += 1;
        if retired == 2500 {
            assert_eq!(rows.len(), 2500);
            assert!(rows.iter().all(|k| k % 2 == 0));
            break;
        }
    }
    // New rows reuse the freed slots while readers read.
    let size1 = std::fs::metadata(env.path("tb.shv")).unwrap().len();
    env.shvar(&["cmd", "tb", "add", "2000"]).ok();
    loop {
        let added = env.get_int("tb", "rows_added");
        let d = env.shvar(&["dump", "--json", "tb", "row.*"]);
        d.ok();
        let rows = check_rows(&d.stdout);
        dumps += 1;
        if added == 7000 {
            assert_eq!(rows.len(), 4500);
            break;
        }
    }
    let g = env.shvar(&["get", "tb", "row.*.value"]);
    g.ok();
    assert_eq!(g.stdout.lines().count(), 4500);
    let l = env.shvar(&["list", "--json"]);
    l.ok();
    let d = env.shvar(&["dump", "tb", "--table", "row"]);
    d.ok();
    assert_eq!(
        d.stdout.lines().count(),
        4501,
        "a head line and a line per row"
    );
    // The slots of the 2,500 retired rows were taken again: the data did not grow for them
    // (only the schema, which keeps its lines, may have).
    let size2 = std::fs::metadata(env.path("tb.shv")).unwrap().len();
    assert!(
        size2 - size1 < 2000 * 3 * 24,
        "grew by {} bytes",
        size2 - size1
    );
    eprintln!("{dumps} dumps while the table changed");
}

#[test]
fn spyctl_watch_takes_the_options_of_shvar_watch() {
    let mut env = Env::new();
    tabled(&mut env, "tb", &[]);
    env.shvar(&["cmd", "tb", "add", "3"]).ok();
    env.wait_until("the rows", || env.get_int("tb", "rows_added") == 3);
    let mut c = env.command("spyctl");
    c.args([
        "-n",
        "tb",
        "-c",
        "watch row.?.check --json --time none --count 3",
    ]);
    let o = env.run(c);
    o.ok();
    let lines = json_lines(&o.stdout);
    let got: Vec<(&str, i64)> = lines
        .iter()
        .map(|l| (l["var"].as_str().unwrap(), l["value"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        got,
        [("row.0.check", 0), ("row.1.check", 7), ("row.2.check", 14)]
    );
    assert!(lines.iter().all(|l| l.get("process").is_none()));
    let mut c = env.command("spyctl");
    c.args(["-n", "tb", "-c", "watch --deadband nope"]);
    env.run(c).expect_code(1).stderr_has("not a deadband");
}

#[test]
fn a_watcher_that_missed_additions_and_retirements_catches_up_from_the_schema() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mut env = Env::new();
    tabled(&mut env, "tb", &["--log-cap", "16"]);
    env.shvar(&["cmd", "tb", "add", "2"]).ok();
    env.wait_until("the rows", || env.get_int("tb", "rows_added") == 2);
    let mut c = env.command("shvar");
    c.args(["watch", "tb", "row.*.value", "--json", "--time", "none"]);
    let pid = env.spawn_capturing("watcher", c);
    env.wait_until("the watcher to start", || {
        env.stdout_of("watcher").lines().count() == 2
    });
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
    // 10 rows (30 variables, 40 log entries) come and row 1 goes while it does not read.
    env.shvar(&["cmd", "tb", "add", "10"]).ok();
    env.wait_until("the rows", || env.get_int("tb", "rows_added") == 12);
    env.shvar(&["cmd", "tb", "retire-odd"]).ok();
    env.wait_until("the retirements", || env.get_int("tb", "rows_retired") == 6);
    kill(Pid::from_raw(pid as i32), Signal::SIGCONT).unwrap();
    let want: Vec<String> = (2..12)
        .filter(|k| k % 2 == 0)
        .map(|k| format!("row.{k}.value"))
        .collect();
    env.wait_until("the watcher to catch up", || {
        let out = env.stdout_of("watcher");
        want.iter().all(|w| out.contains(w.as_str())) && out.contains("\"removed\":true")
    });
    let lines = json_lines(&env.stdout_of("watcher"));
    assert!(lines
        .iter()
        .any(|l| l["missed"].as_u64().is_some_and(|m| m > 0)));
    // row.1 was being watched: its removal is reported, with when.
    let removed: Vec<&serde_json::Value> = lines.iter().filter(|l| l["removed"] == true).collect();
    assert_eq!(removed.len(), 1, "{lines:?}");
    assert_eq!(removed[0]["var"], "row.1.value");
    assert!(removed[0]["time_ns"].as_u64().unwrap() > 0);
    for l in lines.iter().filter(|l| l["added"] == true) {
        let k: u64 = l["var"].as_str().unwrap()[4..]
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(l["value"], k, "{l}");
        assert_eq!(
            k % 2,
            0,
            "an odd row was retired before the watcher looked: {l}"
        );
    }
}
