//! What every binary offers besides its own job (`--completions SHELL`, `--man`), and spycat
//! reading a farm spy daemon straight over the network: every mode against a real
//! evgen -> farmspydaemon chain, KLOE's URI spelling, `spy:` local names, reconnecting with
//! --follow, and the errors for bad URIs, refused connections and peers that are not spy daemons.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use crate::util::{free_port, Env};

const BINARIES: [&str; 22] = [
    "ticker",
    "shvar",
    "spyctl",
    "farmspydaemon",
    "rspydaemon",
    "ybosspydaemon",
    "evgen",
    "spycat",
    "spybench",
    "spydemo",
    "startbench",
    "isectd",
    "isdclient",
    "isdexecd",
    "isdecho",
    "isdbench",
    "lvsmon",
    "lvsbench",
    "svcshare",
    "svcsoak",
    "cagateway",
    "cabench",
];

#[test]
fn every_binary_prints_its_completions_for_every_shell() {
    let env = Env::new();
    for bin in BINARIES {
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let mut c = env.command(bin);
            c.args(["--completions", shell]);
            let o = env.run(c);
            o.ok();
            // The script registers the binary's dynamic completion: the shell asks the binary.
            assert!(
                o.stdout.contains(bin) && o.stdout.contains("COMPLETE"),
                "{bin} --completions {shell}: no script asking {bin} for completions:\n{}",
                o.stdout
            );
        }
        let mut c = env.command(bin);
        c.args(["--completions", "bash"]);
        env.run(c)
            .stdout_has(&format!("-F _clap_complete_{bin} {bin}"));
    }
}

/// In a real bash, with the script `shvar --completions bash` prints: Tab after `shvar get`
/// offers the live processes, and after `shvar get t1 ra` the variables of t1.
#[test]
fn bash_completes_live_process_and_variable_names() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    env.ticker("spy7", &[]);
    let bin_dir = crate::util::bin("shvar").parent().unwrap().to_owned();
    let script = r#"
source <(shvar --completions bash) || exit 9
complete_at() {  # words...: completes the last one, as Tab would
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    _clap_complete_shvar shvar "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    echo "${COMPREPLY[*]}"
}
echo "names: $(complete_at shvar get '')"
echo "spy: $(complete_at shvar dump sp)"
echo "vars: $(complete_at shvar get t1 ra)"
echo "more: $(complete_at shvar get t1 rate la)"
echo "set: $(complete_at shvar set t1 up)"
"#;
    let mut c = Command::new("bash");
    c.arg("-c").arg(script).env("SHVAR_DIR", env.dir()).env(
        "PATH",
        format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
    );
    let o = env.run(c);
    o.ok();
    let line = |p: &str| {
        o.stdout
            .lines()
            .find(|l| l.starts_with(p))
            .unwrap_or_default()
            .to_owned()
    };
    let names = line("names:");
    assert!(
        names.contains("t1") && names.contains("spy7"),
        "{}",
        o.stdout
    );
    assert_eq!(line("spy:"), "spy: spy7", "{}", o.stdout);
    assert_eq!(line("vars:"), "vars: rate", "{}", o.stdout);
    let more_line = line("more:");
    let mut got: Vec<&str> = more_line.split_whitespace().skip(1).collect();
    got.sort_unstable();
    assert_eq!(got, ["label", "lastcmd", "lasterror"], "{}", o.stdout);
    assert_eq!(line("set:"), "set: upfreq upfreq_l", "{}", o.stdout);
}

#[test]
fn every_binary_prints_its_man_page() {
    let env = Env::new();
    for bin in BINARIES {
        let mut c = env.command(bin);
        c.arg("--man");
        let o = env.run(c);
        o.ok();
        // clap_mangen opens with the definitions of the apostrophe string, then the title.
        let first = o
            .stdout
            .lines()
            .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"))
            .unwrap_or_default();
        assert!(
            first.starts_with(&format!(".TH {bin} 1")),
            "{bin} --man: the page does not start with its .TH title:\n{}",
            o.stdout
        );
        assert!(o.stdout.contains(".SH NAME"), "{}", o.stdout);
        assert!(o.stdout.contains("\\-\\-man"), "{}", o.stdout);
        // Rendered as a reader sees it, by man(1), without a warning from groff.
        let page = env.path(&format!("{bin}.1"));
        std::fs::write(&page, &o.stdout).unwrap();
        let mut m = Command::new("man");
        m.args(["--warnings", "-l"])
            .arg(&page)
            .env("MANWIDTH", "100");
        let r = env.run(m);
        r.ok();
        assert!(r.stderr.is_empty(), "man -l {bin}.1 warns:\n{}", r.stderr);
        for heading in [
            "NAME",
            "SYNOPSIS",
            "OPTIONS",
            "ENVIRONMENT",
            "FILES",
            "EXIT STATUS",
            "SEE ALSO",
        ] {
            assert!(
                r.stdout.lines().any(|l| l == heading),
                "{bin}(1) has no {heading} section:\n{}",
                r.stdout
            );
        }
        // No page is named that does not exist: subcommands are in the page itself.
        assert!(!r.stdout.contains(&format!("{bin}-")), "{}", r.stdout);
        assert!(r.stdout.contains("SHVAR_DIR"), "{}", r.stdout);
    }
    let mut c = env.command("shvar");
    c.arg("--man");
    let page = env.path("shvar.1");
    std::fs::write(&page, env.run(c).stdout).unwrap();
    let mut m = Command::new("man");
    m.args(["-l"]).arg(&page).env("MANWIDTH", "100");
    let r = env.run(m);
    for sub in [
        "shvar list",
        "shvar get",
        "shvar watch",
        "shvar cmd",
        "shvar cleanup",
    ] {
        assert!(
            r.stdout.contains(sub),
            "shvar(1) lacks {sub}:\n{}",
            r.stdout
        );
    }
    assert!(r
        .stdout
        .contains("printed the last values of a process that is not running"));
    let mut c = env.command("spyctl");
    c.arg("--man");
    let page = env.path("spyctl.1");
    std::fs::write(&page, env.run(c).stdout).unwrap();
    let mut m = Command::new("man");
    m.args(["-l"]).arg(&page).env("MANWIDTH", "100");
    let r = env.run(m);
    assert!(r.stdout.lines().any(|l| l == "VERBS"), "{}", r.stdout);
    for verb in ["open NAME", "watch", "launch NAME", "quit"] {
        assert!(
            r.stdout.contains(verb),
            "spyctl(1) lacks {verb}:\n{}",
            r.stdout
        );
    }
}

