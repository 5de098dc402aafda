//! Who may read and write: an access file in the style of EPICS' access security
//! configuration (ACF), the subset a gateway needs.
//!
//! ```text
//! # who is who
//! UAG(ops)      { alice, bob }
//! HAG(consoles) { console1, 192.168.1.20 }
//! ASG(DEFAULT) {
//!     RULE(1, READ)
//!     RULE(1, WRITE) {
//!         UAG(ops)
//!         HAG(consoles)
//!     }
//! }
//! ```
//!
//! A rule grants READ, WRITE (which includes READ) or NONE. A rule without a body applies to
//! everyone; with a body it applies when the client's user is in one of its UAGs (if it names
//! any) and its host is in one of its HAGs (if it names any). The rights are the union of the
//! rules that apply; the access level number is read and ignored (every variable is level 0).
//! `ASG(DEFAULT)` covers every PV the PV list (`--pvlist`, [`super::pvlist`]) puts in no other
//! group; other groups are named `ASG(NAME)` and given their PVs by the PV list. A group that
//! is not defined grants nothing (EPICS does the same for an `ASG(DEFAULT)` left out).
//!
//! CA identity is asserted by the client: the user and host names are what the client sends
//! (CLIENT_NAME, HOST_NAME), and anyone can send any name. A HAG entry that is an IP address
//! is compared with the real address of the client's TCP connection instead, which the client
//! cannot choose; use addresses where it matters.
//!
//! Without an access file everyone may read and no one may write.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::proto::{ACCESS_READ, ACCESS_WRITE};
use super::pvlist::{PvList, Served};

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    None,
    Read,
    Write,
}

#[derive(Debug, Clone)]
struct Rule {
    grant: Grant,
    uags: Vec<String>,
    hags: Vec<String>,
}

/// A parsed access file, with the PV list that puts PVs in its groups.
#[derive(Debug, Clone)]
pub struct Access {
    uags: HashMap<String, Vec<String>>,
    hags: HashMap<String, Vec<String>>,
    /// The access security groups and their rules; `DEFAULT` first, always (with no rules
    /// if the file does not define it).
    asgs: Vec<(String, Vec<Rule>)>,
    /// Which PVs are served, and the group of each of its lines (resolved once, when the list
    /// is joined to the rules); `None`: all, in DEFAULT.
    pvlist: Option<(PvList, Vec<Group>)>,
}

/// An access security group, by its place in [`Access`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group(usize);

impl Group {
    /// `ASG(DEFAULT)`, always the first.
    pub const DEFAULT: Group = Group(0);
}

/// Who a client says it is, and where it really connects from.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The user name it asserted (CLIENT_NAME), or "".
    pub user: &'a str,
    /// The host name it asserted (HOST_NAME), or "".
    pub host: &'a str,
    /// Its address.
    pub peer: IpAddr,
}

impl Default for Access {
    fn default() -> Self {
        Access::read_only()
    }
}

impl Access {
    /// The rule without a file: everyone reads, no one writes.
    pub fn read_only() -> Access {
        Access {
            uags: HashMap::new(),
            hags: HashMap::new(),
            asgs: vec![(
                "DEFAULT".to_owned(),
                vec![Rule {
                    grant: Grant::Read,
                    uags: Vec::new(),
                    hags: Vec::new(),
                }],
            )],
            pvlist: None,
        }
    }

