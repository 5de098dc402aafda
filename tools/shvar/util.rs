//! Helpers the verbs share.

use anyhow::Context;
use shvars::region::{RegionReader, Value, VarSpec};
use shvars::{ProcName, RuntimeDir};

/// Opens the region of `name`, with errors that say what to do.
pub fn open(dir: &RuntimeDir, name: &str) -> anyhow::Result<(ProcName, RegionReader)> {
    let n = ProcName::new(name)?;
    let r = RegionReader::open(dir, &n)?;
    Ok((n, r))
}

pub use daqproc::observe::watch::time_text;

/// A value as text: enum labels unless `raw`.
pub fn value_text(spec: &VarSpec, v: &Value, raw: bool) -> String {
    if raw {
        v.to_string()
    } else {
        spec.display(v)
    }
}

/// A value as JSON: enum labels unless `raw`.
pub fn value_json(spec: &VarSpec, v: &Value, raw: bool) -> serde_json::Value {
    match v {
        Value::Int(i) if !raw => match spec.label(*i) {
            Some(l) => serde_json::Value::from(l),
            None => serde_json::Value::from(*i),
        },
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Value::from(*f),
        Value::Str(s) => serde_json::Value::from(s.as_str()),
    }
}

/// Prints JSON to stdout.
pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).context("encoding JSON")?
    );
    Ok(())
}

/// Age in seconds for people.
pub fn age_text(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s ago")
    } else if secs < 3600.0 {
        format!("{:.0}m ago", secs / 60.0)
    } else if secs < 86400.0 {
        format!("{:.1}h ago", secs / 3600.0)
    } else {
        format!("{:.1}d ago", secs / 86400.0)
    }
}

pub use daqproc::observe::names::resolve;
