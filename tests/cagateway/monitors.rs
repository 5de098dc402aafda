//! Monitors through the gateway (pyepics and caproto): every change of a 1 kHz counter, string
//! changes, reconnection when the owner restarts, processes that come and go.

use super::*;

/// Follows a PV with pyepics; prints every value received on a line of its own.
const MONITOR_PY: &str = r#"
import sys, time, epics
pv = epics.PV(sys.argv[1], auto_monitor=True,
              callback=lambda value=None, **kw: print('v', int(value), flush=True))
if not pv.wait_for_connection(10):
    print('not connected'); sys.exit(3)
print('connected', flush=True)
while True:
    time.sleep(1)
"#;

fn monitored(env: &Env, label: &str) -> Vec<i64> {
    env.stdout_of(label)
        .lines()
        .filter_map(|l| l.strip_prefix("v "))
        .filter_map(|v| v.parse().ok())
        .collect()
}

#[test]
fn monitor_follows_a_counter_written_at_1khz() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    env.shvar(&["set", "t1", "rate", "1000"]).ok();
    let gw = start_gateway(&mut env, "ca1", &[]);
    gw.wait_serving(&env, 2);
    let mut c = gw.client(&env, PYTHON);
    c.arg("-c").arg(MONITOR_PY).arg("t1:ticks");
    env.spawn_capturing("mon", c);
    env.wait_until("the monitor to connect", || {
        env.stdout_of("mon").contains("connected")
    });
    // Two seconds' worth of ticks, then the counter stops: its last value must arrive.
    env.shvar(&["cmd", "t1", "start"]).ok();
    env.wait_until("2000 ticks", || env.get_int("t1", "ticks") >= 2000);
    env.shvar(&["cmd", "t1", "pause"]).ok();
    // (A tick the ticker was counting as it paused may land just after: read it each time.)
    env.wait_until("the last value", || {
        monitored(&env, "mon").last() == Some(&env.get_int("t1", "ticks"))
    });
    let last = env.get_int("t1", "ticks");
    let vals = monitored(&env, "mon");
    assert!(
        vals.windows(2).all(|w| w[0] < w[1]),
        "updates come in order, each once"
    );
    // Every change: the gateway reads the ticker's change log, so no increment is lost
    // between two of its ticks, however the scheduler holds it back.
    let changes = vals.iter().filter(|v| **v > 0).count() as i64;
    let first = vals.iter().copied().find(|v| *v > 0).unwrap_or(1);
    let expected = last - first + 1;
    assert_eq!(
        changes, expected,
        "received {changes} of {expected} changes: {vals:?}"
    );
    assert!(env.get_int("ca1", "updates") >= changes);
}

#[test]
fn caproto_monitor_sees_string_changes_and_the_gateway_counts_it() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let gw = start_gateway(&mut env, "ca1", &[]);
    gw.wait_serving(&env, 2);
    let mut c = gw.client(&env, &caproto_tool("caproto-monitor").to_string_lossy());
    c.args([
        "--no-repeater",
        "--maximum",
        "3",
        "--format",
        "{response.data}",
        "t1:label",
    ]);
    env.spawn_capturing("mon", c);
    env.wait_until("the subscription", || env.get_int("ca1", "monitors") >= 1);
    env.wait_until("the first update (the empty label)", || {
        env.stdout_of("mon").lines().next() == Some("[]")
    });
    env.shvar(&["set", "t1", "label", "one"]).ok();
    env.wait_until("'one'", || env.stdout_of("mon").contains("[one]"));
    env.shvar(&["set", "t1", "label", "two"]).ok();
    env.wait_until("'two'", || env.stdout_of("mon").contains("[two]"));
    env.wait_until("caproto-monitor to leave", || {
        env.get_int("ca1", "clients") == 0
    });
    assert_eq!(env.get_int("ca1", "monitors"), 0);
}

/// Watches a PV across its owner's restart: prints connection changes and values as lines.
const RECONNECT_PY: &str = r#"
import sys, time, epics
def conn(pvname=None, conn=None, **kw):
    print('conn', conn, flush=True)
def val(value=None, **kw):
    print('value', value, flush=True)
pv = epics.PV(sys.argv[1], auto_monitor=True, callback=val, connection_callback=conn)
t_end = time.time() + float(sys.argv[2])
while time.time() < t_end:
    time.sleep(0.05)
"#;

#[test]
fn clients_reconnect_when_the_owner_restarts() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    env.shvar(&["set", "t1", "label", "first life"]).ok();
    let gw = start_gateway(&mut env, "ca1", &[]);
    gw.wait_serving(&env, 2);
    let mut c = gw.client(&env, PYTHON);
    c.arg("-c").arg(RECONNECT_PY).args(["t1:label", "60"]);
    env.spawn_capturing("watch", c);
    env.wait_until("the first value", || {
        env.stdout_of("watch").contains("value first life")
    });
    env.kill9("t1");
    env.wait_until("the disconnect", || {
        env.stdout_of("watch").contains("conn False")
    });
    env.ticker("t1", &["-c", "init"]);
    env.shvar(&["set", "t1", "label", "second life"]).ok();
    env.wait_until("the reconnect and the new value", || {
        let o = env.stdout_of("watch");
        o.matches("conn True").count() >= 2 && o.contains("value second life")
    });
}

#[test]
fn a_process_started_after_the_gateway_is_served_and_one_that_exits_is_dropped() {
    let mut env = Env::new();
    let gw = start_gateway(&mut env, "ca1", &[]);
    gw.wait_serving(&env, 1);
    let o = gw.caproto(&env, "caproto-get", &["--timeout", "1", "late:rate"]);
    o.stdout_has("Timed out while awaiting a response from the search");
    env.ticker("late", &["-c", "init"]);
    gw.wait_serving(&env, 2);
    let o = gw.caproto(&env, "caproto-get", &["late:rate"]);
    o.ok().stdout_has("[10]");
    env.shvar(&["cmd", "late", "exit"]).ok();
    env.wait_exit("late");
    env.wait_until("the gateway to drop it", || {
        env.get_int("ca1", "processes") == 1
    });
    let o = gw.caproto(&env, "caproto-get", &["--timeout", "1", "late:rate"]);
    o.stdout_has("Timed out while awaiting a response from the search");
}
