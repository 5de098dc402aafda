//! `ybosspydaemon`: the sister of rspydaemon that fills a local circular buffer (`lname`,
//! `bufsize` bytes) by replaying a spy data file (`fname`, see [`super::datafile`]) instead
//! of fetching from a farm, as KLOE's did from YBOS files. Monitoring tasks read the buffer as
//! they would rspydaemon's.
//!
//! KLOE's variables: `fname`, `bufsize`, `skip` (events skipped at the start of the file),
//! `at_EOF` (what to do at the end of the file: `stop` or `loop` from the start, after `skip`
//! again), `maxevents` (events written per loop, default 100); and run control: `init
//! [fname]` (opens the file, creates the buffer), `start`, `pause`, `resume`, `update`, `end`,
//! `exit`. Ours besides: `rate` (events/s, 0 as fast as it goes), `lname`, and counters.
//!
//! Event numbers: the file's, the first time through; looping, each pass adds the largest
//! number of the file so far, so numbers keep increasing (a buffer takes no other).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shvars::circ::{CircWriter, WriteError};
use shvars::region::{IntVar, StrVar, VarSpec};

use super::datafile::DataFileReader;
use crate::framework::eventlog::EventLog;
use crate::framework::stats::{Stats, StatsConfig};
use crate::framework::{App, BoxError, Command, Ctx, Outcome, ProcessSpec, RunState, TICK};

/// How the framework runs a ybos spy daemon.
pub const SPEC: ProcessSpec = ProcessSpec {
    default_name: "ybosspy",
    stats: Some(StatsConfig {
        upfreq: 5,
        upfreq_l: 10,
        pack_name: "loops",
    }),
    tick: Some(TICK),
};

/// Labels of `at_EOF`.
pub const AT_EOF_LABELS: [&str; 2] = ["stop", "loop"];

#[derive(Debug, Clone)]
struct Vars {
    fname: StrVar,
    lname: StrVar,
    bufsize: IntVar,
    skip: IntVar,
    at_eof: IntVar,
    maxevents: IntVar,
    rate: IntVar,
    events: IntVar,
    passes: IntVar,
    lastevent: IntVar,
    ignored: IntVar,
    eof: IntVar,
    circfulls: IntVar,
    lasterror: StrVar,
}

#[derive(Debug, Default)]
struct Control {
    run: AtomicBool,
    stop: AtomicBool,
}

/// The ybos spy daemon.
pub struct Ybos {
    vars: Vars,
    writer: Option<CircWriter>,
    reader: Option<DataFileReader>,
    ctl: Arc<Control>,
    worker: Option<JoinHandle<(CircWriter, DataFileReader)>>,
}

impl std::fmt::Debug for Ybos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ybos").finish_non_exhaustive()
    }
}

impl Ybos {
    /// Publishes the daemon's variables.
    ///
    /// # Errors
    /// If a variable cannot be published.
    pub fn build(ctx: &mut Ctx) -> Result<Ybos, BoxError> {
        let r = ctx.region();
        let vars = Vars {
            fname: r.add_str(VarSpec::string("fname", 256, "").rw()
                .desc("The spy data file replayed (spycat --save FILE writes one); init's argument sets it"))?,
            lname: r.add_str(VarSpec::string("lname", 200, "/tmp/B_1_1").rw()
                .desc("Name of the circular buffer filled (a name in the runtime directory, or an absolute path)"))?,
            bufsize: r.add_int(VarSpec::int("bufsize", 1 << 20).rw().unit("bytes")
                .range(Some(4096.0), Some((1u64 << 34) as f64))
                .desc("Size of the circular buffer (applied by init)"))?,
            skip: r.add_int(VarSpec::int("skip", 0).rw().range(Some(0.0), None)
                .desc("Events of the file skipped at its start (each pass)"))?,
            at_eof: r.add_int(VarSpec::enumeration("at_EOF", &AT_EOF_LABELS, 0).rw()
                .desc("At the end of the file: stop, or loop from its start (after skip)"))?,
            maxevents: r.add_int(VarSpec::int("maxevents", 100).rw().range(Some(1.0), Some(1e6))
                .desc("Events written per loop"))?,
            rate: r.add_int(VarSpec::int("rate", 1000).rw().unit("Hz").range(Some(0.0), Some(1e9))
                .desc("Events per second replayed (0: as fast as it goes)"))?,
            events: r.add_int(VarSpec::int("events", 0).counter()
                .desc("Events written into the buffer (reset by start)"))?,
            passes: r.add_int(VarSpec::int("passes", 0).counter()
                .desc("Times the end of the file was reached"))?,
            lastevent: r.add_int(VarSpec::int("lastevent", 0)
                .desc("Number of the last event written"))?,
            ignored: r.add_int(VarSpec::int("ignored", 0).counter()
                .desc("Events of the file too large for the buffer"))?,
            eof: r.add_int(VarSpec::int("eof", 0).range(Some(0.0), Some(1.0))
                .desc("1 once the end of the file stopped the replay (at_EOF stop)"))?,
            circfulls: r.add_int(VarSpec::int("circfulls", 0).counter()
                .desc("Times the buffer was full: an event needed room only overwriting the oldest events gave"))?,
            lasterror: ctx.lasterror_var(),
        };
        Ok(Ybos {
            vars,
            writer: None,
            reader: None,
            ctl: Arc::new(Control::default()),
            worker: None,
        })
    }

    fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            self.ctl.stop.store(true, Ordering::SeqCst);
            if let Ok((writer, reader)) = w.join() {
                self.writer = Some(writer);
                self.reader = Some(reader);
            }
            self.ctl.stop.store(false, Ordering::SeqCst);
        }
    }
}

fn init(y: &mut Ybos, ctx: &mut Ctx, args: &[String]) -> Outcome {
    y.stop_worker();
    if let Some(f) = args.first() {
        if y.vars.fname.set(f) {
            return Err(format!("fname longer than {} bytes", y.vars.fname.capacity()).into());
        }
    }
    let fname = y.vars.fname.get();
    if fname.is_empty() {
        return Err("no data file: `init FILE` or `set fname FILE` first".into());
    }
    let reader = DataFileReader::open(&PathBuf::from(&fname)).map_err(|e| e.to_string())?;
    let lname = y.vars.lname.get();
    let size = y.vars.bufsize.get() as u64;
    let keep = y.writer.as_ref().is_some_and(|w| {
        ctx.dir().buffer_path(&lname).ok().as_deref() == Some(w.path())
            && w.stats().capacity == size
    });
    if !keep {
        y.writer = None;
        let w = CircWriter::create_named(ctx.dir(), &lname, size).map_err(|e| e.to_string())?;
        ctx.log().info(format!(
            "created buffer {} ({size} bytes)",
            w.path().display()
        ));
        y.writer = Some(w);
    }
    y.reader = Some(reader);
    Ok(format!("replaying {fname} into {lname} ({size} bytes)").into())
}

fn start(y: &mut Ybos, ctx: &mut Ctx, _: &[String]) -> Outcome {
    let (Some(writer), Some(reader)) = (y.writer.take(), y.reader.take()) else {
        return Err("not initialised: run init first".into());
    };
    let mut reader = reader;
    if let Err(e) = reader.rewind() {
        y.writer = Some(writer);
        return Err(e.to_string().into());
    }
    y.vars.events.set(0);
    y.vars.eof.set(0);
    y.ctl.run.store(true, Ordering::SeqCst);
    let (vars, ctl, log) = (y.vars.clone(), y.ctl.clone(), ctx.log().clone());
    let stats = ctx
        .stats()
        .cloned()
        .ok_or("ybosspydaemon needs statistics")?;
    let worker = std::thread::Builder::new()
        .name("replay".into())
        .spawn(move || {
            let mut r = Replay {
                w: writer,
                file: reader,
                vars,
                stats,
                offset: 0,
                file_max: 0,
                started: false,
                pass_events: 0,
            };
            r.run(&ctl, &log);
            (r.w, r.file)
        })
        .map_err(|e| e.to_string())?;
    y.worker = Some(worker);
    Ok(format!("replaying {}", y.vars.fname.get()).into())
}

fn pause(y: &mut Ybos, _: &mut Ctx, _: &[String]) -> Outcome {
    y.ctl.run.store(false, Ordering::SeqCst);
    Ok("paused: no new events".into())
}

fn resume(y: &mut Ybos, _: &mut Ctx, _: &[String]) -> Outcome {
    y.ctl.run.store(true, Ordering::SeqCst);
    Ok("replaying again".into())
}

fn end(y: &mut Ybos, _: &mut Ctx, _: &[String]) -> Outcome {
    y.stop_worker();
    Ok(format!(
        "stopped after {} events (last event {})",
        y.vars.events.get(),
        y.vars.lastevent.get()
    )
    .into())
}

/// The replaying thread.
struct Replay {
    w: CircWriter,
    file: DataFileReader,
    vars: Vars,
    stats: Stats,
    /// Added to the file's event numbers in this pass.
    offset: u64,
    /// Largest event number of the file seen.
    file_max: u64,
    /// Whether `skip` was applied in this pass.
    started: bool,
    /// Events read from the file in this pass.
    pass_events: u64,
}

