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
    let mb = receive(&mut r, size, dur)?;
    stop.store(true, Ordering::Relaxed);
    drop(r);
    let _ = writer.join();
    Ok(mb)
}

/// The receiving side of a measurement: reads chunks of `size` for 200 ms of warm-up, then
/// for `dur`; returns MB/s (10^6 bytes) of the counted part.
pub fn receive(r: &mut TcpStream, size: usize, dur: Duration) -> std::io::Result<f64> {
    let mut buf = vec![0u8; size];
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
    Ok(bytes as f64 / t0.elapsed().as_secs_f64() / 1e6)
}
