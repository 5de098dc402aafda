//! CPU time from `/proc`: of a process or thread (`/proc/PID/stat`, `/proc/self/task/TID/stat`)
//! and of the whole machine (`/proc/stat`).

use anyhow::Context;

fn hz() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
}

/// The CPU time (user + system) of the process or thread whose stat file is `path`, in seconds.
pub fn cpu_seconds(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path)
        .with_context(|| format!("reading {path} (the process or thread is gone?)"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("unexpected format of {path}"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let (ut, st): (u64, u64) = (
        f.get(11).context("no utime")?.parse()?,
        f.get(12).context("no stime")?.parse()?,
    );
    Ok((ut + st) as f64 / hz())
}

/// The whole machine's CPU time so far, all CPUs together, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Machine {
    /// Idle and waiting for I/O.
    pub idle: f64,
    /// Serving software interrupts (on loopback, much of the TCP receive path). It may be in
    /// the interrupted task's utime+stime as well: on the kernel measured (6.18) it was, so it
    /// is not to be added to the tasks' times.
    pub softirq: f64,
    /// Everything.
    pub total: f64,
}

impl Machine {
    pub fn now() -> anyhow::Result<Machine> {
        let s = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let line = s
            .lines()
            .find(|l| l.starts_with("cpu "))
            .context("no cpu line in /proc/stat")?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let at = |i: usize| v.get(i).copied().unwrap_or(0) as f64 / hz();
        Ok(Machine {
            idle: at(3) + at(4),
            softirq: at(6),
            total: (0..8).map(at).sum(),
        })
    }

    pub fn since(self, earlier: Machine) -> Machine {
        Machine {
            idle: self.idle - earlier.idle,
            softirq: self.softirq - earlier.softirq,
            total: self.total - earlier.total,
        }
    }
}
