//! A PV as the gateway serves it: a variable (or one of its fields, or a process's command PV)
//! and how its value becomes each DBR type, and a client's write becomes a `set` line.
//!
//! Types: INTEGER is served as DBR_LONG, FLOAT as DBR_DOUBLE, STRING as DBR_STRING (its
//! `.VAL$` field as a char array of the whole capacity), ENUM as DBR_ENUM with its labels.
//! Any type may be asked for as any other, as from an IOC. A value that does not fit the type
//! asked for (an integer beyond the 32 bits of DBR_LONG, a negative one as DBR_ENUM) is never
//! wrapped: it is clamped to the nearest value the type holds, and the STS/TIME/GR/CTRL forms
//! carry alarm status HW_LIMIT with severity MAJOR. DBR_DOUBLE carries integers exactly up to
//! 2^53. CA has no 64-bit integer type (DBR_INT64 exists only in pvAccess).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shvars::region::{Access, Value, VarSpec, VarType};

use super::names::Field;
use super::proto::{alarm, Base, DbrType, Elements, Limits, Meta, PutValue, Status};
use super::source::{Binding, ReadFail, Sample};
use crate::control::words::join;

/// Display precision of FLOAT variables (`PREC`).
pub const FLOAT_PRECISION: i16 = 6;

/// What a PV reads and writes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A variable (its value or a field).
    Var(Binding),
    /// The command PV of a process: reading gives its `lastcmd`, writing runs a command.
    Command(Binding),
}

/// The deadbands of a variable (its `.MDEL` and `.ADEL`), kept by the gateway and shared by
/// every channel of it: a subscription with DBE_VALUE (DBE_LOG) gets a change only when the
/// value moved by more than MDEL (ADEL) from the last value it was sent; 0 (the default) sends
/// every change, a negative deadband every update.
#[derive(Debug, Default)]
pub struct Deadbands {
    mdel: AtomicU64,
    adel: AtomicU64,
}

impl Deadbands {
    /// MDEL.
    pub fn mdel(&self) -> f64 {
        f64::from_bits(self.mdel.load(Ordering::Relaxed))
    }

    /// ADEL.
    pub fn adel(&self) -> f64 {
        f64::from_bits(self.adel.load(Ordering::Relaxed))
    }

    /// Sets MDEL or ADEL.
    pub fn set(&self, field: Field, v: f64) {
        let slot = if field == Field::Adel {
            &self.adel
        } else {
            &self.mdel
        };
        slot.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// A PV of a channel.
#[derive(Debug, Clone)]
pub struct Pv {
    /// What it reads.
    pub target: Target,
    /// Which field.
    pub field: Field,
    /// Its name, for messages.
    pub name: Arc<str>,
    /// The variable's deadbands.
    pub deadbands: Arc<Deadbands>,
}

/// What [`Pv::encode`] sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Encoded {
    /// Elements.
    pub count: u32,
    /// Alarm status and severity.
    pub alarm: (u16, u16),
    /// The value as a number, if it is one (for deadbands).
    pub number: Option<f64>,
}

/// An element already converted, owning its text.
#[derive(Debug, Clone, PartialEq)]
enum El {
    Str(String),
    Short(i16),
    Float(f32),
    Enum(u16),
    Chars(Vec<u8>),
    Long(i32),
    Double(f64),
}

impl El {
    fn as_elements(&self) -> Elements<'_> {
        match self {
            El::Str(s) => Elements::Str(s),
            El::Short(v) => Elements::Short(*v),
            El::Float(v) => Elements::Float(*v),
            El::Enum(v) => Elements::Enum(*v),
            El::Chars(b) => Elements::Chars(b),
            El::Long(v) => Elements::Long(*v),
            El::Double(v) => Elements::Double(*v),
        }
    }
}

/// The value a field or variable has, before conversion.
enum Scalar<'a> {
    Int(i64),
    Float(f64),
    Text(&'a str),
}

fn clamp_int(v: i64, lo: i64, hi: i64) -> (i64, bool) {
    if v < lo {
        (lo, true)
    } else if v > hi {
        (hi, true)
    } else {
        (v, false)
    }
}

fn clamp_float(v: f64, lo: i64, hi: i64) -> (i64, bool) {
    if v.is_nan() {
        (0, true)
    } else if v < lo as f64 {
        (lo, true)
    } else if v > hi as f64 {
        (hi, true)
    } else {
        (v as i64, false)
    }
}

