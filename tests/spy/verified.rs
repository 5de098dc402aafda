//! Every event delivered byte-exact and in order, through evgen -> farmspydaemon ->
//! rspydaemon -> `spycat --lossless --verify`, for event sizes and serving modes.

use super::*;

/// Runs evgen (with `evgen_args`) -> farmspydaemon -> rspydaemon (local buffer of
/// `local_size` bytes) and has `spycat --lossless --verify` check `count` events; returns the
/// environment for further checks.
fn chain_delivers_verified(evgen_args: &[&str], local_size: u64, count: u64) -> Env {
    let mut env = Env::new();
    start_evgen(&mut env, "gen1", "B_1_1", evgen_args);
    let port = start_farm(&mut env, "farm1", "B_1_1");
    start_spy_to(
        &mut env,
        "spy1",
        "L_1_1",
        port,
        &[&format!("set circsize {local_size}"), "init"],
    );
    env.wait_until("connected", || env.get_int("spy1", "no_conn") == 0);
    let mut c = env.command("spycat");
    c.args(["--follow", "--lossless", "--verify", "--count"])
        .arg(count.to_string())
        .args(["-q", "--stats", "L_1_1"]);
    env.run(c).ok().stderr_has("every payload intact");
    env
}

#[test]
fn every_delivered_event_is_byte_exact_and_in_order() {
    chain_delivers_verified(
        &["--circsize", "16M", "--size", "16-20000", "--rate", "20000"],
        8_000_000,
        20_000,
    );
}

/// Large events (read straight from the socket into the local buffer, with the next headers
/// taken in the same system call) mixed with small ones (through the read-ahead buffer).
#[test]
fn large_and_small_events_mixed_arrive_byte_exact() {
    let env = chain_delivers_verified(
        &["--circsize", "64M", "--size", "16-200000", "--rate", "2000"],
        32_000_000,
        4_000,
    );
    assert_eq!(env.get_int("spy1", "ignored"), 0);
}

#[test]
fn each_serving_mode_delivers_verified_events() {
    for mode in ["next", "latest", "push"] {
        let mut env = Env::new();
        start_evgen(
            &mut env,
            "gen1",
            "B_1_1",
            &["--circsize", "8M", "--size", "100-3000", "--rate", "5000"],
        );
        let port = start_farm(&mut env, "farm1", "B_1_1");
        start_spy_to(
            &mut env,
            "spy1",
            "L_1_1",
            port,
            &[&format!("set mode {mode}")],
        );
        assert_eq!(env.get("spy1", "mode"), mode);
        env.wait_until("connected", || env.get_int("spy1", "no_conn") == 0);
        let mut c = env.command("spycat");
        c.args([
            "--follow", "--verify", "--count", "2000", "-q", "--from", "next", "L_1_1",
        ]);
        let o = env.run(c);
        o.ok().stderr_has("every payload intact");
        // latest skips stale events on purpose, and says so.
        if mode == "latest" {
            cmd(&env, "spy1", &["pause"]).ok();
            std::thread::sleep(Duration::from_millis(300));
            let before = env.get_int("spy1", "lastevent");
            let lost_before = env.get_int("spy1", "lost");
            let newest = env.get_int("gen1", "lastevnr");
            cmd(&env, "spy1", &["resume"]).ok();
            env.wait_until("fresh events", || env.get_int("spy1", "lastevent") > newest);
            // The events made during the pause were skipped, and counted (`lost` also counts
            // the jumps before the pause: only its growth says something).
            let skipped = env.get_int("spy1", "lost") - lost_before;
            assert!(
                skipped >= (newest - before) / 2,
                "latest jumped from {before} past {newest} but counted {skipped} lost"
            );
        }
        cmd(&env, "spy1", &["pause"]).ok();
        let a = env.get_int("spy1", "lastevent");
        std::thread::sleep(Duration::from_millis(400));
        let b = env.get_int("spy1", "lastevent");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            env.get_int("spy1", "lastevent"),
            b,
            "{mode}: events while paused ({a} -> {b})"
        );
    }
}
