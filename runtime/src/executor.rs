//! The last step in the container before the workload runs.
//!
//! libcontainer's init is a copy of the runtime's own process, so it inherits Rust's ignored
//! `SIGPIPE` and whatever signal mask the caller had; runc and crun reset both. This executor
//! resets every disposition and the mask to the defaults, then execs as libcontainer's
//! default executor does.
//!
//! For `exec`, libcontainer drops the container's seccomp profile from the spec it builds for
//! the new process; the executor carries the container's profile and installs it here.
//!
//! Every workload gets [`crate::seccomp`]'s filter on top of the spec's profile, last.
//!
//! For `mxc run`, whose sandbox must not outlive it even when it is SIGKILLed, the init asks
//! for SIGKILL when its parent (the runner's main thread) dies. It asks here, after the last
//! credential change (which would clear the request); as pid 1 of the sandbox's pid namespace,
//! its death ends every process of the sandbox.

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

#[derive(Clone, Default)]
pub struct WorkloadExecutor {
    /// A seccomp profile to install just before exec (exec processes only).
    seccomp: Option<LinuxSeccomp>,
    /// SIGKILL the workload when the process that created it dies.
    die_with_parent: bool,
}

impl WorkloadExecutor {
    pub fn new() -> WorkloadExecutor {
        WorkloadExecutor::default()
    }

    pub fn with_seccomp(seccomp: Option<LinuxSeccomp>) -> WorkloadExecutor {
        WorkloadExecutor {
            seccomp,
            ..WorkloadExecutor::default()
        }
    }

    pub fn dying_with_parent(mut self, die: bool) -> WorkloadExecutor {
        self.die_with_parent = die;
        self
    }
}

/// The kernel's `struct sigaction` for `rt_sigaction(2)`: glibc's wrapper refuses signals 32
/// and 33 (its own), which a parent can still leave ignored (a Rust parent's `Command` does),
/// and an ignored disposition survives exec.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Restores the default disposition of every signal and empties the signal mask, with raw
/// system calls so that glibc's reserved signals are reset too.
pub fn reset_signals() {
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid kernel sigaction and the kernel's 8-byte sigset
        // size; errors (none expected) leave the disposition as it was.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
    let empty: u64 = 0;
    // SAFETY: rt_sigprocmask(SIG_SETMASK) with an empty 8-byte set.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}

impl Executor for WorkloadExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        reset_signals();
        if self.die_with_parent {
            // SAFETY: prctl with an integer argument.
            if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
                return Err(ExecutorError::Other(format!(
                    "setting the parent-death signal: {}",
                    std::io::Error::last_os_error()
                )));
            }
        }
        if let Some(seccomp) = &self.seccomp {
            libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|err| ExecutorError::Other(format!("installing seccomp: {err}")))?;
        }
        // SAFETY: prctl queries with no pointers.
        let no_new_privs = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) } == 1;
        if no_new_privs {
            crate::seccomp::install().map_err(|err| {
                ExecutorError::Other(format!(
                    "installing the set-id and new-syscall filter: {err}"
                ))
            })?;
        } else {
            // Only when the node's ceiling lets a spec turn noNewPrivileges off: a filter cannot
            // be installed without it, which the ceiling's documentation says.
            tracing::debug!("noNewPrivileges is off: no set-id filter");
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_line(name: &str) -> String {
        std::fs::read_to_string("/proc/thread-self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    }

    #[test]
    fn reset_clears_ignored_and_blocked_signals_including_glibc_reserved_ones() {
        // In a child, so that the test harness's own dispositions stay as they are.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ignore = KernelSigaction {
                    handler: libc::SIG_IGN,
                    flags: 0,
                    restorer: 0,
                    mask: 0,
                };
                for sig in [libc::SIGPIPE, 32, 33] {
                    unsafe {
                        libc::syscall(
                            libc::SYS_rt_sigaction,
                            sig,
                            &ignore as *const KernelSigaction,
                            std::ptr::null_mut::<KernelSigaction>(),
                            8usize,
                        )
                    };
                }
                let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
                unsafe {
                    libc::sigfillset(&mut set);
                    libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                }
                let before = status_line("SigIgn:");
                reset_signals();
                let ok = before != "SigIgn:\t0000000000000000"
                    && status_line("SigIgn:") == "SigIgn:\t0000000000000000"
                    && status_line("SigBlk:") == "SigBlk:\t0000000000000000";
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
