//! Network faults of a `--netns` fleet: isolate a host, cut one link, slow a
//! host's link, heal. Active faults are recorded in `DATA_DIR/faults.json`
//! (so `heal` works from another process) and the network is made to match
//! the whole record each time: every fault is reversible by construction.
//!
//! A cut between A and B is a permanent neighbour (ARP) entry, in A for B's
//! address and in B for A's, pointing at a MAC address nobody has: packets
//! leave and vanish on the bridge, in both directions, silently (senders see
//! timeouts, as in a real partition, not errors). `slow` is `tc netem` on the
//! host's end of its link (what the host sends is delayed or lost).

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::netns::{self, Network, INNER_DEV};

/// The record of active faults, in the data dir.
pub const FILE: &str = netns::FAULTS_FILE;
/// A locally administered unicast address no interface of the fleet has.
const NOWHERE_MAC: &str = "02:70:67:66:00:00";

/// One side of a link: a host, the control plane (API and DNS on the
/// bridge) or the clients' namespace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    Host(String),
    ControlPlane,
    Clients,
}

impl Peer {
    /// `control-plane`, `clients` or a host name.
    pub fn parse(text: &str) -> Peer {
        match text {
            "control-plane" => Peer::ControlPlane,
            "clients" => Peer::Clients,
            host => Peer::Host(host.to_string()),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Host(name) => f.write_str(name),
            Peer::ControlPlane => f.write_str("control-plane"),
            Peer::Clients => f.write_str("clients"),
        }
    }
}

/// netem parameters of `host slow`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Slowness {
    pub delay_ms: u64,
    pub jitter_ms: u64,
    pub loss_percent: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    Isolate { host: String },
    Cut { host: String, peer: Peer },
    Slow { host: String, slowness: Slowness },
}

impl Fault {
    /// Whether healing `host` undoes this fault (it is one of its sides).
    fn involves(&self, host: &str) -> bool {
        match self {
            Fault::Isolate { host: h } | Fault::Slow { host: h, .. } => h == host,
            Fault::Cut { host: h, peer } => h == host || *peer == Peer::Host(host.to_string()),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Isolate { host } => write!(f, "{host} isolated"),
            Fault::Cut { host, peer } => write!(f, "{host} cut from {peer}"),
            Fault::Slow { host, slowness } => write!(
                f,
                "{host} slowed (delay {} ms, jitter {} ms, loss {} %)",
                slowness.delay_ms, slowness.jitter_ms, slowness.loss_percent
            ),
        }
    }
}

