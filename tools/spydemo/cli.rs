use clap::Parser;

/// Runs the whole spy chain on this machine with default settings and shows it working:
///
/// evgen -> farm buffer B_1_1 -> farmspydaemon farm1 -> TCP -> rspydaemon spy1 -> local buffer
/// L_1_1 -> spycat --verify
///
/// Every part is a real process in a fresh runtime directory (printed, so `shvar` and `spyctl`
/// can look at it meanwhile). The live variables are shown every second for --seconds or until
/// Ctrl-C; then every process is told to exit and the directory is removed.
#[derive(Debug, Parser)]
#[command(name = "spydemo", version)]
pub struct Cli {
    /// How long to run (0: until Ctrl-C)
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Event sizes given to evgen (N or MIN-MAX bytes)
    #[arg(long, default_value = "1000-8000")]
    pub size: String,
    /// Events per second written by evgen
    #[arg(long, default_value_t = 5000)]
    pub rate: u64,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
