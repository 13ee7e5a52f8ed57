//! A plain OCI bundle: a copy of the busybox root filesystem and a `config.json` with the
//! defaults `runc spec` writes (not a terminal), for runtime-level tests and benchmarks.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::images::{copy_rootfs, IMAGE_PATH};

/// A bundle directory, removed on drop.
#[derive(Debug)]
pub struct Bundle {
    dir: TempDir,
}

impl Bundle {
    /// A bundle whose process runs `args` (for example `["sh", "-c", "echo hi"]`).
    pub fn new(args: &[&str]) -> Result<Bundle> {
        let dir = crate::scratch_dir("mxc-bundle")?;
        copy_rootfs(&dir.path().join("rootfs"))?;
        let bundle = Bundle { dir };
        bundle.write_spec(&default_spec(args))?;
        Ok(bundle)
    }

    /// The bundle directory (what `--bundle` takes).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.json")
    }

    /// The current `config.json`.
    pub fn spec(&self) -> Result<Value> {
        let text = fs::read_to_string(self.config_path())?;
        serde_json::from_str(&text).context("parsing config.json")
    }

    pub fn write_spec(&self, spec: &Value) -> Result<()> {
        fs::write(self.config_path(), serde_json::to_vec_pretty(spec)?)
            .context("writing config.json")
    }

    /// Reads `config.json`, lets `edit` change it, writes it back.
    pub fn edit_spec(&self, edit: impl FnOnce(&mut Value)) -> Result<()> {
        let mut spec = self.spec()?;
        edit(&mut spec);
        self.write_spec(&spec)
    }
}

/// The spec `runc spec` writes (runc 1.1), with `args` as the process and no terminal.
pub fn default_spec(args: &[&str]) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": [IMAGE_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": caps
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "runc",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" },
                { "type": "network" },
                { "type": "ipc" },
                { "type": "uts" },
                { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}
