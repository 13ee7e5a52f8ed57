//! `state`: the container's state as runc prints it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::Engine;
use crate::error::EngineError;
use crate::record::{ContainerRecord, Status};

/// The state JSON of `runc state` (field names and order as runc prints them).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub oci_version: String,
    pub id: String,
    /// The init process's pid; 0 once the container has stopped.
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    /// Sorted by key: two calls on an unchanged container print the same bytes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub owner: String,
}

impl ContainerState {
    pub fn from_record(record: &ContainerRecord) -> ContainerState {
        let status = record.status();
        let pid = match (status, record.init) {
            (Status::Stopped, _) | (_, None) => 0,
            (_, Some(init)) => init.pid,
        };
        ContainerState {
            oci_version: record.oci_version.clone(),
            id: record.id.clone(),
            pid,
            status,
            bundle: record.bundle.clone(),
            rootfs: record.rootfs.clone(),
            created: record.created.clone(),
            annotations: record.annotations.clone(),
            owner: String::new(),
        }
    }
}

impl Engine {
    pub fn state(&self, id: &str) -> Result<ContainerState, EngineError> {
        let record = self.load_record(id)?;
        Ok(ContainerState::from_record(&record))
    }

    /// Every container under this root, sorted by id.
    pub fn list(&self) -> Result<Vec<ContainerState>, EngineError> {
        let dir = self.layout.engine_root();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(EngineError::io(format!("reading {}", dir.display()), err)),
        };
        let mut states: Vec<ContainerState> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|id| self.state(&id).ok())
            .collect();
        states.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(states)
    }
}
