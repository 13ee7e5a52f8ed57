//! `wait`: the init process's exit status, through a pidfd.

use std::time::Duration;

use super::Engine;
use crate::error::EngineError;
use crate::process::{ExitStatus, PidFd};

/// Waits up to `timeout` (forever with `None`) for the process behind `fd` to exit.
/// `Ok(None)`: still running at the timeout. `Ok(Some(None))`: exited, but its status went to
/// another reaper.
pub(crate) fn wait_pidfd(
    id: &str,
    fd: &PidFd,
    timeout: Option<Duration>,
) -> Result<Option<Option<ExitStatus>>, EngineError> {
    let exited = fd
        .wait_exit(timeout)
        .map_err(|e| EngineError::io(format!("container {id}: waiting for exit"), e))?;
    if !exited {
        return Ok(None);
    }
    let status = fd
        .reap(true)
        .map_err(|e| EngineError::io(format!("container {id}: reaping"), e))?;
    Ok(Some(status))
}

impl Engine {
    /// Waits for the container's init process to exit. The status is returned when this
    /// process is its parent (it created the container); `Ok(None)` when the init exited but
    /// another process reaped it (a subreaper such as a containerd shim).
    pub fn wait(&self, id: &str) -> Result<Option<ExitStatus>, EngineError> {
        let record = self.load_record(id)?;
        let Some(fd) = record.init.and_then(|init| init.open_pidfd()) else {
            return Ok(None);
        };
        Ok(wait_pidfd(id, &fd, None)?.flatten())
    }
}
