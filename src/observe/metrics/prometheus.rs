//! The Prometheus text exposition format (version 0.0.4) of a [`Snapshot`].
//!
//! Every metric family appears once, `# HELP` and `# TYPE` first, with the samples of all
//! processes under it (label `process`). A family that two processes declare differently keeps
//! the first declaration; a sample whose name and labels were already written (two variables
//! that map to one metric name) is left out, and a comment says so. The output passes
//! `promtool check metrics` without lint problems for the names [`super::metric_name`] makes.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use super::{Kind, Number, Snapshot};

/// The `Content-Type` of the output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Family {
    name: String,
    help: String,
    ty: &'static str,
    samples: Vec<String>,
}

#[derive(Default)]
struct Families {
    list: Vec<Family>,
    index: HashMap<String, usize>,
    seen: HashSet<String>,
    notes: Vec<String>,
}

impl Families {
    fn family(&mut self, name: &str, help: &str, ty: &'static str) -> &mut Family {
        if let Some(&i) = self.index.get(name) {
            return &mut self.list[i];
        }
        let i = *self.index.entry(name.to_owned()).or_insert_with(|| {
            self.list.push(Family {
                name: name.to_owned(),
                help: if help.trim().is_empty() {
                    format!(
                        "shvar variable {} (no description)",
                        &name["shvar_".len()..]
                    )
                } else {
                    help.to_owned()
                },
                ty,
                samples: Vec::new(),
            });
            self.list.len() - 1
        });
        &mut self.list[i]
    }

    /// Adds `name{labels} value` unless that series is already there; returns whether added.
    fn sample(&mut self, name: &str, help: &str, ty: &'static str, labels: &str, v: &str) -> bool {
        let series = format!("{name}{{{labels}}}");
        if self.seen.contains(&series) {
            return false;
        }
        self.family(name, help, ty)
            .samples
            .push(format!("{series} {v}"));
        self.seen.insert(series);
        true
    }
}

/// Escapes a `# HELP` text: backslash and line feed.
pub fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(s: &str) -> String {
    escape_help(s).replace('"', "\\\"")
}

/// A sample value as the format writes it (`NaN`, `+Inf`, `-Inf` included).
pub fn format_value(v: Number) -> String {
    match v {
        Number::Int(i) => i.to_string(),
        Number::Float(f) if f.is_nan() => "NaN".to_owned(),
        Number::Float(f) if f.is_infinite() => if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned(),
        Number::Float(f) => format!("{f:?}"),
    }
}

