//! The network of a `pgfleet up --netns` fleet: one network namespace per
//! host (its agent and PostgreSQL servers run inside), one for clients, each
//! joined by a veth pair to a bridge in the root namespace, which carries the
//! control plane's address. Addresses are a /24 out of 198.18.0.0/15 (the
//! range reserved for benchmarking): no default route, no NAT, nothing routed
//! anywhere else.
//!
//! What a fleet creates is recorded in `DATA_DIR/netns.json` before it is
//! created, so a later `pgfleet up` (or the test kit) removes leftovers of a
//! crashed fleet. Also: entering a namespace from a thread or a child process.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The record of a fleet's network, in the data dir.
pub const FILE: &str = "netns.json";
/// The network faults in force (`faults.rs`), forgotten with the network.
pub const FAULTS_FILE: &str = "faults.json";
/// Serialises allocation of subnets between fleets on this machine.
const LOCK: &str = "/run/pgfleet-netns.lock";
/// /24s in 198.18.0.0/15.
const SUBNETS: u32 = 512;
/// Interface of a member inside its own namespace.
pub const INNER_DEV: &str = "eth0";

/// The address, namespace and veth of one host (or of the clients).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub name: String,
    pub netns: String,
    /// The root-namespace end of the veth pair (on the bridge).
    pub veth: String,
    pub address: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Network {
    /// Index of the fleet's /24 in 198.18.0.0/15; also names its links.
    pub id: u32,
    pub bridge: String,
    /// The bridge's address: the control plane listens there.
    pub bridge_address: Ipv4Addr,
    pub clients: Member,
    pub hosts: Vec<Member>,
}

impl Network {
    /// The names and addresses of fleet `id` with `hosts` hosts (host-N gets .10+N).
    pub fn plan(id: u32, hosts: u32) -> anyhow::Result<Network> {
        anyhow::ensure!(id < SUBNETS, "subnet index {id} is outside 198.18.0.0/15");
        anyhow::ensure!(hosts <= 200, "--netns supports at most 200 hosts");
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + id * 256;
        let prefix = format!("pgf{id}");
        let member = |name: String, veth: String, last: u32| Member {
            netns: format!("{prefix}-{name}"),
            name,
            veth,
            address: Ipv4Addr::from(base + last),
        };
        Ok(Network {
            id,
            bridge: format!("{prefix}br"),
            bridge_address: Ipv4Addr::from(base + 1),
            clients: member("clients".into(), format!("{prefix}c"), 2),
            hosts: (1..=hosts)
                .map(|n| member(format!("host-{n}"), format!("{prefix}h{n}"), 10 + n))
                .collect(),
        })
    }

    pub fn subnet(&self) -> String {
        let base = u32::from(self.bridge_address) - 1;
        format!("{}/24", Ipv4Addr::from(base))
    }

    pub fn host(&self, name: &str) -> Option<&Member> {
        self.hosts.iter().find(|m| m.name == name)
    }

    /// The clients, then every host.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        std::iter::once(&self.clients).chain(self.hosts.iter())
    }
}

