//! The Channel Access gateway against clients no one here wrote: pyepics (Debian's
//! python3-pyepics, over the C client library libca) and caproto's command-line tools
//! (target/pyenv, installed by tests/prereqs.sh). Every gateway listens on loopback on ports
//! chosen free at run time; clients find it through EPICS_CA_ADDR_LIST.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;

use crate::util::{free_port, Env, Out};

mod flow;
mod monitors;
mod pvlist;
mod wire;

/// Debian's Python, which has python3-pyepics.
const PYTHON: &str = "/usr/bin/python3";

fn caproto_tool(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/pyenv/bin")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run tests/prereqs.sh (it installs caproto into target/pyenv)",
        p.display()
    );
    p
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gateway of a test.
struct Gw {
    name: String,
    port: u16,
    beacon_port: u16,
}

fn start_gateway(env: &mut Env, name: &str, extra: &[&str]) -> Gw {
    let port = free_port();
    let beacon_port = free_udp_port();
    let mut c = env.command("cagateway");
    c.args(["-n", name])
        .args(extra)
        .env("EPICS_CAS_INTF_ADDR_LIST", "127.0.0.1")
        .env("EPICS_CAS_SERVER_PORT", port.to_string())
        .env("EPICS_CAS_BEACON_ADDR_LIST", "127.0.0.1")
        .env("EPICS_CAS_AUTO_BEACON_ADDR_LIST", "NO")
        .env("EPICS_CAS_BEACON_PORT", beacon_port.to_string());
    let pid = env.spawn(name, c);
    env.wait_ready(name, pid);
    assert_eq!(env.get_int(name, "port"), i64::from(port));
    Gw {
        name: name.to_owned(),
        port,
        beacon_port,
    }
}

impl Gw {
    /// Waits until the gateway serves `n` processes (itself included).
    fn wait_serving(&self, env: &Env, n: i64) {
        env.wait_until(&format!("{} to serve {n} processes", self.name), || {
            env.get_int(&self.name, "processes") >= n
        });
    }

    fn client(&self, env: &Env, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("EPICS_CA_ADDR_LIST", format!("127.0.0.1:{}", self.port))
            .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
            .env("EPICS_CA_REPEATER_PORT", self.beacon_port.to_string())
            .current_dir(env.dir());
        c
    }

    /// Runs a pyepics script with arguments.
    fn pyepics(&self, env: &Env, script: &str, args: &[&str]) -> Out {
        let mut c = self.client(env, PYTHON);
        c.arg("-c").arg(script).args(args);
        env.run(c)
    }

    /// Runs a caproto command-line tool.
    fn caproto(&self, env: &Env, tool: &str, args: &[&str]) -> Out {
        let mut c = self.client(env, &caproto_tool(tool).to_string_lossy());
        c.arg("--no-repeater").args(args);
        env.run(c)
    }
}

/// Reads each `NAME,DBRTYPE[,COUNT]` with pyepics' `ca.get_with_metadata` and prints a JSON
/// object of the results (null for a channel that did not connect).
const GET_PY: &str = r#"
import json, sys
from epics import ca
out = {}
for spec in sys.argv[1:]:
    name, ftype, *rest = spec.split(',')
    chid = ca.create_channel(name, connect=False, auto_cb=False)
    if not ca.connect_channel(chid, timeout=5):
        out[spec] = None
        continue
    kw = {'count': int(rest[0])} if rest else {}
    v = ca.get_with_metadata(chid, ftype=int(ftype), timeout=10, **kw)
    v['access'] = ca.access(chid)
    v['native'] = ca.field_type(chid)
    out[spec] = v
def plain(o):
    if hasattr(o, 'tolist'):
        return o.tolist()
    if isinstance(o, bytes):
        return o.decode()
    return str(o)
print(json.dumps(out, default=plain))
"#;

fn pyget(gw: &Gw, env: &Env, specs: &[&str]) -> Json {
    let o = gw.pyepics(env, GET_PY, specs);
    o.ok();
    serde_json::from_str(o.stdout.trim())
        .unwrap_or_else(|e| panic!("pyepics printed no JSON ({e}):\n{}\n{}", o.stdout, o.stderr))
}