impl Pv {
    /// The PV's name without its field, as the PV list matches it: `PROCESS:VAR`, or
    /// `PROCESS:cmd` for the command PV.
    pub fn base_name(&self) -> String {
        match &self.target {
            Target::Var(b) => format!("{}:{}", b.process, b.spec().name),
            Target::Command(b) => format!("{}:{}", b.process, super::names::COMMAND_PV),
        }
    }

    /// The binding it reads.
    pub fn binding(&self) -> &Binding {
        match &self.target {
            Target::Var(b) | Target::Command(b) => b,
        }
    }

    fn spec(&self) -> &VarSpec {
        self.binding().spec()
    }

    /// The alarm (status, severity) a sample of this PV carries against the variable's alarm
    /// limits (what DBE_ALARM subscriptions follow).
    pub fn alarm(&self, sample: &Result<Sample, ReadFail>) -> (u16, u16) {
        match (self.field, sample) {
            (_, Err(ReadFail::Bad(_))) => (alarm::READ, alarm::SEV_INVALID),
            (Field::Val | Field::LongString, Ok(s)) => alarm_of(self.spec().alarm(&s.value)),
            _ => (alarm::NO_ALARM, alarm::SEV_NONE),
        }
    }

    /// The native type and element count.
    pub fn native(&self) -> (Base, u32) {
        if let Target::Command(_) = self.target {
            return (Base::String, 1);
        }
        match self.field {
            Field::Val => match self.spec().ty {
                VarType::Integer => (Base::Long, 1),
                VarType::Float => (Base::Double, 1),
                VarType::String { .. } => (Base::String, 1),
                VarType::Enum { .. } => (Base::Enum, 1),
            },
            Field::LongString => match self.spec().ty {
                VarType::String { cap } => (Base::Char, cap as u32 + 1),
                _ => (Base::Char, 1),
            },
            Field::Egu | Field::Desc => (Base::String, 1),
            Field::Prec => (Base::Short, 1),
            Field::Mdel | Field::Adel => (Base::Double, 1),
            _ => (Base::Double, 1),
        }
    }

    /// Whether a client could write it (before the access file has its say).
    pub fn writable(&self) -> bool {
        match self.target {
            Target::Command(_) => true,
            Target::Var(_) => match self.field {
                Field::Val | Field::LongString => self.spec().access == Access::ReadWrite,
                Field::Mdel | Field::Adel => true,
                _ => false,
            },
        }
    }

    /// Whether this field exists for the variable's type (`.VAL$` only for strings).
    pub fn exists(&self) -> bool {
        match self.field {
            Field::LongString => matches!(self.spec().ty, VarType::String { .. }),
            _ => true,
        }
    }

    fn limits(&self) -> Limits {
        let s = self.spec();
        let hi = s.max.unwrap_or(0.0);
        let lo = s.min.unwrap_or(0.0);
        // The variable's alarm limits (region format 2); an unset one is 0, as EPICS shows
        // a limit nobody set (and then also gives no alarm for it).
        Limits {
            disp_hi: hi,
            disp_lo: lo,
            ctrl_hi: hi,
            ctrl_lo: lo,
            alarm_hi: s.hihi.unwrap_or(0.0),
            warn_hi: s.high.unwrap_or(0.0),
            warn_lo: s.low.unwrap_or(0.0),
            alarm_lo: s.lolo.unwrap_or(0.0),
        }
    }

    /// The variable's own precision (`prec`) where it has one, else 6 for floats.
    fn float_precision(&self) -> i16 {
        self.spec().prec.map_or(FLOAT_PRECISION, i16::from)
    }

    fn precision(&self) -> i16 {
        match (&self.spec().ty, self.field) {
            (VarType::Float, Field::Val)
            | (_, Field::Hopr | Field::Lopr | Field::Drvh | Field::Drvl)
            | (_, Field::Hihi | Field::High | Field::Low | Field::Lolo) => self.float_precision(),
            _ => 0,
        }
    }

