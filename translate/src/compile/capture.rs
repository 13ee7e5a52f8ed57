//! Egress by name: how a network namespace hands its traffic to the egress proxy. Every TCP
//! connection is redirected to the proxy's transparent listener on loopback, every DNS query
//! (UDP or TCP, to any address) to its resolver; anything else that would leave is dropped and
//! logged. The resolver answers allowed names with addresses from the name pools below, so the
//! proxy can tie each captured connection back to the name that was asked.
//!
//! In a namespace the runtime made itself (`mxc run`) there is no interface but loopback: the
//! sandbox gets an address of its own and default routes over loopback, so connections reach
//! the redirect, and nothing can leave any other way. In a namespace an engine provides (a
//! pod's), the proxy opens its upstream connections from inside that namespace with a socket
//! mark that the rules let through, so that cluster network policies still see the pod.

use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Where the sandbox's resolver hands out IPv4 addresses for names: in 240.0.0.0/4, which is
/// reserved and never routed, so it meets no real network the sandbox or a pod could use.
pub const NAME_POOL_V4: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(240, 0, 0, 0), 12) {
    Ok(net) => net,
    Err(_) => panic!("valid prefix"),
};
/// The IPv6 name pool, in a unique-local prefix of the project's own.
pub const NAME_POOL_V6: Ipv6Net = match Ipv6Net::new(
    Ipv6Addr::new(0xfd6d, 0x7863, 0x6e61, 0x6d65, 0, 0, 0, 0),
    64,
) {
    Ok(net) => net,
    Err(_) => panic!("valid prefix"),
};
/// The sandbox's own addresses in a namespace of the runtime's own: on loopback, the source of
/// its default routes, and what makes resolvers that ask for configured addresses
/// (`AI_ADDRCONFIG`) return both families.
pub const SANDBOX_V4: Ipv4Addr = Ipv4Addr::new(240, 16, 0, 1);
pub const SANDBOX_V6: Ipv6Addr = Ipv6Addr::new(0xfd6d, 0x7863, 0x6e61, 0x6d66, 0, 0, 0, 1);
/// The port of the HTTP CONNECT / SOCKS5 listener on the sandbox's loopback, which the proxy
/// variables name (fixed: the variables are in the spec before the namespace exists).
pub const PROXY_PORT: u16 = 3128;
/// The socket mark of the proxy's upstream connections in an engine's namespace.
pub const UPSTREAM_MARK: u32 = 0x6d78_6301;

/// Whose namespace the rules go into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// The runtime made it: loopback only.
    Own,
    /// The engine made it (CNI, Docker, `ctr --with-ns`).
    Engine,
}

/// What the rules need to know that the policy does not say.
#[derive(Debug, Clone)]
pub struct CaptureFacts {
    pub namespace: Namespace,
    /// The table's name.
    pub table: String,
    /// Where the namespace's traffic is sent: the proxy's listeners on loopback. `None` for a
    /// table that only filters: in an engine's namespace that the proxy of another container
    /// already serves, whose table redirects every connection first.
    pub listeners: Option<Listeners>,
    /// NFLOG group for what is dropped.
    pub log_group: u16,
    /// The table's comment (how the next container in a shared namespace finds the proxy).
    pub comment: Option<String>,
}

/// The loopback ports the proxy listens on inside the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listeners {
    pub transparent_port: u16,
    pub dns_port: u16,
}

/// The audit rule name of what name mode drops: UDP other than DNS, ICMP, anything not TCP.
pub const DROPPED_RULE: &str = "network.egress (only TCP and DNS leave)";

/// The nftables ruleset that hands the namespace's traffic to the proxy.
pub fn ruleset(facts: &CaptureFacts) -> String {
    let mut out = String::new();
    let table = &facts.table;
    let group = facts.log_group;
    let mark = format!("0x{UPSTREAM_MARK:08x}");
    let _ = writeln!(out, "table inet {table} {{");
    if let Some(comment) = &facts.comment {
        let _ = writeln!(out, "  comment \"{}\"", comment.replace('"', "'"));
    }
    if let Some(listeners) = facts.listeners {
        capture_chain(&mut out, facts.namespace, listeners);
    }
    let _ = writeln!(out, "  chain output {{");
    let _ = writeln!(out, "    type filter hook output priority 0; policy drop;");
    // After the redirect, what is captured is addressed to loopback.
    let _ = writeln!(out, "    ip daddr 127.0.0.0/8 accept");
    let _ = writeln!(out, "    ip6 daddr ::1 accept");
    match facts.namespace {
        Namespace::Own => {
            let _ = writeln!(out, "    ip daddr {SANDBOX_V4} accept");
            let _ = writeln!(out, "    ip6 daddr {SANDBOX_V6} accept");
        }
        Namespace::Engine => {
            let _ = writeln!(out, "    meta mark {mark} accept");
            let _ = writeln!(out, "    ct state established,related accept");
            let _ = writeln!(
                out,
                "    icmpv6 type {{ nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert }} accept"
            );
            let _ = writeln!(out, "    ip6 daddr ff02::/16 accept");
        }
    }
    let _ = writeln!(
        out,
        "    log group {group} prefix \"deny {DROPPED_RULE}\" drop"
    );
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "  chain input {{");
    let _ = writeln!(out, "    type filter hook input priority 0; policy drop;");
    let _ = writeln!(out, "    iif \"lo\" accept");
    let _ = writeln!(out, "    ct state established,related accept");
    if facts.namespace == Namespace::Engine {
        let _ = writeln!(
            out,
            "    icmpv6 type {{ nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, packet-too-big }} accept"
        );
    }
    let _ = writeln!(
        out,
        "    ct state new log group {group} prefix \"deny network.ingress.default\" drop"
    );
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "  chain forward {{");
    let _ = writeln!(out, "    type filter hook forward priority 0; policy drop;");
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "}}");
    out
}

