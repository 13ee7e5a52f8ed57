//! What the shim asks of the container engine, as one trait: the task service speaks
//! containerd's protocol and keeps each process's phase; an [`Engine`] does the work. The
//! shim's engine is [`MxcEngine`]: the mxc-runtime engine, with the operations that clone
//! processes or change the calling process (create, start, exec, delete, loggers) run in a
//! zygote worker (`zygote.rs`), and the others (signals, pause, statistics, limits) done in
//! the shim itself. Unit tests of the task service use a fake (`engine/fake.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use mxc_runtime::audit::Event;
use mxc_runtime::policy::NodeContext;
use mxc_runtime::RuncStats;
use mxc_runtime::{EngineError, Signal};

use crate::error::{failed, TaskError};
use crate::mount::MountSpec;
use crate::zygote::{Call, Deadline, Op, Passed, Reply, Zygote, ZygoteError, CALL_LIMIT};

#[cfg(test)]
pub mod fake;

/// The container an engine operation is about.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    /// The bundle directory: `config.json`, and `rootfs` where the root filesystem is mounted.
    pub bundle: PathBuf,
    /// The engine's state root.
    pub root: PathBuf,
    /// The node configuration (containerd's `ConfigPath` runtime option), if named.
    pub config_path: Option<PathBuf>,
}

/// What Create asks besides the bundle: the root filesystem mounts, and the console socket
/// when the init has a terminal.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub rootfs: Vec<MountSpec>,
    pub console_socket: Option<PathBuf>,
}

/// A container the engine created; its init waits for Start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    pub pid: i32,
    /// The policy's `process.timeout`.
    pub timeout: Option<Duration>,
    /// The container has no pid namespace of its own: its other processes outlive its init.
    pub shares_pid_namespace: bool,
}

/// An exec process to run: its OCI process spec, and the console socket for a terminal.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub process: serde_json::Value,
    pub console_socket: Option<PathBuf>,
}

/// A `binary://` logging program for container `id`.
#[derive(Debug, Clone)]
pub struct LoggerRequest {
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Everything the task service needs done to containers. Descriptors in [`Passed`] become the
/// new process's stdin, stdout and stderr (a logger's fds 3, 4 and 5). The operations that
/// clone processes end by their [`Deadline`], failing if they could not finish by then.
pub trait Engine: Send + Sync {
    /// Mounts the root filesystem and creates the container; if that fails part way, nothing
    /// of it is left.
    fn create(
        &self,
        target: &Target,
        request: CreateRequest,
        stdio: Passed,
        deadline: Deadline,
    ) -> Result<Created, TaskError>;
    /// Lets the init run the workload.
    fn start(&self, target: &Target, deadline: Deadline) -> Result<(), TaskError>;
    /// Starts a process in the running container; returns its pid.
    fn exec(
        &self,
        target: &Target,
        request: ExecRequest,
        stdio: Passed,
        deadline: Deadline,
    ) -> Result<i32, TaskError>;
    /// Removes the container, killing what is left of it, and unmounts its root filesystem.
    fn delete(&self, target: &Target, deadline: Deadline) -> Result<(), TaskError>;
    /// Signals the init, or every process of the container with `all`. An init that is gone
    /// is "not found".
    fn kill(&self, target: &Target, signal: Signal, all: bool) -> Result<(), TaskError>;
    fn pause(&self, target: &Target) -> Result<(), TaskError>;
    fn resume(&self, target: &Target) -> Result<(), TaskError>;
    /// The pids of the container's processes.
    fn pids(&self, target: &Target) -> Result<Vec<i32>, TaskError>;
    fn stats(&self, target: &Target) -> Result<RuncStats, TaskError>;
    /// New resource limits: the JSON of an OCI `LinuxResources`.
    fn update(&self, target: &Target, resources: &[u8]) -> Result<(), TaskError>;
    /// Starts a logging program; returns its pid.
    fn spawn_logger(
        &self,
        request: LoggerRequest,
        fds: Passed,
        deadline: Deadline,
    ) -> Result<i32, TaskError>;
    /// Records what the shim saw happen to the container (its init's exit, its timeout) in
    /// the audit log its policy names. Never fails the task: lost records are the engine's to
    /// count and report.
    fn audit(&self, target: &Target, event: &Event);
}

/// The mxc-runtime engine, cloning processes only in zygote workers.
pub struct MxcEngine {
    zygote: Zygote,
}

impl MxcEngine {
    pub fn new(zygote: Zygote) -> MxcEngine {
        MxcEngine { zygote }
    }

    fn engine(target: &Target) -> mxc_runtime::Engine {
        mxc_runtime::Engine::new(&target.root).with_node_context(NodeContext {
            config_path: target.config_path.clone(),
            ..NodeContext::default()
        })
    }

