//! What `/proc` tells a supervisor about a process: its start time (to tell a pid that was
//! reused from the process it was), and the framework region it holds (to recognise a
//! framework process without being told).

use std::path::Path;
use std::time::Duration;

use shvars::{ProcName, RuntimeDir};

/// The start time of process `pid` in clock ticks since boot (field 22 of `/proc/PID/stat`),
/// or `None` if there is no such process, or only its zombie (dead, not reaped yet).
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces and parentheses:
    // the fields after it start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // rest starts with field 3 (state); field 22 is the 20th from there.
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// How long ago a process that started at `ticks` (clock ticks since boot) started.
pub fn age(ticks: u64) -> Duration {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|h| *h > 0)
        .unwrap_or(100) as f64;
    let up = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    Duration::from_secs_f64((up - ticks as f64 / hz).max(0.0))
}

/// Whether `pid` is still the process that started at `ticks`.
pub fn same_process(pid: i32, ticks: u64) -> bool {
    pid > 0 && start_ticks(pid) == Some(ticks)
}

/// The framework process name of `pid`, if it holds the region file `DIR/NAME.shv` open (as
/// every framework process does for its lifetime) and that region says `pid` owns it.
pub fn framework_name(dir: &RuntimeDir, pid: i32) -> Option<ProcName> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let want = dir.path();
    for e in fds.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if target.parent() != Some(want) && !same_dir(target.parent(), want) {
            continue;
        }
        let Some(file) = target.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(stem) = region_stem(file) else {
            continue;
        };
        let Ok(name) = ProcName::new(stem) else {
            continue;
        };
        let Ok(r) = shvars::region::RegionReader::open(dir, &name) else {
            continue;
        };
        if r.info().pid == pid as u32 && r.is_alive() {
            return Some(name);
        }
    }
    None
}

/// The process name in the name of a region file as `/proc/PID/fd` shows it: `NAME.shv`, or the
/// temporary name it was made under (`NAME.shv.PID.tmp`, shown ` (deleted)` once renamed).
fn region_stem(file: &str) -> Option<&str> {
    let file = file.strip_suffix(" (deleted)").unwrap_or(file);
    if let Some(stem) = file.strip_suffix(shvars::dir::REGION_SUFFIX) {
        return Some(stem);
    }
    let rest = file.strip_suffix(".tmp")?;
    let (head, pid) = rest.rsplit_once('.')?;
    if pid.is_empty() || !pid.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    head.strip_suffix(shvars::dir::REGION_SUFFIX)
}

fn same_dir(a: Option<&Path>, b: &Path) -> bool {
    match (a.and_then(|a| a.canonicalize().ok()), b.canonicalize().ok()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_time_tells_this_process() {
        let me = std::process::id() as i32;
        let t = super::start_ticks(me).unwrap();
        assert!(super::same_process(me, t));
        assert!(!super::same_process(me, t + 1));
        assert_eq!(super::start_ticks(i32::MAX), None);
    }

    #[test]
    fn region_file_names() {
        assert_eq!(super::region_stem("t1.shv"), Some("t1"));
        assert_eq!(super::region_stem("t1.shv.4242.tmp (deleted)"), Some("t1"));
        assert_eq!(super::region_stem("t1.ctl"), None);
        assert_eq!(super::region_stem("t1.shv.x.tmp"), None);
    }
}
