//! `events`: statistics read from the container's cgroups.

use libcgroups::common::CgroupManager;

use super::{cgroup, Engine};
use crate::error::EngineError;
use crate::stats::RuncStats;

impl Engine {
    /// The container's resource statistics, in runc's `events --stats` shape.
    pub fn stats(&self, id: &str) -> Result<RuncStats, EngineError> {
        let record = self.load_record(id)?;
        let manager = cgroup::manager(&record)?;
        let stats = manager
            .stats()
            .map_err(|e| EngineError::cgroup(id, "statistics", &e))?;
        Ok(RuncStats::from(&stats))
    }

    /// How many processes of the container the OOM killer has killed so far.
    pub fn oom_kills(&self, id: &str) -> Result<u64, EngineError> {
        let record = self.load_record(id)?;
        Ok(cgroup::oom_kills(&record.cgroup_path).unwrap_or(0))
    }
}
