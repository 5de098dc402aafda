//! `shvar export`

use std::process::ExitCode;

use anyhow::Context;
use shvars::RuntimeDir;

use crate::cli::{ExportArgs, ExportFormat};
use crate::util::print_json;

pub fn run(dir: &RuntimeDir, a: &ExportArgs) -> anyhow::Result<ExitCode> {
    let snap = daqproc::observe::metrics::snapshot(dir)
        .with_context(|| format!("cannot list the processes in {dir}"))?;
    let format = if a.json { ExportFormat::Json } else { a.format };
    match format {
        ExportFormat::Prometheus => {
            print!("{}", daqproc::observe::metrics::prometheus::render(&snap))
        }
        ExportFormat::Json => print_json(&snap)?,
    }
    Ok(ExitCode::SUCCESS)
}
