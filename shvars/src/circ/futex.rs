//! Sleeping on a 32-bit word in shared memory (Linux futex, the process-shared variants).
//!
//! The private variants (`FUTEX_*_PRIVATE`) only work between threads of one process; a buffer's
//! readers and producer are different processes, so only `FUTEX_WAIT`/`FUTEX_WAKE` are used.
//! This module only sleeps and wakes: deciding *when* to (the waiter counts that keep the
//! producer's fast path free of system calls) belongs to the writer and the readers.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, for at most `timeout`. Returns on a wake-up, a timeout, a
/// signal, or at once if the word already differs: the caller always re-checks its condition.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, 4-aligned 32-bit atomic for the duration of the call and `ts` is
    // a valid timespec on our stack; FUTEX_WAIT only reads them. The return value is ignored on
    // purpose: EAGAIN (value changed), ETIMEDOUT and EINTR all mean "re-check".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every process sleeping on `word`.
pub(crate) fn wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a live, 4-aligned 32-bit atomic; FUTEX_WAKE does not access memory
    // through the pointer, it only uses the address as the wait-queue key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    #[test]
    fn wait_returns_when_value_differs_and_on_wake() {
        let w = Arc::new(AtomicU32::new(0));
        // value differs: returns at once
        wait(&w, 1, Duration::from_secs(10));
        let w2 = Arc::clone(&w);
        let t = std::thread::spawn(move || {
            while w2.load(Ordering::Acquire) == 0 {
                wait(&w2, 0, Duration::from_secs(10));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        w.store(1, Ordering::Release);
        wake_all(&w);
        t.join().unwrap();
    }
}
