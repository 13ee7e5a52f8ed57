//! Exec processes: registered by Exec, created in the running container by Start, forgotten
//! by Delete once they have exited.

use std::sync::Arc;

use containerd_shim_protos::events::task::{TaskExecAdded, TaskExecStarted};

use crate::container::{Container, ShimContext};
use crate::error::{failed, TaskError};
use crate::io::{self, Prepared, StdioPaths};
use crate::logger::{start_logger, stop_logger};
use crate::processes::{Phase, Process};
use crate::reaper::Exit;
use crate::zygote::{Op, Reply};

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
        if inner.init.phase != Phase::Running {
            return Err(TaskError::FailedPrecondition(format!(
                "container {} is not running",
                self.id
            )));
        }
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
    ) -> Result<i32, TaskError> {
        let mut inner = self.lock();
        if inner.init.phase != Phase::Running {
            return Err(TaskError::FailedPrecondition(format!(
                "container {} is not running",
                self.id
            )));
        }
        let process = inner.process_mut(exec_id)?;
        if process.phase != Phase::Created {
            return Err(TaskError::FailedPrecondition(format!(
                "exec process {exec_id} was already started"
            )));
        }
        let spec = process.spec.take().unwrap_or_default();
        let Prepared {
            mut io,
            fds,
            logger,
        } = io::prepare(&process.stdio).map_err(|e| TaskError::InvalidArgument(e.to_string()))?;
        let logger = match logger {
            Some(launch) => Some(start_logger(
                &context.zygote,
                &context.namespace,
                &self.id,
                launch,
            )?),
            None => None,
        };
        let since = context.reaper.mark();
        let op = Op::Exec {
            process: spec,
            console_socket: io.console_socket(),
        };
        let reply = context.zygote.call(self.call(op), fds);
        let pid = match reply {
            Ok(Reply::Pid(pid)) => pid,
            other => {
                io.stop();
                if let Some(logger) = &logger {
                    stop_logger(logger);
                }
                return Err(match other {
                    Ok(Reply::Failed(message)) => TaskError::Failed(message),
                    Ok(reply) => failed(format!("unexpected answer {reply:?}")),
                    Err(err) => failed(err),
                });
            }
        };
        if let Err(err) = io.attach_console() {
            tracing::warn!(exec_id, error = %err, "the exec process's terminal did not arrive");
        }
        let process = inner.process_mut(exec_id)?;
        process.io = io;
        process.logger = logger;
        process.started(pid);
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
        let process = inner.process(exec_id)?;
        if process.phase == Phase::Running {
            return Err(TaskError::FailedPrecondition(format!(
                "cannot delete exec process {exec_id}: it is running"
            )));
        }
        let mut process = inner.execs.remove(exec_id).expect("checked above");
        process.io.stop();
        let logger = process.logger.take();
        drop(inner);
        if let Some(logger) = logger {
            stop_logger(&logger);
        }
        Ok((process.pid, process.exit()))
    }
}
