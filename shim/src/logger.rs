//! `binary://` log URIs: a logging program started beside the process, reading its stdout and
//! stderr pipes, and stopped as containerd stops it once the process is deleted; and the
//! set-up of a process's streams (`io.rs`) with their logger.

use std::time::Duration;

use mxc_runtime::PidFd;

use crate::engine::{Engine, LoggerRequest};
use crate::error::{failed, TaskError};
use crate::io::{self, LoggerLaunch, Prepared, ProcessIo, StdioPaths};
use crate::zygote::{Deadline, Passed};

/// How long delete waits for a killed init to be reaped, and for a logger to finish.
pub const EXIT_WAIT: Duration = Duration::from_secs(10);

/// The streams of a process about to be created: what the shim keeps (its copying, its
/// logger, ready), and the descriptors the process gets.
pub fn open_streams(
    engine: &dyn Engine,
    namespace: &str,
    id: &str,
    paths: &StdioPaths,
    deadline: Deadline,
) -> Result<(ProcessIo, Option<PidFd>, Passed), TaskError> {
    let Prepared { io, fds, logger } =
        io::prepare(paths).map_err(|e| TaskError::InvalidArgument(e.to_string()))?;
    let logger = match logger {
        Some(launch) => Some(start_logger(engine, namespace, id, launch, deadline)?),
        None => None,
    };
    Ok((io, logger, fds))
}

/// Undoes [`open_streams`] for a process that could not be created.
pub fn close_streams(mut io: ProcessIo, logger: Option<PidFd>) {
    io.stop();
    if let Some(logger) = logger {
        stop_logger(&logger);
    }
}

/// Starts a `binary://` logger for container `id` and waits until it says it is ready.
fn start_logger(
    engine: &dyn Engine,
    namespace: &str,
    id: &str,
    launch: LoggerLaunch,
    deadline: Deadline,
) -> Result<PidFd, TaskError> {
    let request = LoggerRequest {
        path: launch.path.clone(),
        args: launch.args.clone(),
        // containerd gives a logging binary exactly these variables.
        env: vec![
            ("CONTAINER_ID".into(), id.to_string()),
            ("CONTAINER_NAMESPACE".into(), namespace.to_string()),
        ],
    };
    let pid = engine.spawn_logger(request, launch.fds, deadline)?;
    let pidfd = PidFd::open(pid).map_err(failed)?;
    // The logger closes (or writes to) its fd 5 once it is ready.
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&launch.ready),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, EXIT_WAIT.as_millis() as i32) };
    if ready <= 0 {
        let _ = pidfd.send_signal(libc::SIGKILL);
        return Err(TaskError::Failed(format!(
            "the logging binary {} did not get ready",
            launch.path.display()
        )));
    }
    Ok(pidfd)
}

/// Lets a logger finish the output it has (its pipes are closed once the process is gone),
/// then stops it as containerd does: SIGTERM, and SIGKILL if it lingers.
pub fn stop_logger(logger: &PidFd) {
    for signal in [0, libc::SIGTERM, libc::SIGKILL] {
        if signal != 0 {
            let _ = logger.send_signal(signal);
        }
        if logger.wait_exit(Some(EXIT_WAIT)).unwrap_or(true) {
            return;
        }
    }
}
