//! Errors of the task API, in the terms containerd acts on: each kind becomes a gRPC status
//! code (containerd treats "not found" on kill and delete as done, retries on others).

use containerd_shim_protos::ttrpc;
use mxc_runtime::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Failed(String),
}

impl TaskError {
    pub fn code(&self) -> ttrpc::Code {
        match self {
            TaskError::NotFound(_) => ttrpc::Code::NOT_FOUND,
            TaskError::AlreadyExists(_) => ttrpc::Code::ALREADY_EXISTS,
            TaskError::FailedPrecondition(_) => ttrpc::Code::FAILED_PRECONDITION,
            TaskError::InvalidArgument(_) => ttrpc::Code::INVALID_ARGUMENT,
            TaskError::Unimplemented(_) => ttrpc::Code::UNIMPLEMENTED,
            TaskError::Failed(_) => ttrpc::Code::UNKNOWN,
        }
    }
}

impl From<TaskError> for ttrpc::Error {
    fn from(err: TaskError) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(err.code(), err.to_string()))
    }
}

/// Engine errors in containerd's terms: a container or process that is gone is "not found".
impl From<EngineError> for TaskError {
    fn from(err: EngineError) -> TaskError {
        match err {
            EngineError::NotFound { .. } => TaskError::NotFound(err.to_string()),
            EngineError::WrongStatus { .. } => TaskError::FailedPrecondition(err.to_string()),
            other => TaskError::Failed(other.to_string()),
        }
    }
}

pub fn failed(err: impl std::fmt::Display) -> TaskError {
    TaskError::Failed(err.to_string())
}
