//! `spyctl`, the operator console: the interactive console driven through a real
//! pseudo-terminal (prompt, completion, refusals, Ctrl-C during watch, history), and scripts
//! (`-c` and stdin) with their stop-at-the-first-failure rule.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use expectrl::process::unix::{PtyStream, UnixProcess};
use expectrl::stream::log::LogStream;
use expectrl::{Eof, Regex, Session};

use crate::util::Env;

/// Everything the console wrote to the terminal, shown when an expectation fails.
#[derive(Clone, Default)]
struct Transcript(Arc<Mutex<Vec<u8>>>);

impl Write for Transcript {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Transcript {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A `spyctl` running on a pseudo-terminal, as an operator sees it.
struct Pty {
    session: Session<UnixProcess, LogStream<PtyStream, Transcript>>,
    transcript: Transcript,
}

/// Up arrow, as a terminal sends it.
const UP: &str = "\x1b[A";

impl Pty {
    /// Starts `spyctl ARGS` on a terminal, with HOME and XDG_DATA_HOME inside the test's
    /// directory so the history file belongs to the test.
    fn spawn(env: &Env, args: &[&str]) -> Pty {
        Pty::spawn_with(env, args, |_| {})
    }

    fn spawn_with(env: &Env, args: &[&str], tweak: impl FnOnce(&mut Command)) -> Pty {
        let mut cmd = console_command(env, args);
        // The pseudo-terminal is fd 0: keep it (Env's commands default to /dev/null).
        cmd.stdin(Stdio::inherit()).env("TERM", "xterm");
        tweak(&mut cmd);
        let session = Session::spawn(cmd).expect("spawning spyctl on a pseudo-terminal");
        let transcript = Transcript::default();
        let mut session =
            expectrl::session::log(session, transcript.clone()).expect("logging the session");
        session.set_expect_timeout(Some(Duration::from_secs(15)));
        Pty {
            session,
            transcript,
        }
    }

    #[track_caller]
    fn expect(&mut self, text: &str) {
        if let Err(e) = self.session.expect(text) {
            panic!(
                "spyctl never printed {text:?} ({e})\n--- transcript:\n{}",
                self.transcript.text()
            );
        }
    }

    #[track_caller]
    fn expect_re(&mut self, re: &str) -> String {
        match self.session.expect(Regex(re)) {
            Ok(c) => String::from_utf8_lossy(c.get(0).unwrap_or_default()).into_owned(),
            Err(e) => panic!(
                "spyctl never printed a match of /{re}/ ({e})\n--- transcript:\n{}",
                self.transcript.text()
            ),
        }
    }

    /// Types keys without Enter.
    fn keys(&mut self, keys: &str) {
        self.session.send(keys).expect("typing");
    }

    /// Types a line and Enter.
    fn line(&mut self, line: &str) {
        self.session
            .send(format!("{line}\r"))
            .expect("typing a line");
    }

