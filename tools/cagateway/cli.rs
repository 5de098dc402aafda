use std::path::PathBuf;

use clap::Parser;
use daqproc::framework::ProcessArgs;

/// The Channel Access gateway: serves every variable of every live local framework process as
/// an EPICS PV `NAME:VAR` (caget, caput, camonitor, Phoebus), found and dropped as processes
/// start and stop. Writes go through the owner as `shvar set` does; by default everyone may
/// read and no one may write (see --access).
///
/// Ports and addresses come from EPICS' environment variables as for an IOC:
/// EPICS_CAS_SERVER_PORT (5064), EPICS_CAS_INTF_ADDR_LIST, EPICS_CAS_BEACON_PORT (5065),
/// EPICS_CAS_BEACON_ADDR_LIST, EPICS_CAS_AUTO_BEACON_ADDR_LIST, EPICS_CAS_BEACON_PERIOD,
/// EPICS_CA_CONN_TMO. `cagateway -n ca1`; see docs/ca.md.
#[derive(Debug, Parser)]
#[command(name = "cagateway", version)]
pub struct Cli {
    /// The access file (UAG/HAG/ASG rules, see docs/ca.md); SIGHUP or `reload` reads it again
    #[arg(short = 'a', long, value_name = "FILE")]
    pub access: Option<PathBuf>,
    /// The PV list: which PVs are served and in which ASG of the access file (`PATTERN ALLOW
    /// [ASG]`, `PATTERN DENY`, as the EPICS gateway's; see docs/ca.md); read again with it
    #[arg(long, value_name = "FILE")]
    pub pvlist: Option<PathBuf>,
    /// TCP and UDP port (overrides EPICS_CAS_SERVER_PORT)
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Port beacons are sent to (overrides EPICS_CAS_BEACON_PORT)
    #[arg(long, value_name = "PORT")]
    pub beacon_port: Option<u16>,
    /// How often watched variables are compared, in microseconds
    #[arg(long, value_name = "US", default_value = "1000")]
    pub tick_us: u64,
    /// Seconds of silence before a client is sent an echo; twice that, it is dropped (overrides EPICS_CA_CONN_TMO)
    #[arg(long, value_name = "SECONDS")]
    pub echo_secs: Option<f64>,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}
