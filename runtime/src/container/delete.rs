//! `delete`: remove every trace of a container: processes, cgroups, state.

use std::time::Duration;

use tracing::instrument;

use super::{cgroup, validate_id, Engine};
use crate::error::EngineError;
use crate::record::Status;

/// How long processes get to die after SIGKILL before delete reports them.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

impl Engine {
    /// Deletes a container. A created or stopped container is deleted as it is; a running or
    /// paused one only with `force`, which SIGKILLs all its processes first (as runc does).
    #[instrument(skip_all, fields(id = %id, force))]
    pub fn delete(&self, id: &str, force: bool) -> Result<(), EngineError> {
        validate_id(id)?;
        let _lock = match self.lock(id) {
            Ok(lock) => Some(lock),
            Err(EngineError::NotFound { .. }) => {
                // No record: a directory libcontainer left without one is still removed.
                if self.layout.container_dir(id).exists() {
                    if let Ok(mut c) = self.libcontainer(id) {
                        let _ = c.delete(true);
                    }
                    let _ = std::fs::remove_dir_all(self.layout.container_dir(id));
                    return Ok(());
                }
                return Err(EngineError::NotFound { id: id.to_string() });
            }
            Err(err) => return Err(err),
        };
        let record = self.load_record(id)?;
        let status = record.status();
        if !force && matches!(status, Status::Running | Status::Paused) {
            return Err(EngineError::WrongStatus {
                id: id.to_string(),
                action: "delete",
                status,
                hint: " (stop it first, or use --force)",
            });
        }

        let oom_kills = cgroup::oom_kills(&record.cgroup_path).unwrap_or(0);
        // Kill first, whatever libcontainer thinks: it removes cgroups only ~100 ms after
        // SIGKILL and gives up on a busy one.
        tracing::info_span!("kill_processes")
            .in_scope(|| self.kill_cgroup_processes(&record, KILL_TIMEOUT, false))?;
        crate::network::kill_stacks(&record.stacks);
        crate::network::stop_helpers(&record.helpers);
        self.audit_end(&record, oom_kills);
        if let Some((netns, table)) = &record.network_table {
            // The engine's namespace outlives the container; its rules must not.
            let _ = crate::network::remove_table_at(netns, table);
        }

        let mut problems = Vec::new();
        let libcontainer_delete = tracing::info_span!("libcontainer_delete").entered();
        if self.layout.container_dir(id).exists() {
            match self.libcontainer(id) {
                Ok(mut container) => {
                    if let Err(err) = container.delete(true) {
                        // Finished below; poststop hook failures end up here too.
                        problems.push(crate::error::error_chain(&err));
                    }
                }
                Err(err) => problems.push(err.to_string()),
            }
        }
        drop(libcontainer_delete);
        let left = tracing::info_span!("remove_cgroups")
            .in_scope(|| cgroup::remove_dirs(&record.cgroup_path, Duration::from_secs(5)));
        let _ = std::fs::remove_dir_all(self.layout.container_dir(id));
        let engine_dir = self.layout.engine_dir(id);
        if let Err(err) = std::fs::remove_dir_all(&engine_dir) {
            if err.kind() != std::io::ErrorKind::NotFound {
                return Err(EngineError::io(
                    format!("removing {}", engine_dir.display()),
                    err,
                ));
            }
        }
        if !left.is_empty() {
            let dirs: Vec<String> = left.iter().map(|d| d.display().to_string()).collect();
            return Err(EngineError::Cgroup {
                id: id.to_string(),
                operation: "removal",
                message: format!("still present: {}", dirs.join(", ")),
            });
        }
        if !problems.is_empty() {
            tracing::warn!(problems = %problems.join("; "), "libcontainer's delete reported problems; cleaned up regardless");
        }
        // The engine's own directory goes with the last container, like runc's state.
        let _ = std::fs::remove_dir(self.layout.engine_root());
        tracing::debug!("container deleted");
        Ok(())
    }
}
