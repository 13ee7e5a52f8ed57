//! Applying a [`NetworkSetup`] to a created container, before its process starts: loopback up,
//! the ruleset installed, then each service started, beside the caller or detached from it as
//! the setup's [`Lifetime`] says.

use super::plan::{Lifetime, NetworkSetup, Service};
use super::relay::Relay;
use super::slirp::{self, Slirp};
use super::{bring_up_loopback, install_rules, kill_stacks, stop_helpers, NetworkError};
use crate::audit::nflog::{self, DenialListener};
use crate::egress::capture::Capture;
use crate::egress::Egress;
use crate::process::InitProcess;

/// What runs for one container's network. Dropping it stops everything it holds; bundle mode
/// hands its detached processes over to the container's record instead ([`Self::detach`]).
#[derive(Debug, Default)]
pub struct NetworkAttachment {
    running: Vec<Running>,
}

#[derive(Debug)]
enum Running {
    Egress(Capture),
    Stack(Slirp),
    DenialLog(DenialListener),
    Relay(Relay),
    /// A process of its own, which outlives the caller until it is stopped.
    Detached(InitProcess),
    /// A detached userspace stack: killed when stopped, not waited for ([`kill_stacks`]).
    DetachedStack(InitProcess),
}

/// The detached processes of a container's network, as its record keeps them.
#[derive(Debug, Default)]
pub struct Detached {
    /// Stopped with SIGTERM and waited for at delete ([`stop_helpers`]).
    pub helpers: Vec<InitProcess>,
    /// Userspace stacks, killed at delete and not waited for ([`kill_stacks`]).
    pub stacks: Vec<InitProcess>,
}

/// Applies `setup` to the container whose init process is `pid` (created, not started). On an
/// error, whatever was started is stopped again.
pub fn apply(pid: i32, setup: &NetworkSetup) -> Result<NetworkAttachment, NetworkError> {
    // The services that are processes of their own (the userspace stack, a detached denial
    // listener) start first and set themselves up while the rules go in; each is waited for in
    // its turn. The workload starts only after all of it.
    let mut early: Vec<Option<Early>> = setup
        .services
        .iter()
        .map(|service| early(pid, service, setup.lifetime))
        .collect::<Result<_, _>>()?;
    if setup.loopback_up {
        tracing::info_span!("loopback").in_scope(|| bring_up_loopback(pid))?;
    }
    if let Some(rules) = &setup.rules {
        tracing::info_span!("rules").in_scope(|| install_rules(pid, &rules.text))?;
    }
    let mut attachment = NetworkAttachment::default();
    for (service, early) in setup.services.iter().zip(early.iter_mut()) {
        let _span = match service {
            Service::EgressProxy(_) => tracing::info_span!("egress_proxy"),
            Service::DenialLog(_) => tracing::info_span!("denial_log"),
            Service::ProxyRelay { .. } => tracing::info_span!("proxy_relay"),
            Service::UserspaceStack => tracing::info_span!("userspace_stack"),
        }
        .entered();
        let running = match early.take() {
            Some(Early::Stack(slirp)) => Running::Stack(slirp.ready()?),
            Some(Early::DetachedStack(slirp)) => Running::DetachedStack(slirp.ready()?.record()?),
            Some(Early::DetachedListener(listener)) => Running::Detached(
                listener
                    .ready("the denial listener")
                    .map_err(|e| NetworkError::io("starting the denial listener", e))?,
            ),
            None => match start(pid, service, setup.lifetime)? {
                Some(running) => running,
                None => continue,
            },
        };
        attachment.running.push(running);
    }
    Ok(attachment)
}

/// A service's process, started and not yet waited for.
enum Early {
    Stack(slirp::Starting<Slirp>),
    DetachedStack(slirp::Starting<slirp::Detached>),
    DetachedListener(crate::helper::Starting),
}

