//! DBR payloads: the value types (plain, STS, TIME, GR, CTRL of each base type), their sizes,
//! encoding a value with its metadata, and decoding what a client writes.

use super::*;

/// The basic DBR types (`DBF_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Base {
    /// 40-byte NUL-terminated strings.
    String = 0,
    /// i16 (DBR_INT is DBR_SHORT).
    Short = 1,
    /// f32.
    Float = 2,
    /// u16 index into labels.
    Enum = 3,
    /// u8.
    Char = 4,
    /// i32.
    Long = 5,
    /// f64.
    Double = 6,
}

impl Base {
    const ALL: [Base; 7] = [
        Base::String,
        Base::Short,
        Base::Float,
        Base::Enum,
        Base::Char,
        Base::Long,
        Base::Double,
    ];

    /// Size of one element.
    pub fn size(self) -> usize {
        match self {
            Base::String => MAX_STRING_SIZE,
            Base::Short | Base::Enum => 2,
            Base::Float | Base::Long => 4,
            Base::Char => 1,
            Base::Double => 8,
        }
    }

    /// The EPICS name (`STRING`, `INT`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Base::String => "STRING",
            Base::Short => "INT",
            Base::Float => "FLOAT",
            Base::Enum => "ENUM",
            Base::Char => "CHAR",
            Base::Long => "LONG",
            Base::Double => "DOUBLE",
        }
    }
}

/// The families of DBR types: the value alone, with alarm status, with a time stamp, with
/// graphic (display) information, with control information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// DBR_x.
    Plain,
    /// DBR_STS_x.
    Sts,
    /// DBR_TIME_x.
    Time,
    /// DBR_GR_x.
    Gr,
    /// DBR_CTRL_x.
    Ctrl,
}

/// A DBR type the gateway serves: a class and a base type (`DBR_CTRL_DOUBLE` = 34).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DbrType {
    /// The family.
    pub class: Class,
    /// The element type.
    pub base: Base,
}

impl DbrType {
    /// The plain type of a base.
    pub fn plain(base: Base) -> DbrType {
        DbrType {
            class: Class::Plain,
            base,
        }
    }

    /// The type with wire code `code` (0-34).
    ///
    /// # Errors
    /// [`ProtoError::BadType`] for any other code (DBR_PUT_ACKT, DBR_CLASS_NAME, ...).
    pub fn from_code(code: u16) -> Result<DbrType, ProtoError> {
        if code > 34 {
            return Err(ProtoError::BadType(code));
        }
        let class = match code / 7 {
            0 => Class::Plain,
            1 => Class::Sts,
            2 => Class::Time,
            3 => Class::Gr,
            _ => Class::Ctrl,
        };
        Ok(DbrType {
            class,
            base: Base::ALL[usize::from(code % 7)],
        })
    }

    /// The wire code.
    pub fn code(self) -> u16 {
        let c = match self.class {
            Class::Plain => 0,
            Class::Sts => 1,
            Class::Time => 2,
            Class::Gr => 3,
            Class::Ctrl => 4,
        };
        c * 7 + self.base as u16
    }
}

/// Display, alarm and control limits, in the units of the value (as f64; each payload converts
/// them to its element type, clamped).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// HOPR.
    pub disp_hi: f64,
    /// LOPR.
    pub disp_lo: f64,
    /// HIHI.
    pub alarm_hi: f64,
    /// HIGH.
    pub warn_hi: f64,
    /// LOW.
    pub warn_lo: f64,
    /// LOLO.
    pub alarm_lo: f64,
    /// DRVH.
    pub ctrl_hi: f64,
    /// DRVL.
    pub ctrl_lo: f64,
}

/// What the STS/TIME/GR/CTRL part of a payload says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta<'a> {
    /// Alarm condition (`alarm::*`).
    pub status: u16,
    /// Alarm severity.
    pub severity: u16,
    /// Time of the value, ns since the Unix epoch.
    pub stamp_ns: u64,
    /// Engineering units (cut to 7 bytes).
    pub units: &'a str,
    /// Display precision (floats).
    pub precision: i16,
    /// Limits.
    pub limits: Limits,
    /// Enum labels (the first 16, each cut to 25 bytes).
    pub labels: &'a [String],
}

/// The elements of a payload, already converted to the requested base type by the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elements<'a> {
    /// One DBR_STRING element (cut to 39 bytes).
    Str(&'a str),
    /// One i16.
    Short(i16),
    /// One f32.
    Float(f32),
    /// One enum index.
    Enum(u16),
    /// A char array (the bytes of a long string, NUL-padded to the count).
    Chars(&'a [u8]),
    /// One i32.
    Long(i32),
    /// One f64.
    Double(f64),
}

impl Elements<'_> {
    /// The base type these elements are.
    pub fn base(&self) -> Base {
        match self {
            Elements::Str(_) => Base::String,
            Elements::Short(_) => Base::Short,
            Elements::Float(_) => Base::Float,
            Elements::Enum(_) => Base::Enum,
            Elements::Chars(_) => Base::Char,
            Elements::Long(_) => Base::Long,
            Elements::Double(_) => Base::Double,
        }
    }
}