pub fn load(data_dir: &Path) -> Option<Network> {
    let text = std::fs::read_to_string(data_dir.join(FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn save(data_dir: &Path, network: &Network) -> anyhow::Result<()> {
    std::fs::write(data_dir.join(FILE), serde_json::to_string_pretty(network)?)
        .with_context(|| format!("recording the network in {}", data_dir.display()))
}

/// Runs `ip ARGS`; the error carries its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    run("ip", args)
}

/// Runs `tc -n NETNS ARGS`.
pub fn tc(netns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    run("tc", &all)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (is iproute2 installed?)"))?;
    if !output.status.success() {
        anyhow::bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn netns_path(netns: &str) -> PathBuf {
    Path::new("/run/netns").join(netns)
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Whether this process may create network namespaces: root, `ip` present,
/// and `ip netns add` works. The error says why not.
pub fn check_available() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("--netns needs root (network namespaces, veth pairs and a bridge)");
    }
    let probe = format!("pgfprobe{}", std::process::id());
    ip(&["netns", "add", &probe]).context("--netns needs network namespaces")?;
    ip(&["netns", "del", &probe])?;
    Ok(())
}

/// Holds the machine-wide allocation lock while alive.
fn lock() -> anyhow::Result<nix::fcntl::Flock<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .with_context(|| format!("opening {LOCK}"))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| anyhow::anyhow!("locking {LOCK}: {errno}"))
}

/// Creates the network of a fleet of `hosts` hosts in `data_dir`. When the
/// fleet's processes still run (`processes_alive`, from
/// `fleet::processes_alive`: the control plane was killed and restarts)
/// its recorded network is kept and completed; otherwise leftovers of an
/// earlier fleet of this data dir are removed first. Returns the network
/// and whether it was adopted.
pub fn setup(
    data_dir: &Path,
    hosts: u32,
    processes_alive: bool,
) -> anyhow::Result<(Network, bool)> {
    check_available()?;
    let _lock = lock()?;
    let previous = load(data_dir);
    if let Some(old) = &previous {
        if processes_alive {
            let network = Network::plan(old.id, hosts.max(old.hosts.len() as u32))?;
            save(data_dir, &network)?;
            create(&network)?;
            return Ok((network, true));
        }
        teardown(old)?;
        println!(
            "removed the leftovers of an earlier fleet of this data dir (bridge {}, {})",
            old.bridge,
            old.subnet()
        );
    }
    let preferred = previous
        .as_ref()
        .map(|n| n.id)
        .unwrap_or_else(|| hash_id(data_dir));
    let used = ip(&["-4", "-o", "addr", "show"])?;
    let id = (0..SUBNETS)
        .map(|offset| (preferred + offset) % SUBNETS)
        .find(|id| subnet_free(*id, &used))
        .context("every /24 of 198.18.0.0/15 is in use")?;
    let network = Network::plan(id, hosts)?;
    save(data_dir, &network)?;
    if let Err(error) = create(&network) {
        let _ = teardown(&network);
        return Err(error);
    }
    Ok((network, false))
}

fn hash_id(data_dir: &Path) -> u32 {
    // FNV-1a: stable across runs (std's hasher is randomly keyed).
    let mut hash: u32 = 0x811c_9dc5;
    for byte in data_dir.as_os_str().as_encoded_bytes() {
        hash = (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
    }
    hash % SUBNETS
}

fn subnet_free(id: u32, addresses: &str) -> bool {
    let Ok(plan) = Network::plan(id, 0) else {
        return false;
    };
    let octets = plan.bridge_address.octets();
    let prefix = format!("inet {}.{}.{}.", octets[0], octets[1], octets[2]);
    !link_exists(&plan.bridge)
        && !netns_path(&plan.clients.netns).exists()
        && !addresses.contains(&prefix)
}

/// Creates what is missing of `network` (idempotent).
fn create(network: &Network) -> anyhow::Result<()> {
    if !link_exists(&network.bridge) {
        ip(&[
            "link",
            "add",
            &network.bridge,
            "type",
            "bridge",
            // Bridged traffic must not go through the machine's iptables.
            "nf_call_iptables",
            "0",
            "nf_call_ip6tables",
            "0",
            "nf_call_arptables",
            "0",
        ])?;
        let address = format!("{}/24", network.bridge_address);
        ip(&["addr", "add", &address, "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
    }
    for member in network.members() {
        create_member(network, member)
            .with_context(|| format!("creating the network of {}", member.name))?;
    }
    Ok(())
}

fn create_member(network: &Network, member: &Member) -> anyhow::Result<()> {
    let ns = member.netns.as_str();
    if !netns_path(ns).exists() {
        ip(&["netns", "add", ns])?;
    }
    if link_exists(&member.veth) {
        return Ok(());
    }
    let inner = format!("{}p", member.veth);
    ip(&[
        "link",
        "add",
        &member.veth,
        "type",
        "veth",
        "peer",
        "name",
        &inner,
        "netns",
        ns,
    ])?;
    let address = format!("{}/24", member.address);
    ip(&["-n", ns, "link", "set", &inner, "name", INNER_DEV])?;
    ip(&["-n", ns, "addr", "add", &address, "dev", INNER_DEV])?;
    ip(&["-n", ns, "link", "set", INNER_DEV, "up"])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&["link", "set", &member.veth, "master", &network.bridge, "up"])?;
    Ok(())
}

/// Removes every namespace, veth and the bridge of `network` that exists.
pub fn teardown(network: &Network) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for member in network.members() {
        if netns_path(&member.netns).exists() {
            if let Err(e) = ip(&["netns", "del", &member.netns]) {
                errors.push(format!("{e:#}"));
            }
        }
        // Gone with its namespace (the kernel removes it a moment later),
        // unless a process still lives in it.
        if link_exists(&member.veth) {
            if let Err(e) = delete_link(&member.veth) {
                errors.push(format!("{e:#}"));
            }
        }
    }
    if link_exists(&network.bridge) {
        if let Err(e) = delete_link(&network.bridge) {
            errors.push(format!("{e:#}"));
        }
    }
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
    Ok(())
}

/// `ip link del NAME`; a link that vanished meanwhile is not an error.
fn delete_link(name: &str) -> anyhow::Result<()> {
    match ip(&["link", "del", name]) {
        Err(error) if link_exists(name) => Err(error),
        _ => Ok(()),
    }
}

/// Tears down the network recorded in `data_dir`, if any, and forgets it.
pub fn teardown_recorded(data_dir: &Path) -> anyhow::Result<Option<Network>> {
    let Some(network) = load(data_dir) else {
        return Ok(None);
    };
    let _lock = lock()?;
    teardown(&network)?;
    let _ = std::fs::remove_file(data_dir.join(FILE));
    let _ = std::fs::remove_file(data_dir.join(FAULTS_FILE));
    Ok(Some(network))
}

/// Opens a namespace for `setns`.
pub fn open(netns: &str) -> anyhow::Result<File> {
    File::open(netns_path(netns)).with_context(|| format!("opening network namespace {netns}"))
}

/// Moves the calling thread (only it) into `netns`.
pub fn enter(netns: &str) -> anyhow::Result<()> {
    let file = open(netns)?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {netns}"))
}

/// A command whose process runs in `netns`.
pub fn command(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> anyhow::Result<Command> {
    use std::os::unix::process::CommandExt;
    let file = open(netns)?;
    let mut command = Command::new(program);
    // SAFETY: setns is a single system call, safe between fork and exec.
    unsafe {
        command.pre_exec(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    Ok(command)
}

/// Runs `work` to completion on a thread of its own inside `netns`, with a
/// current-thread tokio runtime: every socket it opens (PostgreSQL, DNS)
/// belongs to that namespace. Blocks the caller; see [`spawn_in`] for an
/// async caller.
pub fn run_in<T, F, Fut>(netns: &str, work: F) -> anyhow::Result<T>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = T>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(netns)?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                Ok(runtime.block_on(work()))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread in {netns} panicked"))?
    })
}

/// [`run_in`] for async callers: a dedicated thread runs `work` in `netns`
/// while the caller awaits its result (e.g. a load generator running in the
/// clients' namespace while the test injects faults).
pub fn spawn_in<T, F, Fut>(
    netns: &str,
    work: F,
) -> impl std::future::Future<Output = anyhow::Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let (done, result) = tokio::sync::oneshot::channel();
    let netns = netns.to_string();
    std::thread::spawn(move || {
        let outcome = (|| {
            enter(&netns)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(runtime.block_on(work()))
        })();
        let _ = done.send(outcome);
    });
    async move {
        result
            .await
            .map_err(|_| anyhow::anyhow!("the thread in a network namespace panicked"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_fit_interface_names_and_the_benchmark_range() {
        let network = Network::plan(SUBNETS - 1, 200).unwrap();
        assert_eq!(network.subnet(), "198.19.255.0/24");
        assert_eq!(network.clients.address, Ipv4Addr::new(198, 19, 255, 2));
        assert_eq!(network.hosts[199].address, Ipv4Addr::new(198, 19, 255, 210));
        for member in network.members() {
            assert!(member.veth.len() <= 15, "{}", member.veth);
            assert!(format!("{}p", member.veth).len() <= 15);
        }
        assert!(network.bridge.len() <= 15);
        assert_eq!(Network::plan(0, 1).unwrap().subnet(), "198.18.0.0/24");
        assert!(Network::plan(SUBNETS, 1).is_err());
    }

    #[test]
    fn the_preferred_subnet_is_stable_per_data_dir() {
        assert_eq!(hash_id(Path::new("/tmp/a")), hash_id(Path::new("/tmp/a")));
        assert!(hash_id(Path::new("/tmp/b")) < SUBNETS);
    }
}
