//! The owner's handles to its variables: [`Var`] (untyped), [`IntVar`], [`FloatVar`],
//! [`StrVar`]; a write through a handle of a retired variable does nothing.

use super::*;
/// An untyped handle to a variable of the owner's region.
#[derive(Debug, Clone)]
pub struct Var {
    pub(super) map: Arc<Mapping>,
    pub(super) off: usize,
    pub(super) id: u32,
    pub(super) tag: u64,
    pub(super) spec: Arc<VarSpec>,
    pub(super) log: Option<Arc<LogWriter>>,
}

impl VarHandle for Var {
    fn var_id(&self) -> u32 {
        self.id
    }
}

impl Var {
    /// What the variable is.
    pub fn spec(&self) -> &VarSpec {
        &self.spec
    }

    /// Whether it is still in the region (not retired).
    pub fn is_live(&self) -> bool {
        self.map.word(self.off).load(Ordering::Relaxed) == self.tag
    }

    /// Its value.
    pub fn get(&self) -> Value {
        // The owner's own mapping: a string can only be busy while one of our threads writes it.
        read_value(&self.map, self.off, self.tag, &self.spec).unwrap_or(match self.spec.ty {
            VarType::String { .. } => Value::Str(String::new()),
            VarType::Float => Value::Float(0.0),
            _ => Value::Int(0),
        })
    }

    /// Writes a value already checked by [`VarSpec::parse_value`]. Returns the old value.
    /// Does nothing once the variable is retired.
    pub fn set(&self, v: &Value) -> Value {
        let old = self.get();
        self.write_value(v, now_ns());
        old
    }

    /// The typed handle, if it is an INTEGER or ENUM.
    pub fn into_int(self) -> Option<IntVar> {
        matches!(self.spec.ty, VarType::Integer | VarType::Enum { .. }).then(|| IntVar {
            map: self.map,
            off: self.off,
            id: self.id,
            tag: self.tag,
            log: self.log,
        })
    }

    /// The typed handle, if it is a FLOAT.
    pub fn into_float(self) -> Option<FloatVar> {
        matches!(self.spec.ty, VarType::Float).then(|| FloatVar {
            map: self.map,
            off: self.off,
            id: self.id,
            tag: self.tag,
            log: self.log,
        })
    }

    /// The typed handle, if it is a STRING.
    pub fn into_str(self) -> Option<StrVar> {
        match self.spec.ty {
            VarType::String { cap } => Some(StrVar {
                map: self.map,
                off: self.off,
                id: self.id,
                tag: self.tag,
                log: self.log,
                cap,
            }),
            _ => None,
        }
    }

    /// Writes the default into a slot not yet claimed (no generation check, no log entry).
    pub(super) fn init_value(&self, now: u64) {
        self.store_value(&self.spec.default.clone(), now);
    }

    /// What the change log records of the current value: the bits of a number or the sequence
    /// of a string, and the time of the last change.
    pub(super) fn log_value(&self) -> (u64, u64) {
        let t = self.changed_ns();
        match self.spec.ty {
            VarType::String { .. } => (self.map.str_slot(self.off).seq.load(Ordering::Relaxed), t),
            _ => (self.map.num_slot(self.off).value.load(Ordering::Relaxed), t),
        }
    }

    pub(super) fn store_value(&self, v: &Value, now: u64) -> (u32, u64) {
        match (&self.spec.ty, v) {
            (VarType::String { cap }, Value::Str(s)) => {
                let mut n = s.len().min(*cap);
                while !s.is_char_boundary(n) {
                    n -= 1;
                }
                let seq = self.map.write_str(self.off, &s.as_bytes()[..n], now);
                (KIND_STRING, seq)
            }
            (VarType::Float, Value::Float(f)) => {
                let slot = self.map.num_slot(self.off);
                slot.value.store(f.to_bits(), Ordering::Release);
                slot.changed_ns.store(now, Ordering::Release);
                (KIND_VALUE, f.to_bits())
            }
            (VarType::Float, Value::Int(i)) => self.store_value(&Value::Float(*i as f64), now),
            (VarType::Integer | VarType::Enum { .. }, Value::Int(i)) => {
                let slot = self.map.num_slot(self.off);
                slot.value.store(*i as u64, Ordering::Release);
                slot.changed_ns.store(now, Ordering::Release);
                (KIND_VALUE, *i as u64)
            }
            // Mismatched types never reach here: values come from `parse_value` of this spec.
            _ => {
                debug_assert!(false, "value {v:?} does not fit {:?}", self.spec.ty);
                (KIND_VALUE, 0)
            }
        }
    }

