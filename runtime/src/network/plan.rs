//! What enforcing a container's network takes, decided before anything runs: the nftables
//! ruleset, and what runs beside the sandbox (the egress proxy for host-name rules, the denial
//! log, a relay to a proxy on host loopback, the userspace network stack). Pure: what it must
//! know about the host is gathered beforehand ([`HostNetwork`]), so that every decision is
//! tested without root.

use std::net::{IpAddr, SocketAddr};

use mxc_translate::compile::capture::Namespace;
use mxc_translate::compile::nftables::{self, NetworkFacts};
use mxc_translate::network::{host_is_loopback, ProxyEndpoint};
use mxc_translate::{EgressFilter, NetworkPlan};

use super::{AuditTarget, Connectivity, NetworkError};
use crate::egress::Resolver;

/// How long what runs beside the sandbox must live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// As long as the caller, which waits for the container to end (`mxc run`): threads and
    /// children of the caller, stopped when it lets go of them.
    Caller,
    /// Until the container is deleted, long after the caller is gone (`mxc-runtime create`,
    /// the shim's workers): processes of their own, recorded so that delete stops them.
    Container,
}

/// Everything one container's network takes, in the order it is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSetup {
    /// Set `lo` up first: a namespace the runtime created has it down.
    pub loopback_up: bool,
    /// Installed before anything can use the namespace; `None`: nothing to filter.
    pub rules: Option<Ruleset>,
    /// Started in this order once the rules are in.
    pub services: Vec<Service>,
    pub lifetime: Lifetime,
}

/// An nftables table for the container's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub table: String,
    /// The `nft -f` input.
    pub text: String,
}

/// Something that runs beside the sandbox for its network.
#[derive(Debug, Clone, PartialEq)]
pub enum Service {
    /// Host-name rules: the egress proxy and resolver, the sandbox's only way out. They bind
    /// inside the namespace and install the rules that send its traffic to them (the table
    /// depends on the ports they get), so the plan has no ruleset of its own.
    EgressProxy(EgressProxy),
    /// Writes each packet the rules deny (NFLOG) to the audit log.
    DenialLog(AuditTarget),
    /// Makes a proxy on host loopback reachable: listens on `listen` inside the sandbox and
    /// forwards each connection to `target` on the host.
    ProxyRelay {
        listen: SocketAddr,
        target: SocketAddr,
    },
    /// slirp4netns: connectivity for a namespace the runtime created, through host sockets.
    UserspaceStack,
}

/// The egress proxy and resolver of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct EgressProxy {
    pub filter: EgressFilter,
    pub resolver: Resolver,
    /// The host's own addresses, which names never lead to.
    pub host_addresses: Vec<IpAddr>,
    /// A namespace of the runtime's own (loopback only; upstream connections leave from the
    /// host) or the engine's (upstream connections leave from it).
    pub namespace: Namespace,
    pub table: String,
    pub log_group: u16,
    /// Where refused names and connections are recorded.
    pub audit: Option<AuditTarget>,
}

/// What the plan must know about the host.
#[derive(Debug, Clone, Default)]
pub struct HostNetwork {
    /// The host's own addresses: reaching one from the sandbox reaches the host.
    pub addresses: Vec<IpAddr>,
    /// The proxy's addresses, for a proxy that is not on host loopback.
    pub proxy: Vec<SocketAddr>,
}

/// Where and how the container's rules and services go.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub connectivity: Connectivity,
    pub lifetime: Lifetime,
    /// The table's name ([`nftables::TABLE`] in a namespace of the container's own).
    pub table: String,
    /// The NFLOG group its denials are logged to.
    pub log_group: u16,
    /// Where denials are recorded, if anywhere.
    pub audit: Option<AuditTarget>,
    /// Where the egress proxy looks names up.
    pub resolver: Resolver,
}

/// The userspace stack's gateway and DNS addresses: they lead to the host.
const USERSPACE_GATEWAYS: [&str; 4] = ["10.0.2.2", "10.0.2.3", "fd00::2", "fd00::3"];

