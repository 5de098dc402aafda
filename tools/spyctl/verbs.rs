//! spyctl's own verbs: `open`/`use`, `list`, `get`, `set`, `vars`, `help`. Reads come straight
//! from the region (no lock, the owner never waits); writes go through the owner.

use anyhow::{anyhow, bail};
use daqproc::control::client;
use daqproc::control::words::join;
use daqproc::observe::liveness::Liveness;
use shvars::ProcName;

use crate::console::{is_own_verb, print_reply, Console, VERBS};

/// `open NAME`: selects a process whose region exists; a dead one is selected with a note.
pub fn open(c: &mut Console, args: &[String]) -> anyhow::Result<()> {
    let [name] = args else {
        bail!("usage: open NAME (`list` shows the processes)");
    };
    let name = ProcName::new(name)?;
    if !c.dir().region_path(&name).exists() {
        bail!(
            "no process named {name} in {} (`list` shows the processes there; --dir or SHVAR_DIR choose another directory)",
            c.dir()
        );
    }
    let st = client::process_status(c.dir(), &name);
    match st.status {
        Liveness::Alive | Liveness::Starting => {}
        Liveness::Bad => bail!(
            "{}",
            st.error
                .unwrap_or_else(|| format!("cannot read the region of {name}"))
        ),
        // A script learns it from the first command that fails; the console tells at once.
        other if c.interactive() => eprintln!(
            "spyctl: note: {name} is not running ({} pid {}): its variables show their last values; start it again to send it commands",
            if other == Liveness::Stopped { "exited, was" } else { "died, was" },
            st.pid
        ),
        _ => {}
    }
    c.select(name);
    Ok(())
}

/// `list`: every process in the runtime directory; `*` marks the selected one.
pub fn list(c: &Console, args: &[String]) -> anyhow::Result<()> {
    if !args.is_empty() {
        bail!("usage: list");
    }
    let procs = client::list(c.dir())?;
    if procs.is_empty() {
        println!("no processes in {}", c.dir());
        return Ok(());
    }
    let w = procs.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
    println!("  {:<w$}  {:>7}  {:<7}  RUNSTATE", "NAME", "PID", "STATUS");
    for p in &procs {
        let mark = if c.selected().is_some_and(|s| s.as_str() == p.name) {
            '*'
        } else {
            ' '
        };
        let state = match (&p.error, &p.runstate) {
            (Some(e), _) => e.as_str(),
            (None, Some(s)) => s.as_str(),
            (None, None) => "-",
        };
        println!(
            "{mark} {:<w$}  {:>7}  {:<7}  {state}",
            p.name, p.pid, p.status
        );
    }
    Ok(())
}

/// `get VAR...`: `VAR = value [unit]` per variable, read from the region.
pub fn get(c: &Console, args: &[String]) -> anyhow::Result<()> {
    if args.is_empty() {
        bail!("usage: get VAR... (`vars` lists the variables)");
    }
    let (name, r) = c.reader()?;
    // Resolve every name first: a typo fails the whole line before anything is printed; a
    // pattern ('worker.*.state') selects every variable it matches.
    let vars = daqproc::observe::names::resolve(&r, args)?;
    let mut out = String::new();
    for v in &vars {
        let spec = v.spec();
        let value = r.read(v)?;
        out.push_str(&format!("{} = {}", spec.name, spec.display(&value)));
        if let Some(u) = spec.unit.as_deref().filter(|u| !u.is_empty()) {
            out.push(' ');
            out.push_str(u);
        }
        out.push('\n');
    }
    print!("{out}");
    if !r.is_alive() {
        eprintln!("spyctl: note: {name} is not running: these are its last values");
    }
    Ok(())
}

/// `set VAR VALUE...`: sent to the owner as `set VAR VALUE`, which checks and answers.
pub fn set(c: &Console, args: &[String]) -> anyhow::Result<()> {
    let [var, value @ ..] = args else {
        bail!("usage: set VAR VALUE");
    };
    if value.is_empty() {
        bail!("usage: set VAR VALUE (to set an empty string: set {var} \"\")");
    }
    let value = value.join(" ");
    let reply = c.send(&join(&["set", var.as_str(), value.as_str()]))?;
    print_reply(&reply);
    Ok(())
}

/// `vars`: a table of every variable of the selected process.
pub fn vars(c: &Console, args: &[String]) -> anyhow::Result<()> {
    let (name, r) = c.reader()?;
    let rows = daqproc::observe::vartable::read(&r, args);
    if rows.is_empty() && !args.is_empty() {
        bail!("no variable of {name} matches {}", args.join(" "));
    }
    print!(
        "{}",
        daqproc::observe::vartable::render(
            &rows,
            daqproc::observe::vartable::Columns { changed: false }
        )
    );
    if !r.is_alive() {
        eprintln!("spyctl: note: {name} is not running: these are its last values");
    }
    Ok(())
}

