//! Egress by host name: a resolver and a filtering proxy that the sandbox cannot go around.
//!
//! The sandbox's DNS reaches only [`dns`], which answers names the policy allows with
//! addresses from the name pools ([`names`]) and refuses the rest. Every TCP connection the
//! sandbox opens is redirected to the [`proxy`] (or reaches it through the proxy variables, as
//! HTTP CONNECT or SOCKS5), which decides by name: the name behind a pool address or the
//! requested target, checked against the TLS server name and every HTTP `Host` on the
//! connection ([`inspect`]); it looks the name up itself for each connection ([`upstream`]) and
//! dials only addresses the CIDR rules do not forbid, never a local one unless a CIDR rule
//! allows it. A bare address is decided by the CIDR rules alone. Each denial is an audit line.
//!
//! [`capture`] puts the listeners into the sandbox's network namespace and the rules that send
//! traffic to them; the proxy itself runs outside the sandbox.

pub mod capture;
pub mod detached;
pub mod dns;
pub mod inspect;
pub mod names;
pub mod proxy;
pub mod upstream;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use mxc_translate::hosts::{self, AddressVerdict, HostRule, NameVerdict};
use mxc_translate::network::{Protocol, Rule};
use mxc_translate::EgressFilter;

use crate::audit::{ContainerAudit, Event, NameDenial, NetworkDenial};
pub use names::AddressBook;
pub use upstream::{Outbound, Resolver};

/// The decisions and state one sandbox's resolver and proxy share.
#[derive(Debug)]
pub struct Egress {
    pub hosts: Vec<HostRule>,
    pub deny: Vec<Rule>,
    pub allow: Vec<Rule>,
    pub default_allow: bool,
    pub book: AddressBook,
    pub resolver: Resolver,
    pub audit: Option<ContainerAudit>,
    /// Addresses that lead to the host itself (its interfaces): never dialled through a name
    /// or by address unless a CIDR rule allows them explicitly.
    pub host_addresses: Vec<IpAddr>,
    /// Where the proxy's own connections and lookups leave from.
    pub outbound: Outbound,
    /// Whether the sandbox's namespace has IPv6 (an engine may switch it off): without it, the
    /// resolver gives no IPv6 addresses, which would lead nowhere.
    pub ipv6: bool,
    stop: AtomicBool,
}

/// One refused request, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Denial {
    /// `dns`, `transparent`, `connect`, `socks` or `http`.
    pub via: &'static str,
    pub name: Option<String>,
    pub sni: Option<String>,
    pub host: Option<String>,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub reason: String,
    pub rule: String,
}

impl Egress {
    pub fn new(filter: &EgressFilter, resolver: Resolver, audit: Option<ContainerAudit>) -> Egress {
        Egress {
            hosts: filter.hosts.clone(),
            deny: filter.deny.clone(),
            allow: filter.allow.clone(),
            default_allow: filter.default_allow,
            book: AddressBook::default(),
            resolver,
            audit,
            host_addresses: Vec::new(),
            outbound: Outbound::Here,
            ipv6: true,
            stop: AtomicBool::new(false),
        }
    }

