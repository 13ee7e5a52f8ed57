//! An engine that runs nothing, for unit tests of the task service: it hands out pids no
//! process can have, records every call, and fails the calls a test asks it to fail. Its
//! processes exit when a test says so, or (SIGKILL, 137) when their container is deleted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mxc_runtime::audit::Event;
use mxc_runtime::RuncStats;
use mxc_runtime::Signal;

use super::{CreateRequest, Created, Engine, ExecRequest, LoggerRequest, Target};
use crate::error::TaskError;
use crate::reaper::{Exit, Reaper};
use crate::zygote::{Deadline, Passed};

/// Above the kernel's largest pid (`PID_MAX_LIMIT`, 2^22): no signal or pidfd can reach a
/// real process through these.
const FIRST_PID: i32 = 5_000_000;

pub struct FakeEngine {
    state: Mutex<State>,
    /// Where the exits of deleted containers' processes go.
    reaper: Arc<Reaper>,
}

#[derive(Default)]
struct State {
    next_pid: i32,
    /// Every call, as `"<operation> <container id>[ <detail>]"`.
    calls: Vec<String>,
    /// Operations that fail once, with this message.
    failures: HashMap<&'static str, String>,
    /// What the next Create reports about the container.
    timeout: Option<Duration>,
    shares_pid_namespace: bool,
    /// The live pids of each container.
    pids: HashMap<String, Vec<i32>>,
    /// What was recorded in the audit log, by container.
    audits: Vec<(String, Event)>,
}

impl FakeEngine {
    pub fn with_reaper(reaper: Arc<Reaper>) -> FakeEngine {
        FakeEngine {
            state: Mutex::default(),
            reaper,
        }
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The audit records so far.
    pub fn audits(&self) -> Vec<(String, Event)> {
        self.lock().audits.clone()
    }

    /// Makes the next call of `operation` fail with `message`.
    pub fn fail_next(&self, operation: &'static str, message: &str) {
        self.lock().failures.insert(operation, message.to_string());
    }

    /// Containers created from now on have this `process.timeout`.
    pub fn set_timeout(&self, timeout: Duration) {
        self.lock().timeout = Some(timeout);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the call and fails it if asked to.
    fn call(&self, operation: &'static str, target: &str, detail: &str) -> Result<(), TaskError> {
        let mut state = self.lock();
        let mut line = format!("{operation} {target}");
        if !detail.is_empty() {
            line = format!("{line} {detail}");
        }
        state.calls.push(line);
        match state.failures.remove(operation) {
            Some(message) => Err(TaskError::Failed(message)),
            None => Ok(()),
        }
    }

    fn new_pid(&self, id: &str) -> i32 {
        let mut state = self.lock();
        let pid = FIRST_PID + state.next_pid;
        state.next_pid += 1;
        state.pids.entry(id.to_string()).or_default().push(pid);
        pid
    }
}

impl Engine for FakeEngine {
    fn create(
        &self,
        target: &Target,
        _request: CreateRequest,
        _stdio: Passed,
        _deadline: Deadline,
    ) -> Result<Created, TaskError> {
        self.call("create", &target.id, "")?;
        let pid = self.new_pid(&target.id);
        let state = self.lock();
        Ok(Created {
            pid,
            timeout: state.timeout,
            shares_pid_namespace: state.shares_pid_namespace,
        })
    }

    fn start(&self, target: &Target, _deadline: Deadline) -> Result<(), TaskError> {
        self.call("start", &target.id, "")
    }

    fn exec(
        &self,
        target: &Target,
        _request: ExecRequest,
        _stdio: Passed,
        _deadline: Deadline,
    ) -> Result<i32, TaskError> {
        self.call("exec", &target.id, "")?;
        Ok(self.new_pid(&target.id))
    }

    fn delete(&self, target: &Target, _deadline: Deadline) -> Result<(), TaskError> {
        self.call("delete", &target.id, "")?;
        let pids = self.lock().pids.remove(&target.id).unwrap_or_default();
        for pid in pids {
            self.reaper.record(Exit {
                pid,
                status: 128 + libc::SIGKILL as u32,
                at: SystemTime::now(),
            });
        }
        Ok(())
    }

    fn kill(&self, target: &Target, signal: Signal, all: bool) -> Result<(), TaskError> {
        let detail = format!("{}{}", signal.as_raw(), if all { " all" } else { "" });
        self.call("kill", &target.id, &detail)
    }

    fn pause(&self, target: &Target) -> Result<(), TaskError> {
        self.call("pause", &target.id, "")
    }

    fn resume(&self, target: &Target) -> Result<(), TaskError> {
        self.call("resume", &target.id, "")
    }

    fn pids(&self, target: &Target) -> Result<Vec<i32>, TaskError> {
        self.call("pids", &target.id, "")?;
        Ok(self
            .lock()
            .pids
            .get(&target.id)
            .cloned()
            .unwrap_or_default())
    }

    fn stats(&self, target: &Target) -> Result<RuncStats, TaskError> {
        self.call("stats", &target.id, "")?;
        Ok(RuncStats::default())
    }

    fn update(&self, target: &Target, _resources: &[u8]) -> Result<(), TaskError> {
        self.call("update", &target.id, "")
    }

    fn spawn_logger(
        &self,
        request: LoggerRequest,
        _fds: Passed,
        _deadline: Deadline,
    ) -> Result<i32, TaskError> {
        self.call("spawn_logger", "", &request.path.to_string_lossy())?;
        Ok(self.new_pid(""))
    }

    fn audit(&self, target: &Target, event: &Event) {
        self.lock().audits.push((target.id.clone(), event.clone()));
    }
}
