//! `mxc explain`: for each policy field, what enforces it. Written for a security reviewer.

use serde::Serialize;

use crate::compile::seccomp;
use crate::network::{Peer, PortSelector, Protocol, ProxyEndpoint, Rule};
use crate::policy::{MountAction, NetworkPlan, Policy, Profile};
use crate::resolve::BASELINE;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The policy field (JSON path) or the guarantee.
    pub field: String,
    /// What the policy asks, in short.
    pub setting: String,
    /// The mechanism that enforces it.
    pub enforced_by: String,
}

fn row(
    field: impl Into<String>,
    setting: impl Into<String>,
    enforced_by: impl Into<String>,
) -> Row {
    Row {
        field: field.into(),
        setting: setting.into(),
        enforced_by: enforced_by.into(),
    }
}

pub fn explain(policy: &Policy) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Some(line) = &policy.command_line {
        rows.push(row(
            "process.commandLine",
            truncate(line),
            "process.args = [\"/bin/sh\", \"-c\", commandLine]: shell source, never split",
        ));
    }
    if let Some(cwd) = &policy.cwd {
        rows.push(row(
            "process.cwd",
            cwd.display().to_string(),
            "process.cwd (checked visible inside the sandbox before start), PWD",
        ));
    }
    rows.push(row(
        "process.env",
        format!("{} variable(s)", policy.env.len()),
        if policy.env_verbatim {
            "process.env exactly as listed, on MXC's default TERM and PATH when env is omitted or \
             inheritDefaultEnv is set (nothing inherited from the caller)"
        } else {
            "process.env exactly as listed (nothing inherited from the caller); PATH defaulted \
             when absent"
        },
    ));
    rows.push(row(
        "process.timeout",
        policy
            .timeout_ms
            .map_or("none".to_string(), |ms| format!("{ms} ms")),
        match policy.timeout_ms {
            Some(_) => "runtime timer from start: SIGKILL to the pid-namespace init (every descendant dies), exit 255 with MXC's message",
            None => "no deadline",
        },
    ));

    match &policy.profile {
        Profile::HostBaseline => rows.push(row(
            "containment",
            policy.containment.clone(),
            format!(
                "empty read-only root; read-only recursive binds (ro, rro, nosuid, nodev) of the \
                 host baseline that exists: {}; private tmpfs /tmp; fresh /proc and /dev",
                BASELINE.join(" ")
            ),
        )),
        Profile::Rootfs { path, .. } => rows.push(row(
            "containment",
            policy.containment.clone(),
            format!(
                "root filesystem {} mounted read-only; private tmpfs /tmp",
                path.display()
            ),
        )),
        Profile::Bundle => rows.push(row(
            "containment",
            policy.containment.clone(),
            "the engine's image root filesystem and mounts, policy mounts added after them",
        )),
    }
    for step in &policy.mounts {
        let destination = step.destination.display();
        let enforced = match &step.action {
            MountAction::Bind {
                source,
                readonly: true,
                ..
            } => format!(
                "bind {} at {destination}: staged before start (opened with no symlink followed, \
                 checked to be the object examined), rbind, ro recursively (sub-mounts too), \
                 nosuid, nodev",
                source.display()
            ),
            MountAction::Bind {
                source,
                readonly: false,
                ..
            } => format!(
                "bind {} at {destination}: staged before start (opened with no symlink followed, \
                 checked to be the object examined), rbind, rw, nosuid, nodev",
                source.display()
            ),
            MountAction::MaskFile => format!(
                "/dev/null bound over {destination} (ro, nodev): open fails with EACCES"
            ),
            MountAction::MaskDirectory { granted_descendants: false } => format!(
                "read-only tmpfs of mode 000 over {destination}: listed in its parent, cannot be opened"
            ),
            MountAction::MaskDirectory { granted_descendants: true } => format!(
                "tmpfs of mode 0111 over {destination} (traversable to its granted descendants, \
                 not listable), made read-only after the descendants are mounted"
            ),
            MountAction::MaskInImage => format!(
                "linux.maskedPaths {destination}: the runtime masks it inside the image (directory: \
                 empty read-only tmpfs; file: /dev/null)"
            ),
        };
        rows.push(row(&step.origin, destination.to_string(), enforced));
    }
    rows.push(row(
        "filesystem (ordering)",
        "most specific path wins",
        "mounts emitted shallow to deep after the baseline, /proc, /dev and /tmp; symlinks in \
         denied paths resolved to their targets, which are masked; a symlink the sandbox \
         identity owns or could have replaced is refused, in grants and denials alike",
    ));
    rows.push(row(
        "filesystem (denied paths in writable grants)",
        "names keep their objects",
        "each directory between a writable grant and a denied path is a mount point of itself \
         (staged), so the sandbox cannot rename or remove it; a denied file with another hard \
         link on a file system the sandbox can reach, or such a file below a denied directory, \
         is refused",
    ));
    let limits = &policy.limits;
    rows.push(row(
        "limits.memory",
        crate::size::format_size(limits.memory),
        "cgroup memory limit, no swap on top (mxc run --memory; the node's [limits] in bundle \
         mode): the kernel's OOM killer stops a process of the sandbox, never the host",
    ));
    rows.push(row(
        "limits.pids",
        limits.pids.to_string(),
        "cgroup pids limit (mxc run --pids-limit): fork fails with EAGAIN beyond it",
    ));
    rows.push(row(
        "limits.tmp",
        crate::size::format_size(limits.tmp_size),
        "size of the private /tmp tmpfs (mxc run --tmp-size; in bundle mode, a tmpfs /tmp \
         without a size): writes beyond it fail with ENOSPC",
    ));
    rows.push(row(
        "limits.user-namespace",
        crate::compile::USER_NAMESPACE_LIMITS
            .iter()
            .map(|(k, v)| format!("{}={v}", k.trim_start_matches("user.")))
            .collect::<Vec<_>>()
            .join(" "),
        "sysctls of the sandbox's own user namespace, which the runtime creates as the sandbox \
         identity: what the sandbox counts is charged to that identity, not to root",
    ));
    rows.push(row(
        "process (set-id files)",
        "refused",
        "a second seccomp filter: chmod/fchmod/fchmodat and file-creating open/openat/creat/\
         mknod with S_ISUID or S_ISGID fail with EPERM; openat2, the x32 ABI and syscalls newer \
         than the filter (>= 451) fail with ENOSYS",
    ));
    for note in &policy.notes {
        rows.push(row("note", "", note.clone()));
    }

    network(policy, &mut rows);

    rows.push(row(
        "ui.disable",
        "true",
        "by construction: no X11, Wayland, audio or session-bus sockets are mounted, and a private \
         network namespace hides abstract sockets",
    ));
    rows.push(row(
        "(identity)",
        format!("host uid {} gid {}", policy.identity.uid, policy.identity.gid),
        match policy.profile {
            Profile::Bundle => "the engine's user; a policy with host-path grants requires a non-root user or a user namespace".to_string(),
            _ => format!(
                "user namespace mapping container 0 -> host {}:{} (size 1): never host root; other \
                 owners appear as nobody",
                policy.identity.uid, policy.identity.gid
            ),
        },
    ));
    rows.push(row(
        "(privileges)",
        "none",
        "all capability sets empty, noNewPrivileges (setuid binaries cannot elevate)",
    ));
    rows.push(row(
        "(seccomp)",
        format!("{} syscalls denied", seccomp::DENIED.len() + 2),
        "EPERM for namespace creation (unshare, setns, clone with CLONE_NEW*), mount family, \
         ptrace, bpf, io_uring, keyctl, perf_event_open, userfaultfd, modules, kexec, reboot; \
         clone3 ENOSYS",
    ));
    rows.push(row(
        "(kernel paths)",
        "masked / read-only",
        "runc's maskedPaths and readonlyPaths (/proc/kcore, /proc/keys, /proc/sys read-only, ...); \
         no /sys in the host-baseline profile",
    ));
    rows.push(row(
        "(processes)",
        "private pid, ipc, uts, mount, cgroup namespaces",
        "host processes invisible and unsignalable; a cgroup pids limit bounds fork bombs",
    ));
    for (field, how) in STRICTER_THAN_MXC {
        rows.push(row(*field, "stricter than MXC", *how));
    }
    rows
}

