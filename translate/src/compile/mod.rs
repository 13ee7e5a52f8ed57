//! Step three: a [`Policy`] to an OCI runtime spec.
//!
//! [`one_shot`] builds the whole sandbox of `mxc run`; [`apply_to_bundle`] rewrites an
//! engine-written spec (Docker, containerd, the CRI) so that it enforces the policy. Both emit
//! the policy's mounts with the same function and cut privileges the same way.

mod bundle;
pub mod capture;
pub mod nftables;
mod oneshot;
pub mod seccomp;
pub mod staging;

use std::path::Path;

use serde_json::{json, Value};

use crate::paths;
use crate::policy::{MountAction, MountStep, NetworkPlan, Policy};
use staging::StagingPlan;

/// Proxy variables MXC sets (the first four, upper and lower case) or clears (all of them).
pub const PROXY_VARIABLES: [&str; 5] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
];

pub use bundle::{apply_to_bundle, BundleError, BundleOptions};
pub use oneshot::{one_shot, OneShotOptions, Sandbox, SkeletonEntry};

/// Paths the runtime masks in every sandbox (runc's defaults).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the runtime makes read-only in every sandbox (runc's defaults).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Per-user-namespace limits (`linux.sysctl`, `user.*`) in every user namespace the runtime
/// creates: inotify bounded, and no new namespace of any kind (the seccomp profile refuses them
/// as well), except a few mount namespaces: `open_tree(OPEN_TREE_CLONE)` makes an anonymous one,
/// and libcontainer masks paths that way after the sysctls are set (seccomp refuses `open_tree`
/// to the sandbox itself). What a sandbox counts is charged to its namespace's owner up to the host's limits;
/// these keep one sandbox from taking all of them.
pub const USER_NAMESPACE_LIMITS: &[(&str, &str)] = &[
    ("user.max_inotify_instances", "64"),
    ("user.max_inotify_watches", "32768"),
    ("user.max_fanotify_groups", "0"),
    ("user.max_fanotify_marks", "0"),
    ("user.max_user_namespaces", "0"),
    ("user.max_mnt_namespaces", "8"),
    ("user.max_net_namespaces", "0"),
    ("user.max_pid_namespaces", "0"),
    ("user.max_ipc_namespaces", "0"),
    ("user.max_uts_namespaces", "0"),
    ("user.max_cgroup_namespaces", "0"),
    ("user.max_time_namespaces", "0"),
];

/// Annotation keys written into every compiled spec.
pub mod annotations {
    pub const SCHEMA_VERSION: &str = "io.mxc.schema-version";
    pub const CONTAINMENT: &str = "io.mxc.containment";
    pub const TIMEOUT_MS: &str = "io.mxc.timeout-ms";
    pub const NETWORK_MODE: &str = "io.mxc.network-mode";
    pub const POLICY_SHA256: &str = "io.mxc.policy-sha256";
    pub const POLICY_SOURCE: &str = "io.mxc.policy-source";
}

fn policy_annotations(policy: &Policy) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (annotations::SCHEMA_VERSION, policy.version.annotation()),
        (annotations::CONTAINMENT, policy.containment.clone()),
        (annotations::NETWORK_MODE, policy.network.mode().to_string()),
        (annotations::POLICY_SHA256, policy.sha256.clone()),
        (annotations::POLICY_SOURCE, policy.source.to_string()),
    ];
    if let Some(ms) = policy.timeout_ms {
        out.push((annotations::TIMEOUT_MS, ms.to_string()));
    }
    out
}

/// The policy's filesystem plan in OCI terms.
struct PolicyMounts {
    /// `mounts[]` entries, in order.
    mounts: Vec<Value>,
    /// Paths made read-only after all mounts (denied directories with granted descendants).
    readonly_after: Vec<String>,
    /// Paths the runtime masks itself (denied paths inside an image).
    masked: Vec<String>,
    /// What the runtime stages before the container exists; `mounts` binds each staged tree
    /// from `staging_dir`.
    staging: StagingPlan,
}