    /// Runs `op` for `target` in a zygote worker.
    fn call(
        &self,
        target: &Target,
        op: Op,
        passed: Passed,
        deadline: Deadline,
    ) -> Result<Reply, ZygoteError> {
        let call = Call {
            root: target.root.clone(),
            config_path: target.config_path.clone(),
            id: target.id.clone(),
            op,
            fds: Vec::new(),
        };
        self.zygote.call(call, passed, deadline)
    }
}

/// A worker's answer that is not `expected`, as an error.
fn unexpected(reply: Reply) -> TaskError {
    match reply {
        Reply::Failed(message) => TaskError::Failed(message),
        other => failed(format!("unexpected answer from the zygote: {other:?}")),
    }
}

/// The annotation on the effective spec that carries the policy's `process.timeout`.
const TIMEOUT_ANNOTATION: &str = "io.mxc.timeout-ms";

impl Engine for MxcEngine {
    fn create(
        &self,
        target: &Target,
        request: CreateRequest,
        stdio: Passed,
        deadline: Deadline,
    ) -> Result<Created, TaskError> {
        let shares_pid_namespace = shares_pid_namespace(&target.bundle);
        let op = Op::Create {
            bundle: target.bundle.clone(),
            rootfs: request.rootfs,
            console_socket: request.console_socket,
        };
        let pid = match self.call(target, op, stdio, deadline) {
            Ok(Reply::Pid(pid)) => pid,
            Ok(other) => return Err(unexpected(other)),
            Err(err) => {
                // The worker was killed (or died) part way: remove what it made.
                if let Err(cleanup) = self.delete(target, Deadline::after(CALL_LIMIT)) {
                    tracing::warn!(error = %cleanup, "removing what a failed create left");
                }
                return Err(failed(err));
            }
        };
        let timeout = Self::engine(target)
            .state(&target.id)
            .ok()
            .and_then(|state| {
                state
                    .annotations
                    .get(TIMEOUT_ANNOTATION)
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .map(Duration::from_millis)
            });
        Ok(Created {
            pid,
            timeout,
            shares_pid_namespace,
        })
    }

    fn start(&self, target: &Target, deadline: Deadline) -> Result<(), TaskError> {
        match self.call(target, Op::Start, Passed::default(), deadline) {
            Ok(Reply::Done) => Ok(()),
            Ok(other) => Err(unexpected(other)),
            Err(err) => Err(failed(err)),
        }
    }

    fn exec(
        &self,
        target: &Target,
        request: ExecRequest,
        stdio: Passed,
        deadline: Deadline,
    ) -> Result<i32, TaskError> {
        let op = Op::Exec {
            process: request.process,
            console_socket: request.console_socket,
        };
        match self.call(target, op, stdio, deadline) {
            Ok(Reply::Pid(pid)) => Ok(pid),
            Ok(other) => Err(unexpected(other)),
            Err(err) => Err(failed(err)),
        }
    }

    fn delete(&self, target: &Target, deadline: Deadline) -> Result<(), TaskError> {
        let op = Op::Delete {
            rootfs: Some(target.bundle.join("rootfs")),
        };
        match self.call(target, op, Passed::default(), deadline) {
            Ok(Reply::Done) => Ok(()),
            Ok(other) => Err(unexpected(other)),
            Err(err) => Err(failed(err)),
        }
    }

    fn kill(&self, target: &Target, signal: Signal, all: bool) -> Result<(), TaskError> {
        match Self::engine(target).kill(&target.id, signal, all) {
            Ok(()) => Ok(()),
            Err(EngineError::WrongStatus { .. }) => {
                Err(TaskError::NotFound("process already finished".into()))
            }
            Err(err) => Err(err.into()),
        }
    }

    fn pause(&self, target: &Target) -> Result<(), TaskError> {
        Ok(Self::engine(target).pause(&target.id)?)
    }

    fn resume(&self, target: &Target) -> Result<(), TaskError> {
        Ok(Self::engine(target).resume(&target.id)?)
    }

    fn pids(&self, target: &Target) -> Result<Vec<i32>, TaskError> {
        Ok(Self::engine(target).pids(&target.id)?)
    }

    fn stats(&self, target: &Target) -> Result<RuncStats, TaskError> {
        Ok(Self::engine(target).stats(&target.id)?)
    }

    fn update(&self, target: &Target, resources: &[u8]) -> Result<(), TaskError> {
        let resources = serde_json::from_slice(resources)
            .map_err(|e| TaskError::InvalidArgument(format!("resources: {e}")))?;
        Ok(Self::engine(target).update(&target.id, &resources)?)
    }

    fn spawn_logger(
        &self,
        request: LoggerRequest,
        fds: Passed,
        deadline: Deadline,
    ) -> Result<i32, TaskError> {
        let call = Call {
            root: PathBuf::new(),
            config_path: None,
            id: String::new(),
            op: Op::SpawnLogger {
                path: request.path,
                args: request.args,
                env: request.env,
            },
            fds: Vec::new(),
        };
        match self.zygote.call(call, fds, deadline).map_err(failed)? {
            Reply::Pid(pid) => Ok(pid),
            Reply::Failed(message) => Err(TaskError::InvalidArgument(message)),
            other => Err(unexpected(other)),
        }
    }

    fn audit(&self, target: &Target, event: &Event) {
        Self::engine(target).audit(&target.id, event);
    }
}

/// Whether the bundle's spec leaves the container in another pid namespace (the host's, or
/// one it joins by path).
fn shares_pid_namespace(bundle: &Path) -> bool {
    let Ok(bytes) = std::fs::read(bundle.join("config.json")) else {
        return false;
    };
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    let namespaces = spec
        .pointer("/linux/namespaces")
        .and_then(|n| n.as_array())
        .cloned()
        .unwrap_or_default();
    !namespaces.iter().any(|ns| {
        ns["type"] == "pid"
            && ns
                .get("path")
                .and_then(|p| p.as_str())
                .unwrap_or("")
                .is_empty()
    })
}
