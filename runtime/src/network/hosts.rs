//! Host names in bundle mode, where the egress proxy does not run yet: exact names are
//! resolved once (A and AAAA) at create and enforced on the resolved addresses; a pattern that
//! needs the proxy (a wildcard, a port) is refused rather than half-enforced.

use std::net::{IpAddr, ToSocketAddrs};

use mxc_translate::hosts::{HostRule, PatternKind};
use mxc_translate::network::Action;

use super::{NetworkError, ResolvedNames};

pub fn resolve_names(rules: &[HostRule]) -> Result<ResolvedNames, NetworkError> {
    let mut entries = Vec::new();
    for rule in rules {
        if rule.pattern.kind != PatternKind::Exact || rule.pattern.port.is_some() {
            return Err(NetworkError::Resolve {
                name: format!("{} ({})", rule.pattern, rule.origin),
                reason: "wildcard and port host patterns are enforced by the egress proxy, \
                         which mxc run provides; in bundle mode write exact names"
                    .into(),
            });
        }
        let name = rule.pattern.domain.as_str();
        let addresses: Vec<IpAddr> = match (name, 0).to_socket_addrs() {
            Ok(found) => {
                let mut out: Vec<IpAddr> = found.map(|a| a.ip()).collect();
                out.sort();
                out.dedup();
                out
            }
            Err(e) => {
                // An allow entry that does not resolve allows nothing; a deny entry that does
                // not resolve cannot be enforced, so it fails the start.
                if rule.action == Action::Deny {
                    return Err(NetworkError::Resolve {
                        name: format!("{name} ({})", rule.origin),
                        reason: e.to_string(),
                    });
                }
                Vec::new()
            }
        };
        entries.push((rule.clone(), addresses));
    }
    Ok(ResolvedNames { entries })
}
