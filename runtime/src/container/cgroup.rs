//! The container's cgroups: libcgroups' manager for what it offers (pids, freezer, stats,
//! limits), and a sweep of every mounted hierarchy to prove nothing is left behind.

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

/// Whether the v1 freezer says the container is frozen.
pub(crate) fn is_frozen(cgroup_path: &Path) -> bool {
    existing_dirs(cgroup_path).iter().any(|dir| {
        std::fs::read_to_string(dir.join("freezer.state"))
            .is_ok_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING"))
    })
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

/// The memory controller's count of OOM kills for the container (v1 `memory.oom_control`).
pub(crate) fn oom_kills(cgroup_path: &Path) -> Option<u64> {
    existing_dirs(cgroup_path).iter().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("memory.oom_control")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
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
}
