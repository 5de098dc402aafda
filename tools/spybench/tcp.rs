//! The baseline: raw TCP loopback, one writer thread and one reader thread, writes and reads of
//! the event size.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

/// MB/s (10^6 bytes) moved in `dur`.
pub fn measure(size: usize, dur: Duration) -> anyhow::Result<f64> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let addr = l.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let buf = vec![0x5au8; size];
        while !s2.load(Ordering::Relaxed) {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let (mut r, _) = l.accept()?;
    let mut buf = vec![0u8; size];
    // Warm up, then count.
    let warm = Instant::now() + Duration::from_millis(200);
    while Instant::now() < warm {
        r.read_exact(&mut buf)?;
    }
    let t0 = Instant::now();
    let mut bytes = 0u64;
    while t0.elapsed() < dur {
        r.read_exact(&mut buf)?;
        bytes += size as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    drop(r);
    let _ = writer.join();
    Ok(bytes as f64 / secs / 1e6)
}
