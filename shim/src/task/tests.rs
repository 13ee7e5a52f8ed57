//! The task service against a fake engine: every request in every phase, the refusals, the
//! events and what reached the engine.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use containerd_shim_protos::api::Status;
use containerd_shim_protos::ttrpc::Code;

use super::*;
use crate::engine::fake::FakeEngine;
use crate::events::{Publisher, Queued};
use crate::reaper::{Exit, Reaper};
use crate::zygote::{Deadline, CALL_LIMIT};
use mxc_runtime::audit::Event;

struct Shim {
    service: TaskService,
    engine: Arc<FakeEngine>,
    reaper: Arc<Reaper>,
    events: Receiver<Queued>,
    exit: Arc<ExitSignal>,
}

fn shim() -> Shim {
    let reaper = Reaper::detached();
    let engine = Arc::new(FakeEngine::with_reaper(reaper.clone()));
    let (publisher, events) = Publisher::capture();
    let context = Arc::new(ShimContext {
        namespace: "default".into(),
        engine: engine.clone(),
        reaper: reaper.clone(),
        publisher,
        oom: OnceLock::from(None),
    });
    let exit = Arc::new(ExitSignal::default());
    Shim {
        service: TaskService::new(context, exit.clone()),
        engine,
        reaper,
        events,
        exit,
    }
}

impl Shim {
    fn create(&self, id: &str) -> Result<u32, TaskError> {
        let req = CreateTaskRequest {
            id: id.into(),
            bundle: format!("/nonexistent/bundles/{id}"),
            ..Default::default()
        };
        self.service
            .create_task(req, Deadline::after(CALL_LIMIT))
            .map(|r| r.pid)
    }

    fn start(&self, id: &str, exec_id: &str) -> Result<u32, TaskError> {
        let req = StartRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.service
            .start_process(req, Deadline::after(CALL_LIMIT))
            .map(|r| r.pid)
    }

    fn exec(&self, id: &str, exec_id: &str) -> Result<(), TaskError> {
        let mut spec = Any::new();
        spec.value = br#"{"args":["true"],"cwd":"/"}"#.to_vec();
        let req = ExecProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            spec: Some(spec).into(),
            ..Default::default()
        };
        self.service.exec_process(req)
    }

    fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<(), TaskError> {
        self.service.container(id)?.kill(exec_id, signal, all)
    }

    fn delete(&self, id: &str, exec_id: &str) -> Result<DeleteResponse, TaskError> {
        let req = DeleteRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.service
            .delete_process(req, Deadline::after(CALL_LIMIT))
    }

    fn status(&self, id: &str, exec_id: &str) -> Result<Status, TaskError> {
        let req = StateRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let state = self.service.process_state(&req)?;
        Ok(state.status.enum_value_or_default())
    }

    fn wait(&self, id: &str, exec_id: &str) -> Result<u32, TaskError> {
        let req = WaitRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.service.wait_process(&req).map(|r| r.exit_status)
    }

    /// The process `pid` exits with `status`, as the reaper would report it.
    fn exits(&self, pid: u32, status: u32) {
        self.reaper.record(Exit {
            pid: pid as i32,
            status,
            at: SystemTime::now(),
        });
    }

    /// The topics published since the last call.
    fn topics(&self) -> Vec<&'static str> {
        self.events.try_iter().map(|event| event.topic).collect()
    }
}

/// A refusal with `FailedPrecondition` whose message contains `text`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, TaskError>, text: &str) {
    let err = result.expect_err("the request should be refused");
    assert_eq!(err.code(), Code::FAILED_PRECONDITION, "{err}");
    assert!(
        err.to_string().contains(text),
        "{err:?} does not say {text:?}"
    );
}

