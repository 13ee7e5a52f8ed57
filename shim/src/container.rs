//! One container of the shim: its init process, its exec processes (`exec.rs`), and the
//! requests that move them through their phases (`phase.rs`). The work is the engine's
//! (`engine.rs`); exits come from the reaper.
//!
//! Events of a container are published while its lock is held, so containerd sees them in
//! the order they happened: create before start before exit, exec-started before that
//! process's exit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExit, TaskIO, TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim_protos::types::mount::Mount;
use mxc_runtime::audit::Event;
use mxc_runtime::Signal;

use crate::engine::{CreateRequest, Created, Engine, Target};
use crate::error::{failed, TaskError};
use crate::events::{timestamp, Publisher};
use crate::io::StdioPaths;
use crate::logger::{close_streams, open_streams, stop_logger, EXIT_WAIT};
use crate::mount::MountSpec;
use crate::oom::OomMonitor;
use crate::phase::Phase;
use crate::processes::Process;
use crate::reaper::{Exit, Reaper};
use crate::zygote::{Deadline, CALL_LIMIT};

/// How long an exit waits for the process's output to be copied out before it is published.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// What every container of the shim shares.
pub struct ShimContext {
    pub namespace: String,
    pub engine: Arc<dyn Engine>,
    pub reaper: Arc<Reaper>,
    pub publisher: Publisher,
    pub oom: OnceLock<Option<Arc<OomMonitor>>>,
}

impl ShimContext {
    /// The OOM monitor, started on first use.
    pub fn oom_monitor(&self) -> Option<Arc<OomMonitor>> {
        self.oom
            .get_or_init(|| match OomMonitor::start() {
                Ok(monitor) => Some(monitor),
                Err(err) => {
                    tracing::warn!(error = %err, "no OOM notifications: cannot start the monitor");
                    None
                }
            })
            .clone()
    }
}

/// What Create needs, decoded from the request.
pub struct CreateSpec {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<Mount>,
    pub stdio: StdioPaths,
    pub config_path: Option<PathBuf>,
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub(crate) target: Target,
    /// Whether the container has no pid namespace of its own: then its other processes
    /// outlive the init and are killed when it exits, as containerd's runc shim does.
    shares_pid_namespace: bool,
    /// The policy's `process.timeout`.
    timeout: Option<Duration>,
    context: Weak<ShimContext>,
    inner: Mutex<Inner>,
    /// Signalled on every exit and on delete.
    pub(crate) changed: Condvar,
}

pub struct Inner {
    pub init: Process,
    pub execs: HashMap<String, Process>,
    oom_token: Option<u64>,
}

impl Inner {
    pub fn process(&self, exec_id: &str) -> Result<&Process, TaskError> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs
            .get(exec_id)
            .ok_or_else(|| TaskError::NotFound(format!("exec process {exec_id} does not exist")))
    }

    pub(crate) fn process_mut(&mut self, exec_id: &str) -> Result<&mut Process, TaskError> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| TaskError::NotFound(format!("exec process {exec_id} does not exist")))
    }

    /// Whether the container is gone (its init deleted).
    pub fn deleted(&self) -> bool {
        self.init.phase() == Phase::Deleted
    }
}

