//! Defining variables in a region the owner holds: room for values and schema lines (the
//! file grows in place), adding variables (one or many at once, typed handles), and retiring
//! them.

use super::*;

impl VarRegion {
    /// Adds `bytes` at the end of the file (8-aligned) and maps the new size. Returns the
    /// offset of the new space.
    pub(super) fn grow(
        &self,
        st: &mut OwnerState,
        bytes: usize,
        what: &str,
    ) -> Result<usize, AddError> {
        let off = align_up(st.file_len);
        let new_len = off + align_up(bytes);
        if new_len as u64 > MAX_FILE_SIZE {
            return Err(AddError::Full {
                name: what.to_owned(),
                what: "file (4 GiB at most)",
            });
        }
        let io = |error| AddError::Grow {
            path: self.path.clone(),
            error,
        };
        self.file.set_len(new_len as u64).map_err(io)?;
        st.map = Arc::new(Mapping::map(&self.file, new_len, true).map_err(io)?);
        st.file_len = new_len;
        let h = self.head.header();
        // Published (release) before anything that points into the new space.
        h.file_size.store(new_len as u64, Ordering::Release);
        h.grow_count.fetch_add(1, Ordering::Relaxed);
        Ok(off)
    }

    /// Finds room for a slot of `size` bytes: a retired slot of that size, else the end of the
    /// current data chunk, else a new chunk.
    pub(super) fn alloc(
        &self,
        st: &mut OwnerState,
        size: usize,
        name: &str,
    ) -> Result<usize, AddError> {
        if let Some(off) = st.free.get_mut(&size).and_then(Vec::pop) {
            return Ok(off);
        }
        if st.data_chunk_used + size > st.data_chunk_cap {
            // Double the data space each time (at least the slot, in whole pages).
            let cap = size.max(st.data_total).next_multiple_of(4096);
            let off = self.grow(st, cap, name)?;
            st.data_chunk_off = off;
            st.data_chunk_cap = cap;
            st.data_chunk_used = 0;
            st.data_total += cap;
        }
        let off = st.data_chunk_off + st.data_chunk_used;
        st.data_chunk_used += size;
        Ok(off)
    }

    /// Appends one padded line to the schema, in a new chunk if the current one is full. Not
    /// yet published: see [`VarRegion::publish_state`].
    pub(super) fn append_line(
        &self,
        st: &mut OwnerState,
        line: &[u8],
        name: &str,
    ) -> Result<(), AddError> {
        if st.chunk_used + line.len() > st.chunk_cap - CHUNK_HEADER {
            let cap = (line.len() + CHUNK_HEADER)
                .max(st.chunk_cap.saturating_mul(2).min(64 << 20))
                .next_multiple_of(8);
            let off = self.grow(st, cap, name)?;
            let c = st.map.chunk(off);
            c.next.store(0, Ordering::Relaxed);
            c.cap.store(cap as u64, Ordering::Relaxed);
            c.used.store(0, Ordering::Relaxed);
            // The new chunk is complete (header) before the old one points at it.
            st.map
                .chunk(st.chunk_off)
                .next
                .store(off as u64, Ordering::Release);
            st.chunk_off = off;
            st.chunk_cap = cap;
            st.chunk_used = 0;
        }
        st.map
            .copy_in(st.chunk_off + CHUNK_HEADER + st.chunk_used, line);
        st.chunk_used += line.len();
        st.map
            .chunk(st.chunk_off)
            .used
            .store(st.chunk_used as u64, Ordering::Release);
        st.schema_len += line.len();
        Ok(())
    }

    /// Publishes the counts and the schema length: readers see every line appended so far.
    pub(super) fn publish_state(&self, st: &OwnerState) {
        let h = self.head.header();
        h.data_used.store(st.data_used as u64, Ordering::Relaxed);
        h.nvars.store(st.live.len() as u64, Ordering::Relaxed);
        h.nretired.store(st.retired, Ordering::Relaxed);
        h.schema_len.store(st.schema_len as u64, Ordering::Release);
    }