    /// Ctrl-D on an empty line: spyctl ends by itself, with status 0. Call it after a prompt:
    /// a Ctrl-D typed while a command runs is the terminal's end-of-file, not a key.
    #[track_caller]
    fn ctrl_d_quits(mut self) {
        self.keys("\x04");
        if let Err(e) = self.session.expect(Eof) {
            panic!(
                "spyctl did not end on Ctrl-D ({e})\n{}",
                self.transcript.text()
            );
        }
        let status = self
            .session
            .get_process()
            .wait()
            .expect("waiting for spyctl");
        assert!(
            matches!(status, expectrl::WaitStatus::Exited(_, 0)),
            "spyctl ended with {status:?}\n{}",
            self.transcript.text()
        );
    }
}

/// `spyctl ARGS` with this test's runtime directory and its own HOME and XDG_DATA_HOME.
fn console_command(env: &Env, args: &[&str]) -> Command {
    let mut cmd = env.command("spyctl");
    cmd.args(args)
        .env("HOME", home(env))
        .env("XDG_DATA_HOME", data_home(env));
    cmd
}

fn home(env: &Env) -> PathBuf {
    env.path("home")
}

fn data_home(env: &Env) -> PathBuf {
    env.path("home/data")
}

/// Runs `spyctl ARGS` as a script (no terminal) to completion.
fn script(env: &Env, args: &[&str]) -> crate::util::Out {
    env.run(console_command(env, args))
}

/// Runs `spyctl ARGS` with `text` on stdin.
fn script_stdin(env: &Env, args: &[&str], text: &str) -> crate::util::Out {
    let file = env.path("script.spyctl");
    std::fs::write(&file, text).unwrap();
    let mut cmd = console_command(env, args);
    cmd.stdin(std::fs::File::open(&file).unwrap());
    env.run(cmd)
}

#[test]
fn prompt_shows_the_run_state_and_follows_it() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let mut pty = Pty::spawn(&env, &["-n", "t1"]);
    pty.expect("t1 UNDEFINED_STATE> ");
    pty.line("init");
    pty.expect("initialised");
    pty.expect("t1 INIT_STATE> ");
    assert_eq!(env.get("t1", "runstate"), "INIT_STATE");
    // A change made by someone else shows in the next prompt too.
    script(&env, &["-n", "t1", "-c", "start"]).ok();
    pty.line("");
    pty.expect("t1 RUNNING_STATE> ");
    pty.ctrl_d_quits();
}

#[test]
fn open_selects_a_process_and_list_shows_them() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    env.ticker("t2", &[]);
    script(&env, &["-n", "t2", "-c", "init"]).ok();
    let mut pty = Pty::spawn(&env, &[]);
    pty.expect("spyctl> ");
    pty.line("list");
    pty.expect_re(r"t1 +\d+ +alive +UNDEFINED_STATE");
    pty.expect_re(r"t2 +\d+ +alive +INIT_STATE");
    pty.line("open t9");
    pty.expect("no process named t9");
    pty.expect("spyctl> ");
    // Process names complete after open/use.
    pty.keys("use t2");
    pty.keys("\t");
    pty.line("");
    pty.expect("t2 INIT_STATE> ");
    pty.line("open t1");
    pty.expect("t1 UNDEFINED_STATE> ");
    pty.ctrl_d_quits();
}

#[test]
fn tab_completes_variables_and_the_process_commands() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let mut pty = Pty::spawn(&env, &["-n", "t1"]);
    pty.expect("t1 UNDEFINED_STATE> ");
    pty.keys("get tic");
    pty.keys("\t");
    pty.expect("get ticks");
    pty.line("");
    // Only the completed name reads the variable: `get tic` would be an unknown variable.
    pty.expect("ticks = 0");
    pty.expect("t1 UNDEFINED_STATE> ");
    // set completes only the writable variables: `la` is `label`.
    pty.keys("set la");
    pty.keys("\t");
    pty.line("from-tab");
    pty.expect("label:");
    pty.expect("t1 UNDEFINED_STATE> ");
    assert_eq!(env.get("t1", "label"), "from-tab");
    // The first word completes the process's own commands, read from it with `help --json`.
    pty.keys("ini");
    pty.keys("\t");
    pty.line("");
    pty.expect("initialised");
    pty.expect("t1 INIT_STATE> ");
    pty.ctrl_d_quits();
}

#[test]
fn a_refused_command_shows_why_and_the_session_goes_on() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let mut pty = Pty::spawn(&env, &["-n", "t1"]);
    pty.expect("t1 UNDEFINED_STATE> ");
    pty.line("resume");
    pty.expect("t1 refused 'resume'");
    pty.expect("command 'resume' is not allowed in UNDEFINED_STATE (allowed in: PAUSE_STATE)");
    pty.expect("t1 UNDEFINED_STATE> ");
    pty.line("init");
    pty.expect("t1 INIT_STATE> ");
    pty.line("set rate 0");
    pty.expect("t1 refused 'set rate 0'");
    pty.expect("t1 INIT_STATE> ");
    assert_eq!(env.get("t1", "rate"), "10");
    pty.ctrl_d_quits();
}

