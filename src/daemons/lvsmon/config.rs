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

/// `"10s"`, `"500ms"`, `"1.5s"`, `"5m"`, `"1h"`, `"100us"` (rounded up to 1 ms), `"0"`.
pub fn parse_duration_ms(t: &str) -> Option<u64> {
    let t = t.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1000.0,
        "ms" => 1.0,
        "us" | "µs" => 0.001,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    let ms = n * factor;
    if !ms.is_finite() {
        return None;
    }
    Some(if ms > 0.0 && ms < 1.0 {
        1
    } else {
        ms.round() as u64
    })
}

/// A duration for people: `250 ms`, `10 s`.
pub fn fmt_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else if ms > 1000 {
        format!("{:.3} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// Where `prog` is: itself if it has a slash, else the first match on PATH.
pub fn find_program(prog: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| exec(p))
}

/// `HOST:PORT` or `[V6]:PORT`, checked for shape (the name is resolved later).
fn check_hostport(s: &str) -> Result<(), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} has no port (write HOST:PORT, e.g. 10.0.0.5:80)"))?;
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "{s:?}: write an IPv6 address in brackets, [::1]:80"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{s:?}: port {port:?} is not 1 to 65535")),
    }
}

/// A parsed `http://host[:port][/path]`.
struct Url {
    hostport: String,
    host_header: String,
    path: String,
}

fn parse_url(u: &str) -> Result<Url, String> {
    let rest = if let Some(r) = u.strip_prefix("http://") {
        r
    } else if u.starts_with("https://") {
        return Err(format!(
            "{u}: https is not supported (lvsmon has no TLS); check a plain-HTTP health endpoint, or the port with type = \"tcp\""
        ));
    } else {
        return Err(format!("{u:?} is not an http:// URL"));
    };
    let (auth, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    if auth.is_empty() || auth.contains('@') {
        return Err(format!(
            "{u:?}: no host (or user info, which is not supported)"
        ));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("{u:?}: the path has blanks or control characters"));
    }
    let has_port = match auth.rfind(':') {
        Some(i) => !auth[i..].contains(']'),
        None => false,
    };
    let hostport = if has_port {
        auth.to_owned()
    } else {
        format!("{auth}:80")
    };
    check_hostport(&hostport).map_err(|e| format!("{u}: {e}"))?;
    Ok(Url {
        hostport,
        host_header: auth.to_owned(),
        path,
    })
}

fn parse_status(items: &[StatusItem]) -> Result<StatusSet, String> {
    let mut set = Vec::new();
    for it in items {
        let r = match it {
            StatusItem::Code(c) if (100..=599).contains(c) => (*c as u16, *c as u16),
            StatusItem::Code(c) => return Err(format!("status {c} is not 100 to 599")),
            StatusItem::Text(t) => {
                let t = t.trim();
                if let Some(d) = t.strip_suffix("xx").and_then(|d| d.parse::<u16>().ok()) {
                    if !(1..=5).contains(&d) {
                        return Err(format!("status {t:?}: write 1xx to 5xx"));
                    }
                    (d * 100, d * 100 + 99)
                } else if let Some((a, b)) = t.split_once('-') {
                    let (a, b) = (a.trim().parse::<u16>(), b.trim().parse::<u16>());
                    match (a, b) {
                        (Ok(a), Ok(b)) if (100..=599).contains(&a) && (a..=599).contains(&b) => {
                            (a, b)
                        }
                        _ => return Err(format!("status {t:?} is not a range like 200-299")),
                    }
                } else {
                    match t.parse::<u16>() {
                        Ok(c) if (100..=599).contains(&c) => (c, c),
                        _ => {
                            return Err(format!(
                                "status {t:?} is not a code, a class (2xx) or a range (200-399)"
                            ))
                        }
                    }
                }
            }
        };
        set.push(r);
    }
    if set.is_empty() {
        return Err("status: the list is empty".to_owned());
    }
    Ok(StatusSet(set))
}

