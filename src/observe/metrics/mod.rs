//! Snapshots of the numeric variables of every process in a runtime directory, for monitoring
//! systems: [`snapshot`] reads the regions once, [`prometheus::render`] writes the Prometheus text
//! exposition format, and the [`Snapshot`] itself serialises as JSON. [`http`] serves the same
//! over HTTP, reading the regions afresh at every scrape.
//!
//! This module only reads regions (it never takes a lock a process could wait for, and never
//! writes), and it never fails because of one bad process: an unreadable region is reported as
//! down, with the reason.

pub mod http;
pub mod prometheus;

use serde::Serialize;
use shvars::region::{RegionReader, Value, VarSpec, VarType};
use shvars::{DirError, ProcName, RuntimeDir};

use super::liveness::{self, Liveness};

/// A value as read: integers stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Number {
    /// INTEGER or ENUM value.
    Int(i64),
    /// FLOAT value, or a value scaled to base units.
    Float(f64),
}

impl Number {
    fn scaled(self, factor: f64) -> Number {
        if factor == 1.0 {
            return self;
        }
        match self {
            Number::Int(i) => Number::Float(i as f64 * factor),
            Number::Float(f) => Number::Float(f * factor),
        }
    }
}

/// How a variable is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Only grows (the variable is declared a counter).
    Counter,
    /// Any other number.
    Gauge,
    /// An ENUM: one sample per label, 1 for the current one and 0 for the others.
    Stateset,
}

/// One numeric variable of one process.
#[derive(Debug, Clone, Serialize)]
pub struct VarSample {
    /// The variable's name in its region.
    pub name: String,
    /// The Prometheus metric name ([`metric_name`]).
    pub metric: String,
    /// Counter, gauge or state set.
    pub kind: Kind,
    /// The value, scaled to base units where the name says so (`timeout_us` is exported as
    /// `timeout_seconds`).
    pub value: Number,
    /// ENUM: the current label (none if the value has no label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// ENUM: every label, indexed by value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The variable's description.
    pub help: String,
    /// The variable's unit, as declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// For a variable with a declared metric name whose name is a table row
    /// (`TABLE.ROW.COLUMN`): the label `TABLE="ROW"` its sample carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<(String, String)>,
}

/// One process of the runtime directory.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessMetrics {
    /// Process name.
    pub process: String,
    /// Pid recorded in its region (0 if unreadable).
    pub pid: u32,
    /// Alive, stopped (exited cleanly), stale (died), bad (unreadable region)...
    pub status: Liveness,
    /// Whether its owner runs.
    pub up: bool,
    /// Seconds since its main loop last beat (alive processes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_age_seconds: Option<f64>,
    /// Its INTEGER, FLOAT and ENUM variables (alive processes only).
    pub variables: Vec<VarSample>,
    /// Why the region is unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every process of a runtime directory, read once.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The runtime directory.
    pub dir: String,
    /// Its processes, by name.
    pub processes: Vec<ProcessMetrics>,
}

/// Reads the numeric variables of every process in `dir`. Stopped, stale and unreadable
/// processes are listed with `up == false` and no variables.
///
/// # Errors
/// If the directory cannot be read.
pub fn snapshot(dir: &RuntimeDir) -> Result<Snapshot, DirError> {
    let processes = dir
        .process_names()?
        .iter()
        .map(|n| read_process(dir, n))
        .collect();
    Ok(Snapshot {
        dir: dir.to_string(),
        processes,
    })
}

fn read_process(dir: &RuntimeDir, name: &ProcName) -> ProcessMetrics {
    let mut p = ProcessMetrics {
        process: name.to_string(),
        pid: 0,
        status: Liveness::Bad,
        up: false,
        heartbeat_age_seconds: None,
        variables: Vec::new(),
        error: None,
    };
    let r = match RegionReader::open(dir, name) {
        Ok(r) => r,
        Err(e) => {
            p.error = Some(e.to_string());
            return p;
        }
    };
    p.pid = r.info().pid;
    let (status, age) = liveness::of_reader(&r);
    p.status = status;
    if status != Liveness::Alive {
        return p;
    }
    p.up = true;
    p.heartbeat_age_seconds = Some(age);
    for spec in r.specs() {
        let Ok(v) = r.find(&spec.name) else { continue };
        let value = match r.read(&v) {
            Ok(Value::Int(i)) => Number::Int(i),
            Ok(Value::Float(f)) => Number::Float(f),
            // Strings are not metrics; a number cannot be busy.
            Ok(Value::Str(_)) | Err(_) => continue,
        };
        p.variables.push(sample(spec, value));
    }
    combine_gbytes(&mut p.variables);
    p
}

