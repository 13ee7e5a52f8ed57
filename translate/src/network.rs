//! MXC's two network models, validated: legacy (`defaultPolicy`, host lists, `proxy`) and
//! directional (0.8 `egress`/`ingress`, `runtimeConfig.networkProxy`). This is the document
//! level; which of them Linux can enforce is decided in `resolve`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{index, join, Report};
use crate::model;
use crate::version::SchemaVersion;

/// The network part of a config after validation, in the model the config was written in.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "model", rename_all = "camelCase")]
pub enum NetworkSpec {
    Legacy(LegacyNetwork),
    Directional(DirectionalNetwork),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyNetwork {
    /// Whether a `network` object was present at all.
    pub specified: bool,
    /// `block` unless the config says `allow` (MXC's runtime default on every version).
    pub default_allow: bool,
    pub enforcement: model::NetworkEnforcement,
    /// Whether `enforcementMode` was written explicitly.
    pub enforcement_specified: bool,
    pub allow_local_network: bool,
    pub allowed_hosts: Vec<String>,
    pub blocked_hosts: Vec<String>,
    pub proxy: Option<ProxyEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectionalNetwork {
    /// Whether `egress` or `ingress` was written (a proxy then requires deny and no rules).
    pub posture_specified: bool,
    pub egress_default: Action,
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    pub ingress_default: Action,
    pub host_loopback: Action,
    /// `runtimeConfig.networkProxy`.
    pub proxy: Option<ProxyEndpoint>,
    /// `processContainer.network.allowedProxyPeer` (non-blank only).
    pub allowed_proxy_peer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

impl From<model::NetworkAction> for Action {
    fn from(action: model::NetworkAction) -> Self {
        match action {
            model::NetworkAction::Allow => Action::Allow,
            model::NetworkAction::Deny => Action::Deny,
        }
    }
}

/// A directional rule: destinations (empty = every destination of both families) and
/// protocol/port selectors (empty = every protocol and port).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// JSON path of the rule, so audit records and `explain` can name it.
    pub path: String,
    pub to: Vec<Peer>,
    pub ports: Vec<PortSelector>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSelector {
    pub protocol: Protocol,
    /// Inclusive destination-port range; `None` matches every port.
    pub ports: Option<(u16, u16)>,
}

/// A cooperative HTTP(S) proxy the sandbox may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ProxyEndpoint {
    /// `proxy.localhost`: a proxy on the host's loopback at this port.
    Localhost { port: u16 },
    /// `proxy.url` or `runtimeConfig.networkProxy`.
    Url {
        url: String,
        scheme: String,
        host: String,
        port: u16,
    },
    /// `proxy.builtinTestServer`.
    BuiltinTestServer,
}

impl ProxyEndpoint {
    /// The URL the sandbox's proxy variables carry.
    pub fn url(&self) -> Option<String> {
        match self {
            ProxyEndpoint::Localhost { port } => Some(format!("http://127.0.0.1:{port}")),
            ProxyEndpoint::Url { url, .. } => Some(url.clone()),
            ProxyEndpoint::BuiltinTestServer => None,
        }
    }

    pub fn host(&self) -> Option<&str> {
        match self {
            ProxyEndpoint::Localhost { .. } => Some("127.0.0.1"),
            ProxyEndpoint::Url { host, .. } => Some(host),
            ProxyEndpoint::BuiltinTestServer => None,
        }
    }

    pub fn has_credentials(&self) -> bool {
        match self {
            ProxyEndpoint::Url { url, .. } => url::Url::parse(url)
                .map(|parsed| !parsed.username().is_empty() || parsed.password().is_some())
                .unwrap_or(false),
            _ => false,
        }
    }
}

/// Whether `host` names loopback (`localhost`, 127/8, ::1), brackets allowed.
pub fn host_is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || unbracket(host)
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host)
}

const MIX_MESSAGE: &str = "network configuration cannot mix defaultPolicy, enforcementMode, \
    allowLocalNetwork, allowedHosts, blockedHosts, or proxy with egress, ingress, runtimeConfig, \
    or processContainer.network";

