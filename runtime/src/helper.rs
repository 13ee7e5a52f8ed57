//! The engine's helper processes: work that must outlive the process that set a container up
//! (`mxc-runtime create` exits at once) runs in a process of its own, started by executing the
//! running binary again (`/proc/self/exe`, which is `mxc`, `mxc-runtime` or the shim) with a
//! marker argument and a JSON description of the work.
//!
//! Every binary that embeds the engine calls [`run_if_requested`] first in `main`: when the
//! process was started as a helper, it does the work and exits; otherwise it returns and the
//! binary goes on with its own command line.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The first argument of a helper process. No command line of an entry point uses it.
const MARKER: &str = "mxc-engine-helper";

/// What a helper process does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl Helper {
    /// `/proc/self/exe` started as this helper.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new("/proc/self/exe");
        command.arg(MARKER).arg(self.to_argument());
        command
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
