//! Opening and checking the files a process keeps beside its region in the shared runtime
//! directory: control FIFO, control socket, log file. The directory may be shared (mode 1777,
//! like /tmp), so anything that can be planted there is assumed planted by another local user:
//! nothing here follows a symbolic link, blocks on open, or accepts a file of the wrong kind or
//! of the wrong owner.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

/// `O_NOFOLLOW | O_CLOEXEC`.
pub const NOFOLLOW: i32 = OFlag::O_NOFOLLOW.bits() | OFlag::O_CLOEXEC.bits();
/// `O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC`.
pub const NONBLOCK_NOFOLLOW: i32 = NOFOLLOW | OFlag::O_NONBLOCK.bits();

/// The effective uid of this process.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A user name for messages: `name (uid N)`, or `uid N`.
pub fn user_text(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// What kind of file a file type is, for messages (one wording for every tool).
pub use shvars::open::kind_text;

fn refused(path: &Path, why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: {why}", path.display()),
    )
}

/// Opens (or creates, mode 0640) a log file for appending without following a link, and checks
/// that it is a regular file of ours with a single name (a hard link to another file would make us
/// write into it).
///
/// # Errors
/// The file cannot be opened, or is not what a log file of ours must be (the message says what
/// it is and what to do).
pub fn open_log(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(NONBLOCK_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == nix::errno::Errno::ELOOP as i32 => refused(
                path,
                "is a symbolic link: refusing to write a log through it (remove it, or pass --log)"
                    .to_owned(),
            ),
            Some(code) if code == nix::errno::Errno::ENXIO as i32 => refused(
                path,
                "is a FIFO or a device, not a regular file: refusing it as a log".to_owned(),
            ),
            _ => io::Error::new(e.kind(), format!("log file {}: {e}", path.display())),
        })?;
    let m = f.metadata()?;
    if !m.file_type().is_file() {
        return Err(refused(
            path,
            format!(
                "is {}, not a regular file: refusing it as a log",
                kind_text(m.file_type())
            ),
        ));
    }
    if m.uid() != euid() {
        return Err(refused(
            path,
            format!(
                "belongs to {}, not to us ({}): refusing to write into another user's file (remove it, or pass --log)",
                user_text(m.uid()),
                user_text(euid())
            ),
        ));
    }
    if m.nlink() != 1 {
        return Err(refused(
            path,
            format!(
                "has {} names (hard links): refusing to write into a file that is also elsewhere",
                m.nlink()
            ),
        ));
    }
    // O_NONBLOCK only kept the open from blocking (on a planted FIFO); writes to a regular
    // file never block anyway, but clear it so the descriptor is an ordinary one.
    {
        use std::os::fd::AsRawFd;
        nix::fcntl::fcntl(
            f.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_APPEND),
        )?;
    }
    Ok(f)
}

/// Removes a leftover runtime file of ours at `path` (a dead owner's FIFO or socket), refusing
/// a directory and another user's file with an error that names its owner. Root removes another
/// user's file (as only it can, in a sticky directory): the returned line says whose it was.
///
/// # Errors
/// The file is a directory, belongs to someone else (a squatter, in a shared directory), or
/// cannot be removed.
pub fn remove_leftover(path: &Path, what: &str) -> io::Result<Option<String>> {
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("{what} {}: {e}", path.display()),
            ))
        }
    };
    if m.is_dir() {
        return Err(refused(
            path,
            format!("a directory is in the way of the {what}"),
        ));
    }
    if m.uid() != euid() && euid() != 0 {
        return Err(refused(
            path,
            format!(
                "{} is in the way of the {what}: it belongs to {}, not to us ({}); another user has taken the name. Remove it as root, or use another name (-n) or runtime directory (--dir)",
                kind_text(m.file_type()),
                user_text(m.uid()),
                user_text(euid())
            ),
        ));
    }
    fs::remove_file(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot remove the old {what} {}: {e}", path.display()),
        )
    })?;
    if m.uid() != euid() {
        return Ok(Some(format!(
            "removed {} of {} that was in the way of the {what}",
            path.display(),
            user_text(m.uid())
        )));
    }
    Ok(None)
}

/// Checks that `path` (not followed if a link) is a socket owned by `owner`.
///
/// # Errors
/// A message saying what the file is instead, or whose it is.
pub fn check_socket(path: &Path, owner: u32) -> Result<(), String> {
    let m = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !m.file_type().is_socket() {
        return Err(format!(
            "{} is {}, not a socket: refusing to use it (planted by someone? `shvar cleanup` removes a dead process's files)",
            path.display(),
            kind_text(m.file_type())
        ));
    }
    if m.uid() != owner {
        return Err(format!(
            "{} belongs to {}, but the process's region belongs to {}: refusing to talk to it (planted by another user?)",
            path.display(),
            user_text(m.uid()),
            user_text(owner)
        ));
    }
    Ok(())
}

