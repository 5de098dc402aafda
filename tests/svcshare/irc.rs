//! The IRC front against a real ngircd driven by a scripted client: the seed's commands from
//! allowed nicks only, channel keys, regions of other users, the server restarting.

use super::*;

/// A real IRC server (Debian's ngircd) on a loopback port chosen now.
fn ngircd(env: &mut Env) -> u16 {
    let port = free_port();
    ngircd_on(env, port);
    port
}

/// ngircd on `port`.
fn ngircd_on(env: &mut Env, port: u16) {
    let bin = ["/usr/sbin/ngircd", "/usr/bin/ngircd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("ngircd is missing: install Debian's ngircd (tests/prereqs.sh does: apt-get install -y ngircd)");
    let conf = env.path("ngircd.conf");
    std::fs::write(
        &conf,
        format!(
            "[Global]\nName = irc.test.local\nInfo = svcshare test\nListen = 127.0.0.1\nPorts = {port}\nMotdPhrase = test\n[Options]\nPAM = no\nIdent = no\nDNS = no\n"
        ),
    )
    .unwrap();
    let mut c = Command::new(bin);
    c.arg("-n").arg("-f").arg(&conf);
    env.spawn("ngircd", c);
    env.wait_until("ngircd to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// A scripted IRC user.
struct IrcUser {
    w: TcpStream,
    rx: std::sync::mpsc::Receiver<String>,
    nick: String,
    backlog: Vec<String>,
}

impl IrcUser {
    fn connect(port: u16, nick: &str) -> IrcUser {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let r = s.try_clone().unwrap();
        let mut w = s;
        std::thread::spawn(move || {
            let mut pong = r.try_clone().unwrap();
            for l in BufReader::new(r).lines() {
                let Ok(l) = l else { return };
                if let Some(arg) = l.strip_prefix("PING ") {
                    let _ = pong.write_all(format!("PONG {arg}\r\n").as_bytes());
                }
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        w.write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes())
            .unwrap();
        let mut u = IrcUser {
            w,
            rx,
            nick: nick.to_owned(),
            backlog: Vec::new(),
        };
        u.expect(|l| l.contains(" 001 "), "registration");
        u
    }

    fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }

    /// Joins a channel (`args`: its name, then its key if it has one) and waits for the server
    /// to say so.
    #[track_caller]
    fn join(&mut self, args: &str) {
        self.send(&format!("JOIN {args}"));
        let me = format!(":{}!", self.nick);
        let what = format!("{}'s join", self.nick);
        self.expect(|l| l.starts_with(&me) && l.contains(" JOIN "), &what);
    }

    fn say(&mut self, to: &str, text: &str) {
        self.send(&format!("PRIVMSG {to} :{text}"));
    }

    /// Waits (up to 20 s) for a line that `f` accepts; returns it.
    #[track_caller]
    fn expect(&mut self, f: impl Fn(&str) -> bool, what: &str) -> String {
        // Lines that came before are looked at first (answers of two bots come in any order).
        if let Some(i) = self.backlog.iter().position(|l| f(l)) {
            return self.backlog.remove(i);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(l) = self.rx.recv_timeout(Duration::from_millis(100)) {
                if f(&l) {
                    return l;
                }
                self.backlog.push(l);
            }
        }
        panic!(
            "{}: no line for {what}; saw:\n{}",
            self.nick,
            self.backlog.join("\n")
        );
    }

    /// Waits for `from`'s message to `to` containing `text`.
    #[track_caller]
    fn reply(&mut self, from: &str, to: &str, text: &str) -> String {
        let head = format!(":{from}!");
        let mid = format!(" PRIVMSG {to} :");
        self.expect(
            |l| l.starts_with(&head) && l.contains(&mid) && l.contains(text),
            &format!("{from} saying {text:?} to {to}"),
        )
    }
}

#[test]
fn the_irc_front_takes_the_seeds_commands_from_allowed_nicks_only() {
    let mut env = Env::new();
    let port = ngircd(&mut env);
    let server = format!("127.0.0.1:{port}");
    for (name, nick) in [("a", "bot1"), ("b", "bot2")] {
        cmd_peer(
            &mut env,
            name,
            &[
                "--irc",
                &server,
                "--channel",
                "#share",
                "--nick",
                nick,
                "--irc-allow",
                "alice,carol",
            ],
        );
    }
    let mut alice = IrcUser::connect(port, "alice");
    alice.join("#share");
    // Both bots in the channel.
    env.wait_until("both bots in #share", || {
        alice.send("NAMES #share");
        let l = alice.expect(|l| l.contains(" 366 ") || l.contains(" 353 "), "names");
        l.contains("bot1") && l.contains("bot2")
    });
    // .version and .status in the channel: every bot answers.
    alice.say("#share", ".version");
    alice.reply("bot1", "#share", "svcshare ");
    alice.reply("bot2", "#share", "svcshare ");
    alice.say("#share", ".status");
    alice.reply("bot1", "#share", "a (share): PAUSED");
    alice.reply("bot2", "#share", "b (share): PAUSED");
    // Addressed in the channel: `bot1: command`; the answer addresses the sender.
    alice.say("#share", "bot1: enq job1");
    alice.reply("bot1", "#share", "alice: queued job1: queue 1");
    alice.say("#share", "bot1: election");
    alice.reply("bot1", "#share", "alice: election: running under token");
    assert_eq!(state(&env, "a"), "RUNNING");
    // A private message: `command` alone.
    alice.say("bot2", "force");
    alice.reply("bot2", "alice", "force:");
    env.wait_until("bot2's peer forced", || state(&env, "b") == "FORCED");
    alice.say("bot1", "halt 5");
    alice.reply("bot1", "alice", "halted for 5 minutes");
    alice.say("bot1", "unhalt");
    alice.reply("bot1", "alice", "unhalted");
    alice.say("bot1", "frobnicate");
    alice.reply("bot1", "alice", "unknown command 'frobnicate'");
    // Someone else: .status yes, commands no (in the channel and in private).
    let mut mallory = IrcUser::connect(port, "mallory");
    mallory.join("#share");
    mallory.say("#share", ".status");
    mallory.reply("bot2", "#share", "b (share): FORCED");
    mallory.say("#share", "bot2: pause");
    mallory.reply(
        "bot2",
        "#share",
        "mallory: refused: mallory may not command b",
    );
    mallory.say("bot2", "halt");
    mallory.reply("bot2", "mallory", "refused");
    assert_eq!(state(&env, "b"), "FORCED");
    let ev = ok(&env, "b", "events 100");
    assert!(ev.contains("irc: refused 'halt' from mallory"), "{ev}");
    assert!(ev.contains("irc: alice asks 'force'"), "{ev}");
}

#[test]
fn with_a_channel_key_the_channel_commands_and_outsiders_are_refused() {
    let mut env = Env::new();
    let port = ngircd(&mut env);
    let server = format!("127.0.0.1:{port}");
    cmd_peer(
        &mut env,
        "k",
        &[
            "--irc",
            &server,
            "--channel",
            "#locked",
            "--nick",
            "keybot",
            "--irc-key",
            "sekret",
        ],
    );
    env.wait_until("keybot to join", || {
        ok(&env, "k", "events 50").contains("irc: joined #locked")
    });
    let mut dave = IrcUser::connect(port, "dave");
    // The bot, first in the channel and so its operator, closed it with the key.
    env.wait_until("the channel to have its key", || {
        dave.send("MODE #locked");
        let l = dave.expect(|l| l.contains(" 324 ") || l.contains(" 403 "), "the modes");
        l.contains(" 324 ") && l.split_whitespace().nth(4).is_some_and(|m| m.contains('k'))
    });
    let mut eve = IrcUser::connect(port, "eve");
    eve.send("JOIN #locked");
    eve.expect(|l| l.contains(" 475 "), "eve refused by the key");
    dave.join("#locked sekret");
    dave.say("#locked", "keybot: enq x1");
    dave.reply("keybot", "#locked", "dave: queued x1: queue 1");
    // Private messages need --irc-allow: the key is no help there.
    eve.say("keybot", "enq y1");
    eve.reply("keybot", "eve", "refused");
    dave.say("keybot", "enq y1");
    dave.reply("keybot", "dave", "refused");
    assert_eq!(env.get_int("k", "queue"), 1);
}

#[test]
fn a_region_of_another_user_never_joins_the_board() {
    let who = crate::need_stranger!();
    let mut env = Env::new();
    env.share();
    // The stranger runs a svcshare of the same share in a directory of its own, asks to run
    // with an empty queue (it would win every election), then moves its live region into ours.
    let own = env.path("strange");
    std::fs::create_dir(&own).unwrap();
    nix::unistd::chown(
        &own,
        Some(nix::unistd::Uid::from_raw(who.uid)),
        Some(nix::unistd::Gid::from_raw(who.gid)),
    )
    .unwrap();
    let mut c = env.command_as("svcshare", who);
    c.args([
        "-n",
        "evil",
        "--poll",
        "10ms",
        "--pause-cmd",
        "true",
        "--resume-cmd",
        "true",
    ])
    .arg("--dir")
    .arg(&own);
    env.spawn("evil", c);
    let sv = |args: &[&str]| {
        let mut c = env.command_as("shvar", who);
        c.arg("--dir").arg(&own).args(args);
        env.run(c)
    };
    env.wait_until("the stranger's svcshare", || {
        sv(&["cmd", "evil", "version"]).code == 0
    });
    sv(&["cmd", "evil", "election"]).ok();
    let st = env
        .program_as("/bin/mv", who)
        .arg(own.join("evil.shv"))
        .arg(env.path("evil.shv"))
        .status()
        .unwrap();
    assert!(st.success());
    cmd_peer(&mut env, "a", &[]);
    ok(&env, "a", "enq x");
    ok(&env, "a", "enq y");
    let r = ok(&env, "a", "election");
    assert!(r.contains("a is the only candidate"), "{r}");
    let board = ok(&env, "a", "peers");
    assert!(!board.contains("evil"), "{board}");
    assert_eq!(env.get_int("a", "peers"), 0);
}

#[test]
fn the_irc_front_comes_back_after_the_server_restarts() {
    let mut env = Env::new();
    let port = ngircd(&mut env);
    let server = format!("127.0.0.1:{port}");
    cmd_peer(
        &mut env,
        "r",
        &["--irc", &server, "--channel", "#share", "--nick", "rbot"],
    );
    let joins = |env: &Env| env.stderr_of("r").matches("irc: joined #share").count();
    env.wait_until("rbot to join", || joins(&env) == 1);
    env.kill9("ngircd");
    env.wait_until("rbot to notice", || {
        env.get("r", "lasterror").contains("irc: connection to")
    });
    ngircd_on(&mut env, port);
    env.wait_until("rbot to join again", || joins(&env) == 2);
    let mut u = IrcUser::connect(port, "alice");
    u.join("#share");
    u.say("#share", ".version");
    u.reply("rbot", "#share", "svcshare ");
}
