//! isectd's variables: the isdData fields, one row per service (`service.NAME.*`) and one per
//! worker (`worker.N.*`), added when `config`/`clone` makes them. Everything `isdclient -c ""`,
//! `workers` and `worker ID` show is one of these, so `shvar`, spyctl and Prometheus see it too.

use shvars::region::{AddError, IntVar, StrVar, VarRegion, VarSpec};

use super::model::{WState, QUEUE_LABELS, WSTATE_LABELS};

/// The isdData fields.
#[derive(Debug, Clone)]
pub struct IsdVars {
    pub host: StrVar,
    pub service_list: IntVar,
    pub lazy: IntVar,
    pub idle: IntVar,
    pub busy: IntVar,
    pub events: IntVar,
    pub num_events: IntVar,
    pub num_buckets: IntVar,
    pub bucket_secs: IntVar,
    pub peak_bucket: IntVar,
    pub buckets: StrVar,
    pub send_timeout_ms: IntVar,
    pub log_max: IntVar,
    pub workers: IntVar,
    pub restarts: IntVar,
}

impl IsdVars {
    /// Publishes them.
    ///
    /// # Errors
    /// If the region refuses one.
    pub fn add(r: &VarRegion, host: &str) -> Result<IsdVars, AddError> {
        Ok(IsdVars {
            host: r.add_str(
                VarSpec::string("host", 64, host)
                    .desc("The host name of the computer running isectd"),
            )?,
            service_list: r.add_int(VarSpec::int("ServiceList", 0).desc("Services defined"))?,
            lazy: r.add_int(
                VarSpec::int("LazyWorkers", 0).desc("Workers on the LAZY queue (not available)"),
            )?,
            idle: r.add_int(VarSpec::int("IdleWorkers", 0).desc("Workers on the IDLE queue"))?,
            busy: r.add_int(VarSpec::int("BusyWorkers", 0).desc("Workers on the BUSY queue"))?,
            events: r
                .add_int(VarSpec::int("Events", 0).desc("Events remembered now (listevents)"))?,
            num_events: r.add_int(
                VarSpec::int("NumEvents", 100).desc("Events remembered at most (config events N)"),
            )?,
            num_buckets: r.add_int(
                VarSpec::int("NumBuckets", 6).desc("Buckets of the transaction histogram"),
            )?,
            bucket_secs: r.add_int(
                VarSpec::int("BucketSecs", 10)
                    .unit("s")
                    .desc("Seconds covered by each bucket"),
            )?,
            peak_bucket: r
                .add_int(VarSpec::int("PeakBucket", 0).desc(
                    "Most transactions completed in one bucket since the histogram started",
                ))?,
            buckets: r.add_str(
                VarSpec::string("Buckets", 1024, "0  0  0  0  0  0")
                    .desc("Transactions (and sends) completed in each bucket, newest first"),
            )?,
            send_timeout_ms: r.add_int(
                VarSpec::int("send_timeout_ms", 5000)
                    .rw()
                    .unit("ms")
                    .range(Some(10.0), Some(600_000.0))
                    .desc("How long `send` waits for each worker's answer"),
            )?,
            log_max: r.add_int(
                VarSpec::int("log_max", 1 << 20)
                    .rw()
                    .unit("bytes")
                    .range(Some(4096.0), Some(1e12))
                    .desc("Size at which a worker's log file is rotated (one old file is kept)"),
            )?,
            workers: r.add_int(VarSpec::int("WorkerList", 0).desc("Workers configured"))?,
            restarts: r.add_int(
                VarSpec::int("restarts", 0)
                    .counter()
                    .desc("Worker restarts since isectd started (or reset)"),
            )?,
        })
    }
}

/// A service's row.
#[derive(Debug, Clone)]
pub struct ServiceVars {
    pub order: IntVar,
    pub workers: IntVar,
    pub xactions: IntVar,
}

impl ServiceVars {
    /// Publishes `service.NAME.*`.
    ///
    /// # Errors
    /// If the region refuses one.
    pub fn add(r: &VarRegion, name: &str, id: u32) -> Result<ServiceVars, AddError> {
        let p = |f: &str| format!("service.{name}.{f}");
        r.add_int(VarSpec::int(&p("id"), i64::from(id)).desc("The service's id"))?;
        Ok(ServiceVars {
            order: r.add_int(
                VarSpec::int(&p("order"), i64::from(id))
                    .rw()
                    .range(Some(-1e9), Some(1e9))
                    .desc(
                        "Place in `send all` (lowest first; reversed for end, pause, exit, stop)",
                    ),
            )?,
            workers: r.add_int(VarSpec::int(&p("workers"), 0).desc("Workers configured"))?,
            xactions: r.add_int(
                VarSpec::int(&p("xactions"), 0)
                    .counter()
                    .desc("Transactions (and sends) completed"),
            )?,
        })
    }
}

/// The restart and stop policy of one worker: R/W variables, copied by `clone`.
#[derive(Debug, Clone)]
pub struct PolicyVars {
    pub quick_ms: IntVar,
    pub backoff_ms: IntVar,
    pub backoff_max_ms: IntVar,
    pub fail_after: IntVar,
    pub grace_ms: IntVar,
    pub ready_after_ms: IntVar,
}

/// The policy's numbers (defaults, or what a clone copies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    pub quick_ms: i64,
    pub backoff_ms: i64,
    pub backoff_max_ms: i64,
    pub fail_after: i64,
    pub grace_ms: i64,
    pub ready_after_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            quick_ms: 1000,
            backoff_ms: 100,
            backoff_max_ms: 30_000,
            fail_after: 5,
            grace_ms: 5000,
            ready_after_ms: 0,
        }
    }
}

