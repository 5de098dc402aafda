//! The measured worker: reports "PID MONOTONIC_NS" once, then sleeps until killed.

use nix::time::{clock_gettime, ClockId};

/// The monotonic clock in ns (the same clock in every process of the machine).
pub fn mono_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

pub fn run(addr: &str) -> ! {
    let t = mono_ns();
    // s6's readiness notification (its notification-fd): without it s6-supervise waits a
    // second before every restart, however long the service was up.
    if let Some(fd) = std::env::var_os("ISDBENCH_NOTIFY_FD") {
        let path = format!("/proc/self/fd/{}", fd.to_string_lossy());
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
            use std::io::Write;
            let _ = f.write_all(b"\n");
        }
    }
    if let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") {
        let _ = s.send_to(format!("{} {t}", std::process::id()).as_bytes(), addr);
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
