//! The resolved policy: what compilation consumes. Normalised absolute paths, a mount plan in
//! most-specific-path-wins order, one network model, defaults applied.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::hosts::HostRule;
use crate::network::{ProxyEndpoint, Rule};
use crate::source::Source;
use crate::version::SchemaVersion;

/// The uid/gid the workload has on the host (the single id mapped into its user namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

impl Identity {
    /// `nobody:nogroup`, the default when root runs a sandbox and names no one else.
    pub const NOBODY: Identity = Identity {
        uid: 65534,
        gid: 65534,
    };
}

/// Resource bounds of a sandbox: every one has some, so that nothing it does becomes a host
/// out-of-memory or a full disk. Hitting one is an error the workload sees (the kernel's OOM
/// killer inside the sandbox's cgroup, `ENOSPC`, `EAGAIN` from fork).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Memory (cgroup), bytes; swap is not added on top.
    pub memory: u64,
    /// The private `/tmp` tmpfs (one-shot) or a tmpfs `/tmp` without a size (bundle), bytes.
    pub tmp_size: u64,
    /// Processes and threads (cgroup pids).
    pub pids: i64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        memory: 2 << 30,
        tmp_size: 1 << 30,
        pids: 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Which root filesystem the sandbox sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Profile {
    /// `process`, `bubblewrap` or no containment: an empty read-only root with a read-only
    /// baseline of host system directories.
    HostBaseline,
    /// `--rootfs DIR` (and `lxc`): that root filesystem, read-only, plus the grants.
    Rootfs {
        path: PathBuf,
        /// `lxc.distribution`/`lxc.release`, when the config named them.
        distribution: Option<(String, String)>,
    },
    /// Bundle mode: the engine's own root filesystem and mounts.
    Bundle,
}

/// One step of the filesystem plan, applied in order after the profile's own mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MountStep {
    /// Where inside the sandbox.
    pub destination: PathBuf,
    /// The policy entry that asked for it (`filesystem.readonlyPaths[0]`).
    pub origin: String,
    pub action: MountAction,
}

/// A file system object as `stat(2)` names it: the device and inode resolution examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct ObjectId {
    pub dev: u64,
    pub ino: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum MountAction {
    /// Bind the host object at `source` (its resolved path, no symlink left in it) recursively;
    /// the runtime binds exactly `object`, the one resolution checked, or refuses.
    Bind {
        source: PathBuf,
        readonly: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        object: Option<ObjectId>,
    },
    /// A denied regular file: `/dev/null` bound over it, read-only, `nodev`: opens fail.
    MaskFile,
    /// A denied directory: an empty read-only tmpfs of mode 000, so it still lists in its
    /// parent but cannot be opened. With granted descendants the tmpfs is mode 0111 (traversable,
    /// not listable) so the descendants' mountpoints can be reached.
    MaskDirectory { granted_descendants: bool },
    /// A denied path inside an image root filesystem: the runtime masks it at mount time
    /// (`linux.maskedPaths`: a directory becomes an empty read-only tmpfs, a file `/dev/null`).
    MaskInImage,
}

/// How the sandbox reaches the network.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum NetworkPlan {
    /// A private network namespace with loopback only.
    Isolated,
    /// A private network namespace with connectivity, filtered by rules installed inside it.
    Filtered(EgressFilter),
    /// A private network namespace whose only reachable endpoint is the proxy.
    ProxyOnly { proxy: ProxyEndpoint },
}

impl NetworkPlan {
    /// The `io.mxc.network-mode` annotation value.
    pub fn mode(&self) -> &'static str {
        match self {
            NetworkPlan::Isolated => "isolated",
            NetworkPlan::Filtered(_) => "filtered",
            NetworkPlan::ProxyOnly { .. } => "proxy-only",
        }
    }
}

/// Outbound rules: deny rules first, then allow rules, then the default. Host-name rules (from
/// legacy host lists and the caller's, node's or annotation's lists) are enforced by the
/// egress proxy and resolver; CIDR rules decide bare addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressFilter {
    pub default_allow: bool,
    pub deny: Vec<Rule>,
    pub allow: Vec<Rule>,
    /// Host-name rules, deny beating allow; names no rule matches get the default.
    pub hosts: Vec<HostRule>,
}

/// The policy, resolved for Linux.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(skip)]
    pub source: Source,
    pub sha256: String,
    pub version: SchemaVersion,
    /// The containment value as written (`process` when omitted).
    pub containment: String,
    pub profile: Profile,
    pub container_id: Option<String>,
    /// One-shot only: the shell source to run under `/bin/sh -c`.
    pub command_line: Option<String>,
    /// One-shot only: the working directory.
    pub cwd: Option<PathBuf>,
    /// `process.env`, validated, in order (later duplicates win); for schema 1.x one-shot
    /// runs, on top of MXC's default environment when `env` is omitted or `inheritDefaultEnv`
    /// asks for it.
    pub env: Vec<(String, String)>,
    /// Schema 1.x passes `env` as given; before 1.0 a missing `PATH` gets a default.
    pub env_verbatim: bool,
    pub timeout_ms: Option<u32>,
    pub identity: Identity,
    pub limits: Limits,
    pub mounts: Vec<MountStep>,
    pub network: NetworkPlan,
    /// What resolution decided without failing (dropped duplicates, masks that had nothing to
    /// hide), for `explain` and logs.
    pub notes: Vec<String>,
}

impl serde::Serialize for SchemaVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
