//! The options every binary of the project shares besides its own: `--completions SHELL` prints a
//! shell completion script (clap_complete) and `--man` a man page in roff (clap_mangen), then the
//! program exits 0 without doing anything else.
//!
//! A binary flattens [`Extras`] into its clap `Parser` and calls [`parse`] instead of
//! `Parser::parse`:
//!
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(Debug, Parser)]
//! #[command(name = "mytool")]
//! struct Cli {
//!     /// A required argument does not stop `mytool --man`.
//!     buffer: String,
//!     #[command(flatten)]
//!     extras: daqproc::support::cli::Extras,
//! }
//!
//! let cli: Cli = daqproc::support::cli::parse();
//! ```
//!
//! Both options are exclusive (given alone), so they work whatever else the program requires:
//! required positional arguments, and a required subcommand (tried again without the requirement
//! when it is the only thing missing). This module only prints: it never touches a file.

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::exit;

use clap::error::ErrorKind;
use clap::{ArgMatches, Command, Parser};
use clap_complete::Shell;

/// Id of the `--completions` argument.
const COMPLETIONS: &str = "completions";
/// Id of the `--man` argument.
const MAN: &str = "man";

/// `--completions SHELL` and `--man`: flatten into a binary's `Parser` with
/// `#[command(flatten)]` and parse with [`parse`].
///
/// `clap::Args` is implemented by hand: the derive would make this doc comment the about text
/// of every binary that flattens `Extras` last.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// `--completions SHELL`.
    pub completions: Option<Shell>,
    /// `--man`.
    pub man: bool,
}

impl clap::FromArgMatches for Extras {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Extras {
            completions: m.get_one::<Shell>(COMPLETIONS).copied(),
            man: m.get_flag(MAN),
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for Extras {
    fn augment_args(cmd: Command) -> Command {
        cmd.arg(
            clap::Arg::new(COMPLETIONS)
                .long(COMPLETIONS)
                .value_name("SHELL")
                .value_parser(clap::value_parser!(Shell))
                .exclusive(true)
                .help("Print the shell completion script for SHELL to stdout and exit"),
        )
        .arg(
            clap::Arg::new(MAN)
                .long(MAN)
                .action(clap::ArgAction::SetTrue)
                .exclusive(true)
                .help("Print the man page (roff) to stdout and exit"),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// Parses the command line of `C` (which flattens [`Extras`]); with `--completions` or `--man`
/// prints what they ask for and exits 0. Everything else behaves as `C::parse()`: `--help`,
/// `--version` and usage errors (exit 2) included.
///
/// # Panics
/// If `C` does not flatten [`Extras`] (a programming error, caught by the first run).
pub fn parse<C: Parser>() -> C {
    parse_from(std::env::args_os())
}

/// [`parse`] over the given arguments (the first is the program name).
///
/// # Panics
/// As [`parse`].
pub fn parse_from<C, I, T>(args: I) -> C
where
    C: Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // A completion request from the shell (COMPLETE=bash ...): answered here, then exit.
    clap_complete::CompleteEnv::with_factory(C::command).complete();
    let cmd = C::command();
    assert!(
        cmd.get_arguments()
            .any(|a| a.get_id() == COMPLETIONS || a.get_id() == MAN),
        "{} does not flatten daqproc::support::cli::Extras",
        cmd.get_name()
    );
    match cmd.clone().try_get_matches_from(&args) {
        Ok(m) => {
            if let Some(out) = extra_output(&m, cmd) {
                print_and_exit(&out);
            }
            C::from_arg_matches(&m).unwrap_or_else(|e| e.exit())
        }
        Err(e) => {
            // A program with a required subcommand refuses `--man` alone before looking at
            // exclusive arguments: try once more without that requirement, for these two only.
            if matches!(
                e.kind(),
                ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let relaxed = cmd
                    .clone()
                    .subcommand_required(false)
                    .arg_required_else_help(false);
                if let Ok(m) = relaxed.try_get_matches_from(&args) {
                    if let Some(out) = extra_output(&m, cmd) {
                        print_and_exit(&out);
                    }
                }
            }
            e.exit()
        }
    }
}

/// What `--completions` or `--man` print, if one of them was given.
fn extra_output(m: &ArgMatches, cmd: Command) -> Option<Vec<u8>> {
    if let Some(&shell) = m.get_one::<Shell>(COMPLETIONS) {
        return Some(completions(cmd, shell));
    }
    if m.get_flag(MAN) {
        return Some(man_page(cmd));
    }
    None
}

/// The completion script of `cmd` for `shell`: it registers the binary's dynamic completion,
/// so the shell asks the binary itself (with `COMPLETE=<shell>` set) and gets live process and
/// variable names as well as the options.
pub fn completions(cmd: Command, shell: Shell) -> Vec<u8> {
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    let shell_name = match shell {
        Shell::Bash => "bash",
        Shell::Elvish => "elvish",
        Shell::Fish => "fish",
        Shell::PowerShell => "powershell",
        Shell::Zsh => "zsh",
        _ => "bash",
    };
    if let Some(c) = clap_complete::env::Shells::builtins().completer(shell_name) {
        c.write_registration("COMPLETE", &name, &name, &name, &mut out)
            .expect("writing into memory does not fail");
    }
    out
}

/// The man page of `cmd`, in roff.
pub fn man_page(cmd: Command) -> Vec<u8> {
    super::man::render(cmd)
}

/// Writes `out` to stdout and exits: 0 when written (or when the reader went away, as with
/// `| head`), 1 when stdout cannot be written.
fn print_and_exit(out: &[u8]) -> ! {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(out).and_then(|()| stdout.flush()) {
        Ok(()) => exit(0),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => exit(0),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            exit(1)
        }
    }
}

/// Parses a positive duration in seconds, for every tool alike (`-w`, `--interval`): a number
/// of seconds (`0.5`, `5`) or a duration with its unit (`500ms`, `2s`, `1m30s`, as humantime
/// writes them).
///
/// # Errors
/// A message naming the text given and what is accepted.
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let secs = match s.trim().parse::<f64>() {
        Ok(v) => Some(v),
        Err(_) => humantime::parse_duration(s.trim())
            .ok()
            .map(|d| d.as_secs_f64()),
    };
    match secs {
        Some(v) if v > 0.0 && v.is_finite() && v < 1e6 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a positive duration (e.g. 0.5, 5, 500ms, 2s, 1m; at most 999999 s)"
        )),
    }
}

