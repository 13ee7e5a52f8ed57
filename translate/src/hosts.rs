//! Egress by host name: the patterns a policy, the caller (`mxc run --allow-host`), the node
//! configuration or a pod annotation may write, their validation at load, and matching.
//!
//! A pattern is an exact name (`example.com`), every subdomain at any depth but not the name
//! itself (`*.example.com`), or both (`**.example.com`), with an optional `:port`. Names are
//! case-insensitive, a trailing dot is ignored, and internationalised names are compared in
//! their ASCII (punycode) form. `*` alone, a bare top-level domain and a wildcard over a public
//! suffix (`*.co.uk`, `*.github.io`) are refused: each would open a whole registry's worth of
//! owners. Deny beats allow; a name no pattern matches gets the policy's egress default.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::network::{Action, Protocol, Rule};

/// Which names a pattern covers, relative to its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PatternKind {
    /// `example.com`: that name only.
    Exact,
    /// `*.example.com`: every subdomain at any depth, not `example.com` itself.
    Subdomains,
    /// `**.example.com`: `example.com` and every subdomain.
    DomainAndSubdomains,
}

/// A validated host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    pub kind: PatternKind,
    /// Lowercase ASCII, no trailing dot.
    pub domain: String,
    /// `None` matches every port.
    pub port: Option<u16>,
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PatternKind::Exact => {}
            PatternKind::Subdomains => f.write_str("*.")?,
            PatternKind::DomainAndSubdomains => f.write_str("**.")?,
        }
        f.write_str(&self.domain)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl Serialize for HostPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HostPattern::parse(&text)
            .map_err(|reason| serde::de::Error::custom(format!("{text:?}: {reason}")))
    }
}

impl HostPattern {
    /// Parses and validates a pattern; the error says why it was refused.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("is empty; write a host name such as api.example.com".into());
        }
        if trimmed.starts_with('[') || trimmed.parse::<IpAddr>().is_ok() || looks_like_cidr(trimmed)
        {
            return Err(
                "is an address, not a host name: addresses are decided by CIDR rules \
                 (network.egress.allow[].to[].cidr, or an address in allowedHosts)"
                    .into(),
            );
        }
        let (host, port) = split_port(trimmed)?;
        let (kind, rest) = if let Some(rest) = host.strip_prefix("**.") {
            (PatternKind::DomainAndSubdomains, rest)
        } else if let Some(rest) = host.strip_prefix("*.") {
            (PatternKind::Subdomains, rest)
        } else if host == "*" || host == "**" {
            return Err(
                "matches every host; leave host rules out and use the egress default \
                 instead, or name the hosts"
                    .into(),
            );
        } else {
            (PatternKind::Exact, host)
        };
        if rest.contains('*') {
            return Err(
                "may use a wildcard only as its whole first label ('*.example.com' for every \
                 subdomain, '**.example.com' for the domain and every subdomain)"
                    .into(),
            );
        }
        let domain = normalize_name(rest)?;
        if !domain.contains('.') {
            return Err(format!(
                "'{domain}' is a bare top-level domain; name a host or a domain below it"
            ));
        }
        if kind != PatternKind::Exact && is_public_suffix(&domain) {
            return Err(format!(
                "'{domain}' is a public suffix (anyone can register a name below it); a wildcard \
                 over it would allow unrelated owners: name the domains instead"
            ));
        }
        Ok(HostPattern { kind, domain, port })
    }

    /// Whether the pattern covers `name` (normalised: lowercase ASCII, no trailing dot) on any
    /// port.
    pub fn matches_name(&self, name: &str) -> bool {
        let below = || {
            name.len() > self.domain.len() + 1
                && name.ends_with(self.domain.as_str())
                && name.as_bytes()[name.len() - self.domain.len() - 1] == b'.'
        };
        match self.kind {
            PatternKind::Exact => name == self.domain,
            PatternKind::Subdomains => below(),
            PatternKind::DomainAndSubdomains => name == self.domain || below(),
        }
    }

    /// Whether the pattern covers `name` on `port` (`None`: the name on some port, as a DNS
    /// lookup asks; a pattern with a port then matches too).
    pub fn matches(&self, name: &str, port: Option<u16>) -> bool {
        self.matches_name(name)
            && match (self.port, port) {
                (Some(mine), Some(asked)) => mine == asked,
                _ => true,
            }
    }
}

