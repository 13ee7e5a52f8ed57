//! A console socket: where a `process.terminal` container's init sends the pty master it
//! created (OCI's `--console-socket`). The socket lives in a private temporary directory.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// How long a caller waits for a created process's terminal.
const TERMINAL_WAIT: Duration = Duration::from_secs(10);

/// A listening console socket in a private directory, removed on drop. The directory is
/// short-named under /tmp: unix socket paths are limited to 108 bytes and bundle paths are
/// long.
pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> std::io::Result<ConsoleSocket> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mxc-tty-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir)?;
        let result = (|| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            let path = dir.join("s");
            let listener = UnixListener::bind(&path)?;
            listener.set_nonblocking(true)?;
            Ok((path, listener))
        })();
        match result {
            Ok((path, listener)) => Ok(ConsoleSocket {
                dir,
                path,
                listener,
            }),
            Err(err) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(err)
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master the container sent. It was sent while the container was created, so it
    /// is normally waiting already; [`TERMINAL_WAIT`] bounds the wait otherwise.
    pub fn receive_master(&self) -> std::io::Result<OwnedFd> {
        let mut pfd = libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, TERMINAL_WAIT.as_millis() as i32) };
        if ready <= 0 {
            return Err(std::io::Error::other(
                "the container did not send its terminal",
            ));
        }
        let (stream, _) = self.listener.accept()?;
        stream.set_nonblocking(false)?;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        let mut master = None;
        for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor for us.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    if master.is_none() {
                        master = Some(fd);
                    }
                }
            }
        }
        master.ok_or_else(|| std::io::Error::other("the container sent no terminal"))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
