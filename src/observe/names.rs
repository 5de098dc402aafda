//! Structured variable names (`worker.3.state`): shell-style wildcards over them, the table a
//! family of rows makes (`worker.*.*`), and the nested JSON object they read as. What `shvar get
//! NAME 'worker.*.state'`, `shvar dump --table worker`, spyctl's `get` and `watch` share.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

/// Whether `pattern` has wildcard characters (`*`, `?`, `[`).
pub fn is_pattern(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Shell-style matching of a whole variable name: `*` any run of characters (dots included, so
/// `check.*` is every variable of the `check` table), `?` one character, `[abc]`, `[a-z]` and
/// `[!abc]` one character of (not of) the set; every other character stands for itself.
///
/// # Examples
/// ```
/// use daqproc::observe::names::matches;
/// assert!(matches("worker.*.state", "worker.3.state"));
/// assert!(!matches("worker.*.state", "worker.3.pid"));
/// assert!(matches("check.*", "check.web1.reason"));
/// assert!(matches("sg_[cm]*", "sg_cpu"));
/// assert!(matches("worker.?.pid", "worker.7.pid") && !matches("worker.?.pid", "worker.12.pid"));
/// ```
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches_at(&p, &n)
}

fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    // p[0] == '['; returns (matched, length of the class in p).
    let mut i = 1;
    let negate = matches!(p.get(1), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let start = i;
    let mut hit = false;
    while i < p.len() {
        if p[i] == ']' && i > start {
            return Some((hit != negate, i + 1));
        }
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    None // unterminated: '[' is then a plain character
}

fn matches_at(p: &[char], n: &[char]) -> bool {
    // Iterative with one backtrack point for the last '*' (the classic glob algorithm).
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((hit, len)) = class(&p[pi..], n[ni]) {
                        if hit {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The names among `names` that `patterns` select, in the order of `names`, each once; a pattern
/// without wildcards selects its name. Returns also the patterns that selected nothing.
pub fn select<'a>(
    patterns: &[String],
    names: impl Iterator<Item = &'a str>,
) -> (Vec<&'a str>, Vec<String>) {
    let names: Vec<&str> = names.collect();
    let mut used = vec![false; patterns.len()];
    let mut out = Vec::new();
    for n in &names {
        let mut hit = false;
        for (i, p) in patterns.iter().enumerate() {
            if matches(p, n) {
                used[i] = true;
                hit = true;
            }
        }
        if hit {
            out.push(*n);
        }
    }
    let unused = patterns
        .iter()
        .zip(used)
        .filter(|(_, u)| !u)
        .map(|(p, _)| p.clone())
        .collect();
    (out, unused)
}

/// A table: rows (the middle parts of `TABLE.ROW.COLUMN` names) and columns (the last part),
/// each in order of first appearance, and the cells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Row keys (`3`, `web1`).
    pub rows: Vec<String>,
    /// Column names (`state`, `pid`).
    pub columns: Vec<String>,
    /// (row, column) -> text.
    pub cells: BTreeMap<(usize, usize), String>,
}

impl Table {
    /// The table `table` among `(name, text)` pairs: every name `TABLE.ROW.COLUMN` (ROW may
    /// itself have dots: `worker.3.sub.state` is row `3.sub`, column `state`).
    pub fn of<'a>(table: &str, vars: impl Iterator<Item = (&'a str, String)>) -> Table {
        let mut t = Table::default();
        let prefix = format!("{table}.");
        for (name, text) in vars {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let Some((row, col)) = rest.rsplit_once('.') else {
                continue;
            };
            let r = match t.rows.iter().position(|x| x == row) {
                Some(i) => i,
                None => {
                    t.rows.push(row.to_owned());
                    t.rows.len() - 1
                }
            };
            let c = match t.columns.iter().position(|x| x == col) {
                Some(i) => i,
                None => {
                    t.columns.push(col.to_owned());
                    t.columns.len() - 1
                }
            };
            t.cells.insert((r, c), text);
        }
        t
    }

    /// The table as aligned text: a head line (`TABLE` and the columns), then a line per row;
    /// cells wider than `max` are cut with `…`.
    pub fn render(&self, table: &str, max: usize) -> String {
        let fit = |s: &str| -> String {
            let s = s.replace(['\n', '\r', '\t'], " ");
            if s.chars().count() <= max {
                s
            } else {
                let mut c: String = s.chars().take(max.saturating_sub(1)).collect();
                c.push('…');
                c
            }
        };
        let mut widths: Vec<usize> = std::iter::once(table.chars().count())
            .chain(self.columns.iter().map(|c| c.chars().count()))
            .collect();
        widths[0] = widths[0].max(
            self.rows
                .iter()
                .map(|r| r.chars().count())
                .max()
                .unwrap_or(0),
        );
        let cell = |r: usize, c: usize| fit(self.cells.get(&(r, c)).map_or("-", String::as_str));
        for r in 0..self.rows.len() {
            for c in 0..self.columns.len() {
                widths[c + 1] = widths[c + 1].max(cell(r, c).chars().count());
            }
        }
        let line = |first: &str, rest: Vec<String>| -> String {
            let mut l = format!("{first:<w$}", w = widths[0]);
            for (i, x) in rest.iter().enumerate() {
                l.push_str("  ");
                l.push_str(&format!("{x:<w$}", w = widths[i + 1]));
            }
            l.trim_end().to_owned()
        };
        let mut out = line(
            &table.to_ascii_uppercase(),
            self.columns
                .iter()
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        );
        out.push('\n');
        for (r, row) in self.rows.iter().enumerate() {
            out.push_str(&line(
                row,
                (0..self.columns.len()).map(|c| cell(r, c)).collect(),
            ));
            out.push('\n');
        }
        out
    }
}

/// `(name, json)` pairs as one nested object: `worker.3.state` is `{"worker":{"3":{"state":..}}}`.
/// A name that is both a leaf and a prefix of another (`a` and `a.b`) keeps its value under `""`.
pub fn nested(vars: impl Iterator<Item = (String, Json)>) -> Json {
    let mut root = Map::new();
    for (name, v) in vars {
        let parts: Vec<&str> = name.split('.').collect();
        insert(&mut root, &parts, v);
    }
    Json::Object(root)
}

fn insert(obj: &mut Map<String, Json>, parts: &[&str], v: Json) {
    let (first, rest) = parts.split_first().expect("a name has a part");
    if rest.is_empty() {
        match obj.get_mut(*first) {
            Some(Json::Object(m)) => {
                m.insert(String::new(), v);
            }
            _ => {
                obj.insert((*first).to_owned(), v);
            }
        }
        return;
    }
    let entry = obj
        .entry((*first).to_owned())
        .or_insert_with(|| Json::Object(Map::new()));
    if !entry.is_object() {
        let leaf = std::mem::replace(entry, Json::Object(Map::new()));
        if let Json::Object(m) = entry {
            m.insert(String::new(), leaf);
        }
    }
    if let Json::Object(m) = entry {
        insert(m, rest, v);
    }
}

/// A name or pattern of [`resolve`] selected nothing.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A plain name that is not a variable (with a hint at close names).
    #[error(transparent)]
    Var(#[from] shvars::region::ReadError),
    /// A pattern that matches no variable.
    #[error("no variable of {process} matches {pattern:?}")]
    NoMatch {
        /// The process.
        process: String,
        /// The pattern.
        pattern: String,
    },
}

/// The variables of `r` that `args` name, in order: a plain name resolves to itself (a typo is
/// an error with a hint), a pattern (`worker.*.state`) to every variable it matches, in the
/// region's order, each once.
///
/// # Errors
/// The first name that is not a variable, or pattern that matches none.
pub fn resolve(
    r: &shvars::region::RegionReader,
    args: &[String],
) -> Result<Vec<shvars::region::VarRef>, ResolveError> {
    let mut out: Vec<shvars::region::VarRef> = Vec::new();
    for a in args {
        if is_pattern(a) {
            let before = out.len();
            for spec in r.specs() {
                if matches(a, &spec.name) && !out.iter().any(|v| v.spec().name == spec.name) {
                    out.push(r.find(&spec.name)?);
                }
            }
            if out.len() == before {
                return Err(ResolveError::NoMatch {
                    process: r.name().to_owned(),
                    pattern: a.clone(),
                });
            }
        } else {
            out.push(r.find(a)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("*", "anything.at.all", true),
            ("worker.*.state", "worker.10.state", true),
            ("worker.*.state", "worker.10.statex", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("[!a]x", "bx", true),
            ("[!a]x", "ax", false),
            ("[a-c]", "b", true),
            ("[a-c]", "d", false),
            ("[", "[", true),
            ("x[", "x[", true),
            ("sg_*", "sg_cpu", true),
            ("sg_*", "sl_cpu", false),
            ("", "", true),
            ("*", "", true),
            ("?", "", false),
        ] {
            assert_eq!(matches(p, n), want, "{p} ~ {n}");
        }
    }

    #[test]
    fn selecting_keeps_order_and_reports_unused_patterns() {
        let names = ["worker.1.state", "worker.1.pid", "worker.2.state", "x"];
        let pats = vec![
            "worker.*.state".to_owned(),
            "nosuch*".to_owned(),
            "x".to_owned(),
        ];
        let (sel, unused) = select(&pats, names.iter().copied());
        assert_eq!(sel, ["worker.1.state", "worker.2.state", "x"]);
        assert_eq!(unused, ["nosuch*"]);
    }

    #[test]
    fn tables_and_nesting() {
        let vars = [
            ("worker.1.state", "IDLE".to_owned()),
            ("worker.1.pid", "42".to_owned()),
            ("worker.2.state", "BUSY".to_owned()),
            ("other", "1".to_owned()),
        ];
        let t = Table::of("worker", vars.iter().map(|(n, v)| (*n, v.clone())));
        assert_eq!(t.rows, ["1", "2"]);
        assert_eq!(t.columns, ["state", "pid"]);
        assert_eq!(
            t.render("worker", 40),
            "WORKER  STATE  PID\n1       IDLE   42\n2       BUSY   -\n"
        );
        let j = nested(
            [
                ("a.b", json!(1)),
                ("a.c", json!(2)),
                ("d", json!("x")),
                ("a", json!(0)),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v)),
        );
        assert_eq!(j, json!({"a": {"b": 1, "c": 2, "": 0}, "d": "x"}));
    }
}