/// The padded size of a payload of `count` elements of type `t`.
pub fn payload_size(t: DbrType, count: u32) -> usize {
    pad8(meta_size(t) + t.base.size() * count as usize)
}

pub(super) fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Size of the part before the value (the sizes of `struct dbr_*` up to `value`).
pub(super) fn meta_size(t: DbrType) -> usize {
    use Base::*;
    match (t.class, t.base) {
        (Class::Plain, _) => 0,
        (Class::Sts, Char) => 5,
        (Class::Sts, Double) => 8,
        (Class::Sts, _) => 4,
        (Class::Time, Short | Enum) => 14,
        (Class::Time, Char) => 15,
        (Class::Time, Double) => 16,
        (Class::Time, _) => 12,
        (Class::Gr | Class::Ctrl, String) => 4,
        (Class::Gr | Class::Ctrl, Enum) => 6 + MAX_ENUM_STATES * MAX_ENUM_STRING_SIZE,
        (Class::Gr, Short) => 4 + 8 + 6 * 2,
        (Class::Ctrl, Short) => 4 + 8 + 8 * 2,
        (Class::Gr, Char) => 4 + 8 + 6 + 1,
        (Class::Ctrl, Char) => 4 + 8 + 8 + 1,
        (Class::Gr, Long) => 4 + 8 + 6 * 4,
        (Class::Ctrl, Long) => 4 + 8 + 8 * 4,
        (Class::Gr, Float) => 8 + 8 + 6 * 4,
        (Class::Ctrl, Float) => 8 + 8 + 8 * 4,
        (Class::Gr, Double) => 8 + 8 + 6 * 8,
        (Class::Ctrl, Double) => 8 + 8 + 8 * 8,
    }
}

/// Appends `s` into a fixed field of `n` bytes: cut to `n - 1` bytes (at a character
/// boundary), NUL-padded.
fn put_fixed(out: &mut Vec<u8>, s: &str, n: usize) {
    let mut end = s.len().min(n - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&s.as_bytes()[..end]);
    out.resize(out.len() + n - end, 0);
}

fn clamp_f(v: f64, lo: f64, hi: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(lo, hi)
    }
}

fn put_limits(out: &mut Vec<u8>, base: Base, l: &Limits, ctrl: bool) {
    let mut vals = vec![
        l.disp_hi, l.disp_lo, l.alarm_hi, l.warn_hi, l.warn_lo, l.alarm_lo,
    ];
    if ctrl {
        vals.extend([l.ctrl_hi, l.ctrl_lo]);
    }
    for v in vals {
        match base {
            Base::Short => out.extend_from_slice(
                &(clamp_f(v, f64::from(i16::MIN), f64::from(i16::MAX)) as i16).to_be_bytes(),
            ),
            Base::Char => out.push(clamp_f(v, 0.0, 255.0) as u8),
            Base::Long => out.extend_from_slice(
                &(clamp_f(v, f64::from(i32::MIN), f64::from(i32::MAX)) as i32).to_be_bytes(),
            ),
            Base::Float => out.extend_from_slice(&(v as f32).to_be_bytes()),
            Base::Double => out.extend_from_slice(&v.to_be_bytes()),
            Base::String | Base::Enum => {}
        }
    }
}

