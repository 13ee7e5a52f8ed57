//! The policy's `process.timeout` in bundle mode: the engine records it on the container as an
//! annotation, and once it has passed since start every process of the container is killed.

use std::sync::Arc;
use std::time::Duration;

use mxc_runtime::{Engine, Signal};

use crate::container::Container;

/// The annotation on the effective spec that carries the policy's `process.timeout`.
const TIMEOUT_ANNOTATION: &str = "io.mxc.timeout-ms";

/// The policy's `process.timeout` of container `id`, if it has one.
pub fn policy_timeout(engine: &Engine, id: &str) -> Option<Duration> {
    engine.state(id).ok().and_then(|state| {
        state
            .annotations
            .get(TIMEOUT_ANNOTATION)
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(Duration::from_millis)
    })
}

impl Container {
    /// `process.timeout`: once `limit` has passed since start, every process of the
    /// container is killed (the init's exit status is then 137).
    pub(crate) fn enforce_timeout(self: &Arc<Self>, limit: Duration) {
        let container = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("timeout".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let Some(container) = container.upgrade() else {
                    return;
                };
                let inner = container.lock();
                let (inner, result) = container
                    .changed
                    .wait_timeout_while(inner, limit, |inner| {
                        !inner.init.is_stopped() && !inner.deleted
                    })
                    .unwrap_or_else(|e| e.into_inner());
                let expired = result.timed_out() && !inner.init.is_stopped() && !inner.deleted;
                drop(inner);
                if expired {
                    let span = tracing::info_span!("timeout", id = %container.id);
                    let _entered = span.enter();
                    tracing::warn!(
                        timeout_ms = limit.as_millis() as u64,
                        "process.timeout expired: killing every process of the container"
                    );
                    if let Err(err) = container.engine.kill(&container.id, Signal::KILL, true) {
                        tracing::error!(error = %err, "killing the container after its timeout");
                    }
                }
            });
        if let Err(err) = spawned {
            tracing::error!(error = %err, "cannot enforce process.timeout: no thread");
        }
    }
}