fn chars_text(v: &Json) -> String {
    let bytes: Vec<u8> = v
        .as_array()
        .expect("a char array")
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .take_while(|b| *b != 0)
        .collect();
    String::from_utf8(bytes).unwrap()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const LONG_LABEL: &str = "a label of fifty characters, longer than forty ok!";

#[test]
fn pyepics_reads_every_type_form_and_field() {
    let mut env = Env::new();
    let t0 = now_secs();
    env.ticker("t1", &["-c", "init", "-c", "start"]);
    env.shvar(&["set", "t1", "label", LONG_LABEL]).ok();
    env.shvar(&["set", "t1", "upfreq", "5000000000"]).ok();
    let gw = start_gateway(&mut env, "ca1", &[]);
    gw.wait_serving(&env, 2);
    let r = pyget(
        &gw,
        &env,
        &[
            "t1:rate,33",
            "t1:rate,34",
            "t1:rate,20",
            "t1:rate,1",
            "t1:rate,2",
            "t1:rate,4",
            "t1:rate,30",
            "t1:runstate,31",
            "t1:runstate,0",
            "t1:runstate,17",
            "t1:label,14",
            "t1:label.VAL$,4,65",
            "ca1:tick_ms,34",
            "t1:upfreq,19",
            "t1:upfreq,20",
            "t1:rate.EGU,0",
            "t1:rate.DESC,0",
            "t1:rate.HOPR,6",
            "t1:rate.LOPR,6",
            "t1:rate.HIHI,6",
            "t1:rate.HIGH,6",
            "t1:rate.LOW,6",
            "t1:rate.LOLO,6",
            "t1:nosuchvar,0",
        ],
    );
    let ctrl = &r["t1:rate,33"];
    assert_eq!(ctrl["value"], 10, "{r:#}");
    assert_eq!(ctrl["native"], 5, "INTEGER is DBR_LONG");
    assert_eq!(ctrl["units"], "Hz");
    assert_eq!(ctrl["upper_ctrl_limit"], 1_000_000);
    assert_eq!(ctrl["lower_ctrl_limit"], 1);
    assert_eq!(ctrl["upper_disp_limit"], 1_000_000);
    assert_eq!(ctrl["lower_disp_limit"], 1);
    assert_eq!(ctrl["upper_alarm_limit"], 0);
    assert_eq!(
        (ctrl["status"].clone(), ctrl["severity"].clone()),
        (0.into(), 0.into())
    );
    assert_eq!(ctrl["access"], "read-only", "no access file: no writes");
    assert_eq!(r["t1:rate,34"]["value"], 10.0);
    assert_eq!(r["t1:rate,34"]["precision"], 0);
    let stamp = r["t1:rate,20"]["timestamp"].as_f64().unwrap();
    assert!(
        stamp >= t0 - 1.0 && stamp <= now_secs() + 1.0,
        "the time stamp is the variable's change time: {stamp} (test began {t0})"
    );
    assert_eq!(r["t1:rate,1"]["value"], 10, "DBR_INT");
    assert_eq!(r["t1:rate,2"]["value"], 10.0, "DBR_FLOAT");
    assert_eq!(r["t1:rate,4"]["value"], 10, "DBR_CHAR");
    assert_eq!(
        r["t1:rate,30"]["upper_ctrl_limit"], 1_000_000.0,
        "DBR_CTRL_FLOAT"
    );
    let e = &r["t1:runstate,31"];
    assert_eq!(e["native"], 3, "ENUM is DBR_ENUM");
    assert_eq!(e["value"], 2);
    assert_eq!(
        e["enum_strs"],
        serde_json::json!([
            "UNDEFINED_STATE",
            "INIT_STATE",
            "RUNNING_STATE",
            "PAUSE_STATE"
        ])
    );
    assert_eq!(r["t1:runstate,0"]["value"], "RUNNING_STATE");
    assert_eq!(r["t1:runstate,17"]["value"], 2, "DBR_TIME_ENUM");
    assert_eq!(
        r["t1:label,14"]["value"],
        &LONG_LABEL[..39],
        "DBR_STRING holds 39 bytes"
    );
    assert_eq!(r["t1:label,14"]["native"], 0);
    assert_eq!(chars_text(&r["t1:label.VAL$,4,65"]["value"]), LONG_LABEL);
    let f = &r["ca1:tick_ms,34"];
    assert_eq!(
        (
            f["native"].clone(),
            f["value"].clone(),
            f["precision"].clone(),
            f["units"].clone()
        ),
        (6.into(), 1.0.into(), 6.into(), "ms".into()),
        "FLOAT is DBR_DOUBLE"
    );
    // Beyond 32 bits: DBR_LONG clamps and says so; DBR_DOUBLE is exact.
    let big = &r["t1:upfreq,19"];
    assert_eq!(big["value"], i64::from(i32::MAX), "{big}");
    assert_eq!(
        (big["status"].clone(), big["severity"].clone()),
        (11.into(), 2.into())
    );
    assert_eq!(r["t1:upfreq,20"]["value"], 5.0e9);
    assert_eq!(r["t1:upfreq,20"]["severity"], 0);
    assert_eq!(r["t1:rate.EGU,0"]["value"], "Hz");
    assert!(r["t1:rate.DESC,0"]["value"]
        .as_str()
        .unwrap()
        .starts_with("Ticks per second"));
    assert_eq!(r["t1:rate.HOPR,6"]["value"], 1_000_000.0);
    assert_eq!(r["t1:rate.LOPR,6"]["value"], 1.0);
    for f in ["HIHI", "HIGH", "LOW", "LOLO"] {
        assert_eq!(
            r[format!("t1:rate.{f},6")]["value"],
            0.0,
            "no alarm limits yet"
        );
    }
    assert!(r["t1:nosuchvar,0"].is_null());
}

#[test]
fn caproto_reads_status_time_graphic_and_control_forms() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init", "-c", "start"]);
    env.shvar(&["set", "t1", "label", "hello gateway"]).ok();
    let gw = start_gateway(&mut env, "ca1", &[]);
    gw.wait_serving(&env, 2);
    let get = |args: &[&str]| {
        let o = gw.caproto(&env, "caproto-get", args);
        o.ok();
        o.stdout.trim().to_owned()
    };
    let f = "{response.metadata.status} {response.metadata.severity} {response.data}";
    assert_eq!(
        get(&["-d", "DBR_STS_LONG", "t1:rate", "--format", f]),
        "0 0 [10]"
    );
    assert_eq!(
        get(&[
            "-d",
            "DBR_STS_DOUBLE",
            "t1:rate",
            "--format",
            "{response.data_type.name}"
        ]),
        "STS_DOUBLE"
    );
    assert_eq!(
        get(&["-d", "DBR_STS_STRING", "t1:label", "--format", f]),
        "0 0 [hello gateway]"
    );
    assert_eq!(
        get(&["-d", "DBR_STS_ENUM", "t1:runstate", "--format", f]),
        "0 0 [2]"
    );
    assert_eq!(
        get(&[
            "-d",
            "DBR_GR_LONG",
            "t1:rate",
            "--format",
            "{response.metadata.units} {response.metadata.upper_disp_limit} {response.metadata.lower_disp_limit}"
        ]),
        "b'Hz' 1000000 1"
    );
    assert_eq!(
        get(&[
            "-d",
            "DBR_CTRL_DOUBLE",
            "ca1:tick_ms",
            "--format",
            "{response.metadata.units} {response.metadata.precision} {response.data}"
        ]),
        "b'ms' 6 [1]"
    );
    assert_eq!(
        get(&[
            "-d",
            "DBR_CTRL_ENUM",
            "t1:runstate",
            "--format",
            "{response.metadata.enum_strings}"
        ]),
        "(b'UNDEFINED_STATE', b'INIT_STATE', b'RUNNING_STATE', b'PAUSE_STATE')"
    );
    let t = get(&[
        "-d",
        "DBR_TIME_STRING",
        "t1:runstate",
        "--format",
        "{response.data}",
    ]);
    assert_eq!(t, "[RUNNING_STATE]");
    assert!(get(&["t1:runstate"]).ends_with("[RUNNING_STATE]"));
    let o = gw.caproto(&env, "caproto-get", &["--timeout", "1", "t1:nosuch"]);
    o.stdout_has("Timed out while awaiting a response from the search");
}

