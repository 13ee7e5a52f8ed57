//! Network enforcement around a created container, before its process starts: the nftables
//! ruleset inside the container's own network namespace, connectivity from a userspace stack
//! (slirp4netns) when the runtime made the namespace itself, the egress proxy when the policy
//! has host-name rules, the denial log, and the relay that makes a loopback proxy reachable. One place installs rules;
//! `mxc run`, `mxc-runtime` and the shim all come here.

mod audit;
mod hosts;
pub(crate) mod netns;
mod relay;
mod slirp;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use mxc_translate::compile::nftables::{self, NetworkFacts};
use mxc_translate::hosts::HostRule;
use mxc_translate::network::{host_is_loopback, ProxyEndpoint};
use mxc_translate::NetworkPlan;

use crate::egress::{capture::Capture, Egress, EgressAudit, Resolver};

pub use audit::{run_detached_listener, AuditContext, AuditLog};
pub use hosts::resolve_names;
pub use netns::in_netns;

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
pub enum Connectivity {
    /// The runtime created it: connect it through a userspace stack.
    Userspace,
    /// The engine provided it (CNI, Docker, `ctr --with-ns`): rules only.
    EngineProvided,
}

/// Everything set up for one container's network; torn down on drop.
pub struct NetworkAttachment {
    slirp: Option<slirp::Slirp>,
    _audit: Option<audit::AuditListener>,
    _relay: Option<relay::Relay>,
    /// The egress proxy and resolver (host-name rules in a namespace of the runtime's own).
    _capture: Option<Capture>,
    /// Rules in a namespace that outlives the container (the engine's): removed on drop.
    installed: Option<InstalledTable>,
}

/// A table installed in a network namespace that is not the container's alone, held by an
/// open descriptor so that it can be removed after the container's processes are gone.
struct InstalledTable {
    netns: std::fs::File,
    table: String,
}

impl InstalledTable {
    fn remember(pid: i32, table: &str) -> Option<InstalledTable> {
        let netns = std::fs::File::open(format!("/proc/{pid}/ns/net")).ok()?;
        Some(InstalledTable {
            netns,
            table: table.to_string(),
        })
    }
}

impl Drop for InstalledTable {
    fn drop(&mut self) {
        let _ = remove_table(&self.netns, &self.table);
    }
}

/// Deletes `table` in the network namespace open as `netns` (quietly: it may be gone with it).
pub fn remove_table(netns: &std::fs::File, table: &str) -> Result<(), NetworkError> {
    let nft = which("nft").ok_or(NetworkError::MissingTool("nft", "nftables"))?;
    netns::run_in_netns_file(netns, &nft, &["delete", "table", "inet", table], b"")?;
    Ok(())
}

/// Deletes `table` in the network namespace at `path` (an engine-provided namespace).
pub fn remove_table_at(path: &Path, table: &str) -> Result<(), NetworkError> {
    let netns = std::fs::File::open(path)
        .map_err(|e| NetworkError::io(format!("opening {}", path.display()), e))?;
    remove_table(&netns, table)
}

impl std::fmt::Debug for NetworkAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkAttachment")
            .field("slirp", &self.slirp.is_some())
            .finish()
    }
}

/// Exact host names resolved once at start (bundle mode, where the egress proxy does not run
/// yet).
#[derive(Debug, Clone, Default)]
pub struct ResolvedNames {
    pub entries: Vec<(HostRule, Vec<IpAddr>)>,
}

/// Enforces `plan` on the container whose init process is `pid` (created, not started), in a
/// namespace the runtime made itself (`mxc run`). Host-name rules are enforced by the egress
/// proxy, whose upstream lookups use `resolver`.
pub fn attach(
    pid: i32,
    plan: &NetworkPlan,
    resolver: &Resolver,
    audit: Option<AuditContext>,
) -> Result<NetworkAttachment, NetworkError> {
    if let NetworkPlan::Filtered(filter) = plan {
        if !filter.hosts.is_empty() {
            return attach_by_name(pid, filter, resolver, audit);
        }
    }
    attach_as(
        pid,
        plan,
        &ResolvedNames::default(),
        Connectivity::Userspace,
        audit,
        nftables::TABLE,
        nftables::AUDIT_GROUP,
    )
}

/// Egress by name: no userspace stack; the egress proxy and resolver are the sandbox's only
/// way out, and what they do not carry is dropped and logged.
fn attach_by_name(
    pid: i32,
    filter: &mxc_translate::EgressFilter,
    resolver: &Resolver,
    audit: Option<AuditContext>,
) -> Result<NetworkAttachment, NetworkError> {
    let egress_audit = audit.as_ref().map(|context| EgressAudit {
        log: context.log.clone(),
        container_id: context.container_id.clone(),
        policy_sha256: context.policy_sha256.clone(),
    });
    let mut egress = Egress::new(filter, resolver.clone(), egress_audit);
    egress.host_addresses = host_addresses()?;
    let capture = Capture::start(
        pid,
        egress,
        mxc_translate::compile::capture::Namespace::Own,
        nftables::TABLE,
        nftables::AUDIT_GROUP,
    )?;
    let audit = match audit {
        Some(context) => Some(audit::AuditListener::start(pid, context)?),
        None => None,
    };
    Ok(NetworkAttachment {
        slirp: None,
        _audit: audit,
        _relay: None,
        _capture: Some(capture),
        installed: None,
    })
}

