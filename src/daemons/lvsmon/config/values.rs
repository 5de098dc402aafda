//! The values inside a check's settings: durations, host:port, URLs, status sets, conditions,
//! and where a program is.

use super::*;

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
pub(super) fn check_hostport(s: &str) -> Result<(), String> {
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
pub(super) struct Url {
    pub(super) hostport: String,
    pub(super) host_header: String,
    pub(super) path: String,
}

pub(super) fn parse_url(u: &str) -> Result<Url, String> {
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

pub(super) fn parse_status(items: &[StatusItem]) -> Result<StatusSet, String> {
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
