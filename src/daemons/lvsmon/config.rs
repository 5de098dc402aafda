//! The checks file (TOML): parsing, validation, and compiling it into [`CheckDef`]s. Every
//! error names the file, the line and what is wrong; nothing of a bad file is used.
//!
//! See docs/lvsmon.md for the format and docs/examples/lvsmon.conf for an example.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use shvars::{ProcName, RuntimeDir};
use toml::Spanned;

use super::plan::{Actions, CheckDef, Condition, FrameworkProbe, Ipvs, Op, Probe, Target, Watched};
use super::probe::{HttpExpect, Matcher, StatusSet};
use super::rows::{Row, Rows, MAX_NAME};
use super::verdict::Thresholds;

mod build;
mod values;
use build::build_check;
use values::{check_hostport, parse_status, parse_url};
pub use values::{find_program, fmt_ms, parse_condition, parse_duration_ms};

/// A file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line, if the error is at one.
    pub line: Option<usize>,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.path.display(), self.msg),
            None => write!(f, "{}: {}", self.path.display(), self.msg),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A duration: seconds as a number, or text with a unit (`"500ms"`, `"10s"`, `"5m"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Dur {
    Secs(f64),
    Text(String),
}

/// One word, or a list (a command's argv; a list of conditions).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum StatusItem {
    Code(i64),
    Text(String),
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    interval: Option<Spanned<Dur>>,
    connect_timeout: Option<Spanned<Dur>>,
    recv_timeout: Option<Spanned<Dur>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    max_without_success: Option<Spanned<Dur>>,
    notify: Option<Spanned<OneOrMany>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IpvsToml {
    service: String,
    real: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    forward: Option<String>,
    #[serde(default)]
    weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckToml {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    address: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    status: Option<Spanned<Vec<StatusItem>>>,
    body: Option<Spanned<String>>,
    body_regex: Option<Spanned<String>>,
    body_limit: Option<Spanned<i64>>,
    expect: Option<Spanned<String>>,
    expect_regex: Option<Spanned<String>>,
    send: Option<Spanned<String>>,
    process: Option<Spanned<String>>,
    heartbeat: Option<Spanned<Dur>>,
    condition: Option<Spanned<OneOrMany>>,
    ipvs: Option<Spanned<IpvsToml>>,
    // The settings of [defaults] (not flattened from Common: flattening loses the spans).
    interval: Option<Spanned<Dur>>,
    connect_timeout: Option<Spanned<Dur>>,
    recv_timeout: Option<Spanned<Dur>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    max_without_success: Option<Spanned<Dur>>,
    notify: Option<Spanned<OneOrMany>>,
}

impl CheckToml {
    fn common(&self) -> Common {
        Common {
            interval: self.interval.clone(),
            connect_timeout: self.connect_timeout.clone(),
            recv_timeout: self.recv_timeout.clone(),
            rise: self.rise.clone(),
            fall: self.fall.clone(),
            max_without_success: self.max_without_success.clone(),
            notify: self.notify.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IpvsGlobal {
    command: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    defaults: Common,
    ipvsadm: Option<IpvsGlobal>,
    #[serde(default)]
    check: BTreeMap<String, Spanned<CheckToml>>,
}

/// Settings that apply to every check unless it says otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    /// Probe interval (the command line's `--interval`, or the file's `[defaults] interval`).
    pub interval_ms: u64,
    /// Connect timeout.
    pub connect_timeout_ms: u64,
    /// Receive timeout.
    pub recv_timeout_ms: u64,
    /// Rise and fall and the maximum time without success.
    pub thresholds: Thresholds,
    /// The notify command.
    pub notify: Option<Vec<String>>,
}

impl Defaults {
    /// The built-in defaults, with the command line's interval.
    pub fn with_interval(interval_ms: u64) -> Defaults {
        Defaults {
            interval_ms,
            connect_timeout_ms: 3000,
            recv_timeout_ms: 5000,
            thresholds: Thresholds {
                rise: 2,
                fall: 3,
                max_without_success_ms: 0,
            },
            notify: None,
        }
    }
}

/// A parsed, valid file.
#[derive(Debug)]
pub struct Config {
    /// The file.
    pub path: PathBuf,
    /// The checks, in name order.
    pub checks: Vec<CheckDef>,
    /// The ipvsadm program (`ipvsadm` on PATH unless the file says).
    pub ipvsadm: PathBuf,
}

/// Line (1-based) of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err<T>(&self, span: std::ops::Range<usize>, msg: impl Into<String>) -> ConfigError {
        let _ = std::marker::PhantomData::<T>;
        ConfigError {
            path: self.path.to_owned(),
            line: Some(line_of(self.text, span.start)),
            msg: msg.into(),
        }
    }

    fn at<T>(&self, s: &Spanned<T>, msg: impl Into<String>) -> ConfigError {
        self.err::<()>(s.span(), msg)
    }

    fn duration(
        &self,
        d: &Spanned<Dur>,
        what: &str,
        min_ms: u64,
        max_ms: u64,
    ) -> Result<u64, ConfigError> {
        let ms = match d.get_ref() {
            Dur::Secs(s) if s.is_finite() && *s >= 0.0 => (s * 1000.0).round() as u64,
            Dur::Secs(s) => return Err(self.at(d, format!("{what}: {s} is not a duration"))),
            Dur::Text(t) => parse_duration_ms(t).ok_or_else(|| {
                self.at(
                    d,
                    format!("{what}: {t:?} is not a duration (write e.g. 10, \"10s\", \"500ms\", \"5m\")"),
                )
            })?,
        };
        if ms < min_ms || ms > max_ms {
            return Err(self.at(
                d,
                format!(
                    "{what}: {} is outside {} to {}",
                    fmt_ms(ms),
                    fmt_ms(min_ms),
                    fmt_ms(max_ms)
                ),
            ));
        }
        Ok(ms)
    }

    fn count(&self, v: &Spanned<i64>, what: &str) -> Result<u32, ConfigError> {
        let n = *v.get_ref();
        if !(1..=1000).contains(&n) {
            return Err(self.at(v, format!("{what}: {n} is outside 1 to 1000")));
        }
        Ok(n as u32)
    }

    fn argv(&self, v: &Spanned<OneOrMany>, what: &str) -> Result<Vec<String>, ConfigError> {
        let argv = v.get_ref().list();
        let Some(prog) = argv.first().filter(|p| !p.is_empty()) else {
            return Err(self.at(v, format!("{what}: the command is empty")));
        };
        if find_program(prog).is_none() {
            return Err(self.at(
                v,
                format!("{what}: {prog}: no such executable (give a full path, or install it)"),
            ));
        }
        Ok(argv)
    }

    fn common(&self, c: &Common, base: &Defaults) -> Result<Defaults, ConfigError> {
        let mut d = base.clone();
        if let Some(v) = &c.interval {
            d.interval_ms = self.duration(v, "interval", 10, 86_400_000)?;
        }
        if let Some(v) = &c.connect_timeout {
            d.connect_timeout_ms = self.duration(v, "connect_timeout", 1, 3_600_000)?;
        }
        if let Some(v) = &c.recv_timeout {
            d.recv_timeout_ms = self.duration(v, "recv_timeout", 1, 3_600_000)?;
        }
        if let Some(v) = &c.rise {
            d.thresholds.rise = self.count(v, "rise")?;
        }
        if let Some(v) = &c.fall {
            d.thresholds.fall = self.count(v, "fall")?;
        }
        if let Some(v) = &c.max_without_success {
            d.thresholds.max_without_success_ms =
                self.duration(v, "max_without_success", 0, 365 * 86_400_000)?;
        }
        if let Some(v) = &c.notify {
            d.notify = Some(self.argv(v, "notify")?);
        }
        Ok(d)
    }
}

/// Reads and checks `path`; builds every check, making the rows of new names in `region`.
/// Nothing is changed if the file is bad except rows already made (they stay, unused).
///
/// # Errors
/// A [`ConfigError`] with the file, line and reason.
pub fn load(
    path: &Path,
    base: &Defaults,
    dir: &RuntimeDir,
    rows: &mut Rows,
    region: &shvars::region::VarRegion,
) -> Result<Config, ConfigError> {
    // The file names commands lvsmon runs (ipvsadm, notify), as root for ipvs actions: one
    // another local user could have changed is refused.
    let text = crate::support::files::read_trusted_file(path).map_err(|msg| ConfigError {
        path: path.to_owned(),
        line: None,
        msg,
    })?;
    let specs = parse(path, &text, base, dir)?;
    let mut checks = Vec::with_capacity(specs.checks.len());
    for s in specs.checks {
        let row = rows.row(region, &s.name).map_err(|e| ConfigError {
            path: path.to_owned(),
            line: Some(s.line),
            msg: format!(
                "check {}: no room for its variables ({e}); restart lvsmon to load this many checks",
                s.name
            ),
        })?;
        checks.push(s.into_def(row));
    }
    Ok(Config {
        path: path.to_owned(),
        checks,
        ipvsadm: specs.ipvsadm,
    })
}

/// A check built from the file, before its row.
#[derive(Debug)]
pub struct Spec {
    /// Its name.
    pub name: String,
    /// Its line.
    pub line: usize,
    probe: Probe,
    d: Defaults,
    actions: Actions,
    summary: String,
}

impl Spec {
    fn into_def(self, row: Row) -> CheckDef {
        CheckDef {
            name: Arc::from(self.name.as_str()),
            probe: self.probe,
            interval_ms: self.d.interval_ms,
            connect_timeout_ms: self.d.connect_timeout_ms,
            recv_timeout_ms: self.d.recv_timeout_ms,
            thresholds: self.d.thresholds,
            row,
            actions: self.actions,
            summary: self.summary,
            line: self.line,
        }
    }
}

/// A parsed file, before rows.
#[derive(Debug)]
pub struct Specs {
    /// The checks.
    pub checks: Vec<Spec>,
    /// The ipvsadm program.
    pub ipvsadm: PathBuf,
}

/// Parses and checks the text of a file (no rows are made).
///
/// # Errors
/// A [`ConfigError`] with the file, line and reason.
pub fn parse(
    path: &Path,
    text: &str,
    base: &Defaults,
    dir: &RuntimeDir,
) -> Result<Specs, ConfigError> {
    let cx = Ctx { path, text };
    let file: FileToml = toml::from_str(text).map_err(|e| ConfigError {
        path: path.to_owned(),
        line: e.span().map(|s| line_of(text, s.start)),
        msg: e.message().trim().replace('\n', "; "),
    })?;
    let defaults = cx.common(&file.defaults, base)?;
    let mut ipvsadm = None;
    if let Some(g) = &file.ipvsadm {
        let p = find_program(g.command.get_ref()).ok_or_else(|| {
            cx.at(
                &g.command,
                format!(
                    "ipvsadm command {}: no such executable",
                    g.command.get_ref()
                ),
            )
        })?;
        ipvsadm = Some(p);
    }
    let mut checks = Vec::new();
    for (name, c) in &file.check {
        let line = line_of(text, c.span().start);
        let bad = |msg: String| ConfigError {
            path: path.to_owned(),
            line: Some(line),
            msg: format!("check {name}: {msg}"),
        };
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(bad(format!(
                "the name must be 1 to {MAX_NAME} characters of [A-Za-z0-9_-]"
            )));
        }
        let spec = build_check(&cx, name, c.get_ref(), &defaults, dir).map_err(|mut e| {
            e.msg = format!("check {name}: {}", e.msg);
            e
        })?;
        let mut spec = spec;
        spec.line = line;
        if spec.actions.ipvs.is_some() && ipvsadm.is_none() {
            ipvsadm = Some(find_program("ipvsadm").ok_or_else(|| {
                bad(
                    "ipvs: ipvsadm is not installed (install it, or name it in [ipvsadm] command)"
                        .to_owned(),
                )
            })?);
        }
        checks.push(spec);
    }
    Ok(Specs {
        checks,
        ipvsadm: ipvsadm.unwrap_or_else(|| PathBuf::from("ipvsadm")),
    })
}

#[cfg(test)]
mod tests;
