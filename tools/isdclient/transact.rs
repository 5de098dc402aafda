//! `-s SERVICE [MESSAGE]`: transactions to a service, the reply printed; without MESSAGE, one
//! transaction per line of stdin.

use std::io::BufRead;
use std::process::ExitCode;

use daqproc::daemons::isectd::xlib::XClient;
use shvars::{ProcName, RuntimeDir};

use crate::cli::Cli;

fn address(cli: &Cli) -> Result<String, String> {
    if let Some(a) = &cli.addr {
        return Ok(a.clone());
    }
    let name = ProcName::new(&cli.name).map_err(|e| e.to_string())?;
    let dir = RuntimeDir::resolve(cli.dir.as_deref());
    let r = shvars::region::RegionReader::open(&dir, &name)
        .map_err(|e| format!("cannot find isectd {name}'s client port: {e}"))?;
    // isectd found in the runtime directory runs on this machine: its Unix socket is the
    // cheaper way in (an older isectd has none).
    if let Some(path) = r.string("xact_socket").ok().and_then(|s| s.get().ok()) {
        if !path.is_empty() && std::path::Path::new(&path).exists() {
            return Ok(format!("unix:{path}"));
        }
    }
    let port = r
        .int("req_port")
        .map_err(|e| format!("{name} has no req_port: {e}"))?
        .get();
    Ok(format!("127.0.0.1:{port}"))
}

pub fn run(cli: &Cli) -> ExitCode {
    let service = cli.service.as_deref().unwrap_or("");
    let addr = match address(cli) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("isdclient: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut c = match XClient::connect(&addr, service) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("isdclient: error: cannot log in to service {service} at {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut one = |msg: &str| -> bool {
        match c.transact(msg.as_bytes()) {
            Ok(r) => {
                println!("{}", String::from_utf8_lossy(&r));
                true
            }
            Err(e) => {
                eprintln!("isdclient: transaction to {service} failed: {e}");
                false
            }
        }
    };
    let ok = match &cli.message {
        Some(m) => one(m),
        None => {
            let mut all = true;
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                all &= one(&line);
            }
            all
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
