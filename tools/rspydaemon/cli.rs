use clap::Parser;
use daqproc::framework::ProcessArgs;

/// Gives the monitoring tasks of this node transparent access to the events of a remote farm:
/// a prefetch thread fills the local circular buffer lname (circsize bytes) from a farm spy
/// daemon (raddr, rport).
///
/// Commands (on DIR/NAME.ctl, or `shvar cmd NAME ...`): `init [circbuf]`, `start [raddr [rport]]`,
/// pause, resume, `reconnect [raddr [rport]]`, disconnect, update, end, exit.
/// `rspydaemon -n spy1 -c 'init B_1_1' -c 'start localhost 2115'`.
#[derive(Debug, Parser)]
#[command(name = "rspydaemon", version)]
pub struct Cli {
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
