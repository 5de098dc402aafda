//! Reading the schema lines of a region (all of them, or for a reader of some names only
//! those that can name its variables), at open and as the owner adds and retires variables.

use super::*;

impl RegionReader {
    /// Follows the owner: maps the file again if it grew, reads variables added and retired
    /// since the last look. Returns whether anything changed.
    ///
    /// # Errors
    /// [`OpenError::Corrupt`] if the new part of the schema is damaged.
    pub fn refresh_schema(&mut self) -> Result<bool, OpenError> {
        let len = self.map.header().schema_len.load(Ordering::Acquire) as usize;
        if len == self.schema_seen {
            return Ok(false);
        }
        if len < self.schema_seen || !len.is_multiple_of(8) || len as u64 > MAX_FILE_SIZE {
            return Err(self.corrupt(format!(
                "schema length {len} is impossible (seen {})",
                self.schema_seen
            )));
        }
        self.remap()?;
        let mut bytes = Vec::new();
        let mut part = Vec::new();
        while self.schema_seen < len {
            let c_off = self.chunk;
            if !self.map.check(c_off, CHUNK_HEADER) {
                return Err(self.corrupt(format!("schema chunk at {c_off} is outside the file")));
            }
            let c = self.map.chunk(c_off);
            let cap = c.cap.load(Ordering::Relaxed) as usize;
            let used = c.used.load(Ordering::Acquire) as usize;
            if cap < CHUNK_HEADER
                || !self.map.check(c_off, cap)
                || used > cap - CHUNK_HEADER
                || used < self.chunk_pos
                || !used.is_multiple_of(8)
            {
                return Err(self.corrupt(format!(
                    "schema chunk at {c_off} is damaged (size {cap}, used {used})"
                )));
            }
            if self.chunk_pos < used {
                let n = (used - self.chunk_pos).min(len - self.schema_seen);
                self.map
                    .copy_out(c_off + CHUNK_HEADER + self.chunk_pos, n, &mut part);
                bytes.extend_from_slice(&part);
                self.chunk_pos += n;
                self.schema_seen += n;
            } else {
                let next = c.next.load(Ordering::Acquire) as usize;
                if next == 0 {
                    return Err(self.corrupt(format!(
                        "schema length {len} but its chunks hold only {}",
                        self.schema_seen
                    )));
                }
                if next <= c_off || !next.is_multiple_of(8) {
                    return Err(
                        self.corrupt(format!("schema chunk at {c_off} points back to {next}"))
                    );
                }
                self.chunk = next;
                self.chunk_pos = 0;
            }
        }
        self.parse_lines(&bytes)?;
        Ok(true)
    }

    /// Whether this reader needs schema line `line`: always, unless it looks only for some
    /// names ([`RegionReader::open_only`]). An entry names its variable as a JSON string, and a
    /// JSON string without an escape (`\`) holds its text as it is, between two quotes: a line
    /// with no backslash and no `"NAME"` of a wanted name in it cannot add or retire any of
    /// them. Lines that have one (in a description, say) are parsed and checked as usual.
    fn needs(&self, line: &[u8]) -> bool {
        match &self.only {
            None => true,
            Some(only) => {
                memchr::memchr(b'\\', line).is_some()
                    || only.quoted.iter().any(|f| f.find(line).is_some())
            }
        }
    }

    fn parse_lines(&mut self, bytes: &[u8]) -> Result<(), OpenError> {
        let mut retired = HashSet::new();
        // Retirements skipped in this call: a full reader counts them in `gone` at once.
        let mut skipped_retired = 0;
        let mut start = 0;
        // The lines (as `split` on `\n` gives them, found with SIMD), the last one unended.
        let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
        for end in ends {
            let line = bytes[start..end].trim_ascii();
            start = end + 1;
            if line.is_empty() {
                continue;
            }
            let tomb = line.starts_with(b"{\"retired\"");
            if !self.needs(line) {
                if tomb {
                    skipped_retired += 1;
                } else {
                    self.skipped += 1;
                }
                continue;
            }
            let n = self.specs.len() + self.gone.len() + self.skipped + skipped_retired;
            if tomb {
                let t: Tombstone = serde_json::from_slice(line).map_err(|e| {
                    self.corrupt(format!("schema entry {n} is not a valid retirement: {e}"))
                })?;
                let Some(i) = self.by_id.remove(&t.id) else {
                    return Err(self.corrupt(format!(
                        "schema retires variable id {} ({}), which is not there",
                        t.id, t.retired
                    )));
                };
                let spec = self.specs[i].clone();
                if spec.name != t.retired {
                    return Err(self.corrupt(format!(
                        "schema retires id {} as {}, but it is {}",
                        t.id, t.retired, spec.name
                    )));
                }
                self.index.remove(&spec.name);
                self.tombs.insert(spec.name.clone(), t.time_ns);
                self.gone.insert(t.id, (spec, t.time_ns));
                retired.insert(t.id);
                continue;
            }
            let spec: VarSpec = serde_json::from_slice(line)
                .map_err(|e| self.corrupt(format!("schema entry {n} is not valid JSON: {e}")))?;
            spec.validate()
                .map_err(|e| self.corrupt(format!("schema entry {n}: {e}")))?;
            let size = spec.ty.slot_size();
            if spec.offset < HEADER_SIZE || !self.map.check(spec.offset, size) {
                return Err(self.corrupt(format!(
                    "variable {} has its slot outside the data area",
                    spec.name
                )));
            }
            if self.index.contains_key(&spec.name)
                || self.by_id.contains_key(&spec.id)
                || self.gone.contains_key(&spec.id)
            {
                return Err(self.corrupt(format!("variable {} appears twice", spec.name)));
            }
            self.tombs.remove(&spec.name);
            self.index.insert(spec.name.clone(), self.specs.len());
            self.by_id.insert(spec.id, self.specs.len());
            self.specs.push(Arc::new(spec));
        }
        if !retired.is_empty() {
            self.specs.retain(|s| !retired.contains(&s.id));
            self.index.clear();
            self.by_id.clear();
            for (i, s) in self.specs.iter().enumerate() {
                self.index.insert(s.name.clone(), i);
                self.by_id.insert(s.id, i);
            }
        }
        Ok(())
    }
}
