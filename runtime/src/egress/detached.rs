//! The egress proxy of a container whose set-up process exits at once (`mxc-runtime create`,
//! the shim's workers): a helper process of its own ([`crate::helper`]) that binds the
//! listeners in the container's network namespace, installs the rules that send its traffic
//! there, and serves until the container's init process exits.
//!
//! In a namespace the engine provides (a pod's, Docker's, `ctr --with-ns`), the proxy's threads
//! enter that namespace, so that upstream connections leave from it. The containers of a pod
//! share it, each with a table of its own, and a connection is redirected by the first table
//! that sees it: one proxy serves the namespace. The first container with host rules starts it
//! and names it in its table's comment; the next ones (a pod's containers after its sandbox)
//! find it there, must have the same host rules, and install a table that filters as the
//! proxy's does but redirects nothing.

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;

use mxc_translate::compile::capture::{self, CaptureFacts, Namespace, UPSTREAM_MARK};
use mxc_translate::EgressFilter;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::capture::Capture;
use super::{Egress, Outbound, Resolver};
use crate::audit::{AuditLog, ContainerAudit};
use crate::helper::{Helper, InitWatch};
use crate::network::{tables, EgressProxy, NetworkError};
use crate::process::InitProcess;

/// What the helper process is told (on its command line, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyHelper {
    /// The container's init process: its network namespace is served, its exit ends the
    /// helper.
    pub pid: i32,
    pub filter: EgressFilter,
    pub resolver: Resolver,
    pub host_addresses: Vec<IpAddr>,
    /// An engine's namespace (else one of the runtime's own).
    pub engine_namespace: bool,
    pub table: String,
    pub log_group: u16,
    pub audit: Option<AuditDestination>,
}

/// Where the helper records denials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditDestination {
    pub log: PathBuf,
    pub container_id: String,
    pub policy_sha256: Option<String>,
}

/// What a table's comment says about the proxy serving its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Serving<'a> {
    /// Of the rules the proxy enforces ([`rules_digest`]).
    digest: &'a str,
    helper: InitProcess,
}

const COMMENT_TAG: &str = "mxc-egress";

impl Serving<'_> {
    fn comment(&self) -> String {
        format!(
            "{COMMENT_TAG} {} {}:{}",
            self.digest, self.helper.pid, self.helper.start_time
        )
    }

    fn parse(comment: &str) -> Option<Serving<'_>> {
        let mut words = comment.split(' ');
        if words.next()? != COMMENT_TAG {
            return None;
        }
        let digest = words.next()?;
        let (pid, start_time) = words.next()?.split_once(':')?;
        Some(Serving {
            digest,
            helper: InitProcess {
                pid: pid.parse().ok()?,
                start_time: start_time.parse().ok()?,
            },
        })
    }
}

/// A short digest of everything the proxy decides with: two containers sharing a namespace
/// must agree on it.
fn rules_digest(filter: &EgressFilter, resolver: &Resolver) -> String {
    let text = serde_json::to_vec(&(filter, resolver)).expect("rules always serialise");
    let digest = Sha256::digest(&text);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the proxy for the container whose init process is `pid`, detached; `None` when the
/// proxy of another container already serves its (engine's) namespace.
pub fn start(pid: i32, proxy: &EgressProxy) -> Result<Option<InitProcess>, NetworkError> {
    let helper = ProxyHelper {
        pid,
        filter: proxy.filter.clone(),
        resolver: proxy.resolver.clone(),
        host_addresses: proxy.host_addresses.clone(),
        engine_namespace: proxy.namespace == Namespace::Engine,
        table: proxy.table.clone(),
        log_group: proxy.log_group,
        audit: proxy.audit.as_ref().map(|target| AuditDestination {
            log: target.audit.log.path().to_path_buf(),
            container_id: target.audit.container_id.clone(),
            policy_sha256: target.audit.policy_sha256.clone(),
        }),
    };
    let start = || {
        Helper::EgressProxy(helper.clone())
            .spawn("the egress proxy")
            .map_err(|e| NetworkError::io("starting the egress proxy", e))
    };
    if proxy.namespace == Namespace::Own {
        return start().map(Some);
    }
    // Containers of one pod are created one after the other, but nothing else promises that:
    // the namespace itself is the lock.
    let netns = File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| NetworkError::io("opening the container's network namespace", e))?;
    let _lock = Flock::lock(netns, FlockArg::LockExclusive).map_err(|(_, errno)| {
        NetworkError::io("locking the container's network namespace", errno.into())
    })?;
    let digest = rules_digest(&helper.filter, &helper.resolver);
    let found = tables::inet_tables(pid)?;
    let serving = found.iter().find_map(|table| {
        let serving = Serving::parse(table.comment.as_deref()?)?;
        Some((table.name.as_str(), serving))
    });
    let Some((owner, serving)) = serving else {
        return start().map(Some);
    };
    if serving.digest != digest {
        return Err(NetworkError::Egress(format!(
            "the network namespace is already served by the egress proxy of another container \
             (table {owner}) with different host rules; the containers of one pod must have the \
             same host rules: set them in the pod's annotations"
        )));
    }
    if !serving.helper.is_alive() {
        return Err(NetworkError::Egress(format!(
            "the egress proxy that served the network namespace (table {owner}) is gone; \
             restart the pod"
        )));
    }
    let facts = CaptureFacts {
        namespace: Namespace::Engine,
        table: proxy.table.clone(),
        listeners: None,
        log_group: proxy.log_group,
        comment: Some(serving.comment()),
    };
    crate::network::install_rules(pid, &capture::ruleset(&facts))?;
    Ok(None)
}

