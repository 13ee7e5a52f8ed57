//! Step two: a validated [`Config`] to a [`Policy`] for Linux, one module per section:
//! [`containment`] (backend selection, the single-backend-section rule with Linux resolution,
//! fields a Linux sandbox cannot honour), [`process`] (command, cwd and env defaults, timeout),
//! [`filesystem`] (the conflict layers: same string, same object, delegation; symlink
//! resolution, most-specific-path-wins ordering, masks) and [`network`] (MXC's Linux-backend
//! network rules).

mod containment;
mod filesystem;
mod network;
mod process;

use std::path::PathBuf;

use crate::error::{Class, ConfigErrors, Report};
use crate::host::HostFacts;
use crate::model::{Containment, RequestKind};
use crate::parse::Config;
use crate::policy::{Identity, Limits, Policy};

/// Host system directories visible read-only in the host-baseline profile (MXC's Bubblewrap
/// baseline). Missing ones are skipped.
pub const BASELINE: &[&str] = &[
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/share",
    "/etc",
    "/run/systemd/resolve",
    "/run/NetworkManager",
    "/run/resolvconf",
    "/mnt/wsl/resolv.conf",
];

/// Where the policy will be used.
#[derive(Debug, Clone)]
pub enum Target {
    /// `mxc run`: the whole sandbox comes from the policy.
    OneShot {
        /// `--rootfs DIR`: use that root filesystem instead of the host baseline.
        rootfs: Option<PathBuf>,
    },
    /// `mxc-runtime` and the shim: the policy is applied on top of an engine-written spec.
    /// What it may grant is bounded afterwards by the node's ceiling
    /// ([`crate::ceiling::Ceiling`]).
    Bundle,
}

#[derive(Debug, Clone)]
pub struct ResolveOptions {
    pub target: Target,
    /// The host uid/gid the workload runs as; grants and the symlinks on their way are
    /// checked against it.
    pub identity: Identity,
    /// Host rules from outside the config (`mxc run --allow-host`, the node configuration, a
    /// pod annotation), already validated; each names its origin.
    pub hosts: Vec<crate::hosts::HostRule>,
    /// Resource bounds (defaults, or what the caller or the node's configuration chose).
    pub limits: Limits,
}

pub fn resolve(
    config: &Config,
    host: &dyn HostFacts,
    options: &ResolveOptions,
) -> Result<Policy, ConfigErrors> {
    // What the document allows but this host's backend refuses is MXC's runner class.
    let mut report = Report::in_class(&config.source, Class::Backend);
    let mut notes = Vec::new();
    let model = &config.model;

    if let RequestKind::StateAware(phase) = config.kind {
        report.classed(Class::Request, |report| {
            report.reject(
                "phase",
                phase.as_str(),
                "state-aware lifecycle requests are not supported on Linux; send a one-shot \
                 request",
            )
        });
        return Err(report.into_errors());
    }

    let bundle = matches!(options.target, Target::Bundle);
    let containment = model.containment.unwrap_or(Containment::Process);
    let profile = containment::profile(&mut report, model, containment, &options.target);
    containment::backend_sections(&mut report, model, containment);
    containment::unsupported_sections(&mut report, model);

    let process = model.process.clone().unwrap_or_default();
    let process::Section {
        command_line,
        env,
        env_verbatim,
        timeout_ms,
    } = process::section(&mut report, &process, config.version, bundle);
    process::container_id(&mut report, model.container_id.as_deref());

    // Filesystem.
    let mounts = filesystem::mounts(&mut report, &mut notes, config, host, options, &profile);

    let cwd = if bundle {
        None
    } else {
        Some(process::cwd(
            &mut report,
            process.cwd.as_deref(),
            &mounts,
            &profile,
            host,
        ))
    };

    let network = network::plan(&mut report, &mut notes, config, &options.hosts);

    let Some(network) = network else {
        return Err(report.into_errors());
    };
    report.finish(Policy {
        source: config.source.clone(),
        sha256: config.sha256.clone(),
        version: config.version,
        containment: containment.as_str().to_string(),
        profile,
        container_id: model.container_id.clone(),
        command_line,
        cwd,
        env,
        env_verbatim,
        timeout_ms,
        identity: options.identity,
        limits: options.limits,
        mounts,
        network,
        notes,
    })
}