fn policy_mounts(steps: &[MountStep], staging_dir: &Path) -> PolicyMounts {
    let (staging, rest) = staging::plan(steps, staging_dir);
    // Staged trees and the remaining masks, most-specific-path-wins (stable: shallow first).
    let mut ordered: Vec<(usize, Value)> = staging
        .trees
        .iter()
        .map(|tree| {
            let mount = json!({
                "destination": tree.destination,
                "type": "bind",
                "source": staging_dir.join(&tree.name),
                // The staged tree carries every flag of every mount in it (read-only grants,
                // writable ones nested in them, masks): bind it as it is.
                "options": ["rbind", "nosuid", "nodev"],
            });
            (paths::depth(&tree.destination), mount)
        })
        .collect();
    let mut readonly_after = Vec::new();
    let mut masked = Vec::new();
    for step in &rest {
        let destination = step.destination.to_string_lossy().into_owned();
        let mount = match &step.action {
            MountAction::MaskInImage => {
                masked.push(destination);
                continue;
            }
            // Every grant is staged.
            MountAction::Bind { .. } => continue,
            MountAction::MaskFile => json!({
                "destination": destination,
                "type": "bind",
                "source": "/dev/null",
                "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
            }),
            MountAction::MaskDirectory {
                granted_descendants: false,
            } => json!({
                "destination": destination,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["ro", "nosuid", "nodev", "noexec", "mode=000", "size=4k", "nr_inodes=2"],
            }),
            MountAction::MaskDirectory {
                granted_descendants: true,
            } => {
                // Traversable but not listable; read-only once the descendants are mounted.
                readonly_after.push(destination.clone());
                json!({
                    "destination": destination,
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid", "nodev", "noexec", "mode=0111", "size=64k"],
                })
            }
        };
        ordered.push((paths::depth(&step.destination), mount));
    }
    ordered.sort_by_key(|(depth, _)| *depth);
    PolicyMounts {
        mounts: ordered.into_iter().map(|(_, mount)| mount).collect(),
        readonly_after,
        masked,
        staging,
    }
}

/// The process environment: the policy's entries (later duplicates win, in first-seen order),
/// `PATH` when the policy sets none (before schema 1.0), `PWD` when a cwd is known. A policy
/// with host rules gets proxy variables naming the egress proxy on the sandbox's loopback.
fn environment(policy: &Policy, base: &[String], cwd: Option<&Path>) -> Vec<String> {
    fn set(entries: &mut Vec<(String, String)>, key: &str, value: &str) {
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => entries.push((key.to_string(), value.to_string())),
        }
    }
    let mut entries: Vec<(String, String)> = Vec::new();
    for entry in base {
        if let Some((key, value)) = entry.split_once('=') {
            set(&mut entries, key, value);
        }
    }
    for (key, value) in &policy.env {
        set(&mut entries, key, value);
    }
    if let NetworkPlan::ProxyOnly { proxy } = &policy.network {
        // Only the proxy is reachable: every proxy variable names it, whatever the caller set.
        entries.retain(|(k, _)| !PROXY_VARIABLES.iter().any(|p| p.eq_ignore_ascii_case(k)));
        if let Some(url) = proxy.url() {
            for key in &PROXY_VARIABLES[..4] {
                set(&mut entries, key, &url);
                set(&mut entries, &key.to_ascii_lowercase(), &url);
            }
        }
    }
    if let NetworkPlan::Filtered(filter) = &policy.network {
        if !filter.hosts.is_empty() {
            entries.retain(|(k, _)| !PROXY_VARIABLES.iter().any(|p| p.eq_ignore_ascii_case(k)));
            let url = capture::proxy_url();
            for key in &PROXY_VARIABLES[..4] {
                set(&mut entries, key, &url);
                set(&mut entries, &key.to_ascii_lowercase(), &url);
            }
            for key in ["NO_PROXY", "no_proxy"] {
                set(&mut entries, key, "localhost,127.0.0.1,::1");
            }
        }
    }
    if !policy.env_verbatim && !entries.iter().any(|(k, _)| k == "PATH") {
        let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        set(&mut entries, "PATH", path);
    }
    if let Some(cwd) = cwd {
        set(&mut entries, "PWD", &cwd.to_string_lossy());
    }
    entries
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

fn no_capabilities() -> Value {
    json!({"bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []})
}
