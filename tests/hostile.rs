//! The control plane as a hostile local user sees it: a second uid in a shared runtime directory
//! (mode 1777, like /dev/shm/shvars) planting files, forging answers, flooding and stalling the
//! owner. Each test names the hole of issue 10 it closes; each failed on the first protocol.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::need_stranger;
use crate::util::{junk, write_fifo, Env};

/// Hole 2: replies could be forged or blocked by another user. Now the stranger can read what
/// everyone can (`status`), is refused everything else, and cannot stand between root's client
/// and the process: every one of root's answers is the process's own.
#[test]
fn a_stranger_can_neither_command_nor_forge_nor_block_answers() {
    let who = need_stranger!();
    let mut env = Env::new();
    env.share();
    env.ticker("t1", &[]);
    // The stranger's own commands: reads are open, the rest is denied, and nothing changes.
    let run_as = |args: &[&str]| {
        let mut c = env.command_as("shvar", who);
        c.args(args);
        env.run(c)
    };
    run_as(&["cmd", "t1", "status"])
        .ok()
        .stdout_has("t1 UNDEFINED_STATE");
    for cmd in [&["init"][..], &["exit"], &["set", "label", "x"]] {
        let mut args = vec!["cmd", "t1"];
        args.extend_from_slice(cmd);
        run_as(&args)
            .expect_code(1)
            .stderr_has(&format!("may not run '{}' on t1", cmd[0]));
    }
    run_as(&["set", "t1", "rate", "5"])
        .expect_code(1)
        .stderr_has("may not run 'set'");
    assert_eq!(env.get("t1", "runstate"), "UNDEFINED_STATE");
    assert_eq!(env.get_int("t1", "rate"), 10);
    // It cannot write the FIFO either (mode 0600).
    run_as(&["cmd", "--no-wait", "t1", "init"])
        .expect_code(1)
        .stderr_has("Permission denied");
    // Meanwhile it hammers the directory and the socket: planted reply FIFOs, junk, tokens.
    let hammer = {
        let mut c = env.program_as("/usr/bin/python3", who);
        c.args([
            "-c",
            r#"
import os, socket, time
end = time.time() + 4
i = 0
while time.time() < end:
    i += 1
    for name in ("t1.%d.0.reply" % i, "t1.sock.new"):
        try: os.mkfifo(name, 0o666)
        except OSError: pass
    try:
        s = socket.socket(socket.AF_UNIX); s.connect("t1.sock")
        s.sendall(b"@t1.ctl exit\n\xff\xfe junk\nexit\n" + os.urandom(300))
        s.close()
    except OSError: pass
"#,
        ]);
        env.spawn("hammer", c)
    };
    let _ = hammer;
    for _ in 0..20 {
        let o = env.shvar(&["-w", "5", "cmd", "t1", "status"]);
        o.ok().stdout_has("t1 UNDEFINED_STATE").stdout_has("pid: ");
    }
    env.wait_exit("hammer");
    env.shvar(&["cmd", "t1", "status"]).ok();
    assert_eq!(env.get("t1", "runstate"), "UNDEFINED_STATE");
    assert!(env.get_int("t1", "ctlerrors") > 0, "the junk is counted");
}

/// Hole 2, the planted socket: the owner of `t5` exited cleanly (its socket is gone); the
/// stranger holds a lock on the dead region (so it looks alive) and answers on a `t5.sock` of
/// its own. Root's `shvar cmd t5` must not print the stranger's answer.
#[test]
fn a_planted_socket_is_never_believed() {
    let who = need_stranger!();
    let mut env = Env::new();
    env.share();
    env.ticker("t5", &[]);
    env.shvar(&["cmd", "t5", "exit"]).ok();
    env.wait_exit("t5");
    assert!(!env.path("t5.sock").exists());
    let mut c = env.program_as("/usr/bin/python3", who);
    c.args([
        "-c",
        r#"
import fcntl, socket, os
f = open("t5.shv", "rb"); fcntl.flock(f, fcntl.LOCK_EX)
s = socket.socket(socket.AF_UNIX); s.bind("t5.sock"); os.chmod("t5.sock", 0o666); s.listen(8)
open("squatting", "w").close()
while True:
    c, _ = s.accept()
    c.recv(4096); c.sendall(b"ok 21\nt5 RUNNING_STATE lies\n"); c.close()
"#,
    ]);
    env.spawn("squatter", c);
    env.wait_until("the squatter to be in place", || {
        env.path("squatting").exists()
    });
    let o = env.shvar(&["cmd", "t5", "status"]);
    assert!(
        !o.stdout.contains("lies"),
        "a forged answer was printed: {}",
        o.stdout
    );
    o.expect_code(1);
    assert!(
        o.stderr.contains("planted")
            || o.stderr.contains("not running")
            || o.stderr.contains("has exited"),
        "{}",
        o.stderr
    );
}