/// KLOE splits a byte count into whole GiB (`X_gbytes`, unit GiB) and the rest (`X_bytes`): a
/// monitoring system wants one counter in bytes, `shvar_X_bytes_total`.
fn combine_gbytes(vars: &mut Vec<VarSample>) {
    let pairs: Vec<(usize, usize)> = vars
        .iter()
        .enumerate()
        .filter(|(_, v)| v.unit.as_deref() == Some("GiB"))
        .filter_map(|(gi, g)| {
            let stem = g.name.strip_suffix("_gbytes")?;
            let bi = vars
                .iter()
                .position(|b| b.name == format!("{stem}_bytes"))?;
            Some((gi, bi))
        })
        .collect();
    let mut drop = Vec::new();
    for (gi, bi) in pairs {
        let (Number::Int(g), Number::Int(b)) = (vars[gi].value, vars[bi].value) else {
            continue;
        };
        let stem = vars[gi].name.trim_end_matches("_gbytes").to_owned();
        let (metric, _) = metric_name(&format!("{stem}_bytes"), true);
        let total = Number::Int(g.saturating_mul(1 << 30).saturating_add(b));
        let v = &mut vars[bi];
        v.metric = metric;
        v.kind = Kind::Counter;
        v.value = total;
        v.unit = Some("bytes".to_owned());
        v.help = format!("{} (whole GiB and the rest together)", v.help);
        drop.push(gi);
    }
    drop.sort_unstable();
    for i in drop.into_iter().rev() {
        vars.remove(i);
    }
}

/// A declared metric name (see [`VarSpec::metric`]): used as given (`_total` added to a
/// counter that lacks it), its value scaled to seconds when the name ends in `_seconds` and the
/// unit is a time unit; a variable named `TABLE.ROW.COLUMN` is labelled `TABLE="ROW"`.
fn declared(spec: &VarSpec, m: &str) -> (String, f64, Option<(String, String)>) {
    let mut name = m.to_owned();
    if spec.counter && !name.ends_with("_total") {
        name.push_str("_total");
    }
    let factor = match &spec.unit {
        Some(u) if name.ends_with("_seconds") => TIME_UNITS
            .iter()
            .find(|(t, _)| t == u)
            .map_or(1.0, |(_, f)| *f),
        _ => 1.0,
    };
    let row = match (spec.name.split_once('.'), spec.name.rsplit_once('.')) {
        (Some((table, _)), Some((head, _))) if head.len() > table.len() => {
            let row = &head[table.len() + 1..];
            let label_ok = !table.starts_with(|c: char| c.is_ascii_digit())
                && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            label_ok.then(|| (table.to_owned(), row.to_owned()))
        }
        _ => None,
    };
    (name, factor, row)
}

fn sample(spec: &VarSpec, value: Number) -> VarSample {
    let (metric, factor, row) = match &spec.metric {
        Some(m) => declared(spec, m),
        None => {
            let (m, f) = metric_name_with_unit(&spec.name, spec.counter, spec.unit.as_deref());
            (m, f, None)
        }
    };
    let (kind, labels) = match &spec.ty {
        VarType::Enum { labels } => (Kind::Stateset, labels.clone()),
        _ if spec.counter => (Kind::Counter, Vec::new()),
        _ => (Kind::Gauge, Vec::new()),
    };
    let label = match (kind, value) {
        (Kind::Stateset, Number::Int(i)) => spec.label(i).map(str::to_owned),
        _ => None,
    };
    VarSample {
        name: spec.name.clone(),
        metric,
        kind,
        value: if kind == Kind::Stateset {
            value
        } else {
            value.scaled(factor)
        },
        label,
        labels,
        help: spec.desc.clone(),
        unit: spec.unit.clone(),
        row,
    }
}

/// Time units a name may end with (or a variable declare as its unit), and their factor to
/// seconds.
const TIME_UNITS: [(&str, f64); 12] = [
    ("s", 1.0),
    ("sec", 1.0),
    ("secs", 1.0),
    ("ms", 1e-3),
    ("msecs", 1e-3),
    ("milliseconds", 1e-3),
    ("us", 1e-6),
    ("usecs", 1e-6),
    ("microseconds", 1e-6),
    ("ns", 1e-9),
    ("nsecs", 1e-9),
    ("nanoseconds", 1e-9),
];

