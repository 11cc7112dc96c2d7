//! Hosts of their own: one Linux network namespace per node, each with one veth into a
//! bridge in the testbed's namespace and one address on it, so nodes talk over a real
//! (virtual) Ethernet and a node is cut off by `ip link set <its veth> down`.
//!
//! Everything is named after the testbed's pid (`twtb<pid>n<i>` namespaces, `twb<pid>`
//! bridge, `twh<pid>x<i>` veths): a run removes what it made on every exit path it sees
//! (Drop, also after a panic or Ctrl-C), and a run that was killed outright is swept by the
//! next one, which removes resources whose pid no longer runs, and only those.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use anyhow::{bail, Context};
use tinyweb_node::cluster::NodeAddress;

/// The prefix of every name we create; nothing else is ever touched.
const NS_PREFIX: &str = "twtb";
const BRIDGE_PREFIX: &str = "twb";
const VETH_PREFIX: &str = "twh";
/// Nodes listen on this port, each on its own address.
pub const PORT: u16 = 8700;

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2): is it installed?")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Left by a run that no longer runs. Our own pid counts as stale too: before this run
/// made anything, whatever carries its pid was left by an earlier run that had it.
fn is_stale(owner: u32) -> bool {
    owner == std::process::id() || !std::path::Path::new(&format!("/proc/{owner}")).exists()
}

/// The network of one testbed run.
#[derive(Debug)]
pub struct NetnsNetwork {
    owner: u32,
    /// 10.201.`subnet`.0/24: the bridge is .1, node i is .(10 + i).
    subnet: u8,
    /// Hosts made so far (node ids 0..hosts).
    hosts: usize,
    bridge_made: bool,
}

impl NetnsNetwork {
    /// Checks we can (root, `ip`), sweeps what killed runs left, picks a free /24 and makes
    /// the bridge.
    pub fn create() -> anyhow::Result<Self> {
        if !rustix::process::geteuid().is_root() {
            bail!("--netns needs root (it creates network namespaces, veths and a bridge)");
        }
        ip(&["-V"])?;
        for removed in sweep_stale()? {
            eprintln!("testbed: removed {removed}, left by a run that no longer runs");
        }
        let owner = std::process::id();
        let used = ip(&["-o", "-4", "addr", "show"])?;
        let start = (owner % 250) as u8;
        let subnet = (0..250u8)
            .map(|k| start.wrapping_add(k) % 250)
            .find(|k| !used.contains(&format!("10.201.{k}.")))
            .context("no free 10.201.x.0/24 subnet for the testbed bridge")?;
        let mut net = Self {
            owner,
            subnet,
            hosts: 0,
            bridge_made: false,
        };
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        net.bridge_made = true;
        // Traffic between the nodes stays on the bridge: with br_netfilter loaded, bridged
        // frames would otherwise pass the host's iptables FORWARD chain, which a host
        // running containers often sets to DROP. (Older kernels lack the knob: then the
        // host's rules apply, as they would between real machines.)
        let _ = ip(&[
            "link",
            "set",
            &bridge,
            "type",
            "bridge",
            "nf_call_iptables",
            "0",
        ]);
        ip(&[
            "addr",
            "add",
            &format!("10.201.{subnet}.1/24"),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{BRIDGE_PREFIX}{}", self.owner)
    }

    pub fn namespace(&self, i: usize) -> String {
        format!("{NS_PREFIX}{}n{i}", self.owner)
    }

    fn veth(&self, i: usize) -> String {
        format!("{VETH_PREFIX}{}x{i}", self.owner)
    }

    pub fn address(&self, i: usize) -> SocketAddr {
        let host = u8::try_from(10 + i).unwrap_or(u8::MAX);
        SocketAddr::from((Ipv4Addr::new(10, 201, self.subnet, host), PORT))
    }

    /// Makes hosts up to `i` (inclusive): namespace, veth into the bridge, address, up.
    pub fn add_host(&mut self, i: usize) -> anyhow::Result<NodeAddress> {
        while self.hosts <= i {
            let k = self.hosts;
            let (ns, veth) = (self.namespace(k), self.veth(k));
            ip(&["netns", "add", &ns])?;
            self.hosts += 1;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &self.bridge(), "up"])?;
            let cidr = format!("{}/24", self.address(k).ip());
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(NodeAddress::at(self.address(i)))
    }

    /// What goes in front of `tinyweb run` to start node `i` on its host.
    pub fn wrapper(&self, i: usize) -> Vec<OsString> {
        ["ip", "netns", "exec"]
            .into_iter()
            .map(OsString::from)
            .chain([OsString::from(self.namespace(i))])
            .collect()
    }

    /// Cuts node `i` off (its cable pulled: nothing in or out, also not from us).
    pub fn cut(&self, i: usize) -> anyhow::Result<()> {
        ip(&["link", "set", &self.veth(i), "down"]).map(drop)
    }

    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        ip(&["link", "set", &self.veth(i), "up"]).map(drop)
    }

