//! Where and how the server listens: EPICS' environment variables, read as an IOC reads them
//! (EPICS_CAS_* first, then the EPICS_CA_* they default to), before the command line's
//! overrides.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::access::Access;

/// Where and how the server listens (from EPICS' environment variables and the command line).
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on (EPICS_CAS_INTF_ADDR_LIST; all interfaces by default).
    pub intf: Vec<IpAddr>,
    /// TCP and UDP search port (EPICS_CAS_SERVER_PORT, else EPICS_CA_SERVER_PORT, else 5064).
    pub port: u16,
    /// Where beacons go (EPICS_CAS_BEACON_ADDR_LIST, else EPICS_CA_ADDR_LIST; plus the
    /// broadcast address unless EPICS_CAS_AUTO_BEACON_ADDR_LIST=NO).
    pub beacon_addrs: Vec<SocketAddr>,
    /// The longest time between beacons (EPICS_CAS_BEACON_PERIOD, 15 s).
    pub beacon_period: Duration,
    /// How often watched values are compared.
    pub tick: Duration,
    /// A client silent this long is sent an echo; silent twice as long, it is dropped
    /// (EPICS_CA_CONN_TMO, 30 s).
    pub echo_after: Duration,
    /// Who may read and write.
    pub access: Access,
    /// How long a write may wait for the owner's answer.
    pub put_timeout: Duration,
}

/// EPICS' default server port.
pub const DEFAULT_PORT: u16 = 5064;
/// EPICS' default repeater (beacon) port.
pub const DEFAULT_BEACON_PORT: u16 = 5065;

fn parse_port(var: &str, v: &str) -> Result<u16, String> {
    v.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{var}={v:?}: not a port number (1-65535)"))
}

fn parse_addr_list(var: &str, v: &str, default_port: u16) -> Result<Vec<SocketAddr>, String> {
    v.split_whitespace()
        .map(|w| {
            if let Ok(sa) = w.parse::<SocketAddr>() {
                return Ok(sa);
            }
            w.parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, default_port))
                .map_err(|_| {
                    format!("{var}: {w:?} is not an address (write 10.0.0.255 or 10.0.0.255:5065)")
                })
        })
        .collect()
}

fn yes(v: Option<String>) -> bool {
    !v.is_some_and(|v| v.trim().eq_ignore_ascii_case("no"))
}

impl Config {
    /// The configuration EPICS' environment variables give (read through `env`), before the
    /// command line's overrides.
    ///
    /// # Errors
    /// A variable that cannot be read, with its name and what it should hold.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let port = match (get("EPICS_CAS_SERVER_PORT"), get("EPICS_CA_SERVER_PORT")) {
            (Some(v), _) => parse_port("EPICS_CAS_SERVER_PORT", &v)?,
            (None, Some(v)) => parse_port("EPICS_CA_SERVER_PORT", &v)?,
            _ => DEFAULT_PORT,
        };
        let beacon_port = match (get("EPICS_CAS_BEACON_PORT"), get("EPICS_CA_REPEATER_PORT")) {
            (Some(v), _) => parse_port("EPICS_CAS_BEACON_PORT", &v)?,
            (None, Some(v)) => parse_port("EPICS_CA_REPEATER_PORT", &v)?,
            _ => DEFAULT_BEACON_PORT,
        };
        let intf = match get("EPICS_CAS_INTF_ADDR_LIST") {
            Some(v) => v
                .split_whitespace()
                .map(|w| {
                    w.parse::<IpAddr>().map_err(|_| {
                        format!("EPICS_CAS_INTF_ADDR_LIST: {w:?} is not an IP address")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
        };
        let mut beacon_addrs = match (get("EPICS_CAS_BEACON_ADDR_LIST"), get("EPICS_CA_ADDR_LIST"))
        {
            (Some(v), _) => parse_addr_list("EPICS_CAS_BEACON_ADDR_LIST", &v, beacon_port)?,
            (None, Some(v)) => parse_addr_list("EPICS_CA_ADDR_LIST", &v, beacon_port)?
                .into_iter()
                .map(|a| SocketAddr::new(a.ip(), beacon_port))
                .collect(),
            _ => Vec::new(),
        };
        let auto = match get("EPICS_CAS_AUTO_BEACON_ADDR_LIST") {
            Some(v) => yes(Some(v)),
            None => yes(get("EPICS_CA_AUTO_ADDR_LIST")),
        };
        if auto {
            beacon_addrs.push(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::BROADCAST),
                beacon_port,
            ));
        }
        let secs = |var: &str, default: f64| -> Result<Duration, String> {
            match get(var) {
                None => Ok(Duration::from_secs_f64(default)),
                Some(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && *s < 86_400.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("{var}={v:?}: not a number of seconds")),
            }
        };
        Ok(Config {
            intf,
            port,
            beacon_addrs,
            beacon_period: secs("EPICS_CAS_BEACON_PERIOD", 15.0)?,
            tick: Duration::from_millis(1),
            echo_after: secs("EPICS_CA_CONN_TMO", 30.0)?,
            access: Access::read_only(),
            put_timeout: Duration::from_secs(10),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn environment_as_an_ioc_reads_it() {
        let c = Config::from_env(env(&[])).unwrap();
        assert_eq!(c.port, 5064);
        assert_eq!(
            c.beacon_addrs,
            vec!["255.255.255.255:5065".parse().unwrap()]
        );
        let c = Config::from_env(env(&[
            ("EPICS_CAS_SERVER_PORT", "7064"),
            ("EPICS_CAS_INTF_ADDR_LIST", "127.0.0.1"),
            ("EPICS_CAS_BEACON_PORT", "7065"),
            ("EPICS_CA_ADDR_LIST", "127.0.0.1:7064 127.0.0.2"),
            ("EPICS_CA_AUTO_ADDR_LIST", "NO"),
        ]))
        .unwrap();
        assert_eq!(c.port, 7064);
        assert_eq!(c.intf, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            c.beacon_addrs,
            vec![
                "127.0.0.1:7065".parse().unwrap(),
                "127.0.0.2:7065".parse().unwrap()
            ]
        );
        let e = Config::from_env(env(&[("EPICS_CAS_SERVER_PORT", "http")])).unwrap_err();
        assert!(e.contains("EPICS_CAS_SERVER_PORT"), "{e}");
        let e = Config::from_env(env(&[("EPICS_CAS_INTF_ADDR_LIST", "eth0")])).unwrap_err();
        assert!(e.contains("eth0"), "{e}");
    }
}