impl Container {
    /// Creates the container: its streams, the container itself, and the watch on its init
    /// process.
    pub fn create(
        context: &Arc<ShimContext>,
        spec: CreateSpec,
        deadline: Deadline,
    ) -> Result<Arc<Container>, TaskError> {
        mxc_runtime::validate_id(&spec.id)
            .map_err(|e| TaskError::InvalidArgument(e.to_string()))?;
        let target = Target {
            id: spec.id.clone(),
            bundle: spec.bundle.clone(),
            root: crate::options::engine_root(&spec.bundle, &context.namespace),
            config_path: spec.config_path.clone(),
        };

        let (mut io, logger, fds) = open_streams(
            context.engine.as_ref(),
            &context.namespace,
            &spec.id,
            &spec.stdio,
            deadline,
        )?;
        let since = context.reaper.mark();
        let request = CreateRequest {
            rootfs: spec
                .rootfs
                .iter()
                .map(|m| MountSpec {
                    kind: m.type_.clone(),
                    source: m.source.clone(),
                    options: m.options.clone(),
                })
                .collect(),
            console_socket: io.console_socket(),
        };
        let Created {
            pid,
            timeout,
            shares_pid_namespace,
        } = match context.engine.create(&target, request, fds, deadline) {
            Ok(created) => created,
            Err(err) => {
                close_streams(io, logger);
                return Err(err);
            }
        };
        if let Err(err) = io.attach_console() {
            io.stop();
            if let Err(cleanup) = context.engine.delete(&target, Deadline::after(CALL_LIMIT)) {
                tracing::warn!(error = %cleanup, "removing the container after a failed create");
            }
            return Err(failed(err));
        }

        let mut init = Process::init(pid, spec.stdio.clone(), io);
        init.logger = logger;
        let container = Arc::new(Container {
            id: spec.id.clone(),
            bundle: spec.bundle.clone(),
            target,
            shares_pid_namespace,
            timeout,
            context: Arc::downgrade(context),
            inner: Mutex::new(Inner {
                init,
                execs: HashMap::new(),
                oom_token: None,
            }),
            changed: Condvar::new(),
        });

        let mut inner = container.lock();
        context.publisher.publish(TaskCreate {
            container_id: spec.id.clone(),
            bundle: spec.bundle.to_string_lossy().into_owned(),
            rootfs: spec.rootfs.clone(),
            io: Some(TaskIO {
                stdin: spec.stdio.stdin.clone(),
                stdout: spec.stdio.stdout.clone(),
                stderr: spec.stdio.stderr.clone(),
                terminal: spec.stdio.terminal,
                ..Default::default()
            })
            .into(),
            pid: pid as u32,
            ..Default::default()
        });
        if let Some(exit) = container.watch(context, String::new(), pid, since) {
            container.exited(&mut inner, "", exit);
        }
        drop(inner);
        tracing::info!(pid, "container created");
        Ok(container)
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers for the exit of `pid` (the init when `exec_id` is empty); returns the exit
    /// if it already happened.
    pub(crate) fn watch(
        self: &Arc<Self>,
        context: &ShimContext,
        exec_id: String,
        pid: i32,
        since: u64,
    ) -> Option<Exit> {
        let weak = Arc::downgrade(self);
        context.reaper.watch(pid, since, move |exit| {
            if let Some(container) = weak.upgrade() {
                // containerd stops reading the output once it learns of the exit: let the
                // copying finish first, bounded (a descendant may still hold the pipes).
                let output = container
                    .lock()
                    .process(&exec_id)
                    .ok()
                    .and_then(|p| p.io.output_done());
                if let Some(output) = output {
                    if !output.wait(OUTPUT_GRACE) {
                        tracing::debug!(exec_id, "publishing the exit before the output is out");
                    }
                }
                let mut inner = container.lock();
                container.exited(&mut inner, &exec_id, exit);
            }
        })
    }

    /// Records an exit, publishes it and wakes the waiters. Called with the lock held.
    pub(crate) fn exited(&self, inner: &mut Inner, exec_id: &str, exit: Exit) {
        let Ok(process) = inner.process_mut(exec_id) else {
            return;
        };
        if !process.record_exit(exit) {
            return;
        }
        crate::footprint::touch();
        let span = tracing::info_span!("exit", id = %self.id);
        let _entered = span.enter();
        tracing::info!(
            exec_id,
            pid = exit.pid,
            status = exit.status,
            "process exited"
        );
        if exec_id.is_empty() {
            if let Some(context) = self.context.upgrade() {
                let status = Some(exit.status as i32);
                context.engine.audit(&self.target, &Event::Exit { status });
                if self.shares_pid_namespace {
                    // Without a pid namespace of its own, the container's other processes
                    // survive its init; containerd expects them gone.
                    if let Err(err) = context.engine.kill(&self.target, Signal::KILL, true) {
                        tracing::debug!(error = %err, "killing the rest of the container");
                    }
                }
            }
        }
        if let Some(context) = self.context.upgrade() {
            context.publisher.publish(TaskExit {
                container_id: self.id.clone(),
                id: if exec_id.is_empty() {
                    self.id.clone()
                } else {
                    exec_id.to_string()
                },
                pid: exit.pid as u32,
                exit_status: exit.status,
                exited_at: Some(timestamp(exit.at)).into(),
                ..Default::default()
            });
        }
        self.changed.notify_all();
    }

    /// Start: the init runs the workload, or an exec process is created and runs.
    pub fn start(self: &Arc<Self>, exec_id: &str, deadline: Deadline) -> Result<i32, TaskError> {
        let context = self.context()?;
        if exec_id.is_empty() {
            self.start_init(&context, deadline)
        } else {
            self.start_exec(&context, exec_id, deadline)
        }
    }

    fn start_init(
        self: &Arc<Self>,
        context: &Arc<ShimContext>,
        deadline: Deadline,
    ) -> Result<i32, TaskError> {
        let mut inner = self.lock();
        let running = inner.init.check(&self.id, "start", Phase::start)?;
        context.engine.start(&self.target, deadline)?;
        inner.init.enter(running);
        let pid = inner.init.pid;
        context.publisher.publish(TaskStart {
            container_id: self.id.clone(),
            pid: pid as u32,
            ..Default::default()
        });
        inner.oom_token = self.watch_oom(context, pid);
        if let Some(limit) = self.timeout {
            self.enforce_timeout(limit);
        }
        tracing::info!(pid, "container started");
        Ok(pid)
    }

    /// Kill: a signal to the init (to every process of the container with `all`) or to an
    /// exec process.
    pub fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), TaskError> {
        let signal = i32::try_from(signal)
            .ok()
            .and_then(Signal::from_raw)
            .ok_or_else(|| TaskError::InvalidArgument(format!("invalid signal {signal}")))?;
        let context = self.context()?;
        let inner = self.lock();
        let process = inner.process(exec_id)?;
        let finished = || TaskError::NotFound("process already finished".into());
        match process.phase() {
            Phase::Deleting | Phase::Deleted => return Err(finished()),
            Phase::Stopped if !all => return Err(finished()),
            Phase::Created if !exec_id.is_empty() => {
                return Err(TaskError::FailedPrecondition(format!(
                    "exec process {exec_id} of container {}: cannot kill: it is created, not \
                     started",
                    self.id
                )))
            }
            _ => {}
        }
        if !exec_id.is_empty() {
            return process.signal(signal.as_raw()).map_err(|err| {
                if err.raw_os_error() == Some(libc::ESRCH) {
                    finished()
                } else {
                    failed(err)
                }
            });
        }
        tracing::info!(signal = %signal, all, "kill");
        context.engine.kill(&self.target, signal, all)
    }

