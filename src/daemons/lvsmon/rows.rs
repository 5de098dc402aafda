//! The table of checks in the region: one row of variables per check, `check.NAME.COLUMN`.
//! A row is made when a check of that name is loaded, kept across reloads while the check
//! stays, and retired when a reload removes it; the checker thread writes rows directly,
//! without an allocation.

use std::collections::HashMap;

use shvars::region::{AddError, FloatVar, IntVar, StrVar, VarRegion, VarSpec};

use super::verdict::STATUS_LABELS;

/// Capacity of `check.NAME.reason`.
pub const REASON_CAP: usize = 120;

/// Longest check name: `check.` + name + `.last_ms` fits the 63 bytes of a variable name.
pub const MAX_NAME: usize = 40;

/// One check's variables.
#[derive(Debug, Clone)]
pub struct Row {
    /// `check.NAME.status`: UNKNOWN, UP or DOWN.
    pub status: IntVar,
    /// `check.NAME.reason`: why the last probe failed ("" after a success).
    pub reason: StrVar,
    /// `check.NAME.since`: when the status last changed (Unix seconds).
    pub since: IntVar,
    /// `check.NAME.fails`: failed probes since the check was first loaded (never wraps).
    pub fails: IntVar,
    /// `check.NAME.last_ms`: how long the last probe took.
    pub last_ms: FloatVar,
    /// `check.NAME.checks`: probes since the check was first loaded.
    pub checks: IntVar,
    /// `check.NAME.ok`: 1 if the last probe succeeded, else 0 (blackbox_exporter's
    /// `probe_success`).
    pub ok: IntVar,
}

/// The names of a check's variables, in the order they are added.
pub const COLUMNS: [&str; 7] = [
    "status", "reason", "since", "fails", "last_ms", "checks", "ok",
];

impl Row {
    fn add(region: &VarRegion, check: &str) -> Result<Row, AddError> {
        let n = |col: &str| format!("check.{check}.{col}");
        Ok(Row {
            status: region.add_int(
                VarSpec::enumeration(&n("status"), &STATUS_LABELS, 0)
                    .desc("State of the check: UP, DOWN (after rise/fall), UNKNOWN before its first probe")
                    .metric("lvsmon_check_status"),
            )?,
            reason: region.add_str(
                VarSpec::string(&n("reason"), REASON_CAP, "")
                    .desc("Why the last probe failed (empty after a success)"),
            )?,
            since: region.add_int(
                VarSpec::int(&n("since"), 0)
                    .unit("s")
                    .desc("When the status last changed (Unix seconds)")
                    .metric("lvsmon_check_since_timestamp_seconds"),
            )?,
            fails: region.add_int(
                VarSpec::int(&n("fails"), 0)
                    .counter()
                    .desc("Failed probes since the check was loaded (saturates, never wraps)")
                    .metric("lvsmon_check_failures_total"),
            )?,
            last_ms: region.add_float(
                VarSpec::float(&n("last_ms"), 0.0)
                    .unit("ms")
                    .desc("Duration of the last probe")
                    .metric("probe_duration_seconds"),
            )?,
            checks: region.add_int(
                VarSpec::int(&n("checks"), 0)
                    .counter()
                    .desc("Probes since the check was loaded")
                    .metric("lvsmon_check_probes_total"),
            )?,
            ok: region.add_int(
                VarSpec::int(&n("ok"), 0)
                    .desc("1 if the last probe succeeded, else 0")
                    .metric("probe_success"),
            )?,
        })
    }
}

/// Every row made so far, by check name.
#[derive(Debug, Default)]
pub struct Rows {
    rows: HashMap<String, Row>,
}

impl Rows {
    /// The row of `check`, made if it has none yet.
    ///
    /// # Errors
    /// If the region has no room left for it.
    pub fn row(&mut self, region: &VarRegion, check: &str) -> Result<Row, AddError> {
        if let Some(r) = self.rows.get(check) {
            return Ok(r.clone());
        }
        let r = Row::add(region, check)?;
        self.rows.insert(check.to_owned(), r.clone());
        Ok(r)
    }

    /// Retires the row of a check removed from the file: its variables leave every listing
    /// (reading one says when it was removed), and a check of that name added again later gets
    /// a new row. A write by the checker thread racing this lands before the retirement or not
    /// at all (the region's change log orders them).
    ///
    /// # Errors
    /// The region's, naming the check.
    pub fn retire(&mut self, region: &VarRegion, check: &str) -> Result<(), String> {
        self.rows.remove(check);
        region
            .retire_prefix(&format!("check.{check}."))
            .map(|_| ())
            .map_err(|e| format!("check {check}: cannot retire its variables: {e}"))
    }

    /// Whether `check` has a row.
    pub fn has(&self, check: &str) -> bool {
        self.rows.contains_key(check)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
