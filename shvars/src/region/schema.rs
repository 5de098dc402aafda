//! The schema of a region: what each variable is. Written once per variable by the owner as one
//! JSON line in the schema area, parsed once by readers.

use serde::{Deserialize, Serialize};

use super::error::SetError;
use super::layout::{str_slot_size, MAX_STR_CAP, NUM_SLOT_SIZE};

/// The type of a variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
pub enum VarType {
    /// A signed 64-bit integer.
    Integer,
    /// A 64-bit float.
    Float,
    /// UTF-8 text of at most `cap` bytes.
    String {
        /// Capacity in bytes.
        cap: usize,
    },
    /// An integer with a label for each value `0..labels.len()`.
    Enum {
        /// The labels, indexed by value.
        labels: Vec<String>,
    },
}

impl VarType {
    /// The name used in listings: INTEGER, FLOAT, STRING, ENUM.
    pub fn name(&self) -> &'static str {
        match self {
            VarType::Integer => "INTEGER",
            VarType::Float => "FLOAT",
            VarType::String { .. } => "STRING",
            VarType::Enum { .. } => "ENUM",
        }
    }

    /// Size of the value slot of this type.
    pub fn slot_size(&self) -> usize {
        match self {
            VarType::String { cap } => str_slot_size(*cap),
            _ => NUM_SLOT_SIZE,
        }
    }
}

/// Who may change a variable through the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// Read-only: only the owner's own code changes it.
    #[serde(rename = "R")]
    ReadOnly,
    /// Read/write: `set VAR VALUE` on the control FIFO may change it.
    #[serde(rename = "R/W")]
    ReadWrite,
}

impl Access {
    /// `R` or `R/W`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadOnly => "R",
            Access::ReadWrite => "R/W",
        }
    }
}

/// A value of a variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// INTEGER or ENUM value.
    Int(i64),
    /// FLOAT value.
    Float(f64),
    /// STRING value.
    Str(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

/// The alarm state of a numeric value against its limits (EPICS status; [`AlarmStatus::severity`]
/// gives the severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmStatus {
    /// Inside every limit.
    #[serde(rename = "NO_ALARM")]
    NoAlarm,
    /// At or below LOW.
    #[serde(rename = "LOW")]
    Low,
    /// At or above HIGH.
    #[serde(rename = "HIGH")]
    High,
    /// At or below LOLO.
    #[serde(rename = "LOLO")]
    LoLo,
    /// At or above HIHI.
    #[serde(rename = "HIHI")]
    HiHi,
    /// Not a number.
    #[serde(rename = "INVALID")]
    Invalid,
}

/// How bad an alarm is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// No alarm.
    #[serde(rename = "NO_ALARM")]
    NoAlarm,
    /// LOW or HIGH.
    #[serde(rename = "MINOR")]
    Minor,
    /// LOLO, HIHI, or not a number.
    #[serde(rename = "MAJOR")]
    Major,
}

impl AlarmStatus {
    /// `NO_ALARM`, `LOW`, `HIGH`, `LOLO`, `HIHI`, `INVALID`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmStatus::NoAlarm => "NO_ALARM",
            AlarmStatus::Low => "LOW",
            AlarmStatus::High => "HIGH",
            AlarmStatus::LoLo => "LOLO",
            AlarmStatus::HiHi => "HIHI",
            AlarmStatus::Invalid => "INVALID",
        }
    }

    /// The severity: MINOR for LOW and HIGH, MAJOR for LOLO, HIHI and INVALID.
    pub fn severity(self) -> Severity {
        match self {
            AlarmStatus::NoAlarm => Severity::NoAlarm,
            AlarmStatus::Low | AlarmStatus::High => Severity::Minor,
            _ => Severity::Major,
        }
    }
}

impl Severity {
    /// `NO_ALARM`, `MINOR`, `MAJOR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::NoAlarm => "NO_ALARM",
            Severity::Minor => "MINOR",
            Severity::Major => "MAJOR",
        }
    }
}

/// Everything about one variable except its value. One JSON line of the schema area.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VarSpec {
    /// Name, unique in the region.
    pub name: String,
    /// Type (and string capacity or enum labels).
    #[serde(flatten)]
    pub ty: VarType,
    /// R or R/W.
    pub access: Access,
    /// What it is, for people.
    #[serde(default)]
    pub desc: String,
    /// Unit, if any (`ms`, `Hz`, `bytes`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Smallest accepted value (numbers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest accepted value (numbers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Initial value.
    pub default: Value,
    /// Counter (only grows, Prometheus `counter`) rather than a gauge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub counter: bool,
    /// The metric name monitoring exporters use for it instead of one derived from its name
    /// (`probe_success`); see docs/region.md for how a table row becomes a label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Alarm limit: at or below it the value is in MAJOR alarm (LOLO). Numbers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lolo: Option<f64>,
    /// Alarm limit: at or below it the value is in MINOR alarm (LOW).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    /// Alarm limit: at or above it the value is in MINOR alarm (HIGH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// Alarm limit: at or above it the value is in MAJOR alarm (HIHI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hihi: Option<f64>,
    /// Digits after the decimal point when a FLOAT is shown to people (EPICS PREC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prec: Option<u8>,
    /// Id of the variable, unique in its region's file and never reused (set by the region).
    #[serde(default)]
    pub id: u32,
    /// Offset of the slot from the start of the file (set by the region).
    #[serde(default)]
    pub offset: usize,
}

