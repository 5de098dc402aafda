//! The servers measured, each on loopback ports of its own, each updating the same counters
//! at the same rate: cagateway (the counters in a region this process owns), the C IOC of
//! softioc, and caproto's Python IOC (the counters updated inside each IOC).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use shvars::region::{CreateOptions, IntVar, VarRegion, VarSpec};
use shvars::{ProcName, RuntimeDir};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// cagateway.
    Gateway,
    /// softioc: EPICS base's IOC and RSRV.
    SoftIoc,
    /// caproto's asyncio IOC.
    Caproto,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::SoftIoc => "softioc",
            Kind::Caproto => "caproto",
        }
    }
}

/// The C IOC's counters count in C: calc records adding 1 to themselves, processed by the
/// IOC's periodic scan thread (rates are EPICS' scan periods: 10 Hz at most).
const SOFTIOC_PY: &str = r#"
import sys
from softioc import softioc, builder, asyncio_dispatcher
n, scan = int(sys.argv[1]), sys.argv[3]
builder.SetDeviceName('BENCH')
recs = [builder.records.calc('C%d' % i, CALC='A+1', INPA='BENCH:C%d NPP' % i, SCAN=scan)
        for i in range(n)]
builder.LoadDatabase()
softioc.iocInit(asyncio_dispatcher.AsyncioDispatcher())
print('ready', flush=True)
softioc.non_interactive_ioc()
"#;

const CAPROTO_PY: &str = r#"
import sys, time
from caproto.server import PVGroup, pvproperty, run
n, rate = int(sys.argv[1]), float(sys.argv[2])
ns = {'c%d' % i: pvproperty(value=0, name='C%d' % i, dtype=int) for i in range(n)}
async def writer(self, instance, async_lib):
    v, nxt = 0, time.time()
    props = [getattr(self, 'c%d' % i) for i in range(n)]
    while True:
        v += 1
        for p in props:
            await p.write(v)
        nxt += 1.0 / rate
        await async_lib.library.sleep(max(0.0, nxt - time.time()))
ns['c0'].startup(writer)
Bench = type('Bench', (PVGroup,), ns)
ioc = Bench(prefix='BENCH:')
print('ready', flush=True)
run(ioc.pvdb, interfaces=['127.0.0.1'])
"#;

/// A running server.
pub struct Server {
    /// Its UDP search port (also its TCP port).
    pub port: u16,
    child: Child,
    /// PV names of the counters.
    pub names: Vec<String>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    _region: Option<Arc<VarRegion>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The workspace's target directory (the bench runs from target/release).
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn epics_env(c: &mut Command, port: u16) {
    c.env("EPICS_CAS_INTF_ADDR_LIST", "127.0.0.1")
        .env("EPICS_CAS_SERVER_PORT", port.to_string())
        .env("EPICS_CA_SERVER_PORT", port.to_string())
        .env("EPICS_CAS_BEACON_ADDR_LIST", "127.0.0.1")
        .env("EPICS_CAS_AUTO_BEACON_ADDR_LIST", "NO")
        .env("EPICS_CAS_BEACON_PORT", free_port().to_string())
        .env("EPICS_CA_ADDR_LIST", "127.0.0.1")
        .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
        // softioc also starts a pvAccess server: keep it on loopback too.
        .env("EPICS_PVAS_INTF_ADDR_LIST", "127.0.0.1")
        .env("EPICS_PVAS_SERVER_PORT", free_port().to_string())
        .env("EPICS_PVAS_BROADCAST_PORT", free_port().to_string())
        .env("EPICS_PVAS_BEACON_ADDR_LIST", "127.0.0.1")
        .env("EPICS_PVAS_AUTO_BEACON_ADDR_LIST", "NO")
        .env("EPICS_PVA_ADDR_LIST", "127.0.0.1")
        .env("EPICS_PVA_AUTO_ADDR_LIST", "NO")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
}

/// Counters in a region this process owns, updated `rate` times a second each (the first
/// `changing` of them).
fn counters(
    dir: &RuntimeDir,
    n: usize,
    changing: usize,
    rate: f64,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(Arc<VarRegion>, JoinHandle<()>)> {
    let name = ProcName::new("bench")?;
    let opts = CreateOptions {
        schema_cap: (n * 256).max(1 << 20),
        data_cap: (n * 32).max(1 << 20),
        ..CreateOptions::default()
    };
    let r = Arc::new(VarRegion::create_pending(dir, &name, &opts)?);
    let mut vars: Vec<IntVar> = Vec::with_capacity(n);
    for i in 0..n {
        vars.push(r.add_int(VarSpec::int(&format!("c{i}"), 0).desc("a benchmark counter"))?);
    }
    r.publish();
    let stop = stop.clone();
    let beat = r.clone();
    let w = std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            let period = Duration::from_secs_f64(1.0 / rate);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                for v in &vars[..changing.min(vars.len())] {
                    v.add(1);
                }
                beat.beat();
                // As the IOC's scan thread: a late round is not caught up with a burst.
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        })?;
    Ok((r, w))
}

/// Starts one server with `n` counters, `changing` of them updated at `rate`.
pub fn start(
    kind: Kind,
    dir: &RuntimeDir,
    n: usize,
    changing: usize,
    rate: f64,
) -> anyhow::Result<Server> {
    let port = free_port();
    let stop = Arc::new(AtomicBool::new(false));
    let target = target_dir();
    let python = target.join("pyenv/bin/python3");
    let (mut c, names, region, writer) = match kind {
        Kind::Gateway => {
            let (r, w) = counters(dir, n, changing, rate, &stop)?;
            let exe = target.join("release/cagateway");
            if !exe.exists() {
                bail!("{} is missing: cargo build --release", exe.display());
            }
            let mut c = Command::new(exe);
            c.args(["-n", "cabench-gw"]).env("SHVAR_DIR", dir.path());
            let names = (0..n).map(|i| format!("bench:c{i}")).collect();
            (c, names, Some(r), Some(w))
        }
        Kind::SoftIoc | Kind::Caproto => {
            if !python.exists() {
                bail!("{} is missing: run tests/prereqs.sh", python.display());
            }
            let mut c = Command::new(&python);
            let script = if kind == Kind::SoftIoc {
                SOFTIOC_PY
            } else {
                CAPROTO_PY
            };
            // EPICS' menu spelling of the scan period: ".1 second", "2 second".
            let period = 1.0 / rate;
            let scan = if period < 1.0 {
                format!("{}", period).trim_start_matches('0').to_owned() + " second"
            } else {
                format!("{period} second")
            };
            c.arg("-c")
                .arg(script)
                .arg(n.to_string())
                .arg(rate.to_string())
                .arg(scan);
            let names = (0..n).map(|i| format!("BENCH:C{i}")).collect();
            (c, names, None, None)
        }
    };
    epics_env(&mut c, port);
    let child = c
        .spawn()
        .with_context(|| format!("starting {}", kind.name()))?;
    let mut s = Server {
        port,
        child,
        names,
        stop,
        writer,
        _region: region,
    };
    let tcp =
        super::client::find(port, &s.names[0], Duration::from_secs(60)).with_context(|| {
            format!(
                "{} did not come up (for softioc: target/pyenv/bin/pip install softioc)",
                kind.name()
            )
        })?;
    if tcp != port {
        eprintln!("cabench: {} listens on TCP port {tcp}", kind.name());
    }
    s.port = tcp;
    Ok(s)
}

impl Server {
    /// The server's resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }
}
