//! The network section: MXC's Linux-backend rules for both network models, to one
//! [`NetworkPlan`].

use crate::error::{index, Report};
use crate::hosts::HostRule;
use crate::model;
use crate::network::{self, Action, NetworkSpec, Peer, ProxyEndpoint, Rule};
use crate::parse::Config;
use crate::policy::{EgressFilter, NetworkPlan};

pub(super) fn plan(
    report: &mut Report,
    notes: &mut Vec<String>,
    config: &Config,
    caller_hosts: &[HostRule],
) -> Option<NetworkPlan> {
    let plan = config_plan(report, notes, config)?;
    with_caller_hosts(report, plan, caller_hosts)
}

/// Adds the host rules that come from outside the config (`mxc run --allow-host`, the node
/// configuration, a pod annotation): a sandbox with no egress gains exactly those names.
fn with_caller_hosts(
    report: &mut Report,
    plan: NetworkPlan,
    caller_hosts: &[HostRule],
) -> Option<NetworkPlan> {
    let Some(first) = caller_hosts.first() else {
        return Some(plan);
    };
    match plan {
        NetworkPlan::Isolated => Some(NetworkPlan::Filtered(EgressFilter {
            default_allow: false,
            deny: Vec::new(),
            allow: Vec::new(),
            hosts: caller_hosts.to_vec(),
        })),
        NetworkPlan::Filtered(mut filter) => {
            filter.hosts.extend(caller_hosts.iter().cloned());
            Some(NetworkPlan::Filtered(filter))
        }
        NetworkPlan::ProxyOnly { .. } => {
            report.reject_path(
                &first.origin,
                "host rules cannot be combined with a proxy the config names (network.proxy, \
                 runtimeConfig.networkProxy): that proxy decides by name itself",
            );
            None
        }
    }
}