/// Writes an access file, PV list or lvsmon checks file as an administrator would leave it:
/// mode 0644 whatever the umask (the daemons refuse one every user may write). Later writes
/// keep the mode.
fn write_policy(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

const ACCESS: &str = "
# Writes from this machine's loopback only (the address is the real one, not asserted).
HAG(local) { 127.0.0.1 }
ASG(DEFAULT) {
    RULE(1, READ)
    RULE(1, WRITE) { HAG(local) }
}
";

/// Gateway `ca1` with the access file [`ACCESS`] (writes from loopback), once it serves two
/// processes (the test's ticker `t1` and the gateway's own).
fn start_gateway_with_access(env: &mut Env) -> Gw {
    let acf = env.path("ca.acf");
    write_policy(&acf, ACCESS);
    let gw = start_gateway(env, "ca1", &["--access", acf.to_str().unwrap()]);
    gw.wait_serving(env, 2);
    gw
}

const PUT_PY: &str = r#"
import sys, epics
name, value = sys.argv[1], sys.argv[2]
pv = epics.PV(name)
if not pv.wait_for_connection(10):
    print('not connected'); sys.exit(3)
print('write_access', pv.write_access)
try:
    print('put', pv.put(int(value) if value.lstrip('-').isdigit() else value, wait=True, timeout=10))
except Exception as e:
    print('refused', e)
"#;

#[test]
fn puts_go_through_the_owner_and_refusals_reach_the_client() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init", "-c", "start"]);
    let gw = start_gateway_with_access(&mut env);
    let put = |args: &[&str]| {
        let mut o = gw.caproto(&env, "caproto-put", args);
        // caproto prints an error response on either stream, depending on the version.
        o.stdout.push_str(&o.stderr);
        o
    };

    // Accepted: the owner sets it, caproto sees old and new.
    let o = put(&["--notify", "t1:rate", "50"]);
    o.ok().stdout_has("[50]");
    assert_eq!(env.get_int("t1", "rate"), 50);
    assert_eq!(env.get("t1", "lastcmd"), "set rate 50");
    // Out of range: the owner's refusal, in its words.
    let o = put(&["--notify", "t1:rate", "0"]);
    assert!(
        o.stdout.contains("ECA_PUTFAIL") && o.stdout.contains("out of range"),
        "{o:?}"
    );
    assert_eq!(env.get_int("t1", "rate"), 50);
    // Read-only.
    let o = put(&["t1:ticks", "5"]);
    assert!(
        o.stdout.contains("ECA_NOWTACCESS") && o.stdout.contains("t1:ticks is read-only"),
        "{o:?}"
    );
    // Wrong state: the command PV runs a command, which the state machine refuses.
    let o = put(&["--notify", "t1:cmd", "resume"]);
    assert!(o.stdout.contains("not allowed in RUNNING_STATE"), "{o:?}");
    put(&["--notify", "t1:cmd", "pause"]).ok();
    assert_eq!(env.get("t1", "runstate"), "PAUSE_STATE");
    // A string.
    put(&["--notify", "t1:label", "'hello there'"]).ok();
    assert_eq!(env.get("t1", "label"), "hello there");

    // pyepics (libca): write access is announced, a put with callback completes once the owner
    // answered, a read-only variable reports no write access.
    let o = gw.pyepics(&env, PUT_PY, &["t1:rate", "77"]);
    o.ok().stdout_has("write_access True").stdout_has("put 1");
    assert_eq!(env.get_int("t1", "rate"), 77);
    let o = gw.pyepics(&env, PUT_PY, &["t1:rate", "-5"]);
    o.ok();
    assert_eq!(env.get_int("t1", "rate"), 77, "refused: {o:?}");
    let o = gw.pyepics(&env, PUT_PY, &["t1:ticks", "5"]);
    o.ok()
        .stdout_has("write_access False")
        .stdout_has("Write access denied");
    assert!(env.get_int("ca1", "puts") >= 4);
    assert!(env.get_int("ca1", "put_errors") >= 3);
}

