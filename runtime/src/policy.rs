//! Bundle mode: which MXC policy governs a container, and applying it to the engine's spec.
//!
//! Resolution order (first match wins): annotation `io.mxc.config` (inline JSON), annotation
//! `io.mxc.config.name` (a file in the node's policy directory), the node's default policy, the
//! built-in default-deny profile.

use std::path::{Path, PathBuf};

use mxc_translate::compile::annotations;
use mxc_translate::{
    apply_to_bundle, parse, resolve, Expect, Identity, NetworkPlan, ParseOptions, Policy, RealHost,
    ResolveOptions, Source, Target,
};
use oci_spec::runtime::Spec;
use serde::Deserialize;

/// Annotation carrying a policy as inline JSON.
pub const CONFIG_ANNOTATION: &str = "io.mxc.config";
/// Annotation naming a policy file in the node's policy directory.
pub const CONFIG_NAME_ANNOTATION: &str = "io.mxc.config.name";
/// Where the node configuration lives unless told otherwise.
pub const DEFAULT_NODE_CONFIG: &str = "/etc/mxc/config.toml";

/// The built-in default-deny profile: no network, no host paths, no capabilities.
const DEFAULT_DENY: &str = r#"{"version": "0.8.0-alpha"}"#;

/// What the caller knows about the node: where the node configuration is, and a default policy
/// given on the command line (`mxc-runtime --policy FILE`).
#[derive(Debug, Clone, Default)]
pub struct NodeContext {
    /// The node configuration file; `None` reads [`DEFAULT_NODE_CONFIG`] if it exists.
    pub config_path: Option<PathBuf>,
    /// A default policy file, overriding the node configuration's `default_policy`.
    pub default_policy: Option<PathBuf>,
    /// The spec was compiled from its policy in this process (`mxc run`): apply nothing more.
    /// Never derived from anything a container's author controls.
    pub precompiled: bool,
}

/// The node configuration (`/etc/mxc/config.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Directory of named policies (`io.mxc.config.name`).
    #[serde(default = "default_policy_dir")]
    pub policy_dir: PathBuf,
    /// The policy for containers that name none.
    pub default_policy: Option<PathBuf>,
    /// Where audit records go.
    #[serde(default = "default_audit_log")]
    pub audit_log: PathBuf,
    /// Host paths (and everything below them) that a policy supplied in an annotation may grant.
    /// Empty by default: a pod author must not reach host paths the administrator did not allow.
    #[serde(default)]
    pub annotation_host_paths: Vec<PathBuf>,
}

fn default_policy_dir() -> PathBuf {
    PathBuf::from("/etc/mxc/policies")
}

fn default_audit_log() -> PathBuf {
    PathBuf::from("/var/log/mxc/audit.jsonl")
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            policy_dir: default_policy_dir(),
            default_policy: None,
            audit_log: default_audit_log(),
            annotation_host_paths: Vec::new(),
        }
    }
}

impl NodeConfig {
    /// Reads the node configuration named by `context` (or the default path when it exists).
    pub fn load(context: &NodeContext) -> Result<NodeConfig, PolicyError> {
        let (path, required) = match &context.config_path {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from(DEFAULT_NODE_CONFIG), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(NodeConfig::default())
            }
            Err(e) => {
                return Err(PolicyError(format!(
                    "{}: cannot read node configuration: {e}",
                    path.display()
                )))
            }
        };
        toml::from_str(&text).map_err(|e| {
            let message = e.message().to_string();
            PolicyError(format!(
                "{}: invalid node configuration: {message}",
                path.display()
            ))
        })
    }
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
    /// The network plan to enforce around the container (bundle mode).
    pub network: Option<NetworkPlan>,
    /// The node's audit log, for denial records.
    pub audit_log: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Resolves the container's policy and rewrites `spec` so that it enforces it.
