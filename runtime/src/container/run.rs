//! One-shot runs: create, start, wait, delete, whatever happens in between.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::instrument;

use super::{Container, CreateOptions, Engine};
use crate::error::EngineError;
use crate::process::ExitStatus;

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
}

/// Signals that make a one-shot run stop and clean up.
const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

impl Engine {
    /// Runs the bundle's container to completion with the caller's stdin, stdout and stderr,
    /// and returns how the workload ended. With a `timeout`, the whole container is SIGKILLed
    /// when it passes (the pid namespace takes every descendant with the init).
    ///
    /// The container is deleted before this returns, whatever happens: an error half-way, or
    /// SIGINT, SIGTERM or SIGHUP delivered to this process (reported as
    /// [`EngineError::Interrupted`]). While it runs, those three signals are caught process-wide;
    /// the previous handlers are restored afterwards.
    #[instrument(skip_all, fields(id = %id))]
    pub fn run_to_completion(
        &self,
        id: &str,
        bundle: &Path,
        timeout: Option<Duration>,
    ) -> Result<RunOutcome, EngineError> {
        let options = RunOptions {
            timeout,
            ..RunOptions::default()
        };
        self.run_to_completion_with(id, bundle, options, |_| Ok(()))
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
        before_start: impl FnOnce(&Container) -> Result<G, EngineError>,
    ) -> Result<RunOutcome, EngineError> {
        let timeout = options.timeout;
        let stop =
            StopSignals::install().map_err(|e| EngineError::io("installing signal handlers", e))?;
        let options = CreateOptions {
            die_with_caller: self.bound_to_caller,
            console_socket: options.console_socket.map(Path::to_path_buf),
            ..CreateOptions::default()
        };
        let container = self.create(id, bundle, options)?;
        let mut guard = None;
        let outcome = (|| {
            guard = Some(before_start(&container)?);
            if let Some(sig) = stop.received() {
                return Err(EngineError::Interrupted {
                    id: id.to_string(),
                    signal: sig,
                });
            }
            self.start(id)?;
            let Some(pidfd) = container.pidfd() else {
                return Err(EngineError::ExitStatusLost { id: id.to_string() });
            };
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
                        fd: stop.read_fd(),
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
                if let Some(sig) = stop.received() {
                    tracing::info!(signal = sig, "interrupted: killing the container");
                    return Err(EngineError::Interrupted {
                        id: id.to_string(),
                        signal: sig,
                    });
                }
            }
        })();
        let deleted = self.delete(id, true);
        if let Some(pidfd) = container.pidfd() {
            // Interrupted or failed half-way: the init died in delete; collect it.
            let _ = pidfd.reap(false);
        }
        drop(guard);
        drop(stop);
        match (outcome, deleted) {
            (Err(err), _) => Err(err),
            (Ok(_), Err(err)) => Err(err),
            (Ok(outcome), Ok(())) => Ok(outcome),
        }
    }
}

/// Write ends of the self-pipes of the one-shot runs in progress in this process; the signal
/// handler writes the signal number to each. A fixed array, because a handler may not lock.
const MAX_RUNS: usize = 64;
static STOP_PIPES: [AtomicI32; MAX_RUNS] = [const { AtomicI32::new(-1) }; MAX_RUNS];

/// How many runs have the handlers installed, and the dispositions to restore after the last.
static HANDLERS: Mutex<(usize, Vec<(i32, libc::sigaction)>)> = Mutex::new((0, Vec::new()));

extern "C" fn on_stop_signal(sig: libc::c_int) {
    let byte = sig as u8;
    for slot in &STOP_PIPES {
        let fd = slot.load(Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking.
            unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP caught into a pipe for as long as this lives. Several runs in
/// one process each get every signal; the handlers go when the last run ends.
struct StopSignals {
    read: OwnedFd,
    /// Kept open while its number sits in `STOP_PIPES`.
    _write: OwnedFd,
    slot: usize,
}

impl StopSignals {
    fn install() -> std::io::Result<StopSignals> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let slot = STOP_PIPES
            .iter()
            .position(|slot| {
                slot.compare_exchange(-1, write.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            })
            .ok_or_else(|| std::io::Error::other("too many one-shot runs at once"))?;
        let mut handlers = HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
        if handlers.0 == 0 {
            for sig in STOP_SIGNALS {
                // SAFETY: installing a handler that only calls write(2); the old one is kept.
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = on_stop_signal as *const () as usize;
                    action.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut action.sa_mask);
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, &action, &mut old) == 0 {
                        handlers.1.push((sig, old));
                    }
                }
            }
        }
        handlers.0 += 1;
        Ok(StopSignals {
            read,
            _write: write,
            slot,
        })
    }

    fn read_fd(&self) -> i32 {
        self.read.as_raw_fd()
    }

    /// The first stop signal received so far, if any.
    fn received(&self) -> Option<i32> {
        let mut byte = 0u8;
        // SAFETY: a one-byte read from our non-blocking pipe.
        let n = unsafe { libc::read(self.read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
        (n == 1).then_some(byte as i32)
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        let mut handlers = HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
        handlers.0 -= 1;
        if handlers.0 == 0 {
            for (sig, old) in handlers.1.drain(..) {
                // SAFETY: restoring the action saved when the first run installed ours.
                unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
            }
        }
        STOP_PIPES[self.slot].store(-1, Ordering::SeqCst);
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
    fn stop_signals_are_caught_and_handlers_restored() {
        let stop = StopSignals::install().unwrap();
        let other = StopSignals::install().unwrap();
        assert_eq!(stop.received(), None);
        // SAFETY: raising a signal whose handler is installed above.
        unsafe { libc::raise(libc::SIGHUP) };
        assert_eq!(stop.received(), Some(libc::SIGHUP));
        assert_eq!(other.received(), Some(libc::SIGHUP), "every run hears it");
        drop(stop);
        drop(other);
        // SAFETY: reading the current disposition only.
        let current = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old);
            old.sa_sigaction
        };
        assert_ne!(current, on_stop_signal as *const () as usize);
    }
}