    pub(super) fn write_value(&self, v: &Value, now: u64) {
        let mut g = self.log.as_ref().map(|l| l.lock());
        if !self.is_live() {
            return;
        }
        let (kind, bits) = self.store_value(v, now);
        if let Some(g) = &mut g {
            g.append(self.id, kind, bits, now);
        }
    }

    /// Time of the last change, ns since the Unix epoch.
    pub fn changed_ns(&self) -> u64 {
        changed_ns(&self.map, self.off)
    }
}

/// The change time of the slot at `off` (the third word of number and string slots alike).
pub(super) fn changed_ns(map: &Mapping, off: usize) -> u64 {
    map.word(off + 16).load(Ordering::Acquire)
}

pub(super) fn read_value(
    map: &Mapping,
    off: usize,
    tag: u64,
    spec: &VarSpec,
) -> Result<Value, SlotErr> {
    Ok(match &spec.ty {
        VarType::Integer | VarType::Enum { .. } => Value::Int(map.read_num(off, tag)? as i64),
        VarType::Float => Value::Float(f64::from_bits(map.read_num(off, tag)?)),
        VarType::String { cap } => {
            let mut buf = Vec::new();
            map.read_str(off, *cap, tag, &mut buf)?;
            Value::Str(String::from_utf8(buf).map_err(|_| SlotErr::Damaged)?)
        }
    })
}

/// When the slot at `off` was retired, if it is free now (0 if unknown).
pub(super) fn removed_at(map: &Mapping, off: usize) -> u64 {
    if map.word(off).load(Ordering::Acquire) == 0 {
        changed_ns(map, off)
    } else {
        0
    }
}

/// Owner's handle to an INTEGER (or ENUM) variable. Cloning is cheap; threads share it.
#[derive(Debug, Clone)]
pub struct IntVar {
    pub(super) map: Arc<Mapping>,
    pub(super) off: usize,
    pub(super) id: u32,
    pub(super) tag: u64,
    pub(super) log: Option<Arc<LogWriter>>,
}

impl VarHandle for IntVar {
    fn var_id(&self) -> u32 {
        self.id
    }
}

impl IntVar {
    /// The value.
    #[inline]
    pub fn get(&self) -> i64 {
        self.map.num_slot(self.off).value.load(Ordering::Acquire) as i64
    }

    /// Sets the value and the time of change (only if it changed). Ignored once retired.
    #[inline]
    pub fn set(&self, v: i64) {
        let slot = self.map.num_slot(self.off);
        match &self.log {
            None => {
                if slot.gen.load(Ordering::Relaxed) != self.tag {
                    return;
                }
                if slot.value.swap(v as u64, Ordering::Release) != v as u64 {
                    slot.changed_ns.store(now_ns(), Ordering::Release);
                }
            }
            Some(log) => {
                // Every owner write of a logged region holds the log lock: value and entry
                // are in the same order.
                let mut g = log.lock();
                if slot.gen.load(Ordering::Relaxed) != self.tag
                    || slot.value.load(Ordering::Relaxed) == v as u64
                {
                    return;
                }
                slot.value.store(v as u64, Ordering::Release);
                let t = now_ns();
                slot.changed_ns.store(t, Ordering::Release);
                g.append(self.id, KIND_VALUE, v as u64, t);
            }
        }
    }