    /// Delete of the container: removes everything (processes, cgroups, state, the root
    /// filesystem mount) and publishes `/tasks/delete`. A running container must be killed
    /// first; one that was created and never started is killed here.
    pub fn delete(&self, deadline: Deadline) -> Result<(i32, Exit), TaskError> {
        let context = self.context()?;
        {
            let mut inner = self.lock();
            if inner.deleted() {
                return Err(TaskError::NotFound(format!(
                    "container {} does not exist",
                    self.id
                )));
            }
            inner.init.advance(&self.id, "delete", Phase::delete)?;
        }
        if let Err(err) = context.engine.delete(&self.target, deadline) {
            let mut inner = self.lock();
            let exited = inner.init.is_stopped();
            inner
                .init
                .advance(&self.id, "delete", |p| p.delete_failed(exited))?;
            self.changed.notify_all();
            return Err(err);
        }
        let inner = self.lock();
        // A created init was just killed: its exit is on its way through the reaper.
        let (mut inner, _) = self
            .changed
            .wait_timeout_while(inner, EXIT_WAIT, |inner| !inner.init.is_stopped())
            .unwrap_or_else(|e| e.into_inner());
        let exit = inner.init.exit().unwrap_or(Exit {
            pid: inner.init.pid,
            status: 128 + libc::SIGKILL as u32,
            at: SystemTime::now(),
        });
        inner.init.advance(&self.id, "delete", Phase::deleted)?;
        let mut loggers = Vec::new();
        inner.init.io.stop();
        loggers.extend(inner.init.logger.take());
        for process in inner.execs.values_mut() {
            process.io.stop();
            loggers.extend(process.logger.take());
            if !process.is_stopped() && process.pid > 0 {
                context.reaper.forget(process.pid);
            }
        }
        if let Some(token) = inner.oom_token.take() {
            if let Some(Some(monitor)) = context.oom.get() {
                monitor.unwatch(token);
            }
        }
        context.publisher.publish(TaskDelete {
            container_id: self.id.clone(),
            id: self.id.clone(),
            pid: inner.init.pid as u32,
            exit_status: exit.status,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        });
        self.changed.notify_all();
        drop(inner);
        for logger in loggers {
            stop_logger(&logger);
        }
        tracing::info!("container deleted");
        Ok((exit.pid, exit))
    }

