//! `shvar dump`

use std::process::ExitCode;

use serde_json::json;
use shvars::RuntimeDir;

use crate::cli::DumpArgs;
use crate::util::{open, print_json, time_text, value_json, value_text};

/// Widest value column; longer values are cut with `…`.
const VALUE_WIDTH: usize = 40;

/// `text` on one line and at most `width` characters, cut with `…` when it was longer.
fn fit(text: &str, width: usize) -> String {
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= width {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

pub fn run(dir: &RuntimeDir, a: &DumpArgs) -> anyhow::Result<ExitCode> {
    let (name, r) = open(dir, &a.name)?;
    let st = daqproc::control::client::process_status(dir, &name);
    let mut rows = Vec::new();
    for spec in r.specs() {
        let v = r.find(&spec.name)?;
        let (value, changed) = match r.read(&v) {
            Ok(val) => (Ok(val), r.changed_ns(&v)),
            Err(e) => (Err(e.to_string()), 0),
        };
        rows.push((spec.clone(), value, changed));
    }
    if a.json {
        let vars: Vec<_> = rows
            .iter()
            .map(|(s, v, t)| {
                json!({
                    "name": s.name,
                    "type": s.ty.name(),
                    "access": s.access.as_str(),
                    "value": match v { Ok(v) => value_json(s, v, false), Err(e) => json!({"error": e}) },
                    "unit": s.unit,
                    "changed": time_text(*t),
                    "changed_ns": t,
                    "description": s.desc,
                    "min": s.min,
                    "max": s.max,
                    "counter": s.counter,
                })
            })
            .collect();
        print_json(&json!({
            "name": st.name, "pid": st.pid, "status": st.status, "runstate": st.runstate,
            "vars": vars,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} (pid {}, {}, {})",
        st.name,
        st.pid,
        st.status,
        st.runstate.as_deref().unwrap_or("-")
    );
    // A long or multi-line value is cut with a marker so the table stays a table (`--json`
    // and `get` always give it whole).
    let texts: Vec<String> = rows
        .iter()
        .map(|(s, v, _)| match v {
            Ok(v) => fit(&value_text(s, v, false), VALUE_WIDTH),
            Err(e) => fit(&format!("<{e}>"), VALUE_WIDTH),
        })
        .collect();
    let wn = rows
        .iter()
        .map(|r| r.0.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let wv = texts
        .iter()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, VALUE_WIDTH);
    let wu = rows
        .iter()
        .map(|r| r.0.unit.as_deref().unwrap_or("").len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<wn$}  {:<7}  {:<6}  {:<wv$}  {:<wu$}  {:<24}  DESCRIPTION",
        "NAME", "TYPE", "ACCESS", "VALUE", "UNIT", "CHANGED"
    );
    for ((s, _, t), text) in rows.iter().zip(texts) {
        println!(
            "{:<wn$}  {:<7}  {:<6}  {:<wv$}  {:<wu$}  {:<24}  {}",
            s.name,
            s.ty.name(),
            s.access.as_str(),
            text,
            s.unit.as_deref().unwrap_or(""),
            time_text(*t),
            s.desc
        );
    }
    Ok(ExitCode::SUCCESS)
}