fn attach_as(
    pid: i32,
    plan: &NetworkPlan,
    names: &ResolvedNames,
    connectivity: Connectivity,
    audit: Option<AuditContext>,
    table: &str,
    log_group: u16,
) -> Result<NetworkAttachment, NetworkError> {
    let mut facts = NetworkFacts {
        host_addresses: host_addresses()?,
        resolved: names.entries.clone(),
        proxy: Vec::new(),
        table: table.to_string(),
        log_group,
    };
    if connectivity == Connectivity::Userspace {
        // slirp4netns's gateway and DNS addresses lead to the host.
        for address in ["10.0.2.2", "10.0.2.3", "fd00::2", "fd00::3"] {
            facts.host_addresses.push(address.parse().expect("literal"));
        }
    }
    let mut relay_target = None;
    if let NetworkPlan::ProxyOnly { proxy } = plan {
        let (sandbox_side, host_side) = proxy_endpoints(proxy)?;
        facts.proxy = sandbox_side;
        relay_target = host_side;
    }
    let Some(ruleset) = nftables::ruleset(plan, &facts) else {
        // Isolated: a namespace of the runtime's own has loopback only; one the engine provided
        // may have interfaces, so it gets a ruleset that drops everything but loopback.
        let mut attachment = NetworkAttachment {
            slirp: None,
            _audit: None,
            _relay: None,
            _capture: None,
            installed: None,
        };
        if connectivity == Connectivity::EngineProvided {
            install_rules(pid, &isolated_ruleset(table))?;
            attachment.installed = InstalledTable::remember(pid, table);
        }
        return Ok(attachment);
    };
    // Rules before connectivity: there is never a moment with an interface and no rules.
    install_rules(pid, &ruleset)?;
    let installed = match connectivity {
        Connectivity::EngineProvided => InstalledTable::remember(pid, table),
        Connectivity::Userspace => None,
    };
    let audit = match audit {
        Some(context) => Some(audit::AuditListener::start(pid, context)?),
        None => None,
    };
    let relay = match relay_target {
        Some((listen, target)) => Some(relay::Relay::start(pid, listen, target)?),
        None => None,
    };
    // A proxy on host loopback needs only the relay; everything else needs the userspace stack.
    let loopback_proxy_only = relay.is_some() && facts.proxy.iter().all(|p| p.ip().is_loopback());
    let slirp = match connectivity {
        Connectivity::Userspace if !loopback_proxy_only => Some(slirp::Slirp::start(pid)?),
        _ => None,
    };
    Ok(NetworkAttachment {
        slirp,
        _audit: audit,
        _relay: relay,
        _capture: None,
        installed,
    })
}

/// Loopback only, whatever interfaces an engine adds later.
fn isolated_ruleset(table: &str) -> String {
    format!(
        "table inet {table} {{\n  chain output {{ type filter hook output priority 0; policy drop; oif \"lo\" accept; }}\n  \
         chain input {{ type filter hook input priority 0; policy drop; iif \"lo\" accept; }}\n  \
         chain forward {{ type filter hook forward priority 0; policy drop; }}\n}}\n"
    )
}

/// Loads `ruleset` into the network namespace of `pid` with `nft -f -`.
pub fn install_rules(pid: i32, ruleset: &str) -> Result<(), NetworkError> {
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

/// The proxy as the sandbox sees it, and for a host-loopback proxy the relay's listening and
/// target addresses.
#[allow(clippy::type_complexity)]
fn proxy_endpoints(
    proxy: &ProxyEndpoint,
) -> Result<(Vec<SocketAddr>, Option<(SocketAddr, SocketAddr)>), NetworkError> {
    let (host, port) = match proxy {
        ProxyEndpoint::Localhost { port } => ("127.0.0.1".to_string(), *port),
        ProxyEndpoint::Url { host, port, .. } => (host.clone(), *port),
        ProxyEndpoint::BuiltinTestServer => {
            return Err(NetworkError::Relay(
                "the built-in test proxy is not supported".into(),
            ))
        }
    };
    if host_is_loopback(&host) {
        let ip: IpAddr = if host.contains(':') {
            "::1".parse().expect("literal")
        } else {
            "127.0.0.1".parse().expect("literal")
        };
        let at = SocketAddr::new(ip, port);
        // The relay listens on the same loopback address inside the sandbox, so the proxy URL
        // stays literally valid, and forwards to the host's loopback.
        return Ok((vec![at], Some((at, at))));
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| NetworkError::Resolve {
            name: host.clone(),
            reason: e.to_string(),
        })?
        .collect();
    Ok((addresses, None))
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

pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| Path::new(candidate).is_file())
}