impl VarSpec {
    fn new(name: &str, ty: VarType, default: Value) -> Self {
        VarSpec {
            name: name.to_owned(),
            ty,
            access: Access::ReadOnly,
            desc: String::new(),
            unit: None,
            min: None,
            max: None,
            default,
            counter: false,
            metric: None,
            lolo: None,
            low: None,
            high: None,
            hihi: None,
            prec: None,
            id: 0,
            offset: 0,
        }
    }

    /// A read-only INTEGER with default `default`.
    pub fn int(name: &str, default: i64) -> Self {
        Self::new(name, VarType::Integer, Value::Int(default))
    }

    /// A read-only FLOAT with default `default`.
    pub fn float(name: &str, default: f64) -> Self {
        Self::new(name, VarType::Float, Value::Float(default))
    }

    /// A read-only STRING of capacity `cap` bytes with default `default`.
    pub fn string(name: &str, cap: usize, default: &str) -> Self {
        Self::new(
            name,
            VarType::String { cap },
            Value::Str(default.to_owned()),
        )
    }

    /// A read-only ENUM with the given labels and default value (an index into `labels`).
    pub fn enumeration(name: &str, labels: &[&str], default: i64) -> Self {
        Self::new(
            name,
            VarType::Enum {
                labels: labels.iter().map(|s| (*s).to_owned()).collect(),
            },
            Value::Int(default),
        )
    }

    /// Makes it read/write.
    pub fn rw(mut self) -> Self {
        self.access = Access::ReadWrite;
        self
    }

    /// Sets the description.
    pub fn desc(mut self, d: &str) -> Self {
        self.desc = d.to_owned();
        self
    }

    /// Sets the unit.
    pub fn unit(mut self, u: &str) -> Self {
        self.unit = Some(u.to_owned());
        self
    }

    /// Sets the accepted range.
    pub fn range(mut self, min: Option<f64>, max: Option<f64>) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    /// Marks it a counter.
    pub fn counter(mut self) -> Self {
        self.counter = true;
        self
    }

    /// Names the metric monitoring exporters publish it as (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
    pub fn metric(mut self, m: &str) -> Self {
        self.metric = Some(m.to_owned());
        self
    }

    /// Sets the alarm limits (LOLO, LOW, HIGH, HIHI; `None` for a limit not used). A value at
    /// or beyond LOW or HIGH is a MINOR alarm, at or beyond LOLO or HIHI a MAJOR one.
    pub fn alarms(
        mut self,
        lolo: Option<f64>,
        low: Option<f64>,
        high: Option<f64>,
        hihi: Option<f64>,
    ) -> Self {
        self.lolo = lolo;
        self.low = low;
        self.high = high;
        self.hihi = hihi;
        self
    }

    /// Sets the display precision of a FLOAT: digits after the decimal point.
    pub fn precision(mut self, digits: u8) -> Self {
        self.prec = Some(digits);
        self
    }

    /// Whether any alarm limit is set.
    pub fn has_alarms(&self) -> bool {
        self.lolo.is_some() || self.low.is_some() || self.high.is_some() || self.hihi.is_some()
    }

    /// The alarm state of value `v` against the limits (EPICS semantics: HIHI and LOLO first,
    /// a limit reached counts). Strings, enums without limits and numbers inside them are
    /// [`AlarmStatus::NoAlarm`]; a FLOAT that is not a number is [`AlarmStatus::Invalid`], a
    /// MAJOR alarm.
    pub fn alarm(&self, v: &Value) -> AlarmStatus {
        let x = match v {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            Value::Str(_) => return AlarmStatus::NoAlarm,
        };
        if !self.has_alarms() {
            return AlarmStatus::NoAlarm;
        }
        if x.is_nan() {
            return AlarmStatus::Invalid;
        }
        if self.hihi.is_some_and(|l| x >= l) {
            AlarmStatus::HiHi
        } else if self.lolo.is_some_and(|l| x <= l) {
            AlarmStatus::LoLo
        } else if self.high.is_some_and(|l| x >= l) {
            AlarmStatus::High
        } else if self.low.is_some_and(|l| x <= l) {
            AlarmStatus::Low
        } else {
            AlarmStatus::NoAlarm
        }
    }

