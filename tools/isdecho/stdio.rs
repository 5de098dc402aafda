//! The adapter: a program that knows nothing of the protocol serves a service. It is started
//! once; each request is written to its stdin as one line (a request holding a newline is
//! refused with an error reply), and the one line it writes to stdout is the reply (without
//! its newline). When it exits, the adapter exits, and isectd restarts the worker.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use daqproc::daemons::isectd::xlib::{Incoming, XError, XWorker};

pub fn serve(w: &mut XWorker, prog: &[String]) -> Result<(), XError> {
    let mut child = Command::new(&prog[0])
        .args(&prog[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| XError::Protocol(format!("cannot start {}: {e}", prog[0])))?;
    let mut input = child.stdin.take().expect("piped");
    let mut output = BufReader::new(child.stdout.take().expect("piped"));
    let mut req = Vec::new();
    let mut line = String::new();
    let mut served = 0u64;
    loop {
        match w.next_incoming()? {
            Incoming::Piece(p) => {
                req.extend_from_slice(&p.data);
                if p.header.more() {
                    continue;
                }
                if req.contains(&b'\n') {
                    w.reply(p.header.tag, 1, b"error: the adapter takes one line per transaction (no newline in a request)", false)?;
                    req.clear();
                    continue;
                }
                req.push(b'\n');
                line.clear();
                let ok = input.write_all(&req).and_then(|()| input.flush()).is_ok()
                    && output.read_line(&mut line).is_ok_and(|n| n > 0);
                req.clear();
                if !ok {
                    let _ = child.kill();
                    let st = child.wait().ok();
                    return Err(XError::Protocol(format!(
                        "{} ended ({st:?}) without answering",
                        prog[0]
                    )));
                }
                let reply = line.strip_suffix('\n').unwrap_or(&line);
                w.reply(p.header.tag, 1, reply.as_bytes(), false)?;
                served += 1;
            }
            Incoming::Control(c) => match c.trim() {
                "status" => w.control_reply(&format!("{}: {served} transactions", prog[0]))?,
                other => w.control_reply(&format!(
                    "{other}: not supported by the stdio adapter (status only)"
                ))?,
            },
        }
    }
}