/// Writes `snap` in the Prometheus text format: `shvar_up` and `shvar_heartbeat_age_seconds`
/// per process, then one family per variable name.
pub fn render(snap: &Snapshot) -> String {
    let mut f = Families::default();
    for p in &snap.processes {
        let proc_label = format!("process=\"{}\"", escape_label(&p.process));
        f.sample(
            "shvar_up",
            "1 if the process runs (its main loop holds its region), 0 if it exited or died",
            "gauge",
            &proc_label,
            if p.up { "1" } else { "0" },
        );
    }
    for p in &snap.processes {
        if let Some(age) = p.heartbeat_age_seconds {
            let proc_label = format!("process=\"{}\"", escape_label(&p.process));
            f.sample(
                "shvar_heartbeat_age_seconds",
                "Seconds since the process's main loop last beat (about every 0.1 s)",
                "gauge",
                &proc_label,
                &format_value(Number::Float(age)),
            );
        }
    }
    for p in &snap.processes {
        let proc_only = format!("process=\"{}\"", escape_label(&p.process));
        for v in &p.variables {
            let proc_label = match &v.row {
                Some((table, row)) => format!("{proc_only},{table}=\"{}\"", escape_label(row)),
                None => proc_only.clone(),
            };
            let proc_label = &proc_label;
            let ty = if v.kind == Kind::Counter {
                "counter"
            } else {
                "gauge"
            };
            let added = match v.kind {
                Kind::Stateset => {
                    let current = match v.value {
                        Number::Int(i) => usize::try_from(i).ok(),
                        Number::Float(_) => None,
                    };
                    let mut any = false;
                    for (i, l) in v.labels.iter().enumerate() {
                        let labels = format!("{proc_label},state=\"{}\"", escape_label(l));
                        let one = if current == Some(i) { "1" } else { "0" };
                        // A label listed twice keeps its first value.
                        any |= f.sample(&v.metric, &v.help, ty, &labels, one);
                    }
                    any
                }
                _ => f.sample(&v.metric, &v.help, ty, proc_label, &format_value(v.value)),
            };
            if !added {
                f.notes.push(format!(
                    "# shvar: left out variable {:?} of process {:?}: its metric {} was already written",
                    v.name, p.process, v.metric
                ));
            }
        }
    }
    let mut out = String::new();
    for n in &f.notes {
        out.push_str(n);
        out.push('\n');
    }
    for fam in &f.list {
        let _ = writeln!(out, "# HELP {} {}", fam.name, escape_help(&fam.help));
        let _ = writeln!(out, "# TYPE {} {}", fam.name, fam.ty);
        for s in &fam.samples {
            out.push_str(s);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::{ProcessMetrics, VarSample};

    fn var(name: &str, kind: Kind, value: Number, labels: &[&str]) -> VarSample {
        let (metric, _) = crate::observe::metrics::metric_name(name, kind == Kind::Counter);
        VarSample {
            name: name.into(),
            metric,
            kind,
            value,
            label: None,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            help: format!("about {name}\nline two \\ end"),
            unit: None,
            row: None,
        }
    }

    fn proc(name: &str, vars: Vec<VarSample>) -> ProcessMetrics {
        ProcessMetrics {
            process: name.into(),
            pid: 1,
            status: crate::observe::liveness::Liveness::Alive,
            up: true,
            heartbeat_age_seconds: Some(0.25),
            variables: vars,
            error: None,
        }
    }

    #[test]
    fn families_grouped_escaped_and_deduplicated() {
        let snap = Snapshot {
            dir: "/x".into(),
            processes: vec![
                proc(
                    "a",
                    vec![
                        var("ticks", Kind::Counter, Number::Int(7), &[]),
                        var("run", Kind::Stateset, Number::Int(1), &["X", "Y\"q"]),
                        var("t.x", Kind::Gauge, Number::Float(0.5), &[]),
                        var("t_x", Kind::Gauge, Number::Float(1.5), &[]),
                    ],
                ),
                proc(
                    "b",
                    vec![
                        var("ticks", Kind::Counter, Number::Int(9), &[]),
                        var("t_x", Kind::Gauge, Number::Float(f64::NAN), &[]),
                    ],
                ),
            ],
        };
        let out = render(&snap);
        assert_eq!(out.matches("# TYPE shvar_ticks_total counter").count(), 1);
        assert!(out.contains("# HELP shvar_ticks_total about ticks\\nline two \\\\ end\n"));
        assert!(out
            .contains("shvar_ticks_total{process=\"a\"} 7\nshvar_ticks_total{process=\"b\"} 9\n"));
        assert!(out.contains("shvar_run{process=\"a\",state=\"X\"} 0\n"));
        assert!(out.contains("shvar_run{process=\"a\",state=\"Y\\\"q\"} 1\n"));
        assert!(out.contains("shvar_t_x{process=\"a\"} 0.5\n"));
        assert!(!out.contains("shvar_t_x{process=\"a\"} 1.5"));
        assert!(out.contains("# shvar: left out variable \"t_x\" of process \"a\""));
        assert!(out.contains("shvar_t_x{process=\"b\"} NaN\n"));
        assert!(out.contains("shvar_heartbeat_age_seconds{process=\"b\"} 0.25\n"));
    }
}