pub(crate) const DIRECTIONAL_VERSION_MESSAGE: &str = "network.egress, network.ingress, \
    runtimeConfig, and processContainer.network require schema version 0.8 or later";

/// Chooses the model and validates it (MXC's `network_parser` rules). `host_process` is true
/// for one-shot requests, whose sandbox runs on this host: its proxy must then be on loopback
/// (a state-aware WSLC request names one routable from its VM instead).
pub(crate) fn parse(
    report: &mut Report,
    version: SchemaVersion,
    network: Option<&model::Network>,
    runtime: Option<&model::RuntimeConfig>,
    process_container: Option<&model::ProcessContainerNetwork>,
    host_process: bool,
) -> Option<NetworkSpec> {
    let has_legacy = network.is_some_and(|n| {
        n.default_policy.is_some()
            || n.enforcement_mode.is_some()
            || n.allow_local_network.is_some()
            || n.allowed_hosts.is_some()
            || n.blocked_hosts.is_some()
            || n.proxy.is_some()
    });
    let has_posture = network.is_some_and(|n| n.egress.is_some() || n.ingress.is_some());
    let runtime_proxy = runtime.and_then(|r| r.network_proxy.as_deref());
    let proxy_peer = process_container
        .and_then(|p| p.allowed_proxy_peer.as_deref())
        .filter(|peer| !peer.trim().is_empty());
    let has_directional = has_posture || runtime_proxy.is_some() || proxy_peer.is_some();

    if has_legacy && has_directional {
        report.reject_path("network", MIX_MESSAGE);
        return None;
    }
    if (has_posture || runtime.is_some() || process_container.is_some())
        && !version.supports_directional_network()
    {
        let path = if has_posture {
            "network"
        } else if runtime.is_some() {
            "runtimeConfig"
        } else {
            "processContainer.network"
        };
        report.reject_path(path, DIRECTIONAL_VERSION_MESSAGE);
        return None;
    }

    if has_legacy || !version.supports_directional_network() {
        return legacy(report, network).map(NetworkSpec::Legacy);
    }

    let egress = network.and_then(|n| n.egress.clone()).unwrap_or_default();
    let ingress = network.and_then(|n| n.ingress.clone()).unwrap_or_default();
    let allow = rules(report, "network.egress.allow", egress.allow.as_deref());
    let deny = rules(report, "network.egress.deny", egress.deny.as_deref());
    let proxy = runtime_proxy.and_then(|url| {
        let endpoint = proxy_url(report, "runtimeConfig.networkProxy", url)?;
        let host = endpoint.host().unwrap_or_default();
        let canonical = host.eq_ignore_ascii_case("localhost")
            || matches!(unbracket(host), "127.0.0.1" | "::1");
        if host_process && !canonical {
            report.reject(
                "runtimeConfig.networkProxy",
                url,
                "must use localhost, 127.0.0.1, or [::1]",
            );
            return None;
        }
        Some(endpoint)
    });
    Some(NetworkSpec::Directional(DirectionalNetwork {
        posture_specified: has_posture,
        egress_default: egress.default.map_or(Action::Deny, Action::from),
        allow,
        deny,
        ingress_default: ingress.default.map_or(Action::Deny, Action::from),
        host_loopback: ingress.host_loopback.map_or(Action::Deny, Action::from),
        proxy,
        allowed_proxy_peer: proxy_peer.map(str::to_owned),
    }))
}

fn legacy(report: &mut Report, network: Option<&model::Network>) -> Option<LegacyNetwork> {
    let Some(network) = network else {
        return Some(LegacyNetwork {
            specified: false,
            default_allow: false,
            enforcement: model::NetworkEnforcement::Capabilities,
            enforcement_specified: false,
            allow_local_network: false,
            allowed_hosts: Vec::new(),
            blocked_hosts: Vec::new(),
            proxy: None,
        });
    };
    let proxy = match &network.proxy {
        Some(proxy) => Some(legacy_proxy(report, proxy)?),
        None => None,
    };
    Some(LegacyNetwork {
        specified: true,
        default_allow: network.default_policy == Some(model::NetworkPolicy::Allow),
        enforcement: network
            .enforcement_mode
            .unwrap_or(model::NetworkEnforcement::Capabilities),
        enforcement_specified: network.enforcement_mode.is_some(),
        allow_local_network: network.allow_local_network.unwrap_or(false),
        allowed_hosts: network.allowed_hosts.clone().unwrap_or_default(),
        blocked_hosts: network.blocked_hosts.clone().unwrap_or_default(),
        proxy,
    })
}

