//! Shell completion of live names: the processes of the runtime directory and the variables of
//! one of them, for `shvar get <TAB>` and `shvar get spy1 sg_<TAB>` (as `systemctl <TAB>`
//! completes units). The completers are called by clap_complete's dynamic completion (the shell
//! runs the binary with `COMPLETE=bash` and the words typed so far), so they find the runtime
//! directory and the process named on the line from those words.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap_complete::engine::CompletionCandidate;
use shvars::region::RegionReader;
use shvars::{ProcName, RuntimeDir};

/// The words of the line being completed (after the `--` the shell passes).
fn words() -> Vec<OsString> {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => args,
    }
}

/// The runtime directory the line names (`--dir X` or `--dir=X`), else the default.
fn dir_of(words: &[OsString]) -> RuntimeDir {
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let w = w.to_string_lossy();
        if w == "--dir" {
            if let Some(d) = it.next() {
                return RuntimeDir::at(PathBuf::from(d));
            }
        } else if let Some(d) = w.strip_prefix("--dir=") {
            return RuntimeDir::at(d);
        }
    }
    RuntimeDir::from_env()
}

fn starts(current: &OsStr) -> String {
    current.to_string_lossy().into_owned()
}

/// The processes of the runtime directory whose name starts with what is typed, with their
/// run state as help.
pub fn process_name(current: &OsStr) -> Vec<CompletionCandidate> {
    let dir = dir_of(&words());
    let prefix = starts(current);
    let Ok(names) = dir.process_names() else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter(|n| n.as_str().starts_with(&prefix))
        .map(|n| {
            let st = super::liveness::process_status(&dir, &n);
            let help = match st.runstate {
                Some(r) => format!("{} {r}", st.status),
                None => st.status.to_string(),
            };
            CompletionCandidate::new(n.as_str()).help(Some(help.into()))
        })
        .collect()
}

/// The variables of the process named earlier on the line whose name starts with what is typed,
/// with their description as help.
pub fn variable_name(current: &OsStr) -> Vec<CompletionCandidate> {
    let words = words();
    let dir = dir_of(&words);
    let prefix = starts(current);
    let typed = current.to_string_lossy();
    // The process: the first word (not the one being completed) that names a region here.
    let Some(name) = words
        .iter()
        .skip(1)
        .filter(|w| w.to_string_lossy() != typed)
        .filter_map(|w| ProcName::new(&w.to_string_lossy()).ok())
        .find(|n| dir.region_path(n).exists())
    else {
        return Vec::new();
    };
    let Ok(r) = RegionReader::open(&dir, &name) else {
        return Vec::new();
    };
    r.specs()
        .iter()
        .filter(|s| s.name.starts_with(&prefix))
        .map(|s| CompletionCandidate::new(s.name.as_str()).help(Some(s.desc.clone().into())))
        .collect()
}
