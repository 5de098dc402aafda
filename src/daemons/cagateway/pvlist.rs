//! Which PVs the gateway serves and which access security group each belongs to: a PV list
//! file in the style of the EPICS CA gateway's (`GATEWAY.pvlist`), the subset without aliases.
//!
//! ```text
//! # Everything, read by everyone (ASG DEFAULT of the access file) ...
//! .*              ALLOW
//! # ... but the run control of spy1 in the group RUNCTL ...
//! spy1:cmd        ALLOW   RUNCTL
//! spy1:max.*      ALLOW   RUNCTL  1
//! # ... and nothing of the test processes.
//! test[0-9]+:.*   DENY
//! ```
//!
//! A line is `PATTERN ALLOW [ASG [ASL]]`, `PATTERN DENY`, or `EVALUATION ORDER ALLOW, DENY`
//! (the default) / `EVALUATION ORDER DENY, ALLOW`. A pattern is a regular expression that must
//! match the whole PV name, **without its field**: `spy1:rate.DESC` is matched as `spy1:rate`,
//! so a field always has its PV's rights and a DENY cannot be got round with `.VAL` (the EPICS
//! gateway matches the name as asked, field included). The ASG (default `DEFAULT`) must be
//! defined in the access file; the ASL (0 or 1) is read and has no effect, as rule levels.
//!
//! - `ALLOW, DENY`: a PV is served if an ALLOW line matches it and no DENY line does.
//! - `DENY, ALLOW`: a PV is served unless a DENY line matches it and no ALLOW line does.
//!
//! A served PV belongs to the ASG of the last ALLOW line that matches it (later lines are the
//! more specific ones, as in the EPICS gateway), or to DEFAULT if none does. A PV not served is
//! not answered in searches and cannot be connected to. Without a PV list every PV is served,
//! in DEFAULT.

use regex_automata::meta::Regex;

/// Evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// ALLOW lines first, then DENY lines override them.
    AllowDeny,
    /// DENY lines first, then ALLOW lines override them.
    DenyAllow,
}

/// One pattern line, its ASG still a name.
#[derive(Debug, Clone)]
pub struct Line {
    /// Line number in the file.
    pub line: usize,
    regex: Regex,
    /// `Some(asg)` for ALLOW, `None` for DENY.
    pub allow: Option<String>,
}

/// Whether a PV is served, and by which line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Not served.
    No,
    /// Served in DEFAULT (order DENY, ALLOW: no line matched).
    Default,
    /// Served in the ASG of the ALLOW line of this index in [`PvList::lines`].
    ByLine(usize),
}

impl Line {
    fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

/// A parsed PV list.
#[derive(Debug, Clone)]
pub struct PvList {
    /// Evaluation order.
    pub order: Order,
    /// The pattern lines, in file order.
    pub lines: Vec<Line>,
}

impl PvList {
    /// Reads a PV list file.
    ///
    /// # Errors
    /// What is wrong, with the file name and line.
    pub fn load(path: &std::path::Path) -> Result<PvList, String> {
        let text = crate::support::files::read_trusted_file(path)
            .map_err(|e| format!("PV list {}: {e}", path.display()))?;
        PvList::parse(&text).map_err(|e| format!("PV list {}: {e}", path.display()))
    }