fn looks_like_cidr(text: &str) -> bool {
    text.contains('/') && text.parse::<IpNet>().is_ok()
}

fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    match text.rsplit_once(':') {
        None => Ok((text, None)),
        Some((host, port)) => {
            let port: u16 =
                port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                    format!("has port '{port}'; a port is a number from 1 to 65535")
                })?;
            Ok((host, Some(port)))
        }
    }
}

/// A host name in the form patterns and lookups are compared in: ASCII (internationalised
/// names in punycode), lowercase, no trailing dot; every label 1-63 letters, digits, '-' or
/// '_' (not starting or ending with '-'), at most 253 characters.
pub fn normalize_name(text: &str) -> Result<String, String> {
    let trimmed = text.strip_suffix('.').unwrap_or(text);
    let ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(trimmed)
            .map_err(|_| format!("'{text}' is not a valid internationalised host name"))?
    };
    let valid = !ascii.is_empty()
        && ascii.len() <= 253
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(ascii)
    } else {
        Err(format!(
            "'{text}' is not a host name (labels of letters, digits, '-' and '_', separated by dots)"
        ))
    }
}

/// Whether `domain` (normalised) is itself a public suffix: listed in the Public Suffix List
/// (ICANN and private sections), or a single unlisted label.
pub fn is_public_suffix(domain: &str) -> bool {
    psl::suffix(domain.as_bytes())
        .is_some_and(|suffix| suffix.trim().as_bytes() == domain.as_bytes())
}

/// One host rule and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRule {
    /// Where it was written: a JSON path (`network.allowedHosts[2]`), a flag
    /// (`--allow-host[0]`), the node configuration or an annotation.
    pub origin: String,
    pub pattern: HostPattern,
    pub action: Action,
}

impl HostRule {
    /// Parses `text` as a rule from `origin`; the error names the origin and the reason.
    pub fn parse(origin: &str, text: &str, action: Action) -> Result<HostRule, String> {
        let pattern =
            HostPattern::parse(text).map_err(|reason| format!("{origin} = {text:?}: {reason}"))?;
        Ok(HostRule {
            origin: origin.to_string(),
            pattern,
            action,
        })
    }
}

/// The verdict on a name (or name and port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameVerdict<'a> {
    /// An allow rule matched and no deny rule did.
    Allowed(&'a HostRule),
    /// A deny rule matched (deny beats allow).
    Denied(&'a HostRule),
    /// No rule matched: the egress default decides.
    Default { allow: bool },
}

impl NameVerdict<'_> {
    pub fn allowed(&self) -> bool {
        match self {
            NameVerdict::Allowed(_) => true,
            NameVerdict::Denied(_) => false,
            NameVerdict::Default { allow } => *allow,
        }
    }

    /// The rule that decided, as audit records and `explain` name it.
    pub fn rule(&self) -> &str {
        match self {
            NameVerdict::Allowed(rule) | NameVerdict::Denied(rule) => &rule.origin,
            NameVerdict::Default { .. } => "network.egress.default",
        }
    }
}

/// Decides `name` on `port` against `rules`, deny first; `default_allow` when none matches.
/// A lookup (`port` `None`) is refused only by a deny rule without a port: a name denied on one
/// port may still be reached on another.
pub fn decide<'a>(
    rules: &'a [HostRule],
    name: &str,
    port: Option<u16>,
    default_allow: bool,
) -> NameVerdict<'a> {
    let deny = rules.iter().find(|rule| {
        rule.action == Action::Deny
            && match port {
                Some(_) => rule.pattern.matches(name, port),
                None => rule.pattern.port.is_none() && rule.pattern.matches_name(name),
            }
    });
    if let Some(rule) = deny {
        return NameVerdict::Denied(rule);
    }
    match rules
        .iter()
        .find(|rule| rule.action == Action::Allow && rule.pattern.matches(name, port))
    {
        Some(rule) => NameVerdict::Allowed(rule),
        None => NameVerdict::Default {
            allow: default_allow,
        },
    }
}

