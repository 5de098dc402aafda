use clap::Parser;
use daqproc::framework::ProcessArgs;

/// The framework's example process: while RUNNING_STATE it counts ticks at a settable rate.
///
/// Variables: rate (R/W, ticks per second), ticks (R), label (R/W), plus runstate, pid, lastcmd,
/// lasterror, heartbeat, started and the sg_*/sl_* statistics. Commands arrive on the control
/// FIFO DIR/NAME.ctl: `shvar cmd NAME init`, `echo start > DIR/NAME.ctl`.
#[derive(Debug, Parser)]
#[command(name = "ticker", version)]
pub struct Cli {
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
