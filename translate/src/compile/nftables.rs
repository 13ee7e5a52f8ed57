//! The nftables ruleset that enforces a network plan inside the sandbox's own network
//! namespace: one `inet` table, so IPv4 and IPv6 share every verdict; deny rules, then allow
//! rules, then the default; host addresses dropped before any of them unless host loopback is
//! allowed; inbound limited to replies. Denials are logged to NFLOG group [`AUDIT_GROUP`] with
//! a prefix naming the rule that decided, for the audit log.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::network::{Peer, PortSelector, Protocol, Rule};
use crate::policy::{EgressFilter, NetworkPlan};

/// NFLOG group the denial log reads in a sandbox's own namespace. In a shared (pod) namespace
/// each container logs to a group of its own ([`log_group_for`]): a group has one reader.
pub const AUDIT_GROUP: u16 = 17;
/// The table's name in a sandbox's own namespace. In a namespace an engine provides (a pod's,
/// shared by its containers), each container has a table of its own, named by
/// [`table_for`], so that its rules can be removed when it is deleted.
pub const TABLE: &str = "mxc";

/// The NFLOG group for container `id` in a shared namespace: 1000..=65535.
pub fn log_group_for(id: &str) -> u16 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.as_bytes());
    1000 + (u16::from_be_bytes([digest[6], digest[7]]) % 64536)
}

/// The table name for container `id`: `mxc_` and 12 hex digits of the id's sha256.
pub fn table_for(id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("mxc_{hex}")
}

/// Loopback only, whatever interfaces an engine adds later: the ruleset of an isolated plan in
/// a namespace the engine provides (in one the runtime creates, loopback is all there is).
pub fn isolated(table: &str) -> String {
    format!(
        "table inet {table} {{\n  chain output {{ type filter hook output priority 0; policy drop; oif \"lo\" accept; }}\n  \
         chain input {{ type filter hook input priority 0; policy drop; iif \"lo\" accept; }}\n  \
         chain forward {{ type filter hook forward priority 0; policy drop; }}\n}}\n"
    )
}

/// What the ruleset needs to know beyond the policy.
#[derive(Debug, Clone, Default)]
pub struct NetworkFacts {
    /// Addresses that reach the host itself from the sandbox (the host's addresses, the
    /// userspace stack's gateway); dropped first unless host loopback is allowed.
    pub host_addresses: Vec<IpAddr>,
    /// The proxy's addresses inside the sandbox's view (proxy-only mode).
    pub proxy: Vec<SocketAddr>,
    /// The table's name; [`TABLE`] when empty.
    pub table: String,
    /// The NFLOG group of the denial log; [`AUDIT_GROUP`] when 0.
    pub log_group: u16,
}

/// The audit prefix for a rule: `deny <json path>` or `default`.
fn prefix(verdict: &str, origin: &str) -> String {
    let mut text = format!("{verdict} {origin}");
    text.truncate(120);
    text.replace('"', "'")
}

/// Renders the ruleset for `plan`; `None` when the plan needs no rules (isolated: the namespace
/// has loopback only).
pub fn ruleset(plan: &NetworkPlan, facts: &NetworkFacts) -> Option<String> {
    let mut out = String::new();
    let table = if facts.table.is_empty() {
        TABLE
    } else {
        facts.table.as_str()
    };
    let group = if facts.log_group == 0 {
        AUDIT_GROUP
    } else {
        facts.log_group
    };
    let _ = writeln!(out, "table inet {table} {{");
    let _ = writeln!(out, "  chain output {{");
    let _ = writeln!(out, "    type filter hook output priority 0; policy drop;");
    let _ = writeln!(out, "    oif \"lo\" accept");
    // Neighbour discovery keeps IPv6 working on the link; it carries no payload.
    let _ = writeln!(
        out,
        "    icmpv6 type {{ nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert }} accept"
    );
    let _ = writeln!(out, "    ct state established,related accept");
    // Link-local multicast (MLD reports) never leaves the link.
    let _ = writeln!(out, "    ip6 daddr ff02::/16 accept");
    for address in &facts.host_addresses {
        let _ = writeln!(
            out,
            "    {} daddr {address} log group {group} prefix \"{}\" drop",
            family(address),
            prefix("deny", "network.ingress.hostLoopback")
        );
    }
    match plan {
        NetworkPlan::Isolated => return None,
        NetworkPlan::ProxyOnly { .. } => {
            for endpoint in &facts.proxy {
                let _ = writeln!(
                    out,
                    "    {} daddr {} tcp dport {} accept",
                    family(&endpoint.ip()),
                    endpoint.ip(),
                    endpoint.port()
                );
            }
            let _ = writeln!(
                out,
                "    log group {group} prefix \"{}\" drop",
                prefix("deny", "proxy-only")
            );
        }
        NetworkPlan::Filtered(filter) => egress(&mut out, filter, group),
    }
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "  chain input {{");
    let _ = writeln!(out, "    type filter hook input priority 0; policy drop;");
    let _ = writeln!(out, "    iif \"lo\" accept");
    let _ = writeln!(out, "    ct state established,related accept");
    let _ = writeln!(
        out,
        "    icmpv6 type {{ nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, packet-too-big }} accept"
    );
    let _ = writeln!(
        out,
        "    ct state new log group {group} prefix \"{}\" drop",
        prefix("deny", "network.ingress.default")
    );
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "  chain forward {{");
    let _ = writeln!(out, "    type filter hook forward priority 0; policy drop;");
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "}}");
    Some(out)
}

