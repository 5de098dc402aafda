//! A lean entry point for a command-line tool whose cold start is what users time: `shvar get`
//! in a shell loop. [`lean_main!`](crate::lean_main) defines the C `main` itself, so Rust's
//! runtime set-up (`lang_start`) is skipped: it finds the main thread's stack by parsing
//! `/proc/self/maps` (`pthread_getattr_np`), maps an alternate signal stack, installs SIGSEGV
//! and SIGBUS handlers and ignores SIGPIPE — 19 system calls and 5 page faults of about 50,
//! 15 % of a static program's start on the machines we measured.
//!
//! What the tool keeps, done here as `lang_start` does it: descriptors 0, 1 and 2 are open
//! (`/dev/null` in place of a closed one, so a file the tool opens can never become its
//! standard output), standard output is flushed at the end, a panic exits with status 101
//! after its message. What it loses: a stack overflow is a plain SIGSEGV instead of a "has
//! overflowed its stack" message, and SIGPIPE keeps the action it inherited (a tool that wants
//! the default calls [`default_sigpipe`](crate::sys::default_sigpipe), as `shvar` does).
//!
//! ```ignore
//! #![no_main]
//! shvars::lean_main!(real_main);
//! fn real_main() -> std::process::ExitCode { std::process::ExitCode::SUCCESS }
//! ```

use std::process::ExitCode;

/// Defines the C `main` of a `#![no_main]` binary that runs `$body` (a `fn() -> ExitCode`)
/// through [`run`].
#[macro_export]
macro_rules! lean_main {
    ($body:path) => {
        /// The program's C entry point (see `shvars::lean`).
        #[no_mangle]
        pub extern "C" fn main(_argc: i32, _argv: *const *const ::std::ffi::c_char) -> i32 {
            $crate::lean::run($body)
        }
    };
}

/// Runs a program's body with what it needs of Rust's runtime set-up; its exit status.
pub fn run(body: fn() -> ExitCode) -> i32 {
    std_fds_open();
    let code = match std::panic::catch_unwind(body) {
        Ok(code) => code,
        // The panic hook has printed the message; 101 is Rust's status for a panic.
        Err(_) => ExitCode::from(101),
    };
    let _ = std::io::Write::flush(&mut std::io::stdout());
    status_of(code)
}

/// The number in an [`ExitCode`] (std has no stable way to read it back).
fn status_of(code: ExitCode) -> i32 {
    (0..=u8::MAX)
        .find(|k| ExitCode::from(*k) == code)
        .map_or(1, i32::from)
}

/// Opens `/dev/null` on any of descriptors 0, 1, 2 that is closed.
fn std_fds_open() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether `fd` is open; it touches no memory.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
        if closed {
            // The lowest free descriptor is `fd` itself (the lower ones are open by now). It
            // is left open on purpose for the life of the process.
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null");
            if let Ok(f) = f {
                std::mem::forget(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_reads_back_as_its_number() {
        assert_eq!(status_of(ExitCode::SUCCESS), 0);
        assert_eq!(status_of(ExitCode::FAILURE), 1);
        for k in 0..=u8::MAX {
            assert_eq!(status_of(ExitCode::from(k)), i32::from(k));
        }
    }
}
