//! Network enforcement around a created container, before its process starts: the nftables
//! ruleset inside the container's own network namespace, connectivity from a userspace stack
//! (slirp4netns) when the runtime made the namespace itself, the egress proxy when the policy
//! has host-name rules, the denial log, and the relay that makes a loopback proxy reachable.
//! One place installs rules; `mxc run`, `mxc-runtime` and the shim all come here, in two
//! steps: `plan` decides (pure), `apply` does. Outside the engine, what shows is the tools it
//! needs ([`missing_tools`], [`which`]) and the egress proxy's upstream [`Resolver`].

mod apply;
pub(crate) mod netns;
mod plan;
mod relay;
mod slirp;
pub(crate) mod tables;

use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use mxc_translate::network::{host_is_loopback, ProxyEndpoint};
use mxc_translate::NetworkPlan;

pub use crate::egress::Resolver;
pub(crate) use apply::apply;
pub(crate) use netns::in_netns;
pub(crate) use plan::{plan, EgressProxy, HostNetwork, Lifetime, PlanOptions};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "{0} is not installed (needed to enforce the network policy); install the {1} package"
    )]
    MissingTool(&'static str, &'static str),
    #[error("installing the network rules failed: {0}")]
    Rules(String),
    #[error("the userspace network stack (slirp4netns) failed: {0}")]
    Slirp(String),
    #[error("resolving {name} for the network policy failed: {reason}")]
    Resolve { name: String, reason: String },
    #[error("the proxy relay failed: {0}")]
    Relay(String),
    #[error("the egress proxy: {0}")]
    Egress(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl NetworkError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> NetworkError {
        NetworkError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Where the container's network namespace came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connectivity {
    /// The runtime created it: connect it through a userspace stack.
    Userspace,
    /// The engine provided it (CNI, Docker, `ctr --with-ns`): rules only.
    EngineProvided,
}

/// Deletes `table` in the network namespace open as `netns` (quietly: it may be gone with it).
pub(crate) fn remove_table(netns: &std::fs::File, table: &str) -> Result<(), NetworkError> {
    let nft = which("nft").ok_or(NetworkError::MissingTool("nft", "nftables"))?;
    netns::run_in_netns_file(netns, &nft, &["delete", "table", "inet", table], b"")?;
    Ok(())
}

/// Deletes `table` in the network namespace at `path` (an engine-provided namespace).
pub(crate) fn remove_table_at(path: &Path, table: &str) -> Result<(), NetworkError> {
    let netns = std::fs::File::open(path)
        .map_err(|e| NetworkError::io(format!("opening {}", path.display()), e))?;
    remove_table(&netns, table)
}

/// Loads `ruleset` into the network namespace of `pid` with `nft -f -`.
pub(crate) fn install_rules(pid: i32, ruleset: &str) -> Result<(), NetworkError> {
    // Never the runtime's own (the host's) namespace, whatever a spec says.
    if same_netns(pid) {
        return Err(NetworkError::Rules(format!(
            "process {pid} shares the host's network namespace; refusing to install sandbox rules there"
        )));
    }
    let nft = which("nft").ok_or(NetworkError::MissingTool("nft", "nftables"))?;
    let output = netns::run_in_netns(pid, &nft, &["-f", "-"], ruleset.as_bytes())?;
    if !output.status.success() {
        return Err(NetworkError::Rules(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Every address of the host's own interfaces: reaching one from the sandbox reaches the host.
fn host_addresses() -> Result<Vec<IpAddr>, NetworkError> {
    let mut out = Vec::new();
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| NetworkError::io("listing the host's addresses", e.into()))?;
    for ifaddr in addrs {
        let Some(address) = ifaddr.address else {
            continue;
        };
        let ip = if let Some(v4) = address.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = address.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if ip.is_loopback() || matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80) {
            continue;
        }
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

impl HostNetwork {
    /// What planning `policy` needs to know about this host.
    pub fn gather(policy: &NetworkPlan) -> Result<HostNetwork, NetworkError> {
        let proxy = match policy {
            NetworkPlan::ProxyOnly {
                proxy: ProxyEndpoint::Url { host, port, .. },
            } if !host_is_loopback(host) => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                (bare, *port)
                    .to_socket_addrs()
                    .map_err(|e| NetworkError::Resolve {
                        name: host.clone(),
                        reason: e.to_string(),
                    })?
                    .collect()
            }
            _ => Vec::new(),
        };
        Ok(HostNetwork {
            addresses: host_addresses()?,
            proxy,
        })
    }
}

/// What this host lacks for network policies beyond an isolated sandbox: one sentence per
/// missing tool (empty when filtered egress and proxies can be enforced).
pub fn missing_tools() -> Vec<String> {
    [
        ("nft", "nftables", "egress rules and proxies"),
        (
            "slirp4netns",
            "slirp4netns",
            "egress and proxies from one-shot sandboxes",
        ),
    ]
    .into_iter()
    .filter(|(tool, _, _)| which(tool).is_none())
    .map(|(tool, package, what)| {
        format!("{tool} is not installed (package {package}): configs that need {what} are refused")
    })
    .collect()
}

/// Where `tool` is: on `PATH`, then in the system directories (the engine runs network tools
/// found either way).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| Path::new(candidate).is_file())
}

/// Sets `lo` up in the network namespace of `pid` (a fresh namespace has it down).
pub(crate) fn bring_up_loopback(pid: i32) -> Result<(), NetworkError> {
    in_netns(pid, || {
        // SAFETY: a plain datagram socket used only for interface ioctls, closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: ifreq is plain data; the name is NUL-terminated within IFNAMSIZ.
        let result = unsafe {
            let mut request: libc::ifreq = std::mem::zeroed();
            request.ifr_name[..2].copy_from_slice(&[b'l' as libc::c_char, b'o' as libc::c_char]);
            if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut request) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                if libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &request) < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            }
        };
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(fd) };
        result
    })
}