/// Appends the payload of a DBR of type `t` with `count` elements (at least 1), padded to 8.
/// `el` must be of `t.base` (the caller converts); a scalar asked for with a count above 1 is
/// followed by zeroed elements, a char array is NUL-padded or cut to `count`.
///
/// # Panics
/// If `el` is not of type `t.base` (a programming error).
pub fn encode_dbr(out: &mut Vec<u8>, t: DbrType, count: u32, meta: &Meta<'_>, el: &Elements<'_>) {
    assert_eq!(el.base(), t.base, "elements of the wrong type");
    let start = out.len();
    let count = count.max(1) as usize;
    let sts = |out: &mut Vec<u8>| {
        out.extend_from_slice(&meta.status.to_be_bytes());
        out.extend_from_slice(&meta.severity.to_be_bytes());
    };
    match t.class {
        Class::Plain => {}
        Class::Sts => {
            sts(out);
            match t.base {
                Base::Char => out.push(0),
                Base::Double => out.extend_from_slice(&[0; 4]),
                _ => {}
            }
        }
        Class::Time => {
            sts(out);
            let secs = (meta.stamp_ns / 1_000_000_000).saturating_sub(EPICS_EPOCH_OFFSET);
            let nsec = (meta.stamp_ns % 1_000_000_000) as u32;
            out.extend_from_slice(&(secs.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            out.extend_from_slice(&nsec.to_be_bytes());
            match t.base {
                Base::Short | Base::Enum => out.extend_from_slice(&[0; 2]),
                Base::Char => out.extend_from_slice(&[0; 3]),
                Base::Double => out.extend_from_slice(&[0; 4]),
                _ => {}
            }
        }
        Class::Gr | Class::Ctrl => {
            sts(out);
            let ctrl = t.class == Class::Ctrl;
            match t.base {
                Base::String => {}
                Base::Enum => {
                    let n = meta.labels.len().min(MAX_ENUM_STATES);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                    for i in 0..MAX_ENUM_STATES {
                        put_fixed(
                            out,
                            meta.labels.get(i).map_or("", String::as_str),
                            MAX_ENUM_STRING_SIZE,
                        );
                    }
                }
                Base::Float | Base::Double => {
                    out.extend_from_slice(&meta.precision.to_be_bytes());
                    out.extend_from_slice(&[0; 2]);
                    put_fixed(out, meta.units, MAX_UNITS_SIZE);
                    put_limits(out, t.base, &meta.limits, ctrl);
                }
                Base::Short | Base::Long | Base::Char => {
                    put_fixed(out, meta.units, MAX_UNITS_SIZE);
                    put_limits(out, t.base, &meta.limits, ctrl);
                    if t.base == Base::Char {
                        out.push(0);
                    }
                }
            }
        }
    }
    debug_assert_eq!(out.len() - start, meta_size(t), "{t:?}");
    let value_start = out.len();
    match *el {
        Elements::Str(s) => put_fixed(out, s, MAX_STRING_SIZE),
        Elements::Short(v) => out.extend_from_slice(&v.to_be_bytes()),
        Elements::Float(v) => out.extend_from_slice(&v.to_be_bytes()),
        Elements::Enum(v) => out.extend_from_slice(&v.to_be_bytes()),
        Elements::Long(v) => out.extend_from_slice(&v.to_be_bytes()),
        Elements::Double(v) => out.extend_from_slice(&v.to_be_bytes()),
        Elements::Chars(b) => out.extend_from_slice(&b[..b.len().min(count)]),
    }
    let value_len = t.base.size() * count;
    out.resize(value_start + value_len, 0);
    out.resize(start + pad8(out.len() - start), 0);
}

/// A value a client writes, decoded from a WRITE payload.
#[derive(Debug, Clone, PartialEq)]
pub enum PutValue {
    /// From DBR_STRING, or a char array (up to its first NUL).
    Text(String),
    /// From DBR_SHORT, ENUM, CHAR (a single one), LONG.
    Int(i64),
    /// From DBR_FLOAT, DBR_DOUBLE.
    Float(f64),
}

/// Decodes the first element of a WRITE payload of type `dtype` (plain types only). A
/// DBR_CHAR write of more than one element is read as text (a long string).
///
/// # Errors
/// [`ProtoError::BadType`] for a type other than the plain seven, [`ProtoError::Short`] if
/// the data is shorter than one element, [`ProtoError::BadValue`] for text that is not UTF-8.
pub fn decode_put(dtype: u16, count: u32, data: &[u8]) -> Result<PutValue, ProtoError> {
    let t = DbrType::from_code(dtype)?;
    if t.class != Class::Plain {
        return Err(ProtoError::BadType(dtype));
    }
    need(cmd::WRITE, data, t.base.size())?;
    let text = |b: &[u8]| -> Result<PutValue, ProtoError> {
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        std::str::from_utf8(&b[..end])
            .map(|s| PutValue::Text(s.to_owned()))
            .map_err(|_| ProtoError::BadValue("the string written is not UTF-8"))
    };
    Ok(match t.base {
        Base::String => text(&data[..MAX_STRING_SIZE])?,
        Base::Char if count > 1 => {
            let n = (count as usize).min(data.len());
            text(&data[..n])?
        }
        Base::Char => PutValue::Int(i64::from(data[0])),
        Base::Short => PutValue::Int(i64::from(i16::from_be_bytes([data[0], data[1]]))),
        Base::Enum => PutValue::Int(i64::from(u16::from_be_bytes([data[0], data[1]]))),
        Base::Long => PutValue::Int(i64::from(i32::from_be_bytes([
            data[0], data[1], data[2], data[3],
        ]))),
        Base::Float => PutValue::Float(f64::from(f32::from_be_bytes([
            data[0], data[1], data[2], data[3],
        ]))),
        Base::Double => {
            let mut b = [0; 8];
            b.copy_from_slice(&data[..8]);
            PutValue::Float(f64::from_be_bytes(b))
        }
    })
}