impl Replay {
    fn run(&mut self, ctl: &Control, log: &EventLog) {
        let t0 = Instant::now();
        let mut paced = 0u64;
        let mut pace_rate = i64::MIN;
        let mut pace_t0 = t0;
        while !ctl.stop.load(Ordering::SeqCst) {
            if !ctl.run.load(Ordering::SeqCst) || self.vars.eof.get() == 1 {
                std::thread::sleep(Duration::from_millis(10));
                self.stats.end_loop();
                pace_rate = i64::MIN;
                continue;
            }
            let rate = self.vars.rate.get();
            if rate != pace_rate {
                pace_rate = rate;
                pace_t0 = Instant::now();
                paced = 0;
            }
            let mut n = self.vars.maxevents.get().max(1) as u64;
            if rate > 0 {
                let due = (pace_t0.elapsed().as_secs_f64() * rate as f64) as u64 + 1;
                let allowed = due.saturating_sub(paced).min(n);
                if allowed == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                n = allowed;
            }
            match self.batch(n, log) {
                Ok(done) => paced += done,
                Err(msg) => {
                    log.error(&msg);
                    self.vars.lasterror.set(&msg);
                    self.vars.eof.set(1);
                }
            }
        }
    }

    /// Writes up to `n` events; returns how many.
    fn batch(&mut self, n: u64, log: &EventLog) -> Result<u64, String> {
        let (mut done, mut bytes) = (0u64, 0u64);
        let max = self.w.max_event();
        while done < n {
            if !self.started {
                self.started = true;
                for _ in 0..self.vars.skip.get().max(0) {
                    if self.file.next_event().map_err(|e| e.to_string())?.is_none() {
                        break;
                    }
                }
            }
            let Some((evnr, data)) = self.file.next_event().map_err(|e| e.to_string())? else {
                // The end of the file.
                self.vars.passes.add(1);
                if self.pass_events == 0 {
                    return Err(format!(
                        "{} has no events after the {} skipped: nothing to replay",
                        self.file.path().display(),
                        self.vars.skip.get()
                    ));
                }
                self.pass_events = 0;
                if self.vars.at_eof.get() == 1 {
                    self.file.rewind().map_err(|e| e.to_string())?;
                    self.offset += self.file_max;
                    self.started = false;
                    continue;
                }
                log.info(format!(
                    "end of {} (at_EOF stop): {} events written",
                    self.file.path().display(),
                    self.vars.events.get() + done as i64
                ));
                self.vars.eof.set(1);
                break;
            };
            self.file_max = self.file_max.max(evnr);
            self.pass_events += 1;
            let number = evnr + self.offset;
            if data.len() > max {
                self.vars.ignored.add(1);
                continue;
            }
            match self.w.write(number, data) {
                Ok(()) => {
                    done += 1;
                    bytes += data.len() as u64;
                    self.vars.lastevent.set(number as i64);
                }
                Err(WriteError::NotIncreasing { .. }) => {
                    self.vars.ignored.add(1);
                }
                Err(e) => return Err(format!("writing stopped: {e}")),
            }
        }
        if done > 0 {
            self.vars.events.add(done as i64);
        }
        self.vars.circfulls.set(self.w.circfulls() as i64);
        self.stats.count(done, 1, bytes);
        self.stats.end_loop();
        Ok(done)
    }
}

impl App for Ybos {
    fn commands() -> Vec<Command<Self>> {
        vec![
            Command::init("Initialize: open the data file fname (the argument sets it) and create the buffer lname of bufsize bytes")
                .args("[fname]", 0, 1)
                .handler(init),
            Command::start("Replay the file into the buffer from its start (after skip)").handler(start),
            Command::pause("Pause the replay").handler(pause),
            Command::resume("Resume the replay").handler(resume),
            Command::update("Update the shared variables now"),
            Command::end("End the replay")
                .allowed(&[RunState::Running, RunState::Pause])
                .handler(end),
        ]
    }

    fn status(&self, _ctx: &Ctx) -> Vec<String> {
        vec![
            format!("file: {}", self.vars.fname.get()),
            format!("buffer: {}", self.vars.lname.get()),
            format!(
                "replayed: {} events, {} passes{}",
                self.vars.events.get(),
                self.vars.passes.get(),
                if self.vars.eof.get() == 1 {
                    ", stopped at the end of the file"
                } else {
                    ""
                }
            ),
        ]
    }

    fn shutdown(&mut self, _ctx: &mut Ctx) {
        self.stop_worker();
    }
}
