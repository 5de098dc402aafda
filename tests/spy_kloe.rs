//! KLOE's pieces (issue 12): spy data files (`spycat --save FILE`, `spycat file:PATH`) and
//! ybosspydaemon, which replays one into a local buffer.

use crate::spy::{cmd, start_evgen};
use crate::util::Env;

/// Saves `n` events of evgen gen1 to DIR/run.spy; returns the path.
fn saved_run(env: &mut Env, n: u64) -> std::path::PathBuf {
    start_evgen(
        env,
        "gen1",
        "gen1",
        &["--rate", "5000", "--size", "16-3000"],
    );
    let file = env.path("run.spy");
    let mut c = env.command("spycat");
    c.args([
        "-n",
        "gen1",
        "--follow",
        "--count",
        &n.to_string(),
        "-q",
        "--save",
    ])
    .arg(&file);
    env.run(c).ok();
    file
}

#[test]
fn issue12_spycat_saves_a_data_file_and_reads_it_back() {
    let mut env = Env::new();
    let file = saved_run(&mut env, 300);
    let mut c = env.command("spycat");
    c.arg(format!("file:{}", file.display())).arg("--verify");
    let o = env.run(c);
    o.ok()
        .stderr_has("verified 300 events: every payload intact");
    assert_eq!(o.stdout.lines().count(), 300);
    assert!(o.stdout.lines().all(|l| l.ends_with(" ok")));
    // Not a data file, or cut short: clear errors.
    std::fs::write(env.path("notes"), "some text, not events").unwrap();
    let mut c = env.command("spycat");
    c.arg(format!("file:{}", env.path("notes").display()));
    env.run(c)
        .expect_code(1)
        .stderr_has("is not a spy data file");
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len - 5).unwrap();
    let mut c = env.command("spycat");
    c.arg(format!("file:{}", file.display())).arg("--verify");
    let o = env.run(c);
    o.expect_code(1)
        .stderr_has("is truncated: it ends inside the event at byte");
    assert_eq!(o.stdout.lines().count(), 299, "the good events come first");
}

#[test]
fn issue12_ybosspydaemon_replays_a_file_with_kloe_variables() {
    let mut env = Env::new();
    let file = saved_run(&mut env, 50);
    let first: u64 = {
        let mut c = env.command("spycat");
        c.arg(format!("file:{}", file.display()))
            .args(["--count", "1"]);
        let o = env.run(c);
        o.ok();
        o.stdout.split_whitespace().next().unwrap().parse().unwrap()
    };
    let mut c = env.command("ybosspydaemon");
    c.args([
        "-n",
        "ybos1",
        "-c",
        "set lname L_1",
        "-c",
        "set skip 10",
        "-c",
        &format!("init {}", file.display()),
    ]);
    let pid = env.spawn("ybos1", c);
    env.wait_ready("ybos1", pid);
    env.wait_until("init", || env.get("ybos1", "runstate") == "INIT_STATE");
    // KLOE's defaults.
    assert_eq!(env.get_int("ybos1", "maxevents"), 100);
    assert_eq!(env.get("ybos1", "at_EOF"), "stop");
    assert_eq!(env.get_int("ybos1", "bufsize"), 1 << 20);
    assert_eq!(env.get("ybos1", "fname"), file.display().to_string());
    cmd(&env, "ybos1", &["start"]).ok();
    env.wait_until("the end of the file", || env.get_int("ybos1", "eof") == 1);
    assert_eq!(env.get_int("ybos1", "events"), 40);
    let mut c = env.command("spycat");
    c.args(["L_1", "--verify"]);
    let o = env.run(c);
    o.ok()
        .stderr_has("verified 40 events: every payload intact");
    let got: Vec<u64> = o
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(got[0], first + 10, "skip 10");
    // Looping: numbers keep increasing through the passes.
    cmd(&env, "ybos1", &["end"]).ok();
    env.shvar(&["set", "ybos1", "at_EOF", "loop"]).ok();
    env.shvar(&["set", "ybos1", "rate", "0"]).ok();
    cmd(&env, "ybos1", &["start"]).ok();
    env.wait_until("three passes", || env.get_int("ybos1", "passes") >= 4);
    // (Renumbered events no longer match the number evgen put in their payload: no --verify.)
    let mut c = env.command("spycat");
    c.arg("L_1");
    let o = env.run(c);
    o.ok();
    let got: Vec<u64> = o
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "numbers go back");
    assert!(*got.last().unwrap() > first + 3 * 40, "{got:?}");
    cmd(&env, "ybos1", &["pause"]).ok();
    cmd(&env, "ybos1", &["resume"]).ok();
    cmd(&env, "ybos1", &["exit"]).ok();
    assert_eq!(env.wait_exit("ybos1"), 0);
    assert!(!env.path("L_1").exists(), "the buffer is removed at exit");
    // A file that is not one: init says so.
    std::fs::write(env.path("junk"), "junk").unwrap();
    let mut c = env.command("ybosspydaemon");
    c.args(["-n", "ybos2"]);
    let pid = env.spawn("ybos2", c);
    env.wait_ready("ybos2", pid);
    cmd(&env, "ybos2", &["init", env.path("junk").to_str().unwrap()])
        .expect_code(1)
        .stderr_has("is not a spy data file");
}
