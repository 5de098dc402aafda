//! A non-blocking TCP connection carrying [`exec_proto`](super::exec_proto) frames, for the
//! event loop: reads until the socket would block, queues what cannot be written yet.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use super::exec_proto::{encode, Decoder, Msg};

/// Most bytes queued for a peer that does not read before it is dropped.
const MAX_QUEUED: usize = 16 << 20;

/// The connection.
#[derive(Debug)]
pub struct FrameConn {
    stream: TcpStream,
    dec: Decoder,
    out: Vec<u8>,
}

impl FrameConn {
    /// Wraps a connected stream (made non-blocking here).
    ///
    /// # Errors
    /// If it cannot be made non-blocking.
    pub fn new(stream: TcpStream) -> io::Result<FrameConn> {
        stream.set_nonblocking(true)?;
        let _ = stream.set_nodelay(true);
        Ok(FrameConn {
            stream,
            dec: Decoder::default(),
            out: Vec::new(),
        })
    }

    /// Its descriptor.
    pub fn fd(&self) -> i32 {
        self.stream.as_raw_fd()
    }

    /// The peer's address, for messages.
    pub fn peer(&self) -> String {
        self.stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into())
    }

    /// Reads what arrived; the messages in it.
    ///
    /// # Errors
    /// The peer closed, the socket failed, or a frame is bad: drop the connection.
    pub fn read(&mut self) -> Result<Vec<Msg>, String> {
        let mut buf = [0u8; 16 * 1024];
        let mut closed = None;
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    closed = Some("closed by the peer".to_owned());
                    break;
                }
                Ok(n) => self.dec.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    closed = Some(e.to_string());
                    break;
                }
            }
        }
        let mut msgs = Vec::new();
        while let Some(m) = self.dec.next_msg()? {
            msgs.push(m);
        }
        match closed {
            Some(why) if msgs.is_empty() => Err(why),
            _ => Ok(msgs),
        }
    }

    /// Queues `m` and writes what the socket takes now.
    ///
    /// # Errors
    /// The socket failed, or too much is queued for a peer that does not read.
    pub fn send(&mut self, m: &Msg) -> Result<(), String> {
        self.out.extend_from_slice(&encode(m));
        if self.out.len() > MAX_QUEUED {
            return Err(format!(
                "{} bytes queued for a peer that does not read",
                self.out.len()
            ));
        }
        self.flush()
    }

    /// Writes what is queued, as far as the socket takes it.
    ///
    /// # Errors
    /// The socket failed.
    pub fn flush(&mut self) -> Result<(), String> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return Err("the peer does not take data".into()),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }
}
