//! The engine's own record of a container, kept beside libcontainer's `state.json`.
//!
//! libcontainer's state cannot be trusted for liveness (its `kill` marks a container stopped
//! whatever the signal, and its `load` trusts a bare pid), so the engine records the init
//! process with its start time and the last lifecycle step it completed, and derives the
//! status from both. The record is replaced atomically (write to a temporary file, rename).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::process::{InitProcess, Liveness};

/// Where each container's files live under the runtime root.
///
/// `<root>/<id>/` is libcontainer's directory (state, notify socket). `<root>/:mxc/<id>/`
/// holds the effective bundle handed to libcontainer (`config.json`, the spec after policy)
/// and the engine's record. `:` cannot appear in a container id, so the two never collide.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

pub const RECORD_FILE: &str = "record.json";
pub const CONFIG_FILE: &str = "config.json";

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// libcontainer's directory for a container.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The engine's directory for a container: effective bundle and record.
    pub fn engine_dir(&self, id: &str) -> PathBuf {
        self.root.join(":mxc").join(id)
    }

    pub fn engine_root(&self) -> PathBuf {
        self.root.join(":mxc")
    }

    pub fn record_path(&self, id: &str) -> PathBuf {
        self.engine_dir(id).join(RECORD_FILE)
    }
}

/// The lifecycle step the engine last completed for a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    Creating,
    Created,
    Running,
    Paused,
}

/// The status reported to callers, as in the OCI runtime spec's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Everything the engine remembers about a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub id: String,
    /// The `ociVersion` of the bundle's config.json.
    pub oci_version: String,
    /// The bundle as the caller gave it (absolute).
    pub bundle: PathBuf,
    /// The root filesystem (absolute).
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    pub phase: Phase,
    pub init: Option<InitProcess>,
    /// The cgroup path relative to each hierarchy's root, as libcontainer uses it.
    pub cgroup_path: PathBuf,
    /// Sorted, so that `state` prints the same bytes every time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Where the policy came from and its sha256, when one was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRecord>,
    /// Whether the spec has a user namespace (exec maps ids through it).
    #[serde(default)]
    pub user_namespace: bool,
    /// Processes the engine started for the container (userspace network stack, denial
    /// listener) that live until it is deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helpers: Vec<crate::process::InitProcess>,
    /// Userspace network stacks the engine started for the container: killed at delete, which
    /// does not wait for the kernel to finish tearing them down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<crate::process::InitProcess>,
    /// Rules installed in a network namespace the engine owns (path, table): removed at delete,
    /// since the namespace outlives the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_table: Option<(PathBuf, String)>,
    /// The node's audit log, which the engine writes this container's decisions to (bundle
    /// mode; `mxc run` writes its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRecord {
    pub source: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl ContainerRecord {
    /// The status derived from the recorded phase and the init process's liveness.
    pub fn status(&self) -> Status {
        derive_status(self.phase, self.init.map(|init| init.liveness()))
    }

    pub fn load(path: &Path) -> std::io::Result<ContainerRecord> {
        let bytes = fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {err}", path.display()),
            )
        })
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        write_atomic(path, &bytes, 0o600)
    }
}

/// The status from the phase and, once there is an init process, its liveness.
pub fn derive_status(phase: Phase, init: Option<Liveness>) -> Status {
    match (phase, init) {
        (Phase::Creating, None) => Status::Creating,
        (_, None) => Status::Stopped,
        (_, Some(Liveness::Gone | Liveness::Zombie)) => Status::Stopped,
        (Phase::Creating, Some(Liveness::Alive)) => Status::Creating,
        (Phase::Created, Some(Liveness::Alive)) => Status::Created,
        (Phase::Running, Some(Liveness::Alive)) => Status::Running,
        (Phase::Paused, Some(Liveness::Alive)) => Status::Paused,
    }
}

/// Replaces `path` with `bytes` so that a concurrent reader sees the old or the new content,
/// never a mix: write a temporary file in the same directory, flush it, rename it over.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        // No fsync: runtime state is volatile by nature (it describes processes that do not
        // survive a reboot); the rename alone keeps readers from seeing a partial file.
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_phase_while_init_lives() {
        use Liveness::*;
        assert_eq!(derive_status(Phase::Creating, None), Status::Creating);
        assert_eq!(derive_status(Phase::Created, Some(Alive)), Status::Created);
        assert_eq!(derive_status(Phase::Running, Some(Alive)), Status::Running);
        assert_eq!(derive_status(Phase::Paused, Some(Alive)), Status::Paused);
    }

    #[test]
    fn dead_or_reused_init_means_stopped() {
        use Liveness::*;
        for phase in [Phase::Created, Phase::Running, Phase::Paused] {
            assert_eq!(derive_status(phase, Some(Gone)), Status::Stopped);
            assert_eq!(derive_status(phase, Some(Zombie)), Status::Stopped);
            assert_eq!(derive_status(phase, None), Status::Stopped);
        }
    }

    #[test]
    fn record_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECORD_FILE);
        let record = ContainerRecord {
            id: "c1".into(),
            oci_version: "1.0.2".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2024-01-01T00:00:00Z".into(),
            phase: Phase::Running,
            init: Some(InitProcess {
                pid: 1,
                start_time: 5,
            }),
            cgroup_path: "/c1".into(),
            annotations: BTreeMap::new(),
            policy: None,
            user_namespace: false,
            helpers: Vec::new(),
            stacks: Vec::new(),
            network_table: None,
            audit_log: Some("/var/log/mxc/audit.jsonl".into()),
        };
        record.save(&path).unwrap();
        record.save(&path).unwrap();
        assert_eq!(ContainerRecord::load(&path).unwrap(), record);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files remain");
        fs::write(&path, b"{").unwrap();
        assert!(ContainerRecord::load(&path).is_err());
    }

    #[test]
    fn layout_keeps_engine_files_apart_from_ids() {
        let layout = Layout::new("/run/mxc-runtime");
        assert_eq!(layout.container_dir("a"), Path::new("/run/mxc-runtime/a"));
        assert_eq!(
            layout.record_path("a"),
            Path::new("/run/mxc-runtime/:mxc/a/record.json")
        );
    }
}