#[test]
fn ctrl_c_ends_watch_and_returns_to_the_prompt() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init", "-c", "start"]);
    env.wait_until("t1 to run", || env.get("t1", "runstate") == "RUNNING_STATE");
    let mut pty = Pty::spawn(&env, &["-n", "t1"]);
    pty.expect("t1 RUNNING_STATE> ");
    pty.line("watch ticks --interval 0.05");
    // Two different values: the watch is live, not a single look.
    let first = pty.expect_re(r"Z ticks \d+");
    let mut second = pty.expect_re(r"Z ticks \d+");
    while second == first {
        second = pty.expect_re(r"Z ticks \d+");
    }
    pty.keys("\x03");
    pty.expect("t1 RUNNING_STATE> ");
    // spyctl is still there and still answers.
    pty.line("get rate");
    pty.expect("rate = 10 Hz");
    pty.expect("t1 RUNNING_STATE> ");
    pty.ctrl_d_quits();
}

#[test]
fn history_recalls_the_previous_line_in_a_new_session() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let mut pty = Pty::spawn(&env, &["-n", "t1"]);
    pty.expect("t1 UNDEFINED_STATE> ");
    pty.line("set label remembered");
    pty.expect("t1 UNDEFINED_STATE> ");
    pty.ctrl_d_quits();
    let file = data_home(&env).join("daqproc/spyctl_history");
    let saved = std::fs::read_to_string(&file).expect("the history file");
    assert!(saved.contains("set label remembered"), "{saved}");

    script(&env, &["-n", "t1", "-c", "set label changed"]).ok();
    let mut pty = Pty::spawn(&env, &["-n", "t1"]);
    pty.expect("t1 UNDEFINED_STATE> ");
    pty.keys(UP);
    pty.expect("set label remembered");
    pty.line("");
    pty.expect("label: changed -> remembered");
    pty.expect("t1 UNDEFINED_STATE> ");
    pty.ctrl_d_quits();
    assert_eq!(env.get("t1", "label"), "remembered");
}

#[test]
fn history_falls_back_to_home_without_xdg_data_home() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let mut pty = Pty::spawn_with(&env, &["-n", "t1"], |c| {
        c.env_remove("XDG_DATA_HOME");
    });
    pty.expect("t1 UNDEFINED_STATE> ");
    pty.line("get ticks");
    pty.expect("t1 UNDEFINED_STATE> ");
    pty.ctrl_d_quits();
    let file = home(&env).join(".local/share/daqproc/spyctl_history");
    let saved = std::fs::read_to_string(&file).expect("the history file under HOME");
    assert!(saved.contains("get ticks"), "{saved}");
}

#[test]
fn exit_asks_first_and_quit_leaves_spyctl() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let mut pty = Pty::spawn(&env, &["-n", "t1"]);
    pty.expect("t1 UNDEFINED_STATE> ");
    // A habit from shells: `exit` to leave. It names the process and asks.
    pty.line("exit");
    pty.expect_re(r"'exit' stops it: t1 \(pid \d+\)\. Send it\? \[y/N\] ");
    pty.line("");
    pty.expect("'exit' not sent");
    pty.expect("t1 UNDEFINED_STATE> ");
    env.shvar(&["cmd", "t1", "status"]).ok();
    // Another line as the answer is not run either, and spyctl says so.
    pty.line("exit");
    pty.expect("Send it? [y/N] ");
    pty.line("init");
    pty.expect("the line 'init' was taken as the answer and not run");
    assert_eq!(env.get("t1", "runstate"), "UNDEFINED_STATE");
    // The prompt's help says how to leave.
    pty.line("help spyctl");
    pty.expect("Leave spyctl (Ctrl-D too)");
    pty.line("exit");
    pty.expect("Send it? [y/N] ");
    pty.line("y");
    assert_eq!(env.wait_exit("t1"), 0);
    pty.expect("t1 (not running)> ");
    pty.line("status");
    pty.expect("t1 has exited");
    pty.expect("start it again with `cd ");
    pty.expect("t1 (not running)> ");
    pty.line("quit");
    if let Err(e) = pty.session.expect(Eof) {
        panic!("quit did not end spyctl ({e})\n{}", pty.transcript.text());
    }
}