impl Drop for NetworkAttachment {
    fn drop(&mut self) {
        if let Some(slirp) = self.slirp.take() {
            slirp.stop();
        }
    }
}

/// Sets `lo` up in the network namespace of `pid` (a fresh namespace has it down).
pub fn bring_up_loopback(pid: i32) -> Result<(), NetworkError> {
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
pub fn engine_provides_network(spec: &serde_json::Value) -> bool {
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
pub fn engine_netns_path(spec: &serde_json::Value) -> Option<PathBuf> {
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

/// Where bundle-mode denials go.
#[derive(Debug, Clone)]
pub struct AuditTarget {
    pub log: PathBuf,
    pub container_id: String,
    pub policy_sha256: String,
    /// The NFLOG group the container's rules log to.
    pub group: u16,
}

/// Bundle mode with a caller that lives as long as the container (the shim).
pub fn attach_bundle(
    pid: i32,
    plan: &NetworkPlan,
    connectivity: Connectivity,
    audit: Option<AuditTarget>,
    table: &str,
) -> Result<NetworkAttachment, NetworkError> {
    if connectivity == Connectivity::Userspace {
        bring_up_loopback(pid)?;
    }
    let names = bundle_names(plan)?;
    let audit = match audit {
        Some(target) => Some(AuditContext {
            log: AuditLog::open(&target.log)?,
            container_id: target.container_id,
            policy_sha256: target.policy_sha256,
            group: target.group,
        }),
        None => None,
    };
    let group = audit.as_ref().map_or(nftables::AUDIT_GROUP, |a| a.group);
    attach_as(pid, plan, &names, connectivity, audit, table, group)
}

fn bundle_names(plan: &NetworkPlan) -> Result<ResolvedNames, NetworkError> {
    match plan {
        NetworkPlan::Filtered(filter) if !filter.hosts.is_empty() => resolve_names(&filter.hosts),
        _ => Ok(ResolvedNames::default()),
    }
}

/// Bundle mode for a caller that exits after create (`mxc-runtime create`): rules now, and
/// the processes that must outlive the caller (userspace stack, denial listener) detached.
/// Returns those processes, which delete stops.
pub fn attach_detached(
    pid: i32,
    plan: &NetworkPlan,
    connectivity: Connectivity,
    audit: Option<AuditTarget>,
    table: &str,
) -> Result<Vec<crate::process::InitProcess>, NetworkError> {
    if connectivity == Connectivity::Userspace {
        bring_up_loopback(pid)?;
    }
    let names = bundle_names(plan)?;
    let mut facts = NetworkFacts {
        host_addresses: host_addresses()?,
        resolved: names.entries.clone(),
        proxy: Vec::new(),
        table: table.to_string(),
        log_group: audit.as_ref().map_or(0, |a| a.group),
    };
    if let NetworkPlan::ProxyOnly { proxy } = plan {
        let (sandbox_side, relay) = proxy_endpoints(proxy)?;
        if relay.is_some() {
            return Err(NetworkError::Relay(
                "a proxy on host loopback is reached through a relay that lives in the runtime; \
                 mxc-runtime exits after create, so use the containerd shim or mxc run, or a \
                 proxy address the container can route to"
                    .into(),
            ));
        }
        facts.proxy = sandbox_side;
    }
    if connectivity == Connectivity::Userspace {
        for address in ["10.0.2.2", "10.0.2.3", "fd00::2", "fd00::3"] {
            facts.host_addresses.push(address.parse().expect("literal"));
        }
    }
    let ruleset = match nftables::ruleset(plan, &facts) {
        Some(ruleset) => ruleset,
        None if connectivity == Connectivity::EngineProvided => isolated_ruleset(table),
        None => return Ok(Vec::new()),
    };
    install_rules(pid, &ruleset)?;
    let mut helpers = Vec::new();
    let started = (|| {
        if let Some(target) = &audit {
            helpers.push(audit::spawn_detached_listener(pid, target)?);
        }
        if connectivity == Connectivity::Userspace && !matches!(plan, NetworkPlan::Isolated) {
            helpers.push(slirp::spawn_detached(pid)?);
        }
        Ok(())
    })();
    if let Err(error) = started {
        stop_helpers(&helpers);
        return Err(error);
    }
    Ok(helpers)
}

/// Stops detached helpers (only processes that are still the ones recorded): SIGTERM, a
/// moment to finish (the denial listener drains its queue once the container is gone), then
/// SIGKILL.
pub fn stop_helpers(helpers: &[crate::process::InitProcess]) {
    use crate::process::Liveness;
    let alive = |h: &crate::process::InitProcess| h.liveness() == Liveness::Alive;
    for helper in helpers.iter().filter(|h| alive(h)) {
        // SAFETY: signalling a process whose pid and start time we recorded.
        unsafe { libc::kill(helper.pid, libc::SIGTERM) };
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while helpers.iter().any(alive) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for helper in helpers.iter().filter(|h| alive(h)) {
        // SAFETY: as above.
        unsafe { libc::kill(helper.pid, libc::SIGKILL) };
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