#[test]
fn a_task_lives_from_create_to_delete() {
    let shim = shim();
    let pid = shim.create("c1").unwrap();
    assert_eq!(shim.status("c1", "").unwrap(), Status::CREATED);
    assert_eq!(shim.start("c1", "").unwrap(), pid);
    assert_eq!(shim.status("c1", "").unwrap(), Status::RUNNING);
    shim.kill("c1", "", 15, false).unwrap();
    shim.exits(pid, 143);
    assert_eq!(shim.wait("c1", "").unwrap(), 143);
    assert_eq!(shim.status("c1", "").unwrap(), Status::STOPPED);
    let deleted = shim.delete("c1", "").unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (pid, 143));

    assert_eq!(
        shim.status("c1", "").unwrap_err().code(),
        Code::NOT_FOUND,
        "a deleted container is gone"
    );
    assert_eq!(
        shim.topics(),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    assert_eq!(
        shim.engine.calls(),
        ["create c1", "start c1", "kill c1 15", "delete c1"]
    );
    assert_eq!(shim.engine.audits(), [("c1".into(), exit(143))]);
}

fn exit(status: i32) -> Event {
    Event::Exit {
        status: Some(status),
    }
}

#[test]
fn requests_that_do_not_fit_the_phase_are_refused_naming_the_transition() {
    let shim = shim();
    let pid = shim.create("c1").unwrap();
    shim.start("c1", "").unwrap();
    assert_refused(
        shim.start("c1", ""),
        "container c1: cannot start: running -> running",
    );
    assert_refused(
        shim.delete("c1", ""),
        "cannot delete: running -> deleting; kill it first",
    );
    let pause = |id: &str| shim.service.container(id)?.pause();
    let resume = |id: &str| shim.service.container(id)?.resume();
    assert_refused(resume("c1"), "cannot resume: running -> running");
    pause("c1").unwrap();
    assert_eq!(shim.status("c1", "").unwrap(), Status::PAUSED);
    assert_refused(pause("c1"), "cannot pause: paused -> paused");
    assert_refused(shim.exec("c1", "e1"), "it is paused, not running");
    resume("c1").unwrap();
    shim.exits(pid, 0);
    shim.wait("c1", "").unwrap();
    assert_refused(shim.start("c1", ""), "cannot start: stopped -> running");
    assert_refused(pause("c1"), "cannot pause: stopped -> paused");
    assert_eq!(
        shim.kill("c1", "", 9, false).unwrap_err().code(),
        Code::NOT_FOUND,
        "a signal to an exited init finds no process"
    );

    // Refused requests reached neither the engine nor containerd.
    assert_eq!(
        shim.engine.calls(),
        ["create c1", "start c1", "pause c1", "resume c1"]
    );
    assert_eq!(
        shim.topics(),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/paused",
            "/tasks/resumed",
            "/tasks/exit"
        ]
    );
    shim.delete("c1", "").unwrap();
}

#[test]
fn exec_processes_have_phases_of_their_own() {
    let shim = shim();
    let pid = shim.create("c1").unwrap();
    assert_refused(
        shim.exec("c1", "e1"),
        "container c1: cannot exec: it is created, not running",
    );
    shim.start("c1", "").unwrap();
    shim.exec("c1", "e1").unwrap();
    assert_eq!(
        shim.exec("c1", "e1").unwrap_err().code(),
        Code::ALREADY_EXISTS
    );
    assert_eq!(shim.status("c1", "e1").unwrap(), Status::CREATED);
    assert_refused(
        shim.kill("c1", "e1", 9, false),
        "it is created, not started",
    );
    let exec_pid = shim.start("c1", "e1").unwrap();
    assert_ne!(exec_pid, pid);
    assert_refused(
        shim.start("c1", "e1"),
        "exec process e1 of container c1: cannot start: running -> running",
    );
    assert_refused(shim.delete("c1", "e1"), "running -> deleting");
    let pids = shim.service.container("c1").unwrap().pids().unwrap();
    assert_eq!(
        pids,
        [
            (pid as i32, None),
            (exec_pid as i32, Some("e1".to_string()))
        ]
    );
    shim.exits(exec_pid, 7);
    assert_eq!(shim.wait("c1", "e1").unwrap(), 7);
    assert_eq!(
        shim.engine.audits(),
        [],
        "an exec process is not the workload"
    );
    assert_eq!(shim.status("c1", "").unwrap(), Status::RUNNING);
    assert_eq!(shim.delete("c1", "e1").unwrap().exit_status, 7);
    assert_eq!(shim.status("c1", "e1").unwrap_err().code(), Code::NOT_FOUND);

    // One that never started is deleted as it is.
    shim.exec("c1", "e2").unwrap();
    assert_eq!(shim.delete("c1", "e2").unwrap().pid, 0);

    assert_eq!(
        shim.topics(),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/exec-added"
        ]
    );
    shim.exits(pid, 0);
    shim.delete("c1", "").unwrap();
    assert_eq!(shim.engine.audits(), [("c1".into(), exit(0))]);
}