/// Plans the enforcement of `policy` for one container.
pub fn plan(
    policy: &NetworkPlan,
    options: PlanOptions,
    host: &HostNetwork,
) -> Result<NetworkSetup, NetworkError> {
    let userspace = options.connectivity == Connectivity::Userspace;
    let mut facts = NetworkFacts {
        host_addresses: host.addresses.clone(),
        proxy: Vec::new(),
        table: options.table.clone(),
        log_group: options.log_group,
    };
    if userspace {
        facts.host_addresses.extend(
            USERSPACE_GATEWAYS
                .iter()
                .map(|a| a.parse::<IpAddr>().expect("literal")),
        );
    }
    let mut relay = None;
    if let NetworkPlan::ProxyOnly { proxy } = policy {
        match loopback_proxy(proxy)? {
            Some(_) if options.lifetime == Lifetime::Container => {
                return Err(NetworkError::Relay(
                    "a proxy on host loopback is reached through a relay that lives only as long \
                     as `mxc run`; containers of mxc-runtime and the containerd shim must name a \
                     proxy address they can route to"
                        .into(),
                ))
            }
            Some(at) => {
                facts.proxy = vec![at];
                relay = Some(at);
            }
            None => facts.proxy = host.proxy.clone(),
        }
    }
    let mut setup = NetworkSetup {
        loopback_up: userspace,
        rules: None,
        services: Vec::new(),
        lifetime: options.lifetime,
    };
    if let NetworkPlan::Filtered(filter) = policy {
        if !filter.hosts.is_empty() {
            // Egress by name: the proxy is the only way out. A namespace of the runtime's own
            // gets no userspace stack; in an engine's, the proxy's connections leave from it.
            // Either way the proxy needs loopback, where its listeners are.
            setup.loopback_up = true;
            setup.services.push(Service::EgressProxy(EgressProxy {
                filter: filter.clone(),
                resolver: options.resolver,
                host_addresses: host.addresses.clone(),
                namespace: if userspace {
                    Namespace::Own
                } else {
                    Namespace::Engine
                },
                table: options.table,
                log_group: options.log_group,
                audit: options.audit.clone(),
            }));
            setup.services.extend(options.audit.map(Service::DenialLog));
            return Ok(setup);
        }
    }
    let Some(text) = nftables::ruleset(policy, &facts) else {
        // Isolated: a namespace of the runtime's own has loopback only; one the engine provided
        // may have interfaces, so it gets a ruleset that drops everything but loopback.
        if !userspace {
            setup.rules = Some(Ruleset {
                text: nftables::isolated(&options.table),
                table: options.table,
            });
        }
        return Ok(setup);
    };
    // Rules before connectivity: there is never a moment with an interface and no rules.
    setup.rules = Some(Ruleset {
        table: options.table,
        text,
    });
    if let Some(target) = options.audit {
        setup.services.push(Service::DenialLog(target));
    }
    match relay {
        // A proxy on host loopback needs only the relay.
        Some(at) => setup.services.push(Service::ProxyRelay {
            listen: at,
            target: at,
        }),
        None if userspace => setup.services.push(Service::UserspaceStack),
        None => {}
    }
    Ok(setup)
}