fn egress(out: &mut String, filter: &EgressFilter, group: u16) {
    for rule in &filter.deny {
        for line in matches(rule) {
            let _ = writeln!(
                out,
                "    {line}log group {group} prefix \"{}\" drop",
                prefix("deny", &rule.path)
            );
        }
    }
    for rule in &filter.allow {
        for line in matches(rule) {
            let _ = writeln!(out, "    {line}accept");
        }
    }
    if filter.default_allow {
        let _ = writeln!(out, "    accept");
    } else {
        let _ = writeln!(
            out,
            "    log group {group} prefix \"{}\" drop",
            prefix("deny", "network.egress.default")
        );
    }
}

fn family(address: &IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "ip",
        IpAddr::V6(_) => "ip6",
    }
}

fn net_family(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    }
}

/// The nft match expressions (each ending with a space) for a rule: one per destination and
/// protocol selector combination.
pub fn matches(rule: &Rule) -> Vec<String> {
    let peers: Vec<Option<&Peer>> = if rule.to.is_empty() {
        vec![None]
    } else {
        rule.to.iter().map(Some).collect()
    };
    let selectors: Vec<Option<&PortSelector>> = if rule.ports.is_empty() {
        vec![None]
    } else {
        rule.ports.iter().map(Some).collect()
    };
    let mut lines = Vec::new();
    for peer in &peers {
        for selector in &selectors {
            let mut line = String::new();
            let v6 = peer.map(|p| matches!(p.cidr, IpNet::V6(_)));
            if let Some(peer) = peer {
                let fam = net_family(&peer.cidr);
                let _ = write!(line, "{fam} daddr {} ", peer.cidr);
                if !peer.except.is_empty() {
                    let except: Vec<String> = peer.except.iter().map(ToString::to_string).collect();
                    let _ = write!(line, "{fam} daddr != {{ {} }} ", except.join(", "));
                }
            }
            if let Some(selector) = selector {
                line.push_str(&protocol(selector, v6));
            }
            lines.push(line);
        }
    }
    lines
}

fn protocol(selector: &PortSelector, v6: Option<bool>) -> String {
    let ports = selector.ports.map(|(a, b)| {
        if a == b {
            format!("th dport {a} ")
        } else {
            format!("th dport {a}-{b} ")
        }
    });
    match selector.protocol {
        Protocol::Tcp => format!("meta l4proto tcp {}", ports.unwrap_or_default()),
        Protocol::Udp => format!("meta l4proto udp {}", ports.unwrap_or_default()),
        Protocol::Any => match ports {
            Some(ports) => format!("meta l4proto {{ tcp, udp }} {ports}"),
            None => String::new(),
        },
        Protocol::Icmp => match v6 {
            Some(false) => "meta l4proto icmp ".to_string(),
            Some(true) => "meta l4proto ipv6-icmp ".to_string(),
            None => "meta l4proto { icmp, ipv6-icmp } ".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::parse_cidr;

    fn rule(to: &[(&str, &[&str])], ports: &[PortSelector]) -> Rule {
        Rule {
            path: "network.egress.allow[0]".into(),
            to: to
                .iter()
                .map(|(cidr, except)| Peer {
                    cidr: parse_cidr(cidr).unwrap(),
                    except: except.iter().map(|e| parse_cidr(e).unwrap()).collect(),
                })
                .collect(),
            ports: ports.to_vec(),
        }
    }

    #[test]
    fn rules_cover_both_families_and_honour_except() {
        let r = rule(
            &[
                ("198.18.0.0/15", &["198.18.5.0/24"]),
                ("2001:db8::/32", &[]),
            ],
            &[PortSelector {
                protocol: Protocol::Tcp,
                ports: Some((443, 443)),
            }],
        );
        assert_eq!(
            matches(&r),
            [
                "ip daddr 198.18.0.0/15 ip daddr != { 198.18.5.0/24 } meta l4proto tcp th dport 443 ",
                "ip6 daddr 2001:db8::/32 meta l4proto tcp th dport 443 ",
            ]
        );
        let any = rule(
            &[],
            &[PortSelector {
                protocol: Protocol::Any,
                ports: Some((1000, 2000)),
            }],
        );
        assert_eq!(
            matches(&any),
            ["meta l4proto { tcp, udp } th dport 1000-2000 "]
        );
        let icmp = rule(
            &[],
            &[PortSelector {
                protocol: Protocol::Icmp,
                ports: None,
            }],
        );
        assert_eq!(matches(&icmp), ["meta l4proto { icmp, ipv6-icmp } "]);
        assert_eq!(matches(&rule(&[], &[])), [""]);
    }

    #[test]
    fn deny_before_allow_before_default_and_host_first() {
        let filter = EgressFilter {
            default_allow: false,
            deny: vec![Rule {
                path: "network.egress.deny[0]".into(),
                ..rule(&[("10.0.0.0/8", &[])], &[])
            }],
            allow: vec![rule(&[("0.0.0.0/0", &[])], &[])],
            hosts: Vec::new(),
        };
        let facts = NetworkFacts {
            host_addresses: vec!["192.0.2.1".parse().unwrap()],
            ..NetworkFacts::default()
        };
        let text = ruleset(&NetworkPlan::Filtered(filter), &facts).unwrap();
        let host = text.find("daddr 192.0.2.1").unwrap();
        let deny = text.find("network.egress.deny[0]").unwrap();
        let allow = text.find("ip daddr 0.0.0.0/0 accept").unwrap();
        let default = text.find("network.egress.default").unwrap();
        assert!(host < deny && deny < allow && allow < default, "{text}");
        assert!(ruleset(&NetworkPlan::Isolated, &facts).is_none());
    }
}