/// `VAR OP NUMBER`.
pub fn parse_condition(s: &str) -> Result<Condition, String> {
    let ops = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    for (text, op) in ops {
        if let Some((var, num)) = s.split_once(text) {
            let var = var.trim();
            shvars::check_var_name(var).map_err(|e| format!("condition {s:?}: {e}"))?;
            let value: f64 = num
                .trim()
                .parse()
                .map_err(|_| format!("condition {s:?}: {:?} is not a number", num.trim()))?;
            return Ok(Condition {
                var: var.to_owned(),
                op,
                value,
            });
        }
    }
    Err(format!(
        "condition {s:?}: write VARIABLE OP NUMBER, OP one of == != < <= > >= (e.g. \"no_conn == 0\")"
    ))
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
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        line: None,
        msg: format!("cannot read it: {e}"),
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

/// Refuses keys that do not belong to a kind of check.
fn only(cx: &Ctx<'_>, kind: &str, c: &CheckToml, allowed: &[&str]) -> Result<(), ConfigError> {
    let present: [(&str, Option<std::ops::Range<usize>>); 14] = [
        ("address", c.address.as_ref().map(Spanned::span)),
        ("url", c.url.as_ref().map(Spanned::span)),
        ("host", c.host.as_ref().map(Spanned::span)),
        ("method", c.method.as_ref().map(Spanned::span)),
        ("status", c.status.as_ref().map(Spanned::span)),
        ("body", c.body.as_ref().map(Spanned::span)),
        ("body_regex", c.body_regex.as_ref().map(Spanned::span)),
        ("body_limit", c.body_limit.as_ref().map(Spanned::span)),
        ("expect", c.expect.as_ref().map(Spanned::span)),
        ("expect_regex", c.expect_regex.as_ref().map(Spanned::span)),
        ("send", c.send.as_ref().map(Spanned::span)),
        ("process", c.process.as_ref().map(Spanned::span)),
        ("heartbeat", c.heartbeat.as_ref().map(Spanned::span)),
        ("condition", c.condition.as_ref().map(Spanned::span)),
    ];
    for (key, span) in present {
        if let Some(span) = span {
            if !allowed.contains(&key) {
                return Err(cx.err::<()>(
                    span,
                    format!(
                        "{key} does not apply to a {kind} check (it takes: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn matcher(
    cx: &Ctx<'_>,
    lit: &Option<Spanned<String>>,
    re: &Option<Spanned<String>>,
    lit_is_prefix: bool,
    what: &str,
) -> Result<Option<Matcher>, ConfigError> {
    match (lit, re) {
        (Some(l), Some(r)) => Err(cx.at(
            r,
            format!(
                "give {what} or {what}_regex, not both (first at line {})",
                line_of(cx.text, l.span().start)
            ),
        )),
        (Some(l), None) => {
            let m = if lit_is_prefix {
                Matcher::prefix(l.get_ref())
            } else {
                Matcher::substring(l.get_ref())
            };
            m.map(Some).map_err(|e| cx.at(l, e))
        }
        (None, Some(r)) => Matcher::regex(r.get_ref())
            .map(Some)
            .map_err(|e| cx.at(r, e)),
        (None, None) => Ok(None),
    }
}

fn address(
    cx: &Ctx<'_>,
    c: &CheckToml,
    kind: &str,
    span: std::ops::Range<usize>,
) -> Result<String, ConfigError> {
    let a = c.address.as_ref().ok_or_else(|| {
        cx.err::<()>(
            span,
            format!("a {kind} check needs address = \"HOST:PORT\""),
        )
    })?;
    check_hostport(a.get_ref()).map_err(|e| cx.at(a, format!("address: {e}")))?;
    Ok(a.get_ref().clone())
}

fn build_check(
    cx: &Ctx<'_>,
    name: &str,
    c: &CheckToml,
    defaults: &Defaults,
    dir: &RuntimeDir,
) -> Result<Spec, ConfigError> {
    let d = cx.common(&c.common(), defaults)?;
    let kind = c.kind.get_ref().as_str();
    let kspan = c.kind.span();
    let (probe, summary) = match kind {
        "tcp" => {
            only(cx, kind, c, &["address"])?;
            let a = address(cx, c, kind, kspan)?;
            (
                Probe::Tcp {
                    target: Target::resolve(&a),
                },
                format!("tcp {a}"),
            )
        }
        "http" => {
            only(
                cx,
                kind,
                c,
                &[
                    "url",
                    "address",
                    "host",
                    "method",
                    "status",
                    "body",
                    "body_regex",
                    "body_limit",
                ],
            )?;
            let u = c.url.as_ref().ok_or_else(|| {
                cx.err::<()>(
                    kspan.clone(),
                    "an http check needs url = \"http://HOST[:PORT]/PATH\"",
                )
            })?;
            let url = parse_url(u.get_ref()).map_err(|e| cx.at(u, format!("url: {e}")))?;
            let connect = match &c.address {
                Some(a) => {
                    check_hostport(a.get_ref()).map_err(|e| cx.at(a, format!("address: {e}")))?;
                    a.get_ref().clone()
                }
                None => url.hostport.clone(),
            };
            let host = match &c.host {
                Some(h) => {
                    let h = h.get_ref();
                    if h.is_empty() || h.bytes().any(|b| b <= b' ' || b == 0x7f) {
                        return Err(cx.at(
                            c.host.as_ref().unwrap_or(u),
                            "host: empty, or blanks or control characters",
                        ));
                    }
                    h.clone()
                }
                None => url.host_header.clone(),
            };
            let method = match &c.method {
                None => "GET",
                Some(m) => match m.get_ref().as_str() {
                    "GET" => "GET",
                    "HEAD" => "HEAD",
                    other => return Err(cx.at(m, format!("method {other:?}: GET or HEAD"))),
                },
            };
            let status = match &c.status {
                Some(s) => parse_status(s.get_ref()).map_err(|e| cx.at(s, e))?,
                None => StatusSet(vec![(200, 299)]),
            };
            let body = matcher(cx, &c.body, &c.body_regex, false, "body")?;
            let body_limit = match &c.body_limit {
                Some(l) if (1..=64 << 20).contains(l.get_ref()) => *l.get_ref() as u32,
                Some(l) => return Err(cx.at(l, "body_limit: 1 to 67108864 bytes")),
                None => 1 << 20,
            };
            // HTTP/1.0 (RFC 1945) with a Host header: the server closes after its answer and
            // never sends a chunked body, so the body is the bytes up to the end.
            let request = format!(
                "{method} {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lvsmon\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                url.path
            );
            let mut summary = format!("http {}", u.get_ref());
            if c.address.is_some() {
                summary.push_str(&format!(" via {connect}"));
            }
            if let Some(m) = &body {
                summary.push_str(&format!(" body {:?}", m.source));
            }
            (
                Probe::Http {
                    target: Target::resolve(&connect),
                    request: request.into_bytes().into_boxed_slice(),
                    expect: HttpExpect {
                        status,
                        body,
                        body_limit,
                    },
                },
                summary,
            )
        }
        "banner" => {
            only(cx, kind, c, &["address", "expect", "expect_regex", "send"])?;
            let a = address(cx, c, kind, kspan.clone())?;
            let expect =
                matcher(cx, &c.expect, &c.expect_regex, true, "expect")?.ok_or_else(|| {
                    cx.err::<()>(
                        kspan,
                        "a banner check needs expect = \"PREFIX\" or expect_regex = \"...\"",
                    )
                })?;
            (
                Probe::Banner {
                    target: Target::resolve(&a),
                    send: c
                        .send
                        .as_ref()
                        .map(|s| s.get_ref().as_bytes().to_vec().into_boxed_slice()),
                    expect: expect.clone(),
                },
                format!("banner {a} expect {:?}", expect.source),
            )
        }
        "udp" => {
            only(cx, kind, c, &["address", "send", "expect", "expect_regex"])?;
            let a = address(cx, c, kind, kspan.clone())?;
            let send = c.send.as_ref().ok_or_else(|| {
                cx.err::<()>(
                    kspan,
                    "a udp check needs send = \"...\" (the datagram to send)",
                )
            })?;
            let expect = matcher(cx, &c.expect, &c.expect_regex, false, "expect")?;
            (
                Probe::Udp {
                    target: Target::resolve(&a),
                    send: send.get_ref().as_bytes().to_vec().into_boxed_slice(),
                    expect,
                },
                format!("udp {a}"),
            )
        }
        "framework" => {
            only(cx, kind, c, &["process", "heartbeat", "condition"])?;
            let p = c
                .process
                .as_ref()
                .ok_or_else(|| cx.err::<()>(kspan, "a framework check needs process = \"NAME\""))?;
            let process =
                ProcName::new(p.get_ref()).map_err(|e| cx.at(p, format!("process: {e}")))?;
            let max_age_ms = match &c.heartbeat {
                Some(h) => cx.duration(h, "heartbeat", 100, 86_400_000)?,
                None => 5000,
            };
            let conditions = match &c.condition {
                Some(cs) => cs
                    .get_ref()
                    .list()
                    .iter()
                    .map(|s| parse_condition(s))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| cx.at(cs, e))?,
                None => Vec::new(),
            };
            let mut summary = format!("framework {process}");
            for cnd in &conditions {
                summary.push_str(&format!(" {} {} {}", cnd.var, cnd.op.text(), cnd.value));
            }
            let watched = Watched::open(dir, &process, &conditions).map(Box::new);
            (
                Probe::Framework(FrameworkProbe {
                    process,
                    dir: dir.clone(),
                    max_age_ms,
                    conditions,
                    watched,
                }),
                summary,
            )
        }
        other => {
            return Err(cx.err::<()>(
                kspan,
                format!("type {other:?} is not one of tcp, http, banner, udp, framework"),
            ))
        }
    };
    let ipvs = match &c.ipvs {
        None => None,
        Some(s) => {
            let i = s.get_ref();
            let protocol = match i.protocol.as_deref().unwrap_or("tcp") {
                "tcp" => "-t",
                "udp" => "-u",
                p => return Err(cx.at(s, format!("ipvs protocol {p:?}: tcp or udp"))),
            };
            let forward = match i.forward.as_deref().unwrap_or("dr") {
                "dr" | "gatewaying" => "-g",
                "nat" | "masq" => "-m",
                "tun" | "ipip" => "-i",
                f => return Err(cx.at(s, format!("ipvs forward {f:?}: dr, nat or tun"))),
            };
            check_hostport(&i.service).map_err(|e| cx.at(s, format!("ipvs service: {e}")))?;
            check_hostport(&i.real).map_err(|e| cx.at(s, format!("ipvs real: {e}")))?;
            let weight = i.weight.unwrap_or(1);
            if !(0..=65535).contains(&weight) {
                return Err(cx.at(s, "ipvs weight: 0 to 65535"));
            }
            Some(Ipvs {
                protocol,
                service: i.service.clone(),
                real: i.real.clone(),
                forward,
                weight: weight as u32,
            })
        }
    };
    Ok(Spec {
        name: name.to_owned(),
        line: 0,
        probe,
        actions: Actions {
            notify: d.notify.clone(),
            ipvs,
        },
        d,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_parse(text: &str) -> Result<Specs, String> {
        let dir = RuntimeDir::at(std::env::temp_dir());
        parse(
            Path::new("checks.conf"),
            text,
            &Defaults::with_interval(10_000),
            &dir,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_good_file() {
        let s = try_parse(
            r#"
[defaults]
rise = 1
connect_timeout = "250ms"

[check.web]
type = "http"
url = "http://127.0.0.1:8080/health?full=1"
status = [200, "3xx", "401-403"]
body = "OK"
fall = 5

[check.ssh]
type = "banner"
address = "127.0.0.1:22"
expect = "SSH-2.0-"

[check.spy]
type = "framework"
process = "spy1"
condition = ["no_conn == 0", "rate >= 1.5"]
"#,
        )
        .unwrap();
        assert_eq!(s.checks.len(), 3);
        let names: Vec<&str> = s.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["spy", "ssh", "web"]);
        let web = &s.checks[2];
        assert_eq!(web.d.thresholds.rise, 1);
        assert_eq!(web.d.thresholds.fall, 5);
        assert_eq!(web.d.connect_timeout_ms, 250);
        match &web.probe {
            Probe::Http {
                request, expect, ..
            } => {
                let r = std::str::from_utf8(request).unwrap();
                assert!(r.starts_with("GET /health?full=1 HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n"));
                assert!(expect.status.contains(302) && expect.status.contains(402));
                assert!(!expect.status.contains(404));
            }
            _ => panic!("not http"),
        }
    }

    #[test]
    fn bad_files_name_line_and_reason() {
        let cases = [
            (
                "[check.a]\ntype = \"tcp\"\naddress = \"10.0.0.1\"\n",
                "checks.conf:3: check a: address: \"10.0.0.1\" has no port",
            ),
            (
                "[check.a]\ntype = \"smtp\"\n",
                "checks.conf:2: check a: type \"smtp\" is not one of",
            ),
            (
                "[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\nbogus = 1\n",
                "checks.conf:",
            ),
            (
                "\n\n[check.a]\ntype = \"http\"\nurl = \"https://x/\"\n",
                "checks.conf:5: check a: url: https://x/: https is not supported",
            ),
            (
                "[check.a]\ntype = \"http\"\nurl = \"http://127.0.0.1/\"\nbody_regex = \"(\"\n",
                "checks.conf:4: check a: bad pattern",
            ),
            (
                "[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\nbody = \"x\"\n",
                "checks.conf:4: check a: body does not apply to a tcp check",
            ),
            (
                "[check.a]\ntype = \"framework\"\nprocess = \"p\"\ncondition = \"x = 1\"\n",
                "checks.conf:4: check a: condition \"x = 1\": write VARIABLE OP NUMBER",
            ),
            (
                "[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\nrise = 0\n",
                "checks.conf:4: check a: rise: 0 is outside 1 to 1000",
            ),
            (
                "[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\ninterval = \"soon\"\n",
                "checks.conf:4: check a: interval: \"soon\" is not a duration",
            ),
            (
                "[check.a]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\nnotify = \"/nonexistent/x\"\n",
                "checks.conf:4: check a: notify: /nonexistent/x: no such executable",
            ),
            (
                "[check.\"a b\"]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\n",
                "checks.conf:1: check a b: the name must be",
            ),
            (
                "[check.a]\ntype = \"tcp\"\n",
                "checks.conf:2: check a: a tcp check needs address",
            ),
            ("[check.a\ntype = \"tcp\"\n", "checks.conf:1: "),
        ];
        for (text, want) in cases {
            let e = try_parse(text).expect_err(text);
            assert!(e.starts_with(want), "for {text:?}:\n got {e}\nwant {want}");
        }
    }

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("../../../docs/examples/lvsmon.conf")
            .replace("/usr/local/bin/lvsmon-notify", "/bin/true")
            .replace("/sbin/ipvsadm", "/bin/true")
            // No DNS query from a test: the one name the example resolves becomes an address.
            .replace("mail.example.org", "127.0.0.1");
        let s = try_parse(&text).unwrap();
        assert_eq!(s.checks.len(), 7);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("10s"), Some(10_000));
        assert_eq!(parse_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("10"), Some(10_000));
        assert_eq!(parse_duration_ms("10 parsecs"), None);
    }
}