#[test]
fn completions_and_man_work_without_required_arguments_but_alone() {
    let env = Env::new();
    // shvar requires a subcommand, spycat a SOURCE: neither stops --man.
    for (bin, args) in [
        ("shvar", &["--man"][..]),
        ("spycat", &["--completions", "zsh"]),
    ] {
        let mut c = env.command(bin);
        c.args(args);
        assert!(!env.run(c).ok().stdout.is_empty());
    }
    // Unknown shell, or the options mixed with a real run: usage errors.
    let mut c = env.command("shvar");
    c.args(["--completions", "nosuchshell"]);
    env.run(c)
        .expect_code(2)
        .stderr_has("nosuchshell")
        .stderr_has("bash");
    let mut c = env.command("spycat");
    c.args(["--man", "B_1_1"]);
    env.run(c).expect_code(2);
    // Without them, the binaries still insist on what they need.
    env.run(env.command("shvar")).expect_code(2);
}

impl Env {
    /// evgen gen1 writing buffer B_1_1, and farmspydaemon farm1 serving it on `port` (0: any);
    /// returns the port it listens on.
    fn spy_chain(&mut self, port: u16) -> u16 {
        let mut c = self.command("evgen");
        c.args([
            "-n", "gen1", "--buffer", "B_1_1", "--rate", "2000", "--size", "100-2000",
        ]);
        let pid = self.spawn("gen1", c);
        self.wait_ready("gen1", pid);
        self.wait_until("evgen to produce", || self.get_int("gen1", "events") > 0);
        self.start_farm(port)
    }

    fn start_farm(&mut self, port: u16) -> u16 {
        let mut c = self.command("farmspydaemon");
        let set = format!("set port {port}");
        c.args(["-n", "farm1", "-c", "init B_1_1", "-c", &set, "-c", "start"]);
        let pid = self.spawn("farm1", c);
        self.wait_ready("farm1", pid);
        self.wait_until("the farm to serve", || {
            self.get("farm1", "runstate") == "RUNNING_STATE"
        });
        self.get_int("farm1", "port") as u16
    }

    fn spycat_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.command("spycat");
        c.args(args);
        c
    }
}

/// The number before " events, " in spycat's --stats summary.
fn events_in_summary(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains(" events, ") && l.contains("; last event "))
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
    let head = line.split(" events, ").next().unwrap();
    head.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn spycat_reads_a_farm_spy_daemon_in_every_mode() {
    let mut env = Env::new();
    let port = env.spy_chain(0);
    for mode in ["next", "latest", "push"] {
        let uri = format!("remote://127.0.0.1:{port}?mode={mode}");
        let o = env.run(env.spycat_cmd(&[
            "--follow", "--verify", "--count", "500", "-q", "--stats", &uri,
        ]));
        o.ok().stderr_has(&format!(
            "{uri}: verified 500 events: every payload intact, event numbers increasing"
        ));
        assert_eq!(events_in_summary(&o.stderr), 500, "{}", o.stderr);
        assert!(o.stdout.is_empty(), "-q printed {:?}", o.stdout);
    }
    // Push mode streams until --count even without --follow.
    let uri = format!("remote://127.0.0.1:{port}?mode=push");
    env.run(env.spycat_cmd(&["--verify", "--count", "500", "-q", &uri]))
        .ok()
        .stderr_has("verified 500 events: every payload intact");
    // Lines as for a local buffer, in KLOE's spelling with a packet limit.
    let uri = format!("remote:spy:B_1_1@127.0.0.1:{port}?max_events_per_packet=10");
    let o = env.run(env.spycat_cmd(&["--count", "25", &uri]));
    o.ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 25, "{}", o.stdout);
    assert!(lines.iter().all(|l| l.ends_with(" ok")), "{}", o.stdout);
    // Without --follow or --count: what the daemon had, then exit. With the producer paused,
    // next serves the whole buffer and latest only the freshest event: the mode reached the
    // daemon.
    env.shvar(&["cmd", "gen1", "pause"]).ok();
    let stopped_at = env.get_int("gen1", "lastevnr") as u64;
    let had = |mode: &str| {
        let uri = format!("remote://127.0.0.1:{port}?mode={mode}");
        let o = env.run(env.spycat_cmd(&["-q", "--verify", "--stats", &uri]));
        o.ok().stderr_has("every payload intact");
        assert!(
            o.stderr.contains(&format!("last event {stopped_at}")),
            "{mode}: {}",
            o.stderr
        );
        events_in_summary(&o.stderr)
    };
    let next = had("next");
    assert!(next > 100, "next read {next} events of a full buffer");
    assert_eq!(had("latest"), 1, "latest read more than the freshest event");
    assert_eq!(env.get("farm1", "runstate"), "RUNNING_STATE");
}

