//! One process of a container as containerd sees it: the init process (exec id empty) or an
//! exec process. Its lifecycle is Created -> Running -> Stopped, driven by Start and by the
//! reaper; a container's pause shows on its init process.

use containerd_shim_protos::api::{StateResponse, Status};
use containerd_shim_protos::protobuf::EnumOrUnknown;
use mxc_runtime::process::PidFd;

use crate::events::timestamp;
use crate::io::{ProcessIo, StdioPaths};
use crate::reaper::Exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created (an init waiting for Start) or, for an exec process, registered and not yet
    /// started.
    Created,
    Running,
    Stopped(Exit),
}

pub struct Process {
    /// Empty for the init process.
    pub exec_id: String,
    /// 0 until an exec process starts.
    pub pid: i32,
    /// Opened while the process was known to be this shim's unreaped child: signals sent
    /// through it never reach a process that reused the pid.
    pidfd: Option<PidFd>,
    pub phase: Phase,
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
            stdio,
            io: ProcessIo::default(),
            spec: Some(spec),
            logger: None,
        }
    }

    /// Records the pid of an exec process that has just started.
    pub fn started(&mut self, pid: i32) {
        self.pid = pid;
        self.pidfd = PidFd::open(pid).ok();
        self.phase = Phase::Running;
    }

    pub fn exit(&self) -> Option<Exit> {
        match self.phase {
            Phase::Stopped(exit) => Some(exit),
            _ => None,
        }
    }

    pub fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped(_))
    }

    /// Sends `signal` to the process itself.
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        match &self.pidfd {
            Some(fd) => fd.send_signal(signal),
            None => Err(std::io::Error::from_raw_os_error(libc::ESRCH)),
        }
    }

    pub fn state(&self, container_id: &str, bundle: &str, paused: bool) -> StateResponse {
        let status = match self.phase {
            Phase::Created => Status::CREATED,
            Phase::Running if paused && self.exec_id.is_empty() => Status::PAUSED,
            Phase::Running => Status::RUNNING,
            Phase::Stopped(_) => Status::STOPPED,
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
        if let Some(exit) = self.exit() {
            state.exit_status = exit.status;
            state.exited_at = Some(timestamp(exit.at)).into();
        }
        state
    }
}
