//! `shvar set`: a write goes through the owner, which checks it and answers old -> new.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use daqproc::control::words::join;
use shvars::{ProcName, RuntimeDir};

use crate::cli::SetArgs;

pub fn run(dir: &RuntimeDir, a: &SetArgs, wait: Duration) -> anyhow::Result<ExitCode> {
    let name = ProcName::new(&a.name)?;
    let value = a.value.join(" ");
    let line = join(&["set", a.var.as_str(), value.as_str()]);
    let reply = daqproc::control::client::send(dir, &name, &line, wait)?;
    if !reply.is_ok() {
        bail!("{name} refused: {}", reply.text());
    }
    println!("{}", reply.text());
    Ok(ExitCode::SUCCESS)
}
