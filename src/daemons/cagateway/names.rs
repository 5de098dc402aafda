//! How a PV name maps to a process, a variable and a field.
//!
//! A PV is `PROCESS:VAR` or `PROCESS:VAR.FIELD`. The process name is everything before the
//! first `:` (process names never hold one). Structured variable names hold dots themselves
//! (`worker.2.state`), and a `.FIELD` suffix has its EPICS meaning, so the rule is:
//!
//! 1. if everything after the `:` names a variable, that is the PV (`isd:worker.2.state`);
//! 2. else, if the part after the last `.` is one of the fields below, written in upper case
//!    exactly as EPICS spells it, the PV is that field of the variable before it
//!    (`isd:worker.2.state.DESC`);
//! 3. else, `PROCESS:cmd` is the process's command PV (when it has no variable `cmd`);
//! 4. else there is no such PV.
//!
//! Variable names are lower case by the house style, so a trailing upper-case field never
//! hides a variable; when one does, the variable wins (rule 1), and its fields are still
//! reached by adding one more `.FIELD`.

/// The fields of a variable, as EPICS records have them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The value (no suffix, or `.VAL`).
    Val,
    /// The value of a string variable as a char array of its whole capacity (`.VAL$`).
    LongString,
    /// Engineering units.
    Egu,
    /// Description.
    Desc,
    /// Display high (the variable's max).
    Hopr,
    /// Display low (the variable's min).
    Lopr,
    /// Major alarm high.
    Hihi,
    /// Minor alarm high.
    High,
    /// Minor alarm low.
    Low,
    /// Major alarm low.
    Lolo,
    /// Drive (control) high.
    Drvh,
    /// Drive (control) low.
    Drvl,
    /// Display precision.
    Prec,
    /// Monitor deadband (kept by the gateway).
    Mdel,
    /// Archive deadband (kept by the gateway).
    Adel,
}

impl Field {
    /// Every field with its suffix.
    pub const ALL: [(&'static str, Field); 15] = [
        ("VAL", Field::Val),
        ("VAL$", Field::LongString),
        ("EGU", Field::Egu),
        ("DESC", Field::Desc),
        ("HOPR", Field::Hopr),
        ("LOPR", Field::Lopr),
        ("HIHI", Field::Hihi),
        ("HIGH", Field::High),
        ("LOW", Field::Low),
        ("LOLO", Field::Lolo),
        ("DRVH", Field::Drvh),
        ("DRVL", Field::Drvl),
        ("PREC", Field::Prec),
        ("MDEL", Field::Mdel),
        ("ADEL", Field::Adel),
    ];

    /// The field a suffix names, if any (upper case only).
    pub fn from_suffix(s: &str) -> Option<Field> {
        Field::ALL.iter().find(|(n, _)| *n == s).map(|(_, f)| *f)
    }

    /// The suffix.
    pub fn suffix(self) -> &'static str {
        Field::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("VAL", |(n, _)| n)
    }
}

/// A PV name split at the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PvName<'a> {
    /// The process.
    pub process: &'a str,
    /// Everything after the `:`.
    pub rest: &'a str,
}

impl<'a> PvName<'a> {
    /// Splits `name` at its first `:`; `None` if there is none, or either side is empty.
    pub fn parse(name: &'a str) -> Option<PvName<'a>> {
        let (process, rest) = name.split_once(':')?;
        if process.is_empty() || rest.is_empty() {
            return None;
        }
        Some(PvName { process, rest })
    }

    /// The readings of the rest, in the order they are tried: the whole as a variable, then
    /// a variable and a field.
    pub fn readings(&self) -> impl Iterator<Item = (&'a str, Field)> {
        let whole = Some((self.rest, Field::Val));
        let field = self.rest.rsplit_once('.').and_then(|(var, suffix)| {
            let f = Field::from_suffix(suffix)?;
            (!var.is_empty()).then_some((var, f))
        });
        whole.into_iter().chain(field)
    }
}

/// The name of the command PV of a process.
pub const COMMAND_PV: &str = "cmd";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_names_and_fields() {
        let n = PvName::parse("isd:worker.2.state").unwrap();
        assert_eq!(n.process, "isd");
        let r: Vec<_> = n.readings().collect();
        assert_eq!(r, vec![("worker.2.state", Field::Val)]);
        let n = PvName::parse("isd:worker.2.state.DESC").unwrap();
        let r: Vec<_> = n.readings().collect();
        assert_eq!(
            r,
            vec![
                ("worker.2.state.DESC", Field::Val),
                ("worker.2.state", Field::Desc)
            ]
        );
        // Lower case is never a field.
        let n = PvName::parse("t:label.desc").unwrap();
        assert_eq!(n.readings().count(), 1);
        let n = PvName::parse("t:label.VAL$").unwrap();
        assert_eq!(n.readings().nth(1), Some(("label", Field::LongString)));
        assert_eq!(PvName::parse("nocolon"), None);
        assert_eq!(PvName::parse(":x"), None);
        assert_eq!(PvName::parse("x:"), None);
        let n = PvName::parse("a:b:c").unwrap();
        assert_eq!((n.process, n.rest), ("a", "b:c"));
        assert_eq!(PvName::parse("t:.EGU").unwrap().readings().count(), 1);
    }
}