/// Called by `create` before anything is set up; an error leaves nothing behind.
pub fn apply_bundle_policy(
    spec: &mut Spec,
    node: &NodeContext,
) -> Result<AppliedPolicy, PolicyError> {
    if node.precompiled {
        let annotation = |key: &str| {
            spec.annotations()
                .as_ref()
                .and_then(|a| a.get(key))
                .cloned()
        };
        return Ok(AppliedPolicy {
            source: annotation(annotations::POLICY_SOURCE).unwrap_or_default(),
            sha256: annotation(annotations::POLICY_SHA256).unwrap_or_default(),
            timeout_ms: annotation(annotations::TIMEOUT_MS).and_then(|v| v.parse().ok()),
            network: None,
            audit_log: None,
        });
    }
    let config = NodeConfig::load(node)?;
    let policy = select(spec, node, &config)?;
    if joins_host_network(spec) {
        return Err(PolicyError(format!(
            "{}: {}",
            policy.source,
            mxc_translate::BundleError::HostNetwork
        )));
    }
    apply_to_bundle(&policy, spec).map_err(|e| PolicyError(format!("{}: {e}", policy.source)))?;
    Ok(AppliedPolicy {
        source: policy.source.to_string(),
        sha256: policy.sha256.clone(),
        timeout_ms: policy.timeout_ms.map(u64::from),
        network: Some(policy.network.clone()),
        audit_log: Some(config.audit_log.clone()),
    })
}

/// Finds and resolves the policy for a container (first match wins).
pub fn select(spec: &Spec, node: &NodeContext, config: &NodeConfig) -> Result<Policy, PolicyError> {
    let annotation = |key: &str| {
        spec.annotations()
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    if let Some(inline) = annotation(CONFIG_ANNOTATION) {
        let source = Source::Annotation(CONFIG_ANNOTATION.to_string());
        return load(source, &inline, Some(config.annotation_host_paths.clone()));
    }
    if let Some(name) = annotation(CONFIG_NAME_ANNOTATION) {
        let path = named_policy(&config.policy_dir, &name)?;
        return load_file(&path);
    }
    if let Some(path) = node
        .default_policy
        .as_ref()
        .or(config.default_policy.as_ref())
    {
        return load_file(path);
    }
    load(
        Source::Named("built-in default-deny policy".into()),
        DEFAULT_DENY,
        None,
    )
}

fn named_policy(dir: &Path, name: &str) -> Result<PathBuf, PolicyError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !plain {
        return Err(PolicyError(format!(
            "annotation {CONFIG_NAME_ANNOTATION}: {name:?} is not a plain policy name (letters, \
             digits, '-', '_', '.')"
        )));
    }
    let file = if name.ends_with(".json") {
        name.to_string()
    } else {
        format!("{name}.json")
    };
    let path = dir.join(file);
    if !path.is_file() {
        return Err(PolicyError(format!(
            "annotation {CONFIG_NAME_ANNOTATION}: no policy named {name:?} in {}",
            dir.display()
        )));
    }
    Ok(path)
}

fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PolicyError(format!("{}: cannot read policy: {e}", path.display())))?;
    load(Source::File(path.to_path_buf()), &text, None)
}

fn load(
    source: Source,
    text: &str,
    allowed_host_paths: Option<Vec<PathBuf>>,
) -> Result<Policy, PolicyError> {
    let options = ParseOptions {
        strict: false,
        expect: Expect::BundlePolicy,
        ..ParseOptions::default()
    };
    let one_line = |errors: mxc_translate::ConfigErrors| {
        PolicyError(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    let config = parse(source, text, options).map_err(one_line)?;
    let options = ResolveOptions {
        target: Target::Bundle { allowed_host_paths },
        // Bundle mode runs as the engine's user; grants are not checked against an identity.
        identity: Identity::NOBODY,
        hosts: Vec::new(),
    };
    resolve(&config, &RealHost, &options).map_err(one_line)
}

/// Whether the spec joins this host's own network namespace by path (Docker's `--network
/// host` names it instead of omitting the namespace).
fn joins_host_network(spec: &Spec) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(host) = std::fs::metadata("/proc/self/ns/net") else {
        return false;
    };
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    namespaces.iter().any(|ns| {
        ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network
            && ns.path().as_ref().is_some_and(|path| {
                std::fs::metadata(path)
                    .is_ok_and(|m| m.ino() == host.ino() && m.dev() == host.dev())
            })
    })
}
