//! A terminal for foreground `run` and `exec -t` without `--console-socket`: the runtime
//! listens on a private console socket, receives the pty master from the container, and
//! relays it to its own stdin and stdout (raw mode while it runs, window size kept in sync).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// A console socket in a private temporary directory, removed on drop.
pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> std::io::Result<ConsoleSocket> {
        let dir = std::env::temp_dir().join(format!(
            "mxc-runtime-console-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir(&dir)?;
        let path = dir.join("console.sock");
        let listener = UnixListener::bind(&path)?;
        Ok(ConsoleSocket {
            dir,
            path,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the container's connection and takes the pty master it sends.
    pub fn receive_master(&self) -> std::io::Result<OwnedFd> {
        let (stream, _) = self.listener.accept()?;
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
        for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel just installed this descriptor for us.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(std::io::Error::other("the container sent no pty master"))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Relays between this process's stdin/stdout and a pty master until the master closes.
pub struct Relay {
    master: std::sync::Arc<OwnedFd>,
    saved: Option<libc::termios>,
    output: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(master: OwnedFd) -> Relay {
        let master = std::sync::Arc::new(master);
        let saved = make_raw(libc::STDIN_FILENO);
        resize(&master);
        let out_fd = master.clone();
        let output = std::thread::spawn(move || {
            // SAFETY: the master stays open for as long as the Arc lives; ManuallyDrop keeps
            // the File from closing it.
            let mut from = std::mem::ManuallyDrop::new(unsafe {
                std::fs::File::from_raw_fd(out_fd.as_raw_fd())
            });
            let mut stdout = std::io::stdout();
            let mut buf = [0u8; 8192];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
        });
        let in_fd = master.clone();
        std::thread::spawn(move || {
            // SAFETY: as above.
            let mut to = std::mem::ManuallyDrop::new(unsafe {
                std::fs::File::from_raw_fd(in_fd.as_raw_fd())
            });
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        Relay {
            master,
            saved,
            output: Some(output),
        }
    }

    /// Copies this terminal's window size to the container's (on SIGWINCH).
    pub fn resize(&self) {
        resize(&self.master);
    }

    /// Waits for the container's output to drain after it exited.
    pub fn finish(mut self) {
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            // SAFETY: restoring the attributes saved from this same descriptor.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &saved) };
        }
    }
}

fn make_raw(fd: RawFd) -> Option<libc::termios> {
    // SAFETY: termios calls on our own stdin; a non-terminal fails and is left alone.
    unsafe {
        if libc::isatty(fd) != 1 {
            return None;
        }
        let mut saved: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut saved) != 0 {
            return None;
        }
        let mut raw = saved;
        libc::cfmakeraw(&mut raw);
        libc::tcsetattr(fd, libc::TCSANOW, &raw);
        Some(saved)
    }
}

fn resize(master: &OwnedFd) {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a properly sized winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}
