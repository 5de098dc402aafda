//! The owner's control FIFO (`NAME.ctl`) and control socket (`NAME.sock`) as files: made at
//! start-up with the right mode, in place of a dead owner's leftovers (never of another user's
//! file: that is refused with its owner named), and removed at exit.
//!
//! The FIFO takes fire-and-forget commands (`echo pause > NAME.ctl`); who may write it is decided
//! by its mode (0600, or 0620 and the group with `--group`). Commands with an answer go through
//! the socket, where the owner checks each caller's uid.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;

use crate::support::files::{euid, kind_text, remove_leftover, NONBLOCK_NOFOLLOW};

/// The owner's control FIFO. Dropping it removes the file.
#[derive(Debug)]
pub struct ControlFifo {
    path: PathBuf,
}

fn ctx<'a>(path: &'a Path, what: &str) -> impl Fn(io::Error) -> io::Error + 'a {
    let what = what.to_owned();
    move |e: io::Error| io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

impl ControlFifo {
    /// Creates `NAME.ctl` (replacing a leftover of ours: the caller owns the region, so any FIFO
    /// of that name is stale) and opens it read-write and non-blocking, so writers coming and
    /// going never cause an end of file and reading never blocks. What it had to remove of
    /// another user (as root) is added to `notes`, for the log.
    ///
    /// # Errors
    /// If the FIFO cannot be made or opened, or another user's file is in the way.
    pub fn create(
        path: &Path,
        group_writable: bool,
        notes: &mut Vec<String>,
    ) -> io::Result<(ControlFifo, File)> {
        let mode = if group_writable { 0o620 } else { 0o600 };
        notes.extend(remove_leftover(path, "control FIFO")?);
        let made = nix::unistd::mkfifo(path, Mode::from_bits_truncate(mode));
        if made == Err(nix::errno::Errno::EEXIST) {
            // Someone was quicker: if it is not ours, say whose it is.
            notes.extend(remove_leftover(path, "control FIFO")?);
            nix::unistd::mkfifo(path, Mode::from_bits_truncate(mode))
                .map_err(|e| ctx(path, "control FIFO")(e.into()))?;
        } else {
            made.map_err(|e| ctx(path, "control FIFO")(e.into()))?;
        }
        let guard = ControlFifo {
            path: path.to_owned(),
        };
        // The umask may have removed the group bit.
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(ctx(path, "control FIFO"))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(NONBLOCK_NOFOLLOW)
            .open(path)
            .map_err(ctx(path, "control FIFO"))?;
        let m = file.metadata()?;
        if !m.file_type().is_fifo() || m.uid() != euid() {
            return Err(io::Error::other(format!(
                "control FIFO {} was replaced by {} of uid {} while it was made",
                path.display(),
                kind_text(m.file_type()),
                m.uid()
            )));
        }
        Ok((guard, file))
    }

    /// The FIFO's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlFifo {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The owner's control socket file. Dropping it removes the file.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `NAME.sock` (replacing a leftover of ours), mode 0666: any local user may connect,
    /// and the owner decides per caller what it may run. Returns the non-blocking listener.
    ///
    /// # Errors
    /// If the socket cannot be made, or another user's file is in the way.
    pub fn bind(
        path: &Path,
        notes: &mut Vec<String>,
    ) -> io::Result<(ControlSocket, std::os::unix::net::UnixListener)> {
        notes.extend(remove_leftover(path, "control socket")?);
        let l =
            std::os::unix::net::UnixListener::bind(path).map_err(ctx(path, "control socket"))?;
        let guard = ControlSocket {
            path: path.to_owned(),
        };
        fs::set_permissions(path, fs::Permissions::from_mode(0o666))
            .map_err(ctx(path, "control socket"))?;
        l.set_nonblocking(true)?;
        Ok((guard, l))
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
