//! `shvar list`

use std::process::ExitCode;

use daqproc::observe::liveness::Liveness;
use shvars::RuntimeDir;

use crate::cli::ListArgs;
use crate::util::{age_text, print_json};

pub fn run(dir: &RuntimeDir, a: &ListArgs) -> anyhow::Result<ExitCode> {
    let procs = daqproc::control::client::list(dir)?;
    if a.json {
        print_json(&procs)?;
        return Ok(ExitCode::SUCCESS);
    }
    if procs.is_empty() {
        eprintln!("no processes in {dir}");
        return Ok(ExitCode::SUCCESS);
    }
    let w = procs.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<w$}  {:>7}  {:<7}  {:<15}  HEARTBEAT",
        "NAME", "PID", "STATUS", "RUNSTATE"
    );
    for p in &procs {
        let hb = match (p.status, p.heartbeat_age) {
            (Liveness::Alive, Some(s)) => age_text(s),
            (_, Some(s)) => format!("(last {})", age_text(s)),
            _ => "-".to_owned(),
        };
        println!(
            "{:<w$}  {:>7}  {:<7}  {:<15}  {}",
            p.name,
            p.pid,
            p.status.as_str(),
            p.runstate.as_deref().unwrap_or("-"),
            p.error.as_deref().unwrap_or(&hb)
        );
    }
    Ok(ExitCode::SUCCESS)
}