fn legacy_proxy(report: &mut Report, proxy: &model::Proxy) -> Option<ProxyEndpoint> {
    const PATH: &str = "network.proxy";
    if let Some(builtin) = proxy.builtin_test_server {
        if !builtin {
            report.reject(
                join(PATH, "builtinTestServer"),
                false,
                "must be true when present",
            );
            return None;
        }
        if proxy.localhost.is_some() || proxy.url.is_some() {
            report.reject_path(
                PATH,
                "when builtinTestServer is true, no other proxy options may be set",
            );
            return None;
        }
        return Some(ProxyEndpoint::BuiltinTestServer);
    }
    if let Some(port) = proxy.localhost {
        if port == 0 {
            report.reject(
                join(PATH, "localhost"),
                port,
                "must be a port between 1 and 65535",
            );
            return None;
        }
        // MXC ignores `url` when `localhost` is also set; so do we, and `explain` says so.
        return Some(ProxyEndpoint::Localhost { port });
    }
    if let Some(url) = &proxy.url {
        return proxy_url(report, &join(PATH, "url"), url);
    }
    report.reject_path(PATH, "must specify builtinTestServer, localhost, or url");
    None
}

/// A proxy URL for messages: its user information (user name and password) replaced, whether
/// or not the URL parses.
pub fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://").map(|i| i + 3) else {
        return text.to_string();
    };
    let authority_end = text[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| scheme_end + i);
    match text[scheme_end..authority_end].rfind('@') {
        Some(at) => format!(
            "{}REDACTED@{}",
            &text[..scheme_end],
            &text[scheme_end + at + 1..]
        ),
        None => text.to_string(),
    }
}

fn proxy_url(report: &mut Report, path: &str, text: &str) -> Option<ProxyEndpoint> {
    let redacted = redact_url(text);
    let parsed = match url::Url::parse(text) {
        Ok(parsed) => parsed,
        Err(error) => {
            report.reject(path, &redacted, format!("is not a valid URL: {error}"));
            return None;
        }
    };
    let scheme = parsed.scheme().to_string();
    if scheme != "http" && scheme != "https" {
        report.reject(
            path,
            &redacted,
            format!("must use the 'http' or 'https' scheme (got '{scheme}')"),
        );
        return None;
    }
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        report.reject(
            path,
            &redacted,
            "must include a host (e.g., http://localhost:8080)",
        );
        return None;
    };
    // `Url::port` is None for the scheme's default port too, so look at the text: MXC requires
    // the port to be written out.
    let Some(port) = parsed
        .port()
        .or_else(|| explicit_default_port(text, &parsed))
    else {
        report.reject(
            path,
            &redacted,
            "must include a port (e.g., http://localhost:8080)",
        );
        return None;
    };
    Some(ProxyEndpoint::Url {
        url: text.to_string(),
        scheme,
        host: host.to_string(),
        port,
    })
}

fn explicit_default_port(text: &str, parsed: &url::Url) -> Option<u16> {
    let default = parsed.port_or_known_default()?;
    text.contains(&format!(":{default}")).then_some(default)
}

fn rules(report: &mut Report, path: &str, rules: Option<&[model::NetworkRule]>) -> Vec<Rule> {
    let mut out = Vec::new();
    for (position, rule) in rules.unwrap_or_default().iter().enumerate() {
        let rule_path = index(path, position);
        if rule.to.as_ref().is_some_and(Vec::is_empty) {
            report.reject(
                join(&rule_path, "to"),
                serde_json::json!([]),
                "must contain at least one destination when specified",
            );
            continue;
        }
        if rule.ports.as_ref().is_some_and(Vec::is_empty) {
            report.reject(
                join(&rule_path, "ports"),
                serde_json::json!([]),
                "must contain at least one selector when specified",
            );
            continue;
        }
        let to = rule
            .to
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, peer)| self::peer(report, &index(&join(&rule_path, "to"), i), peer))
            .collect();
        let ports = rule
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, port)| selector(report, &index(&join(&rule_path, "ports"), i), port))
            .collect();
        out.push(Rule {
            path: rule_path,
            to,
            ports,
        });
    }
    out
}