/// As [`metric_name`], with the variable's declared unit: a variable whose unit is a time unit
/// is exported in seconds (`sg_cpu`, unit `ns`: `shvar_sg_cpu_seconds_total`; `sg_msecs`, unit
/// `ms`: `shvar_sg_seconds_total`), a byte count's name ends in `_bytes`.
///
/// # Examples
/// ```
/// use daqproc::observe::metrics::metric_name_with_unit;
/// assert_eq!(metric_name_with_unit("sg_cpu", true, Some("ns")), ("shvar_sg_cpu_seconds_total".to_owned(), 1e-9));
/// assert_eq!(metric_name_with_unit("sg_msecs", true, Some("ms")).0, "shvar_sg_seconds_total");
/// assert_eq!(metric_name_with_unit("timeout_us", false, Some("us")).0, "shvar_timeout_seconds");
/// ```
pub fn metric_name_with_unit(var: &str, counter: bool, unit: Option<&str>) -> (String, f64) {
    let (name, factor) = metric_name(var, counter);
    if factor != 1.0 || name.contains("_seconds") {
        return (name, factor);
    }
    let Some((_, f)) = unit.and_then(|u| TIME_UNITS.iter().find(|(t, _)| *t == u)) else {
        return (name, factor);
    };
    let stem = name.strip_suffix("_total").unwrap_or(&name);
    let mut n = format!("{stem}_seconds");
    if counter {
        n.push_str("_total");
    }
    (n, *f)
}

/// The metric name of variable `var`, and the factor its values are multiplied by.
///
/// `shvar_` + the name in snake case (`.` and `-` become `_`, `maxEvents` becomes
/// `max_events`); a last word that is a time unit (`_ms`, `_us`, `_ns`, `_s`, ...) becomes
/// `_seconds` and the value is scaled to seconds; counters end in `_total`, gauges never do.
/// The result always matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
///
/// # Examples
/// ```
/// use daqproc::observe::metrics::metric_name;
/// assert_eq!(metric_name("sg_packs", true), ("shvar_sg_packs_total".to_owned(), 1.0));
/// assert_eq!(metric_name("timeout_us", false), ("shvar_timeout_seconds".to_owned(), 1e-6));
/// assert_eq!(metric_name("maxEvents.x-y", false).0, "shvar_max_events_x_y");
/// ```
pub fn metric_name(var: &str, counter: bool) -> (String, f64) {
    let mut snake = String::with_capacity(var.len() + 4);
    let mut prev_lower = false;
    for c in var.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            snake.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        snake.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        });
    }
    let mut factor = 1.0;
    if let Some((stem, last)) = snake.rsplit_once('_') {
        if let Some((_, f)) = TIME_UNITS.iter().find(|(u, _)| *u == last) {
            if !stem.is_empty() {
                factor = *f;
                snake = format!("{stem}_seconds");
            }
        }
    }
    let mut name = format!("shvar_{snake}");
    match (counter, name.strip_suffix("_total")) {
        (true, None) => name.push_str("_total"),
        (false, Some(stem)) if stem != "shvar" => name.truncate(stem.len()),
        _ => {}
    }
    (name, factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_metric_names_and_table_labels() {
        let spec = VarSpec::float("check.web-1.last_ms", 0.0)
            .unit("ms")
            .metric("probe_duration_seconds");
        let s = sample(&spec, Number::Float(250.0));
        assert_eq!(s.metric, "probe_duration_seconds");
        assert_eq!(s.value, Number::Float(0.25));
        assert_eq!(s.row, Some(("check".to_owned(), "web-1".to_owned())));
        let c = VarSpec::int("check.a.fails", 0)
            .counter()
            .metric("lvsmon_check_failures");
        assert_eq!(
            sample(&c, Number::Int(3)).metric,
            "lvsmon_check_failures_total"
        );
        // Not a table row: no label; no declared name: the derived one.
        assert_eq!(
            sample(&VarSpec::int("x.y", 0).metric("m"), Number::Int(1)).row,
            None
        );
        assert_eq!(
            sample(&VarSpec::int("check.a.ok", 0), Number::Int(1)).metric,
            "shvar_check_a_ok"
        );
        let mut snap = Snapshot {
            dir: "/d".into(),
            processes: vec![],
        };
        snap.processes.push(ProcessMetrics {
            process: "mon1".into(),
            pid: 1,
            status: Liveness::Alive,
            up: true,
            heartbeat_age_seconds: None,
            variables: vec![sample(
                &VarSpec::int("check.web1.ok", 0).metric("probe_success"),
                Number::Int(1),
            )],
            error: None,
        });
        assert!(prometheus::render(&snap)
            .contains("probe_success{process=\"mon1\",check=\"web1\"} 1\n"));
    }
}