#[test]
fn without_an_access_file_nobody_writes() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let gw = start_gateway(&mut env, "ca1", &[]);
    gw.wait_serving(&env, 2);
    let o = gw.caproto(&env, "caproto-put", &["t1:rate", "50"]);
    let text = format!("{}{}", o.stdout, o.stderr);
    assert!(text.contains("no write access"), "{o:?}");
    assert_eq!(env.get_int("t1", "rate"), 10);
    let o = gw.caproto(&env, "caproto-put", &["t1:cmd", "exit"]);
    assert!(
        format!("{}{}", o.stdout, o.stderr).contains("ECA_NOWTACCESS"),
        "{o:?}"
    );
}

#[test]
fn beacons_announce_the_port_from_the_environment() {
    let mut env = Env::new();
    let gw = start_gateway(&mut env, "ca1", &[]);
    let sock = UdpSocket::bind(("127.0.0.1", gw.beacon_port));
    let Ok(sock) = sock else {
        panic!("cannot listen on the beacon port {}", gw.beacon_port);
    };
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut b = [0u8; 64];
    let (n, _) = sock.recv_from(&mut b).expect("a beacon within 20 s");
    assert_eq!(n, 16);
    assert_eq!(u16::from_be_bytes([b[0], b[1]]), 13, "CA_PROTO_RSRV_IS_UP");
    assert_eq!(u16::from_be_bytes([b[6], b[7]]), gw.port, "the TCP port");
    assert_eq!(&b[12..16], &[127, 0, 0, 1], "the address it listens on");
}

