//! Where the PVs' values come from: the regions of the live local processes, and how the
//! gateway learns that a watched value changed.
//!
//! The server sees only the [`Source`] trait: bind a name to a variable, read it, watch it,
//! and ask what changed. [`PollSource`] answers that every tick (1 ms by default, only while
//! something is watched) from each process's change log: every write of a watched variable,
//! in order, so a monitor gets every value of a counter however fast it is written, as long as
//! the log (16,384 entries by default) holds what came between two ticks. A process whose
//! region has no log, or whose log lapped the gateway, is compared instead: each watched
//! variable against its last value (a number costs one atomic load, a string one time-stamp
//! load unless it changed), which gives the latest value, not every one.
//!
//! Processes are found by a thread that looks at the runtime directory every 100 ms: a new
//! live region is opened there (opening may wait for a region still being declared) and handed
//! over; a region whose owner died, stopped or was replaced by a new owner is reported gone.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use shvars::region::{
    ChangeEvent, ChangeKind, ChangeReader, ReadError, RegionReader, Value, VarRef, VarSpec, VarType,
};
use shvars::{ProcName, RuntimeDir};

/// A variable of one incarnation of a process.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The process.
    pub process: Arc<str>,
    /// Which incarnation (a restarted process gets a new one).
    pub generation: u64,
    vref: VarRef,
}

impl Binding {
    /// The variable's spec.
    pub fn spec(&self) -> &VarSpec {
        self.vref.spec()
    }
}

/// A value and the time it was set.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The value.
    pub value: Value,
    /// ns since the Unix epoch.
    pub changed_ns: u64,
}

/// Why a read gave no value.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadFail {
    /// The process is gone (or is another incarnation now).
    Gone,
    /// The region refused (a string torn on every retry, a corrupt slot).
    Bad(String),
}

/// A watched variable, shared by every subscription to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(pub u64);

/// What the server needs of a source of values.
pub trait Source {
    /// Takes in the processes that appeared and went since the last call; appends the names
    /// of those gone (or replaced) to `gone`. Returns whether anything changed.
    fn refresh(&mut self, gone: &mut Vec<Arc<str>>) -> bool;
    /// Whether a live process of that name is served.
    fn has_process(&self, process: &str) -> bool;
    /// Binds a variable of a live process.
    fn bind(&mut self, process: &str, var: &str) -> Option<Binding>;
    /// Reads a bound variable now.
    ///
    /// # Errors
    /// [`ReadFail`] if the process is gone or the region refuses.
    fn read(&self, b: &Binding) -> Result<Sample, ReadFail>;
    /// Starts watching a bound variable (counted: every call needs an [`Source::unwatch`]).
    fn watch(&mut self, b: &Binding) -> WatchId;
    /// Stops one watch of a variable.
    fn unwatch(&mut self, id: WatchId);
    /// Appends each watched variable that changed since the last call, with its new value.
    fn changes(&mut self, out: &mut Vec<(WatchId, Sample)>);
    /// How often [`Source::changes`] wants calling; `None` while nothing is watched.
    fn tick(&self) -> Option<Duration>;
    /// How many processes are served.
    fn processes(&self) -> usize;
}

/// What the directory watcher hands over.
enum Found {
    Appeared(ProcName, Box<RegionReader>),
    Gone(ProcName),
}

struct Proc {
    reader: RegionReader,
    generation: u64,
    /// The process's change log, when its region has one: every write, in order.
    log: Option<ChangeReader>,
}

struct Watched {
    binding: Binding,
    refs: u32,
    /// The first change-log sequence number that concerns this watch: the value read when
    /// it began already includes every earlier write.
    from_seq: u64,
    /// The last value's bits (numbers) or time of change (strings).
    last: u64,
}

/// The source that compares watched values on a timer.
pub struct PollSource {
    procs: HashMap<Arc<str>, Proc>,
    watched: HashMap<WatchId, Watched>,
    by_var: HashMap<(Arc<str>, u64, String), WatchId>,
    /// The same, by the variable's id in its region (what the change log names).
    by_id: HashMap<(Arc<str>, u64, u32), WatchId>,
    next_watch: u64,
    next_generation: u64,
    tick: Duration,
    rx: Receiver<Found>,
    stop: Arc<AtomicBool>,
    finder: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PollSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollSource")
            .field("processes", &self.procs.len())
            .field("watched", &self.watched.len())
            .finish_non_exhaustive()
    }
}

/// How often the runtime directory is looked at.
const SCAN_PERIOD: Duration = Duration::from_millis(100);
/// How often a region that was found dead is opened again even if its file did not change.
const DEAD_RECHECK: Duration = Duration::from_secs(2);

