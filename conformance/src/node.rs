//! A node configuration of the test's own (the `config.toml` that `mxc-runtime --config` and
//! the shim's `ConfigPath` read) with its audit log in a scratch directory, and that log's
//! records.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::command::poll;

/// How long a record may take to appear: some are written by another process (a denial
/// listener, `mxc-runtime delete` under Docker) shortly after the event.
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// A node ceiling that lets a pod's or container's policy allow egress to the test networks
/// (198.18.0.0/15) and nowhere else; without a ceiling, nothing beyond the node's default policy.
pub const TEST_NETWORK_CEILING: &str = "[ceiling]\negress = [\"198.18.0.0/15\"]\n";

/// A node configuration whose audit log the test reads.
pub struct Node {
    dir: TempDir,
}

impl Node {
    /// A node configuration that names only the audit log.
    pub fn new() -> Result<Node> {
        Node::with("")
    }

    /// A node configuration with `extra` lines of TOML besides the audit log (`policy_dir`,
    /// `default_policy`, ...).
    pub fn with(extra: &str) -> Result<Node> {
        let dir = crate::scratch_dir("node")?;
        let audit = dir.path().join("audit.jsonl");
        std::fs::write(
            dir.path().join("config.toml"),
            format!("audit_log = {:?}\n{extra}", audit.display().to_string()),
        )?;
        Ok(Node { dir })
    }

    /// The scratch directory, for files the configuration names.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn audit(&self) -> Result<Vec<Value>> {
        read_audit(&self.dir.path().join("audit.jsonl"))
    }

    /// The events recorded for container `id` so far, in order.
    pub fn events(&self, id: &str) -> Result<Vec<String>> {
        Ok(events(&self.audit()?, id))
    }

    /// The first record of `event` for container `id`, once it is there.
    pub fn record(&self, id: &str, event: &str) -> Result<Value> {
        poll(RECORD_WAIT, || {
            Ok(self
                .audit()?
                .into_iter()
                .find(|r| r["container"] == id && r["event"] == event))
        })
        .with_context(|| format!("no {event} record of {id}: {:#?}", self.audit()))
    }

    /// Waits until a denial that `matches` is in the audit log and returns it.
    pub fn denial(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Result<Value> {
        poll(RECORD_WAIT, || {
            Ok(self
                .audit()?
                .into_iter()
                .find(|r| r["event"] == "network.denied" && matches(r)))
        })
        .with_context(|| format!("no audit record of {what}: {:#?}", self.audit()))
    }
}

/// The records of an audit log (none when it does not exist).
pub fn read_audit(path: &Path) -> Result<Vec<Value>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).context("an audit line is JSON"))
        .collect()
}

/// The events of `records` that belong to container `id`, in order.
pub fn events(records: &[Value], id: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["container"] == id)
        .filter_map(|r| r["event"].as_str().map(str::to_string))
        .collect()
}