/// The NAT chain that redirects DNS and TCP to the proxy's listeners.
fn capture_chain(out: &mut String, namespace: Namespace, listeners: Listeners) {
    let mark = format!("0x{UPSTREAM_MARK:08x}");
    let _ = writeln!(out, "  chain capture {{");
    let _ = writeln!(
        out,
        "    type nat hook output priority -100; policy accept;"
    );
    if namespace == Namespace::Engine {
        let _ = writeln!(out, "    meta mark {mark} return");
    }
    // DNS first: a resolver on loopback (a local stub's 127.0.0.53) is captured too.
    let _ = writeln!(
        out,
        "    meta l4proto {{ tcp, udp }} th dport 53 redirect to :{}",
        listeners.dns_port
    );
    let _ = writeln!(out, "    ip daddr 127.0.0.0/8 return");
    let _ = writeln!(out, "    ip6 daddr ::1 return");
    if namespace == Namespace::Own {
        let _ = writeln!(out, "    ip daddr {SANDBOX_V4} return");
        let _ = writeln!(out, "    ip6 daddr {SANDBOX_V6} return");
    }
    let _ = writeln!(
        out,
        "    meta l4proto tcp redirect to :{}",
        listeners.transparent_port
    );
    let _ = writeln!(out, "  }}");
}

/// The `ip -batch` commands that give a namespace of the runtime's own its address and its
/// routes over loopback (IPv6 too when the namespace has it).
pub fn own_namespace_routes(ipv6: bool) -> String {
    let mut out = format!(
        "address add {SANDBOX_V4}/32 dev lo\n\
         route add 0.0.0.0/0 dev lo src {SANDBOX_V4}\n"
    );
    if ipv6 {
        out.push_str(&format!(
            "address add {SANDBOX_V6}/128 dev lo nodad\n\
             route add ::/0 dev lo src {SANDBOX_V6}\n"
        ));
    }
    out
}

/// The `ip -batch` commands that route the name pools over loopback in an engine's namespace
/// (which may have no IPv6 route, or no default route, of its own). `replace`: a proxy that
/// served the namespace before may have left them.
pub fn engine_namespace_routes(ipv6: bool) -> String {
    let mut out = format!("route replace {NAME_POOL_V4} dev lo src 127.0.0.1\n");
    if ipv6 {
        out.push_str(&format!("route replace {NAME_POOL_V6} dev lo src ::1\n"));
    }
    out
}

/// The `ip -batch` commands that take [`engine_namespace_routes`] out again.
pub fn engine_namespace_routes_removal() -> String {
    format!(
        "route del {NAME_POOL_V4} dev lo\n\
         route del {NAME_POOL_V6} dev lo\n"
    )
}

/// The proxy URL the sandbox's proxy variables carry in name mode.
pub fn proxy_url() -> String {
    format!("http://127.0.0.1:{PROXY_PORT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_before_loopback_and_tcp_last() {
        let text = ruleset(&CaptureFacts {
            namespace: Namespace::Own,
            table: "mxc".into(),
            listeners: Some(Listeners {
                transparent_port: 15001,
                dns_port: 15053,
            }),
            log_group: 17,
            comment: None,
        });
        let dns = text.find("th dport 53 redirect to :15053").unwrap();
        let loopback = text.find("ip daddr 127.0.0.0/8 return").unwrap();
        let tcp = text.find("meta l4proto tcp redirect to :15001").unwrap();
        assert!(dns < loopback && loopback < tcp, "{text}");
        assert!(!text.contains("meta mark"));
        assert!(text.contains(&format!("ip daddr {SANDBOX_V4} accept")));
        let mut facts = CaptureFacts {
            namespace: Namespace::Engine,
            table: "mxc_x".into(),
            listeners: Some(Listeners {
                transparent_port: 1,
                dns_port: 2,
            }),
            log_group: 1000,
            comment: Some("mxc-egress \"x\"".into()),
        };
        let engine = ruleset(&facts);
        let mark = engine.find("meta mark 0x6d786301 return").unwrap();
        assert!(mark < engine.find("th dport 53").unwrap(), "{engine}");
        assert!(engine.contains("meta mark 0x6d786301 accept"));
        assert!(
            engine.contains("  comment \"mxc-egress 'x'\"\n"),
            "{engine}"
        );

        // Beside the table of the proxy's own container: the same filter, no redirect.
        facts.listeners = None;
        let filter_only = ruleset(&facts);
        assert!(!filter_only.contains("redirect"), "{filter_only}");
        assert!(filter_only.contains("meta mark 0x6d786301 accept"));
        assert!(filter_only.contains("policy drop"));
    }

    #[test]
    fn pools_do_not_overlap_the_sandbox_addresses() {
        assert!(!NAME_POOL_V4.contains(&SANDBOX_V4));
        assert!(!NAME_POOL_V6.contains(&SANDBOX_V6));
        assert_eq!(NAME_POOL_V4.to_string(), "240.0.0.0/12");
        assert_eq!(NAME_POOL_V6.to_string(), "fd6d:7863:6e61:6d65::/64");
    }
}
