//! User namespaces owned by the identity they map to, not by root.
//!
//! The kernel charges what a process in a user namespace counts against per-user limits
//! (inotify instances and watches, namespaces, ...) to the namespace's *owner* at every level up
//! to the host's. A namespace that the runtime (root) creates is owned by root, so a sandbox
//! could exhaust root's inotify instances and break containerd, the kubelet or systemd. So the
//! runtime creates the namespace from a short-lived child that has become the mapped identity
//! first, writes the mappings itself, and lets libcontainer join it by path; the sandbox's
//! counts then land on that identity, and `mxc_translate::compile::USER_NAMESPACE_LIMITS`
//! bound them inside the namespace too.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// A user namespace owned by an unprivileged host id, held open by a child process until
/// dropped (by then the container's own processes keep it alive).
#[derive(Debug)]
pub struct OwnedUserNamespace {
    pid: libc::pid_t,
    /// Closing it lets the holder exit.
    release: Option<OwnedFd>,
}

/// One `uid_map`/`gid_map` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
        .collect()
}

impl OwnedUserNamespace {
    /// A new user namespace owned by `owner` (uid, gid) with these mappings.
    pub fn create(
        owner: (u32, u32),
        uids: &[IdRange],
        gids: &[IdRange],
    ) -> io::Result<OwnedUserNamespace> {
        let (ready_read, ready_write) = pipe()?;
        let (release_read, release_write) = pipe()?;
        // SAFETY: the child makes only async-signal-safe system calls and _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: raw system calls in the forked child, on descriptors it inherited.
            unsafe {
                let (uid, gid) = owner;
                let ok = libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == 0
                    && libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setresgid(gid, gid, gid) == 0
                    && libc::setresuid(uid, uid, uid) == 0
                    && libc::unshare(libc::CLONE_NEWUSER) == 0;
                let byte: u8 = if ok { 1 } else { 0 };
                libc::write(ready_write.as_raw_fd(), (&byte as *const u8).cast(), 1);
                if ok {
                    // Wait until the parent closes its end (or dies).
                    let mut buf = 0u8;
                    drop(release_write);
                    while libc::read(release_read.as_raw_fd(), (&mut buf as *mut u8).cast(), 1) > 0
                    {
                    }
                }
                libc::_exit(if ok { 0 } else { 1 });
            }
        }
        drop(ready_write);
        drop(release_read);
        let mut holder = OwnedUserNamespace {
            pid,
            release: Some(release_write),
        };
        let mut byte = 0u8;
        // SAFETY: a one-byte read from our pipe.
        let n = unsafe { libc::read(ready_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
        if n != 1 || byte != 1 {
            holder.release = None;
            return Err(io::Error::other(
                "the child that creates the user namespace failed (setuid or unshare)",
            ));
        }
        let proc = PathBuf::from(format!("/proc/{pid}"));
        std::fs::write(proc.join("uid_map"), map_text(uids))?;
        std::fs::write(proc.join("gid_map"), map_text(gids))?;
        Ok(holder)
    }

    /// The namespace, for `linux.namespaces[].path`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/user", self.pid))
    }
}

impl Drop for OwnedUserNamespace {
    fn drop(&mut self) {
        // The container's processes were forked from this one and may still hold the release
        // pipe's write end (until they exec), so closing ours is not enough: kill the holder.
        self.release = None;
        // SAFETY: signalling and reaping our own child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_namespace_is_owned_by_the_identity_and_maps_it() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root: it creates a user namespace as another user");
        }
        let range = [IdRange {
            container: 0,
            host: 65534,
            size: 1,
        }];
        let ns = OwnedUserNamespace::create((65534, 65534), &range, &range).unwrap();
        let pid = ns.pid;
        let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
        assert_eq!(
            map.split_whitespace().collect::<Vec<_>>(),
            ["0", "65534", "1"]
        );
        // The kernel's own answer to "who owns this namespace" (NS_GET_OWNER_UID).
        let file = std::fs::File::open(ns.path()).unwrap();
        let mut owner: libc::uid_t = 0;
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), 0xb704, &mut owner) };
        assert_eq!(rc, 0);
        assert_eq!(owner, 65534);
        let own = std::fs::metadata(ns.path()).unwrap().ino();
        let host = std::fs::metadata("/proc/self/ns/user").unwrap().ino();
        assert_ne!(own, host);
        drop(ns);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