fn network(policy: &Policy, rows: &mut Vec<Row>) {
    match &policy.network {
        NetworkPlan::Isolated => rows.push(row(
            "network",
            "no egress, no ingress",
            "private network namespace with loopback only: there is no route to anywhere, for \
             every protocol and both IP families (raw sockets included)",
        )),
        NetworkPlan::ProxyOnly { proxy } => {
            let endpoint = match proxy {
                ProxyEndpoint::Localhost { port } => format!("host loopback port {port}"),
                ProxyEndpoint::Url { host, port, .. } => format!("{host}:{port}"),
                ProxyEndpoint::BuiltinTestServer => "built-in test server".into(),
            };
            rows.push(row(
                "network proxy",
                endpoint,
                "private network namespace; nftables inet rules allow only TCP to the proxy \
                 endpoint (no DNS); HTTP(S)_PROXY, ALL_PROXY, FTP_PROXY set, caller proxy \
                 variables removed",
            ));
        }
        NetworkPlan::Filtered(filter) if !filter.hosts.is_empty() => {
            by_name(filter, policy.profile == Profile::Bundle, rows)
        }
        NetworkPlan::Filtered(filter) => {
            rows.push(row(
                "network egress default",
                if filter.default_allow {
                    "allow"
                } else {
                    "deny"
                },
                "private network namespace with a userspace stack; one nftables inet table \
                 inside it (IPv4 and IPv6 share the verdict): deny rules, then allow rules, then \
                 the default; the workload holds no capability to change them",
            ));
            for (verdict, rules) in [("deny", &filter.deny), ("allow", &filter.allow)] {
                for rule in rules {
                    rows.push(row(
                        &rule.path,
                        describe_rule(rule),
                        format!("nftables {verdict} rule"),
                    ));
                }
            }
            rows.push(row(
                "network.ingress",
                "deny",
                "nftables input chain: established traffic and loopback only; host loopback \
                 unreachable in both directions",
            ));
        }
    }
}

