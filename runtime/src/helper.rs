//! The engine's helper processes: work that must outlive the process that set a container up
//! (`mxc-runtime create` exits at once) runs in a process of its own, started by executing the
//! running binary again (`/proc/self/exe`, which is `mxc`, `mxc-runtime` or the shim) with a
//! marker argument and a JSON description of the work.
//!
//! Every binary that embeds the engine calls [`run_if_requested`] first in `main`: when the
//! process was started as a helper, it does the work and exits; otherwise it returns and the
//! binary goes on with its own command line. A binary that a container could reach through
//! `/proc/<pid>/exe` (`mxc-runtime`, the shim) then re-executes itself from a read-only view of
//! its binary ([`exec_path`], [`running_sealed`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::network::NetworkError;
use crate::process::InitProcess;

pub use crate::seal::{exec_path, running_sealed};

/// The first argument of a helper process. No command line of an entry point uses it.
const MARKER: &str = "mxc-engine-helper";

/// What a helper process does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Helper {
    /// Record a container's denied packets until its init process exits.
    AuditListen {
        /// The container's init process (its network namespace is the one to listen in).
        pid: i32,
        container_id: String,
        policy_sha256: Option<String>,
        log: PathBuf,
        /// The NFLOG group the container's rules log to.
        group: u16,
        /// Where to report records that could not be written.
        report: Option<PathBuf>,
    },
    /// Kill a container when its policy's timeout passes, unless its init exits first.
    Deadline {
        /// The engine's state root.
        root: PathBuf,
        container_id: String,
        /// The container's init process.
        pid: i32,
        start_time: u64,
        timeout_ms: u64,
    },
    /// Serve a container's egress proxy and resolver until its init process exits.
    EgressProxy(crate::egress::detached::ProxyHelper),
}

impl Helper {
    /// `/proc/self/exe` started as this helper.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new("/proc/self/exe");
        command.arg(MARKER).arg(self.to_argument());
        command
    }

    /// Starts this helper detached from the caller (a session of its own, default signal
    /// dispositions, an empty mask) and waits until it says `ready` on its stdout; `what`
    /// names it in errors.
    pub(crate) fn spawn(&self, what: &str) -> std::io::Result<InitProcess> {
        self.start()?.ready(what)
    }

    /// Starts this helper detached from the caller without waiting for it: it sets itself up
    /// while the caller goes on, and [`Starting::ready`] waits for it afterwards.
    pub(crate) fn start(&self) -> std::io::Result<Starting> {
        use std::os::unix::process::CommandExt;
        let mut command = self.command();
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // SAFETY: only raw signal calls and setsid between fork and exec. The signals a caller
        // forwards are blocked in its threads, and a blocked mask survives exec.
        unsafe {
            command.pre_exec(|| {
                crate::executor::reset_signals();
                libc::setsid();
                Ok(())
            });
        }
        Ok(Starting {
            child: Some(command.spawn()?),
        })
    }

    fn to_argument(&self) -> String {
        serde_json::to_string(self).expect("a helper description always serialises")
    }

    fn from_arguments(args: &[OsString]) -> Option<Result<Helper, String>> {
        if args.get(1)?.to_str()? != MARKER {
            return None;
        }
        let Some(description) = args.get(2).and_then(|a| a.to_str()) else {
            return Some(Err("missing the helper's description".into()));
        };
        Some(serde_json::from_str(description).map_err(|e| e.to_string()))
    }

    fn run(self) -> Result<(), String> {
        match self {
            Helper::AuditListen {
                pid,
                container_id,
                policy_sha256,
                log,
                group,
                report,
            } => {
                let audit = crate::audit::ContainerAudit {
                    log: crate::audit::AuditLog::open(&log).map_err(|e| e.to_string())?,
                    container_id,
                    policy_sha256,
                };
                crate::audit::nflog::run_detached(pid, audit, group, report.as_deref())
                    .map_err(|e| e.to_string())
            }
            Helper::Deadline {
                root,
                container_id,
                pid,
                start_time,
                timeout_ms,
            } => crate::container::deadline::keep(
                root,
                &container_id,
                crate::process::InitProcess { pid, start_time },
                std::time::Duration::from_millis(timeout_ms),
            ),
            Helper::EgressProxy(proxy) => {
                crate::egress::detached::run(proxy).map_err(|e| e.to_string())
            }
        }
    }
}