/// Hole 3: a client that never reads its replies stalled every command 2 s per request. Now
/// it is dropped (and counted) and nobody else waits.
#[test]
fn clients_that_never_read_their_replies_stall_nobody() {
    let mut env = Env::new();
    env.ticker("t2", &[]);
    let sock = env.path("t2.sock");
    // 30 clients that each ask for 2,000 help texts (MBs of replies) and never read one.
    let mut hogs = Vec::new();
    for _ in 0..30 {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_nonblocking(true).unwrap();
        let req = "help\n".repeat(2000);
        let _ = s.write(req.as_bytes());
        hogs.push(s);
    }
    // Every command of a well-behaved client is answered within its usual wait meanwhile.
    for _ in 0..20 {
        env.shvar(&["-w", "2", "cmd", "t2", "status"]).ok();
    }
    env.wait_until("the hogs to be dropped and counted", || {
        env.get_int("t2", "ctlerrors") >= 30
    });
    assert!(env
        .stderr_of("t2")
        .contains("did not read its reply within 5 s"));
    // A dropped hog sees its connection closed, not a hang.
    let mut buf = vec![0u8; 1 << 20];
    let mut s = hogs.pop().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => {
                panic!("the dropped client's connection did not close: {e} after {total} bytes")
            }
        }
    }
    env.shvar(&["cmd", "t2", "status"]).ok();
}

/// Hole 4: 100,000 random bytes without a final newline swallowed the next good command.
#[test]
fn junk_without_a_final_newline_does_not_swallow_the_next_command() {
    let mut env = Env::new();
    env.ticker("t3", &[]);
    // Junk, then a tail without a newline (in one write of its own, so that it is the bytes
    // left when the owner has read everything).
    let mut bytes = junk(100_000, 7);
    bytes.push(b'\n');
    write_fifo(&env.path("t3.ctl"), &bytes).unwrap();
    write_fifo(&env.path("t3.ctl"), b"TAILMARK junk").unwrap();
    env.wait_until("the unterminated tail to be discarded", || {
        env.stderr_of("t3")
            .contains("13 bytes without a final newline discarded (\"TAILMARK junk\"")
    });
    write_fifo(&env.path("t3.ctl"), b"init\n").unwrap();
    env.wait_until("init through the FIFO", || {
        env.get("t3", "runstate") == "INIT_STATE"
    });
    // And the socket never depended on the FIFO.
    env.shvar(&["cmd", "t3", "status"])
        .ok()
        .stdout_has("INIT_STATE");
}

/// Hole 6: a regular file at NAME.ctl was written into as if it were the FIFO.
#[test]
fn a_regular_file_at_the_fifo_path_is_refused() {
    let mut env = Env::new();
    env.ticker("t6", &[]);
    fs::remove_file(env.path("t6.ctl")).unwrap();
    fs::write(env.path("t6.ctl"), "").unwrap();
    env.shvar(&["cmd", "--no-wait", "t6", "init"])
        .expect_code(1)
        .stderr_has("t6.ctl is a regular file, not a FIFO: refusing");
    assert_eq!(fs::read(env.path("t6.ctl")).unwrap(), b"");
    env.shvar(&["cmd", "t6", "status"]).ok();
}