    /// Wait: blocks until the process has exited.
    pub fn wait(&self, exec_id: &str) -> Result<Exit, TaskError> {
        let mut inner = self.lock();
        loop {
            let process = inner.process(exec_id)?;
            if let Some(exit) = process.exit() {
                return Ok(exit);
            }
            if inner.deleted() {
                return Err(TaskError::NotFound(format!(
                    "container {} was deleted",
                    self.id
                )));
            }
            inner = self.changed.wait(inner).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn pause(&self) -> Result<(), TaskError> {
        let context = self.context()?;
        let mut inner = self.lock();
        let paused = inner.init.check(&self.id, "pause", Phase::pause)?;
        context.engine.pause(&self.target)?;
        inner.init.enter(paused);
        context.publisher.publish(TaskPaused {
            container_id: self.id.clone(),
            ..Default::default()
        });
        Ok(())
    }

    pub fn resume(&self) -> Result<(), TaskError> {
        let context = self.context()?;
        let mut inner = self.lock();
        let running = inner.init.check(&self.id, "resume", Phase::resume)?;
        context.engine.resume(&self.target)?;
        inner.init.enter(running);
        context.publisher.publish(TaskResumed {
            container_id: self.id.clone(),
            ..Default::default()
        });
        Ok(())
    }

    pub fn pids(&self) -> Result<Vec<(i32, Option<String>)>, TaskError> {
        let pids = self.context()?.engine.pids(&self.target)?;
        let inner = self.lock();
        Ok(pids
            .into_iter()
            .map(|pid| {
                let exec_id = inner
                    .execs
                    .values()
                    .find(|p| p.pid == pid && !p.is_stopped())
                    .map(|p| p.exec_id.clone());
                (pid, exec_id)
            })
            .collect())
    }

    pub fn stats(&self) -> Result<mxc_runtime::RuncStats, TaskError> {
        self.context()?.engine.stats(&self.target)
    }

    /// Update: new resource limits, given as the JSON of an OCI `LinuxResources`.
    pub fn update(&self, resources: &[u8]) -> Result<(), TaskError> {
        self.context()?.engine.update(&self.target, resources)
    }

    pub fn init_pid(&self) -> i32 {
        self.lock().init.pid
    }

    pub(crate) fn context(&self) -> Result<Arc<ShimContext>, TaskError> {
        self.context
            .upgrade()
            .ok_or_else(|| TaskError::Failed("the shim is shutting down".into()))
    }

    fn watch_oom(&self, context: &Arc<ShimContext>, pid: i32) -> Option<u64> {
        let monitor = context.oom_monitor()?;
        let publisher = context.publisher.clone();
        let id = self.id.clone();
        let on_oom = Arc::new(move || {
            tracing::warn!(id = %id, "the OOM killer acted in the container");
            publisher.publish(TaskOOM {
                container_id: id.clone(),
                ..Default::default()
            });
        });
        match monitor.watch(pid, on_oom) {
            Ok(token) => token,
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch the container for OOM kills");
                None
            }
        }
    }
}