/// Whether the spec's network namespace belongs to the engine: a path to join (CNI, `ctr
/// --with-ns`), or Docker's libnetwork hook that configures it. Such a namespace gets rules
/// only; the engine provides connectivity.
pub(crate) fn engine_provides_network(spec: &serde_json::Value) -> bool {
    let joins = spec["linux"]["namespaces"].as_array().is_some_and(|list| {
        list.iter()
            .any(|ns| ns["type"] == "network" && ns["path"].as_str().is_some_and(|p| !p.is_empty()))
    });
    let hook = |stage: &str| {
        spec["hooks"][stage].as_array().is_some_and(|hooks| {
            hooks.iter().any(|h| {
                h["args"].as_array().is_some_and(|args| {
                    args.iter()
                        .any(|a| a.as_str().is_some_and(|a| a.contains("libnetwork-setkey")))
                })
            })
        })
    };
    joins || hook("prestart") || hook("createRuntime")
}

/// The path of the engine's network namespace the spec joins, if any.
pub(crate) fn engine_netns_path(spec: &serde_json::Value) -> Option<PathBuf> {
    spec["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find_map(|ns| {
            (ns["type"] == "network")
                .then(|| ns["path"].as_str())
                .flatten()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        })
}

/// Where a container's denials go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditTarget {
    pub audit: crate::audit::ContainerAudit,
    /// The NFLOG group the container's rules log to.
    pub group: u16,
    /// Where a detached listener reports records it could not write (read at delete).
    pub failure_report: Option<PathBuf>,
}

/// Stops detached helpers (only processes that are still the ones recorded): SIGTERM, a
/// moment to finish (the denial listener drains its queue once the container is gone), then
/// SIGKILL.
pub(crate) fn stop_helpers(helpers: &[crate::process::InitProcess]) {
    // Each pidfd is opened while its process is known to be the recorded one: the signals and
    // the wait reach that process alone, and the wait ends the moment it exits.
    let running: Vec<_> = helpers
        .iter()
        .filter_map(crate::process::InitProcess::open_pidfd)
        .collect();
    for helper in &running {
        let _ = helper.send_signal(libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    for helper in &running {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !helper.wait_exit(Some(left)).unwrap_or(false) {
            let _ = helper.send_signal(libc::SIGKILL);
        }
    }
}

/// Kills detached userspace stacks (only processes that are still the ones recorded) without
/// waiting for them: nothing of theirs needs to finish, and the kernel's teardown of a stack's
/// tap device after the kill takes tens of milliseconds (an RCU grace period), which the caller
/// need not wait out. Whoever is their parent reaps them (init, or the shim's reaper).
pub(crate) fn kill_stacks(stacks: &[crate::process::InitProcess]) {
    for stack in stacks
        .iter()
        .filter_map(crate::process::InitProcess::open_pidfd)
    {
        let _ = stack.send_signal(libc::SIGKILL);
    }
}

fn same_netns(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(format!("/proc/{pid}/ns/net")),
        std::fs::metadata("/proc/self/ns/net"),
    ) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => true,
    }
}
