use clap::Parser;
use daqproc::framework::ProcessArgs;

/// Fills the local circular buffer lname (bufsize bytes) by replaying a spy data file (fname,
/// as `spycat --save FILE` writes one), for monitoring tasks that read it as they would
/// rspydaemon's buffer: KLOE's sister daemon of rspydaemon.
///
/// Commands (on DIR/NAME.ctl, or `shvar cmd NAME ...`): `init [fname]`, start, pause, resume,
/// update, end, exit. At the end of the file it does what at_EOF says: stop, or loop.
/// `ybosspydaemon -n ybos1 -c 'set lname L_1' -c 'init run1.spy' -c start`.
#[derive(Debug, Parser)]
#[command(name = "ybosspydaemon", version)]
pub struct Cli {
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