/// Checks an opened control FIFO: a FIFO owned by `owner`.
///
/// # Errors
/// A message saying what the file is instead, or whose it is.
pub fn check_fifo(path: &Path, f: &File, owner: u32) -> Result<(), String> {
    let m = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !m.file_type().is_fifo() {
        return Err(format!(
            "{} is {}, not a FIFO: refusing to write commands into it (remove it; `shvar cleanup` removes a dead process's files)",
            path.display(),
            kind_text(m.file_type())
        ));
    }
    if m.uid() != owner {
        return Err(format!(
            "{} belongs to {}, but the process's region belongs to {}: refusing to write into it (planted by another user?)",
            path.display(),
            user_text(m.uid()),
            user_text(owner)
        ));
    }
    Ok(())
}

/// Reads a file whose contents decide what a daemon allows or runs (cagateway's access file and
/// PV list, lvsmon's checks file with its commands, isectd's start-up script), refusing one that a local user other than
/// root and us could have changed: writable by every user, owned by someone else, or not a
/// regular file. A symbolic link is followed (an administrator may point at /etc); the file it
/// leads to is what is checked. Group-writable files are allowed (a group of administrators).
///
/// # Errors
/// Why it was not read, without the path (the caller names the file): "cannot read it: ..." or
/// "refusing it: ..." with what to do.
pub fn read_trusted_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits() | OFlag::O_CLOEXEC.bits())
        .open(path)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let m = f.metadata().map_err(|e| format!("cannot read it: {e}"))?;
    if !m.file_type().is_file() {
        return Err(format!(
            "refusing it: it is {}, not a regular file",
            kind_text(m.file_type())
        ));
    }
    if m.mode() & 0o002 != 0 {
        return Err(format!(
            "refusing it: every user may write it (mode {:04o}), so any local user could change \
             what it says; `chmod o-w {}`",
            m.mode() & 0o7777,
            path.display()
        ));
    }
    if m.uid() != 0 && m.uid() != euid() {
        return Err(format!(
            "refusing it: it belongs to {}, not to root or to us ({}), so that user could change \
             what it says; `chown root {}` (or to our user)",
            user_text(m.uid()),
            user_text(euid()),
            path.display()
        ));
    }
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| format!("cannot read it: {e}"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_files_that_another_user_could_change_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("ca.acf");
        fs::write(&f, b"ASG(DEFAULT) { RULE(1, READ) }").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            read_trusted_file(&f).unwrap(),
            "ASG(DEFAULT) { RULE(1, READ) }"
        );
        // Group-writable is an administrators' choice (a shared group): allowed.
        fs::set_permissions(&f, fs::Permissions::from_mode(0o664)).unwrap();
        read_trusted_file(&f).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).unwrap();
        let e = read_trusted_file(&f).unwrap_err();
        assert!(
            e.contains("every user may write it (mode 0666)") && e.contains("chmod o-w"),
            "{e}"
        );
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        // A link is followed; its target is what is checked.
        let link = d.path().join("link.acf");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        read_trusted_file(&link).unwrap();
        // A FIFO: refused at once, never waited on.
        let fifo = d.path().join("fifo.acf");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_trusted_file(&fifo).unwrap_err();
        assert!(e.contains("refusing it") && e.contains("a FIFO"), "{e}");
        let e = read_trusted_file(&d.path().join("none")).unwrap_err();
        assert!(e.contains("cannot read it"), "{e}");
        // Another user's file (only root can make one here).
        if euid() == 0 {
            nix::unistd::chown(&f, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let e = read_trusted_file(&f).unwrap_err();
            assert!(e.contains("belongs to") && e.contains("uid 65534"), "{e}");
        }
    }

    #[test]
    fn log_files_refuse_links_and_non_files() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("secret");
        fs::write(&target, b"keep").unwrap();
        let link = d.path().join("x.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_log(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let hard = d.path().join("h.log");
        fs::hard_link(&target, &hard).unwrap();
        let e = open_log(&hard).unwrap_err().to_string();
        assert!(e.contains("2 names"), "{e}");
        let fifo = d.path().join("f.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = open_log(&fifo).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        let ok = d.path().join("ok.log");
        open_log(&ok).unwrap();
        open_log(&ok).unwrap();
    }
}
