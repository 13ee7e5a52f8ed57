//! The audit log: one JSON line per decision, for every entry point. [`Event`] is what can be
//! recorded, [`AuditLog`] the one writer (an append-only file; write errors are counted and
//! reported, never silently dropped); inside the engine, `ContainerAudit` is a log bound to one
//! container and `nflog` the listener that turns packets the rules deny into
//! [`Event::NetworkDenied`].
//!
//! Who writes what: a one-shot run (`mxc run` and `lxc-exec` given `--audit-log FILE` or
//! `MXC_AUDIT_LOG=FILE`, the SDK library given `MXC_AUDIT_LOG`) writes policy applied,
//! denials, and exit, timeout, OOM or failed start, and a failed start for a config it refused
//! too (then without a container or a policy hash: neither exists yet); in bundle
//! mode the engine writes policy applied, failed start and OOM to the node's audit log, the
//! denial log its denials, and the caller that sees the workload end (the shim, `mxc-runtime
//! run`) its exit and timeout through [`Engine::audit`].
//!
//! [`Engine::audit`]: crate::Engine::audit

pub(crate) mod nflog;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Something the audit log records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event")]
pub enum Event {
    /// The policy was resolved and applied to the container.
    #[serde(rename = "policy.applied")]
    PolicyApplied {
        /// Where it came from: a file, an annotation, the built-in default.
        source: String,
        /// The network model: isolated, filtered, proxy-only.
        network: String,
    },
    /// A packet or connection the network policy refused.
    #[serde(rename = "network.denied")]
    NetworkDenied(NetworkDenial),
    /// A host name the policy refused (the egress resolver and proxy).
    #[serde(rename = "name.denied")]
    NameDenied(NameDenial),
    /// The workload ended; `status` as a shell reports it (128+n for signal n), `None` when the
    /// process that reaped it is not this one (under Docker).
    #[serde(rename = "exit")]
    Exit { status: Option<i32> },
    /// `process.timeout` passed and every process of the container was killed.
    #[serde(rename = "timeout")]
    Timeout { timeout_ms: u64 },
    /// The kernel's OOM killer killed processes of the container.
    #[serde(rename = "oom")]
    Oom { kills: u64 },
    /// The container could not be set up or started; nothing of it remains.
    #[serde(rename = "start.failed")]
    FailedStart { reason: String },
    /// The engine failed while the workload ran; nothing of the container remains.
    #[serde(rename = "run.failed")]
    Failed { reason: String },
}

/// A refused packet or connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkDenial {
    /// `outbound` or `inbound`.
    pub direction: &'static str,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `dns`, `other`.
    pub protocol: &'static str,
    pub destination: Option<String>,
    pub port: Option<u16>,
    pub verdict: &'static str,
    /// The policy rule that decided (its JSON path), or `default`.
    pub rule: String,
    /// Which listener of the egress proxy refused it, when it was the proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A refused host name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameDenial {
    /// `dns`, `transparent`, `connect`, `socks` or `http`.
    pub via: &'static str,
    /// `dns` or `tcp`.
    pub protocol: &'static str,
    pub name: Option<String>,
    /// The TLS server name and the HTTP `Host` seen on the connection, when they were checked.
    pub sni: Option<String>,
    pub host: Option<String>,
    pub destination: Option<String>,
    pub port: Option<u16>,
    pub verdict: &'static str,
    pub reason: String,
    pub rule: String,
}

/// One line of the log.
#[derive(Serialize)]
struct Record<'a> {
    time: String,
    /// `None` for a one-shot config refused before it had a container.
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_sha256: Option<&'a str>,
    #[serde(flatten)]
    event: &'a Event,
}

#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct AuditError {
    context: String,
    #[source]
    source: std::io::Error,
}

/// An append-only JSON-lines file that records decisions: the one writer. Clones share the
/// file and the count of records that could not be written.
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: Mutex<File>,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Records that could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailures {
    pub path: PathBuf,
    pub count: u64,
    pub last_error: String,
}

impl std::fmt::Display for WriteFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the audit log {}: {} record(s) could not be written (last error: {})",
            self.path.display(),
            self.count,
            self.last_error
        )
    }
}

impl PartialEq for AuditLog {
    fn eq(&self, other: &AuditLog) -> bool {
        self.path == other.path
    }
}

impl Eq for AuditLog {}

