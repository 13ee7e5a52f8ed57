//! `audit`: a container's decisions in the node's audit log (bundle mode). The engine records
//! what it sees itself (policy applied, failed start, OOM); whoever sees the workload end (the
//! shim, `mxc-runtime run`) records its exit and timeout here.

use std::path::PathBuf;

use super::Engine;
use crate::audit::{nflog, AuditLog, ContainerAudit, Event};
use crate::error::EngineError;
use crate::policy::NodeConfig;
use crate::record::{ContainerRecord, Phase};

/// In the container's engine directory: its exit is in the audit log already.
const EXIT_RECORDED: &str = "exit-recorded";

impl Engine {
    /// Records `event` for container `id` in the audit log its policy named; nothing for a
    /// container without one (`mxc run` keeps its own). Auditing never stops a container's
    /// life: a record that cannot be written is logged and counted, not returned.
    ///
    /// Takes no lock: the shim calls it from the thread that reaps processes, which must never
    /// wait for a delete in progress (a delete waits until the container's processes are
    /// reaped). The record is replaced atomically, so it is read whole.
    pub fn audit(&self, id: &str, event: &Event) {
        let Ok(record) = self.load_record(id) else {
            return;
        };
        self.audit_record(&record, event);
        if matches!(event, Event::Exit { .. }) && record.audit_log.is_some() {
            let _ = std::fs::write(self.exit_marker(id), b"");
        }
    }

    fn exit_marker(&self, id: &str) -> PathBuf {
        self.layout.engine_dir(id).join(EXIT_RECORDED)
    }

    /// The container's audit log, bound to it; `None` without one.
    pub(crate) fn container_audit(
        &self,
        record: &ContainerRecord,
    ) -> Result<Option<ContainerAudit>, EngineError> {
        let Some(path) = &record.audit_log else {
            return Ok(None);
        };
        Ok(Some(ContainerAudit {
            log: AuditLog::open(path)?,
            container_id: record.id.clone(),
            policy_sha256: record.policy.as_ref().map(|p| p.sha256.clone()),
        }))
    }

    pub(crate) fn audit_record(&self, record: &ContainerRecord, event: &Event) {
        match self.container_audit(record) {
            // A record that cannot be written is logged by the writer.
            Ok(Some(audit)) => audit.write(event),
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "an audit record could not be written"),
        }
    }

    /// A create that failed: recorded with the reason, also when the policy itself was refused
    /// (then under no policy hash, in the audit log the node configuration names).
    pub(crate) fn audit_failed_create(&self, id: &str, error: &EngineError) {
        let event = Event::FailedStart {
            reason: error.to_string(),
        };
        match self.load_record(id) {
            Ok(record) if record.audit_log.is_some() => self.audit_record(&record, &event),
            Ok(_) => {}
            Err(_) if !self.node.precompiled => {
                let Ok(config) = NodeConfig::load(&self.node) else {
                    return;
                };
                match AuditLog::open(&config.audit_log) {
                    Ok(log) => log.write(Some(id), None, &event),
                    Err(error) => tracing::error!(%error, "an audit record could not be written"),
                }
            }
            Err(_) => {}
        }
    }

    /// At delete: OOM kills, the exit if nobody recorded it (under Docker the exit status
    /// belongs to another process), and records a detached denial log could not write.
    pub(crate) fn audit_end(&self, record: &ContainerRecord, oom_kills: u64) {
        if record.audit_log.is_none() {
            return;
        }
        let report = nflog::failure_report(&self.layout.engine_dir(&record.id));
        if let Ok(failures) = std::fs::read_to_string(&report) {
            tracing::error!(failures = %failures.trim(), "the denial log lost records");
        }
        if oom_kills > 0 {
            self.audit_record(record, &Event::Oom { kills: oom_kills });
        }
        let ran = matches!(record.phase, Phase::Running | Phase::Paused);
        if ran && !self.exit_marker(&record.id).exists() {
            self.audit_record(record, &Event::Exit { status: None });
        }
    }
}