    /// Appends the payload of type `t` with `count` elements (0: the native count) for the
    /// current sample. Returns the count sent.
    ///
    /// # Errors
    /// The CA status for a value that has no sensible conversion to `t` (text that is not a
    /// number asked for as a number), or a read that failed.
    pub fn encode(
        &self,
        sample: &Result<Sample, ReadFail>,
        t: DbrType,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<Encoded, Status> {
        let (native_base, native_count) = self.native();
        let count = if count == 0 || count > native_count {
            native_count
        } else {
            count
        };
        let (value, stamp, read_bad) = match sample {
            Ok(s) => (Some(&s.value), s.changed_ns, false),
            Err(ReadFail::Gone) => return Err(Status::DISCONN),
            Err(ReadFail::Bad(_)) => (None, shvars::region::now_ns(), true),
        };
        let spec = self.spec();
        let limits = self.limits();
        let scalar = match (self.field, value) {
            (_, None) => Scalar::Int(0),
            (Field::Val | Field::LongString, Some(Value::Int(i))) => Scalar::Int(*i),
            (Field::Val | Field::LongString, Some(Value::Float(f))) => Scalar::Float(*f),
            (Field::Val | Field::LongString, Some(Value::Str(s))) => Scalar::Text(s),
            (Field::Egu, _) => Scalar::Text(spec.unit.as_deref().unwrap_or("")),
            (Field::Desc, _) => Scalar::Text(&spec.desc),
            (Field::Hopr | Field::Drvh, _) => Scalar::Float(limits.disp_hi),
            (Field::Lopr | Field::Drvl, _) => Scalar::Float(limits.disp_lo),
            (Field::Hihi, _) => Scalar::Float(limits.alarm_hi),
            (Field::High, _) => Scalar::Float(limits.warn_hi),
            (Field::Low, _) => Scalar::Float(limits.warn_lo),
            (Field::Lolo, _) => Scalar::Float(limits.alarm_lo),
            (Field::Prec, _) => Scalar::Int(i64::from(if spec.ty == VarType::Float {
                self.float_precision()
            } else {
                0
            })),
            (Field::Mdel, _) => Scalar::Float(self.deadbands.mdel()),
            (Field::Adel, _) => Scalar::Float(self.deadbands.adel()),
        };
        let number = match scalar {
            Scalar::Int(i) => Some(i as f64),
            Scalar::Float(f) => Some(f),
            Scalar::Text(_) => None,
        };
        let labels: &[String] = match (&spec.ty, self.field, &self.target) {
            (VarType::Enum { labels }, Field::Val, Target::Var(_)) => labels,
            _ => &[],
        };
        let (el, clamped) = self.convert(&scalar, t.base, native_base, count)?;
        let (status, severity) = if read_bad {
            (alarm::READ, alarm::SEV_INVALID)
        } else if clamped {
            (alarm::HWLIMIT, alarm::SEV_MAJOR)
        } else {
            // The value against the variable's alarm limits (the record's own fields give
            // no alarm of theirs).
            match (self.field, value) {
                (Field::Val | Field::LongString, Some(v)) => alarm_of(spec.alarm(v)),
                _ => (alarm::NO_ALARM, alarm::SEV_NONE),
            }
        };
        let units = match self.field {
            Field::Val | Field::Hopr | Field::Lopr | Field::Drvh | Field::Drvl => {
                spec.unit.as_deref().unwrap_or("")
            }
            _ => "",
        };
        let meta = Meta {
            status,
            severity,
            stamp_ns: stamp,
            units,
            precision: self.precision(),
            limits: if matches!(self.field, Field::Val) {
                limits
            } else {
                Limits::default()
            },
            labels,
        };
        let count = if t.base == Base::Char && native_base == Base::Char {
            count
        } else {
            1
        };
        super::proto::encode_dbr(out, t, count, &meta, &el.as_elements());
        Ok(Encoded {
            count,
            alarm: (status, severity),
            number,
        })
    }

    fn convert(
        &self,
        s: &Scalar<'_>,
        base: Base,
        native: Base,
        count: u32,
    ) -> Result<(El, bool), Status> {
        let spec = self.spec();
        let num = |s: &Scalar<'_>| -> Result<Scalar<'static>, Status> {
            match s {
                Scalar::Int(i) => Ok(Scalar::Int(*i)),
                Scalar::Float(f) => Ok(Scalar::Float(*f)),
                Scalar::Text(t) => {
                    let t = t.trim();
                    if let Ok(i) = t.parse::<i64>() {
                        Ok(Scalar::Int(i))
                    } else {
                        t.parse::<f64>()
                            .map(Scalar::Float)
                            .map_err(|_| Status::NOCONVERT)
                    }
                }
            }
        };
        let int_in = |lo: i64, hi: i64| -> Result<(i64, bool), Status> {
            Ok(match num(s)? {
                Scalar::Int(i) => clamp_int(i, lo, hi),
                Scalar::Float(f) => clamp_float(f, lo, hi),
                Scalar::Text(_) => unreachable!("num() gives numbers"),
            })
        };
        Ok(match base {
            Base::String => (
                El::Str(match s {
                    Scalar::Int(i) => match spec.label(*i) {
                        Some(l) if self.field == Field::Val => l.to_owned(),
                        _ => i.to_string(),
                    },
                    Scalar::Float(f) => f.to_string(),
                    Scalar::Text(t) => (*t).to_owned(),
                }),
                false,
            ),
            Base::Char if native == Base::Char => match s {
                Scalar::Text(t) => {
                    let mut b = t.as_bytes().to_vec();
                    b.truncate(count as usize);
                    (El::Chars(b), false)
                }
                _ => return Err(Status::NOCONVERT),
            },
            Base::Char => {
                let (v, c) = int_in(0, 255)?;
                (El::Chars(vec![v as u8]), c)
            }
            Base::Short => {
                let (v, c) = int_in(i64::from(i16::MIN), i64::from(i16::MAX))?;
                (El::Short(v as i16), c)
            }
            Base::Long => {
                let (v, c) = int_in(i64::from(i32::MIN), i64::from(i32::MAX))?;
                (El::Long(v as i32), c)
            }
            Base::Enum => {
                let (v, c) = int_in(0, i64::from(u16::MAX))?;
                (El::Enum(v as u16), c)
            }
            Base::Float => match num(s)? {
                Scalar::Int(i) => (El::Float(i as f32), false),
                Scalar::Float(f) => (El::Float(f as f32), false),
                Scalar::Text(_) => unreachable!("num() gives numbers"),
            },
            Base::Double => match num(s)? {
                Scalar::Int(i) => (El::Double(i as f64), false),
                Scalar::Float(f) => (El::Double(f), false),
                Scalar::Text(_) => unreachable!("num() gives numbers"),
            },
        })
    }

    /// The control line a client's write becomes: `set VAR VALUE` for a variable, the text
    /// itself for a command PV.
    ///
    /// # Errors
    /// The CA status and a message for a write that cannot be one.
    pub fn put_line(&self, v: &PutValue) -> Result<String, (Status, String)> {
        let spec = self.spec();
        let text = match v {
            PutValue::Text(t) => t.trim_end_matches('\0').to_owned(),
            PutValue::Int(i) => i.to_string(),
            PutValue::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 9.0e15 && spec.ty != VarType::Float {
                    (*f as i64).to_string()
                } else {
                    f.to_string()
                }
            }
        };
        match &self.target {
            Target::Command(_) => {
                if !matches!(v, PutValue::Text(_)) || text.trim().is_empty() {
                    return Err((
                        Status::BADTYPE,
                        format!(
                            "{}: write a command line as a string (e.g. pause)",
                            self.name
                        ),
                    ));
                }
                Ok(text)
            }
            Target::Var(_) if matches!(self.field, Field::Mdel | Field::Adel) => Err((
                Status::PUTFAIL,
                format!(
                    "{}: a deadband is set by the gateway, not the owner",
                    self.name
                ),
            )),
            Target::Var(_) => {
                if !self.writable() {
                    return Err((Status::NOWTACCESS, format!("{} is read-only", self.name)));
                }
                Ok(join(&["set", spec.name.as_str(), text.as_str()]))
            }
        }
    }
}

/// EPICS' alarm status and severity for a variable's alarm state.
fn alarm_of(a: shvars::region::AlarmStatus) -> (u16, u16) {
    use shvars::region::AlarmStatus as A;
    match a {
        A::NoAlarm => (alarm::NO_ALARM, alarm::SEV_NONE),
        A::Low => (alarm::LOW, alarm::SEV_MINOR),
        A::High => (alarm::HIGH, alarm::SEV_MINOR),
        A::LoLo => (alarm::LOLO, alarm::SEV_MAJOR),
        A::HiHi => (alarm::HIHI, alarm::SEV_MAJOR),
        A::Invalid => (alarm::READ, alarm::SEV_INVALID),
    }
}
