//! Measuring: a process's CPU time from /proc, CPU pinning, medians and percentiles.

use std::process::Command;

/// User + system CPU seconds of process `pid` (all its threads) so far.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may contain blanks).
    let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks / hz
}

/// Pins every thread of process `pid` to CPU `cpu` (with taskset).
pub fn pin(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let st = Command::new("taskset")
        .args(["-a", "-c", "-p", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(st.success(), "taskset failed on pid {pid}");
    Ok(())
}

/// The `q` quantile (0..=1) of `v` (nearest rank).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

/// The median of `v`.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// One measurement: probes completed per wall second, the CPU share used, probe latencies.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Probes per second.
    pub rate: f64,
    /// CPU seconds per wall second (1.0 = one core).
    pub cpu: f64,
    /// Latencies of probes seen, ms.
    pub latency_ms: Vec<f64>,
}

impl Sample {
    /// Probes per CPU second.
    pub fn per_cpu(&self) -> f64 {
        if self.cpu > 0.0 {
            self.rate / self.cpu
        } else {
            f64::NAN
        }
    }
}
