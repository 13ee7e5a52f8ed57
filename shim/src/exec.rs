//! Exec processes: registered by Exec while the container runs, created in it by Start,
//! forgotten by Delete once they have exited (or if they never started).

use std::sync::Arc;

use containerd_shim_protos::events::task::{TaskExecAdded, TaskExecStarted};

use crate::container::{Container, Inner, ShimContext};
use crate::engine::ExecRequest;
use crate::error::TaskError;
use crate::io::StdioPaths;
use crate::logger::{close_streams, open_streams, stop_logger};
use crate::phase::Phase;
use crate::processes::Process;
use crate::reaper::Exit;
use crate::zygote::Deadline;

impl Container {
    /// Exec: registers a process to run on Start.
    pub fn add_exec(
        &self,
        exec_id: &str,
        stdio: StdioPaths,
        spec: serde_json::Value,
    ) -> Result<(), TaskError> {
        let context = self.context()?;
        let mut inner = self.lock();
        self.require_running(&inner, "exec")?;
        if inner.execs.contains_key(exec_id) {
            return Err(TaskError::AlreadyExists(format!(
                "exec process {exec_id} already exists"
            )));
        }
        inner.execs.insert(
            exec_id.to_string(),
            Process::exec(exec_id.to_string(), stdio, spec),
        );
        context.publisher.publish(TaskExecAdded {
            container_id: self.id.clone(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        });
        Ok(())
    }

    pub(crate) fn start_exec(
        self: &Arc<Self>,
        context: &Arc<ShimContext>,
        exec_id: &str,
        deadline: Deadline,
    ) -> Result<i32, TaskError> {
        let mut inner = self.lock();
        self.require_running(&inner, "start an exec process")?;
        let process = inner.process_mut(exec_id)?;
        let running = process.check(&self.id, "start", Phase::start)?;
        let (mut io, logger, fds) = open_streams(
            context.engine.as_ref(),
            &context.namespace,
            &self.id,
            &process.stdio,
            deadline,
        )?;
        let since = context.reaper.mark();
        let request = ExecRequest {
            process: process.spec.clone().unwrap_or_default(),
            console_socket: io.console_socket(),
        };
        let pid = match context.engine.exec(&self.target, request, fds, deadline) {
            Ok(pid) => pid,
            Err(err) => {
                close_streams(io, logger);
                return Err(err);
            }
        };
        if let Err(err) = io.attach_console() {
            tracing::warn!(exec_id, error = %err, "the exec process's terminal did not arrive");
        }
        let process = inner.process_mut(exec_id)?;
        process.io = io;
        process.logger = logger;
        process.spec = None;
        process.started(pid);
        process.enter(running);
        context.publisher.publish(TaskExecStarted {
            container_id: self.id.clone(),
            exec_id: exec_id.to_string(),
            pid: pid as u32,
            ..Default::default()
        });
        if let Some(exit) = self.watch(context, exec_id.to_string(), pid, since) {
            self.exited(&mut inner, exec_id, exit);
        }
        tracing::info!(exec_id, pid, "exec process started");
        Ok(pid)
    }

    /// Delete of an exec process: forgets it once it has exited (or never started).
    pub fn delete_exec(&self, exec_id: &str) -> Result<(i32, Option<Exit>), TaskError> {
        let mut inner = self.lock();
        inner
            .process(exec_id)?
            .check(&self.id, "delete", Phase::delete)?;
        let Some(mut process) = inner.execs.remove(exec_id) else {
            return Err(TaskError::NotFound(format!(
                "exec process {exec_id} does not exist"
            )));
        };
        process.io.stop();
        let logger = process.logger.take();
        drop(inner);
        if let Some(logger) = logger {
            stop_logger(&logger);
        }
        Ok((process.pid, process.exit()))
    }

    /// Exec processes run only in a running container (not a created, paused or stopped one).
    fn require_running(&self, inner: &Inner, verb: &str) -> Result<(), TaskError> {
        match inner.init.phase() {
            Phase::Running => Ok(()),
            phase => Err(TaskError::FailedPrecondition(format!(
                "container {}: cannot {verb}: it is {phase}, not running",
                self.id
            ))),
        }
    }
}
