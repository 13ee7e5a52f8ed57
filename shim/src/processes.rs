//! One process of a container as containerd sees it: the init process (exec id empty) or an
//! exec process. Its phase (`phase.rs`) moves on requests and on its exit; a container's pause
//! shows on its init process.

use containerd_shim_protos::api::{StateResponse, Status};
use containerd_shim_protos::protobuf::EnumOrUnknown;
use mxc_runtime::PidFd;

use crate::error::TaskError;
use crate::events::timestamp;
use crate::io::{ProcessIo, StdioPaths};
use crate::phase::{IllegalTransition, Phase};
use crate::reaper::Exit;

pub struct Process {
    /// Empty for the init process.
    pub exec_id: String,
    /// 0 until an exec process starts.
    pub pid: i32,
    /// Opened while the process was known to be this shim's unreaped child: signals sent
    /// through it never reach a process that reused the pid.
    pidfd: Option<PidFd>,
    phase: Phase,
    exit: Option<Exit>,
    pub stdio: StdioPaths,
    pub io: ProcessIo,
    /// An exec process's OCI process spec, until it starts.
    pub spec: Option<serde_json::Value>,
    /// A `binary://` logger's pidfd, to wait for it once the process is deleted.
    pub logger: Option<PidFd>,
}

impl Process {
    pub fn init(pid: i32, stdio: StdioPaths, io: ProcessIo) -> Process {
        Process {
            exec_id: String::new(),
            pid,
            pidfd: PidFd::open(pid).ok(),
            phase: Phase::Created,
            exit: None,
            stdio,
            io,
            spec: None,
            logger: None,
        }
    }

    pub fn exec(exec_id: String, stdio: StdioPaths, spec: serde_json::Value) -> Process {
        Process {
            exec_id,
            pid: 0,
            pidfd: None,
            phase: Phase::Created,
            exit: None,
            stdio,
            io: ProcessIo::default(),
            spec: Some(spec),
            logger: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The phase that `step` (named `verb` in the refusal) leads to, without taking it:
    /// `FailedPrecondition` naming the transition if the process's phase does not allow it.
    pub fn check(
        &self,
        container_id: &str,
        verb: &str,
        step: impl FnOnce(Phase) -> Result<Phase, IllegalTransition>,
    ) -> Result<Phase, TaskError> {
        step(self.phase).map_err(|illegal| {
            let subject = if self.exec_id.is_empty() {
                format!("container {container_id}")
            } else {
                format!("exec process {} of container {container_id}", self.exec_id)
            };
            let hint = match (verb, illegal.from) {
                ("delete", Phase::Running | Phase::Paused) => "; kill it first",
                _ => "",
            };
            TaskError::FailedPrecondition(format!("{subject}: cannot {verb}: {illegal}{hint}"))
        })
    }

    /// Takes a phase that [`Process::check`] gave.
    pub fn enter(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Checks and takes the transition `step` at once.
    pub fn advance(
        &mut self,
        container_id: &str,
        verb: &str,
        step: impl FnOnce(Phase) -> Result<Phase, IllegalTransition>,
    ) -> Result<(), TaskError> {
        self.phase = self.check(container_id, verb, step)?;
        Ok(())
    }

    /// Records the process's exit. `false` if it had one already, or is deleted.
    pub fn record_exit(&mut self, exit: Exit) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.phase.exited() {
            Ok(phase) => {
                self.phase = phase;
                self.exit = Some(exit);
                true
            }
            Err(_) => false,
        }
    }

    /// Records the pid of an exec process that has just started.
    pub fn started(&mut self, pid: i32) {
        self.pid = pid;
        self.pidfd = PidFd::open(pid).ok();
    }

    pub fn exit(&self) -> Option<Exit> {
        self.exit
    }

    pub fn is_stopped(&self) -> bool {
        self.exit.is_some()
    }

    /// Sends `signal` to the process itself.
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        match &self.pidfd {
            Some(fd) => fd.send_signal(signal),
            None => Err(std::io::Error::from_raw_os_error(libc::ESRCH)),
        }
    }

    pub fn state(&self, container_id: &str, bundle: &str) -> StateResponse {
        let status = match self.phase {
            Phase::Created => Status::CREATED,
            Phase::Running => Status::RUNNING,
            Phase::Paused => Status::PAUSED,
            Phase::Stopped | Phase::Deleting | Phase::Deleted => Status::STOPPED,
        };
        let mut state = StateResponse::new();
        state.id = container_id.to_string();
        state.exec_id = self.exec_id.clone();
        state.bundle = bundle.to_string();
        state.pid = self.pid.max(0) as u32;
        state.status = EnumOrUnknown::new(status);
        state.stdin = self.stdio.stdin.clone();
        state.stdout = self.stdio.stdout.clone();
        state.stderr = self.stdio.stderr.clone();
        state.terminal = self.stdio.terminal;
        if let Some(exit) = self.exit {
            state.exit_status = exit.status;
            state.exited_at = Some(timestamp(exit.at)).into();
        }
        state
    }
}