/// spyctl's verbs for `--help` and the man page (its VERBS section).
pub fn verbs_section() -> String {
    format!("VERBS\n{}", own_verbs_text())
}

fn own_verbs_text() -> String {
    let usage: Vec<String> = VERBS
        .iter()
        .map(|(v, a, _)| {
            if a.is_empty() {
                (*v).to_owned()
            } else {
                format!("{v} {a}")
            }
        })
        .collect();
    let w = usage.iter().map(String::len).max().unwrap_or(0);
    let mut out = String::from("spyctl verbs:\n");
    for (u, (_, _, help)) in usage.iter().zip(VERBS) {
        out.push_str(&format!("  {u:<w$}  {help}\n"));
    }
    out.push_str(
        "Any other line is sent to the selected process as typed (init, start, pause, exit, ...).",
    );
    out
}

/// `help`: the selected process's command table (from the process), or spyctl's verbs.
pub fn help(c: &Console, args: &[String]) -> anyhow::Result<()> {
    match args {
        [] if c.selected().is_none() => {
            println!("{}", own_verbs_text());
            println!("No process selected: `open NAME` (`list` shows them), then `help` shows its commands.");
        }
        [] => {
            let reply = c.send("help")?;
            print_reply(&reply);
            println!(
                "spyctl's own verbs: open/use, list, get, set, vars, watch, quit (`help spyctl`)"
            );
        }
        [w] if w == "spyctl" => println!("{}", own_verbs_text()),
        [w] if is_own_verb(w) => {
            let (v, a, h) = VERBS
                .iter()
                .find(|(v, _, _)| v == w)
                .ok_or_else(|| anyhow!("no verb {w}"))?;
            println!("usage: {v} {a}\n  {h}");
        }
        _ if c.selected().is_none() => {
            bail!("no process selected: `open NAME` first (`help` alone lists spyctl's verbs)")
        }
        _ => {
            let line = join(&[&["help".to_owned()], args].concat());
            print_reply(&c.send(&line)?);
        }
    }
    Ok(())
}

/// `launch NAME`: starts a framework process that is not running again, with the command line and
/// in the directory its region recorded (detached with `--daemon` if it was not), as the user
/// running spyctl — who must own the region (nobody starts another user's command line). A
/// process managed by a supervisor is left to it.
pub fn launch(c: &mut Console, args: &[String]) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::process::{Command, Stdio};

    let [name] = args else {
        bail!("usage: launch NAME (a framework process that is not running)");
    };
    let name = ProcName::new(name)?;
    let st = client::process_status(c.dir(), &name);
    if st.status.is_running() {
        bail!("{name} is already running (pid {})", st.pid);
    }
    let path = c.dir().region_path(&name);
    let meta = std::fs::symlink_metadata(&path)
        .map_err(|e| anyhow!("no process named {name} in {}: {e}", c.dir()))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "{name}'s region belongs to uid {}, not to you (uid {me}): launch only starts your own processes",
            meta.uid()
        );
    }
    let r = shvars::region::RegionReader::open(c.dir(), &name)?;
    let text = |v: &str| -> String {
        r.find(v)
            .ok()
            .and_then(|v| r.read(&v).ok())
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    let supervisor = text("supervisor");
    if !supervisor.is_empty() {
        // Its supervisor starts it: ask it, as the operator would.
        let Some((by, cmd)) = daqproc::observe::liveness::supervisor_command(&supervisor) else {
            bail!("{name} is managed by {supervisor}: start it through its supervisor");
        };
        println!("{name} is managed by {by}: sending it '{cmd}'");
        let reply = client::send(c.dir(), &by, &cmd, std::time::Duration::from_secs(30))
            .map_err(|e| anyhow!("cannot ask {by} to start {name}: {e}"))?;
        if !reply.is_ok() {
            bail!("{by} refused '{cmd}': {}", reply.text());
        }
        print_reply(&reply);
        c.select(name);
        return Ok(());
    }
    let cmdline = text("cmdline");
    let mut argv = daqproc::control::words::tokenize(&cmdline)
        .map_err(|e| anyhow!("{name}'s recorded command line cannot be read ({e}): {cmdline:?}"))?;
    if argv.is_empty() {
        bail!("{name}'s region records no command line: start it by hand");
    }
    if !argv.iter().any(|a| a == "--daemon") {
        argv.push("--daemon".to_owned());
    }
    let cwd = text("cwd");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env("SHVAR_DIR", c.dir().path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !cwd.is_empty() {
        cmd.current_dir(&cwd);
    }
    println!("launching {name}: {}", join(&argv));
    let out = cmd
        .output()
        .map_err(|e| anyhow!("cannot run {}: {e}", argv[0]))?;
    if !out.status.success() {
        bail!(
            "{name} did not start: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let st = client::process_status(c.dir(), &name);
    println!("{name} runs as pid {}", st.pid);
    c.select(name);
    Ok(())
}
