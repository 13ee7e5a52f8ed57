//! `update`: change a live container's resource limits.

use libcgroups::common::{CgroupManager, ControllerOpt};
use libcontainer::oci_spec::runtime::LinuxResources;
use tracing::instrument;

use super::{cgroup, Engine};
use crate::error::EngineError;
use crate::record::Status;

impl Engine {
    #[instrument(skip_all, fields(id = %id))]
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), EngineError> {
        let _lock = self.lock(id)?;
        let record = self.load_record(id)?;
        let status = record.status();
        if status == Status::Stopped {
            return Err(EngineError::WrongStatus {
                id: id.to_string(),
                action: "update",
                status,
                hint: "",
            });
        }
        if resources
            .memory()
            .as_ref()
            .and_then(|memory| memory.disable_oom_killer())
            == Some(true)
        {
            return Err(EngineError::InvalidArgument(format!(
                "container {id}: memory.disableOOMKiller: {}",
                crate::spec::OOM_KILLER_STAYS_ON
            )));
        }
        let manager = cgroup::manager(&record)?;
        manager
            .apply(&ControllerOpt {
                resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| EngineError::cgroup(id, "update", &e))
    }
}
