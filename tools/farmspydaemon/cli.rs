use clap::Parser;
use daqproc::framework::ProcessArgs;

/// Serves samples of the events of a farm circular buffer (bcname) to remote spy daemons over
/// TCP (port, default 2115), without ever slowing the data flow.
///
/// Commands (on DIR/NAME.ctl, or `shvar cmd NAME ...`): `init [bcname]`, start, pause, resume,
/// update, end, exit. `farmspydaemon -n farm1 -c 'init B_1_1' -c 'set port 23115' -c start`.
#[derive(Debug, Parser)]
#[command(name = "farmspydaemon", version)]
pub struct Cli {
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
