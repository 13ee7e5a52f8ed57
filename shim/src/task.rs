//! containerd's task API (v2), one method per request: decode, find the container, call it,
//! encode. What a container does is in `container.rs` (and `exec.rs` for exec processes).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use containerd_shim_protos::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::ttrpc::{self, TtrpcContext};
use containerd_shim_protos::types::task::ProcessInfo;
use containerd_shim_protos::Task;

use crate::container::{Container, CreateSpec, ShimContext};
use crate::error::TaskError;
use crate::events::timestamp;
use crate::io::StdioPaths;
use crate::zygote::Deadline;

/// Set when the shim should exit (Shutdown with no container left). The main thread sleeps in
/// [`crate::footprint::Idle`] and is woken by [`ExitSignal::signal`].
#[derive(Default)]
pub struct ExitSignal {
    done: AtomicBool,
}

impl ExitSignal {
    pub fn signal(&self) {
        self.done.store(true, Ordering::SeqCst);
        crate::footprint::touch();
    }

    pub fn is_set(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

pub struct TaskService {
    context: Arc<ShimContext>,
    tasks: Mutex<Tasks>,
    exit: Arc<ExitSignal>,
}

/// The shim's containers, and the ids whose Create is under way.
#[derive(Default)]
struct Tasks {
    containers: HashMap<String, Arc<Container>>,
    /// Reserved by a Create until it ends: a second Create of the id is refused meanwhile.
    creating: HashSet<String>,
    /// Shutdown came while a Create was under way: the shim exits once that Create has failed
    /// and no container is left.
    shutdown: bool,
}

impl TaskService {
    pub fn new(context: Arc<ShimContext>, exit: Arc<ExitSignal>) -> TaskService {
        TaskService {
            context,
            tasks: Mutex::new(Tasks::default()),
            exit,
        }
    }

    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn container(&self, id: &str) -> Result<Arc<Container>, TaskError> {
        self.tasks()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(format!("container {id} does not exist")))
    }

    fn create_task(
        &self,
        req: CreateTaskRequest,
        deadline: Deadline,
    ) -> Result<CreateTaskResponse, TaskError> {
        if !req.checkpoint.is_empty() || !req.parent_checkpoint.is_empty() {
            return Err(TaskError::Unimplemented(
                "checkpoint and restore are not supported by containerd-shim-mxc-v1".into(),
            ));
        }
        let options = crate::options::decode(req.options.as_ref())
            .map_err(|e| TaskError::InvalidArgument(e.to_string()))?;
        {
            let mut tasks = self.tasks();
            if tasks.containers.contains_key(&req.id) || !tasks.creating.insert(req.id.clone()) {
                return Err(TaskError::AlreadyExists(format!(
                    "container {} already exists",
                    req.id
                )));
            }
        }
        let spec = CreateSpec {
            id: req.id.clone(),
            bundle: PathBuf::from(&req.bundle),
            rootfs: req.rootfs.clone(),
            stdio: StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            config_path: options.config_path,
        };
        let created = Container::create(&self.context, spec, deadline);
        let mut tasks = self.tasks();
        tasks.creating.remove(&req.id);
        match created {
            Ok(container) => {
                let pid = container.init_pid();
                tasks.containers.insert(req.id.clone(), container);
                Ok(CreateTaskResponse {
                    pid: pid as u32,
                    ..Default::default()
                })
            }
            Err(err) => {
                if tasks.shutdown && tasks.containers.is_empty() && tasks.creating.is_empty() {
                    tracing::info!("shutting down: the last create failed");
                    self.exit.signal();
                }
                Err(err)
            }
        }
    }

    fn start_process(
        &self,
        req: StartRequest,
        deadline: Deadline,
    ) -> Result<StartResponse, TaskError> {
        let pid = self.container(&req.id)?.start(&req.exec_id, deadline)?;
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn delete_process(
        &self,
        req: DeleteRequest,
        deadline: Deadline,
    ) -> Result<DeleteResponse, TaskError> {
        let container = self.container(&req.id)?;
        let mut response = DeleteResponse::new();
        if req.exec_id.is_empty() {
            let (pid, exit) = container.delete(deadline)?;
            self.tasks().containers.remove(&req.id);
            response.pid = pid as u32;
            response.exit_status = exit.status;
            response.exited_at = Some(timestamp(exit.at)).into();
        } else {
            let (pid, exit) = container.delete_exec(&req.exec_id)?;
            response.pid = pid.max(0) as u32;
            if let Some(exit) = exit {
                response.exit_status = exit.status;
                response.exited_at = Some(timestamp(exit.at)).into();
            }
        }
        Ok(response)
    }

    fn exec_process(&self, req: ExecProcessRequest) -> Result<(), TaskError> {
        let container = self.container(&req.id)?;
        let spec = req.spec.as_ref().ok_or_else(|| {
            TaskError::InvalidArgument("exec request without a process spec".into())
        })?;
        let mut process: serde_json::Value = serde_json::from_slice(&spec.value)
            .map_err(|e| TaskError::InvalidArgument(format!("exec process spec: {e}")))?;
        if !process.is_object() {
            return Err(TaskError::InvalidArgument(
                "exec process spec is not a JSON object".into(),
            ));
        }
        process["terminal"] = serde_json::Value::Bool(req.terminal);
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        container.add_exec(&req.exec_id, stdio, process)
    }

    fn process_state(&self, req: &StateRequest) -> Result<StateResponse, TaskError> {
        let container = self.container(&req.id)?;
        let inner = container.lock();
        let bundle = container.bundle.to_string_lossy();
        Ok(inner.process(&req.exec_id)?.state(&container.id, &bundle))
    }

    fn wait_process(&self, req: &WaitRequest) -> Result<WaitResponse, TaskError> {
        let exit = self.container(&req.id)?.wait(&req.exec_id)?;
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    fn shutdown_shim(&self, req: &ShutdownRequest) {
        let mut tasks = self.tasks();
        let remaining = tasks.containers.len() + tasks.creating.len();
        if remaining == 0 || req.now {
            tracing::info!("shutting down");
            self.exit.signal();
        } else {
            tasks.shutdown = !tasks.creating.is_empty();
            tracing::debug!(remaining, "shutdown requested; containers remain");
        }
    }
}

type TtrpcResult<T> = ttrpc::Result<T>;

/// Logs a request's failure (with the container's id) and hands it to ttrpc.
fn reply<T>(operation: &str, result: Result<T, TaskError>) -> TtrpcResult<T> {
    crate::footprint::touch();
    result.map_err(|err| {
        match &err {
            TaskError::NotFound(_) | TaskError::FailedPrecondition(_) => {
                tracing::debug!(operation, error = %err, "request refused")
            }
            _ => tracing::error!(operation, error = %err, "request failed"),
        }
        err.into()
    })
}

/// Packs `message` as an `Any` of type `type_url` (named here rather than looked up through
/// protobuf's reflection, which an idle shim would keep resident; see `events.rs`).
fn to_any(type_url: &str, message: &impl Message) -> Result<Any, TaskError> {
    let value = message
        .write_to_bytes()
        .map_err(|e| TaskError::Failed(e.to_string()))?;
    Ok(crate::events::pack(type_url, value))
}

/// What `ctr task metrics` and the CRI decode statistics as.
const METRICS_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";
/// What `ctr task ps` decodes process details as.
const PROCESS_DETAILS_TYPE_URL: &str = "containerd.runc.v1.ProcessDetails";

impl Task for TaskService {
    fn create(
        &self,
        ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let span = tracing::info_span!("create", id = %req.id);
        let _entered = span.enter();
        let deadline = Deadline::of_request(ctx.timeout_nano);
        reply("create", self.create_task(req, deadline))
    }

    fn start(&self, ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let span = tracing::info_span!("start", id = %req.id);
        let _entered = span.enter();
        let deadline = Deadline::of_request(ctx.timeout_nano);
        reply("start", self.start_process(req, deadline))
    }

    fn delete(&self, ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let span = tracing::info_span!("delete", id = %req.id);
        let _entered = span.enter();
        let deadline = Deadline::of_request(ctx.timeout_nano);
        reply("delete", self.delete_process(req, deadline))
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let span = tracing::info_span!("pids", id = %req.id);
        let _entered = span.enter();
        let result = (|| {
            let pids = self.container(&req.id)?.pids()?;
            let mut response = PidsResponse::new();
            for (pid, exec_id) in pids {
                let mut info = ProcessInfo::new();
                info.pid = pid as u32;
                if let Some(exec_id) = exec_id {
                    let details = ProcessDetails {
                        exec_id,
                        ..Default::default()
                    };
                    info.info = Some(to_any(PROCESS_DETAILS_TYPE_URL, &details)?).into();
                }
                response.processes.push(info);
            }
            Ok(response)
        })();
        reply("pids", result)
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        let span = tracing::info_span!("pause", id = %req.id);
        let _entered = span.enter();
        let result = self.container(&req.id).and_then(|c| c.pause());
        reply("pause", result).map(|()| Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        let span = tracing::info_span!("resume", id = %req.id);
        let _entered = span.enter();
        let result = self.container(&req.id).and_then(|c| c.resume());
        reply("resume", result).map(|()| Empty::new())
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        let span = tracing::info_span!("checkpoint", id = %req.id);
        let _entered = span.enter();
        reply(
            "checkpoint",
            Err(TaskError::Unimplemented(
                "checkpoint is not supported by containerd-shim-mxc-v1".into(),
            )),
        )
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let span = tracing::info_span!("kill", id = %req.id);
        let _entered = span.enter();
        let result = self
            .container(&req.id)
            .and_then(|c| c.kill(&req.exec_id, req.signal, req.all));
        reply("kill", result).map(|()| Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let span = tracing::info_span!("exec", id = %req.id);
        let _entered = span.enter();
        reply("exec", self.exec_process(req)).map(|()| Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        let span = tracing::info_span!("resize_pty", id = %req.id);
        let _entered = span.enter();
        let result = (|| {
            let container = self.container(&req.id)?;
            let inner = container.lock();
            inner
                .process(&req.exec_id)?
                .io
                .resize(req.width, req.height)
                .map_err(|e| TaskError::FailedPrecondition(e.to_string()))
        })();
        reply("resize_pty", result).map(|()| Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        let span = tracing::info_span!("close_io", id = %req.id);
        let _entered = span.enter();
        let result = (|| {
            let container = self.container(&req.id)?;
            let inner = container.lock();
            let process = inner.process(&req.exec_id)?;
            if req.stdin {
                process.io.close_stdin();
            }
            Ok(())
        })();
        reply("close_io", result).map(|()| Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let span = tracing::info_span!("update", id = %req.id);
        let _entered = span.enter();
        let result = (|| {
            let container = self.container(&req.id)?;
            let data = req
                .resources
                .as_ref()
                .map(|r| r.value.as_slice())
                .unwrap_or(b"{}");
            container.update(data)
        })();
        reply("update", result).map(|()| Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let span = tracing::info_span!("wait", id = %req.id);
        let _entered = span.enter();
        reply("wait", self.wait_process(&req))
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let span = tracing::info_span!("stats", id = %req.id);
        let _entered = span.enter();
        let result = (|| {
            let stats = self.container(&req.id)?.stats()?;
            let metrics = crate::stats::metrics(&stats);
            let mut response = StatsResponse::new();
            response.stats = Some(to_any(METRICS_TYPE_URL, &metrics)?).into();
            Ok(response)
        })();
        reply("stats", result)
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        reply("state", self.process_state(&req))
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = self.container(&req.id).map(|c| c.init_pid()).unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: task_pid.max(0) as u32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        self.shutdown_shim(&req);
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests;