    /// The label of enum value `v`, if this is an ENUM and `v` has one.
    pub fn label(&self, v: i64) -> Option<&str> {
        match &self.ty {
            VarType::Enum { labels } => usize::try_from(v)
                .ok()
                .and_then(|i| labels.get(i))
                .map(String::as_str),
            _ => None,
        }
    }

    /// Formats `v` for people: enum values as their label.
    pub fn display(&self, v: &Value) -> String {
        match (v, &self.ty) {
            (Value::Int(i), VarType::Enum { .. }) => match self.label(*i) {
                Some(l) => l.to_owned(),
                None => i.to_string(),
            },
            (Value::Float(f), _) => match self.prec {
                Some(p) if f.is_finite() => format!("{f:.*}", usize::from(p)),
                _ => v.to_string(),
            },
            _ => v.to_string(),
        }
    }

    /// Checks the spec is self-consistent (used by the owner before publishing it, and by
    /// readers on what they parse).
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        crate::dir::check_var_name(&self.name).map_err(|e| e.to_string())?;
        match &self.ty {
            VarType::String { cap } if *cap == 0 || *cap > MAX_STR_CAP => {
                return Err(format!(
                    "variable {}: string capacity {cap} is outside 1..={MAX_STR_CAP}",
                    self.name
                ));
            }
            VarType::Enum { labels } if labels.is_empty() => {
                return Err(format!("variable {}: an enum needs labels", self.name));
            }
            _ => {}
        }
        if self.has_alarms() || self.prec.is_some() {
            if matches!(self.ty, VarType::String { .. }) {
                return Err(format!(
                    "variable {}: alarm limits and precision are for numbers, not STRING",
                    self.name
                ));
            }
            let set: Vec<(&str, f64)> = [
                ("LOLO", self.lolo),
                ("LOW", self.low),
                ("HIGH", self.high),
                ("HIHI", self.hihi),
            ]
            .into_iter()
            .filter_map(|(n, l)| l.map(|l| (n, l)))
            .collect();
            if let Some((n, l)) = set.iter().find(|(_, l)| !l.is_finite()) {
                return Err(format!(
                    "variable {}: alarm limit {n} {l} is not a finite number",
                    self.name
                ));
            }
            if let Some(w) = set.windows(2).find(|w| w[0].1 > w[1].1) {
                return Err(format!(
                    "variable {}: alarm limits out of order: {} {} above {} {} (need LOLO <= LOW <= HIGH <= HIHI)",
                    self.name, w[0].0, w[0].1, w[1].0, w[1].1
                ));
            }
            if self.prec.is_some_and(|p| p > 17) {
                return Err(format!("variable {}: precision above 17 digits", self.name));
            }
        }
        if let Some(m) = &self.metric {
            let ok = !m.is_empty()
                && !m.starts_with(|c: char| c.is_ascii_digit())
                && m.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            if !ok {
                return Err(format!(
                    "variable {}: metric name {m:?} is not [a-zA-Z_:][a-zA-Z0-9_:]*",
                    self.name
                ));
            }
        }
        self.parse_value(&self.default.to_string())
            .map(|_| ())
            .map_err(|e| format!("variable {}: bad default: {e}", self.name))
    }

    /// Parses `text` as a value of this variable and checks it against the type, the enum
    /// labels, the string capacity and the limits. Enums accept a label or its number.
    ///
    /// # Errors
    /// A [`SetError`] saying what is wrong and what would be accepted.
    pub fn parse_value(&self, text: &str) -> Result<Value, SetError> {
        let bad = |why: String| SetError::BadValue {
            var: self.name.clone(),
            value: text.to_owned(),
            why,
        };
        let v = match &self.ty {
            VarType::Integer => Value::Int(parse_int(text).ok_or_else(|| {
                bad("not an integer (expected e.g. 42, -1, 0x1f, 1e6)".to_owned())
            })?),
            VarType::Float => {
                let f: f64 = text
                    .trim()
                    .parse()
                    .map_err(|_| bad("not a number (expected e.g. 2.5, 1e-3)".to_owned()))?;
                if !f.is_finite() {
                    return Err(bad("must be a finite number".to_owned()));
                }
                Value::Float(f)
            }
            VarType::String { cap } => {
                if text.len() > *cap {
                    return Err(bad(format!(
                        "{} bytes long, the variable holds at most {cap}",
                        text.len()
                    )));
                }
                Value::Str(text.to_owned())
            }
            VarType::Enum { labels } => {
                let t = text.trim();
                if let Some(i) = labels.iter().position(|l| l.eq_ignore_ascii_case(t)) {
                    Value::Int(i as i64)
                } else {
                    match parse_int(t) {
                        Some(i) if i >= 0 && (i as usize) < labels.len() => Value::Int(i),
                        _ => {
                            return Err(bad(format!(
                                "not one of {} (or 0..{})",
                                labels.join(", "),
                                labels.len() - 1
                            )))
                        }
                    }
                }
            }
        };
        let num = match v {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            Value::Str(_) => None,
        };
        if let Some(n) = num {
            if let Some(min) = self.min {
                if n < min {
                    return Err(SetError::OutOfRange {
                        var: self.name.clone(),
                        value: text.to_owned(),
                        min: self.min,
                        max: self.max,
                    });
                }
            }
            if let Some(max) = self.max {
                if n > max {
                    return Err(SetError::OutOfRange {
                        var: self.name.clone(),
                        value: text.to_owned(),
                        min: self.min,
                        max: self.max,
                    });
                }
            }
        }
        Ok(v)
    }
}

