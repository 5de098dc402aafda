//! `shvar cmd`

use std::process::ExitCode;
use std::time::Duration;

use daqproc::control::words::join;
use shvars::{ProcName, RuntimeDir};

use crate::cli::CmdArgs;

pub fn run(dir: &RuntimeDir, a: &CmdArgs, wait: Duration) -> anyhow::Result<ExitCode> {
    let name = ProcName::new(&a.name)?;
    let line = join(&a.command);
    if a.no_wait {
        daqproc::control::client::send_nowait(dir, &name, &line)?;
        return Ok(ExitCode::SUCCESS);
    }
    let reply = daqproc::control::client::send(dir, &name, &line, wait)?;
    let text = reply.text();
    if reply.is_ok() {
        if !text.is_empty() {
            println!("{text}");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("shvar: {name}: {text}");
        Ok(ExitCode::FAILURE)
    }
}