    /// Publishes new variables with their default values and returns their handles, in order:
    /// a row of a table at once (`worker.3.state`, `worker.3.pid`, ...). The file grows when
    /// its space is used up; slots of retired variables are reused.
    ///
    /// # Errors
    /// [`AddError`] if a name exists, a spec is inconsistent, or the file cannot grow. The
    /// variables before the one that failed are added.
    pub fn add_vars(&self, specs: &[VarSpec]) -> Result<Vec<Var>, AddError> {
        let mut seen = HashSet::new();
        for s in specs {
            s.validate().map_err(AddError::BadSpec)?;
            if !seen.insert(s.name.as_str()) {
                return Err(AddError::Duplicate(s.name.clone()));
            }
        }
        let mut st = self.state.lock();
        if let Some(s) = specs.iter().find(|s| st.index.contains_key(&s.name)) {
            return Err(AddError::Duplicate(s.name.clone()));
        }
        let mut out = Vec::with_capacity(specs.len());
        let mut res = Ok(());
        for s in specs {
            match self.add_one(&mut st, s.clone()) {
                Ok(v) => out.push(v),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        self.publish_state(&st);
        // The additions in the change log, after they are in the schema and before anything
        // else can be logged of them (a retirement takes the state lock first).
        if let Some(log) = &self.log {
            let mut g = log.lock();
            for v in &out {
                let (value, t) = v.log_value();
                g.append(v.id, KIND_ADDED, value, t);
            }
        }
        drop(st);
        res.map(|()| out)
    }

    pub(super) fn add_one(&self, st: &mut OwnerState, mut spec: VarSpec) -> Result<Var, AddError> {
        let size = spec.ty.slot_size();
        let id = st.next_id;
        if id == u32::MAX {
            return Err(AddError::Full {
                name: spec.name,
                what: "variable ids (2^32 per file)",
            });
        }
        let off = self.alloc(st, size, &spec.name)?;
        spec.id = id;
        spec.offset = off;
        let line =
            pad_line(serde_json::to_vec(&spec).map_err(|e| AddError::BadSpec(e.to_string()))?);
        let var = Var {
            map: st.map.clone(),
            off,
            id,
            tag: u64::from(id) + 1,
            spec: Arc::new(spec),
            log: self.log.clone(),
        };
        // The slot is free (generation 0): write the default, then claim it. The fence orders
        // the earlier `gen = 0` of a retired occupant before our stores (see `retire_ids`).
        fence(Ordering::Release);
        var.init_value(now_ns());
        st.map.word(off).store(var.tag, Ordering::Release);
        if let Err(e) = self.append_line(st, &line, &var.spec.name) {
            // Give the slot back: nobody can know of it.
            st.map.word(off).store(0, Ordering::Release);
            st.free.entry(size).or_default().push(off);
            return Err(e);
        }
        st.next_id += 1;
        st.data_used += size;
        st.tombs.remove(&var.spec.name);
        st.index.insert(var.spec.name.clone(), id);
        st.live.insert(id, var.spec.clone());
        Ok(var)
    }

    /// Publishes a new variable with its default value and returns a handle to it.
    ///
    /// # Errors
    /// [`AddError`] if the name exists, the spec is inconsistent, or the file cannot grow.
    pub fn add(&self, spec: VarSpec) -> Result<Var, AddError> {
        let mut v = self.add_vars(std::slice::from_ref(&spec))?;
        Ok(v.remove(0))
    }

    pub(super) fn typed(
        &self,
        spec: VarSpec,
        wanted: &'static str,
        ok: bool,
    ) -> Result<Var, AddError> {
        if !ok {
            return Err(AddError::WrongType {
                name: spec.name.clone(),
                found: spec.ty.name(),
                wanted,
            });
        }
        self.add(spec)
    }

    /// Adds an INTEGER or ENUM variable and returns its typed handle.
    ///
    /// # Errors
    /// As [`VarRegion::add`], and [`AddError::WrongType`] for other types.
    pub fn add_int(&self, spec: VarSpec) -> Result<IntVar, AddError> {
        let ok = matches!(spec.ty, VarType::Integer | VarType::Enum { .. });
        Ok(self
            .typed(spec, "INTEGER", ok)?
            .into_int()
            .expect("checked"))
    }

    /// Adds a FLOAT variable and returns its typed handle.
    ///
    /// # Errors
    /// As [`VarRegion::add`], and [`AddError::WrongType`] for other types.
    pub fn add_float(&self, spec: VarSpec) -> Result<FloatVar, AddError> {
        let ok = matches!(spec.ty, VarType::Float);
        Ok(self
            .typed(spec, "FLOAT", ok)?
            .into_float()
            .expect("checked"))
    }

    /// Adds a STRING variable and returns its typed handle.
    ///
    /// # Errors
    /// As [`VarRegion::add`], and [`AddError::WrongType`] for other types.
    pub fn add_str(&self, spec: VarSpec) -> Result<StrVar, AddError> {
        let ok = matches!(spec.ty, VarType::String { .. });
        Ok(self.typed(spec, "STRING", ok)?.into_str().expect("checked"))
    }

    /// Retires the variable of handle `h`: it vanishes from listings, readers that kept it
    /// are told it was removed (and when), and its slot is reused by a later addition. Writes
    /// through any handle of it are ignored from now on.
    ///
    /// In a region with a change log, a write through a handle in another thread at the same
    /// time lands before the retirement or not at all. Without a change log, retire a variable
    /// only once no other thread of the owner writes it any more.
    ///
    /// # Errors
    /// [`RetireError::NoSuchVar`] if it is already retired; [`RetireError::Region`] if the
    /// schema cannot grow to record it.
    pub fn retire(&self, h: &impl VarHandle) -> Result<(), RetireError> {
        let id = h.var_id();
        let mut st = self.state.lock();
        if !st.live.contains_key(&id) {
            return Err(RetireError::NoSuchVar(format!("id {id}")));
        }
        self.retire_ids(&mut st, &[id]).map_err(RetireError::Region)
    }

    /// Retires variable `name` (see [`VarRegion::retire`]).
    ///
    /// # Errors
    /// As [`VarRegion::retire`].
    pub fn retire_name(&self, name: &str) -> Result<(), RetireError> {
        let mut st = self.state.lock();
        let Some(&id) = st.index.get(name) else {
            return Err(RetireError::NoSuchVar(name.to_owned()));
        };
        self.retire_ids(&mut st, &[id]).map_err(RetireError::Region)
    }

    /// Retires every variable whose name starts with `prefix` (a row: `worker.3.`). Returns how
    /// many.
    ///
    /// # Errors
    /// [`RetireError::Region`] if the schema cannot grow to record it.
    pub fn retire_prefix(&self, prefix: &str) -> Result<usize, RetireError> {
        let mut st = self.state.lock();
        let ids: Vec<u32> = st
            .live
            .values()
            .filter(|s| s.name.starts_with(prefix))
            .map(|s| s.id)
            .collect();
        self.retire_ids(&mut st, &ids)
            .map_err(RetireError::Region)?;
        Ok(ids.len())
    }

    pub(super) fn retire_ids(&self, st: &mut OwnerState, ids: &[u32]) -> Result<(), AddError> {
        // With a change log every owner write holds its lock: taken here, no write through a
        // handle of these variables is half done while their generation goes to 0, and every
        // later one sees it (and does nothing).
        let mut g = self.log.as_ref().map(|l| l.lock());
        let now = now_ns();
        let mut done = Vec::with_capacity(ids.len());
        let mut res = Ok(());
        for &id in ids {
            let Some(spec) = st.live.get(&id).cloned() else {
                continue;
            };
            let line = pad_line(
                serde_json::to_vec(&Tombstone {
                    retired: spec.name.clone(),
                    id,
                    time_ns: now,
                })
                .map_err(|e| AddError::BadSpec(e.to_string()))?,
            );
            if let Err(e) = self.append_line(st, &line, &spec.name) {
                res = Err(e);
                break;
            }
            st.live.remove(&id);
            st.index.remove(&spec.name);
            st.tombs.insert(spec.name.clone(), now);
            // Generation 0: every handle of it stops reading (readers) and writing (owner).
            st.map.word(spec.offset).store(0, Ordering::Release);
            // The time of retirement in the change-time word, for readers with a kept handle.
            st.map.word(spec.offset + 16).store(now, Ordering::Release);
            let size = spec.ty.slot_size();
            st.free.entry(size).or_default().push(spec.offset);
            st.data_used -= size;
            st.retired += 1;
            done.push(id);
        }
        self.publish_state(st);
        if let Some(g) = &mut g {
            for id in done {
                g.append(id, KIND_RETIRED, 0, now);
            }
        }
        res
    }
}
