//! `shvar cleanup`: removes what dead processes left behind. A region is removed only while we
//! hold its exclusive lock, so a live owner's files are never touched.

use std::fs;
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

fn pid_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e != nix::errno::Errno::ESRCH,
    }
}

fn remove(path: &Path, dry: bool, what: &str) {
    if dry {
        println!("would remove {} ({what})", path.display());
    } else {
        match fs::remove_file(path) {
            Ok(()) => println!("removed {} ({what})", path.display()),
            Err(e) => eprintln!("shvar: cannot remove {}: {e}", path.display()),
        }
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
                        Ok(m) if !m.is_dir() && (m.uid() == euid() || euid() == 0) => remove(
                            &path,
                            a.dry_run,
                            &format!(
                                "{} in place of a region",
                                shvars::open::kind_text(m.file_type())
                            ),
                        ),
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
        }
    }
    if kept > 0 {
        println!(
            "kept {kept} live process{}",
            if kept == 1 { "" } else { "es" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