#[test]
fn spycat_spy_prefix_names_a_local_buffer() {
    let mut env = Env::new();
    env.spy_chain(0);
    let o = env.run(env.spycat_cmd(&["spy:B_1_1", "--count", "10", "--verify"]));
    o.ok().stderr_has("B_1_1: verified 10 events");
    assert_eq!(o.stdout.lines().count(), 10, "{}", o.stdout);
    let abs = format!("spy:{}", env.path("B_1_1").display());
    env.run(env.spycat_cmd(&[&abs, "--count", "3"])).ok();
    env.run(env.spycat_cmd(&["spy:nosuch"]))
        .expect_code(1)
        .stderr_has("buffer nosuch");
}

#[test]
fn spycat_follow_reconnects_to_a_restarted_farm_daemon() {
    let mut env = Env::new();
    let port = free_port();
    assert_eq!(env.spy_chain(port), port);
    // Mode next: after the reconnect the farm serves from its oldest event unless spycat
    // names the last one it has.
    let uri = format!("remote://127.0.0.1:{port}");
    let c = env.spycat_cmd(&["--follow", "--verify", "--stats", "--count", "6000", &uri]);
    env.spawn_capturing("cat", c);
    env.wait_until("spycat to connect", || {
        env.stderr_of("cat")
            .contains("connected to the farm spy daemon")
    });
    env.kill9("farm1");
    env.wait_until("spycat to see the connection drop", || {
        env.stderr_of("cat").contains("reconnecting")
    });
    env.start_farm(port);
    assert_eq!(env.wait_exit("cat"), 0, "{}", env.stderr_of("cat"));
    let err = env.stderr_of("cat");
    assert!(
        err.contains(&format!("reconnected to 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        err.contains("verified 6000 events: every payload intact"),
        "{err}"
    );
    // --verify forgets the order across a reconnect (the producer may have restarted its
    // numbering); here it did not, so nothing may come twice: spycat resumed where it was.
    let numbers: Vec<u64> = env
        .stdout_of("cat")
        .lines()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 6000);
    let back = numbers.windows(2).find(|w| w[1] <= w[0]);
    assert!(
        back.is_none(),
        "after the reconnect event {back:?} came again"
    );
}

#[test]
fn spycat_says_clearly_what_is_wrong_with_a_remote_source() {
    let env = Env::new();
    // Malformed: a usage error that says what is wrong and shows the accepted forms.
    for (uri, says) in [
        (
            "remote://127.0.0.1:99999",
            "port \"99999\" is not a number from 1 to 65535",
        ),
        ("remote://h?mode=fast", "the mode is next, latest or push"),
        ("remote:spy:B_1_1", "no @HOST"),
        ("http://h", "unknown kind of source"),
    ] {
        env.run(env.spycat_cmd(&[uri]))
            .expect_code(2)
            .stderr_has(says)
            .stderr_has("remote://HOST[:PORT][?OPTIONS]")
            .stderr_has("remote:spy:BUFFER@HOST[:PORT][?OPTIONS]");
    }
    env.run(env.spycat_cmd(&["--lossless", "remote://127.0.0.1"]))
        .expect_code(2)
        .stderr_has("local buffer only");
    // Nobody listening: which address, and what to check.
    let port = free_port();
    env.run(env.spycat_cmd(&[&format!("remote://127.0.0.1:{port}")]))
        .expect_code(1)
        .stderr_has(&format!(
            "cannot connect to 127.0.0.1:{port}: connection refused"
        ))
        .stderr_has("farmspydaemon runs");
    // A peer that speaks something else.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = [0u8; 32];
        let _ = s.read(&mut req);
        let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n........");
    });
    env.run(env.spycat_cmd(&[&format!("remote://127.0.0.1:{port}")]))
        .expect_code(1)
        .stderr_has("not a farm spy daemon");
    peer.join().unwrap();
}
