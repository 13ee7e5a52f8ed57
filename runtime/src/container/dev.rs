//! A spec that mounts nothing at `/dev` gets libcontainer's default `/dev` symlinks and device
//! nodes created in the root filesystem itself, where they stay after the container is gone.
//! libcontainer 0.7 then fails the next create of the same bundle ("failed to prepare
//! rootfs": they exist), where runc keeps what is there. So, before a create, the entries
//! libcontainer is about to make again are removed: the default symlinks when they are
//! symlinks, device nodes when they are device nodes. Nothing else is touched, and nothing is
//! followed out of the root filesystem: every step is relative to a directory descriptor,
//! without following symlinks.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path};

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use serde_json::Value;

/// The symlinks libcontainer makes in `/dev` (`setup_default_symlinks`, `setup_kcore_symlink`).
const DEFAULT_SYMLINKS: &[&str] = &["fd", "stdin", "stdout", "stderr", "kcore"];

/// Whether the spec mounts something at `/dev`.
pub(crate) fn mounts_dev(spec: &Value) -> bool {
    spec["mounts"].as_array().is_some_and(|mounts| {
        mounts.iter().any(|m| {
            m["destination"]
                .as_str()
                .is_some_and(|d| Path::new(d) == Path::new("/dev"))
        })
    })
}

/// Removes what an earlier container left in `rootfs/dev` that libcontainer will create
/// again for `spec`. Best effort: what cannot be removed makes libcontainer fail as before.
pub(crate) fn clear_leftovers(rootfs: &Path, spec: &Value) {
    if mounts_dev(spec) {
        return;
    }
    let Some(dev) = open_dir(rootfs).and_then(|root| open_child_dir(&root, OsStr::new("dev")))
    else {
        return;
    };
    for name in DEFAULT_SYMLINKS {
        remove_if(&dev, OsStr::new(name), |kind| kind == SFlag::S_IFLNK);
    }
    let mut devices: Vec<String> = libcontainer::rootfs::utils::default_devices()
        .iter()
        .map(|d| d.path().to_string_lossy().into_owned())
        .collect();
    if let Some(list) = spec["linux"]["devices"].as_array() {
        devices.extend(
            list.iter()
                .filter_map(|d| d["path"].as_str().map(String::from)),
        );
    }
    for path in devices {
        let Ok(relative) = Path::new(&path).strip_prefix("/dev") else {
            continue;
        };
        let names: Vec<&OsStr> = relative
            .components()
            .map(|c| match c {
                Component::Normal(name) => Some(name),
                _ => None,
            })
            .collect::<Option<_>>()
            .unwrap_or_default();
        let Some((last, parents)) = names.split_last() else {
            continue;
        };
        let mut dir = match dup(&dev) {
            Some(dir) => dir,
            None => continue,
        };
        let mut reachable = true;
        for parent in parents {
            match open_child_dir(&dir, parent) {
                Some(child) => dir = child,
                None => {
                    reachable = false;
                    break;
                }
            }
        }
        if reachable {
            remove_if(&dir, last, |kind| {
                matches!(kind, SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO)
            });
        }
    }
}

fn open_dir(path: &Path) -> Option<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    // SAFETY: the descriptor was just opened and is owned here.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A child directory, never through a symlink.
fn open_child_dir(dir: &OwnedFd, name: &OsStr) -> Option<OwnedFd> {
    let fd = openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    // SAFETY: as above.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn dup(dir: &OwnedFd) -> Option<OwnedFd> {
    dir.try_clone().ok()
}

fn remove_if(dir: &OwnedFd, name: &OsStr, wanted: impl Fn(SFlag) -> bool) {
    let Ok(stat) = fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
        return;
    };
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    if wanted(kind) {
        if let Err(err) = unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
            tracing::debug!(%err, name = ?name, "could not remove a leftover in /dev");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_only_what_libcontainer_makes_again() {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("dev");
        std::fs::create_dir_all(dev.join("net")).unwrap();
        for name in ["fd", "stdin", "stdout", "stderr"] {
            std::os::unix::fs::symlink("/proc/self/fd", dev.join(name)).unwrap();
        }
        // An image's own file with a default symlink's name, and a file of its own, stay.
        std::fs::write(dev.join("kcore"), "image file").unwrap();
        std::fs::write(dev.join("custom"), "image file").unwrap();
        nix::unistd::mkfifo(&dev.join("null"), Mode::from_bits_truncate(0o600)).unwrap();
        nix::unistd::mkfifo(&dev.join("net/tun"), Mode::from_bits_truncate(0o600)).unwrap();
        let spec = json!({"linux": {"devices": [{"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200}]}});
        clear_leftovers(root.path(), &spec);
        for gone in ["fd", "stdin", "stdout", "stderr", "null", "net/tun"] {
            assert!(
                std::fs::symlink_metadata(dev.join(gone)).is_err(),
                "{gone} removed"
            );
        }
        assert_eq!(
            std::fs::read_to_string(dev.join("kcore")).unwrap(),
            "image file"
        );
        assert!(dev.join("custom").exists());
    }

    #[test]
    fn never_follows_a_dev_symlink_out_of_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/proc/self/fd", outside.path().join("fd")).unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("dev")).unwrap();
        clear_leftovers(root.path(), &json!({}));
        assert!(std::fs::symlink_metadata(outside.path().join("fd")).is_ok());
    }

    #[test]
    fn a_dev_mount_means_nothing_to_do() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("dev")).unwrap();
        std::os::unix::fs::symlink("/proc/self/fd", root.path().join("dev/fd")).unwrap();
        clear_leftovers(
            root.path(),
            &json!({"mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}]}),
        );
        assert!(std::fs::symlink_metadata(root.path().join("dev/fd")).is_ok());
    }
}
