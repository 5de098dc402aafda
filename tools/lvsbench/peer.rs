//! blackbox_exporter, the peer: started on loopback with modules matching lvsmon's checks,
//! pinned to CPU 0, and driven as fast as it goes by many concurrent `/probe` requests over
//! keep-alive connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::measure::{cpu_secs, pin, Sample};
use crate::servers::Kind;

const CONFIG: &str = r#"modules:
  http_2xx:
    prober: http
    timeout: 2s
    http:
      preferred_ip_protocol: ip4
  tcp_connect:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
"#;

/// A running blackbox_exporter.
pub struct Blackbox {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Blackbox {
    /// Starts `exe` on a free loopback port, pinned to CPU `cpu`.
    pub fn start(exe: &str, cpu: usize) -> anyhow::Result<Blackbox> {
        let dir = tempfile::Builder::new().prefix("lvsbench-bb").tempdir()?;
        let cfg = dir.path().join("blackbox.yml");
        std::fs::write(&cfg, CONFIG)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(exe)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {exe} (apt-get install prometheus-blackbox-exporter)")
            })?;
        pin(child.id(), cpu)?;
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t0.elapsed() > Duration::from_secs(20) {
                bail!("{exe} did not listen on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Blackbox {
            child,
            port,
            _dir: dir,
        })
    }

    /// Drives it with `conc` clients for `secs`: probes of `kind` over `addrs`.
    pub fn measure(
        &self,
        kind: Kind,
        addrs: &[SocketAddr],
        conc: usize,
        secs: f64,
    ) -> anyhow::Result<Sample> {
        let stop = Arc::new(AtomicBool::new(false));
        let (c0, t0) = (cpu_secs(self.child.id()), Instant::now());
        let mut threads = Vec::new();
        for k in 0..conc {
            let (stop, port) = (stop.clone(), self.port);
            let addrs = addrs.to_vec();
            threads.push(std::thread::spawn(move || {
                client(port, kind, &addrs, k, &stop)
            }));
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        let dt = t0.elapsed().as_secs_f64();
        let cpu = (cpu_secs(self.child.id()) - c0) / dt;
        let mut n = 0u64;
        let mut failed = 0u64;
        let mut latency_ms = Vec::new();
        for t in threads {
            let r = t
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
            n += r.0;
            failed += r.1;
            latency_ms.extend(r.2);
        }
        if failed > 0 {
            eprintln!("lvsbench: blackbox_exporter: {failed} of {n} probes failed");
        }
        Ok(Sample {
            rate: n as f64 / dt,
            cpu,
            latency_ms,
        })
    }
}

/// One client: requests back to back on one keep-alive connection. Returns probes, failures
/// and latencies (ms).
fn client(
    port: u16,
    kind: Kind,
    addrs: &[SocketAddr],
    k: usize,
    stop: &AtomicBool,
) -> anyhow::Result<(u64, u64, Vec<f64>)> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let (mut n, mut failed, mut lat) = (0u64, 0u64, Vec::new());
    let mut i = k;
    let mut line = String::new();
    let mut body = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let a = addrs[i % addrs.len()];
        i += 1;
        let (module, target) = match kind {
            Kind::Tcp => ("tcp_connect", a.to_string()),
            Kind::Http => ("http_2xx", format!("http://{a}/health")),
        };
        let t = Instant::now();
        write!(
            w,
            "GET /probe?module={module}&target={target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )?;
        let mut len = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                bail!("blackbox_exporter closed the connection");
            }
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if l.starts_with("transfer-encoding:") && l.contains("chunked") {
                chunked = true;
            }
        }
        body.clear();
        if chunked {
            // Bigger answers (the HTTP prober's) come in chunks.
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)?;
                let at = body.len();
                body.resize(at + n, 0);
                r.read_exact(&mut body[at..])?;
                line.clear();
                r.read_line(&mut line)?;
                if n == 0 {
                    break;
                }
            }
        } else {
            body.resize(len, 0);
            r.read_exact(&mut body)?;
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        n += 1;
        if !body.windows(16).any(|w| w == b"probe_success 1\n") {
            failed += 1;
        }
    }
    Ok((n, failed, lat))
}

impl Drop for Blackbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