impl PollSource {
    /// Starts watching the processes of `dir`; `wake` is called whenever one appears or goes,
    /// and `tick` is how often watched values are compared.
    ///
    /// # Errors
    /// If the watcher thread cannot start.
    pub fn start(
        dir: RuntimeDir,
        tick: Duration,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<PollSource> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let finder = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("ca-finder".into())
                .spawn(move || find_processes(&dir, &tx, &stop, &wake))?
        };
        Ok(PollSource {
            procs: HashMap::new(),
            watched: HashMap::new(),
            by_var: HashMap::new(),
            by_id: HashMap::new(),
            next_watch: 1,
            next_generation: 1,
            tick,
            rx,
            stop,
            finder: Some(finder),
        })
    }

    fn remove(&mut self, name: &str, gone: &mut Vec<Arc<str>>) {
        if let Some((k, _)) = self.procs.remove_entry(name) {
            gone.push(k);
        }
    }
}

impl Drop for PollSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.finder.take() {
            let _ = t.join();
        }
    }
}

fn bits(v: &Value) -> u64 {
    match v {
        Value::Int(i) => *i as u64,
        Value::Float(f) => f.to_bits(),
        Value::Str(_) => 0,
    }
}

impl Source for PollSource {
    fn refresh(&mut self, gone: &mut Vec<Arc<str>>) -> bool {
        let mut any = false;
        while let Ok(f) = self.rx.try_recv() {
            any = true;
            match f {
                Found::Appeared(name, reader) => {
                    self.remove(name.as_str(), gone);
                    let generation = self.next_generation;
                    self.next_generation += 1;
                    let log = reader.changes();
                    self.procs.insert(
                        Arc::from(name.as_str()),
                        Proc {
                            reader: *reader,
                            generation,
                            log,
                        },
                    );
                }
                Found::Gone(name) => self.remove(name.as_str(), gone),
            }
        }
        any
    }

    fn has_process(&self, process: &str) -> bool {
        self.procs.contains_key(process)
    }

    fn bind(&mut self, process: &str, var: &str) -> Option<Binding> {
        let name = self.procs.get_key_value(process)?.0.clone();
        let p = self.procs.get_mut(process)?;
        let vref = match p.reader.find(var) {
            Ok(v) => v,
            // A variable declared after we opened the region: read the new part of the schema.
            Err(_) => match p.reader.refresh_schema() {
                Ok(true) => p.reader.find(var).ok()?,
                _ => return None,
            },
        };
        Some(Binding {
            process: name,
            generation: p.generation,
            vref,
        })
    }

    fn read(&self, b: &Binding) -> Result<Sample, ReadFail> {
        let p = self.procs.get(&*b.process).ok_or(ReadFail::Gone)?;
        if p.generation != b.generation {
            return Err(ReadFail::Gone);
        }
        let value = p.reader.read(&b.vref).map_err(|e| match e {
            ReadError::Busy(_) | ReadError::Corrupt { .. } => ReadFail::Bad(e.to_string()),
            other => ReadFail::Bad(other.to_string()),
        })?;
        Ok(Sample {
            value,
            changed_ns: p.reader.changed_ns(&b.vref),
        })
    }

    fn watch(&mut self, b: &Binding) -> WatchId {
        let key = (b.process.clone(), b.generation, b.spec().name.clone());
        if let Some(id) = self.by_var.get(&key) {
            if let Some(w) = self.watched.get_mut(id) {
                w.refs += 1;
                return *id;
            }
        }
        let id = WatchId(self.next_watch);
        self.next_watch += 1;
        // Read the log's head before the value: a write between the two is then both in the
        // value and after `from_seq` (sent twice at worst, never lost).
        let from_seq = self
            .procs
            .get(&*b.process)
            .and_then(|p| p.log.as_ref())
            .map_or(0, ChangeReader::head);
        let last = match self.read(b) {
            Ok(s) if matches!(b.spec().ty, VarType::String { .. }) => s.changed_ns,
            Ok(s) => bits(&s.value),
            Err(_) => 0,
        };
        self.watched.insert(
            id,
            Watched {
                binding: b.clone(),
                refs: 1,
                from_seq,
                last,
            },
        );
        self.by_var.insert(key, id);
        self.by_id
            .insert((b.process.clone(), b.generation, b.spec().id), id);
        id
    }

    fn unwatch(&mut self, id: WatchId) {
        let Some(w) = self.watched.get_mut(&id) else {
            return;
        };
        w.refs -= 1;
        if w.refs == 0 {
            let b = self.watched.remove(&id).map(|w| w.binding);
            if let Some(b) = b {
                self.by_var
                    .remove(&(b.process.clone(), b.generation, b.spec().name.clone()));
                self.by_id
                    .remove(&(b.process.clone(), b.generation, b.spec().id));
            }
        }
    }