#[test]
fn deadbands_and_the_alarm_mask_choose_which_changes_are_sent() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let gw = start_gateway_with_access(&mut env);
    let put = gw.caproto(&env, "caproto-put", &["--notify", "t1:rate.MDEL", "100"]);
    put.ok();
    // caproto prints the array as numpy does ("[100.]") or, without numpy, as
    // "Array('d', [100.0])".
    let new = put
        .stdout
        .lines()
        .find(|l| l.starts_with("New"))
        .unwrap_or_default();
    assert!(
        new.contains("t1:rate.MDEL") && (new.contains("[100.]") || new.contains("[100.0]")),
        "{}",
        put.stdout
    );
    let monitor = |env: &mut Env, label: &str, args: &[&str]| {
        let mut c = gw.client(env, &caproto_tool("caproto-monitor").to_string_lossy());
        c.args([
            "--no-repeater",
            "--maximum",
            "3",
            "--format",
            "{response.data}",
        ])
        .args(args);
        env.spawn_capturing(label, c);
        env.wait_until("the first update", || {
            env.stdout_of(label).lines().next() == Some("[10]")
        });
    };
    let lines = |env: &Env, label: &str| -> Vec<String> {
        env.stdout_of(label).lines().map(str::to_owned).collect()
    };

    // MDEL 100: a change of 40 or 50 from the last value sent is not sent.
    monitor(&mut env, "rate", &["t1:rate"]);
    for v in ["50", "200", "250", "400"] {
        env.shvar(&["set", "t1", "rate", v]).ok();
    }
    env.wait_until("three updates", || lines(&env, "rate").len() >= 3);
    assert_eq!(lines(&env, "rate"), ["[10]", "[200]", "[400]"]);

    // DBE_ALARM alone: only changes of alarm state (here, the clamp beyond 32 bits).
    monitor(&mut env, "alarm", &["-m", "a", "t1:upfreq"]);
    for v in ["5", "5000000000", "6000000000", "7"] {
        env.shvar(&["set", "t1", "upfreq", v]).ok();
    }
    env.wait_until("three updates", || lines(&env, "alarm").len() >= 3);
    assert_eq!(lines(&env, "alarm"), ["[10]", "[2.14748e+09]", "[7]"]);
}

