//! Bundle mode: which MXC policy governs a container, and applying it to the engine's spec.
//!
//! Resolution order (first match wins): annotation `io.mxc.config` (inline JSON), annotation
//! `io.mxc.config.name` (a file in the node's policy directory), the node's default policy, the
//! built-in default-deny profile.

use std::path::PathBuf;

use oci_spec::runtime::Spec;

/// What the caller knows about the node: parsed from the node configuration TOML
/// (`/etc/mxc/config.toml`, `mxc-runtime --config FILE`, the shim's `ConfigPath`).
#[derive(Debug, Clone, Default)]
pub struct NodeContext {
    /// Path of the node configuration file, if any was given or found.
    pub config_path: Option<PathBuf>,
    /// A default policy file given on the command line (`mxc-runtime --policy FILE`).
    pub default_policy: Option<PathBuf>,
}

/// The policy that was applied, for logs, audit records and the timeout.
#[derive(Debug, Clone, Default)]
pub struct AppliedPolicy {
    /// Where the policy came from, e.g. `annotation io.mxc.config` or a file path.
    pub source: String,
    /// sha256 of the normalised policy.
    pub sha256: String,
    /// `process.timeout` in milliseconds, if the policy sets one.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Resolves the container's policy and rewrites `spec` so that it enforces it.
/// Called by `create` before anything is set up; an error must leave nothing behind.
pub fn apply_bundle_policy(
    _spec: &mut Spec,
    _node: &NodeContext,
) -> Result<AppliedPolicy, PolicyError> {
    // Filled in by the policy work (bundle mode in mxc-translate).
    Ok(AppliedPolicy::default())
}
