//! The container's cgroups: libcgroups' manager for what it offers (pids, freezer, stats,
//! limits), and a sweep of every mounted hierarchy to prove nothing is left behind.
//!
//! What the engine reads and writes itself works on every layout: v1 controllers (a
//! legacy or hybrid host) and the unified v2 hierarchy (every Kubernetes node today), where
//! the freezer is `cgroup.freeze`/`cgroup.events`, OOM kills are counted in `memory.events`
//! and `cgroup.kill` kills a whole subtree at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcgroups::common::{AnyCgroupManager, CgroupConfig, CgroupManager, FreezerState};

use crate::error::EngineError;
use crate::record::ContainerRecord;

pub(crate) fn manager(record: &ContainerRecord) -> Result<AnyCgroupManager, EngineError> {
    libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: record.cgroup_path.clone(),
        systemd_cgroup: false,
        container_name: record.id.clone(),
    })
    .map_err(|e| EngineError::cgroup(&record.id, "opening", &e))
}

/// Mount points of every cgroup hierarchy on the host (v1 controllers, named hierarchies such
/// as `name=systemd`, and cgroup2), from `/proc/self/mountinfo`.
pub(crate) fn hierarchies() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    parse_cgroup_mounts(&text)
}

pub(crate) fn parse_cgroup_mounts(mountinfo: &str) -> Vec<PathBuf> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = right.split_whitespace().next().unwrap_or_default();
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        // Field 4 is the root of the mount within its hierarchy, field 5 the mount point.
        let fields: Vec<&str> = left.split_whitespace().collect();
        if fields.len() < 5 || fields[3] != "/" {
            continue;
        }
        let point = PathBuf::from(fields[4].replace("\\040", " "));
        if !mounts.contains(&point) {
            mounts.push(point);
        }
    }
    mounts
}

/// The container's directory in every hierarchy where it exists.
pub(crate) fn existing_dirs(cgroup_path: &Path) -> Vec<PathBuf> {
    let relative = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    if relative.as_os_str().is_empty() {
        return Vec::new(); // never the root of a hierarchy
    }
    hierarchies()
        .into_iter()
        .map(|mount| mount.join(relative))
        .filter(|dir| dir.is_dir())
        .collect()
}

/// Every pid in the container's cgroups, in any hierarchy, nested cgroups included.
pub(crate) fn all_pids(cgroup_path: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for dir in existing_dirs(cgroup_path) {
        collect_pids(&dir, &mut pids);
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn collect_pids(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&entry.path(), pids);
            }
        }
    }
}

/// Whether the freezer says the container is frozen (or freezing).
pub(crate) fn is_frozen(cgroup_path: &Path) -> bool {
    existing_dirs(cgroup_path).iter().any(|dir| frozen_in(dir))
}

/// v1: `freezer.state` is FROZEN or FREEZING; v2: `cgroup.events` says `frozen 1` or
/// `cgroup.freeze` asks for it.
fn frozen_in(dir: &Path) -> bool {
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    if let Some(state) = read("freezer.state") {
        return matches!(state.trim(), "FROZEN" | "FREEZING");
    }
    let events = read("cgroup.events").unwrap_or_default();
    key_value(&events, "frozen") == Some(1)
        || read("cgroup.freeze").is_some_and(|f| f.trim() == "1")
}

/// `key N` from a flat-keyed cgroup file (`memory.events`, `cgroup.events`, `oom_control`).
fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// On v2, kills every process of the container and its nested cgroups at once through
/// `cgroup.kill` (Linux 5.14+). Returns whether a kill was sent that way.
pub(crate) fn kill_all(cgroup_path: &Path) -> bool {
    let mut sent = false;
    for dir in existing_dirs(cgroup_path) {
        let kill = dir.join("cgroup.kill");
        if kill.exists() && std::fs::write(&kill, "1").is_ok() {
            sent = true;
        }
    }
    sent
}

pub(crate) fn thaw(record: &ContainerRecord) {
    if let Ok(manager) = manager(record) {
        if let Err(err) = manager.freeze(FreezerState::Thawed) {
            tracing::warn!(error = %err, "thawing the container's cgroup failed");
        }
    }
}

