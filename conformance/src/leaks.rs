//! What a scenario must not leave behind. A test takes a [`LeakCheck`] snapshot once its
//! daemons are up, names what it is about to create (container ids, network namespaces,
//! directories, runtime roots), runs the scenario, and calls [`LeakCheck::assert_clean`].
//!
//! Leftover processes are found by parent chain: [`crate::processes::adopt_orphans`] makes the
//! test process the reaper of everything its daemons start, so a shim or container process
//! that outlives its scenario is still below the test. This assumes one test per process, as
//! nextest runs them.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::command::poll;
use crate::processes;

/// Where the host keeps `ip netns` names.
pub const NETNS_DIR: &str = "/run/netns";
/// Where the cgroup hierarchies are mounted (v1 controllers and `unified` on these machines).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How long cleanup that happens asynchronously (a shim exiting after `delete`) may take
/// before what is left counts as a leak.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// One thing left behind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Leak {
    Process(String),
    Mount(PathBuf),
    Cgroup(PathBuf),
    NetworkNamespace(String),
    RuntimeState(PathBuf),
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leak::Process(process) => write!(f, "process {process}"),
            Leak::Mount(path) => write!(f, "mount {}", path.display()),
            Leak::Cgroup(path) => write!(f, "cgroup {}", path.display()),
            Leak::NetworkNamespace(name) => write!(f, "network namespace {name}"),
            Leak::RuntimeState(path) => write!(f, "runtime state {}", path.display()),
        }
    }
}

/// A snapshot of the host, and the names of what a scenario may create.
#[derive(Debug, Default)]
pub struct LeakCheck {
    processes_before: BTreeSet<u32>,
    mounts_before: BTreeSet<PathBuf>,
    runtime_state_before: BTreeSet<PathBuf>,
    watched_dirs: Vec<PathBuf>,
    runtime_roots: Vec<PathBuf>,
    container_ids: Vec<String>,
    netns_names: Vec<String>,
}

impl LeakCheck {
    /// Records the processes below this test and the mounts present now.
    pub fn snapshot() -> LeakCheck {
        processes::adopt_orphans();
        let me = std::process::id();
        LeakCheck {
            processes_before: processes::descendants_of(me, &processes::list())
                .into_iter()
                .map(|p| p.pid)
                .collect(),
            mounts_before: mount_points().into_iter().collect(),
            ..LeakCheck::default()
        }
    }

    /// `pid` is not a leak: a process the scenario started on purpose and keeps (a daemon it
    /// restarted).
    pub fn allow_process(&mut self, pid: u32) -> &mut Self {
        self.processes_before.insert(pid);
        self
    }

    /// New mounts at or below `dir` are leaks.
    pub fn watch_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.watched_dirs.push(dir.into());
        self
    }

    /// New entries under a runtime's state root (`runc --root`, containerd's runc root) are
    /// leaks.
    pub fn runtime_root(&mut self, root: impl Into<PathBuf>) -> &mut Self {
        let root = root.into();
        self.runtime_state_before.extend(dir_entries(&root));
        self.runtime_roots.push(root);
        self
    }

    /// Cgroup directories whose name contains `id`, under any hierarchy, are leaks.
    pub fn container(&mut self, id: impl Into<String>) -> &mut Self {
        self.container_ids.push(id.into());
        self
    }

    /// The `ip netns` name `name` still existing is a leak.
    pub fn netns(&mut self, name: impl Into<String>) -> &mut Self {
        self.netns_names.push(name.into());
        self
    }

    /// What is left right now.
    pub fn leaks(&self) -> Vec<Leak> {
        processes::reap_adopted_orphans();
        let mut leaks = Vec::new();

        let me = std::process::id();
        for process in processes::descendants_of(me, &processes::list()) {
            if !process.is_zombie() && !self.processes_before.contains(&process.pid) {
                leaks.push(Leak::Process(process.describe()));
            }
        }

        for mount in mount_points() {
            if !self.mounts_before.contains(&mount)
                && self.watched_dirs.iter().any(|dir| mount.starts_with(dir))
            {
                leaks.push(Leak::Mount(mount));
            }
        }

        if !self.container_ids.is_empty() {
            for dir in cgroup_dirs() {
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
                if let Some(name) = name {
                    if self
                        .container_ids
                        .iter()
                        .any(|id| name.contains(id.as_str()))
                    {
                        leaks.push(Leak::Cgroup(dir));
                    }
                }
            }
        }

        for name in &self.netns_names {
            if Path::new(NETNS_DIR).join(name).exists() {
                leaks.push(Leak::NetworkNamespace(name.clone()));
            }
        }

        for root in &self.runtime_roots {
            for entry in dir_entries(root) {
                if !self.runtime_state_before.contains(&entry) {
                    leaks.push(Leak::RuntimeState(entry));
                }
            }
        }

        leaks.sort();
        leaks
    }

    /// Waits (at most [`SETTLE_LIMIT`]) for asynchronous cleanup, then fails listing whatever
    /// is still left.
    pub fn assert_clean(&self) -> Result<()> {
        let mut last = Vec::new();
        let settled = poll(SETTLE_LIMIT, || {
            last = self.leaks();
            Ok(last.is_empty().then_some(()))
        });
        if settled.is_err() {
            let list: Vec<String> = last.iter().map(|leak| format!("  {leak}")).collect();
            bail!("the scenario left behind:\n{}", list.join("\n"));
        }
        Ok(())
    }
}

/// Mount points of this process's mount namespace (field 5 of `/proc/self/mountinfo`).
pub fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .collect()
}

/// Mount points at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mount_points()
        .into_iter()
        .filter(|mount| mount.starts_with(dir))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let digits = std::str::from_utf8(digits).unwrap_or("");
                if let Ok(value) = u8::from_str_radix(digits, 8) {
                    out.push(value);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every directory of every cgroup hierarchy mounted under [`CGROUP_ROOT`].
pub fn cgroup_dirs() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = fs::read_dir(CGROUP_ROOT) else {
        return found;
    };
    for hierarchy in hierarchies.flatten() {
        // Combined controllers appear twice (`cpu,cpuacct` and a link `cpu`); follow none.
        if hierarchy.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk_dirs(&hierarchy.path(), 0, &mut found);
        }
    }
    found
}

fn walk_dirs(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if depth > 12 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let path = entry.path();
            walk_dirs(&path, depth + 1, found);
            found.push(path);
        }
    }
}

/// Cgroup directories whose name contains `id`.
pub fn cgroups_named(id: &str) -> Vec<PathBuf> {
    cgroup_dirs()
        .into_iter()
        .filter(|dir| {
            dir.file_name()
                .is_some_and(|name| name.to_string_lossy().contains(id))
        })
        .collect()
}

/// The names `ip netns list` shows.
pub fn netns_names() -> BTreeSet<String> {
    dir_entries(Path::new(NETNS_DIR))
        .into_iter()
        .filter_map(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect()
}

fn dir_entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape_mountinfo("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/x\\134y"), "/x\\y");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\"), "/end\\");
    }

    #[test]
    fn lists_the_root_mount() {
        assert!(mount_points().contains(&PathBuf::from("/")));
    }

    #[test]
    fn sees_a_leftover_child_and_its_end() {
        let mut check = LeakCheck::snapshot();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        check.container("no-such-container-id");
        assert!(check
            .leaks()
            .iter()
            .any(|leak| matches!(leak, Leak::Process(p) if p.contains("sleep 30"))));
        child.kill().unwrap();
        child.wait().unwrap();
        check.assert_clean().unwrap();
    }
}
