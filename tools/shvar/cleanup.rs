//! `shvar cleanup`: removes what dead processes left behind. A region or a circular buffer is
//! removed only while we hold its exclusive lock, so a live owner's (or producer's) files are
//! never touched.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use shvars::region::RegionReader;
use shvars::RuntimeDir;

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

use crate::cli::CleanupArgs;

use nix::fcntl::OFlag;

/// A size for people: bytes, KiB, MiB or GiB with one decimal.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn pid_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e != nix::errno::Errno::ESRCH,
    }
}

fn remove(path: &Path, dry: bool, what: &str) -> bool {
    if dry {
        println!("would remove {} ({what})", path.display());
        true
    } else {
        match fs::remove_file(path) {
            Ok(()) => {
                println!("removed {} ({what})", path.display());
                true
            }
            Err(e) => {
                eprintln!("shvar: cannot remove {}: {e}", path.display());
                false
            }
        }
    }
}

/// What a file is, if it is a circular buffer of ours: (pid of its producer, size).
/// Opened without blocking and without following links: whatever is planted there is looked
/// at, never waited on.
fn buffer_file(path: &Path) -> Option<(File, u32, u64)> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut b = [0u8; 48];
    f.read_exact_at(&mut b, 0).ok()?;
    if u64::from_le_bytes(b[0..8].try_into().ok()?) != shvars::circ::MAGIC {
        return None;
    }
    let pid = u32::from_le_bytes(b[40..44].try_into().ok()?);
    Some((f, pid, meta.len()))
}

/// Still the file at `path` (not replaced by a new producer meanwhile).
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

pub fn run(dir: &RuntimeDir, a: &CleanupArgs) -> anyhow::Result<ExitCode> {
    let entries = match fs::read_dir(dir.path()) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("nothing to clean: {dir} does not exist");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).with_context(|| format!("reading {dir}")),
    };
    let mut kept = 0;
    let (mut buffers, mut freed) = (0u64, 0u64);
    for e in entries.filter_map(Result::ok) {
        let fname = e.file_name();
        let Some(f) = fname.to_str() else { continue };
        let path = e.path();
        if let Some(stem) = f.strip_suffix(".shv") {
            // Never File::open: a FIFO planted under a region's name would block forever.
            let file = match shvars::open::open_regular(&path, false) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // Not a region at all: ours (or anyone's, for root) goes; another user's
                    // is named and kept.
                    match fs::symlink_metadata(&path) {
                        Ok(m) if !m.is_dir() && (m.uid() == euid() || euid() == 0) => {
                            let what = format!(
                                "{} in place of a region",
                                shvars::open::kind_text(m.file_type())
                            );
                            remove(&path, a.dry_run, &what);
                        }
                        _ => println!("kept {}: {e}", path.display()),
                    }
                    continue;
                }
                Err(_) => continue,
            };
            if file.try_lock().is_err() {
                kept += 1;
                continue; // a live owner holds it
            }
            let what = match RegionReader::open_path(&path) {
                Ok(r) => format!("region of {stem}, pid {} is gone", r.info().pid),
                Err(_) => format!("unreadable region of {stem}"),
            };
            let ctl = dir.path().join(format!("{stem}.ctl"));
            if ctl.exists() {
                remove(&ctl, a.dry_run, &format!("control FIFO of dead {stem}"));
            }
            // Its sockets (a new process of the name would replace them anyway): only sockets,
            // and only ours (root: anyone's).
            for (suffix, what) in [(".sock", "control socket"), (".xact", "transaction socket")] {
                use std::os::unix::fs::FileTypeExt;
                let p = dir.path().join(format!("{stem}{suffix}"));
                if fs::symlink_metadata(&p)
                    .is_ok_and(|m| m.file_type().is_socket() && (m.uid() == euid() || euid() == 0))
                {
                    remove(&p, a.dry_run, &format!("{what} of dead {stem}"));
                }
            }
            remove(&path, a.dry_run, &what);
            drop(file);
        } else if let Some(rest) = f.strip_suffix(".reply").or_else(|| f.strip_suffix(".tmp")) {
            // NAME.PID.N.reply and NAME.shv.PID.tmp carry the pid of their maker.
            let pid = rest
                .split('.')
                .filter_map(|p| p.parse::<i32>().ok())
                .find(|p| *p > 0);
            if let Some(pid) = pid {
                if !pid_alive(pid) {
                    remove(&path, a.dry_run, &format!("left by dead pid {pid}"));
                }
            }
        } else if let Some((file, pid, len)) = buffer_file(&path) {
            // A producer holds its buffer's exclusive lock for its lifetime: if we get it, the
            // producer is dead (whatever became of its pid).
            if file.try_lock().is_err() {
                kept += 1;
                continue;
            }
            if !same_file(&file, &path) {
                continue; // a new producer took the name over meanwhile
            }
            let what = format!(
                "circular buffer of {}, its producer pid {pid} is gone",
                human_bytes(len)
            );
            if remove(&path, a.dry_run, &what) {
                buffers += 1;
                freed += len;
            }
            drop(file);
        }
    }
    if buffers > 0 {
        println!(
            "{} {buffers} dead producer{}'s buffer{}: {} freed",
            if a.dry_run { "would remove" } else { "removed" },
            if buffers == 1 { "" } else { "s" },
            if buffers == 1 { "" } else { "s" },
            human_bytes(freed)
        );
    }
    if kept > 0 {
        println!(
            "kept {kept} live process{}",
            if kept == 1 { "" } else { "es" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
