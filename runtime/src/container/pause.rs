//! `pause` and `resume`: freeze and thaw every process of the container.

use tracing::instrument;

use super::Engine;
use crate::error::EngineError;
use crate::record::{Phase, Status};

impl Engine {
    #[instrument(skip_all, fields(id = %id))]
    pub fn pause(&self, id: &str) -> Result<(), EngineError> {
        let _lock = self.lock(id)?;
        let mut record = self.load_record(id)?;
        let status = record.status();
        if status != Status::Running {
            return Err(EngineError::WrongStatus {
                id: id.to_string(),
                action: "pause",
                status,
                hint: " (only a running container can be paused)",
            });
        }
        self.libcontainer(id)?
            .pause()
            .map_err(|e| EngineError::libcontainer(id, "pause", &e))?;
        record.phase = Phase::Paused;
        self.save_record(&record)
    }

    #[instrument(skip_all, fields(id = %id))]
    pub fn resume(&self, id: &str) -> Result<(), EngineError> {
        let _lock = self.lock(id)?;
        let mut record = self.load_record(id)?;
        let status = record.status();
        if status != Status::Paused {
            return Err(EngineError::WrongStatus {
                id: id.to_string(),
                action: "resume",
                status,
                hint: " (only a paused container can be resumed)",
            });
        }
        self.libcontainer(id)?
            .resume()
            .map_err(|e| EngineError::libcontainer(id, "resume", &e))?;
        record.phase = Phase::Running;
        self.save_record(&record)
    }
}
