//! The node's ceiling: the most any container's policy may ask for on this node. A pod author
//! can narrow what the node's administrator set, never widen it: a policy that asks for more is
//! rejected, naming each field that exceeds the ceiling. Nothing is silently narrowed.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Serialize;

use crate::error::{Class, ConfigError, ConfigErrors};
use crate::hosts::{HostPattern, HostRule, PatternKind};
use crate::network::{Action, ProxyEndpoint};
use crate::paths;
use crate::policy::{MountAction, NetworkPlan, Policy};
use crate::source::Source;

/// What policies may grant at most.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ceiling {
    /// Destinations a policy may allow egress to (`0.0.0.0/0` and `::/0` for anywhere).
    pub egress: Vec<IpNet>,
    /// Host-name patterns a policy may allow by name: a policy's pattern must lie within one
    /// of them (`*.example.com` covers `api.example.com` and `*.api.example.com`).
    pub egress_hosts: Vec<HostPattern>,
    /// Proxies a policy may send all traffic through, as URLs (`http://proxy:3128`).
    pub proxies: Vec<String>,
    /// Host paths (and what lies below them) a policy may grant read-only.
    pub readonly_paths: Vec<PathBuf>,
    /// Host paths (and what lies below them) a policy may grant read-write (or read-only).
    pub readwrite_paths: Vec<PathBuf>,
}

fn anywhere() -> [IpNet; 2] {
    [
        IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0).expect("a valid prefix"),
        IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0).expect("a valid prefix"),
    ]
}

impl Ceiling {
    /// The ceiling a policy sets when the node has none of its own: exactly what that policy
    /// allows (the node's default policy bounds what annotations may ask for).
    pub fn of_policy(policy: &Policy) -> Ceiling {
        let mut ceiling = Ceiling::default();
        match &policy.network {
            NetworkPlan::Isolated => {}
            NetworkPlan::Filtered(filter) => {
                if filter.default_allow {
                    ceiling.egress.extend(anywhere());
                }
                for rule in &filter.allow {
                    ceiling.egress.extend(rule.to.iter().map(|peer| peer.cidr));
                }
                ceiling.egress_hosts.extend(
                    filter
                        .hosts
                        .iter()
                        .filter(|h| h.action == Action::Allow)
                        .map(|h| h.pattern.clone()),
                );
            }
            NetworkPlan::ProxyOnly { proxy } => ceiling.proxies.extend(proxy.url()),
        }
        for step in &policy.mounts {
            if let MountAction::Bind {
                source, readonly, ..
            } = &step.action
            {
                if *readonly {
                    ceiling.readonly_paths.push(source.clone());
                } else {
                    ceiling.readwrite_paths.push(source.clone());
                }
            }
        }
        ceiling
    }

