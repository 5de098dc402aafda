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
    assert_eq!((t["lolo"].as_f64(), t["hihi"].as_f64()), (Some(0.0), Some(60.0)));
    assert_eq!((t["status"].as_str(), t["alarm"].as_str()), (Some("HIGH"), Some("MINOR")));
    assert_eq!(t["prec"], 1);
}