impl AuditLog {
    /// Opens `path` for appending, creating it and its directory if needed.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| AuditError {
                context: format!(
                    "creating {}, the directory of the audit log {}",
                    parent.display(),
                    path.display()
                ),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError {
                context: format!("opening the audit log {}", path.display()),
                source,
            })?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            inner: Arc::new(Inner {
                file: Mutex::new(file),
                failures: AtomicU64::new(0),
                last_error: Mutex::new(None),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record; `time` is added. A record that cannot be written is counted (see
    /// [`AuditLog::failures`]) and the first failure is logged.
    pub fn write(&self, container_id: Option<&str>, policy_sha256: Option<&str>, event: &Event) {
        let record = Record {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            container: container_id,
            policy_sha256,
            event,
        };
        let mut line = match serde_json::to_string(&record) {
            Ok(line) => line,
            Err(error) => return self.failed(error.to_string()),
        };
        line.push('\n');
        let written = {
            let mut file = self.inner.file.lock().unwrap_or_else(|e| e.into_inner());
            // One write per record: with O_APPEND, writers in other processes never interleave.
            file.write_all(line.as_bytes())
        };
        if let Err(error) = written {
            self.failed(error.to_string());
        }
    }

    fn failed(&self, error: String) {
        if self.inner.failures.fetch_add(1, Ordering::SeqCst) == 0 {
            tracing::error!(log = %self.path.display(), %error, "an audit record could not be written");
        }
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// The records lost so far, if any.
    pub fn failures(&self) -> Option<WriteFailures> {
        let count = self.inner.failures.load(Ordering::SeqCst);
        (count > 0).then(|| WriteFailures {
            path: self.path.clone(),
            count,
            last_error: self
                .inner
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default(),
        })
    }
}

/// The audit log of one container: every record names it and its policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContainerAudit {
    pub log: AuditLog,
    pub container_id: String,
    /// sha256 of the policy; `None` when none was resolved (a rejected policy).
    pub policy_sha256: Option<String>,
}

impl ContainerAudit {
    pub fn write(&self, event: &Event) {
        self.log.write(
            Some(&self.container_id),
            self.policy_sha256.as_deref(),
            event,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn one_json_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.jsonl");
        let audit = ContainerAudit {
            log: AuditLog::open(&path).unwrap(),
            container_id: "c1".into(),
            policy_sha256: Some("ab".repeat(32)),
        };
        audit.write(&Event::PolicyApplied {
            source: "annotation io.mxc.config".into(),
            network: "filtered".into(),
        });
        audit.write(&Event::NetworkDenied(NetworkDenial {
            direction: "outbound",
            protocol: "tcp",
            destination: Some("198.18.0.1".into()),
            port: Some(443),
            verdict: "deny",
            rule: "network.egress.deny[0]".into(),
            via: None,
            reason: None,
        }));
        audit.write(&Event::Exit { status: Some(137) });
        audit.write(&Event::Timeout { timeout_ms: 500 });
        audit.write(&Event::Oom { kills: 1 });
        let records = read(&path);
        let events: Vec<&str> = records
            .iter()
            .map(|r| r["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            ["policy.applied", "network.denied", "exit", "timeout", "oom"]
        );
        for record in &records {
            assert_eq!(record["container"], "c1");
            assert_eq!(record["policy_sha256"].as_str().map(str::len), Some(64));
            assert!(record["time"].as_str().unwrap().ends_with('Z'));
        }
        assert_eq!(records[1]["destination"], "198.18.0.1");
        assert_eq!(records[1]["rule"], "network.egress.deny[0]");
        assert!(records[1].get("via").is_none());
        assert_eq!(records[2]["status"], 137);
        assert_eq!(audit.log.failures(), None);
    }

    #[test]
    fn a_record_before_any_container_names_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.write(
            None,
            None,
            &Event::FailedStart {
                reason: "refused".into(),
            },
        );
        let records = read(&path);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["event"], "start.failed");
        assert_eq!(records[0]["reason"], "refused");
        assert!(records[0].get("container").is_none(), "{}", records[0]);
        assert!(records[0].get("policy_sha256").is_none(), "{}", records[0]);
    }

    #[test]
    fn write_errors_are_counted_and_reported() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let log = AuditLog::open(Path::new("/dev/full")).unwrap();
        log.write(Some("c1"), None, &Event::Oom { kills: 1 });
        log.write(Some("c1"), None, &Event::Exit { status: None });
        let failures = log.failures().unwrap();
        assert_eq!(failures.count, 2);
        assert!(failures.to_string().contains("/dev/full"), "{failures}");
        assert!(failures.to_string().contains("No space left"), "{failures}");
    }
}