#[test]
fn a_failed_engine_call_leaves_the_phase_as_it_was() {
    let shim = shim();
    let pid = shim.create("c1").unwrap();
    shim.engine.fail_next("start", "no start");
    assert_eq!(shim.start("c1", "").unwrap_err().to_string(), "no start");
    assert_eq!(shim.status("c1", "").unwrap(), Status::CREATED);
    shim.start("c1", "").unwrap();
    shim.exits(pid, 1);
    shim.wait("c1", "").unwrap();

    shim.engine.fail_next("delete", "no delete");
    assert_eq!(shim.delete("c1", "").unwrap_err().to_string(), "no delete");
    assert_eq!(shim.status("c1", "").unwrap(), Status::STOPPED);
    assert_eq!(shim.delete("c1", "").unwrap().exit_status, 1);
    assert_eq!(
        shim.topics(),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
}

#[test]
fn a_created_container_is_killed_by_delete() {
    let shim = shim();
    let pid = shim.create("c1").unwrap();
    let deleted = shim.delete("c1", "").unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (pid, 137));
    assert_eq!(shim.engine.calls(), ["create c1", "delete c1"]);
    assert_eq!(
        shim.topics(),
        ["/tasks/create", "/tasks/exit", "/tasks/delete"]
    );
}

#[test]
fn an_init_that_dies_before_start_cannot_be_started() {
    let shim = shim();
    let pid = shim.create("c1").unwrap();
    shim.exits(pid, 1);
    assert_eq!(shim.status("c1", "").unwrap(), Status::STOPPED);
    assert_refused(shim.start("c1", ""), "stopped -> running");
    assert_eq!(shim.delete("c1", "").unwrap().exit_status, 1);
}

#[test]
fn a_second_create_of_an_id_is_refused() {
    let shim = shim();
    shim.create("c1").unwrap();
    assert_eq!(shim.create("c1").unwrap_err().code(), Code::ALREADY_EXISTS);
    assert_eq!(shim.engine.calls(), ["create c1"]);
    assert_eq!(
        shim.create("../c2").unwrap_err().code(),
        Code::INVALID_ARGUMENT
    );
}

#[test]
fn shutdown_waits_for_the_last_container() {
    let shim = shim();
    let pid = shim.create("c1").unwrap();
    shim.service.shutdown_shim(&ShutdownRequest::default());
    assert!(!shim.exit.is_set());
    shim.exits(pid, 0);
    shim.delete("c1", "").unwrap();
    shim.service.shutdown_shim(&ShutdownRequest::default());
    assert!(shim.exit.is_set());
}

#[test]
fn process_timeout_kills_every_process_once_started() {
    let shim = shim();
    shim.engine.set_timeout(Duration::from_millis(20));
    let pid = shim.create("c1").unwrap();
    shim.start("c1", "").unwrap();
    let limit = Instant::now() + Duration::from_secs(30);
    while !shim.engine.calls().contains(&"kill c1 9 all".to_string()) {
        assert!(Instant::now() < limit, "{:?}", shim.engine.calls());
        std::thread::sleep(Duration::from_millis(10));
    }
    shim.exits(pid, 137);
    assert_eq!(shim.wait("c1", "").unwrap(), 137);
    shim.delete("c1", "").unwrap();
    assert_eq!(
        shim.engine.audits(),
        [
            ("c1".into(), Event::Timeout { timeout_ms: 20 }),
            ("c1".into(), exit(137))
        ]
    );
}
