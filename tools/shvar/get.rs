//! `shvar get`

use std::process::ExitCode;

use serde_json::json;
use shvars::region::{OpenError, RegionReader, VarRef};
use shvars::RuntimeDir;

use daqproc::observe::liveness::Liveness;
use daqproc::observe::names::is_pattern;

use crate::cli::{GetArgs, EXIT_NOT_RUNNING};
use crate::util::{open, print_json, resolve, time_text, value_json, value_text};

/// Opens the region and resolves every name first: a typo fails the whole call before anything
/// is printed.
///
/// Plain names (no pattern) read only their own schema entries, not every variable's: that
/// parse is most of a cold `get`. Whatever goes wrong that way (a name that is not there, a
/// damaged entry) is done again with the whole schema, which gives the error with its
/// suggestions exactly as before; errors the two share (no region, not ready, newer format)
/// are not.
fn open_and_resolve(dir: &RuntimeDir, a: &GetArgs) -> anyhow::Result<(RegionReader, Vec<VarRef>)> {
    if !a.vars.iter().any(|v| is_pattern(v)) {
        let n = shvars::ProcName::new(&a.name)?;
        let names: Vec<&str> = a.vars.iter().map(String::as_str).collect();
        match RegionReader::open_only(dir, &n, &names) {
            Ok(r) => {
                if let Ok(vars) = resolve(&r, &a.vars) {
                    return Ok((r, vars));
                }
            }
            Err(OpenError::Corrupt { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (_, r) = open(dir, &a.name)?;
    let vars = resolve(&r, &a.vars)?;
    Ok((r, vars))
}

pub fn run(dir: &RuntimeDir, a: &GetArgs) -> anyhow::Result<ExitCode> {
    let (r, vars) = open_and_resolve(dir, a)?;
    // With a pattern, each line says which variable it is.
    let named = a.vars.iter().any(|v| is_pattern(v));
    let mut values = Vec::with_capacity(vars.len());
    for v in &vars {
        values.push((r.read(v)?, r.changed_ns(v)));
    }
    if a.json {
        // Structured names nest: {"worker": {"3": {"state": ...}}}.
        let obj = daqproc::observe::names::nested(vars.iter().zip(&values).map(|(v, (val, t))| {
            let j = value_json(v.spec(), val, a.raw);
            let j = if a.all {
                let st = v.spec().alarm(val);
                json!({"value": j, "changed": time_text(*t),
                       "status": st.as_str(), "severity": st.severity().as_str()})
            } else {
                j
            };
            (v.spec().name.clone(), j)
        }));
        print_json(&obj)?;
    } else {
        let mut out = String::new();
        for (v, (val, t)) in vars.iter().zip(&values) {
            if named {
                out.push_str(&v.spec().name);
                out.push('\t');
            }
            out.push_str(&value_text(v.spec(), val, a.raw));
            if a.all {
                // camonitor's columns: time, then alarm status and severity.
                let st = v.spec().alarm(val);
                out.push('\t');
                out.push_str(&time_text(*t));
                out.push('\t');
                out.push_str(st.as_str());
                out.push('\t');
                out.push_str(st.severity().as_str());
            }
            out.push('\n');
        }
        print!("{out}");
    }
    // The values of a process that is gone are its last ones: say so, and let a script tell.
    let (liveness, _) = daqproc::observe::liveness::of_reader(&r);
    if !liveness.is_running() {
        let pid = r.info().pid;
        let what = match liveness {
            Liveness::Stopped => format!("exited (it was pid {pid})"),
            _ => format!("is not running (pid {pid} is gone)"),
        };
        eprintln!(
            "shvar: warning: {} {what}: these are the last values it published",
            a.name
        );
        return Ok(ExitCode::from(EXIT_NOT_RUNNING));
    }
    Ok(ExitCode::SUCCESS)
}
