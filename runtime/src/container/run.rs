//! One-shot runs: create, start, wait, delete, whatever happens in between.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::instrument;

use super::{Container, CreateOptions, Engine};
use crate::error::EngineError;
use crate::process::ExitStatus;
use crate::staging::FreshRoot;

/// How a one-shot container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The workload exited with this status.
    Exited(i32),
    /// The workload was killed by this signal.
    Signaled(i32),
    /// The timeout passed; the whole container was killed.
    TimedOut,
}

impl RunOutcome {
    /// The status a shell would report: the exit code, 128 + signal, and for a timeout the
    /// 128 + SIGKILL that the workload died of.
    pub fn code(self) -> i32 {
        match self {
            RunOutcome::Exited(code) => code,
            RunOutcome::Signaled(sig) => 128 + sig,
            RunOutcome::TimedOut => 128 + libc::SIGKILL,
        }
    }
}

/// How a one-shot container ended, and what the kernel did to it on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    pub outcome: RunOutcome,
    /// Processes the kernel's OOM killer stopped inside the container's memory limit.
    pub oom_kills: u64,
}

impl From<ExitStatus> for RunOutcome {
    fn from(status: ExitStatus) -> RunOutcome {
        match status {
            ExitStatus::Exited(code) => RunOutcome::Exited(code),
            ExitStatus::Signaled(sig) => RunOutcome::Signaled(sig),
        }
    }
}

/// How [`Engine::run_to_completion_with`] runs a container.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions<'a> {
    /// SIGKILL the whole container when this has passed since its start.
    pub timeout: Option<Duration>,
    /// The console socket that receives the pty master of a `process.terminal` container.
    pub console_socket: Option<&'a Path>,
    /// A root made for this run alone, mounted over the bundle's empty root.
    pub fresh_root: Option<&'a FreshRoot>,
}

impl Engine {
    /// Runs the bundle's container to completion with the caller's stdin, stdout and stderr,
    /// and returns how the workload ended and whether the OOM killer struck. With a `timeout`,
    /// the whole container is SIGKILLed when it passes (the pid namespace takes every
    /// descendant with the init).
    ///
    /// The container is deleted before this returns, whatever happens: an error half-way, or
    /// `cancel` cancelled (reported as [`EngineError::Interrupted`] with the reason given). The
    /// engine takes no signals itself: a caller that stops on a signal cancels the token from
    /// its own signal handling.
    #[instrument(skip_all, fields(id = %id))]
    pub fn run_to_completion(
        &self,
        id: &str,
        bundle: &Path,
        timeout: Option<Duration>,
        cancel: &Cancel,
    ) -> Result<RunReport, EngineError> {
        let options = RunOptions {
            timeout,
            ..RunOptions::default()
        };
        self.run_to_completion_with(id, bundle, options, cancel, |_| Ok(()))
    }