/// Starts `service` now if it is a process of its own that can set itself up meanwhile.
fn early(pid: i32, service: &Service, lifetime: Lifetime) -> Result<Option<Early>, NetworkError> {
    Ok(match (service, lifetime) {
        (Service::UserspaceStack, Lifetime::Caller) => Some(Early::Stack(Slirp::spawn(pid)?)),
        (Service::UserspaceStack, Lifetime::Container) => {
            Some(Early::DetachedStack(slirp::spawn_detached(pid)?))
        }
        (Service::DenialLog(target), Lifetime::Container) => {
            Some(Early::DetachedListener(nflog::spawn_detached(pid, target)?))
        }
        _ => None,
    })
}

/// Starts `service`; `None` when something already running serves it.
fn start(pid: i32, service: &Service, lifetime: Lifetime) -> Result<Option<Running>, NetworkError> {
    let outlives_caller = |what: &str| {
        NetworkError::Relay(format!("{what} cannot outlive the process that started it"))
    };
    Ok(Some(match (service, lifetime) {
        (Service::EgressProxy(proxy), Lifetime::Caller) => {
            let audit = proxy.audit.as_ref().map(|target| target.audit.clone());
            let mut egress = Egress::new(&proxy.filter, proxy.resolver.clone(), audit);
            egress.host_addresses = proxy.host_addresses.clone();
            Running::Egress(Capture::start(
                pid,
                egress,
                proxy.namespace,
                &proxy.table,
                proxy.log_group,
                None,
            )?)
        }
        (Service::EgressProxy(proxy), Lifetime::Container) => {
            match crate::egress::detached::start(pid, proxy)? {
                Some(process) => Running::Detached(process),
                None => return Ok(None),
            }
        }
        (Service::DenialLog(target), Lifetime::Caller) => Running::DenialLog(
            DenialListener::start(pid, target.audit.clone(), target.group)?,
        ),
        (Service::DenialLog(target), Lifetime::Container) => Running::Detached(
            nflog::spawn_detached(pid, target)?
                .ready("the denial listener")
                .map_err(|e| NetworkError::io("starting the denial listener", e))?,
        ),
        (Service::ProxyRelay { listen, target }, Lifetime::Caller) => {
            Running::Relay(Relay::start(pid, *listen, *target)?)
        }
        (Service::ProxyRelay { .. }, Lifetime::Container) => {
            return Err(outlives_caller("a proxy relay"))
        }
        (Service::UserspaceStack, Lifetime::Caller) => Running::Stack(Slirp::start(pid)?),
        (Service::UserspaceStack, Lifetime::Container) => {
            Running::DetachedStack(slirp::spawn_detached(pid)?.ready()?.record()?)
        }
    }))
}

impl NetworkAttachment {
    /// The detached processes, for the container's record (delete stops them); whatever else
    /// it holds stops now.
    pub fn detach(mut self) -> Detached {
        let mut detached = Detached::default();
        self.running.retain(|item| match item {
            Running::Detached(process) => {
                detached.helpers.push(*process);
                false
            }
            Running::DetachedStack(process) => {
                detached.stacks.push(*process);
                false
            }
            _ => true,
        });
        detached
    }
}

impl Drop for NetworkAttachment {
    fn drop(&mut self) {
        // The reverse of the start order: connectivity goes before the denial log.
        let mut detached = Detached::default();
        while let Some(item) = self.running.pop() {
            match item {
                Running::Stack(slirp) => slirp.stop_in_background(),
                Running::Detached(process) => detached.helpers.push(process),
                Running::DetachedStack(process) => detached.stacks.push(process),
                // Each stops when dropped: the denial log drains what is queued first.
                Running::Egress(capture) => drop(capture),
                Running::DenialLog(listener) => drop(listener),
                Running::Relay(relay) => drop(relay),
            }
        }
        kill_stacks(&detached.stacks);
        stop_helpers(&detached.helpers);
    }
}