#[test]
fn confirmation_is_off_for_scripts_and_with_no_confirm() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init", "-c", "start"]);
    // end stops the run: a script never asks.
    script(&env, &["-n", "t1", "-c", "end"]).ok();
    assert_eq!(env.get("t1", "runstate"), "INIT_STATE");
    let mut pty = Pty::spawn(&env, &["-n", "t1", "--no-confirm"]);
    pty.expect("t1 INIT_STATE> ");
    pty.line("exit");
    assert_eq!(env.wait_exit("t1"), 0);
    pty.expect("t1 (not running)> ");
    pty.ctrl_d_quits();
}

#[test]
fn every_pasted_or_typed_ahead_line_runs_in_order() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let mut pty = Pty::spawn(&env, &["-n", "t1"]);
    pty.expect("t1 UNDEFINED_STATE> ");
    // Typed ahead (a paste without bracketed paste): five lines in one go.
    pty.keys("init\rset label a\rset label b\rset label c\rget label\r");
    pty.expect("label: b -> c");
    pty.expect("label = c");
    pty.expect("t1 INIT_STATE> ");
    assert_eq!(env.get("t1", "label"), "c");
    // A terminal's bracketed paste: the lines arrive as one block, then Enter.
    pty.keys("\x1b[200~set label d\nset label e\nget label\n\x1b[201~");
    pty.keys("\r");
    pty.expect("label: d -> e");
    pty.expect("label = e");
    pty.expect("t1 INIT_STATE> ");
    assert_eq!(env.get("t1", "label"), "e");
    pty.ctrl_d_quits();
}

#[test]
fn one_shot_forms_and_launch() {
    let mut env = Env::new();
    env.ticker("t1", &["-c", "init"]);
    let o = script(&env, &["list"]);
    o.ok();
    assert!(
        o.stdout.contains("t1") && o.stdout.contains("INIT_STATE"),
        "{}",
        o.stdout
    );
    script(&env, &["-n", "t1", "get", "runstate", "rate"])
        .ok()
        .stdout_has("runstate = INIT_STATE")
        .stdout_has("rate = 10");
    script(&env, &["-n", "t1", "set", "rate", "20"])
        .ok()
        .stdout_has("rate: 10 -> 20");
    script(&env, &["-n", "t1", "resume"])
        .expect_code(1)
        .stderr_has("not allowed in INIT_STATE");
    // A one-shot exit never asks.
    script(&env, &["-n", "t1", "exit"]).ok();
    assert_eq!(env.wait_exit("t1"), 0);
    // launch starts it again with the command line it recorded, detached.
    let o = script(&env, &["launch", "t1"]);
    o.ok()
        .stdout_has("launching t1:")
        .stdout_has("t1 runs as pid");
    let pid = env.get_int("t1", "pid");
    env.adopt(pid as u32);
    assert_eq!(
        env.get("t1", "runstate"),
        "INIT_STATE",
        "its -c init ran again"
    );
    script(&env, &["launch", "t1"])
        .expect_code(1)
        .stderr_has("t1 is already running");
    script(&env, &["-n", "t1", "exit"]).ok();
}

