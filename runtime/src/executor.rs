//! The last step in the container before the workload runs.
//!
//! libcontainer's init is a copy of the runtime's own process, so it inherits Rust's ignored
//! `SIGPIPE` and whatever signal mask the caller had; runc and crun reset both. This executor
//! resets every disposition and the mask to the defaults, then execs as libcontainer's
//! default executor does.
//!
//! For `exec`, libcontainer drops the container's seccomp profile from the spec it builds for
//! the new process; the executor carries the container's profile and installs it here.

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

#[derive(Clone, Default)]
pub struct WorkloadExecutor {
    /// A seccomp profile to install just before exec (exec processes only).
    seccomp: Option<LinuxSeccomp>,
}

impl WorkloadExecutor {
    pub fn new() -> WorkloadExecutor {
        WorkloadExecutor::default()
    }

    pub fn with_seccomp(seccomp: Option<LinuxSeccomp>) -> WorkloadExecutor {
        WorkloadExecutor { seccomp }
    }
}

/// Restores default dispositions for every signal that has one to restore and empties the
/// signal mask of the calling thread.
pub fn reset_signals() {
    // SAFETY: plain sigaction/sigprocmask calls with initialised structures; SIGKILL and
    // SIGSTOP cannot be changed and return EINVAL, which is ignored, as are glibc's
    // reserved real-time signals.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

impl Executor for WorkloadExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        reset_signals();
        if let Some(seccomp) = &self.seccomp {
            libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|err| ExecutorError::Other(format!("installing seccomp: {err}")))?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
