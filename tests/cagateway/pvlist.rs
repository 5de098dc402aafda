//! The PV list: which PVs are served and in which access group, against real CA clients
//! (caproto's tools), read again on `reload`; a bad list refused with its line, at start and
//! on reload.

use super::*;

/// Loopback may write the PVs of group TUNE; everyone reads everything served.
const GROUPS: &str = "
HAG(local) { 127.0.0.1 }
ASG(DEFAULT) {
    RULE(1, READ)
}
ASG(TUNE) {
    RULE(1, READ)
    RULE(1, WRITE) { HAG(local) }
}
";

const LIST: &str = "
# Everything, in DEFAULT; the rate in TUNE; the label not at all.
.*          ALLOW
t1:rate     ALLOW   TUNE   1
t1:label    DENY
";

#[test]
fn the_pv_list_puts_pvs_in_groups_hides_denied_ones_and_is_read_again() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let acf = env.path("ca.acf");
    let list = env.path("ca.pvlist");
    write_policy(&acf, GROUPS);
    write_policy(&list, LIST);
    let gw = start_gateway(
        &mut env,
        "ca1",
        &[
            "--access",
            acf.to_str().unwrap(),
            "--pvlist",
            list.to_str().unwrap(),
        ],
    );
    gw.wait_serving(&env, 2);
    let tool = |tool: &str, args: &[&str]| {
        let o = gw.caproto(&env, tool, args);
        format!("{}{}", o.stdout, o.stderr)
    };
    let put = |pv: &str, v: &str| tool("caproto-put", &["--notify", pv, v]);
    let get = |pv: &str| tool("caproto-get", &["--timeout", "2", pv]);

    // TUNE: loopback writes.
    assert!(put("t1:rate", "50").contains("[50]"));
    assert_eq!(env.get_int("t1", "rate"), 50);
    // DEFAULT: read only, for the same client.
    assert!(put("t1:upfreq", "5").contains("no write access"));
    assert!(get("t1:upfreq").contains("t1:upfreq"), "DEFAULT reads");
    // Denied: not found, and not through a field either.
    let searches = env.get_int("ca1", "search_hits");
    assert!(get("t1:label").contains("Timed out while awaiting a response from the search"));
    assert!(get("t1:label.DESC").contains("Timed out"));
    assert_eq!(
        env.get_int("ca1", "search_hits"),
        searches,
        "no hit for a denied PV"
    );
    // A client that skips the search and asks for the channel straight away: CREATE_CH_FAIL.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let mut req = super::wire::header(0, 0, 0, 13, 0, 0);
    req.extend(super::wire::header(18, 16, 0, 0, 7, 13));
    req.extend_from_slice(b"t1:label\0\0\0\0\0\0\0\0");
    s.write_all(&req).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = [0u8; 32];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got[..2], &[0, 0], "VERSION first");
    assert_eq!(&got[16..18], &[0, 26], "then CREATE_CH_FAIL, not a channel");
    assert_eq!(&got[24..28], &7u32.to_be_bytes(), "for our cid");
    // On the same circuit, a channel of a served PV (DEFAULT: read only), kept open below.
    let mut req = super::wire::header(18, 16, 0, 0, 8, 13);
    req.extend_from_slice(b"t1:ticks\0\0\0\0\0\0\0\0");
    s.write_all(&req).unwrap();
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got[..2], &[0, 22], "ACCESS_RIGHTS");
    assert_eq!(&got[8..16], &[0, 0, 0, 8, 0, 0, 0, 1], "cid 8: read");
    assert_eq!(&got[16..18], &[0, 18], "then CREATE_CHAN");
    // A field has its PV's group: a write to the rate's .VAL is a TUNE write (matched with
    // its suffix, it would fall to `.*`, DEFAULT, and be refused).
    assert!(put("t1:rate.VAL", "55").contains("[55]"));
    assert_eq!(env.get_int("t1", "rate"), 55);

    // Read again: the label served, the rate back in DEFAULT.
    std::fs::write(&list, ".* ALLOW\n").unwrap();
    env.shvar(&["cmd", "ca1", "reload"])
        .ok()
        .stdout_has("PV list")
        .stdout_has("read again");
    assert!(get("t1:label").contains("t1:label"));
    assert!(put("t1:rate", "60").contains("no write access"));
    assert_eq!(env.get_int("t1", "rate"), 55);

    // A reload that stops serving a PV takes every right from its open channels.
    std::fs::write(&list, ".* ALLOW\nt1:ticks DENY\n").unwrap();
    env.shvar(&["cmd", "ca1", "reload"]).ok();
    let mut rights = [0u8; 16];
    s.read_exact(&mut rights).unwrap();
    assert_eq!(&rights[..2], &[0, 22], "ACCESS_RIGHTS again");
    assert_eq!(
        &rights[8..16],
        &[0, 0, 0, 8, 0, 0, 0, 0],
        "cid 8: no rights now"
    );

    // A list naming a group the access file does not define: refused with its line, and
    // the rules in force stay.
    std::fs::write(&list, ".* ALLOW\nt1:rate ALLOW NOSUCH\n").unwrap();
    let o = env.shvar(&["cmd", "ca1", "reload"]);
    assert_ne!(o.code, 0);
    o.stderr_has("line 2")
        .stderr_has("ASG(NOSUCH) is not defined")
        .stderr_has("unchanged");
    assert!(get("t1:label").contains("t1:label"));
}

#[test]
fn a_bad_pv_list_stops_the_gateway_before_it_serves() {
    let env = Env::new();
    let list = env.path("bad.pvlist");
    let start_with = |text: &str| {
        write_policy(&list, text);
        let mut c = env.command("cagateway");
        c.args(["-n", "ca1", "--pvlist"]).arg(&list);
        let o = env.run(c);
        assert_eq!(o.code, 2, "{o:?}");
        o
    };
    start_with(".* ALLOW\nt1:( ALLOW\n")
        .stderr_has("PV list")
        .stderr_has("line 2");
    // A group other than DEFAULT needs an access file that defines it.
    start_with(".* ALLOW OPS\n")
        .stderr_has("line 1")
        .stderr_has("ASG(OPS) is not defined")
        .stderr_has("no --access file is given");
}

#[test]
fn an_access_file_every_user_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let acf = env.path("open.acf");
    write_policy(&acf, "ASG(DEFAULT) {\n RULE(1, WRITE)\n}\n");
    std::fs::set_permissions(&acf, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut c = env.command("cagateway");
    c.args(["-n", "ca1", "--access"]).arg(&acf);
    let o = env.run(c);
    assert_eq!(o.code, 2, "{o:?}");
    o.stderr_has("every user may write it")
        .stderr_has("chmod o-w");
}
