//! The container engine: one [`Engine`] per runtime root, one verb per file.
//!
//! Every entry point (`mxc-runtime`, `mxc run`, the shim) goes through these methods. The
//! engine drives libcontainer for what it does well (namespaces, mounts, the init process) and
//! keeps its own record (`crate::record`) for what it must know for sure: which process is the
//! container's init, and whether it still lives.

mod audit;
mod bundle_view;
mod cgroup;
mod create;
pub(crate) mod deadline;
mod delete;
mod dev;
mod events;
mod exec;
mod init_errors;
mod kill;
mod pause;
mod ps;
mod run;
mod start;
mod state;
mod update;
mod wait;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use create::{CreateOptions, Stdio};
pub use exec::{ExecOptions, ExecProcess};
pub use run::{Cancel, RunOptions, RunOutcome, RunReport};
pub use state::ContainerState;

use crate::error::EngineError;
use crate::policy::NodeContext;
use crate::process::{ExitStatus, InitProcess, PidFd};
use crate::record::{ContainerRecord, Layout};

/// The default runtime root of `mxc-runtime` (runc's is `/run/runc`).
pub const DEFAULT_ROOT: &str = "/run/mxc-runtime";

/// The container engine for one runtime root directory.
#[derive(Debug, Clone)]
pub struct Engine {
    layout: Layout,
    node: NodeContext,
    /// Containers run by [`Engine::run_to_completion`] die with this process.
    bound_to_caller: bool,
}

/// A container that this process created: its init process and a pidfd on it, opened while
/// the init was known to be ours.
#[derive(Debug)]
pub struct Container {
    id: String,
    init: InitProcess,
    pidfd: Option<PidFd>,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The init process's pid in the host's pid namespace.
    pub fn pid(&self) -> i32 {
        self.init.pid
    }

    /// Waits for the init process to exit and reaps it if it is this process's child.
    /// `Ok(None)` when another process (a subreaper) collected the status first.
    pub fn wait(&self) -> Result<Option<ExitStatus>, EngineError> {
        match &self.pidfd {
            Some(fd) => wait::wait_pidfd(&self.id, fd, None).map(|r| r.flatten()),
            None => Ok(None),
        }
    }

    /// A pidfd on the init process, opened while it was known to be this one.
    pub fn pidfd(&self) -> Option<&PidFd> {
        self.pidfd.as_ref()
    }
}

impl Engine {
    /// An engine keeping its state under `root` (created on first use). A relative root is
    /// resolved against the current directory now: libcontainer changes directory while it
    /// builds a container.
    pub fn new(root: impl Into<PathBuf>) -> Engine {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        Engine {
            layout: Layout::new(root),
            node: NodeContext::default(),
            bound_to_caller: false,
        }
    }

    /// The node facts that policy resolution needs (`--config`, `--policy`).
    pub fn with_node_context(mut self, node: NodeContext) -> Engine {
        self.node = node;
        self
    }

    /// Containers that [`Engine::run_to_completion`] runs are SIGKILLed if this process dies
    /// (`mxc run`), as by SIGKILL, which leaves it no chance to clean up. Without this, as
    /// under runc, a container outlives the process that ran it.
    pub fn bound_to_caller(mut self) -> Engine {
        self.bound_to_caller = true;
        self
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Loads the engine's record of a container.
    pub(crate) fn load_record(&self, id: &str) -> Result<ContainerRecord, EngineError> {
        validate_id(id)?;
        let path = self.layout.record_path(id);
        match ContainerRecord::load(&path) {
            Ok(record) => Ok(record),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(EngineError::NotFound { id: id.to_string() })
            }
            Err(err) => Err(EngineError::CorruptRecord {
                id: id.to_string(),
                path,
                reason: err.to_string(),
            }),
        }
    }

    pub(crate) fn save_record(&self, record: &ContainerRecord) -> Result<(), EngineError> {
        let path = self.layout.record_path(&record.id);
        record
            .save(&path)
            .map_err(|e| EngineError::io(format!("writing {}", path.display()), e))
    }

    /// libcontainer's view of the container, for the calls that go through it.
    pub(crate) fn libcontainer(
        &self,
        id: &str,
    ) -> Result<libcontainer::container::Container, EngineError> {
        let dir = self.layout.container_dir(id);
        if !dir.exists() {
            return Err(EngineError::NotFound { id: id.to_string() });
        }
        libcontainer::container::Container::load(dir)
            .map_err(|e| EngineError::libcontainer(id, "loading state", &e))
    }

    /// Serialises mutating operations on one container across processes (an engine calling
    /// `kill` while another `delete`s): an exclusive `flock` on the container's engine
    /// directory, held until the guard drops.
    pub(crate) fn lock(&self, id: &str) -> Result<Lock, EngineError> {
        let dir = self.layout.engine_dir(id);
        let file = match File::open(&dir) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(EngineError::NotFound { id: id.to_string() })
            }
            Err(err) => return Err(EngineError::io(format!("opening {}", dir.display()), err)),
        };
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(EngineError::io(
                format!("locking {}", dir.display()),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Lock { _file: file.into() })
    }
}

/// Held while a container is being changed; released on drop (closing the descriptor).
pub(crate) struct Lock {
    _file: OwnedFd,
}

/// Container ids as runc and libcontainer accept them: letters, digits, `_ + - .`, not `.` or
/// `..`. Checked before an id becomes part of a path.
pub fn validate_id(id: &str) -> Result<(), EngineError> {
    let invalid = |reason: &str| EngineError::InvalidId {
        id: id.to_string(),
        reason: reason.to_string(),
    };
    if id.is_empty() {
        return Err(invalid("it is empty"));
    }
    if id == "." || id == ".." {
        return Err(invalid("it is a path component"));
    }
    if id.len() > 1024 {
        return Err(invalid("it is longer than 1024 characters"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
    {
        return Err(invalid(&format!(
            "{c:?} is not allowed (use letters, digits, '_', '+', '-', '.')"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-123", "x_y+z.w", "..."] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", ":mxc", "é"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_container_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(dir.path());
        let err = engine.load_record("nope").unwrap_err();
        assert!(matches!(err, EngineError::NotFound { .. }));
        assert_eq!(err.to_string(), "container nope does not exist");
        assert!(matches!(
            engine.state("nope"),
            Err(EngineError::NotFound { .. })
        ));
    }
}