/// Removes the container's cgroup directories (deepest first) from every hierarchy, retrying
/// while the kernel still counts exiting tasks. Returns the directories that remain.
pub(crate) fn remove_dirs(cgroup_path: &Path, timeout: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(5);
    loop {
        let mut remaining = Vec::new();
        for dir in existing_dirs(cgroup_path) {
            let mut nested = Vec::new();
            collect_dirs(&dir, &mut nested);
            // Children before parents.
            nested.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in nested {
                if std::fs::remove_dir(&d).is_err() && d.exists() {
                    remaining.push(d);
                }
            }
        }
        if remaining.is_empty() || Instant::now() >= deadline {
            return remaining;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

/// The memory controller's count of OOM kills for the container.
pub(crate) fn oom_kills(cgroup_path: &Path) -> Option<u64> {
    existing_dirs(cgroup_path)
        .iter()
        .find_map(|dir| oom_kills_in(dir))
}

/// v2: `oom_kill` of `memory.events` (the container's subtree); v1: `oom_kill` of
/// `memory.oom_control`.
fn oom_kills_in(dir: &Path) -> Option<u64> {
    ["memory.events", "memory.oom_control"]
        .iter()
        .find_map(|file| {
            let text = std::fs::read_to_string(dir.join(file)).ok()?;
            key_value(&text, "oom_kill")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup_hierarchies_in_mountinfo() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
33 30 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
34 99 0:27 /sub /mnt/cpu rw - cgroup cgroup rw,cpu
35 25 0:30 / /proc rw - proc proc rw";
        assert_eq!(
            parse_cgroup_mounts(info),
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu"),
                PathBuf::from("/sys/fs/cgroup/systemd"),
                PathBuf::from("/sys/fs/cgroup/unified"),
            ]
        );
    }

    #[test]
    fn root_cgroup_is_never_swept() {
        assert!(existing_dirs(Path::new("/")).is_empty());
    }

    /// Writes files as a kernel shows them in one cgroup directory.
    fn recorded(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn v2_freezer_and_oom_counts_from_recorded_files() {
        // Recorded from a v2 cgroup (Linux 6.x) with the memory controller enabled.
        let running = recorded(&[
            ("cgroup.events", "populated 1\nfrozen 0\n"),
            ("cgroup.freeze", "0\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
            ),
        ]);
        assert!(!frozen_in(running.path()));
        assert_eq!(oom_kills_in(running.path()), Some(2));
        let frozen = recorded(&[
            ("cgroup.events", "populated 1\nfrozen 1\n"),
            ("cgroup.freeze", "1\n"),
        ]);
        assert!(frozen_in(frozen.path()));
        // Asked to freeze, not there yet: FREEZING in v1's terms.
        let freezing = recorded(&[
            ("cgroup.events", "populated 1\nfrozen 0\n"),
            ("cgroup.freeze", "1\n"),
        ]);
        assert!(frozen_in(freezing.path()));
        // No memory controller: no count.
        assert_eq!(oom_kills_in(frozen.path()), None);
    }

    #[test]
    fn v1_freezer_and_oom_counts_from_recorded_files() {
        let dir = recorded(&[
            ("freezer.state", "FROZEN\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
            ),
        ]);
        assert!(frozen_in(dir.path()));
        assert_eq!(oom_kills_in(dir.path()), Some(3));
        let thawed = recorded(&[("freezer.state", "THAWED\n")]);
        assert!(!frozen_in(thawed.path()));
    }

    /// The unified hierarchy this host mounts (a v2-only host mounts it at /sys/fs/cgroup).
    fn unified_mount() -> Option<PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        info.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next() == Some("cgroup2"))
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
                .flatten()
        })
    }

    /// The v2 paths against the kernel's unified hierarchy: freeze through `cgroup.freeze`,
    /// seen in `cgroup.events`, and `cgroup.kill` taking every process of a nested tree.
    #[test]
    fn v2_freeze_and_kill_on_the_unified_hierarchy() {
        let Some(mount) = unified_mount() else {
            eprintln!("no cgroup2 hierarchy is mounted here");
            return;
        };
        if !nix::unistd::geteuid().is_root() {
            eprintln!("needs root");
            return;
        }
        let relative = PathBuf::from(format!("/mxc-v2-test-{}", std::process::id()));
        let dir = mount.join(relative.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dir.join("nested")).unwrap();
        let mut children: Vec<std::process::Child> = (0..2)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("600")
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::fs::write(dir.join("cgroup.procs"), children[0].id().to_string()).unwrap();
        std::fs::write(
            dir.join("nested/cgroup.procs"),
            children[1].id().to_string(),
        )
        .unwrap();
        assert_eq!(all_pids(&relative).len(), 2);
        assert!(!is_frozen(&relative));
        std::fs::write(dir.join("cgroup.freeze"), "1").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(dir.join("cgroup.events"))
            .unwrap()
            .contains("frozen 1")
        {
            assert!(Instant::now() < deadline, "the cgroup never froze");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(is_frozen(&relative));
        std::fs::write(dir.join("cgroup.freeze"), "0").unwrap();
        assert!(!is_frozen(&relative));
        assert!(kill_all(&relative), "cgroup.kill was written");
        for child in &mut children {
            let status = child.wait().unwrap();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&status),
                Some(9)
            );
        }
        assert!(remove_dirs(&relative, Duration::from_secs(5)).is_empty());
        assert!(!dir.exists());
    }
}
