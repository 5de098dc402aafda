//! From a check's TOML table to its definition: what each kind of check may set, and the
//! probe, matcher and target it makes.

use super::*;

/// Refuses keys that do not belong to a kind of check.
pub(super) fn only(
    cx: &Ctx<'_>,
    kind: &str,
    c: &CheckToml,
    allowed: &[&str],
) -> Result<(), ConfigError> {
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

pub(super) fn matcher(
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

pub(super) fn address(
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

pub(super) fn build_check(
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
