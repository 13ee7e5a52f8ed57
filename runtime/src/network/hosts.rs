//! Hostnames in legacy host lists: resolved once (A and AAAA) at start, enforced on the
//! resolved addresses, and pinned into the sandbox's `/etc/hosts` so that it cannot re-resolve
//! them differently.

use std::fmt::Write;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;

use mxc_translate::HostnameRule;

use super::{NetworkError, ResolvedNames};

pub fn resolve_names(names: &[HostnameRule]) -> Result<ResolvedNames, NetworkError> {
    let mut entries = Vec::new();
    for rule in names {
        let addresses: Vec<IpAddr> = match (rule.name.as_str(), 0).to_socket_addrs() {
            Ok(found) => {
                let mut out: Vec<IpAddr> = found.map(|a| a.ip()).collect();
                out.sort();
                out.dedup();
                out
            }
            Err(e) => {
                // An allow entry that does not resolve allows nothing; a deny entry that does
                // not resolve cannot be enforced, so it fails the start.
                if rule.deny {
                    return Err(NetworkError::Resolve {
                        name: format!("{} ({})", rule.name, rule.path),
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

/// Writes the sandbox's `/etc/hosts`: loopback and the pinned names.
pub fn pin_file(names: &ResolvedNames, path: &Path) -> Result<(), NetworkError> {
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (rule, addresses) in &names.entries {
        for address in addresses {
            let _ = writeln!(text, "{address}\t{}", rule.name);
        }
    }
    std::fs::write(path, text)
        .map_err(|e| NetworkError::io(format!("writing {}", path.display()), e))
}