    /// Adds `d` (wrapping) and returns the new value. Ignored once retired.
    #[inline]
    pub fn add(&self, d: i64) -> i64 {
        let slot = self.map.num_slot(self.off);
        match &self.log {
            None => {
                if slot.gen.load(Ordering::Relaxed) != self.tag {
                    return self.get();
                }
                let old = slot.value.fetch_add(d as u64, Ordering::AcqRel) as i64;
                if d != 0 {
                    slot.changed_ns.store(now_ns(), Ordering::Release);
                }
                old.wrapping_add(d)
            }
            Some(log) => {
                let mut g = log.lock();
                let old = slot.value.load(Ordering::Relaxed) as i64;
                if slot.gen.load(Ordering::Relaxed) != self.tag || d == 0 {
                    return old;
                }
                let new = old.wrapping_add(d);
                slot.value.store(new as u64, Ordering::Release);
                let t = now_ns();
                slot.changed_ns.store(t, Ordering::Release);
                g.append(self.id, KIND_VALUE, new as u64, t);
                new
            }
        }
    }
}

/// Owner's handle to a FLOAT variable.
#[derive(Debug, Clone)]
pub struct FloatVar {
    pub(super) map: Arc<Mapping>,
    pub(super) off: usize,
    pub(super) id: u32,
    pub(super) tag: u64,
    pub(super) log: Option<Arc<LogWriter>>,
}

impl VarHandle for FloatVar {
    fn var_id(&self) -> u32 {
        self.id
    }
}

impl FloatVar {
    /// The value.
    #[inline]
    pub fn get(&self) -> f64 {
        f64::from_bits(self.map.num_slot(self.off).value.load(Ordering::Acquire))
    }

    /// Sets the value and the time of change (only if it changed). Ignored once retired.
    #[inline]
    pub fn set(&self, v: f64) {
        let slot = self.map.num_slot(self.off);
        let bits = v.to_bits();
        let mut g = self.log.as_ref().map(|l| l.lock());
        if slot.gen.load(Ordering::Relaxed) != self.tag
            || slot.value.swap(bits, Ordering::Release) == bits
        {
            return;
        }
        let t = now_ns();
        slot.changed_ns.store(t, Ordering::Release);
        if let Some(g) = &mut g {
            g.append(self.id, KIND_VALUE, bits, t);
        }
    }
}

/// Owner's handle to a STRING variable.
#[derive(Debug, Clone)]
pub struct StrVar {
    pub(super) map: Arc<Mapping>,
    pub(super) off: usize,
    pub(super) id: u32,
    pub(super) tag: u64,
    pub(super) log: Option<Arc<LogWriter>>,
    pub(super) cap: usize,
}

impl VarHandle for StrVar {
    fn var_id(&self) -> u32 {
        self.id
    }
}

impl StrVar {
    /// The value ("" once retired).
    pub fn get(&self) -> String {
        let mut buf = Vec::new();
        match self.map.read_str(self.off, self.cap, self.tag, &mut buf) {
            Ok(_) => String::from_utf8(buf).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub(super) fn write(&self, s: &str, only_if_changed: bool) -> bool {
        let mut n = s.len().min(self.cap);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        if only_if_changed && self.get().as_bytes() == &s.as_bytes()[..n] {
            return n < s.len();
        }
        let mut g = self.log.as_ref().map(|l| l.lock());
        if self.map.word(self.off).load(Ordering::Relaxed) != self.tag {
            return n < s.len();
        }
        let t = now_ns();
        let seq = self.map.write_str(self.off, &s.as_bytes()[..n], t);
        if let Some(g) = &mut g {
            g.append(self.id, KIND_STRING, seq, t);
        }
        n < s.len()
    }

    /// Sets the value, cut to the capacity at a character boundary. Returns whether it was cut.
    pub fn set(&self, s: &str) -> bool {
        self.write(s, true)
    }

    /// Writes the value, cut to the capacity at a character boundary, without first reading the
    /// current one: unlike [`StrVar::set`] it never allocates (for a loop that must not), and it
    /// always updates the time of change. Returns whether it was cut.
    pub fn store(&self, s: &str) -> bool {
        self.write(s, false)
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }
}
