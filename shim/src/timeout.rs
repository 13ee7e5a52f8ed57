//! The policy's `process.timeout` in bundle mode: once it has passed since start, every
//! process of the container is killed (the init's exit status is then 137).

use std::sync::Arc;
use std::time::Duration;

use mxc_runtime::audit::Event;
use mxc_runtime::Signal;

use crate::container::Container;

impl Container {
    /// Starts the thread that kills the container once `limit` has passed, unless its init
    /// has exited or it was deleted by then.
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
                        !inner.init.is_stopped() && !inner.deleted()
                    })
                    .unwrap_or_else(|e| e.into_inner());
                let expired = result.timed_out() && !inner.init.is_stopped() && !inner.deleted();
                drop(inner);
                if !expired {
                    return;
                }
                let span = tracing::info_span!("timeout", id = %container.id);
                let _entered = span.enter();
                tracing::warn!(
                    timeout_ms = limit.as_millis() as u64,
                    "process.timeout expired: killing every process of the container"
                );
                let Ok(context) = container.context() else {
                    return;
                };
                // Recorded first, so that it comes before the exit it causes.
                let timeout_ms = limit.as_millis() as u64;
                context
                    .engine
                    .audit(&container.target, &Event::Timeout { timeout_ms });
                if let Err(err) = context.engine.kill(&container.target, Signal::KILL, true) {
                    tracing::error!(error = %err, "killing the container after its timeout");
                }
            });
        if let Err(err) = spawned {
            tracing::error!(error = %err, "cannot enforce process.timeout: no thread");
        }
    }
}
