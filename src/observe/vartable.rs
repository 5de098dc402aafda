//! The table of a process's variables that `shvar dump` and spyctl's `vars` print: name, type,
//! access, value, unit, limits, time of the last change, description. One reading and one
//! rendering for both tools.

use std::sync::Arc;

use shvars::region::{RegionReader, Value, VarSpec};

use super::names::matches;
use super::watch::time_text;

/// Widest value column; longer values are cut with `…` (`--json` and `get` give them whole).
pub const VALUE_WIDTH: usize = 40;

/// One variable as read.
#[derive(Debug, Clone)]
pub struct VarRow {
    /// What it is.
    pub spec: Arc<VarSpec>,
    /// Its value, or why it could not be read.
    pub value: Result<Value, String>,
    /// Its last change, ns since the epoch (0 if unknown).
    pub changed_ns: u64,
}

/// The variables of `r` (those matching one of `patterns`, or all if none), in region order.
pub fn read(r: &RegionReader, patterns: &[String]) -> Vec<VarRow> {
    r.specs()
        .iter()
        .filter(|s| patterns.is_empty() || patterns.iter().any(|p| matches(p, &s.name)))
        .map(|s| match r.find(&s.name) {
            Ok(v) => match r.read(&v) {
                Ok(val) => VarRow {
                    spec: s.clone(),
                    value: Ok(val),
                    changed_ns: r.changed_ns(&v),
                },
                Err(e) => VarRow {
                    spec: s.clone(),
                    value: Err(e.to_string()),
                    changed_ns: 0,
                },
            },
            Err(e) => VarRow {
                spec: s.clone(),
                value: Err(e.to_string()),
                changed_ns: 0,
            },
        })
        .collect()
}

/// `text` on one line and at most `width` characters, cut with `…` when it was longer.
pub fn fit(text: &str, width: usize) -> String {
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= width {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The value of a row for people (enum labels), cut to [`VALUE_WIDTH`].
pub fn value_text(row: &VarRow) -> String {
    match &row.value {
        Ok(v) => fit(&row.spec.display(v), VALUE_WIDTH),
        Err(e) => fit(&format!("<{e}>"), VALUE_WIDTH),
    }
}

/// The limits of a variable for the LIMITS column: the accepted range (`1..1e6`, `>=0`,
/// `<=10`) then the alarm limits that are set (`LOLO=-10 LOW=0 HIGH=40 HIHI=60`); empty if none.
pub fn limits_text(spec: &VarSpec) -> String {
    let n = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            format!("{}", x as i64)
        } else {
            format!("{x}")
        }
    };
    let mut parts = vec![range_text(spec)];
    for (what, l) in [
        ("LOLO", spec.lolo),
        ("LOW", spec.low),
        ("HIGH", spec.high),
        ("HIHI", spec.hihi),
    ] {
        if let Some(l) = l {
            parts.push(format!("{what}={}", n(l)));
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

/// The accepted range of a variable: `1..1e6`, `>=0`, `<=10`, empty.
pub fn range_text(spec: &VarSpec) -> String {
    let n = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            format!("{}", x as i64)
        } else {
            format!("{x}")
        }
    };
    match (spec.min, spec.max) {
        (Some(a), Some(b)) => format!("{}..{}", n(a), n(b)),
        (Some(a), None) => format!(">={}", n(a)),
        (None, Some(b)) => format!("<={}", n(b)),
        (None, None) => String::new(),
    }
}

/// Which columns to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// The CHANGED column (time of the last change).
    pub changed: bool,
}

/// The rows as an aligned table with a head line.
pub fn render(rows: &[VarRow], cols: Columns) -> String {
    let texts: Vec<String> = rows.iter().map(value_text).collect();
    let limits: Vec<String> = rows.iter().map(|r| limits_text(&r.spec)).collect();
    let w = |it: &mut dyn Iterator<Item = usize>, min: usize| it.max().unwrap_or(0).max(min);
    let wn = w(&mut rows.iter().map(|r| r.spec.name.chars().count()), 4);
    let wv = w(&mut texts.iter().map(|t| t.chars().count()), 5).min(VALUE_WIDTH);
    let wu = w(
        &mut rows
            .iter()
            .map(|r| r.spec.unit.as_deref().unwrap_or("").len()),
        4,
    );
    let wl = w(&mut limits.iter().map(|l| l.len()), 6);
    let mut out = format!(
        "{:<wn$}  {:<7}  {:<6}  {:<wv$}  {:<wu$}  {:<wl$}  ",
        "NAME", "TYPE", "ACCESS", "VALUE", "UNIT", "LIMITS"
    );
    if cols.changed {
        out.push_str(&format!("{:<24}  ", "CHANGED"));
    }
    out.push_str("DESCRIPTION\n");
    for ((r, text), lim) in rows.iter().zip(&texts).zip(&limits) {
        let s = &r.spec;
        out.push_str(&format!(
            "{:<wn$}  {:<7}  {:<6}  {:<wv$}  {:<wu$}  {:<wl$}  ",
            s.name,
            s.ty.name(),
            s.access.as_str(),
            text,
            s.unit.as_deref().unwrap_or(""),
            lim
        ));
        if cols.changed {
            out.push_str(&format!("{:<24}  ", time_text(r.changed_ns)));
        }
        out.push_str(&s.desc);
        out.push('\n');
    }
    out
}
