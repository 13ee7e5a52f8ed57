//! Terminals: a process created with `terminal: true` sends the master side of its pty over a
//! console socket that the shim listens on; the shim copies between it and containerd's
//! FIFOs (`io.rs`) and sets its size on ResizePty.

use std::os::fd::{AsRawFd, OwnedFd};

pub use mxc_runtime::ConsoleSocket;

/// Sets the window size of the terminal behind `master`.
pub fn resize(master: &OwnedFd, width: u32, height: u32) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: height.min(u16::MAX as u32) as u16,
        ws_col: width.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