/// Parses a CIDR the way MXC does: a bare address is a /32 or /128, host bits must be zero.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address));
    }
    let net: IpNet = text
        .parse()
        .map_err(|_| "must be a valid network CIDR: invalid IP address syntax".to_string())?;
    if net.network() != net.addr() {
        return Err(format!(
            "must be a valid network CIDR: host part of address was not zero (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

fn peer(report: &mut Report, path: &str, peer: &model::NetworkPeer) -> Option<Peer> {
    let cidr_path = join(path, "cidr");
    let cidr = match parse_cidr(&peer.cidr) {
        Ok(cidr) => cidr,
        Err(reason) => {
            report.reject(cidr_path, &peer.cidr, reason);
            return None;
        }
    };
    let mut except = Vec::new();
    for (i, text) in peer
        .except
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let except_path = index(&join(path, "except"), i);
        match parse_cidr(text) {
            Ok(net) if cidr.contains(&net) => except.push(net),
            Ok(_) => report.reject(
                except_path,
                text,
                format!("must be contained within {cidr_path} ({cidr})"),
            ),
            Err(reason) => report.reject(except_path, text, reason),
        }
    }
    Some(Peer { cidr, except })
}

fn selector(report: &mut Report, path: &str, port: &model::NetworkPort) -> Option<PortSelector> {
    if port.port == Some(0) {
        report.reject(join(path, "port"), 0, "must be between 1 and 65535");
        return None;
    }
    if port.end_port == Some(0) {
        report.reject(join(path, "endPort"), 0, "must be between 1 and 65535");
        return None;
    }
    let protocol = match port.protocol.unwrap_or(model::NetworkProtocol::Any) {
        model::NetworkProtocol::Tcp => Protocol::Tcp,
        model::NetworkProtocol::Udp => Protocol::Udp,
        model::NetworkProtocol::Icmp => Protocol::Icmp,
        model::NetworkProtocol::Any => Protocol::Any,
    };
    if protocol == Protocol::Icmp && (port.port.is_some() || port.end_port.is_some()) {
        report.reject_path(path, "cannot specify port or endPort for protocol='icmp'");
        return None;
    }
    let ports = match (port.port, port.end_port) {
        (None, None) => None,
        (None, Some(end)) => {
            report.reject(join(path, "endPort"), end, "endPort requires port");
            return None;
        }
        (Some(start), None) => Some((start, start)),
        (Some(start), Some(end)) if end < start => {
            report.reject(
                join(path, "endPort"),
                end,
                format!("must be greater than or equal to port ({start})"),
            );
            return None;
        }
        (Some(start), Some(end)) => Some((start, end)),
    };
    Some(PortSelector { protocol, ports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_rules() {
        assert_eq!(parse_cidr("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(
            parse_cidr("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert!(parse_cidr("10.0.0.1/8").unwrap_err().contains("host part"));
        assert!(parse_cidr("example.com")
            .unwrap_err()
            .contains("invalid IP"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn loopback_hosts() {
        assert!(host_is_loopback("localhost"));
        assert!(host_is_loopback("127.0.0.2"));
        assert!(host_is_loopback("[::1]"));
        assert!(!host_is_loopback("10.0.0.1"));
    }

    #[test]
    fn redacts_user_names_and_passwords_even_in_urls_that_do_not_parse() {
        for (url, shown) in [
            (
                "http://user:secret@proxy:8080",
                "http://REDACTED@proxy:8080",
            ),
            (
                "http://alice@proxy:8080/x@y",
                "http://REDACTED@proxy:8080/x@y",
            ),
            ("http://user:p@ss@[bad", "http://REDACTED@[bad"),
            ("http://proxy:8080", "http://proxy:8080"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }
}