    fn changes(&mut self, out: &mut Vec<(WatchId, Sample)>) {
        // Processes with a change log: every write of a watched variable, in order (a monitor
        // sees each value of a counter however fast it is written, as long as the log holds
        // them between two ticks). The others, and a log that was lapped, are compared.
        let mut compare: HashSet<Arc<str>> = HashSet::new();
        for (name, p) in &mut self.procs {
            let Some(log) = p.log.as_mut() else {
                compare.insert(name.clone());
                continue;
            };
            while let Some(ev) = log.next_event() {
                let c = match ev {
                    ChangeEvent::Change(c) if c.kind == ChangeKind::Value => c,
                    ChangeEvent::Change(_) => continue,
                    ChangeEvent::Missed(_) => {
                        compare.insert(name.clone());
                        continue;
                    }
                };
                let Some(id) = self.by_id.get(&(name.clone(), p.generation, c.id)) else {
                    continue;
                };
                let Some(w) = self.watched.get_mut(id) else {
                    continue;
                };
                if c.seq < w.from_seq {
                    continue;
                }
                let spec = w.binding.vref.spec();
                let value = match spec.ty {
                    VarType::Integer | VarType::Enum { .. } => Value::Int(c.raw as i64),
                    VarType::Float => Value::Float(f64::from_bits(c.raw)),
                    VarType::String { .. } => {
                        // The log holds the slot's sequence: the text is the slot's now.
                        let t = p.reader.changed_ns(&w.binding.vref);
                        if t == w.last {
                            continue;
                        }
                        match p.reader.read(&w.binding.vref) {
                            Ok(v) => {
                                w.last = t;
                                out.push((
                                    *id,
                                    Sample {
                                        value: v,
                                        changed_ns: t,
                                    },
                                ));
                            }
                            Err(_) => {
                                compare.insert(name.clone());
                            }
                        }
                        continue;
                    }
                };
                // A write of the value it already had is no change (EPICS posts changes).
                if bits(&value) == w.last {
                    continue;
                }
                w.last = bits(&value);
                out.push((
                    *id,
                    Sample {
                        value,
                        changed_ns: c.time_ns,
                    },
                ));
            }
        }
        if compare.is_empty() {
            return;
        }
        for (id, w) in &mut self.watched {
            if !compare.contains(&*w.binding.process) {
                continue;
            }
            let Some(p) = self.procs.get(&*w.binding.process) else {
                continue;
            };
            if p.generation != w.binding.generation {
                continue;
            }
            let b = &w.binding.vref;
            if matches!(b.spec().ty, VarType::String { .. }) {
                let t = p.reader.changed_ns(b);
                if t == w.last {
                    continue;
                }
                if let Ok(value) = p.reader.read(b) {
                    w.last = t;
                    out.push((
                        *id,
                        Sample {
                            value,
                            changed_ns: t,
                        },
                    ));
                }
            } else if let Ok(value) = p.reader.read(b) {
                let now = bits(&value);
                if now != w.last {
                    w.last = now;
                    out.push((
                        *id,
                        Sample {
                            value,
                            changed_ns: p.reader.changed_ns(b),
                        },
                    ));
                }
            }
        }
    }

    fn tick(&self) -> Option<Duration> {
        (!self.watched.is_empty()).then_some(self.tick)
    }

    fn processes(&self) -> usize {
        self.procs.len()
    }
}

/// The identity of a region file, to notice a new one under the same name.
fn file_id(dir: &RuntimeDir, name: &ProcName) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(dir.region_path(name))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// The directory watcher: hands over every live region, reports the ones that go.
fn find_processes(
    dir: &RuntimeDir,
    tx: &Sender<Found>,
    stop: &AtomicBool,
    wake: &(impl Fn() + Send),
) {
    // Our own reader of each process handed over, to see it die or be replaced.
    let mut live: HashMap<ProcName, RegionReader> = HashMap::new();
    // Regions found dead: their file's identity, and when we looked.
    let mut dead: HashMap<ProcName, ((u64, u64), Instant)> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let names = dir.process_names().unwrap_or_default();
        let present: HashSet<&ProcName> = names.iter().collect();
        let mut changed = false;
        live.retain(|name, r| {
            let keep = present.contains(name) && r.is_alive() && !r.is_replaced();
            if !keep {
                changed = true;
                let _ = tx.send(Found::Gone(name.clone()));
            }
            keep
        });
        dead.retain(|name, _| present.contains(name));
        for name in &names {
            if live.contains_key(name) {
                continue;
            }
            let id = file_id(dir, name);
            if let (Some(id), Some((was, when))) = (id, dead.get(name)) {
                if *was == id && when.elapsed() < DEAD_RECHECK {
                    continue;
                }
            }
            let opened = RegionReader::open(dir, name)
                .ok()
                .filter(|r| r.is_alive() && !r.is_replaced());
            match opened.and_then(|mine| RegionReader::open(dir, name).ok().map(|r| (mine, r))) {
                Some((mine, theirs)) => {
                    dead.remove(name);
                    live.insert(name.clone(), mine);
                    changed = true;
                    let _ = tx.send(Found::Appeared(name.clone(), Box::new(theirs)));
                }
                None => {
                    if let Some(id) = id {
                        dead.insert(name.clone(), (id, Instant::now()));
                    }
                }
            }
        }
        if changed {
            wake();
        }
        std::thread::sleep(SCAN_PERIOD);
    }
}