/// The body of the helper process: serve until the container's init process exits.
pub fn run(helper: ProxyHelper) -> Result<(), NetworkError> {
    let watch = InitWatch::open(helper.pid)?;
    let audit = match &helper.audit {
        Some(destination) => Some(ContainerAudit {
            log: AuditLog::open(&destination.log)
                .map_err(|e| NetworkError::Egress(format!("opening the audit log: {e}")))?,
            container_id: destination.container_id.clone(),
            policy_sha256: destination.policy_sha256.clone(),
        }),
        None => None,
    };
    let mut egress = Egress::new(&helper.filter, helper.resolver.clone(), audit);
    egress.host_addresses = helper.host_addresses.clone();
    let (namespace, comment) = if helper.engine_namespace {
        let open = |path: String| {
            File::open(&path).map_err(|e| NetworkError::io(format!("opening {path}"), e))
        };
        egress.outbound = Outbound::Engine {
            mark: UPSTREAM_MARK,
            host: open("/proc/thread-self/ns/net".into())?,
            engine: open(format!("/proc/{}/ns/net", helper.pid))?,
        };
        let me = InitProcess::capture(std::process::id() as i32).ok_or_else(|| {
            NetworkError::io(
                "reading the helper's own start time",
                std::io::Error::other("gone"),
            )
        })?;
        let serving = Serving {
            digest: &rules_digest(&helper.filter, &helper.resolver),
            helper: me,
        };
        (Namespace::Engine, Some(serving.comment()))
    } else {
        (Namespace::Own, None)
    };
    let capture = Capture::start(
        helper.pid,
        egress,
        namespace,
        &helper.table,
        helper.log_group,
        comment,
    )?;
    watch.ready();
    watch.wait();
    drop(capture);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxc_translate::hosts::HostRule;
    use mxc_translate::network::Action;

    fn filter(patterns: &[&str]) -> EgressFilter {
        EgressFilter {
            default_allow: false,
            deny: Vec::new(),
            allow: Vec::new(),
            hosts: patterns
                .iter()
                .enumerate()
                .map(|(i, p)| HostRule::parse(&format!("allow[{i}]"), p, Action::Allow).unwrap())
                .collect(),
        }
    }

    #[test]
    fn the_comment_names_the_rules_and_the_helper() {
        let digest = rules_digest(&filter(&["api.example.test"]), &Resolver::System);
        assert_eq!(digest.len(), 16);
        let serving = Serving {
            digest: &digest,
            helper: InitProcess {
                pid: 42,
                start_time: 7,
            },
        };
        let comment = serving.comment();
        assert_eq!(Serving::parse(&comment), Some(serving));
        assert_eq!(Serving::parse("another comment"), None);
        assert_eq!(Serving::parse("mxc-egress abc 42"), None);
    }

    #[test]
    fn different_rules_have_different_digests() {
        let one = rules_digest(&filter(&["api.example.test"]), &Resolver::System);
        assert_eq!(
            one,
            rules_digest(&filter(&["api.example.test"]), &Resolver::System)
        );
        assert_ne!(
            one,
            rules_digest(&filter(&["*.example.test"]), &Resolver::System)
        );
        let server = Resolver::Server("198.18.0.53:53".parse().unwrap());
        assert_ne!(one, rules_digest(&filter(&["api.example.test"]), &server));
    }

    #[test]
    fn the_helper_description_round_trips() {
        let helper = ProxyHelper {
            pid: 1,
            filter: filter(&["**.example.test:443"]),
            resolver: Resolver::Server("198.18.0.53:53".parse().unwrap()),
            host_addresses: vec!["192.0.2.1".parse().unwrap()],
            engine_namespace: true,
            table: "mxc_x".into(),
            log_group: 1001,
            audit: None,
        };
        let text = serde_json::to_string(&helper).unwrap();
        assert_eq!(serde_json::from_str::<ProxyHelper>(&text).unwrap(), helper);
    }
}
