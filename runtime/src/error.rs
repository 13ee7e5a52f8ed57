//! The engine's errors. Messages name the container, say what was attempted and why it failed,
//! in the terms runc uses where engines match on them ("container does not exist").

use std::path::PathBuf;

use crate::record::Status;
use crate::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: String },

    #[error("container {id} does not exist")]
    NotFound { id: String },

    #[error("container with id exists: {id}")]
    AlreadyExists { id: String },

    #[error(transparent)]
    Spec(#[from] SpecError),

    #[error("cannot {action} container {id}: it is {status}{hint}")]
    WrongStatus {
        id: String,
        action: &'static str,
        status: Status,
        hint: &'static str,
    },

    /// A libcontainer call failed; `message` carries its whole error chain.
    #[error("container {id}: {operation} failed: {message}")]
    Libcontainer {
        id: String,
        operation: &'static str,
        message: String,
    },

    #[error("container {id}: cgroup {operation} failed: {message}")]
    Cgroup {
        id: String,
        operation: &'static str,
        message: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("container {id}: the state record at {path} is unreadable: {reason}")]
    CorruptRecord {
        id: String,
        path: PathBuf,
        reason: String,
    },

    #[error("container {id}: processes still running after SIGKILL: {pids:?}")]
    StillRunning { id: String, pids: Vec<i32> },

    #[error("container {id}: the exit status was collected by another process")]
    ExitStatusLost { id: String },

    #[error("interrupted by signal {signal}; container {id} was removed")]
    Interrupted { id: String, signal: i32 },

    #[error("{0}")]
    InvalidArgument(String),

    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("container {id}: {source}")]
    Staging {
        id: String,
        #[source]
        source: crate::staging::StagingError,
    },

    #[error("container {id}: network: {source}")]
    Network {
        id: String,
        #[source]
        source: crate::network::NetworkError,
    },
}

impl EngineError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> EngineError {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn libcontainer(
        id: &str,
        operation: &'static str,
        err: &dyn std::error::Error,
    ) -> EngineError {
        EngineError::Libcontainer {
            id: id.to_string(),
            operation,
            message: error_chain(err),
        }
    }

    pub(crate) fn cgroup(
        id: &str,
        operation: &'static str,
        err: &dyn std::error::Error,
    ) -> EngineError {
        EngineError::Cgroup {
            id: id.to_string(),
            operation,
            message: error_chain(err),
        }
    }
}

/// `outer: cause: root cause`, skipping causes whose text the previous one already contains.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chains_causes_once() {
        let err = Outer(std::io::Error::other("root cause"));
        assert_eq!(error_chain(&err), "outer: root cause");
        let status = EngineError::WrongStatus {
            id: "c1".into(),
            action: "delete",
            status: Status::Running,
            hint: " (use --force)",
        };
        assert_eq!(
            status.to_string(),
            "cannot delete container c1: it is running (use --force)"
        );
    }
}