/// For a proxy on host loopback, where it listens: the relay listens on the same address inside
/// the sandbox, so that the proxy URL stays literally valid.
fn loopback_proxy(proxy: &ProxyEndpoint) -> Result<Option<SocketAddr>, NetworkError> {
    let (host, port) = match proxy {
        ProxyEndpoint::Localhost { port } => ("127.0.0.1", *port),
        ProxyEndpoint::Url { host, port, .. } => (host.as_str(), *port),
        ProxyEndpoint::BuiltinTestServer => {
            return Err(NetworkError::Relay(
                "the built-in test proxy is not supported".into(),
            ))
        }
    };
    if !host_is_loopback(host) {
        return Ok(None);
    }
    let ip: IpAddr = if host.contains(':') {
        "::1".parse().expect("literal")
    } else {
        "127.0.0.1".parse().expect("literal")
    };
    Ok(Some(SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxc_translate::EgressFilter;

    fn options(connectivity: Connectivity, lifetime: Lifetime) -> PlanOptions {
        PlanOptions {
            connectivity,
            lifetime,
            table: "mxc_t".into(),
            log_group: 1234,
            audit: Some(AuditTarget {
                audit: crate::audit::ContainerAudit {
                    log: crate::audit::AuditLog::open(std::path::Path::new("/dev/null")).unwrap(),
                    container_id: "c1".into(),
                    policy_sha256: Some("ab".into()),
                },
                group: 1234,
                failure_report: None,
            }),
            resolver: Resolver::System,
        }
    }

    fn host() -> HostNetwork {
        HostNetwork {
            addresses: vec!["192.0.2.7".parse().unwrap()],
            ..HostNetwork::default()
        }
    }

    fn allow_all() -> NetworkPlan {
        NetworkPlan::Filtered(EgressFilter {
            default_allow: true,
            deny: Vec::new(),
            allow: Vec::new(),
            hosts: Vec::new(),
        })
    }

    #[test]
    fn an_isolated_sandbox_of_its_own_needs_nothing_but_loopback() {
        let options = options(Connectivity::Userspace, Lifetime::Caller);
        let setup = plan(&NetworkPlan::Isolated, options, &host()).unwrap();
        assert!(setup.loopback_up);
        assert_eq!(setup.rules, None);
        assert!(setup.services.is_empty());
    }

    #[test]
    fn an_isolated_container_in_an_engine_namespace_gets_a_loopback_only_table() {
        let options = options(Connectivity::EngineProvided, Lifetime::Container);
        let setup = plan(&NetworkPlan::Isolated, options, &host()).unwrap();
        assert!(!setup.loopback_up);
        let rules = setup.rules.unwrap();
        assert_eq!(rules.table, "mxc_t");
        assert!(
            rules.text.starts_with("table inet mxc_t {"),
            "{}",
            rules.text
        );
        assert!(setup.services.is_empty());
    }

    #[test]
    fn a_filtered_sandbox_gets_rules_then_the_denial_log_then_connectivity() {
        let setup = plan(
            &allow_all(),
            options(Connectivity::Userspace, Lifetime::Caller),
            &host(),
        )
        .unwrap();
        let rules = setup.rules.unwrap().text;
        for host_side in ["192.0.2.7", "10.0.2.2", "fd00::3"] {
            assert!(rules.contains(&format!("daddr {host_side} ")), "{rules}");
        }
        assert!(rules.contains("log group 1234"), "{rules}");
        assert!(matches!(
            setup.services.as_slice(),
            [Service::DenialLog(_), Service::UserspaceStack]
        ));

        // An engine's namespace: its own connectivity, and the stack's gateways mean nothing.
        let setup = plan(
            &allow_all(),
            options(Connectivity::EngineProvided, Lifetime::Container),
            &host(),
        )
        .unwrap();
        assert!(!setup.rules.unwrap().text.contains("10.0.2.2"));
        assert!(matches!(setup.services.as_slice(), [Service::DenialLog(_)]));
    }

    #[test]
    fn a_loopback_proxy_is_relayed_for_mxc_run_and_refused_in_bundle_mode() {
        let policy = NetworkPlan::ProxyOnly {
            proxy: ProxyEndpoint::Localhost { port: 3128 },
        };
        let at: SocketAddr = "127.0.0.1:3128".parse().unwrap();
        let setup = plan(
            &policy,
            options(Connectivity::Userspace, Lifetime::Caller),
            &host(),
        )
        .unwrap();
        assert!(setup
            .rules
            .unwrap()
            .text
            .contains("ip daddr 127.0.0.1 tcp dport 3128 accept"));
        assert_eq!(
            setup.services[1..],
            [Service::ProxyRelay {
                listen: at,
                target: at
            }],
            "no userspace stack: the relay is the only way out"
        );

        for connectivity in [Connectivity::Userspace, Connectivity::EngineProvided] {
            let refused = plan(&policy, options(connectivity, Lifetime::Container), &host())
                .unwrap_err()
                .to_string();
            assert!(refused.contains("only as long as `mxc run`"), "{refused}");
            assert!(!refused.contains("use the containerd shim"), "{refused}");
        }
    }

    #[test]
    fn a_remote_proxy_is_reached_through_the_stack() {
        let policy = NetworkPlan::ProxyOnly {
            proxy: ProxyEndpoint::Url {
                url: "http://proxy.test:8080".into(),
                scheme: "http".into(),
                host: "proxy.test".into(),
                port: 8080,
            },
        };
        let host = HostNetwork {
            proxy: vec!["198.18.0.9:8080".parse().unwrap()],
            ..host()
        };
        let setup = plan(
            &policy,
            options(Connectivity::Userspace, Lifetime::Container),
            &host,
        )
        .unwrap();
        assert!(setup
            .rules
            .unwrap()
            .text
            .contains("ip daddr 198.18.0.9 tcp dport 8080 accept"));
        assert!(matches!(
            setup.services.as_slice(),
            [Service::DenialLog(_), Service::UserspaceStack]
        ));
    }

    #[test]
    fn host_name_rules_run_the_egress_proxy_in_every_kind_of_namespace() {
        use mxc_translate::hosts::HostRule;
        use mxc_translate::network::Action;
        let rule =
            HostRule::parse("network.allowedHosts[0]", "*.example.test", Action::Allow).unwrap();
        let policy = NetworkPlan::Filtered(EgressFilter {
            default_allow: false,
            deny: Vec::new(),
            allow: Vec::new(),
            hosts: vec![rule],
        });
        for (connectivity, lifetime, namespace) in [
            (Connectivity::Userspace, Lifetime::Caller, Namespace::Own),
            (Connectivity::Userspace, Lifetime::Container, Namespace::Own),
            (
                Connectivity::EngineProvided,
                Lifetime::Container,
                Namespace::Engine,
            ),
        ] {
            let setup = plan(&policy, options(connectivity, lifetime), &host()).unwrap();
            assert_eq!(setup.rules, None, "the proxy installs its own");
            assert!(setup.loopback_up, "its listeners are on loopback");
            assert_eq!(setup.lifetime, lifetime);
            match setup.services.as_slice() {
                [Service::EgressProxy(proxy), Service::DenialLog(_)] => {
                    assert_eq!(proxy.namespace, namespace);
                    assert_eq!(proxy.table, "mxc_t");
                    assert_eq!(proxy.host_addresses, host().addresses);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
