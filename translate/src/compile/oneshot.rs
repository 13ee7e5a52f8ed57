//! The whole sandbox of `mxc run`: MXC's Linux semantics, enforced.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use super::staging::StagingPlan;
use super::{environment, no_capabilities, policy_annotations, policy_mounts, seccomp};
use super::{MASKED_PATHS, READONLY_PATHS, USER_NAMESPACE_LIMITS};
use crate::host::{self, FileKind, HostFacts};
use crate::paths;
use crate::policy::{Policy, Profile};
use crate::resolve::BASELINE;

pub struct OneShotOptions<'a> {
    /// The container id (also names the cgroup).
    pub container_id: &'a str,
    /// For the host-baseline profile: an empty directory the runtime owns, used as the root.
    pub empty_root: &'a Path,
    /// Host facts, to skip baseline directories the host does not have.
    pub host: &'a dyn HostFacts,
    /// Where the runtime stages grants (`staging`): a directory only the runtime can write.
    pub staging_dir: &'a Path,
}

/// Something the runtime creates inside its empty root before `create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkeletonEntry {
    /// A symlink at `path` (relative to the root) pointing at `target` (as written).
    Symlink { path: PathBuf, target: PathBuf },
}

/// A compiled one-shot sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub spec: Spec,
    pub skeleton: Vec<SkeletonEntry>,
    /// What the runtime stages before it creates the container.
    pub staging: StagingPlan,
}

pub fn one_shot(policy: &Policy, options: &OneShotOptions) -> Result<Sandbox, String> {
    let command_line = policy
        .command_line
        .clone()
        .ok_or("a one-shot sandbox needs process.commandLine")?;
    let cwd = policy.cwd.clone().unwrap_or_else(|| PathBuf::from("/"));

    let mut skeleton = Vec::new();
    let mut mounts = Vec::new();
    let root = match &policy.profile {
        Profile::HostBaseline => {
            baseline(options.host, &mut mounts, &mut skeleton);
            skeleton.push(SkeletonEntry::Symlink {
                path: PathBuf::from("var/run"),
                target: PathBuf::from("../run"),
            });
            options.empty_root.to_path_buf()
        }
        Profile::Rootfs { path, .. } => path.clone(),
        Profile::Bundle => {
            return Err("a bundle policy cannot be compiled as a one-shot sandbox".into())
        }
    };
    mounts.extend(kernel_mounts());
    mounts.push(json!({
        "destination": "/tmp",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=1777", format!("size={}", policy.limits.tmp_size)],
    }));
    let planned = policy_mounts(&policy.mounts, options.staging_dir);
    mounts.extend(planned.mounts);

    let mut readonly_paths: Vec<String> = READONLY_PATHS.iter().map(|s| s.to_string()).collect();
    readonly_paths.extend(planned.readonly_after);
    let mut masked_paths: Vec<String> = MASKED_PATHS.iter().map(|s| s.to_string()).collect();
    masked_paths.extend(planned.masked);

    let annotations: serde_json::Map<String, Value> = policy_annotations(policy)
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v)))
        .collect();
    // ICMP echo without CAP_NET_RAW (ping sockets), so that a policy can allow or deny it; the
    // setting is private to the sandbox's network namespace. And the user namespace's limits.
    let mut sysctl = serde_json::Map::new();
    sysctl.insert("net.ipv4.ping_group_range".into(), json!("0 0"));
    for (key, value) in USER_NAMESPACE_LIMITS {
        sysctl.insert(key.to_string(), json!(value));
    }
    let id_map = |host_id: u32| json!([{"containerID": 0, "hostID": host_id, "size": 1}]);

    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sh", "-c", command_line],
            "env": environment(policy, &[], Some(&cwd)),
            "cwd": cwd,
            "capabilities": no_capabilities(),
            "noNewPrivileges": true,
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            ],
        },
        "root": {"path": root, "readonly": true},
        "hostname": "mxc",
        "mounts": mounts,
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "user"}, {"type": "cgroup"}, {"type": "network"},
            ],
            "uidMappings": id_map(policy.identity.uid),
            "gidMappings": id_map(policy.identity.gid),
            "resources": {
                "pids": {"limit": policy.limits.pids},
                // No swap on top: memory+swap is the same limit.
                "memory": {"limit": policy.limits.memory, "swap": policy.limits.memory},
                "devices": [{"allow": false, "access": "rwm"}],
            },
            "cgroupsPath": format!("/mxc/{}", options.container_id),
            "maskedPaths": masked_paths,
            "readonlyPaths": readonly_paths,
            "seccomp": seccomp::profile(),
            "rootfsPropagation": "private",
            "sysctl": sysctl,
        },
        "annotations": annotations,
    });
    let spec: Spec = serde_json::from_value(spec).map_err(|e| format!("internal: spec: {e}"))?;
    Ok(Sandbox {
        spec,
        skeleton,
        staging: planned.staging,
    })
}

/// Read-only binds of the host baseline. A baseline entry that is a symlink into another
/// baseline entry (`/bin -> usr/bin` on merged-/usr systems) is recreated as a symlink.
fn baseline(host: &dyn HostFacts, mounts: &mut Vec<Value>, skeleton: &mut Vec<SkeletonEntry>) {
    for entry in BASELINE {
        let path = Path::new(entry);
        let Ok(info) = host.symlink_metadata(path) else {
            continue;
        };
        if info.kind == FileKind::Symlink {
            let Ok(resolved) = host::resolve_symlinks(host, path) else {
                continue;
            };
            if !resolved.exists {
                continue;
            }
            let into_baseline = BASELINE.iter().any(|other| {
                *other != *entry && paths::is_within(&resolved.path, Path::new(other))
            });
            if into_baseline {
                if let Ok(target) = host.read_link(path) {
                    skeleton.push(SkeletonEntry::Symlink {
                        path: path.strip_prefix("/").unwrap_or(path).to_path_buf(),
                        target,
                    });
                    continue;
                }
            }
            mounts.push(readonly_bind(entry, &resolved.path));
        } else {
            mounts.push(readonly_bind(entry, path));
        }
    }
}

fn readonly_bind(destination: &str, source: &Path) -> Value {
    json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": ["rbind", "ro", "rro", "nosuid", "nodev", "rprivate"],
    })
}

fn kernel_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
    ]
}