/// The verdict of the CIDR rules on one destination: deny rules, then allow rules, then the
/// default, exactly as the nftables ruleset orders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressVerdict {
    pub allow: bool,
    /// The deciding rule's JSON path, or `network.egress.default`.
    pub rule: String,
    /// Whether a rule (not the default) decided.
    pub explicit: bool,
}

/// Decides a TCP or UDP destination by the CIDR rules.
pub fn decide_address(
    deny: &[Rule],
    allow: &[Rule],
    default_allow: bool,
    address: IpAddr,
    protocol: Protocol,
    port: u16,
) -> AddressVerdict {
    let hit = |rule: &Rule| rule_matches(rule, address, protocol, port);
    if let Some(rule) = deny.iter().find(|r| hit(r)) {
        return AddressVerdict {
            allow: false,
            rule: rule.path.clone(),
            explicit: true,
        };
    }
    if let Some(rule) = allow.iter().find(|r| hit(r)) {
        return AddressVerdict {
            allow: true,
            rule: rule.path.clone(),
            explicit: true,
        };
    }
    AddressVerdict {
        allow: default_allow,
        rule: "network.egress.default".into(),
        explicit: false,
    }
}

fn rule_matches(rule: &Rule, address: IpAddr, protocol: Protocol, port: u16) -> bool {
    let to = rule.to.is_empty()
        || rule.to.iter().any(|peer| {
            peer.cidr.contains(&address) && !peer.except.iter().any(|e| e.contains(&address))
        });
    let ports = rule.ports.is_empty()
        || rule.ports.iter().any(|selector| {
            let protocol_ok = match selector.protocol {
                Protocol::Any => {
                    matches!(protocol, Protocol::Tcp | Protocol::Udp) || selector.ports.is_none()
                }
                other => other == protocol,
            };
            protocol_ok
                && selector
                    .ports
                    .is_none_or(|(low, high)| (low..=high).contains(&port))
        });
    to && ports
}

