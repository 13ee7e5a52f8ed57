//! Foreground `run` and `exec`: wait for the process while passing on the signals this
//! runtime receives, as runc does (Ctrl-C reaches the container, not just the runtime).

use std::os::fd::AsRawFd;

use nix::sys::signal::{SigSet, Signal as NixSignal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use mxc_runtime::{ExitStatus, PidFd};

use crate::console::Relay;

/// Blocks every signal in this thread (and the threads and processes it starts afterwards;
/// the container's executor restores the defaults). Call before creating the container.
pub fn block_signals() -> std::io::Result<SigSet> {
    let all = SigSet::all();
    all.thread_block().map_err(std::io::Error::from)?;
    Ok(all)
}

/// Waits for the process behind `pidfd` to exit, forwarding signals to it and window-size
/// changes to its terminal. `Ok(None)` if another process reaped it.
pub fn wait_forwarding(
    pidfd: &PidFd,
    signals: &SigSet,
    relay: Option<&Relay>,
) -> std::io::Result<Option<ExitStatus>> {
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(std::io::Error::from)?;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if fds[0].revents != 0 {
            return pidfd.reap(true);
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let signo = info.ssi_signo as i32;
            match NixSignal::try_from(signo) {
                Ok(NixSignal::SIGCHLD) | Ok(NixSignal::SIGURG) => {}
                Ok(NixSignal::SIGWINCH) => {
                    if let Some(relay) = relay {
                        relay.resize();
                    }
                }
                _ => {
                    tracing::debug!(signal = signo, "forwarding signal");
                    let _ = pidfd.send_signal(signo);
                }
            }
        }
    }
}