#[test]
fn script_options_run_in_order() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let out = script(
        &env,
        &[
            "-n",
            "t1",
            "-c",
            "init",
            "-c",
            "set label 'two words'",
            "-c",
            "start",
            "-c",
            "get runstate label",
        ],
    );
    out.ok()
        .stdout_has("initialised\n")
        .stdout_has("runstate = RUNNING_STATE\nlabel = two words\n");
    assert!(
        !out.stdout.contains("STATE> ") && !out.stdout.contains("spyctl> "),
        "no prompt in a script: {}",
        out.stdout
    );
    assert_eq!(env.get("t1", "runstate"), "RUNNING_STATE");
    assert_eq!(env.get("t1", "label"), "two words");

    // `vars`: every variable, read from the region, with type, access, value and unit.
    let out = script(&env, &["-n", "t1", "-c", "set rate 25", "-c", "vars"]);
    out.ok();
    let row = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", out.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("rate")[..5], ["rate", "INTEGER", "R/W", "25", "Hz"]);
    assert_eq!(
        row("label")[..5],
        ["label", "STRING", "R/W", "two", "words"]
    );
    assert_eq!(
        row("runstate")[..4],
        ["runstate", "ENUM", "R", "RUNNING_STATE"]
    );
}

#[test]
fn script_on_stdin_skips_comments_and_blank_lines() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let text = "# bring t1 up\n\ninit\n   # indented comment\nstart\nget runstate\n";
    let out = script_stdin(&env, &["-n", "t1"], text);
    out.ok().stdout_has("runstate = RUNNING_STATE");
    assert_eq!(env.get("t1", "runstate"), "RUNNING_STATE");
    // `open` works in a script too.
    let out = script_stdin(&env, &[], "open t1\npause\n");
    out.ok().stdout_has("paused");
    assert_eq!(env.get("t1", "runstate"), "PAUSE_STATE");
}

#[test]
fn script_stops_at_the_first_failure() {
    let mut env = Env::new();
    env.ticker("t1", &[]);
    let out = script(
        &env,
        &["-n", "t1", "-c", "init", "-c", "resume", "-c", "start"],
    );
    out.expect_code(1)
        .stdout_has("initialised")
        .stderr_has("-c #2: t1 refused 'resume': command 'resume' is not allowed in INIT_STATE (allowed in: PAUSE_STATE)");
    // `start` came after the failure: it never ran.
    assert_eq!(env.get("t1", "runstate"), "INIT_STATE");

    let out = script_stdin(
        &env,
        &["-n", "t1"],
        "# up\nset label first\nget nosuchvar\nset label second\n",
    );
    out.expect_code(1)
        .stderr_has("stdin line 3:")
        .stderr_has("nosuchvar");
    assert_eq!(env.get("t1", "label"), "first");
}

#[test]
fn errors_say_what_is_wrong() {
    let mut env = Env::new();
    // No such process.
    script(&env, &["-n", "t9", "-c", "status"])
        .expect_code(1)
        .stderr_has("no process named t9");
    // Bad usage.
    script(&env, &["-n", "../t1", "-c", "status"])
        .expect_code(2)
        .stderr_has("invalid process name");
    script(&env, &["-w", "0", "-c", "list"]).expect_code(2);
    // No process selected.
    script(&env, &["-c", "init"])
        .expect_code(1)
        .stderr_has("no process selected");

    env.ticker("t1", &[]);
    // Alive but not reading its commands: no answer within -w.
    env.signal("t1", nix::sys::signal::Signal::SIGSTOP);
    let out = script(&env, &["-n", "t1", "-w", "0.5", "-c", "init"]);
    env.signal("t1", nix::sys::signal::Signal::SIGCONT);
    out.expect_code(1)
        .stderr_has("cannot send 'init' to t1")
        .stderr_has("no answer from t1");
    // Dead (stale files): selected with a note, but commands fail.
    env.kill9("t1");
    script(&env, &["-n", "t1", "-c", "status"])
        .expect_code(1)
        .stderr_has("t1 is not running");
}