/// A detached helper that has not said it is ready yet; dropped before then, it is killed.
#[derive(Debug)]
pub(crate) struct Starting {
    child: Option<std::process::Child>,
}

impl Starting {
    /// Waits until the helper says it is ready, and returns the process a container's record
    /// keeps (delete stops it); `what` names it in errors.
    pub(crate) fn ready(mut self, what: &str) -> std::io::Result<InitProcess> {
        use std::io::BufRead;
        let Some(mut child) = self.child.take() else {
            return Err(std::io::Error::other(format!(
                "{what} was already waited for"
            )));
        };
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        }
        let process = InitProcess::capture(child.id() as i32);
        match (line.trim() == "ready", process) {
            (true, Some(process)) => Ok(process),
            _ => {
                let _ = child.kill();
                let mut why = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut why);
                }
                let _ = child.wait();
                Err(std::io::Error::other(format!(
                    "{what} did not start: {} {}",
                    line.trim(),
                    why.trim()
                )))
            }
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A helper's watch on the container it serves: its init process, through a pidfd opened
/// before the helper says it is ready. SIGTERM (a delete stopping helpers) is ignored from then
/// on: the helper leaves by itself once the container's init is gone, after finishing its work
/// (the denial log drains its queue, the egress proxy takes its routes out).
pub(crate) struct InitWatch(std::os::fd::OwnedFd);

impl InitWatch {
    pub(crate) fn open(pid: i32) -> Result<InitWatch, NetworkError> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open on a pid we were given; ownership passes to OwnedFd.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        if raw < 0 {
            return Err(NetworkError::io(
                "watching the container",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: setting a signal disposition.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        // SAFETY: a fresh descriptor.
        Ok(InitWatch(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) }))
    }

    /// Says `ready` on stdout (what [`Helper::spawn`] waits for).
    pub(crate) fn ready(&self) {
        use std::io::Write;
        println!("ready");
        let _ = std::io::stdout().flush();
    }

    /// Returns once the init process has exited.
    pub(crate) fn wait(&self) {
        use std::os::fd::AsRawFd;
        let mut fds = [libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        loop {
            // SAFETY: polling one descriptor we own.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, -1) };
            if rc > 0
                || (rc < 0
                    && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted)
            {
                return;
            }
        }
    }
}

/// Runs the helper this process was started as, then exits; returns at once when it was not
/// started as one. Call it first in `main`.
pub fn run_if_requested() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let Some(helper) = Helper::from_arguments(&args) else {
        return;
    };
    let result = helper.and_then(Helper::run);
    match result {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            eprintln!("{MARKER}: {error}");
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_round_trips_through_its_command_line() {
        let helper = Helper::AuditListen {
            pid: 42,
            container_id: "c1".into(),
            policy_sha256: Some("ab".into()),
            log: PathBuf::from("/var/log/mxc/audit.jsonl"),
            group: 7,
            report: Some(PathBuf::from("/run/mxc-runtime/c1/audit-failures")),
        };
        let command = helper.command();
        let mut args: Vec<OsString> = vec![command.get_program().into()];
        args.extend(command.get_args().map(OsString::from));
        assert_eq!(Helper::from_arguments(&args), Some(Ok(helper)));
    }

    #[test]
    fn other_command_lines_are_not_helpers() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            Helper::from_arguments(&args(&["mxc-runtime", "state", "c1"])),
            None
        );
        assert_eq!(Helper::from_arguments(&args(&["mxc"])), None);
        assert!(matches!(
            Helper::from_arguments(&args(&["x", MARKER, "{}"])),
            Some(Err(_))
        ));
    }
}