/// Where mxc-oci refuses what MXC's own Linux executor would run: a reviewer comparing the two
/// reads it here.
const STRICTER_THAN_MXC: &[(&str, &str)] = &[
    (
        "filesystem.*",
        "paths must be absolute and grants must exist; a denied path that cannot be masked (a \
         dangling symlink, a missing path inside a writable grant, a hard-linked file) is refused \
         before start (exit 255); MXC hands them to bubblewrap, which fails at run time with exit \
         1 or leaves a mountpoint on the host",
    ),
    (
        "process.cwd",
        "must be absolute and a directory visible in the sandbox; MXC passes it to bubblewrap, \
         which fails at run time with exit 1",
    ),
    (
        "process.env",
        "an entry without '=' is refused; MXC drops it silently",
    ),
    (
        "ui",
        "grants (disable false, clipboard, injection) are refused: nothing on Linux can honour \
         them; MXC's Linux backends ignore them",
    ),
    (
        "lifecycle",
        "destroyOnExit false and preservePolicy true are refused: the sandbox always goes with its \
         command; MXC's bubblewrap backend ignores them",
    ),
    (
        "fallback.allowDaclMutation",
        "true is refused (Windows-only); MXC ignores it on Linux",
    ),
    (
        "containment",
        "'lxc' needs an unpacked root filesystem (--rootfs); MXC downloads one with lxc-create",
    ),
    (
        "containerId",
        "must be a valid OCI container id; MXC accepts any string",
    ),
    (
        "version",
        "1.1.0-alpha, MXC's development contract, needs --experimental; its 'test' section is \
         refused",
    ),
];

