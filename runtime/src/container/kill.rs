//! `kill`: signal the init process, or every process in the container.
//!
//! Unlike libcontainer's `kill`, this never records the container as stopped: liveness is
//! always read from the init process itself.

use std::time::{Duration, Instant};

use libcgroups::common::{CgroupManager, FreezerState};
use tracing::instrument;

use super::{cgroup, Engine};
use crate::error::EngineError;
use crate::record::{ContainerRecord, Status};
use crate::signal::Signal;

impl Engine {
    /// Sends `signal` to the init process, or with `all` to every process in the container's
    /// cgroup. A paused container stays paused (the signal is delivered on resume), except
    /// that SIGKILL thaws it so that the processes die.
    #[instrument(skip_all, fields(id = %id, signal = %signal, all))]
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), EngineError> {
        let _lock = self.lock(id)?;
        let record = self.load_record(id)?;
        let status = record.status();
        if !all && matches!(status, Status::Stopped | Status::Creating) {
            return Err(EngineError::WrongStatus {
                id: id.to_string(),
                action: "signal",
                status,
                hint: " (container not running)",
            });
        }
        if all {
            signal_all(&record, signal.as_raw())?;
        } else if let Some(fd) = record.init.and_then(|init| init.open_pidfd()) {
            fd.send_signal(signal.as_raw())
                .map_err(|e| EngineError::io(format!("container {id}: sending {signal}"), e))?;
            if signal == Signal::KILL && status == Status::Paused {
                cgroup::thaw(&record);
            }
        }
        Ok(())
    }

    /// SIGKILLs every process of the container until none is left, or `timeout` passes.
    /// With `reap`, those that are this process's children are reaped too (a failed create,
    /// whose caller has no handle to wait on); otherwise their exit status is left to the
    /// caller's [`super::Container::wait`].
    pub(crate) fn kill_cgroup_processes(
        &self,
        record: &ContainerRecord,
        timeout: Duration,
        reap: bool,
    ) -> Result<(), EngineError> {
        let deadline = Instant::now() + timeout;
        let init_fd = record.init.and_then(|init| init.open_pidfd());
        let mut delay = Duration::from_millis(1);
        loop {
            if let Some(fd) = &init_fd {
                let _ = fd.send_signal(libc::SIGKILL);
            }
            // v2: the whole tree at once, without racing forks; then whatever v1 holds.
            cgroup::kill_all(&record.cgroup_path);
            let pids = cgroup::all_pids(&record.cgroup_path);
            for &pid in &pids {
                // SAFETY: kill(2) on a pid read from the container's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if cgroup::is_frozen(&record.cgroup_path) {
                cgroup::thaw(record);
            }
            if reap {
                // The init and exec processes are children of the process that created them.
                for &pid in &pids {
                    // SAFETY: non-blocking waitpid; ECHILD for others' children is ignored.
                    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                }
                if let Some(fd) = &init_fd {
                    let _ = fd.reap(false);
                }
            }
            let init_alive = record.init.is_some_and(|init| init.is_alive());
            if pids.is_empty() && !init_alive {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EngineError::StillRunning {
                    id: record.id.clone(),
                    pids,
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }
}

/// Signals every process in the container's cgroup. The cgroup is frozen meanwhile so that
/// nothing forks past the signal, as runc does; a container that was paused stays frozen.
fn signal_all(record: &ContainerRecord, signal: i32) -> Result<(), EngineError> {
    let was_frozen = cgroup::is_frozen(&record.cgroup_path);
    let manager = cgroup::manager(record).ok();
    if !was_frozen {
        if let Some(m) = &manager {
            if let Err(err) = m.freeze(FreezerState::Frozen) {
                tracing::warn!(error = %err, "freezing before signalling failed");
            }
        }
    }
    for pid in cgroup::all_pids(&record.cgroup_path) {
        // SAFETY: kill(2) on a pid read from the container's own cgroup.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                tracing::warn!(pid, error = %err, "signalling a container process failed");
            }
        }
    }
    if !was_frozen || signal == libc::SIGKILL {
        if let Some(m) = &manager {
            if let Err(err) = m.freeze(FreezerState::Thawed) {
                tracing::warn!(error = %err, "thawing after signalling failed");
            }
        }
    }
    Ok(())
}