impl PolicyVars {
    /// The numbers now.
    pub fn get(&self) -> Policy {
        Policy {
            quick_ms: self.quick_ms.get(),
            backoff_ms: self.backoff_ms.get(),
            backoff_max_ms: self.backoff_max_ms.get(),
            fail_after: self.fail_after.get(),
            grace_ms: self.grace_ms.get(),
            ready_after_ms: self.ready_after_ms.get(),
        }
    }
}

/// `s` cut to at most `cap` bytes, on a character boundary.
pub fn cut(s: &str, cap: usize) -> &str {
    let mut n = s.len().min(cap);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

/// A worker's row.
#[derive(Debug, Clone)]
pub struct WorkerVars {
    pub state: IntVar,
    pub queue: IntVar,
    pub avail: IntVar,
    pub pid: IntVar,
    pub restarts: IntVar,
    pub exit: StrVar,
    pub stderr: StrVar,
    pub fwname: StrVar,
    pub status: StrVar,
    pub xactions: IntVar,
    pub avg_resp_us: IntVar,
    pub last_resp_us: IntVar,
    pub policy: PolicyVars,
}

fn policy_var(
    r: &VarRegion,
    name: String,
    v: i64,
    max: f64,
    desc: &str,
) -> Result<IntVar, AddError> {
    r.add_int(
        VarSpec::int(&name, v)
            .rw()
            .range(Some(0.0), Some(max))
            .desc(desc),
    )
}

impl WorkerVars {
    /// Publishes `worker.ID.*`.
    ///
    /// # Errors
    /// If the region refuses one.
    pub fn add(
        r: &VarRegion,
        id: u32,
        service: &str,
        host: &str,
        path: &str,
        policy: &Policy,
    ) -> Result<WorkerVars, AddError> {
        let p = |f: &str| format!("worker.{id}.{f}");
        let ms = |f: &str| {
            let mut s = VarSpec::int(&p(f), 0);
            s = s.unit("us");
            s
        };
        let policy = PolicyVars {
            quick_ms: policy_var(
                r,
                p("quick_ms"),
                policy.quick_ms,
                86_400_000.0,
                "A death sooner than this after start is a quick one: restarted after a backoff",
            )?,
            backoff_ms: policy_var(
                r,
                p("backoff_ms"),
                policy.backoff_ms,
                86_400_000.0,
                "Wait before restarting after the first quick death (doubles each time)",
            )?,
            backoff_max_ms: policy_var(
                r,
                p("backoff_max_ms"),
                policy.backoff_max_ms,
                86_400_000.0,
                "Longest wait between restarts",
            )?,
            fail_after: policy_var(
                r,
                p("fail_after"),
                policy.fail_after,
                1e9,
                "Quick deaths in a row after which the worker is FAILED (0: never)",
            )?,
            grace_ms: policy_var(
                r,
                p("grace_ms"),
                policy.grace_ms,
                3_600_000.0,
                "How long a stop waits after SIGTERM (or exit) before SIGKILL",
            )?,
            ready_after_ms: policy_var(
                r,
                p("ready_after_ms"),
                policy.ready_after_ms,
                86_400_000.0,
                "A program that never says READY=1 is ready after being up this long (0: wait for READY=1)",
            )?,
        };
        r.add_str(VarSpec::string(&p("service"), 32, cut(service, 32)).desc("Its service"))?;
        r.add_str(VarSpec::string(&p("host"), 64, cut(host, 64)).desc("Host as configured"))?;
        r.add_str(
            VarSpec::string(&p("path"), 256, cut(path, 256)).desc("The program (cut to 256 bytes)"),
        )?;
        Ok(WorkerVars {
            state: r.add_int(
                VarSpec::enumeration(&p("state"), &WSTATE_LABELS, WState::Stopped as i64)
                    .desc("STOPPED, STARTING, IDLE, BUSY, PAUSED, STOPPING, BACKOFF, FAILED, LOST"),
            )?,
            queue: r.add_int(
                VarSpec::enumeration(&p("queue"), &QUEUE_LABELS, 0).desc("LAZY, IDLE or BUSY"),
            )?,
            avail: r.add_int(
                VarSpec::int(&p("avail"), 0).desc("1 if it can take work now (on the IDLE queue)"),
            )?,
            pid: r
                .add_int(VarSpec::int(&p("pid"), 0).desc("Its process id on its host (0: none)"))?,
            restarts: r.add_int(
                VarSpec::int(&p("restarts"), 0)
                    .counter()
                    .desc("Times isectd restarted it after it died unasked"),
            )?,
            exit: r
                .add_str(VarSpec::string(&p("exit"), 64, "").desc("How its last process ended"))?,
            stderr: r.add_str(
                VarSpec::string(&p("stderr"), 512, "")
                    .desc("The tail of its log when it last died or failed"),
            )?,
            fwname: r.add_str(VarSpec::string(&p("fwname"), 32, "").desc(
                "Its framework process name, once recognised (its region in the runtime directory)",
            ))?,
            status: r.add_str(VarSpec::string(&p("status"), 128, "").desc(
                "The last STATUS= it sent on NOTIFY_SOCKET (a framework process: its run state)",
            ))?,
            xactions: r.add_int(
                VarSpec::int(&p("xactions"), 0)
                    .counter()
                    .desc("Transactions (and sends) completed"),
            )?,
            avg_resp_us: r.add_int(ms("avg_resp_us").desc("Average response time"))?,
            last_resp_us: r.add_int(
                ms("last_resp_us").desc("Last response time (while BUSY: the current one so far)"),
            )?,
            policy,
        })
    }

    /// Shows a state (and the queue and avail that follow from it).
    pub fn show(&self, s: WState) {
        self.state.set(s as i64);
        self.queue.set(s.queue() as i64);
        self.avail.set(i64::from(s == WState::Idle));
    }
}