    /// Every way `policy` asks for more than this ceiling, one error per field.
    pub fn check(&self, policy: &Policy) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut exceed = |path: String, value: Option<String>, reason: String| {
            errors.push(ConfigError {
                // The policy is valid; this node refuses to run it.
                class: Class::Backend,
                source: policy.source.clone(),
                path,
                value,
                reason: format!("exceeds the node's ceiling: {reason}"),
            });
        };
        let directional = policy.version.supports_directional_network();
        match &policy.network {
            NetworkPlan::Isolated => {}
            NetworkPlan::Filtered(filter) => {
                if filter.default_allow && !anywhere().iter().all(|net| self.allows(net)) {
                    let path = if directional {
                        "network.egress.default"
                    } else {
                        "network.defaultPolicy"
                    };
                    exceed(
                        path.into(),
                        quoted("allow"),
                        "the node does not allow egress to every destination".into(),
                    );
                }
                for rule in &filter.allow {
                    for (i, peer) in rule.to.iter().enumerate() {
                        if !self.allows(&peer.cidr) {
                            let path = if directional {
                                format!("{}.to[{i}].cidr", rule.path)
                            } else {
                                rule.path.clone()
                            };
                            exceed(
                                path,
                                quoted(peer.cidr.to_string()),
                                format!(
                                    "egress to it is not allowed on this node (allowed: {})",
                                    list(&self.egress)
                                ),
                            );
                        }
                    }
                }
                for host in self.hosts_beyond(&filter.hosts) {
                    exceed(
                        host.origin.clone(),
                        quoted(host.pattern.to_string()),
                        self.hosts_reason(),
                    );
                }
            }
            NetworkPlan::ProxyOnly { proxy } => {
                let allowed = proxy
                    .url()
                    .is_some_and(|url| self.proxies.iter().any(|p| same_proxy(p, &url)));
                if !allowed {
                    let path = if directional {
                        "runtimeConfig.networkProxy"
                    } else {
                        "network.proxy"
                    };
                    exceed(
                        path.into(),
                        proxy_name(proxy).and_then(quoted),
                        format!(
                            "this proxy is not allowed on this node (allowed: {})",
                            list(&self.proxies)
                        ),
                    );
                }
            }
        }
        for step in &policy.mounts {
            if let MountAction::Bind {
                source, readonly, ..
            } = &step.action
            {
                let within = |roots: &[PathBuf]| roots.iter().any(|r| paths::is_within(source, r));
                let ok =
                    within(&self.readwrite_paths) || (*readonly && within(&self.readonly_paths));
                if !ok {
                    let access = if *readonly { "read-only" } else { "read-write" };
                    exceed(
                        step.origin.clone(),
                        quoted(source.display().to_string()),
                        format!(
                            "the node does not allow this host path {access} (read-write: {}; \
                             read-only: {})",
                            list_paths(&self.readwrite_paths),
                            list_paths(&self.readonly_paths)
                        ),
                    );
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Every way host rules written outside any policy (a pod's `io.mxc.egress.hosts`) allow
    /// more than this ceiling; `source` is where they were written, their origins the paths.
    pub fn check_hosts(&self, source: &Source, rules: &[HostRule]) -> Result<(), ConfigErrors> {
        let errors: Vec<ConfigError> = self
            .hosts_beyond(rules)
            .map(|host| ConfigError {
                class: Class::Backend,
                source: source.clone(),
                path: host.origin.clone(),
                value: quoted(host.pattern.to_string()),
                reason: format!("exceeds the node's ceiling: {}", self.hosts_reason()),
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The allow rules among `rules` that no ceiling pattern covers (deny rules only narrow).
    fn hosts_beyond<'a>(&'a self, rules: &'a [HostRule]) -> impl Iterator<Item = &'a HostRule> {
        rules.iter().filter(|rule| {
            rule.action == Action::Allow
                && !self.egress_hosts.iter().any(|c| covers(c, &rule.pattern))
        })
    }

    fn hosts_reason(&self) -> String {
        format!(
            "egress to these host names is not allowed on this node (allowed: {})",
            list(&self.egress_hosts)
        )
    }

    fn allows(&self, net: &IpNet) -> bool {
        self.egress.iter().any(|allowed| allowed.contains(net))
    }
}

/// Whether every name and port `inner` matches is one `outer` matches.
fn covers(outer: &HostPattern, inner: &HostPattern) -> bool {
    let port_ok = outer.port.is_none() || outer.port == inner.port;
    let below = |name: &str, domain: &str| {
        name.len() > domain.len() + 1
            && name.ends_with(domain)
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
    };
    let (o, i) = (outer.domain.as_str(), inner.domain.as_str());
    let names_ok = match (outer.kind, inner.kind) {
        (PatternKind::Exact, PatternKind::Exact) => o == i,
        (PatternKind::Exact, _) => false,
        // `*.o` matches strict subdomains of o: an exact or `*.` pattern at o or below, or a
        // `**.` pattern strictly below.
        (PatternKind::Subdomains, PatternKind::Exact) => below(i, o),
        (PatternKind::Subdomains, PatternKind::Subdomains) => i == o || below(i, o),
        (PatternKind::Subdomains, PatternKind::DomainAndSubdomains) => below(i, o),
        (PatternKind::DomainAndSubdomains, _) => i == o || below(i, o),
    };
    port_ok && names_ok
}

/// A value as the error shows it: compact JSON.
fn quoted(text: impl Into<String>) -> Option<String> {
    Some(serde_json::Value::String(text.into()).to_string())
}

fn same_proxy(allowed: &str, url: &str) -> bool {
    allowed
        .trim_end_matches('/')
        .eq_ignore_ascii_case(url.trim_end_matches('/'))
}

/// A proxy for an error message: scheme, host and port only, never credentials.
fn proxy_name(proxy: &ProxyEndpoint) -> Option<String> {
    match proxy {
        ProxyEndpoint::Localhost { port } => Some(format!("localhost:{port}")),
        ProxyEndpoint::Url {
            scheme, host, port, ..
        } => Some(format!("{scheme}://{host}:{port}")),
        ProxyEndpoint::BuiltinTestServer => None,
    }
}

fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn list_paths(items: &[PathBuf]) -> String {
    let shown: Vec<String> = items.iter().map(|p| p.display().to_string()).collect();
    list(&shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap()
    }

    #[test]
    fn host_patterns_cover_what_they_match() {
        assert!(covers(&p("*.example.com"), &p("api.example.com")));
        assert!(covers(&p("*.example.com"), &p("*.api.example.com")));
        assert!(covers(&p("*.example.com"), &p("*.example.com")));
        assert!(!covers(&p("*.example.com"), &p("example.com")));
        assert!(!covers(&p("*.example.com"), &p("**.example.com")));
        assert!(covers(&p("**.example.com"), &p("**.example.com")));
        assert!(covers(&p("**.example.com"), &p("example.com:443")));
        assert!(!covers(&p("example.com"), &p("*.example.com")));
        assert!(!covers(&p("example.com:443"), &p("example.com")));
        assert!(covers(&p("example.com"), &p("example.com:22")));
        assert!(!covers(&p("**.example.com"), &p("example.org")));
        assert!(!covers(&p("**.example.com"), &p("badexample.com")));
    }

    #[test]
    fn host_rules_from_outside_a_policy_are_bounded_by_name() {
        let ceiling = Ceiling {
            egress_hosts: vec![p("*.example.com")],
            ..Ceiling::default()
        };
        let rule =
            |origin: &str, text: &str, action| HostRule::parse(origin, text, action).unwrap();
        let source = Source::Annotation("io.mxc.egress.hosts".into());
        let rules = [
            rule("allow[0]", "api.example.com", Action::Allow),
            rule("allow[1]", "example.org", Action::Allow),
            rule("deny[0]", "example.net", Action::Deny),
        ];
        let errors = ceiling.check_hosts(&source, &rules).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(
            errors.to_string(),
            "annotation io.mxc.egress.hosts: allow[1] = \"example.org\": exceeds the node's \
             ceiling: egress to these host names is not allowed on this node (allowed: \
             *.example.com)"
        );
        assert!(ceiling.check_hosts(&source, &rules[..1]).is_ok());
    }
}
