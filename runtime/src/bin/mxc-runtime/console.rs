//! A terminal for foreground `run` and `exec -t` without `--console-socket`: the runtime
//! listens on a private console socket, receives the pty master from the container, and
//! relays it to its own stdin and stdout (raw mode while it runs, window size kept in sync).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub use mxc_runtime::ConsoleSocket;

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
