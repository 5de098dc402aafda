use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Parser;
use daqproc::daemons::svcshare::client::Client;
use daqproc::daemons::svcshare::etcd::EtcdConfig;
use daqproc::daemons::svcshare::gate::GateConfig;
use daqproc::daemons::svcshare::irc::IrcConfig;
use daqproc::daemons::svcshare::Options;
use daqproc::framework::ProcessArgs;
use daqproc::support::cli::parse_secs;

/// Shares one resource among peers (seed 000, svcshare): elections by smallest queue,
/// force/halt/pause, a proxy gate that forwards only under a current fencing token.
///
/// `svcshare -n peer1 --listen 127.0.0.1:8999 --upstream server:80` pauses its proxy at start
/// and joins the peers of its share in the runtime directory (or in etcd with --etcd). Commands:
/// `shvar cmd peer1 election`, `enqueue ID`, `done ID`, `force [MB]`, `halt [MINUTES]`, unhalt, pause,
/// status, version, peers (or on IRC with --irc). See docs/svcshare.md.
#[derive(Debug, Parser)]
#[command(name = "svcshare", version)]
pub struct Cli {
    /// The share: peers with the same share compete for one resource (1-31 of [A-Za-z0-9_.-])
    #[arg(long, value_name = "NAME", default_value = "share")]
    pub share: String,
    /// The proxy's address: clients connect here (with --upstream)
    #[arg(long, value_name = "ADDR", requires = "upstream")]
    pub listen: Option<String>,
    /// The shared resource the proxy forwards to (with --listen)
    #[arg(long, value_name = "HOST:PORT", requires = "listen")]
    pub upstream: Option<String>,
    /// Start every upstream connection with `SVCSHARE-TOKEN <token> <peer>` so the resource can refuse stale tokens
    #[arg(long)]
    pub stamp: bool,
    /// While paused, hold at most N proxy connections (more are closed at once)
    #[arg(long, value_name = "N", default_value = "64")]
    pub hold_max: usize,
    /// While paused, hold each proxy connection at most this long
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub hold: String,
    /// A framework process to pause and resume through its control socket
    #[arg(long, value_name = "NAME", conflicts_with = "pause_cmd")]
    pub client: Option<String>,
    /// A writable variable of the --client process that carries the grant's token (0 while paused)
    #[arg(long, value_name = "VAR", requires = "client")]
    pub client_token_var: Option<String>,
    /// A command that pauses the client (sh -c; SVCSHARE_TOKEN in its environment)
    #[arg(long, value_name = "COMMAND", requires = "resume_cmd")]
    pub pause_cmd: Option<String>,
    /// A command that resumes the client (sh -c; SVCSHARE_TOKEN in its environment)
    #[arg(long, value_name = "COMMAND", requires = "pause_cmd")]
    pub resume_cmd: Option<String>,
    /// Meet the peers in etcd (its JSON gateway), e.g. http://127.0.0.1:2379
    #[arg(long, value_name = "URL")]
    pub etcd: Option<String>,
    /// Key prefix in etcd
    #[arg(long, value_name = "PREFIX", default_value = "/svcshare")]
    pub etcd_prefix: String,
    /// The lease's time to live (etcd: whole seconds, at least 2)
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub ttl: String,
    /// How often the board is read and the lease kept
    #[arg(long, value_name = "DURATION", default_value = "20ms")]
    pub poll: String,
    /// Join an IRC server, HOST:PORT (plain text)
    #[arg(long, value_name = "HOST:PORT", requires_all = ["channel", "nick"])]
    pub irc: Option<String>,
    /// The IRC channel
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// The bot's IRC nick
    #[arg(long, value_name = "NICK")]
    pub nick: Option<String>,
    /// Nicks that may command the bot (comma-separated)
    #[arg(long, value_name = "NICK,...", value_delimiter = ',')]
    pub irc_allow: Vec<String>,
    /// The channel key: the bot joins with it (and sets it); anyone in the channel may command
    #[arg(long, value_name = "KEY")]
    pub irc_key: Option<String>,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub extras: daqproc::support::cli::Extras,
}

fn dur(opt: &str, s: &str) -> Result<Duration, String> {
    parse_secs(s)
        .map(Duration::from_secs_f64)
        .map_err(|e| format!("--{opt}: {e}"))
}

fn addr(opt: &str, s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("--{opt} {s}: {e} (write HOST:PORT)"))?
        .next()
        .ok_or_else(|| format!("--{opt} {s}: no address"))
}

impl Cli {
    /// The daemon's options, or why not (a usage error).
    pub fn options(&self) -> Result<Options, String> {
        let name = self
            .process
            .name
            .clone()
            .unwrap_or_else(|| "svcshare".into());
        let gate = match (&self.listen, &self.upstream) {
            (Some(l), Some(u)) => Some(GateConfig {
                listen: addr("listen", l)?,
                upstream: addr("upstream", u)?,
                stamp: self.stamp,
                hold_max: self.hold_max,
                hold_for: dur("hold", &self.hold)?,
                peer: name.clone(),
            }),
            _ => None,
        };
        let client = match (&self.client, &self.pause_cmd, &self.resume_cmd) {
            (Some(c), _, _) => Some(Client::Framework(
                shvars::ProcName::new(c).map_err(|e| format!("--client {c}: {e}"))?,
                self.client_token_var.clone(),
            )),
            (None, Some(p), Some(r)) => Some(Client::Commands {
                pause: p.clone(),
                resume: r.clone(),
            }),
            _ => None,
        };
        if gate.is_none() && client.is_none() {
            return Err("nothing to control: give --listen and --upstream (the proxy), --client NAME (a framework process), or --pause-cmd and --resume-cmd".into());
        }
        let irc = match (&self.irc, &self.channel, &self.nick) {
            (Some(s), Some(c), Some(n)) => {
                if !c.starts_with('#') && !c.starts_with('&') {
                    return Err(format!(
                        "--channel {c}: an IRC channel starts with # (quote it: '#share')"
                    ));
                }
                Some(IrcConfig {
                    server: s.clone(),
                    channel: c.clone(),
                    nick: n.clone(),
                    allow: self.irc_allow.clone(),
                    key: self.irc_key.clone(),
                })
            }
            _ => None,
        };
        Ok(Options {
            share: self.share.clone(),
            poll: dur("poll", &self.poll)?,
            ttl: dur("ttl", &self.ttl)?,
            gate,
            client,
            etcd: self.etcd.as_ref().map(|u| EtcdConfig {
                url: u.clone(),
                prefix: self.etcd_prefix.clone(),
            }),
            irc,
        })
    }
}