/// Hole 6/7 at start-up: another user's file where the process's FIFO or socket goes stops the
/// start with that user named, instead of being used. (Here the process runs as the second user
/// and root planted the file: in a sticky directory nobody but root may remove another's file.)
#[test]
fn another_users_file_in_the_way_is_named_at_start() {
    let who = need_stranger!();
    let mut env = Env::new();
    env.share();
    fs::write(env.path("t7.sock"), "").unwrap();
    let mut t = env.command_as("ticker", who);
    t.args(["-n", "t7"]);
    let o = env.run(t);
    o.expect_code(1)
        .stderr_has("t7.sock")
        .stderr_has("belongs to root (uid 0)")
        .stderr_has("Remove it as root, or use another name");
    // Root's own process replaces what a stranger planted, and says so.
    let mut c = env.program_as("/usr/bin/python3", who);
    c.args(["-c", "open('t8.ctl', 'w').close()"]);
    env.run(c).ok();
    env.ticker("t8", &[]);
    env.wait_until("the removal to be logged", || {
        env.stderr_of("t8").contains("t8.ctl of daqproc-stranger")
    });
    env.shvar(&["cmd", "--no-wait", "t8", "init"]).ok();
    env.wait_until("init through the FIFO", || {
        env.get("t8", "runstate") == "INIT_STATE"
    });
}

