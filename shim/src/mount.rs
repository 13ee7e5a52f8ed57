//! The container's root filesystem: the mounts containerd's snapshotter prepared (usually one
//! `overlay`), mounted on `<bundle>/rootfs` before the container is created, and everything
//! below that directory unmounted when it is deleted.
//!
//! Mounting happens in a zygote worker (single-threaded), which may `chdir` to shorten long
//! overlay options as containerd's own mount code does.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

/// One mount as containerd describes it (`containerd.types.Mount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mounting {kind} {source_path} on {target}: {errno}")]
    Mount {
        kind: String,
        source_path: String,
        target: PathBuf,
        errno: nix::Error,
    },
    #[error(
        "mount options for {target} are too long ({len} bytes), even with lowerdir paths shortened"
    )]
    TooLong { target: PathBuf, len: usize },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// The mount(2) flags and data of a list of fstab-style options.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedOptions {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
}

pub fn parse_options(options: &[String]) -> ParsedOptions {
    let mut parsed = ParsedOptions {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
    };
    for option in options {
        let (set, clear) = match option.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let mut p = match option.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                if option.starts_with('r') {
                    p |= MsFlags::MS_REC;
                }
                parsed.propagation |= p;
                continue;
            }
            _ => {
                parsed.data.push(option.clone());
                continue;
            }
        };
        parsed.flags.insert(set);
        parsed.flags.remove(clear);
    }
    parsed
}

/// Mounts `mounts` in order on `target` (created if missing). Returns whether anything was
/// mounted (nothing when containerd prepared the root filesystem itself).
pub fn mount_rootfs(mounts: &[MountSpec], target: &Path) -> Result<bool, MountError> {
    if mounts.is_empty() {
        return Ok(false);
    }
    if !target.exists() {
        std::fs::create_dir_all(target).map_err(|source| MountError::Io {
            context: format!("creating {}", target.display()),
            source,
        })?;
    }
    for (n, spec) in mounts.iter().enumerate() {
        if let Err(err) = mount_one(spec, target) {
            if n > 0 {
                unmount_all(target);
            }
            return Err(err);
        }
    }
    Ok(true)
}

fn mount_one(spec: &MountSpec, target: &Path) -> Result<(), MountError> {
    let parsed = parse_options(&spec.options);
    let mut data = parsed.data.join(",");
    let page = page_size();
    let mut chdir_to = None;
    if spec.kind == "overlay" && data.len() >= page - 512 {
        let (dir, compacted) = compact_lowerdirs(&parsed.data);
        data = compacted.join(",");
        chdir_to = dir;
        if data.len() >= page {
            return Err(MountError::TooLong {
                target: target.to_path_buf(),
                len: data.len(),
            });
        }
    }
    let failed = |errno| MountError::Mount {
        kind: spec.kind.clone(),
        source_path: spec.source.clone(),
        target: target.to_path_buf(),
        errno,
    };
    let previous = match &chdir_to {
        Some(dir) => {
            let previous = std::env::current_dir().ok();
            std::env::set_current_dir(dir).map_err(|source| MountError::Io {
                context: format!("entering {}", dir.display()),
                source,
            })?;
            previous
        }
        None => None,
    };
    let data_arg = (!data.is_empty()).then_some(data.as_str());
    let result = mount(
        Some(spec.source.as_str()),
        target,
        Some(spec.kind.as_str()),
        parsed.flags,
        data_arg,
    );
    if let Some(previous) = previous {
        let _ = std::env::set_current_dir(previous);
    }
    result.map_err(failed)?;
    // A read-only bind needs a remount to take effect.
    if parsed.flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY) {
        mount::<str, Path, str, str>(None, target, None, parsed.flags | MsFlags::MS_REMOUNT, None)
            .map_err(failed)?;
    }
    if !parsed.propagation.is_empty() {
        mount::<str, Path, str, str>(None, target, None, parsed.propagation, None)
            .map_err(failed)?;
    }
    Ok(())
}

/// Shortens `lowerdir=` by making its paths relative to their longest common directory, which
/// the caller then enters (containerd does the same in its own mount code).
pub fn compact_lowerdirs(data: &[String]) -> (Option<PathBuf>, Vec<String>) {
    let Some(lower) = data.iter().find_map(|o| o.strip_prefix("lowerdir=")) else {
        return (None, data.to_vec());
    };
    let dirs: Vec<&str> = lower.split(':').collect();
    let mut common: Vec<&str> = dirs[0].split('/').collect();
    common.pop(); // never a whole layer path
    for dir in &dirs[1..] {
        let parts: Vec<&str> = dir.split('/').collect();
        let shared = common
            .iter()
            .zip(&parts)
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(shared);
    }
    let prefix = common.join("/");
    if prefix.len() <= 1 {
        return (None, data.to_vec());
    }
    let relative: Vec<&str> = dirs
        .iter()
        .map(|d| d[prefix.len()..].trim_start_matches('/'))
        .collect();
    let compacted = data
        .iter()
        .map(|o| {
            if o.starts_with("lowerdir=") {
                format!("lowerdir={}", relative.join(":"))
            } else {
                o.clone()
            }
        })
        .collect();
    (Some(PathBuf::from(prefix)), compacted)
}

fn page_size() -> usize {
    // SAFETY: sysconf with a valid name.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// Unmounts (lazily) everything at or below `target`, deepest first, including mounts stacked
/// on the same point.
pub fn unmount_all(target: &Path) {
    for _ in 0..16 {
        let mut mounts = mounts_at_or_below(target);
        if mounts.is_empty() {
            return;
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for mount in mounts {
            if let Err(err) = umount2(&mount, MntFlags::MNT_DETACH) {
                tracing::warn!(mount = %mount.display(), error = %err, "unmounting failed");
            }
        }
    }
}

/// Mount points at or below `target` in this process's mount namespace.
pub fn mounts_at_or_below(target: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|mount| mount.starts_with(target))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(value) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_become_flags_and_data() {
        let parsed = parse_options(&strings(&[
            "ro",
            "nosuid",
            "rbind",
            "rprivate",
            "index=off",
            "lowerdir=/a",
        ]));
        assert!(parsed.flags.contains(
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_BIND | MsFlags::MS_REC
        ));
        assert_eq!(parsed.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(parsed.data, strings(&["index=off", "lowerdir=/a"]));
        let parsed = parse_options(&strings(&["ro", "rw", "suid"]));
        assert!(parsed.flags.is_empty());
    }

    #[test]
    fn lowerdirs_are_made_relative_to_their_common_directory() {
        let data = strings(&[
            "workdir=/s/snapshots/9/work",
            "upperdir=/s/snapshots/9/fs",
            "lowerdir=/s/snapshots/2/fs:/s/snapshots/1/fs",
        ]);
        let (dir, compacted) = compact_lowerdirs(&data);
        assert_eq!(dir, Some(PathBuf::from("/s/snapshots")));
        assert_eq!(compacted[2], "lowerdir=2/fs:1/fs");
        assert_eq!(compacted[0], data[0]);
        let (dir, same) = compact_lowerdirs(&strings(&["lowerdir=/a:/b"]));
        assert_eq!(dir, None);
        assert_eq!(same, strings(&["lowerdir=/a:/b"]));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