    /// These rules with PV list `l`: its PVs in its groups, which must all be defined here.
    ///
    /// # Errors
    /// A group the list names that this file does not define, with the list's line.
    pub fn with_pvlist(mut self, l: PvList) -> Result<Access, String> {
        let groups = l
            .lines
            .iter()
            .map(|line| {
                // A DENY line has no group; DEFAULT stands in, never used.
                let g = line.allow.as_deref().unwrap_or("DEFAULT");
                self.group(g).ok_or_else(|| {
                    format!(
                        "line {}: ASG({g}) is not defined in the access file (define it there, \
                         or leave the ASG out for DEFAULT)",
                        line.line
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.pvlist = Some((l, groups));
        Ok(self)
    }

    /// Whether a PV list chooses the PVs (without one every PV is served, in DEFAULT).
    pub fn has_pvlist(&self) -> bool {
        self.pvlist.is_some()
    }

    fn group(&self, name: &str) -> Option<Group> {
        self.asgs.iter().position(|(n, _)| n == name).map(Group)
    }

    /// The group of PV `name` (given without its field), or `None` if the PV list does not
    /// let the gateway serve it.
    pub fn group_of(&self, name: &str) -> Option<Group> {
        let Some((l, groups)) = &self.pvlist else {
            return Some(Group::DEFAULT);
        };
        match l.lookup(name) {
            Served::No => None,
            Served::Default => Some(Group::DEFAULT),
            Served::ByLine(i) => Some(groups[i]),
        }
    }

    /// Reads an access file.
    ///
    /// # Errors
    /// What is wrong, with the file name and line.
    pub fn load(path: &Path) -> Result<Access, String> {
        let text = crate::support::files::read_trusted_file(path)
            .map_err(|e| format!("access file {}: {e}", path.display()))?;
        Access::parse(&text).map_err(|e| format!("access file {}: {e}", path.display()))
    }

    /// Parses the text of an access file.
    ///
    /// # Errors
    /// What is wrong and on which line.
    pub fn parse(text: &str) -> Result<Access, String> {
        let toks = tokenize(text)?;
        let mut p = Parser { toks, i: 0 };
        let mut a = Access {
            uags: HashMap::new(),
            hags: HashMap::new(),
            asgs: vec![("DEFAULT".to_owned(), Vec::new())],
            pvlist: None,
        };
        let mut defined = std::collections::HashSet::new();
        while let Some((line, t)) = p.peek() {
            let line = *line;
            let kw = t.clone();
            p.i += 1;
            match kw.as_str() {
                "UAG" | "HAG" => {
                    let name = p.paren_word()?;
                    let members = p.brace_list()?;
                    let map = if kw == "UAG" {
                        &mut a.uags
                    } else {
                        &mut a.hags
                    };
                    if map.insert(name.clone(), members).is_some() {
                        return Err(format!("line {line}: {kw}({name}) is defined twice"));
                    }
                }
                "ASG" => {
                    let name = p.paren_word()?;
                    if !defined.insert(name.clone()) {
                        return Err(format!("line {line}: ASG({name}) is defined twice"));
                    }
                    // DEFAULT is there from the start (empty); any other is new.
                    let at = match a.group(&name) {
                        Some(Group(i)) => i,
                        None => {
                            a.asgs.push((name.clone(), Vec::new()));
                            a.asgs.len() - 1
                        }
                    };
                    p.expect("{")?;
                    while !p.eat("}") {
                        let r = p.rule(&name)?;
                        a.asgs[at].1.push(r);
                    }
                }
                other => {
                    return Err(format!(
                        "line {line}: expected UAG, HAG or ASG, found {other:?}"
                    ))
                }
            }
        }
        for r in a.asgs.iter().flat_map(|(_, rules)| rules) {
            for u in &r.uags {
                if !a.uags.contains_key(u) {
                    return Err(format!("a rule names UAG({u}), which is not defined"));
                }
            }
            for h in &r.hags {
                if !a.hags.contains_key(h) {
                    return Err(format!("a rule names HAG({h}), which is not defined"));
                }
            }
        }
        Ok(a)
    }

    /// The CA access rights bits (read 1, write 2) of a client to the PVs of group `g`.
    pub fn rights(&self, g: Group, who: &Identity<'_>) -> u32 {
        let mut bits = 0;
        for r in self.asgs.get(g.0).map_or(&[][..], |(_, rules)| rules) {
            let user_ok = r.uags.is_empty()
                || r.uags
                    .iter()
                    .any(|g| self.uags[g].iter().any(|u| u == who.user));
            let host_ok = r.hags.is_empty()
                || r.hags.iter().any(|g| {
                    self.hags[g].iter().any(|h| match h.parse::<IpAddr>() {
                        Ok(ip) => ip == who.peer || Some(ip) == v4_of(who.peer),
                        Err(_) => h.eq_ignore_ascii_case(who.host),
                    })
                });
            if user_ok && host_ok {
                bits |= match r.grant {
                    Grant::None => 0,
                    Grant::Read => ACCESS_READ,
                    Grant::Write => ACCESS_READ | ACCESS_WRITE,
                };
            }
        }
        bits
    }
}

/// The IPv4 address inside an IPv4-mapped IPv6 address.
fn v4_of(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

fn tokenize(text: &str) -> Result<Vec<(usize, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let mut chars = line.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '#' => break,
                c if c.is_whitespace() => {}
                '(' | ')' | '{' | '}' | ',' => out.push((line_no, c.to_string())),
                '"' => {
                    let mut s = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '"' {
                            closed = true;
                            break;
                        }
                        s.push(c);
                    }
                    if !closed {
                        return Err(format!("line {line_no}: unterminated quoted string"));
                    }
                    out.push((line_no, s));
                }
                c if is_word(c) => {
                    let mut end = i + c.len_utf8();
                    while let Some(&(j, d)) = chars.peek() {
                        if !is_word(d) {
                            break;
                        }
                        end = j + d.len_utf8();
                        chars.next();
                    }
                    out.push((line_no, line[i..end].to_owned()));
                }
                c => return Err(format!("line {line_no}: unexpected character {c:?}")),
            }
        }
    }
    Ok(out)
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-.:*$@".contains(c)
}

struct Parser {
    toks: Vec<(usize, String)>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> Option<(&usize, &String)> {
        self.toks.get(self.i).map(|(l, t)| (l, t))
    }

    fn line(&self) -> usize {
        self.toks
            .get(self.i)
            .or(self.toks.last())
            .map_or(0, |(l, _)| *l)
    }

    fn next(&mut self) -> Result<String, String> {
        let t = self
            .toks
            .get(self.i)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| "the file ends in the middle of a definition".to_owned())?;
        self.i += 1;
        Ok(t)
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.toks.get(self.i).is_some_and(|(_, t)| t == s) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) -> Result<(), String> {
        let line = self.line();
        let t = self.next()?;
        if t == s {
            Ok(())
        } else {
            Err(format!("line {line}: expected {s:?}, found {t:?}"))
        }
    }

    fn word(&mut self) -> Result<String, String> {
        let line = self.line();
        let t = self.next()?;
        if ["(", ")", "{", "}", ","].contains(&t.as_str()) {
            Err(format!("line {line}: expected a name, found {t:?}"))
        } else {
            Ok(t)
        }
    }

    fn paren_word(&mut self) -> Result<String, String> {
        self.expect("(")?;
        let w = self.word()?;
        self.expect(")")?;
        Ok(w)
    }

    fn brace_list(&mut self) -> Result<Vec<String>, String> {
        self.expect("{")?;
        let mut v = Vec::new();
        while !self.eat("}") {
            v.push(self.word()?);
            self.eat(",");
        }
        Ok(v)
    }

    fn rule(&mut self, asg: &str) -> Result<Rule, String> {
        let line = self.line();
        let kw = self.word()?;
        if kw != "RULE" {
            return Err(format!(
                "line {line}: expected RULE inside ASG({asg}), found {kw:?}"
            ));
        }
        self.expect("(")?;
        let level = self.word()?;
        if level.parse::<u32>().is_err() {
            return Err(format!(
                "line {line}: RULE({level}, ...): the level must be a number"
            ));
        }
        self.expect(",")?;
        let g = self.word()?;
        let grant = match g.as_str() {
            "NONE" => Grant::None,
            "READ" => Grant::Read,
            "WRITE" => Grant::Write,
            other => {
                return Err(format!(
                    "line {line}: RULE grants NONE, READ or WRITE, not {other:?}"
                ))
            }
        };
        // An option such as TRAPWRITE / NOTRAPWRITE is accepted and has no effect here.
        if self.eat(",") {
            self.word()?;
        }
        self.expect(")")?;
        let mut rule = Rule {
            grant,
            uags: Vec::new(),
            hags: Vec::new(),
        };
        if self.eat("{") {
            while !self.eat("}") {
                let line = self.line();
                let kw = self.word()?;
                self.expect("(")?;
                let mut names = Vec::new();
                loop {
                    names.push(self.word()?);
                    if !self.eat(",") {
                        break;
                    }
                }
                self.expect(")")?;
                match kw.as_str() {
                    "UAG" => rule.uags.extend(names),
                    "HAG" => rule.hags.extend(names),
                    other => {
                        return Err(format!(
                            "line {line}: a RULE body holds UAG(...) and HAG(...), not {other:?}"
                        ))
                    }
                }
            }
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
# operators
UAG(ops) { alice, bob }
HAG(consoles) { console1, 10.1.2.3 }
ASG(DEFAULT) {
    RULE(1, READ)
    RULE(1, WRITE, TRAPWRITE) {
        UAG(ops)
        HAG(consoles)
    }
}
";

    fn who<'a>(user: &'a str, host: &'a str, peer: &str) -> Identity<'a> {
        Identity {
            user,
            host,
            peer: peer.parse().unwrap(),
        }
    }

    const D: Group = Group::DEFAULT;

    #[test]
    fn rules_apply_by_user_and_host() {
        let a = Access::parse(FILE).unwrap();
        assert_eq!(a.rights(D, &who("alice", "console1", "127.0.0.1")), 3);
        assert_eq!(a.rights(D, &who("alice", "CONSOLE1", "127.0.0.1")), 3);
        assert_eq!(a.rights(D, &who("alice", "laptop", "10.1.2.3")), 3);
        assert_eq!(a.rights(D, &who("alice", "laptop", "::ffff:10.1.2.3")), 3);
        assert_eq!(a.rights(D, &who("alice", "laptop", "127.0.0.1")), 1);
        assert_eq!(a.rights(D, &who("eve", "console1", "127.0.0.1")), 1);
        assert_eq!(Access::read_only().rights(D, &who("alice", "x", "::1")), 1);
    }

    #[test]
    fn the_example_file_parses() {
        let a = Access::parse(include_str!("../../../docs/examples/ca.acf")).unwrap();
        assert_eq!(a.rights(D, &who("anyone", "anywhere", "127.0.0.1")), 3);
        assert_eq!(a.rights(D, &who("anyone", "localhost", "10.0.0.9")), 1);
    }

    #[test]
    fn errors_name_the_line() {
        let e = Access::parse("UAG(a) { x }\nASG(DEFAULT) {\n RULE(1, FLY)\n}").unwrap_err();
        assert!(e.contains("line 3") && e.contains("FLY"), "{e}");
        let e = Access::parse("ASG(DEFAULT) { RULE(1, WRITE) { UAG(nobody) } }").unwrap_err();
        assert!(e.contains("UAG(nobody)"), "{e}");
        let e = Access::parse("ASG(DEFAULT) { }\n\nASG(DEFAULT) { }").unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("ASG(DEFAULT) is defined twice"),
            "{e}"
        );
        let e = Access::parse("ASG(OPS) { }\nASG(OPS) { }").unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("ASG(OPS) is defined twice"),
            "{e}"
        );
        let e =
            Access::parse("ASG(OPS) { RULE(1, READ) }\nASG(DEFAULT) { RULE(1, WRITE) { UAG(x) } }")
                .unwrap_err();
        assert!(e.contains("UAG(x)"), "{e}");
        let e = Access::parse("UAG(a) { x").unwrap_err();
        assert!(e.contains("ends"), "{e}");
        assert!(Access::parse("bogus").is_err());
    }

    #[test]
    fn groups_from_the_pv_list_have_their_own_rules() {
        let a = Access::parse(
            "UAG(ops) { alice }\nASG(DEFAULT) { RULE(1, READ) }\nASG(RUNCTL) {\n RULE(1, READ)\n RULE(1, WRITE) { UAG(ops) }\n}\nASG(HIDDEN) { RULE(1, NONE) }\n",
        )
        .unwrap();
        let l = PvList::parse(
            ".* ALLOW\nspy1:cmd ALLOW RUNCTL\nspy1:secret ALLOW HIDDEN\ntest.*:.* DENY\n",
        )
        .unwrap();
        let a = a.with_pvlist(l).unwrap();
        let alice = who("alice", "h", "127.0.0.1");
        let eve = who("eve", "h", "127.0.0.1");
        let g = |n: &str| a.group_of(n);
        assert_eq!(a.rights(g("spy1:cmd").unwrap(), &alice), 3);
        assert_eq!(a.rights(g("spy1:cmd").unwrap(), &eve), 1);
        assert_eq!(a.rights(g("spy1:rate").unwrap(), &alice), 1);
        assert_eq!(a.rights(g("spy1:secret").unwrap(), &alice), 0);
        assert_eq!(g("test1:rate"), None);
        // Without a PV list: everything, in DEFAULT.
        let a =
            Access::parse("ASG(DEFAULT) { RULE(1, WRITE) }\nASG(OPS) { RULE(1, NONE) }").unwrap();
        assert_eq!(a.group_of("any:thing"), Some(D));
        assert_eq!(a.rights(D, &eve), 3);
        // A file without ASG(DEFAULT) grants nothing to the PVs in it.
        let a = Access::parse("ASG(OPS) { RULE(1, WRITE) }").unwrap();
        assert_eq!(a.rights(a.group_of("t1:rate").unwrap(), &eve), 0);
    }

    #[test]
    fn a_pv_list_naming_an_undefined_group_is_refused_with_its_line() {
        let l = PvList::parse(".* ALLOW\nspy1:cmd ALLOW RUNCTL\n").unwrap();
        let e = Access::read_only().with_pvlist(l.clone()).unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("ASG(RUNCTL) is not defined"),
            "{e}"
        );
        let a = Access::parse("ASG(RUNCTL) { RULE(1, READ) }").unwrap();
        assert!(a.with_pvlist(l).is_ok());
    }

