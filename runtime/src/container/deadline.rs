//! `process.timeout` for a container that no caller of the engine waits on: `mxc-runtime
//! start` (Docker, runc's command line) returns at once, so a detached helper process keeps the
//! deadline. When the policy's time passes it kills the whole container and records the
//! timeout; when the container's init exits first it just ends. It is one of the container's
//! helpers, so delete stops it. (`mxc run` and the shim wait on their containers and keep the
//! deadline themselves.)

use std::path::PathBuf;
use std::time::Duration;

use super::Engine;
use crate::audit::Event;
use crate::error::EngineError;
use crate::helper::Helper;
use crate::process::InitProcess;
use crate::signal::Signal;

impl Engine {
    /// Starts the keeper of container `id`'s deadline, if its policy sets one; call it right
    /// after [`Engine::start`]. Nothing for a container without a timeout.
    pub fn keep_deadline(&self, id: &str) -> Result<(), EngineError> {
        let _lock = self.lock(id)?;
        let mut record = self.load_record(id)?;
        let Some(timeout_ms) = record.policy.as_ref().and_then(|p| p.timeout_ms) else {
            return Ok(());
        };
        let Some(init) = record.init else {
            return Ok(());
        };
        let keeper = Helper::Deadline {
            root: self.layout.root().to_path_buf(),
            container_id: id.to_string(),
            pid: init.pid,
            start_time: init.start_time,
            timeout_ms,
        }
        .spawn("the deadline keeper")
        .map_err(|e| EngineError::io(format!("container {id}: keeping its timeout"), e))?;
        record.helpers.push(keeper);
        self.save_record(&record)
    }
}

/// The body of the keeper's process: wait for the init to exit or the time to pass.
pub(crate) fn keep(
    root: PathBuf,
    id: &str,
    init: InitProcess,
    timeout: Duration,
) -> Result<(), String> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let Some(pidfd) = init.open_pidfd() else {
        // Already gone: nothing to keep.
        println!("ready");
        return Ok(());
    };
    println!("ready");
    let _ = std::io::stdout().flush();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds = [libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: polling one descriptor we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        if n > 0 {
            return Ok(()); // the init exited first
        }
    }
    let engine = Engine::new(root);
    engine
        .kill(id, Signal::KILL, true)
        .map_err(|e| format!("container {id}: killing it at its timeout: {e}"))?;
    engine.audit(
        id,
        &Event::Timeout {
            timeout_ms: timeout.as_millis() as u64,
        },
    );
    Ok(())
}
