//! `ps`: the processes in the container.

use super::{cgroup, Engine};
use crate::error::EngineError;

impl Engine {
    /// Host pids of every process in the container's cgroups.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, EngineError> {
        let record = self.load_record(id)?;
        Ok(cgroup::all_pids(&record.cgroup_path))
    }
}
