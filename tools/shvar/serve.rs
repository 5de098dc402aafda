//! `shvar serve`

use std::process::ExitCode;

use daqproc::observe::metrics::http;
use shvars::RuntimeDir;

use crate::cli::ServeArgs;

pub fn run(dir: &RuntimeDir, a: &ServeArgs) -> anyhow::Result<ExitCode> {
    let listener = http::bind(a.listen).map_err(anyhow::Error::msg)?;
    let addr = listener.local_addr().unwrap_or(a.listen);
    eprintln!("shvar: serving the variables of the processes in {dir} at http://{addr}/metrics");
    http::serve(listener, dir.clone())
        .map_err(|e| anyhow::anyhow!("stopped serving on {addr}: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
