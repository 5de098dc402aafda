//! Man pages for every binary of the project: clap_mangen's NAME, SYNOPSIS, DESCRIPTION and
//! OPTIONS, then each subcommand in full (no page is named that is not generated), the binary's
//! own extra section (spyctl's VERBS), and ENVIRONMENT, FILES, EXIT STATUS and SEE ALSO from the
//! table below: one place that knows what every tool reads, writes and returns.

use std::io::Write;

use clap::Command;

/// The project's binaries, for SEE ALSO (a binary not named here is a daemon added later: it
/// gets the framework's entries).
const TOOLS: &[&str] = &[
    "shvar",
    "spyctl",
    "ticker",
    "evgen",
    "spycat",
    "farmspydaemon",
    "rspydaemon",
    "ybosspydaemon",
    "spybench",
    "spydemo",
    "svcshare",
];

/// Tools that are not framework processes (no region of their own).
const CLIENTS: &[&str] = &[
    "shvar", "spyctl", "spycat", "spybench", "spydemo", "svcsoak",
];

/// Escapes text for roff: backslashes, and a leading dot or quote.
fn esc(s: &str) -> String {
    let s = s.replace('\\', "\\e");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn section(out: &mut Vec<u8>, title: &str) {
    let _ = writeln!(out, ".SH {title}");
}

fn entry(out: &mut Vec<u8>, term: &str, text: &str) {
    let _ = writeln!(out, ".TP\n\\fB{}\\fR", esc(term));
    for l in text.lines() {
        let _ = writeln!(out, "{}", esc(l));
    }
}

fn preformatted(out: &mut Vec<u8>, text: &str) {
    let _ = writeln!(out, ".PP\n.nf");
    for l in text.lines() {
        let _ = writeln!(out, "{}", esc(l));
    }
    let _ = writeln!(out, ".fi");
}

/// The man page of `cmd`, in roff.
pub fn render(mut cmd: Command) -> Vec<u8> {
    cmd.build();
    let name = cmd.get_name().to_owned();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    let ok = "rendering into memory does not fail";
    man.render_title(&mut out).expect(ok);
    man.render_name_section(&mut out).expect(ok);
    man.render_synopsis_section(&mut out).expect(ok);
    man.render_description_section(&mut out).expect(ok);
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out).expect(ok);
    }
    let subs: Vec<Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .cloned()
        .collect();
    if !subs.is_empty() {
        section(&mut out, "COMMANDS");
        for mut sub in subs {
            let _ = writeln!(out, ".SS \"{name} {}\"", sub.get_name());
            let sub_name = format!("{name} {}", sub.get_name());
            let mut sub = std::mem::replace(&mut sub, Command::new("x")).bin_name(sub_name);
            let help = sub.render_long_help().to_string();
            preformatted(&mut out, &help);
        }
    }
    if let Some(extra) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        let text = extra.to_string();
        let (title, body) = match text.split_once('\n') {
            Some((t, b)) if t.chars().all(|c| c.is_ascii_uppercase() || c == ' ') => (t, b),
            _ => ("NOTES", text.as_str()),
        };
        section(&mut out, title);
        preformatted(&mut out, body);
    }
    environment(&mut out, &name);
    files(&mut out, &name);
    exit_status(&mut out, &name);
    section(&mut out, "SEE ALSO");
    let see: Vec<String> = TOOLS
        .iter()
        .filter(|t| **t != name)
        .map(|t| format!("\\fB{t}\\fR(1)"))
        .collect();
    let _ = writeln!(out, "{}", see.join(", "));
    let _ = writeln!(
        out,
        ".PP\nThe formats and protocols are described in the project's docs/: region.md (NAME.shv), control.md (NAME.ctl, NAME.sock), circ.md (circular buffers), operations.md, performance.md."
    );
    out
}

fn is_daemon(name: &str) -> bool {
    !CLIENTS.contains(&name)
}

fn environment(out: &mut Vec<u8>, name: &str) {
    section(out, "ENVIRONMENT");
    entry(
        out,
        "SHVAR_DIR",
        "The runtime directory, where every process keeps NAME.shv, NAME.ctl and NAME.sock. When unset: /dev/shm/shvars, else $XDG_RUNTIME_DIR/shvars, else /tmp/shvars-$UID. --dir overrides it.",
    );
    entry(
        out,
        "XDG_RUNTIME_DIR",
        "Used for the runtime directory when SHVAR_DIR is unset and /dev/shm does not exist.",
    );
    if name == "spyctl" {
        entry(
            out,
            "XDG_DATA_HOME, HOME",
            "The history is kept in $XDG_DATA_HOME/daqproc/spyctl_history, else ~/.local/share/daqproc/spyctl_history.",
        );
    }
    if is_daemon(name) {
        entry(
            out,
            "NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID",
            "Set by systemd for a Type=notify unit: the process reports READY=1, its run state and watchdog pings.",
        );
        entry(
            out,
            "DAQPROC_SUPERVISOR",
            "Set by a supervisor for the processes it starts; recorded in the variable supervisor, so tools say who restarts the process.",
        );
    }
}

fn files(out: &mut Vec<u8>, name: &str) {
    section(out, "FILES");
    let own = if is_daemon(name) {
        "this process's"
    } else {
        "a process's"
    };
    entry(
        out,
        "DIR/NAME.shv",
        &format!(
            "{own} variable region (mode 0644): read by every tool, written by its owner only."
        ),
    );
    entry(
        out,
        "DIR/NAME.ctl",
        &format!("{own} control FIFO (mode 0600, 0620 with --group): fire-and-forget commands, echo pause > NAME.ctl."),
    );
    entry(
        out,
        "DIR/NAME.sock",
        &format!(
            "{own} control socket: commands and their answers; the owner checks each caller's uid."
        ),
    );
    if is_daemon(name) {
        entry(
            out,
            "DIR/NAME.log",
            "The log of a process started with --daemon (or --log FILE); SIGHUP re-opens it.",
        );
    }
    if matches!(
        name,
        "evgen" | "rspydaemon" | "ybosspydaemon" | "farmspydaemon" | "spycat" | "spydemo"
    ) {
        entry(
            out,
            "DIR/BUFFER, /abs/path",
            "Circular event buffers: a bare name lives in the runtime directory.",
        );
    }
    if name == "spyctl" {
        entry(
            out,
            "$XDG_DATA_HOME/daqproc/spyctl_history",
            "The console's history.",
        );
    }
}

fn exit_status(out: &mut Vec<u8>, name: &str) {
    section(out, "EXIT STATUS");
    entry(
        out,
        "0",
        "Success (a daemon: it exited cleanly, on exit or SIGTERM).",
    );
    entry(
        out,
        "1",
        "Failure: the process refused, is not running, did not answer; a daemon could not start (the reason is printed).",
    );
    entry(out, "2", "Bad usage (the command line is wrong).");
    if name == "shvar" {
        entry(
            out,
            "3",
            "shvar get printed the last values of a process that is not running (a warning on stderr says so).",
        );
    }
}
