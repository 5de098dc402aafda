//! `isdecho`: the seed's echo worker, and the stdin/stdout adapter (`--stdio PROGRAM`).
#![forbid(unsafe_code)]

mod cli;
mod stdio;

use std::process::ExitCode;
use std::time::Duration;

use daqproc::daemons::isectd::xlib::{Incoming, XError, XWorker};
use daqproc::daemons::isectd::xproto::MAX_PAYLOAD;

fn main() -> ExitCode {
    let cli = daqproc::support::cli::parse::<cli::Cli>();
    let mut w = match XWorker::login(&cli.host, cli.port, cli.worker, &cli.token) {
        Ok(w) => w,
        Err(e) => {
            eprintln!(
                "isdecho: cannot log in to isectd at {}:{}: {e}",
                cli.host, cli.port
            );
            return ExitCode::FAILURE;
        }
    };
    let r = if cli.stdio.is_empty() {
        echo(&mut w, &cli)
    } else {
        stdio::serve(&mut w, &cli.stdio)
    };
    match r {
        Ok(()) | Err(XError::Closed) => {
            eprintln!("isdecho: isectd closed the connection: exiting");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("isdecho: {e}");
            ExitCode::FAILURE
        }
    }
}

fn echo(w: &mut XWorker, cli: &cli::Cli) -> Result<(), XError> {
    let mut served = 0u64;
    let mut req = Vec::new();
    loop {
        match w.next_incoming()? {
            Incoming::Piece(p) => {
                req.extend_from_slice(&p.data);
                if p.header.more() {
                    continue;
                }
                if cli.delay_ms > 0 {
                    std::thread::sleep(Duration::from_millis(cli.delay_ms));
                }
                // At least --pieces pieces, none larger than a frame may be.
                let n = cli.pieces.max(1).max(req.len().div_ceil(MAX_PAYLOAD));
                let step = req.len().div_ceil(n).max(1);
                let mut chunks: Vec<&[u8]> = req.chunks(step).collect();
                while chunks.len() < n {
                    chunks.push(&[]);
                }
                for (i, c) in chunks.iter().enumerate() {
                    w.reply(p.header.tag, i as u32 + 1, c, i + 1 < n)?;
                }
                served += 1;
                req.clear();
            }
            Incoming::Control(c) => match c.trim() {
                "status" => w.control_reply(&format!("echoed {served} transactions"))?,
                "reinit" => {
                    served = 0;
                    w.control_reply("reinitialised")?
                }
                other => w.control_reply(&format!("unknown command {other:?} (reinit, status)"))?,
            },
        }
    }
}