    /// Parses the text of a PV list.
    ///
    /// # Errors
    /// What is wrong and on which line.
    pub fn parse(text: &str) -> Result<PvList, String> {
        let mut order = None;
        let mut lines = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let l = raw.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            let words: Vec<&str> = l.split_whitespace().collect();
            if words[0].eq_ignore_ascii_case("EVALUATION") {
                let rest = words[1..].concat().to_ascii_uppercase();
                let o = match rest.as_str() {
                    "ORDERALLOW,DENY" => Order::AllowDeny,
                    "ORDERDENY,ALLOW" => Order::DenyAllow,
                    _ => {
                        return Err(format!(
                            "line {line}: expected EVALUATION ORDER ALLOW, DENY or EVALUATION ORDER DENY, ALLOW"
                        ))
                    }
                };
                if order.replace(o).is_some() {
                    return Err(format!("line {line}: a second EVALUATION ORDER"));
                }
                continue;
            }
            let Some(kw) = words.get(1) else {
                return Err(format!(
                    "line {line}: {:?} has no ALLOW or DENY after its pattern",
                    words[0]
                ));
            };
            let pattern = words[0];
            let allow = match kw.to_ascii_uppercase().as_str() {
                "ALLOW" => {
                    if words.len() > 4 {
                        return Err(format!(
                            "line {line}: ALLOW takes at most an ASG and an ASL, found {:?}",
                            words[4..].join(" ")
                        ));
                    }
                    if let Some(asl) = words.get(3) {
                        if !matches!(*asl, "0" | "1") {
                            return Err(format!(
                                "line {line}: the access security level is 0 or 1, not {asl:?}"
                            ));
                        }
                    }
                    Some(words.get(2).copied().unwrap_or("DEFAULT").to_owned())
                }
                "DENY" => {
                    if words.len() > 2 {
                        return Err(format!(
                            "line {line}: DENY {} is not supported (only a DENY for every client)",
                            words[2..].join(" ")
                        ));
                    }
                    None
                }
                "ALIAS" => {
                    return Err(format!(
                        "line {line}: ALIAS is not supported: the gateway serves PVs under their own names"
                    ))
                }
                other => {
                    return Err(format!(
                        "line {line}: expected ALLOW or DENY after the pattern, found {other:?}"
                    ))
                }
            };
            // The whole name must match (`a|ab` matches `ab`: anchoring both ends, not
            // checking where a leftmost match ends).
            let regex = Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| format!("line {line}: pattern {pattern:?}: {e}"))?;
            lines.push(Line { line, regex, allow });
        }
        Ok(PvList {
            order: order.unwrap_or(Order::AllowDeny),
            lines,
        })
    }

    /// Whether PV `name` (without its field) is served, and in which line's ASG.
    pub fn lookup(&self, name: &str) -> Served {
        let allow = self
            .lines
            .iter()
            .rposition(|l| l.allow.is_some() && l.matches(name));
        let denied = || {
            self.lines
                .iter()
                .any(|l| l.allow.is_none() && l.matches(name))
        };
        match (self.order, allow) {
            (Order::AllowDeny, Some(i)) if !denied() => Served::ByLine(i),
            (Order::AllowDeny, _) => Served::No,
            (Order::DenyAllow, Some(i)) => Served::ByLine(i),
            (Order::DenyAllow, None) if denied() => Served::No,
            (Order::DenyAllow, None) => Served::Default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asg(l: &PvList, name: &str) -> Option<String> {
        match l.lookup(name) {
            Served::No => None,
            Served::Default => Some("DEFAULT".to_owned()),
            Served::ByLine(i) => l.lines[i].allow.clone(),
        }
    }

    #[test]
    fn allow_deny_serves_what_an_allow_matches_and_no_deny_does() {
        let l = PvList::parse(
            "# comment\n.*  ALLOW\nspy1:cmd ALLOW RUNCTL\nspy1:max.* ALLOW RUNCTL 1\ntest[0-9]+:.* DENY\n",
        )
        .unwrap();
        assert_eq!(l.order, Order::AllowDeny);
        assert_eq!(asg(&l, "spy1:rate").as_deref(), Some("DEFAULT"));
        assert_eq!(asg(&l, "spy1:cmd").as_deref(), Some("RUNCTL"));
        assert_eq!(asg(&l, "spy1:maxevents").as_deref(), Some("RUNCTL"));
        assert_eq!(asg(&l, "test1:rate"), None);
        // The whole name must match: a prefix or a suffix is not enough.
        assert_eq!(asg(&l, "xspy1:cmd").as_deref(), Some("DEFAULT"));
        assert_eq!(asg(&l, "spy1:cmdx").as_deref(), Some("DEFAULT"));
        assert_eq!(asg(&l, "mytest1:rate").as_deref(), Some("DEFAULT"));
        let l = PvList::parse("t1:a|t1:ab ALLOW\n").unwrap();
        assert_eq!(asg(&l, "t1:ab").as_deref(), Some("DEFAULT"));
        // Nothing allowed: nothing served.
        let l = PvList::parse("spy1:.* ALLOW\n").unwrap();
        assert_eq!(asg(&l, "spy2:rate"), None);
        assert_eq!(asg(&l, "spy1:rate").as_deref(), Some("DEFAULT"));
    }

    #[test]
    fn deny_allow_serves_what_no_deny_matches_or_an_allow_does() {
        let l = PvList::parse("EVALUATION ORDER DENY, ALLOW\nspy.*:.* DENY\nspy1:rate ALLOW OPS\n")
            .unwrap();
        assert_eq!(l.order, Order::DenyAllow);
        assert_eq!(asg(&l, "spy2:rate"), None);
        assert_eq!(asg(&l, "spy1:rate").as_deref(), Some("OPS"));
        assert_eq!(asg(&l, "t1:rate").as_deref(), Some("DEFAULT"));
        let l = PvList::parse("evaluation order deny,allow\n").unwrap();
        assert_eq!(l.order, Order::DenyAllow);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, want) in [
            (".* ALLOW\nspy1:( ALLOW\n", "line 2"),
            (".* ALLOW\nspy1:x ALIAS spy1:y\n", "ALIAS is not supported"),
            ("spy1:x DENY FROM host1\n", "not supported"),
            ("spy1:x\n", "no ALLOW or DENY"),
            ("spy1:x PERMIT\n", "\"PERMIT\""),
            ("spy1:x ALLOW OPS 7\n", "0 or 1"),
            ("spy1:x ALLOW OPS 1 extra\n", "at most"),
            ("EVALUATION ORDER SIDEWAYS\n", "EVALUATION ORDER"),
            (
                "EVALUATION ORDER ALLOW, DENY\nEVALUATION ORDER DENY, ALLOW\n",
                "second",
            ),
        ] {
            let e = PvList::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
