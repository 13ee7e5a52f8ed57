//! A one-shot run interrupted by SIGTERM removes its container. Alone in its test binary:
//! the signal goes to the whole process.

mod common;

use std::time::Duration;

use common::*;
use mxc_runtime::policy::NodeContext;
use mxc_runtime::{Engine, EngineError};

#[test]
fn sigterm_to_the_caller_deletes_the_container() {
    if !can_run_containers() {
        return;
    }
    let rt = Runtime::new();
    let engine = Engine::new(rt.root.path()).with_node_context(NodeContext {
        precompiled: true,
        ..NodeContext::default()
    });
    let bundle = Bundle::busybox(&["sh", "-c", "sleep 1000 & sleep 1000"]);
    let id = unique_id("interrupt");
    let me = nix::unistd::Pid::this();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGTERM).unwrap();
    });
    let err = engine
        .run_to_completion(&id, bundle.path(), None)
        .unwrap_err();
    sender.join().unwrap();
    assert!(
        matches!(err, EngineError::Interrupted { signal: 15, .. }),
        "{err}"
    );
    rt.assert_no_leaks(&id);
}
