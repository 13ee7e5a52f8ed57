//! `start`: let a created container's init exec the workload.

use tracing::instrument;

use super::Engine;
use crate::error::EngineError;
use crate::record::{Phase, Status};

impl Engine {
    #[instrument(skip_all, fields(id = %id))]
    pub fn start(&self, id: &str) -> Result<(), EngineError> {
        let _lock = self.lock(id)?;
        let mut record = self.load_record(id)?;
        let status = record.status();
        if status != Status::Created {
            let hint = match status {
                Status::Stopped => " (a container runs once; delete it and create it again)",
                _ => "",
            };
            return Err(EngineError::WrongStatus {
                id: id.to_string(),
                action: "start",
                status,
                hint,
            });
        }
        let mut container = self.libcontainer(id)?;
        let started = tracing::info_span!("libcontainer_start").in_scope(|| container.start());
        if let Err(e) = started {
            let error = EngineError::libcontainer(id, "start", &e);
            self.audit_record(
                &record,
                &crate::audit::Event::FailedStart {
                    reason: error.to_string(),
                },
            );
            return Err(error);
        }
        record.phase = Phase::Running;
        self.save_record(&record)?;
        tracing::debug!("container started");
        Ok(())
    }
}