#[test]
fn the_access_file_is_read_again_on_reload_and_a_bad_one_changes_nothing() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let acf = env.path("ca.acf");
    // Writes only for a user nobody here is.
    write_policy(
        &acf,
        "UAG(ops) { nobody-here }\nASG(DEFAULT) {\n RULE(1, READ)\n RULE(1, WRITE) { UAG(ops) }\n}\n",
    );
    let gw = start_gateway(&mut env, "ca1", &["--access", acf.to_str().unwrap()]);
    gw.wait_serving(&env, 2);
    let put = |v: &str| {
        let o = gw.caproto(&env, "caproto-put", &["--notify", "t1:rate", v]);
        format!("{}{}", o.stdout, o.stderr)
    };
    assert!(put("20").contains("no write access"));
    // The user caproto asserts is this process's user.
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    std::fs::write(
        &acf,
        format!("UAG(ops) {{ {me} }}\nASG(DEFAULT) {{\n RULE(1, READ)\n RULE(1, WRITE) {{ UAG(ops) }}\n}}\n"),
    )
    .unwrap();
    env.shvar(&["cmd", "ca1", "reload"])
        .ok()
        .stdout_has("read again");
    assert!(put("30").contains("[30]"));
    assert_eq!(env.get_int("t1", "rate"), 30);
    // A bad file: the error names the line, the rules in force stay.
    std::fs::write(&acf, "UAG(ops) { x }\nASG(DEFAULT) {\n RULE(1, FLY)\n}\n").unwrap();
    let o = env.shvar(&["cmd", "ca1", "reload"]);
    assert_ne!(o.code, 0);
    o.stderr_has("line 3").stderr_has("unchanged");
    assert!(put("40").contains("[40]"));
    // SIGHUP reads it too.
    std::fs::write(&acf, "ASG(DEFAULT) {\n RULE(1, READ)\n}\n").unwrap();
    env.signal("ca1", nix::sys::signal::Signal::SIGHUP);
    env.wait_until("the gateway to read the file again", || {
        env.stderr_of("ca1").matches("read again").count() >= 2
    });
    assert!(put("50").contains("no write access"));
    assert_eq!(env.get_int("t1", "rate"), 40);
}

#[test]
fn structured_names_map_to_pvs_and_an_upper_case_suffix_is_a_field() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init", "-c", "start"]);
    let conf = env.path("checks.conf");
    write_policy(
        &conf,
        "[defaults]\ninterval = \"50ms\"\nrise = 1\nfall = 1\n[check.t1]\ntype = \"framework\"\nprocess = \"t1\"\ncondition = \"rate <= 100\"\n",
    );
    let mut c = env.command("lvsmon");
    c.args(["-n", "mon1", "--file"]).arg(&conf);
    let pid = env.spawn("mon1", c);
    env.wait_ready("mon1", pid);
    env.wait_until("UP", || env.get("mon1", "check.t1.status") == "UP");
    let gw = start_gateway(&mut env, "ca1", &[]);
    gw.wait_serving(&env, 3);
    let r = pyget(
        &gw,
        &env,
        &[
            "mon1:check.t1.status,0",
            "mon1:check.t1.status,31",
            "mon1:check.t1.status.DESC,0",
            "mon1:check.t1.status.desc,0",
        ],
    );
    assert_eq!(r["mon1:check.t1.status,0"]["value"], "UP", "{r:#}");
    let labels = r["mon1:check.t1.status,31"]["enum_strs"]
        .as_array()
        .unwrap();
    assert!(labels.iter().any(|l| l == "UP"), "{labels:?}");
    let desc = env.shvar(&["dump", "mon1"]).stdout;
    let shown = r["mon1:check.t1.status.DESC,0"]["value"].as_str().unwrap();
    assert!(
        !shown.is_empty() && desc.contains(shown),
        "{shown:?} not in\n{desc}"
    );
    assert!(
        r["mon1:check.t1.status.desc,0"].is_null(),
        "a lower-case suffix is part of the name, and there is no such variable"
    );
}