/// Egress by name: the resolver and the proxy, each pattern, and what the CIDR rules still
/// decide.
fn by_name(filter: &crate::EgressFilter, bundle: bool, rows: &mut Vec<Row>) {
    let namespace = if bundle {
        "the container's network namespace (the engine's, or one of the runtime's own with \
         loopback only): nftables redirects every TCP connection and every DNS query (UDP and \
         TCP, any address) to the egress proxy and resolver, a helper process beside the \
         container (one per pod network namespace) that listens only on its loopback, opens its \
         upstream connections from the engine's namespace and ends with the container"
    } else {
        "private network namespace with loopback only (no userspace stack): nftables redirects \
         every TCP connection and every DNS query (UDP and TCP, any address) to the egress proxy \
         and resolver, which run outside the sandbox and listen only on its loopback"
    };
    rows.push(row(
        "network egress (by name)",
        format!(
            "{} host rule(s); default {}",
            filter.hosts.len(),
            if filter.default_allow {
                "allow"
            } else {
                "deny"
            }
        ),
        format!(
            "{namespace}; all other traffic (UDP, ICMP) is dropped and logged, IPv4 and IPv6 alike"
        ),
    ));
    rows.push(row(
        "network egress (resolver)",
        "allowed names only",
        "answers A/AAAA for allowed names with addresses from 240.0.0.0/12 and \
         fd6d:7863:6e61:6d65::/64 that stand for the name (after checking upstream that it \
         exists); other names get NXDOMAIN and an audit line and never leave; other record \
         types (TXT, HTTPS with ECH keys, ...) get empty answers",
    ));
    rows.push(row(
        "network egress (proxy)",
        "every TCP connection",
        "decides by name: the name behind a captured address, or the HTTP CONNECT / SOCKS5 / \
         absolute-URL target (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, FTP_PROXY = \
         http://127.0.0.1:3128); the TLS server name and every cleartext HTTP/1 Host must be \
         that name; Encrypted Client Hello and cleartext HTTP/2 are refused; the name is \
         resolved again for each connection and only addresses the CIDR rules do not deny are \
         dialled, never a host-local or private one unless a CIDR rule allows it; denied \
         clients get HTTP 403 with X-Mxc-Denied, a TLS alert or a SOCKS error, and an audit line",
    ));
    for rule in &filter.hosts {
        let port = match rule.pattern.port {
            Some(port) => format!("port {port}"),
            None => "any port".into(),
        };
        let covers = match rule.pattern.kind {
            crate::hosts::PatternKind::Exact => format!("{} only", rule.pattern.domain),
            crate::hosts::PatternKind::Subdomains => {
                format!(
                    "every name below {} (not {} itself)",
                    rule.pattern.domain, rule.pattern.domain
                )
            }
            crate::hosts::PatternKind::DomainAndSubdomains => {
                format!("{} and every name below it", rule.pattern.domain)
            }
        };
        let verdict = match rule.action {
            crate::network::Action::Allow => "allowed (resolver answers; proxy connects)",
            crate::network::Action::Deny => "denied (NXDOMAIN; proxy refuses), beats every allow",
        };
        rows.push(row(
            &rule.origin,
            rule.pattern.to_string(),
            format!("{covers}, {port}: {verdict}"),
        ));
    }
    for (verdict, rules) in [("deny", &filter.deny), ("allow", &filter.allow)] {
        for rule in rules {
            rows.push(row(
                &rule.path,
                describe_rule(rule),
                format!(
                    "{verdict}s bare-address TCP connections through the proxy, and the addresses \
                     names resolve to; UDP and ICMP stay dropped"
                ),
            ));
        }
    }
    rows.push(row(
        "network.ingress",
        "deny",
        "nftables input chain: loopback and established traffic only",
    ));
}

fn describe_rule(rule: &Rule) -> String {
    let to = if rule.to.is_empty() {
        "any destination".to_string()
    } else {
        rule.to
            .iter()
            .map(describe_peer)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ports = if rule.ports.is_empty() {
        "any protocol/port".to_string()
    } else {
        rule.ports
            .iter()
            .map(describe_port)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{to}; {ports}")
}

fn describe_peer(peer: &Peer) -> String {
    if peer.except.is_empty() {
        peer.cidr.to_string()
    } else {
        let except: Vec<String> = peer.except.iter().map(ToString::to_string).collect();
        format!("{} except {}", peer.cidr, except.join(" "))
    }
}

fn describe_port(port: &PortSelector) -> String {
    let protocol = match port.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
        Protocol::Any => "tcp+udp",
    };
    match port.ports {
        None if port.protocol == Protocol::Any => "any protocol".to_string(),
        None => protocol.to_string(),
        Some((a, b)) if a == b => format!("{protocol}/{a}"),
        Some((a, b)) => format!("{protocol}/{a}-{b}"),
    }
}

fn truncate(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > 60 || text.lines().count() > 1 {
        format!("{}...", line.chars().take(57).collect::<String>())
    } else {
        line.to_string()
    }
}

/// Renders rows as an aligned three-column text table.
pub fn render(rows: &[Row]) -> String {
    let width = |f: fn(&Row) -> &str, title: &str| {
        rows.iter()
            .map(|r| f(r).chars().count())
            .max()
            .unwrap_or(0)
            .max(title.len())
            .min(40)
    };
    let field_width = width(|r| &r.field, "FIELD");
    let setting_width = width(|r| &r.setting, "SETTING");
    let mut out = format!(
        "{:field_width$}  {:setting_width$}  ENFORCED BY\n",
        "FIELD", "SETTING"
    );
    for r in rows {
        out.push_str(&format!(
            "{:field_width$}  {:setting_width$}  {}\n",
            r.field, r.setting, r.enforced_by
        ));
    }
    out
}