/// Hole 8: a planted NAME.log symlink made root append to a root-only file.
#[test]
fn a_planted_log_link_is_refused() {
    let who = need_stranger!();
    let env = Env::new();
    env.share();
    // The stranger was first to make the shared directory (as anyone may, for /dev/shm/shvars):
    // the kernel's protected_symlinks then lets root follow the stranger's links in it.
    nix::unistd::chown(env.dir(), Some(nix::unistd::Uid::from_raw(who.uid)), None).unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    fs::write(secret.path(), "root only\n").unwrap();
    fs::set_permissions(secret.path(), fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = env.program_as("ln", who);
    c.args(["-s", &secret.path().to_string_lossy(), "t8.log"]);
    env.run(c).ok();
    let mut t = env.command("ticker");
    t.args(["-n", "t8", "--daemon"]);
    let o = env.run(t);
    o.expect_code(1)
        .stderr_has("t8.log: is a symbolic link: refusing to write a log through it");
    assert_eq!(fs::read_to_string(secret.path()).unwrap(), "root only\n");
}

/// Hole 9: `shvar get` of a dead process printed its last values as if it ran.
#[test]
fn get_of_a_dead_process_says_so_and_exits_3() {
    let mut env = Env::new();
    env.ticker("t9", &["-c", "init"]);
    env.kill9("t9");
    let o = env.shvar(&["get", "t9", "runstate"]);
    o.expect_code(3)
        .stdout_has("INIT_STATE")
        .stderr_has("t9 is not running")
        .stderr_has("these are the last values it published");
    let live = env.ticker("t10", &[]);
    let _ = live;
    env.shvar(&["get", "t10", "runstate"]).ok();
}

/// The per-user bound: a stranger holding connections cannot lock out the owner.
#[test]
fn a_stranger_cannot_exhaust_the_connections() {
    let who = need_stranger!();
    let mut env = Env::new();
    env.share();
    env.ticker("t11", &[]);
    let mut c = env.program_as("/usr/bin/python3", who);
    c.args([
        "-c",
        r#"
import socket, time
held = []
for i in range(20):
    s = socket.socket(socket.AF_UNIX); s.connect("t11.sock"); held.append(s)
time.sleep(0.2)
refused = 0
for s in held:
    s.setblocking(False)
    try:
        if b"too many connections" in s.recv(4096): refused += 1
    except BlockingIOError: pass
print(refused)
open("holding", "w").close()
time.sleep(30)
"#,
    ]);
    env.spawn_capturing("holder", c);
    env.wait_until("the stranger to hold its connections", || {
        env.path("holding").exists()
    });
    assert_eq!(env.stdout_of("holder").trim(), "16", "4 kept, 16 refused");
    for _ in 0..10 {
        env.shvar(&["cmd", "t11", "status"]).ok();
    }
}

/// Hole 5: a FIFO named `NAME.shv` made every reader hang forever in open(). Now every tool
/// refuses it at once and says what it is and whose; `shvar list` shows it and goes on; a
/// process of that name (root's, which may remove it) starts in its place; a stranger's start
/// meets root's planted FIFO with an error that names it.
#[test]
fn a_fifo_in_place_of_a_region_hangs_nobody() {
    let who = need_stranger!();
    let mut env = Env::new();
    env.share();
    env.ticker("t1", &[]);
    let mut c = env.program_as("/usr/bin/python3", who);
    c.args(["-c", "import os; os.mkfifo('v.shv', 0o666)"]);
    env.run(c).ok();
    let refusal = "v.shv is a FIFO of uid";
    for args in [
        &["get", "v", "runstate"][..],
        &["dump", "v"],
        &["watch", "--count", "1", "v", "runstate"],
        &["cmd", "v", "status"],
    ] {
        env.shvar(args).expect_code(1).stderr_has(refusal);
    }
    let l = env.shvar(&["list"]);
    l.ok().stdout_has(refusal).stdout_has("t1 ");
    env.shvar(&["export"])
        .ok()
        .stdout_has("shvar_up{process=\"t1\"} 1");
    let mut c = env.command("spyctl");
    c.args(["-n", "v", "get", "runstate"]);
    let o = env.run(c);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains(refusal) || o.stdout.contains(refusal),
        "{o:?}"
    );
    // A stranger's process of that name cannot take root's FIFO away...
    let mut c = env.program_as("/usr/bin/python3", who);
    c.args(["-c", "import os; os.unlink('v.shv')"]);
    env.run(c).ok();
    nix::unistd::mkfifo(
        &env.path("v.shv"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let mut t = env.command_as("ticker", who);
    t.args(["-n", "v"]);
    env.run(t)
        .expect_code(1)
        .stderr_has("v.shv is a FIFO of uid 0, not a regular file");
    // ...and root's own start replaces it, then serves.
    env.ticker("v", &[]);
    assert_eq!(env.get("v", "runstate"), "UNDEFINED_STATE");
    // `shvar cleanup` removes one of its own and never blocks on it.
    nix::unistd::mkfifo(
        &env.path("w.shv"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    env.shvar(&["cleanup"])
        .ok()
        .stdout_has("w.shv (a FIFO in place of a region)");
    assert!(!env.path("w.shv").exists());
}

/// A process that takes a lock on the region file `name.shv` and says so on stdout ("locked"),
/// then holds it until it is killed.
fn squat(env: &mut Env, label: &str, file: &str, who: Option<crate::util::Stranger>) {
    let mut c = match who {
        Some(w) => env.program_as("/usr/bin/python3", w),
        None => {
            let mut c = std::process::Command::new("/usr/bin/python3");
            c.current_dir(env.dir()).stdin(std::process::Stdio::null());
            c
        }
    };
    c.args([
        "-c",
        &format!(
            "import fcntl, sys, time\nf = open('{file}', 'rb')\nfcntl.flock(f, fcntl.LOCK_SH)\nprint('locked', flush=True)\ntime.sleep(3600)"
        ),
    ]);
    env.spawn_capturing(label, c);
    env.wait_until("the squatter to hold its lock", || {
        env.stdout_of(label).contains("locked")
    });
}

/// Hole 7: a lock held by another user on a dead process's region blocked its restart ("t6 is
/// already running as pid N" for a dead pid). Now the dead owner is told from the squatter: the
/// legitimate owner starts anyway, and where the file is not ours to replace, the error names
/// the lockers, the file's owner and what to do.
#[test]
fn a_squatted_lock_does_not_stop_a_restart() {
    let who = need_stranger!();
    let mut env = Env::new();
    env.share();
    let dead = env.ticker("t6", &[]);
    env.kill9("t6");
    squat(&mut env, "squatter", "t6.shv", Some(who));
    // Readers are not fooled either: the lock is not a live owner.
    env.shvar(&["get", "t6", "runstate"])
        .expect_code(3)
        .stderr_has("is not running");
    env.shvar(&["list"]).ok().stdout_has(" stale ");
    let pid = env.ticker("t6", &[]);
    assert_ne!(pid, dead);
    assert_eq!(env.get("t6", "runstate"), "UNDEFINED_STATE");
    env.shvar(&["cmd", "t6", "init"]).ok();
    assert_eq!(env.get("t6", "runstate"), "INIT_STATE");
    // A live owner is still a live owner, lock or no lock.
    let mut again = env.command("ticker");
    again.args(["-n", "t6"]);
    env.run(again)
        .expect_code(1)
        .stderr_has(&format!("t6 is already running as pid {pid}"));
    // Root's dead region, squatted by root: the stranger may not replace root's file, and is
    // told who holds it.
    env.ticker("t10", &[]);
    env.kill9("t10");
    squat(&mut env, "rootsquat", "t10.shv", None);
    let mut t = env.command_as("ticker", who);
    t.args(["-n", "t10"]);
    env.run(t)
        .expect_code(1)
        .stderr_has("is locked by pid")
        .stderr_has("(uid 0, python3)")
        .stderr_has("not by a live t10")
        .stderr_has("belongs to uid 0");
}