    /// [`Engine::run_to_completion`] with `before_start` called on the created container
    /// before its process starts (network enforcement, a terminal's relay). What it returns
    /// is kept until the container is gone; an error from it stops the run, and the container
    /// is deleted.
    pub fn run_to_completion_with<G>(
        &self,
        id: &str,
        bundle: &Path,
        options: RunOptions<'_>,
        cancel: &Cancel,
        before_start: impl FnOnce(&Container) -> Result<G, EngineError>,
    ) -> Result<RunReport, EngineError> {
        let timeout = options.timeout;
        let interrupted = |signal| EngineError::Interrupted {
            id: id.to_string(),
            signal,
        };
        if let Some(signal) = cancel.cancelled() {
            return Err(interrupted(signal));
        }
        let options = CreateOptions {
            die_with_caller: self.bound_to_caller,
            console_socket: options.console_socket.map(Path::to_path_buf),
            fresh_root: options.fresh_root.cloned(),
            ..CreateOptions::default()
        };
        let container = self.create(id, bundle, options)?;
        let mut guard = None;
        let outcome = (|| {
            guard = Some(before_start(&container)?);
            if let Some(signal) = cancel.cancelled() {
                return Err(interrupted(signal));
            }
            self.start(id)?;
            let Some(pidfd) = container.pidfd() else {
                return Err(EngineError::ExitStatusLost { id: id.to_string() });
            };
            let _wait = tracing::info_span!("wait").entered();
            let deadline = timeout.map(|t| Instant::now() + t);
            loop {
                let wait_ms = match deadline {
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            tracing::info!("timeout: killing the container");
                            let _ = pidfd.send_signal(libc::SIGKILL);
                            let _ = pidfd.wait_exit(Some(Duration::from_secs(10)));
                            let _ = pidfd.reap(true);
                            return Ok(RunOutcome::TimedOut);
                        }
                        left.as_millis().min(i32::MAX as u128) as i32
                    }
                    None => -1,
                };
                let mut fds = [
                    libc::pollfd {
                        fd: pidfd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: cancel.read_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: two valid pollfds.
                let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, wait_ms) };
                if rc < 0 {
                    let err = std::io::Error::last_os_error();
                    if err.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(EngineError::io("waiting for the container", err));
                }
                if fds[0].revents != 0 {
                    return match pidfd.reap(true) {
                        Ok(Some(status)) => Ok(status.into()),
                        Ok(None) => Err(EngineError::ExitStatusLost { id: id.to_string() }),
                        Err(e) => Err(EngineError::io(format!("container {id}: reaping"), e)),
                    };
                }
                if let Some(signal) = cancel.cancelled() {
                    tracing::info!(signal, "cancelled: killing the container");
                    return Err(interrupted(signal));
                }
            }
        })();
        // Read while the container's cgroups still exist.
        let oom_kills =
            tracing::info_span!("oom_kills").in_scope(|| self.oom_kills(id).unwrap_or(0));
        let deleted = self.delete(id, true);
        if let Some(pidfd) = container.pidfd() {
            // Interrupted or failed half-way: the init died in delete; collect it.
            let _ = pidfd.reap(false);
        }
        tracing::info_span!("release").in_scope(|| drop(guard));
        match (outcome, deleted) {
            (Err(err), _) => Err(err),
            (Ok(_), Err(err)) => Err(err),
            (Ok(outcome), Ok(())) => Ok(RunReport { outcome, oom_kills }),
        }
    }
}

/// Stops runs from outside: the caller's own signal handling or another thread cancels, and
/// every run watching the token kills and deletes its container and returns
/// [`EngineError::Interrupted`] with the reason given. Clones share one token; once cancelled it
/// stays cancelled.
#[derive(Debug, Clone)]
pub struct Cancel {
    inner: Arc<CancelPipe>,
}

#[derive(Debug)]
struct CancelPipe {
    /// Readable once cancelled (never drained, so that every waiter sees it).
    read: OwnedFd,
    write: OwnedFd,
    /// The first reason given (a signal number); 0 while not cancelled.
    reason: AtomicI32,
}

impl Cancel {
    pub fn new() -> std::io::Result<Cancel> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Cancel {
            inner: Arc::new(CancelPipe {
                read,
                write,
                reason: AtomicI32::new(0),
            }),
        })
    }

    /// Cancels every run watching this token; `signal` is the reason they report (the first
    /// one given wins).
    pub fn cancel(&self, signal: i32) {
        // A reason of 0 would read as "not cancelled" while the pipe says otherwise.
        let signal = if signal > 0 { signal } else { libc::SIGTERM };
        let _ = self
            .inner
            .reason
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        let byte = 1u8;
        // SAFETY: a one-byte write to our non-blocking pipe.
        unsafe { libc::write(self.inner.write.as_raw_fd(), (&byte as *const u8).cast(), 1) };
    }

    /// The reason given, once cancelled.
    pub fn cancelled(&self) -> Option<i32> {
        match self.inner.reason.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    fn read_fd(&self) -> i32 {
        self.inner.read.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_codes() {
        assert_eq!(RunOutcome::Exited(3).code(), 3);
        assert_eq!(RunOutcome::Signaled(15).code(), 143);
        assert_eq!(RunOutcome::TimedOut.code(), 137);
        assert_eq!(
            RunOutcome::from(ExitStatus::Signaled(9)),
            RunOutcome::Signaled(9)
        );
    }

    #[test]
    fn a_cancel_reaches_every_clone_and_keeps_its_first_reason() {
        let cancel = Cancel::new().unwrap();
        let clone = cancel.clone();
        assert_eq!(cancel.cancelled(), None);
        std::thread::spawn(move || clone.cancel(libc::SIGHUP))
            .join()
            .unwrap();
        cancel.cancel(libc::SIGINT);
        assert_eq!(cancel.cancelled(), Some(libc::SIGHUP));
        let mut fds = [libc::pollfd {
            fd: cancel.read_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd; a zero timeout.
        assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) }, 1, "readable");
    }
}
