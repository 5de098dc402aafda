//! `shvar dump`

use std::process::ExitCode;

use serde_json::json;
use shvars::RuntimeDir;

use crate::cli::DumpArgs;
use daqproc::observe::names::Table;
use daqproc::observe::vartable;

use crate::util::{open, print_json, time_text, value_json};

pub fn run(dir: &RuntimeDir, a: &DumpArgs) -> anyhow::Result<ExitCode> {
    let (name, r) = open(dir, &a.name)?;
    let st = daqproc::control::client::process_status(dir, &name);
    let rows = vartable::read(&r, &a.vars);
    if rows.is_empty() && !a.vars.is_empty() {
        anyhow::bail!("no variable of {name} matches {}", a.vars.join(" "));
    }
    if let Some(table) = &a.table {
        let t = Table::of(
            table,
            rows.iter()
                .map(|r| (r.spec.name.as_str(), vartable::value_text(r))),
        );
        if t.rows.is_empty() {
            anyhow::bail!("{name} has no table {table:?} (no variable named {table}.ROW.COLUMN)");
        }
        print!("{}", t.render(table, vartable::VALUE_WIDTH));
        return Ok(ExitCode::SUCCESS);
    }
    if a.json {
        let vars: Vec<_> = rows
            .iter()
            .map(|row| {
                let (s, v, t) = (&row.spec, &row.value, &row.changed_ns);
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
                    "lolo": s.lolo, "low": s.low, "high": s.high, "hihi": s.hihi,
                    "prec": s.prec,
                    "alarm": v.as_ref().ok().map(|v| s.alarm(v).severity().as_str()),
                    "status": v.as_ref().ok().map(|v| s.alarm(v).as_str()),
                    "counter": s.counter,
                })
            })
            .collect();
        // Structured names also as one nested object of values.
        let tree = daqproc::observe::names::nested(rows.iter().map(|r| {
            let v = match &r.value {
                Ok(v) => value_json(&r.spec, v, false),
                Err(e) => json!({ "error": e }),
            };
            (r.spec.name.clone(), v)
        }));
        print_json(&json!({
            "name": st.name, "pid": st.pid, "status": st.status, "runstate": st.runstate,
            "vars": vars, "values": tree,
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
    print!(
        "{}",
        vartable::render(&rows, vartable::Columns { changed: true })
    );
    Ok(ExitCode::SUCCESS)
}
