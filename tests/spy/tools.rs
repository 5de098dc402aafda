//! The spy tools around the chain: the main job (spydemo) and spycat's options.

use super::*;

#[test]
fn the_main_job_runs_the_chain_and_leaves_nothing() {
    let env = Env::new();
    // Without SHVAR_DIR: a directory of its own, removed at the end.
    let mut c = env.command("spydemo");
    c.env_remove("SHVAR_DIR").args(["--seconds", "2"]);
    let o = env.run(c);
    o.ok()
        .stdout_has("chain: evgen gen1 -> B_1_1 -> farmspydaemon farm1")
        .stdout_has("every payload intact")
        .stdout_has("all stopped, nothing left behind");
    let dir = o
        .stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("runtime directory: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
}

#[test]
fn issue18_spydemo_honours_shvar_dir_and_fits_100_columns() {
    let env = Env::new();
    let mut c = env.command("spydemo");
    c.args(["--seconds", "2"]);
    let o = env.run(c);
    o.ok()
        .stdout_has(&format!("runtime directory: {}", env.dir().display()))
        .stdout_has("spycat: ")
        .stdout_has("all stopped, nothing left behind");
    for l in o.stdout.lines().filter(|l| l.contains(" | ")) {
        assert!(
            l.chars().count() <= 100,
            "{} columns: {l}",
            l.chars().count()
        );
    }
    let left: Vec<_> = std::fs::read_dir(env.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in SHVAR_DIR: {left:?}");
}

#[test]
fn issue18_spycat_n_is_the_name_and_count_is_long_only() {
    let mut env = Env::new();
    start_evgen(&mut env, "gen1", "gen1", &["--rate", "1000"]);
    let mut c = env.command("spycat");
    c.args(["-n", "gen1", "--count", "5"]);
    let o = env.run(c);
    o.ok();
    assert_eq!(o.stdout.lines().count(), 5, "{}", o.stdout);
    let mut c = env.command("spycat");
    c.args(["-n", "5", "gen1"]);
    env.run(c).expect_code(2);
    let mut c = env.command("spycat");
    c.args(["-n", "5"]);
    env.run(c)
        .expect_code(2)
        .stderr_has("-n now names the buffer to read")
        .stderr_has("--count 5");
}
