//! Opening files in the runtime directory, which may be shared (mode 1777): anything there may
//! have been planted by another local user. [`open_regular`] never blocks (a FIFO at a region's
//! path would otherwise hang `open(2)` forever), never follows a symbolic link, and refuses
//! anything but a regular file, with a message that says what the file is and whose.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// What kind of file `t` is, for messages.
pub fn kind_text(t: std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

/// The error for a file at `path` that is not a regular file: `ErrorKind::InvalidData`, with
/// what it is and its owner's uid.
fn not_regular(path: &Path, kind: &str, uid: Option<u32>) -> io::Error {
    let whose = uid.map(|u| format!(" of uid {u}")).unwrap_or_default();
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is {kind}{whose}, not a regular file: refusing to open it (planted by someone? \
             its owner or root may remove it)",
            path.display()
        ),
    )
}

/// Opens the regular file at `path` for reading (and writing, with `write`), without blocking
/// and without following a symbolic link in the last component; the descriptor is made
/// blocking again before it is returned.
///
/// # Errors
/// `NotFound` as `open(2)` gives it; `InvalidData` for a FIFO, socket, device, directory or
/// symbolic link (the message names the kind and the owner); other I/O errors as they come.
pub fn open_regular(path: &Path, write: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            // ELOOP (O_NOFOLLOW on a link), ENXIO (a socket, or a FIFO opened for writing with
            // no reader), EACCES on someone else's FIFO...: say what is there, when it is not
            // a regular file.
            if e.kind() == io::ErrorKind::NotFound {
                return e;
            }
            match std::fs::symlink_metadata(path) {
                Ok(m) if !m.file_type().is_file() => {
                    not_regular(path, kind_text(m.file_type()), Some(m.uid()))
                }
                _ => e,
            }
        })?;
    let m = f.metadata()?;
    if !m.file_type().is_file() {
        return Err(not_regular(path, kind_text(m.file_type()), Some(m.uid())));
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_fifos_links_and_directories_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("f.shv");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        for write in [false, true] {
            let e = open_regular(&fifo, write).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
            assert!(e.to_string().contains("is a FIFO of uid"), "{e}");
        }
        let real = d.path().join("real");
        std::fs::write(&real, "x").unwrap();
        let link = d.path().join("l.shv");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = open_regular(&link, false).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        let e = open_regular(d.path(), false).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert_eq!(
            open_regular(&d.path().join("none"), false)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        let f = open_regular(&real, true).unwrap();
        let fl = nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            nix::fcntl::FcntlArg::F_GETFL,
        )
        .unwrap();
        assert_eq!(fl & libc::O_NONBLOCK, 0, "made blocking again");
    }
}