    #[test]
    fn the_example_pv_list_parses() {
        let l = PvList::parse(include_str!("../../../docs/examples/ca.pvlist")).unwrap();
        let a = Access::parse("ASG(DEFAULT) { RULE(1, READ) }\nASG(RUNCTL) { RULE(1, WRITE) }")
            .unwrap()
            .with_pvlist(l)
            .unwrap();
        let w = who("anyone", "anywhere", "127.0.0.1");
        assert_eq!(a.rights(a.group_of("spy1:cmd").unwrap(), &w), 3);
        assert_eq!(a.rights(a.group_of("spy:maxevents").unwrap(), &w), 3);
        assert_eq!(a.rights(a.group_of("spy1:rate").unwrap(), &w), 1);
        assert_eq!(a.group_of("test3:rate"), None);
    }

    /// Mutated access files and PV lists: the parsers never panic, and whatever they accept
    /// answers every lookup (no group or UAG/HAG a rule names is missing).
    #[test]
    fn fuzz_the_access_file_and_the_pv_list() {
        use crate::support::fuzz::{mutate, Rng};
        let mut rng = Rng::new(0x5eed_acf0_1157_u64);
        let acf = FILE.to_owned() + "ASG(RUNCTL) {\n RULE(1, WRITE) { UAG(ops) }\n}\n";
        let list = include_str!("../../../docs/examples/ca.pvlist");
        let names = [
            "spy1:cmd",
            "spy:maxevents",
            "test3:rate",
            "t1:rate",
            "",
            ":",
            ".",
        ];
        let people = [
            who("alice", "console1", "127.0.0.1"),
            who("eve", "", "::1"),
            who("", "10.1.2.3", "10.1.2.3"),
        ];
        let (mut accepted, mut listed) = (0, 0);
        for _ in 0..3_000 {
            let mut a = acf.clone().into_bytes();
            let mut l = list.to_owned().into_bytes();
            mutate(&mut a, &mut rng, 4);
            mutate(&mut l, &mut rng, 4);
            let Ok(access) = Access::parse(&String::from_utf8_lossy(&a)) else {
                continue;
            };
            accepted += 1;
            let access = match PvList::parse(&String::from_utf8_lossy(&l)) {
                Ok(pl) => match access.clone().with_pvlist(pl) {
                    Ok(x) => {
                        listed += 1;
                        x
                    }
                    Err(_) => access,
                },
                Err(_) => access,
            };
            for n in names {
                if let Some(g) = access.group_of(n) {
                    for w in &people {
                        assert!(access.rights(g, w) <= 3);
                    }
                }
            }
        }
        // The mutations leave many inputs valid: the lookups were exercised.
        assert!(accepted > 300 && listed > 150, "{accepted} {listed}");
    }
}