/// Addresses a name must not lead to unless a CIDR rule allows them explicitly: loopback,
/// unspecified, private (RFC 1918, unique-local), shared (100.64/10), link-local, multicast,
/// broadcast, and the IPv4-mapped forms of these. Reaching one through a name would reach the
/// host, the node or the local network behind a name the policy allowed for something else.
pub fn is_local_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local_address(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{parse_cidr, Peer, PortSelector};

    fn p(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn exact_wildcard_and_apex() {
        let exact = p("Example.COM.");
        assert_eq!(exact.to_string(), "example.com");
        assert!(exact.matches_name("example.com"));
        assert!(!exact.matches_name("www.example.com"));

        let sub = p("*.example.com");
        assert!(sub.matches_name("a.example.com"));
        assert!(sub.matches_name("a.b.c.example.com"));
        assert!(!sub.matches_name("example.com"));
        assert!(!sub.matches_name("badexample.com"));
        assert!(!sub.matches_name("example.com.evil.net"));

        let both = p("**.example.com");
        assert!(both.matches_name("example.com"));
        assert!(both.matches_name("x.y.example.com"));
        assert!(!both.matches_name("xexample.com"));
    }

    #[test]
    fn ports() {
        let ssh = p("git.example.com:22");
        assert_eq!(ssh.port, Some(22));
        assert!(ssh.matches("git.example.com", Some(22)));
        assert!(!ssh.matches("git.example.com", Some(443)));
        assert!(ssh.matches("git.example.com", None));
        assert_eq!(p("*.example.com:443").to_string(), "*.example.com:443");
        for bad in [
            "example.com:0",
            "example.com:65536",
            "example.com:ssh",
            "example.com:",
        ] {
            assert!(
                HostPattern::parse(bad).unwrap_err().contains("port"),
                "{bad}"
            );
        }
    }

    #[test]
    fn refused_at_load() {
        for (bad, why) in [
            ("*", "every host"),
            ("**", "every host"),
            ("com", "top-level"),
            ("*.com", "top-level"),
            ("**.org", "top-level"),
            ("*.co.uk", "public suffix"),
            ("**.co.uk", "public suffix"),
            ("*.github.io", "public suffix"),
            ("foo.*.com", "whole first label"),
            ("*foo.com", "whole first label"),
            ("***.example.com", "whole first label"),
            ("10.0.0.1", "address"),
            ("10.0.0.0/8", "address"),
            ("[::1]:443", "address"),
            ("2001:db8::1", "address"),
            ("", "empty"),
            ("exa mple.com", "not a host name"),
            ("-a.example.com", "not a host name"),
            ("a..example.com", "not a host name"),
        ] {
            let error = HostPattern::parse(bad).expect_err(bad);
            assert!(error.contains(why), "{bad}: {error}");
        }
        // Below a public suffix, and exact names that are suffixes, are fine.
        p("*.example.co.uk");
        p("*.pages.example.github.io");
        p("co.uk");
    }

    #[test]
    fn internationalised_names_compare_in_punycode() {
        let pattern = p("*.bücher.example");
        assert_eq!(pattern.domain, "xn--bcher-kva.example");
        assert!(pattern.matches_name(&normalize_name("www.BÜCHER.example").unwrap()));
    }

    fn rule(action: Action, text: &str, origin: &str) -> HostRule {
        HostRule::parse(origin, text, action).unwrap()
    }

    #[test]
    fn deny_beats_allow_and_the_default_decides_the_rest() {
        let rules = vec![
            rule(Action::Allow, "**.example.com", "a[0]"),
            rule(Action::Deny, "secret.example.com", "d[0]"),
            rule(Action::Deny, "*.example.com:25", "d[1]"),
        ];
        assert_eq!(
            decide(&rules, "example.com", Some(443), false).rule(),
            "a[0]"
        );
        let denied = decide(&rules, "secret.example.com", Some(443), false);
        assert!(!denied.allowed());
        assert_eq!(denied.rule(), "d[0]");
        assert!(!decide(&rules, "mail.example.com", Some(25), false).allowed());
        // A lookup is not refused by a port-specific deny.
        assert!(decide(&rules, "mail.example.com", None, false).allowed());
        assert!(!decide(&rules, "secret.example.com", None, false).allowed());
        assert_eq!(
            decide(&rules, "other.net", Some(80), false),
            NameVerdict::Default { allow: false }
        );
        assert!(decide(&rules, "other.net", Some(80), true).allowed());
    }

    #[test]
    fn rule_errors_name_their_origin() {
        let error = HostRule::parse("--allow-host[1]", "*.co.uk", Action::Allow).unwrap_err();
        assert!(
            error.starts_with("--allow-host[1] = \"*.co.uk\": "),
            "{error}"
        );
    }

    #[test]
    fn addresses_follow_the_cidr_rules() {
        let r = |path: &str, cidr: &str, except: &[&str], ports: Vec<PortSelector>| Rule {
            path: path.into(),
            to: vec![Peer {
                cidr: parse_cidr(cidr).unwrap(),
                except: except.iter().map(|e| parse_cidr(e).unwrap()).collect(),
            }],
            ports,
        };
        let tcp443 = vec![PortSelector {
            protocol: Protocol::Tcp,
            ports: Some((443, 443)),
        }];
        let allow = vec![r(
            "allow[0]",
            "198.18.0.0/15",
            &["198.18.9.0/24"],
            tcp443.clone(),
        )];
        let deny = vec![r("deny[0]", "198.18.5.0/24", &[], vec![])];
        let at = |ip: &str, port| {
            decide_address(
                &deny,
                &allow,
                false,
                ip.parse().unwrap(),
                Protocol::Tcp,
                port,
            )
        };
        assert_eq!(at("198.18.1.1", 443).rule, "allow[0]");
        assert!(at("198.18.1.1", 443).allow);
        assert!(!at("198.18.1.1", 80).allow);
        assert_eq!(at("198.18.5.1", 443).rule, "deny[0]");
        assert_eq!(at("198.18.9.1", 443).rule, "network.egress.default");
        assert!(!at("198.18.9.1", 443).explicit);
        let udp = decide_address(
            &deny,
            &allow,
            false,
            "198.18.1.1".parse().unwrap(),
            Protocol::Udp,
            443,
        );
        assert!(!udp.allow);
    }

    #[test]
    fn local_addresses() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_local_address(local.parse().unwrap()), "{local}");
        }
        for global in [
            "198.18.0.1",
            "93.184.216.34",
            "2001:2::1",
            "2606:4700::1",
            "100.128.0.1",
        ] {
            assert!(!is_local_address(global.parse().unwrap()), "{global}");
        }
    }
}
