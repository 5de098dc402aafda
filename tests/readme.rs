//! The README's session, run as a newcomer would paste it into a fresh shell after the build:
//! every command in order, in one bash, with its output compared to what the README shows
//! (numbers aside: pids, counts and ages differ from run to run).

use std::process::Command;

use crate::util::{bin, Env};

/// The `console` block of the README's "A process on the framework" section: each command (its
/// `$ ` line without the comment) and the output shown under it.
fn session() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("## A process on the framework")
        .nth(1)
        .expect("the README has its section 'A process on the framework'");
    let block = section
        .split("```console\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a ```console block in that section");
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            let cmd = match cmd.find("  #") {
                Some(i) => cmd[..i].trim_end(),
                None => cmd.trim_end(),
            };
            steps.push((cmd.to_owned(), Vec::new()));
        } else if let Some(last) = steps.last_mut() {
            last.1.push(line.to_owned());
        }
    }
    steps
}

/// A line with every run of digits (and the decimal point between them) as `N`, and blanks
/// collapsed: what must match whatever the pids and counts are.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for c in line.chars() {
        if c.is_ascii_digit() || (in_num && c == '.') {
            if !in_num {
                out.push('N');
                in_num = true;
            }
        } else {
            in_num = false;
            out.push(c);
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_readme_session_works_as_written() {
    let env = Env::new();
    let steps = session();
    assert!(steps.len() >= 8, "{steps:?}");
    // One bash runs the lines in order, as pasted; each command's output goes between markers.
    // The README's target/release is the test build's directory here.
    let target = bin("shvar").parent().unwrap().to_owned();
    let mut script = String::from("set -u\ncd \"$1\"\n");
    for (i, (cmd, _)) in steps.iter().enumerate() {
        let cmd = cmd.replace("$PWD/target/release", &target.to_string_lossy());
        script.push_str(&format!(
            "echo '@@step {i}'\n{cmd} 2>&1\necho \"@@status $?\"\n"
        ));
    }
    // Whatever happens, t1 goes away with the test.
    script.push_str("shvar cmd t1 exit >/dev/null 2>&1 || true\n");
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(&script)
        .arg("bash")
        .arg(env.path(""))
        .env_remove("SHVAR_DIR");
    let out = env.run(c);
    out.ok();
    let mut outputs: Vec<Vec<String>> = vec![Vec::new(); steps.len()];
    let mut cur = None;
    for line in out.stdout.lines() {
        if let Some(i) = line.strip_prefix("@@step ") {
            cur = i.parse::<usize>().ok();
        } else if line.starts_with("@@status ") {
            cur = None;
        } else if let Some(i) = cur {
            outputs[i].push(line.to_owned());
        }
    }
    for ((cmd, expected), got) in steps.iter().zip(&outputs) {
        let want: Vec<String> = expected.iter().map(|l| shape(l)).collect();
        let have: Vec<String> = got.iter().map(|l| shape(l)).collect();
        assert_eq!(
            have,
            want,
            "README command `{cmd}` printed\n{}\nbut the README shows\n{}\n(whole run:\n{})",
            got.join("\n"),
            expected.join("\n"),
            out.stdout
        );
    }
}