/// Follows a PV with the DBE_ALARM mask only; prints each update's value, status and severity
/// (one JSON list) when "stop" is written to its stdin... or after argv[2] seconds.
const ALARM_PY: &str = r#"
import json, sys, time
from epics import ca, dbr
got = []
chid = ca.create_channel(sys.argv[1], connect=False, auto_cb=False)
if not ca.connect_channel(chid, timeout=10):
    print('not connected'); sys.exit(3)
def cb(pvname=None, value=None, status=None, severity=None, **kw):
    got.append([float(value), int(status), int(severity)])
ev = ca.create_subscription(chid, mask=dbr.DBE_ALARM, use_time=True, callback=cb)
print('connected', flush=True)
t_end = time.time() + float(sys.argv[2])
while time.time() < t_end and len(got) < int(sys.argv[3]):
    ca.poll(0.02)
print(json.dumps(got), flush=True)
"#;

/// Issue 11's alarm limits through CA: DBR_STS/CTRL carry the alarm state and the limits,
/// `.HIHI` and friends are the variable's, `.PREC` its precision, and a DBE_ALARM monitor is
/// told of alarm changes only.
#[test]
fn alarm_limits_status_and_dbe_alarm_monitors() {
    let mut env = Env::new();
    let mut c = env.example_command("tabled");
    c.args(["-n", "tb"]);
    let pid = env.spawn("tb", c);
    env.wait_ready("tb", pid);
    let gw = start_gateway(&mut env, "ca1", &[]);
    gw.wait_serving(&env, 1);
    env.shvar(&["set", "tb", "temp", "45"]).ok();
    let r = pyget(
        &gw,
        &env,
        &[
            "tb:temp,34",
            "tb:temp,20",
            "tb:temp.HIHI,6",
            "tb:temp.LOW,6",
            "tb:temp.PREC,5",
        ],
    );
    let ctrl = &r["tb:temp,34"];
    assert_eq!(ctrl["value"], 45.0, "{r:#}");
    assert_eq!(
        (ctrl["status"].clone(), ctrl["severity"].clone()),
        (4.into(), 1.into()),
        "HIGH, MINOR: {r:#}"
    );
    assert_eq!(ctrl["upper_alarm_limit"], 60.0);
    assert_eq!(ctrl["upper_warning_limit"], 40.0);
    assert_eq!(ctrl["lower_warning_limit"], 10.0);
    assert_eq!(ctrl["lower_alarm_limit"], 0.0);
    assert_eq!(ctrl["precision"], 1);
    assert_eq!(r["tb:temp,20"]["severity"], 1, "DBR_TIME_DOUBLE");
    assert_eq!(r["tb:temp.HIHI,6"]["value"], 60.0);
    assert_eq!(r["tb:temp.LOW,6"]["value"], 10.0);
    assert_eq!(r["tb:temp.PREC,5"]["value"], 1);
    // DBE_ALARM: the first value, then only the alarm changes.
    env.shvar(&["set", "tb", "temp", "20"]).ok();
    let mut c = gw.client(&env, PYTHON);
    c.arg("-c").arg(ALARM_PY).args(["tb:temp", "20", "4"]);
    env.spawn_capturing("alarm", c);
    env.wait_until("the monitor to connect", || {
        env.stdout_of("alarm").contains("connected")
    });
    for v in ["25", "45", "46", "65", "61", "20"] {
        env.shvar(&["set", "tb", "temp", v]).ok();
    }
    env.wait_until("the alarm monitor to finish", || {
        env.stdout_of("alarm").lines().any(|l| l.starts_with('['))
    });
    let out = env.stdout_of("alarm");
    let got: Vec<(f64, i64, i64)> = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        got,
        vec![(20.0, 0, 0), (45.0, 4, 1), (65.0, 3, 2), (20.0, 0, 0)],
        "25, 46 and 61 change no alarm state"
    );
}
