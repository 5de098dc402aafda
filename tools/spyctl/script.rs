//! Script mode: lines from `-c` options or from a non-terminal stdin, run in order without a
//! prompt; the first failure stops the script (exit status 1) and nothing after it runs.

use std::io::BufRead;
use std::process::ExitCode;

use crate::console::{Console, Flow};

/// Where a line came from, for error messages.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// The Nth `-c` option.
    Option,
    /// Line N of stdin.
    Stdin,
}

/// Runs `lines`; `#` comments and blank lines are skipped.
pub fn run(
    console: &mut Console,
    source: Source,
    lines: impl Iterator<Item = std::io::Result<String>>,
) -> ExitCode {
    for (i, line) in lines.enumerate() {
        let where_ = match source {
            Source::Option => format!("-c #{}", i + 1),
            Source::Stdin => format!("stdin line {}", i + 1),
        };
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("spyctl: cannot read {where_}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match console.execute(line) {
            Ok(Flow::Continue) => {}
            Ok(Flow::Quit) => break,
            // Scripts never ask (the console is not interactive).
            Ok(Flow::Confirm { line, .. }) => {
                if let Err(e) = console.execute_confirmed(&line) {
                    eprintln!("spyctl: {where_}: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("spyctl: {where_}: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The lines of stdin.
pub fn stdin_lines() -> impl Iterator<Item = std::io::Result<String>> {
    std::io::stdin().lock().lines()
}