/// The active faults of the fleet in `data_dir`.
pub fn active(data_dir: &Path) -> Vec<Fault> {
    std::fs::read_to_string(data_dir.join(FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn network(data_dir: &Path, verb: &str) -> anyhow::Result<Network> {
    netns::load(data_dir).with_context(|| {
        format!(
            "`host {verb}` needs a fleet started with `pgfleet up --netns`; the fleet in {} \
             runs on loopback addresses, where hosts cannot be cut from each other",
            data_dir.display()
        )
    })
}

fn lock(data_dir: &Path) -> anyhow::Result<nix::fcntl::Flock<File>> {
    let file = File::create(data_dir.join("faults.lock"))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| anyhow::anyhow!("locking the fault record: {errno}"))
}

/// Adds `fault`, applies the record; returns what was done, for printing.
pub fn inject(data_dir: &Path, fault: Fault) -> anyhow::Result<String> {
    let verb = match &fault {
        Fault::Isolate { .. } => "isolate",
        Fault::Cut { .. } => "cut",
        Fault::Slow { .. } => "slow",
    };
    let network = network(data_dir, verb)?;
    let _lock = lock(data_dir)?;
    let (host, detail) = match &fault {
        Fault::Isolate { host } => (host, "every link, both directions".to_string()),
        Fault::Cut { host, peer } => {
            let peer_address = address(&network, peer)?;
            anyhow::ensure!(
                *peer != Peer::Host(host.clone()),
                "cannot cut {host} from itself"
            );
            (host, format!("both directions, {peer_address} unreachable"))
        }
        Fault::Slow { host, slowness } => {
            anyhow::ensure!(
                (0.0..=100.0).contains(&slowness.loss_percent),
                "--loss must be between 0 % and 100 %"
            );
            (host, "tc netem on what the host sends".to_string())
        }
    };
    let member = network.host(host).with_context(|| {
        format!(
            "unknown host {host:?} (hosts: host-1 … host-{})",
            network.hosts.len()
        )
    })?;
    let mut faults = active(data_dir);
    if let Fault::Slow { .. } = fault {
        faults.retain(|f| !matches!(f, Fault::Slow { host: h, .. } if h == host));
    }
    if !faults.contains(&fault) {
        faults.push(fault.clone());
    }
    if let Err(error) = apply(&network, &faults) {
        // Put the network back as the record says.
        let _ = apply(&network, &active(data_dir));
        return Err(error);
    }
    save(data_dir, &faults)?;
    Ok(format!(
        "{fault} ({}, {detail}); undo with `pgfleet host heal {host}`",
        member.address
    ))
}

/// Removes every fault of `host` (where it is either side), or every fault.
pub fn heal(data_dir: &Path, host: Option<&str>) -> anyhow::Result<String> {
    let network = network(data_dir, "heal")?;
    let _lock = lock(data_dir)?;
    if let Some(host) = host {
        anyhow::ensure!(network.host(host).is_some(), "unknown host {host:?}");
    }
    let mut faults = active(data_dir);
    let (healed, kept): (Vec<Fault>, Vec<Fault>) = faults
        .drain(..)
        .partition(|f| host.is_none_or(|h| f.involves(h)));
    apply(&network, &kept)?;
    save(data_dir, &kept)?;
    let scope = host.unwrap_or("all hosts");
    if healed.is_empty() {
        return Ok(format!("{scope}: no fault to heal"));
    }
    let list: Vec<String> = healed.iter().map(|f| f.to_string()).collect();
    Ok(format!("{scope} healed: {}", list.join(", ")))
}

fn save(data_dir: &Path, faults: &[Fault]) -> anyhow::Result<()> {
    std::fs::write(data_dir.join(FILE), serde_json::to_string_pretty(faults)?)
        .context("recording the faults")
}

fn address(network: &Network, peer: &Peer) -> anyhow::Result<Ipv4Addr> {
    Ok(match peer {
        Peer::ControlPlane => network.bridge_address,
        Peer::Clients => network.clients.address,
        Peer::Host(name) => {
            network
                .host(name)
                .with_context(|| {
                    format!("unknown peer {name:?} (a host name, control-plane or clients)")
                })?
                .address
        }
    })
}

/// Where `peer`'s side of a link lives: (namespace or None for the root, device).
fn side<'a>(network: &'a Network, peer: &Peer) -> anyhow::Result<(Option<&'a str>, &'a str)> {
    Ok(match peer {
        Peer::ControlPlane => (None, network.bridge.as_str()),
        Peer::Clients => (Some(network.clients.netns.as_str()), INNER_DEV),
        Peer::Host(name) => (
            Some(network.host(name).context("unknown host")?.netns.as_str()),
            INNER_DEV,
        ),
    })
}

fn ip_at(netns: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
    let mut all = Vec::new();
    if let Some(ns) = netns {
        all.extend(["-n", ns]);
    }
    all.extend_from_slice(args);
    netns::ip(&all)
}

/// Makes the network match `faults` exactly (idempotent).
fn apply(network: &Network, faults: &[Fault]) -> anyhow::Result<()> {
    let mut every_side = vec![Peer::ControlPlane, Peer::Clients];
    every_side.extend(network.hosts.iter().map(|m| Peer::Host(m.name.clone())));
    let mut cuts = BTreeSet::new();
    for fault in faults {
        match fault {
            Fault::Isolate { host } => {
                let me = Peer::Host(host.clone());
                for other in every_side.iter().filter(|p| **p != me) {
                    cuts.insert((me.clone(), other.clone()));
                }
            }
            Fault::Cut { host, peer } => {
                cuts.insert((Peer::Host(host.clone()), peer.clone()));
            }
            Fault::Slow { .. } => {}
        }
    }
    for peer in &every_side {
        let (ns, dev) = side(network, peer)?;
        ip_at(ns, &["neigh", "flush", "dev", dev, "nud", "permanent"])?;
    }
    for (a, b) in &cuts {
        for (from, to) in [(a, b), (b, a)] {
            let (ns, dev) = side(network, from)?;
            let unreachable = address(network, to)?.to_string();
            ip_at(
                ns,
                &[
                    "neigh",
                    "replace",
                    &unreachable,
                    "lladdr",
                    NOWHERE_MAC,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            )?;
        }
    }
    for member in &network.hosts {
        let current = netns::tc(&member.netns, &["qdisc", "show", "dev", INNER_DEV])?;
        if current.contains("netem") {
            netns::tc(&member.netns, &["qdisc", "del", "dev", INNER_DEV, "root"])?;
        }
    }
    for fault in faults {
        if let Fault::Slow { host, slowness } = fault {
            let member = network.host(host).context("unknown host")?;
            let delay = format!("{}ms", slowness.delay_ms);
            let jitter = format!("{}ms", slowness.jitter_ms);
            let loss = format!("{}%", slowness.loss_percent);
            let mut args = vec!["qdisc", "replace", "dev", INNER_DEV, "root", "netem"];
            args.extend(["delay", &delay, &jitter, "loss", &loss]);
            netns::tc(&member.netns, &args).map_err(|error| {
                if format!("{error:#}").contains("qdisc kind is unknown") {
                    anyhow::anyhow!(
                        "this kernel has no netem queueing discipline (CONFIG_NET_SCH_NETEM, \
                         module sch_netem): `host slow` cannot run here ({error:#})"
                    )
                } else {
                    error
                }
            })?;
        }
    }
    Ok(())
}

/// Whether `tc netem` works on this machine (probed in a scratch namespace).
pub fn netem_available() -> anyhow::Result<()> {
    let probe = format!("pgfnetem{}", std::process::id());
    netns::ip(&["netns", "add", &probe])?;
    let outcome = netns::tc(
        &probe,
        &["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
    );
    let _ = netns::ip(&["netns", "del", &probe]);
    outcome.map(|_| ()).context("tc netem is unavailable")
}

/// `200ms`, `1s`, `0` → milliseconds.
pub fn parse_millis(text: &str) -> Result<u64, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1000)
    } else {
        (text, 1)
    };
    number
        .trim()
        .parse::<u64>()
        .map(|n| n * scale)
        .map_err(|_| format!("{text:?}: expected a duration such as 200ms or 1s"))
}

/// `5%` or `5` → 5.0.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    text.trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or_else(|| format!("{text:?}: expected a percentage such as 5%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_percentages_parse() {
        assert_eq!(parse_millis("200ms"), Ok(200));
        assert_eq!(parse_millis("2s"), Ok(2000));
        assert_eq!(parse_millis("0"), Ok(0));
        assert!(parse_millis("fast").is_err());
        assert_eq!(parse_percent("5%"), Ok(5.0));
        assert!(parse_percent("150%").is_err());
    }

    #[test]
    fn healing_a_host_undoes_cuts_where_it_is_the_peer() {
        let cut = Fault::Cut {
            host: "host-1".into(),
            peer: Peer::parse("host-2"),
        };
        assert!(cut.involves("host-1") && cut.involves("host-2"));
        assert!(!cut.involves("host-3"));
        assert!(!Fault::Cut {
            host: "host-1".into(),
            peer: Peer::parse("clients")
        }
        .involves("clients"));
    }
}