    pub fn decide_name(&self, name: &str, port: Option<u16>) -> NameVerdict<'_> {
        hosts::decide(&self.hosts, name, port, self.default_allow)
    }

    pub fn decide_address(&self, address: IpAddr, port: u16) -> AddressVerdict {
        hosts::decide_address(
            &self.deny,
            &self.allow,
            self.default_allow,
            address,
            Protocol::Tcp,
            port,
        )
    }

    /// Whether `address` leads to the host or the local network: refused unless a CIDR rule
    /// allows it explicitly.
    pub fn is_local(&self, address: IpAddr) -> bool {
        hosts::is_local_address(address)
            || self.host_addresses.contains(&address)
            || AddressBook::in_pool(address)
    }

    /// Which of a name's real addresses may be dialled; the reason when none may.
    pub fn dialable(
        &self,
        addresses: &[IpAddr],
        port: u16,
    ) -> Result<Vec<IpAddr>, (String, String)> {
        let mut out = Vec::new();
        let mut refusal = None;
        for address in addresses {
            let verdict = self.decide_address(*address, port);
            if verdict.explicit && !verdict.allow {
                refusal = Some((
                    format!("resolves to {address}, which a CIDR rule denies"),
                    verdict.rule,
                ));
                continue;
            }
            if self.is_local(*address) && !(verdict.explicit && verdict.allow) {
                refusal = Some((
                    format!("resolves to {address}, a host-local or private address that no CIDR rule allows"),
                    "network.egress (names never lead to local addresses)".into(),
                ));
                continue;
            }
            out.push(*address);
        }
        match (out.is_empty(), refusal) {
            (false, _) => Ok(out),
            (true, Some(refusal)) => Err(refusal),
            (true, None) => Err(("resolves to no address".into(), String::new())),
        }
    }

    /// Records a denial (and logs it for diagnostics): a name refused, or a connection to a
    /// bare address refused.
    pub fn deny(&self, denial: Denial) {
        tracing::info!(?denial, "egress denied");
        let Some(audit) = &self.audit else {
            return;
        };
        let protocol = if denial.via == "dns" { "dns" } else { "tcp" };
        let destination = denial.address.map(|a| a.to_string());
        let event = if denial.name.is_some() || denial.sni.is_some() || denial.host.is_some() {
            Event::NameDenied(NameDenial {
                via: denial.via,
                protocol,
                name: denial.name,
                sni: denial.sni,
                host: denial.host,
                destination,
                port: denial.port,
                verdict: "deny",
                reason: denial.reason,
                rule: denial.rule,
            })
        } else {
            Event::NetworkDenied(NetworkDenial {
                direction: "outbound",
                protocol,
                destination,
                port: denial.port,
                verdict: "deny",
                rule: denial.rule,
                via: Some(denial.via),
                reason: Some(denial.reason),
            })
        };
        audit.write(&event);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use super::*;
    use mxc_translate::network::Action;

    /// An audit log in a temporary file, read back as records.
    pub(crate) struct TestAudit {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl TestAudit {
        pub(crate) fn records(&self) -> Vec<serde_json::Value> {
            std::fs::read_to_string(&self.path)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    /// An egress policy allowing `allow` and denying `deny` (patterns), with an audit log.
    pub(crate) fn egress(
        allow: &[&str],
        deny: &[&str],
        default_allow: bool,
    ) -> (Egress, TestAudit) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut hosts = Vec::new();
        for (action, list, origin) in [
            (Action::Allow, allow, "allow"),
            (Action::Deny, deny, "deny"),
        ] {
            for (i, text) in list.iter().enumerate() {
                hosts.push(HostRule::parse(&format!("{origin}[{i}]"), text, action).unwrap());
            }
        }
        let filter = EgressFilter {
            default_allow,
            deny: Vec::new(),
            allow: Vec::new(),
            hosts,
        };
        let audit = ContainerAudit {
            log: crate::audit::AuditLog::open(&path).unwrap(),
            container_id: "c1".into(),
            policy_sha256: Some("0".repeat(64)),
        };
        let names = ["api.example.test", "db.example.test", "other.example.test"];
        let resolver = Resolver::Fixed(
            names
                .iter()
                .map(|n| (n.to_string(), vec!["127.0.0.1".parse().unwrap()]))
                .collect(),
        );
        (
            Egress::new(&filter, resolver, Some(audit)),
            TestAudit { _dir: dir, path },
        )
    }

    #[test]
    fn names_never_lead_to_local_addresses_unless_a_cidr_rule_allows() {
        let (mut egress, _) = egress(&["db.example.test"], &[], false);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let global: IpAddr = "198.18.0.7".parse().unwrap();
        assert_eq!(egress.dialable(&[local, global], 5432).unwrap(), [global]);
        let (reason, _) = egress.dialable(&[local], 5432).unwrap_err();
        assert!(reason.contains("local"), "{reason}");
        egress.allow.push(Rule {
            path: "network.egress.allow[0]".into(),
            to: vec![mxc_translate::network::Peer {
                cidr: "127.0.0.1/32".parse().unwrap(),
                except: Vec::new(),
            }],
            ports: Vec::new(),
        });
        assert_eq!(egress.dialable(&[local], 5432).unwrap(), [local]);
        egress.deny.push(Rule {
            path: "network.egress.deny[0]".into(),
            to: vec![mxc_translate::network::Peer {
                cidr: "198.18.0.0/24".parse().unwrap(),
                except: Vec::new(),
            }],
            ports: Vec::new(),
        });
        let (reason, rule) = egress.dialable(&[global], 443).unwrap_err();
        assert!(reason.contains("CIDR rule denies"), "{reason}");
        assert_eq!(rule, "network.egress.deny[0]");
    }
}