/// The binary `name` of this build, next to the running one (a bench or demo starting the
/// daemons it measures).
///
/// # Errors
/// If it is not there: the message names the path and the build command.
pub fn sibling(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let me = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot locate the running binary: {e}"))?;
    let p = me.with_file_name(name);
    if !p.exists() {
        anyhow::bail!(
            "{} not found next to {} (build every binary: cargo build --release)",
            p.display(),
            me.display()
        );
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds() {
        assert_eq!(super::parse_secs("0.5"), Ok(0.5));
        assert_eq!(super::parse_secs("500ms"), Ok(0.5));
        assert_eq!(super::parse_secs("1m30s"), Ok(90.0));
        for bad in ["0", "-1", "nan", "inf", "1e9", "soon", "0ms", "-5s"] {
            let e = super::parse_secs(bad).unwrap_err();
            assert!(e.contains("is not a positive duration"), "{e}");
        }
    }

    use super::*;
    use clap::CommandFactory;

    #[derive(Debug, Parser)]
    #[command(name = "t")]
    struct WithSub {
        #[command(subcommand)]
        verb: Verb,
        #[command(flatten)]
        extras: Extras,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Verb {
        Go { what: String },
    }

    #[test]
    fn ordinary_parsing_is_untouched() {
        let c: WithSub = parse_from(["t", "go", "x"]);
        assert!(matches!(c.verb, Verb::Go { ref what } if what == "x"));
        assert!(c.extras.completions.is_none() && !c.extras.man);
    }

    #[test]
    fn outputs_name_the_program() {
        let bash = String::from_utf8(completions(WithSub::command(), Shell::Bash)).unwrap();
        assert!(bash.contains("_t()"), "{bash}");
        let man = String::from_utf8(man_page(WithSub::command())).unwrap();
        assert!(man.lines().any(|l| l.starts_with(".TH t 1")), "{man}");
    }
}