    /// Removes every namespace, veth and the bridge this run made. Idempotent; errors are
    /// reported, not raised (it runs on the way out).
    pub fn teardown(&mut self) {
        for k in (0..self.hosts).rev() {
            let _ = ip(&["link", "del", &self.veth(k)]);
            if let Err(e) = ip(&["netns", "del", &self.namespace(k)]) {
                eprintln!("testbed: {e:#}");
            }
        }
        self.hosts = 0;
        if self.bridge_made {
            if let Err(e) = ip(&["link", "del", &self.bridge()]) {
                eprintln!("testbed: {e:#}");
            }
            self.bridge_made = false;
        }
    }
}

impl Drop for NetnsNetwork {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The pid in a name `prefix<pid>[n|x]<i>` or `prefix<pid>`.
fn owner_of(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let tail = &rest[digits.len()..];
    let well_formed = tail.is_empty()
        || (tail.len() > 1
            && (tail.starts_with('n') || tail.starts_with('x'))
            && tail[1..].chars().all(|c| c.is_ascii_digit()));
    (well_formed && !digits.is_empty())
        .then(|| digits.parse().ok())
        .flatten()
}

/// Testbed resources whose owner no longer runs: their processes are killed (they are
/// nodes in our namespaces), then the namespaces, veths and bridges removed. Called before
/// this run makes anything.
pub fn sweep_stale() -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    let namespaces = ip(&["netns", "list"])?;
    for ns in namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        let Some(owner) = owner_of(ns, NS_PREFIX) else {
            continue;
        };
        if !is_stale(owner) {
            continue;
        }
        if let Ok(pids) = ip(&["netns", "pids", ns]) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        ip(&["netns", "del", ns])?;
        removed.push(format!("namespace {ns}"));
    }
    let links = ip(&["-o", "link", "show"])?;
    for link in links.lines() {
        // "7: twh123x1@if2: <...> ..."
        let Some(name) = link
            .split(": ")
            .nth(1)
            .map(|n| n.split('@').next().unwrap_or(n))
        else {
            continue;
        };
        let owner = owner_of(name, VETH_PREFIX).or_else(|| owner_of(name, BRIDGE_PREFIX));
        if owner.is_some_and(is_stale) {
            // A veth may already be gone with its namespace's end.
            if ip(&["link", "del", name]).is_ok() {
                removed.push(format!("link {name}"));
            }
        }
    }
    Ok(removed)
}

/// Namespaces and links of the run `owner` that exist now (none after a teardown).
pub fn leftovers(owner: u32) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for ns in ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        if owner_of(ns, NS_PREFIX) == Some(owner) {
            found.push(format!("namespace {ns}"));
        }
    }
    for link in ip(&["-o", "link", "show"])?.lines() {
        if let Some(name) = link
            .split(": ")
            .nth(1)
            .map(|n| n.split('@').next().unwrap_or(n))
        {
            if owner_of(name, VETH_PREFIX) == Some(owner)
                || owner_of(name, BRIDGE_PREFIX) == Some(owner)
            {
                found.push(format!("link {name}"));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_names_are_recognised() {
        assert_eq!(owner_of("twtb123n4", NS_PREFIX), Some(123));
        assert_eq!(owner_of("twh99x10", VETH_PREFIX), Some(99));
        assert_eq!(owner_of("twb77", BRIDGE_PREFIX), Some(77));
        for other in [
            "twtb", "twtbn1", "twtb12y3", "twtb12n", "twtb1n2x", "eth0", "twb77a",
        ] {
            assert_eq!(
                owner_of(other, NS_PREFIX).or(owner_of(other, BRIDGE_PREFIX)),
                None,
                "{other}"
            );
        }
    }
}
