//! CVE-2019-5736: a container must not be able to overwrite a runtime binary on the host
//! through `/proc/<pid>/exe` of a process that still runs the runtime's image inside it (a
//! container's init or an exec process between entering the container and exec).
//!
//! Those processes are already non-dumpable (libcontainer marks the caller so before it
//! clones) and containers hold no capabilities, which keeps `/proc/<pid>/exe` out of their
//! reach. As runc does since 1.2, the shim and `mxc-runtime` also run from a read-only view
//! of their binary: a private overlayfs mount, never attached to any mount tree, of the binary's directory (and
//! an empty directory: overlayfs is read-only when it has only lower layers, and wants two).
//! A write through `/proc/<pid>/exe` then fails (EROFS), and unlike a sealed in-memory copy
//! nothing is copied: one shim per pod stays small.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libc::{
    FSCONFIG_CMD_CREATE, FSCONFIG_SET_STRING, FSMOUNT_CLOEXEC, FSOPEN_CLOEXEC, MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};

fn last_error(what: &str) -> std::io::Error {
    let err = std::io::Error::last_os_error();
    std::io::Error::new(err.kind(), format!("{what}: {err}"))
}

fn owned(fd: libc::c_long, what: &str) -> std::io::Result<OwnedFd> {
    if fd < 0 {
        return Err(last_error(what));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn c_string(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| std::io::Error::other("a path with a NUL byte"))
}

/// An `O_PATH` descriptor of `binary` inside a detached read-only overlayfs mount of its
/// directory. Exec it through `/proc/self/fd/N`.
pub fn read_only_view(binary: &Path) -> std::io::Result<OwnedFd> {
    let dir = binary
        .parent()
        .ok_or_else(|| std::io::Error::other("the binary has no directory"))?;
    let name = binary
        .file_name()
        .ok_or_else(|| std::io::Error::other("the binary has no file name"))?;
    let overlay = c_string(b"overlay")?;
    // SAFETY: fsopen with a valid C string and flag.
    let context = owned(
        unsafe { libc::syscall(libc::SYS_fsopen, overlay.as_ptr(), FSOPEN_CLOEXEC) },
        "fsopen(overlay)",
    )?;
    // The second, empty layer; the binary's directory goes on top so that nothing masks it.
    // Once the mount exists the directory is not needed any more.
    let empty = EmptyDir::new()?;
    let lower = format!(
        "{}:{}",
        escape_layer(&dir.to_string_lossy()),
        escape_layer(&empty.0.to_string_lossy())
    );
    set_string(&context, "lowerdir", &lower)?;
    // xino does not matter here; off keeps spurious kernel messages away. Failure is fine.
    let _ = set_string(&context, "xino", "off");
    // SAFETY: fsconfig's create command takes no key or value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            std::os::fd::AsRawFd::as_raw_fd(&context),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    if rc < 0 {
        return Err(last_error("fsconfig(create)"));
    }
    // SAFETY: fsmount of our configured context.
    let mount = owned(
        unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                std::os::fd::AsRawFd::as_raw_fd(&context),
                FSMOUNT_CLOEXEC,
                (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) as libc::c_uint,
            )
        },
        "fsmount",
    )?;
    let name = c_string(name.as_bytes())?;
    // SAFETY: openat relative to our mount with a valid C string.
    let file = unsafe {
        libc::openat(
            std::os::fd::AsRawFd::as_raw_fd(&mount),
            name.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    owned(
        file as libc::c_long,
        "opening the binary in the read-only view",
    )
}

fn set_string(context: &OwnedFd, key: &str, value: &str) -> std::io::Result<()> {
    let key_c = c_string(key.as_bytes())?;
    let value_c = c_string(value.as_bytes())?;
    // SAFETY: fsconfig on our context with valid C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            std::os::fd::AsRawFd::as_raw_fd(context),
            FSCONFIG_SET_STRING,
            key_c.as_ptr(),
            value_c.as_ptr(),
            0,
        )
    };
    if rc < 0 {
        return Err(last_error(&format!("fsconfig({key}={value})")));
    }
    Ok(())
}

/// overlayfs separates layers with `:` and escapes with `\`.
fn escape_layer(path: &str) -> String {
    path.replace('\\', "\\\\").replace(':', "\\:")
}

/// A private empty directory, removed on drop.
struct EmptyDir(PathBuf);

impl EmptyDir {
    fn new() -> std::io::Result<EmptyDir> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!(
            ".mxc-view-empty-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(EmptyDir(path))
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The path to exec for `binary`: its read-only view when the kernel allows one (the
/// descriptor must stay open until the exec), else the binary itself. Quiet either way:
/// containerd reads what `start` prints as the shim's address, and the shim itself says in
/// containerd's log whether it runs from the view.
pub fn exec_path(binary: &Path) -> (PathBuf, Option<OwnedFd>) {
    match read_only_view(binary) {
        Ok(fd) => {
            let path = PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            ));
            (path, Some(fd))
        }
        Err(_) => (binary.to_path_buf(), None),
    }
}

/// Whether this process's binary is on a read-only mount (its read-only view, or a binary
/// installed read-only): a write through `/proc/<pid>/exe` then fails.
pub fn running_sealed() -> bool {
    let path = c"/proc/self/exe";
    // SAFETY: statvfs fills a zeroed struct from a valid path.
    let mut fs: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut fs) } != 0 {
        return false;
    }
    fs.f_flag & libc::ST_RDONLY != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_escaped() {
        assert_eq!(escape_layer("/a:b\\c"), "/a\\:b\\\\c");
    }

    #[test]
    fn the_view_cannot_be_written() {
        // Needs CAP_SYS_ADMIN; the tests of this project run as root.
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("tool");
        std::fs::write(&binary, b"#!/bin/sh\necho from-the-view\n").unwrap();
        let fd = read_only_view(&binary).expect("a read-only view (root, overlayfs)");
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&binary).unwrap()
        );
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        // The original stays writable for its owner.
        assert!(std::fs::OpenOptions::new()
            .write(true)
            .open(&binary)
            .is_ok());
    }
}
