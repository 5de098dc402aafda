//! Telling a live owner from a squatter. A region's owner holds an exclusive `flock` on its
//! file for its lifetime; but `flock` needs no write permission, so any local user who can read
//! the file (mode 0644) can hold a lock on it too, and make a dead process's region look alive.
//! The lock alone is therefore never taken as proof: the owner recorded in the header must also
//! be a running process that was started before the region was made.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

/// Whether `pid` runs (a cheap test, for readers, which ask often; the owner's restart, which
/// must not be fooled by a reused pid, uses [`owner_pid_alive`]).
pub(crate) fn pid_runs(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Whether `pid` runs and was started no later than `created_ns` (ns since the epoch) plus
/// a second of slack: the process that made a region at that time, not a later one that was
/// given the same pid.
pub(crate) fn owner_pid_alive(pid: u32, created_ns: u64) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 22 (starttime, clock ticks after boot) counts from the one after the command,
    // which is in parentheses and may hold anything.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let Some(start_ticks) = rest
        .split_whitespace()
        .nth(19)
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return false;
    };
    let Some(boot_s) = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|t| t.trim().parse::<u64>().ok())
    }) else {
        return true; // cannot tell: believe the pid
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    let started_ns = boot_s * 1_000_000_000 + start_ticks * (1_000_000_000 / hz);
    started_ns <= created_ns.saturating_add(2_000_000_000)
}

/// The processes that hold a lock on `file`, as `pid N (uid U, comm)`, from `/proc/locks`.
pub(crate) fn lock_holders(file: &File) -> Vec<String> {
    let Ok(m) = file.metadata() else {
        return Vec::new();
    };
    let (major, minor, ino) = (libc::major(m.dev()), libc::minor(m.dev()), m.ino());
    let want = format!("{major:02x}:{minor:02x}:{ino}");
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in locks.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF" (blocked waiters carry "->").
        if f.len() < 6 || f[1] == "->" || f[5] != want {
            continue;
        }
        let Ok(pid) = f[4].parse::<u32>() else {
            continue;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|u| u.split_whitespace().next())
            .unwrap_or("?");
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let s = format!("pid {pid} (uid {uid}, {})", comm.trim());
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}