/// Parses an integer written as decimal, `0x` hex, or a float with an exact integer value
/// (`1e6`).
pub fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let v = i64::from_str_radix(hex, 16).ok()?;
        return Some(if neg { v.checked_neg()? } else { v });
    }
    if let Ok(v) = t.parse::<i64>() {
        return Some(v);
    }
    let f: f64 = t.parse().ok()?;
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18 {
        Some(f as i64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_and_precision() {
        let t = VarSpec::float("temp", 20.0)
            .alarms(Some(-10.0), Some(0.0), Some(40.0), Some(60.0))
            .precision(2);
        t.validate().unwrap();
        let a = |x: f64| t.alarm(&Value::Float(x));
        assert_eq!(a(20.0), AlarmStatus::NoAlarm);
        assert_eq!(a(40.0), AlarmStatus::High);
        assert_eq!(a(40.0).severity(), Severity::Minor);
        assert_eq!(a(60.0), AlarmStatus::HiHi);
        assert_eq!(a(60.0).severity(), Severity::Major);
        assert_eq!(a(0.0), AlarmStatus::Low);
        assert_eq!(a(-11.0), AlarmStatus::LoLo);
        assert_eq!(a(f64::NAN).severity(), Severity::Major);
        assert_eq!(t.display(&Value::Float(1.0 / 3.0)), "0.33");
        let j = serde_json::to_string(&t).unwrap();
        assert!(
            j.contains("\"hihi\":60.0") && j.contains("\"prec\":2"),
            "{j}"
        );
        assert_eq!(serde_json::from_str::<VarSpec>(&j).unwrap(), t);
        // Only HIGH set: an integer counter that should stay low.
        let q = VarSpec::int("queue", 0).alarms(None, None, Some(100.0), None);
        assert_eq!(q.alarm(&Value::Int(99)), AlarmStatus::NoAlarm);
        assert_eq!(q.alarm(&Value::Int(100)), AlarmStatus::High);
        let bad = VarSpec::int("x", 0).alarms(None, Some(5.0), Some(1.0), None);
        let e = bad.validate().unwrap_err();
        assert!(e.contains("LOW 5 above HIGH 1"), "{e}");
    }

    #[test]
    fn json_roundtrip() {
        let s = VarSpec::enumeration("runstate", &["A", "B"], 0).desc("state");
        let j = serde_json::to_string(&s).unwrap();
        assert!(j.contains("\"type\":\"ENUM\""), "{j}");
        let back: VarSpec = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
        let f = VarSpec::float("x", 1.5).rw().unit("Hz");
        let back: VarSpec = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back.default, Value::Float(1.5));
    }

    #[test]
    fn parsing() {
        let r = VarSpec::int("rate", 10).range(Some(1.0), Some(1000.0));
        assert_eq!(r.parse_value("50").unwrap(), Value::Int(50));
        assert_eq!(r.parse_value("0x10").unwrap(), Value::Int(16));
        assert!(matches!(
            r.parse_value("0"),
            Err(SetError::OutOfRange { .. })
        ));
        assert!(matches!(
            r.parse_value("abc"),
            Err(SetError::BadValue { .. })
        ));
        let e = VarSpec::enumeration("m", &["next", "latest"], 0);
        assert_eq!(e.parse_value("LATEST").unwrap(), Value::Int(1));
        assert_eq!(e.parse_value("1").unwrap(), Value::Int(1));
        assert!(e.parse_value("2").is_err());
        let s = VarSpec::string("l", 4, "");
        assert!(s.parse_value("abcde").is_err());
        assert!(VarSpec::string("l", 4, "").precision(2).validate().is_err());
        assert_eq!(parse_int("1e6"), Some(1_000_000));
        assert_eq!(parse_int("-0x10"), Some(-16));
        assert_eq!(parse_int("1.5"), None);
    }
}