fn config_plan(
    report: &mut Report,
    notes: &mut Vec<String>,
    config: &Config,
) -> Option<NetworkPlan> {
    let directional_version = config.version.supports_directional_network();
    match &config.network {
        NetworkSpec::Legacy(legacy) => {
            let firewall = matches!(
                legacy.enforcement,
                model::NetworkEnforcement::Firewall | model::NetworkEnforcement::Both
            );
            if legacy.allow_local_network {
                report.reject(
                    "network.allowLocalNetwork",
                    true,
                    "inbound connections cannot be granted: the sandbox always has a private \
                     network namespace and no port-mapping contract exists for it",
                );
            }
            let has_lists = !legacy.allowed_hosts.is_empty() || !legacy.blocked_hosts.is_empty();
            // MXC's bundled exact-name proxy: its host lists are enforced by name, by the
            // egress proxy and resolver.
            let builtin = legacy.proxy == Some(ProxyEndpoint::BuiltinTestServer);
            if builtin && firewall {
                report.reject_path(
                    "network.enforcementMode",
                    "network.proxy cannot be combined with enforcementMode 'firewall' or 'both'",
                );
            }
            if let Some(proxy) = legacy.proxy.as_ref().filter(|_| !builtin) {
                proxy_checks(report, "network.proxy", proxy);
                if firewall {
                    report.reject_path(
                        "network.enforcementMode",
                        "network.proxy cannot be combined with enforcementMode 'firewall' or \
                         'both'",
                    );
                }
                if *proxy != ProxyEndpoint::BuiltinTestServer
                    && (has_lists || !legacy.default_allow)
                {
                    report.reject_path(
                        "network.proxy",
                        "an external proxy (url/localhost) cannot be combined with allowedHosts, \
                         blockedHosts, or defaultPolicy 'block' (the default): the proxy enforces \
                         its own host policy; set defaultPolicy 'allow' and remove the host lists",
                    );
                }
                return report.is_clean().then(|| NetworkPlan::ProxyOnly {
                    proxy: proxy.clone(),
                });
            }
            if has_lists && !firewall && !builtin && directional_version {
                report.reject_path(
                    "network.enforcementMode",
                    "allowedHosts/blockedHosts require an enforcement mechanism: set \
                     enforcementMode 'firewall' or 'both'",
                );
            }
            if has_lists && !firewall && !builtin && !directional_version {
                notes.push(
                    "host lists under enforcementMode 'capabilities' are enforced anyway \
                     (MXC would not filter them before 0.8)"
                        .to_string(),
                );
            }
            if !legacy.default_allow && !has_lists {
                return Some(NetworkPlan::Isolated);
            }
            let mut filter = EgressFilter {
                default_allow: legacy.default_allow,
                deny: Vec::new(),
                allow: Vec::new(),
                hosts: Vec::new(),
            };
            for (deny, list, hosts) in [
                (true, "network.blockedHosts", &legacy.blocked_hosts),
                (false, "network.allowedHosts", &legacy.allowed_hosts),
            ] {
                for (position, host) in hosts.iter().enumerate() {
                    let path = index(list, position);
                    match host_entry(host) {
                        Ok(HostEntry::Net(net)) => {
                            let rule = Rule {
                                path,
                                to: vec![Peer {
                                    cidr: net,
                                    except: Vec::new(),
                                }],
                                ports: Vec::new(),
                            };
                            if deny {
                                filter.deny.push(rule)
                            } else {
                                filter.allow.push(rule)
                            }
                        }
                        Ok(HostEntry::Name) => {
                            let action = if deny { Action::Deny } else { Action::Allow };
                            match crate::hosts::HostPattern::parse(host) {
                                Ok(pattern) => filter.hosts.push(HostRule {
                                    origin: path,
                                    pattern,
                                    action,
                                }),
                                Err(reason) => report.reject(path, host, reason),
                            }
                        }
                        Err(reason) => report.reject(path, host, reason),
                    }
                }
            }
            report.is_clean().then_some(NetworkPlan::Filtered(filter))
        }
        NetworkSpec::Directional(directional) => {
            if let Some(peer) = &directional.allowed_proxy_peer {
                report.reject(
                    "processContainer.network.allowedProxyPeer",
                    peer,
                    "proxy peer identities are a Windows ProcessContainer feature; not supported on Linux",
                );
            }
            if directional.ingress_default == Action::Allow {
                report.reject(
                    "network.ingress.default",
                    "allow",
                    "inbound connections cannot be granted: no port-mapping contract exists for \
                     the sandbox's private network namespace",
                );
            }
            if directional.host_loopback == Action::Allow {
                report.reject(
                    "network.ingress.hostLoopback",
                    "allow",
                    "host loopback access is not supported yet; use runtimeConfig.networkProxy \
                     to reach one loopback proxy",
                );
            }
            if let Some(proxy) = &directional.proxy {
                proxy_checks(report, "runtimeConfig.networkProxy", proxy);
                if directional.posture_specified
                    && (directional.egress_default != Action::Deny
                        || !directional.allow.is_empty()
                        || !directional.deny.is_empty())
                {
                    report.reject_path(
                        "runtimeConfig.networkProxy",
                        "requires network.egress.default='deny' with no direct allow or deny rules",
                    );
                }
                return report.is_clean().then(|| NetworkPlan::ProxyOnly {
                    proxy: proxy.clone(),
                });
            }
            if directional.egress_default == Action::Deny
                && directional.allow.is_empty()
                && directional.deny.is_empty()
            {
                return report.is_clean().then_some(NetworkPlan::Isolated);
            }
            report.is_clean().then(|| {
                NetworkPlan::Filtered(EgressFilter {
                    default_allow: directional.egress_default == Action::Allow,
                    deny: directional.deny.clone(),
                    allow: directional.allow.clone(),
                    hosts: Vec::new(),
                })
            })
        }
    }
}

fn proxy_checks(report: &mut Report, path: &str, proxy: &ProxyEndpoint) {
    match proxy {
        ProxyEndpoint::Url { url, .. } if proxy.has_credentials() => report.reject(
            path,
            network::redact_url(url),
            "must not carry credentials: configure them in the proxy itself",
        ),
        _ => {}
    }
}

enum HostEntry {
    Net(ipnet::IpNet),
    /// A host-name pattern, parsed by [`crate::hosts::HostPattern`].
    Name,
}

/// A legacy host-list entry: IP, CIDR (host bits are tolerated, as LXC does) or a host name
/// pattern.
fn host_entry(text: &str) -> Result<HostEntry, String> {
    if let Ok(address) = text.parse::<std::net::IpAddr>() {
        return Ok(HostEntry::Net(address.into()));
    }
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(HostEntry::Net(net.trunc()));
    }
    Ok(HostEntry::Name)
}
