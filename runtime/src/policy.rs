//! Bundle mode: which MXC policy governs a container, and applying it to the engine's spec.
//!
//! Resolution order (first match wins): annotation `io.mxc.config` (inline JSON), annotation
//! `io.mxc.config.name` (a file in the node's policy directory), the node's default policy, the
//! built-in default-deny profile.

use std::path::{Path, PathBuf};

use mxc_translate::ceiling::Ceiling;
use mxc_translate::compile::annotations;
use mxc_translate::hosts::{HostPattern, HostRule};
use mxc_translate::network::Action;
use mxc_translate::{
    apply_to_bundle, parse, resolve, BundleOptions, Expect, Identity, Limits, NetworkPlan,
    ParseOptions, Policy, RealHost, ResolveOptions, Source, Target,
};
use oci_spec::runtime::Spec;
use serde::Deserialize;

use crate::egress::Resolver;

/// Annotation carrying a policy as inline JSON.
pub(crate) const CONFIG_ANNOTATION: &str = "io.mxc.config";
/// Annotation naming a policy file in the node's policy directory.
pub(crate) const CONFIG_NAME_ANNOTATION: &str = "io.mxc.config.name";
/// Annotation carrying host-name rules for a container's egress, for every schema version (an
/// mxc-oci extension that MXC's own parser never sees): `{"allow": [PATTERN, ...], "deny":
/// [PATTERN, ...]}`, bounded by the node's ceiling.
pub const EGRESS_HOSTS_ANNOTATION: &str = "io.mxc.egress.hosts";
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
    /// Host paths (and everything below them) that a policy supplied in an annotation may grant,
    /// on top of what the default policy grants, when there is no `[ceiling]`.
    #[serde(default)]
    pub annotation_host_paths: Vec<PathBuf>,
    /// Bounds for containers whose spec sets none.
    #[serde(default)]
    pub limits: NodeLimits,
    /// The most any container's policy and spec may ask for; see [`NodeCeiling`].
    pub ceiling: Option<NodeCeiling>,
    /// Host-name rules for every container, and where the egress proxy looks names up.
    #[serde(default)]
    pub egress: NodeEgress,
}

/// `[egress]`: host-name rules every container on the node gets on top of its policy's (an
/// mxc-oci extension, for every schema version), and the resolver the egress proxy asks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEgress {
    /// Host-name patterns every container may reach (they also widen the ceiling by as much).
    #[serde(default, deserialize_with = "allow_host_patterns")]
    pub allow_hosts: Vec<HostPattern>,
    /// Host-name patterns no container may reach (deny beats allow).
    #[serde(default, deserialize_with = "deny_host_patterns")]
    pub deny_hosts: Vec<HostPattern>,
    /// A DNS server (`ADDRESS[:PORT]`) instead of the host's resolver.
    #[serde(default, deserialize_with = "resolver")]
    pub resolver: Option<Resolver>,
}

impl NodeEgress {
    /// The rules, each named by where the node configuration has it.
    pub fn rules(&self) -> Vec<HostRule> {
        let mut rules = Vec::new();
        for (key, list, action) in [
            ("allow_hosts", &self.allow_hosts, Action::Allow),
            ("deny_hosts", &self.deny_hosts, Action::Deny),
        ] {
            for (i, pattern) in list.iter().enumerate() {
                rules.push(HostRule {
                    origin: format!("node configuration [egress] {key}[{i}]"),
                    pattern: pattern.clone(),
                    action,
                });
            }
        }
        rules
    }
}

/// `[limits]`: what a container gets when its spec sets no limit of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLimits {
    #[serde(default = "default_memory", deserialize_with = "size")]
    pub memory: u64,
    #[serde(default = "default_tmp_size", deserialize_with = "size")]
    pub tmp_size: u64,
    #[serde(default = "default_pids")]
    pub pids: i64,
}

fn default_memory() -> u64 {
    Limits::DEFAULT.memory
}
fn default_tmp_size() -> u64 {
    Limits::DEFAULT.tmp_size
}
fn default_pids() -> i64 {
    Limits::DEFAULT.pids
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            memory: default_memory(),
            tmp_size: default_tmp_size(),
            pids: default_pids(),
        }
    }
}

impl NodeLimits {
    fn limits(&self) -> Limits {
        Limits {
            memory: self.memory,
            tmp_size: self.tmp_size,
            pids: self.pids,
        }
    }
}

/// `[ceiling]`: the most any container may get on this node, whatever its policy (from an
/// annotation, a named policy or the node's default) or its spec asks for. A policy or spec
/// that asks for more is refused, naming the field. Without this section, the node's default
/// policy is the ceiling for policies from annotations, and specs keep no capability and always
/// run with `noNewPrivileges`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCeiling {
    /// Destinations (CIDRs) a policy may allow egress to; `["0.0.0.0/0", "::/0"]` for any.
    #[serde(default)]
    pub egress: Vec<ipnet::IpNet>,
    /// Host-name patterns (`api.example.com`, `*.example.com`, `**.example.com`, `:port`) a
    /// policy's own host patterns must lie within.
    #[serde(default, deserialize_with = "host_patterns")]
    pub egress_hosts: Vec<HostPattern>,
    /// Proxies (URLs) a policy may send all its traffic through.
    #[serde(default)]
    pub proxies: Vec<String>,
    /// Host paths (and what lies below them) a policy may grant read-only.
    #[serde(default)]
    pub readonly_host_paths: Vec<PathBuf>,
    /// Host paths (and what lies below them) a policy may grant read-write or read-only.
    #[serde(default)]
    pub readwrite_host_paths: Vec<PathBuf>,
    /// Capabilities an engine's spec may keep (`CAP_NET_BIND_SERVICE`, ...); all others are
    /// dropped. Empty by default.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Whether an engine's spec may set `noNewPrivileges: false` (setuid binaries then work in
    /// the container, and the runtime's set-id seccomp filter is not installed).
    #[serde(default)]
    pub new_privileges: bool,
    /// The largest memory limit an engine's spec may set.
    #[serde(default, deserialize_with = "optional_size")]
    pub memory: Option<u64>,
    /// The largest pids limit an engine's spec may set.
    pub pids: Option<i64>,
}

impl NodeCeiling {
    fn policy_ceiling(&self) -> Ceiling {
        Ceiling {
            egress: self.egress.clone(),
            egress_hosts: self.egress_hosts.clone(),
            proxies: self.proxies.clone(),
            readonly_paths: self.readonly_host_paths.clone(),
            readwrite_paths: self.readwrite_host_paths.clone(),
        }
    }
}

fn size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(bytes) => Ok(bytes),
        Size::Text(text) => mxc_translate::size::parse_size(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a size (a number with an optional K, M, G or T suffix)"
            ))
        }),
    }
}

fn patterns<'de, D: serde::Deserializer<'de>>(
    key: &str,
    deserializer: D,
) -> Result<Vec<HostPattern>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            HostPattern::parse(text).map_err(|reason| {
                serde::de::Error::custom(format!("{key}[{i}] = {text:?}: {reason}"))
            })
        })
        .collect()
}

fn host_patterns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<HostPattern>, D::Error> {
    patterns("egress_hosts", d)
}

fn allow_host_patterns<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<HostPattern>, D::Error> {
    patterns("allow_hosts", d)
}

fn deny_host_patterns<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<HostPattern>, D::Error> {
    patterns("deny_hosts", d)
}

fn resolver<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Resolver>, D::Error> {
    let text = String::deserialize(d)?;
    Resolver::parse(&text)
        .map(Some)
        .map_err(|reason| serde::de::Error::custom(format!("resolver: {reason}")))
}

fn optional_size<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    size(deserializer).map(Some)
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
            limits: NodeLimits::default(),
            ceiling: None,
            egress: NodeEgress::default(),
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
pub(crate) struct AppliedPolicy {
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
    /// Grants to stage before the container is created.
    pub staging: mxc_translate::compile::staging::StagingPlan,
    /// Where the egress proxy looks host names up.
    pub resolver: Resolver,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Resolves the container's policy and rewrites the engine's spec (`json`, which `spec` was
/// read from) so that it enforces it. Called by `create` before anything is set up; an error
/// leaves nothing behind.
pub(crate) fn apply_bundle_policy(
    spec: &Spec,
    json: &mut serde_json::Value,
    node: &NodeContext,
    staging_dir: &Path,
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
            staging: Default::default(),
            resolver: Resolver::System,
        });
    }
    let config = NodeConfig::load(node)?;
    let identity = workload_identity(spec);
    let annotation_hosts = match spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(EGRESS_HOSTS_ANNOTATION))
    {
        Some(text) => egress_hosts_annotation(text)?,
        None => Vec::new(),
    };
    let mut hosts = config.egress.rules();
    hosts.extend(annotation_hosts.iter().map(|rule| HostRule {
        origin: format!("annotation {EGRESS_HOSTS_ANNOTATION} {}", rule.origin),
        ..rule.clone()
    }));
    let selected = select(spec, node, &config, identity, &hosts)?;
    let policy = selected.policy;
    let ceiling_error = |errors: mxc_translate::ConfigErrors| {
        PolicyError(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    // The annotation's host names first, so that its error names it; then the policy, whose
    // host rules include the node's (within its bounds by definition) and the annotation's.
    let bounded = config.ceiling.is_some() || selected.from_annotation;
    if bounded || !annotation_hosts.is_empty() {
        let mut ceiling = annotation_ceiling(node, &config, identity)?;
        ceiling
            .check_hosts(
                &Source::Annotation(EGRESS_HOSTS_ANNOTATION.to_string()),
                &annotation_hosts,
            )
            .map_err(ceiling_error)?;
        if bounded {
            ceiling.egress_hosts.extend(
                annotation_hosts
                    .iter()
                    .filter(|r| r.action == Action::Allow)
                    .map(|r| r.pattern.clone()),
            );
            ceiling.check(&policy).map_err(ceiling_error)?;
        }
    }
    if joins_host_network(spec) {
        return Err(PolicyError(format!(
            "{}: {}",
            policy.source,
            mxc_translate::BundleError::HostNetwork
        )));
    }
    let node_ceiling = config.ceiling.clone().unwrap_or_default();
    let options = BundleOptions {
        staging_dir,
        capabilities: &node_ceiling.capabilities,
        new_privileges: node_ceiling.new_privileges,
        memory_max: node_ceiling.memory,
        pids_max: node_ceiling.pids,
    };
    let staging = apply_to_bundle(&policy, json, &options)
        .map_err(|e| PolicyError(format!("{}: {e}", policy.source)))?;
    Ok(AppliedPolicy {
        source: policy.source.to_string(),
        sha256: policy.sha256.clone(),
        timeout_ms: policy.timeout_ms.map(u64::from),
        network: Some(policy.network.clone()),
        audit_log: Some(config.audit_log.clone()),
        staging,
        resolver: config.egress.resolver.clone().unwrap_or(Resolver::System),
    })
}

/// The most a policy or host rules from an annotation may ask for on this node: its
/// `[ceiling]`, or without one its default policy (the node's own host rules included) and
/// `annotation_host_paths`; either way widened by the node's own `[egress]` allow patterns.
pub fn annotation_ceiling(
    node: &NodeContext,
    config: &NodeConfig,
    identity: Identity,
) -> Result<Ceiling, PolicyError> {
    let node_hosts = config.egress.rules();
    let mut ceiling = match &config.ceiling {
        Some(ceiling) => ceiling.policy_ceiling(),
        None => {
            let mut ceiling =
                Ceiling::of_policy(&default_policy(node, config, identity, &node_hosts)?);
            ceiling
                .readwrite_paths
                .extend(config.annotation_host_paths.iter().cloned());
            ceiling
        }
    };
    ceiling.egress_hosts.extend(
        node_hosts
            .into_iter()
            .filter(|r| r.action == Action::Allow)
            .map(|r| r.pattern),
    );
    Ok(ceiling)
}

/// The host rules an [`EGRESS_HOSTS_ANNOTATION`] value carries, named by their place in it
/// (`allow[0]`).
pub fn egress_hosts_annotation(text: &str) -> Result<Vec<HostRule>, PolicyError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Lists {
        #[serde(default)]
        allow: Vec<String>,
        #[serde(default)]
        deny: Vec<String>,
    }
    let lists: Lists = serde_json::from_str(text).map_err(|e| {
        PolicyError(format!(
            "annotation {EGRESS_HOSTS_ANNOTATION}: not {{\"allow\": [PATTERN, ...], \"deny\": \
             [PATTERN, ...]}}: {e}"
        ))
    })?;
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (key, list, action) in [
        ("allow", &lists.allow, Action::Allow),
        ("deny", &lists.deny, Action::Deny),
    ] {
        for (i, pattern) in list.iter().enumerate() {
            match HostRule::parse(&format!("{key}[{i}]"), pattern, action) {
                Ok(rule) => rules.push(rule),
                Err(reason) => {
                    errors.push(format!("annotation {EGRESS_HOSTS_ANNOTATION}: {reason}"))
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(PolicyError(errors.join("; ")))
    }
}

/// The host uid and gid the container's process runs as: its `process.user` through the user
/// namespace's mappings, when it has one. Grants, and symlinks on their way, are judged
/// against it.
fn workload_identity(spec: &Spec) -> Identity {
    let user = spec.process().as_ref().map(|p| p.user().clone());
    let (uid, gid) = user.map_or((0, 0), |u| (u.uid(), u.gid()));
    let linux = spec.linux().as_ref();
    let through = |id: u32, mappings: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        mappings
            .and_then(|list| {
                list.iter().find(|m| {
                    id >= m.container_id()
                        && u64::from(id) < u64::from(m.container_id()) + u64::from(m.size())
                })
            })
            .map_or(id, |m| m.host_id() + (id - m.container_id()))
    };
    Identity {
        uid: through(uid, linux.and_then(|l| l.uid_mappings().as_ref())),
        gid: through(gid, linux.and_then(|l| l.gid_mappings().as_ref())),
    }
}

/// A container's policy, and whether a pod author supplied it (an inline annotation).
pub(crate) struct Selected {
    pub policy: Policy,
    pub from_annotation: bool,
}

/// Finds and resolves the policy for a container (first match wins).
pub(crate) fn select(
    spec: &Spec,
    node: &NodeContext,
    config: &NodeConfig,
    identity: Identity,
    hosts: &[HostRule],
) -> Result<Selected, PolicyError> {
    let annotation = |key: &str| {
        spec.annotations()
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    let limits = config.limits.limits();
    if let Some(inline) = annotation(CONFIG_ANNOTATION) {
        let source = Source::Annotation(CONFIG_ANNOTATION.to_string());
        return Ok(Selected {
            policy: load(source, &inline, identity, limits, hosts)?,
            from_annotation: true,
        });
    }
    let policy = if let Some(name) = annotation(CONFIG_NAME_ANNOTATION) {
        let path = named_policy(&config.policy_dir, &name)?;
        load_file(&path, identity, limits, hosts)?
    } else {
        default_policy(node, config, identity, hosts)?
    };
    Ok(Selected {
        policy,
        from_annotation: false,
    })
}

/// The node's default policy, or the built-in default-deny profile, with `hosts` added.
fn default_policy(
    node: &NodeContext,
    config: &NodeConfig,
    identity: Identity,
    hosts: &[HostRule],
) -> Result<Policy, PolicyError> {
    let limits = config.limits.limits();
    match node
        .default_policy
        .as_ref()
        .or(config.default_policy.as_ref())
    {
        Some(path) => load_file(path, identity, limits, hosts),
        None => load(
            Source::Named("built-in default-deny policy".into()),
            DEFAULT_DENY,
            identity,
            limits,
            hosts,
        ),
    }
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

fn load_file(
    path: &Path,
    identity: Identity,
    limits: Limits,
    hosts: &[HostRule],
) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PolicyError(format!("{}: cannot read policy: {e}", path.display())))?;
    load(
        Source::File(path.to_path_buf()),
        &text,
        identity,
        limits,
        hosts,
    )
}

fn load(
    source: Source,
    text: &str,
    identity: Identity,
    limits: Limits,
    hosts: &[HostRule],
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
        target: Target::Bundle,
        identity,
        hosts: hosts.to_vec(),
        limits,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A node configuration file with `text`, and a spec with `annotations`.
    fn node_and_spec(text: &str, annotations: &[(&str, &str)]) -> (tempfile::TempDir, Spec) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
        let mut spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "network"}]},
        }))
        .unwrap();
        spec.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        (dir, spec)
    }

    fn apply(dir: &tempfile::TempDir, spec: &mut Spec) -> Result<AppliedPolicy, PolicyError> {
        let node = NodeContext {
            config_path: Some(dir.path().join("config.toml")),
            ..NodeContext::default()
        };
        let mut json = serde_json::to_value(&*spec).unwrap();
        apply_bundle_policy(spec, &mut json, &node, &dir.path().join("stage"))
    }

    fn host_rules(applied: &AppliedPolicy) -> Vec<(String, String)> {
        match &applied.network {
            Some(NetworkPlan::Filtered(filter)) => filter
                .hosts
                .iter()
                .map(|h| (h.origin.clone(), h.pattern.to_string()))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_node_egress_section_adds_host_rules_and_a_resolver() {
        let (dir, mut spec) = node_and_spec(
            "[egress]\nallow_hosts = [\"*.example.test\"]\ndeny_hosts = [\"bad.example.test\"]\n\
             resolver = \"198.18.0.53\"\n",
            &[],
        );
        let applied = apply(&dir, &mut spec).unwrap();
        assert_eq!(
            host_rules(&applied),
            [
                (
                    "node configuration [egress] allow_hosts[0]".to_string(),
                    "*.example.test".to_string()
                ),
                (
                    "node configuration [egress] deny_hosts[0]".to_string(),
                    "bad.example.test".to_string()
                ),
            ]
        );
        assert_eq!(
            applied.resolver,
            Resolver::Server("198.18.0.53:53".parse().unwrap())
        );

        for (text, expected) in [
            (
                "[egress]\nallow_hosts = [\"*.co.uk\"]\n",
                "allow_hosts[0] = \"*.co.uk\"",
            ),
            (
                "[egress]\nresolver = \"dns.example\"\n",
                "resolver: \"dns.example\"",
            ),
            (
                "[egress]\nallow = [\"x.example\"]\n",
                "unknown field `allow`",
            ),
        ] {
            let (dir, mut spec) = node_and_spec(text, &[]);
            let error = apply(&dir, &mut spec).unwrap_err().to_string();
            assert!(
                error.contains("invalid node configuration") && error.contains(expected),
                "{error}"
            );
        }
    }

    #[test]
    fn the_annotation_adds_host_rules_within_the_ceiling() {
        let ceiling = "[ceiling]\negress_hosts = [\"**.allowed.test\"]\n";
        let (dir, mut spec) = node_and_spec(
            ceiling,
            &[(
                EGRESS_HOSTS_ANNOTATION,
                r#"{"allow": ["api.allowed.test"], "deny": ["other.test"]}"#,
            )],
        );
        let applied = apply(&dir, &mut spec).unwrap();
        assert_eq!(
            host_rules(&applied),
            [
                (
                    "annotation io.mxc.egress.hosts allow[0]".to_string(),
                    "api.allowed.test".to_string()
                ),
                (
                    "annotation io.mxc.egress.hosts deny[0]".to_string(),
                    "other.test".to_string()
                ),
            ]
        );
        assert_eq!(applied.resolver, Resolver::System);

        // Beyond the ceiling, malformed, or a bad pattern: refused, naming the annotation.
        for (node, value, expected) in [
            (
                ceiling,
                r#"{"allow": ["api.allowed.test", "other.test"]}"#,
                "annotation io.mxc.egress.hosts: allow[1] = \"other.test\": exceeds the node's ceiling",
            ),
            (
                "",
                r#"{"allow": ["api.allowed.test"]}"#,
                "annotation io.mxc.egress.hosts: allow[0] = \"api.allowed.test\": exceeds the node's ceiling",
            ),
            (ceiling, r#"["api.allowed.test"]"#, "annotation io.mxc.egress.hosts: not {"),
            (ceiling, r#"{"allow": ["*"]}"#, "annotation io.mxc.egress.hosts: allow[0] = \"*\""),
        ] {
            let (dir, mut spec) = node_and_spec(node, &[(EGRESS_HOSTS_ANNOTATION, value)]);
            let error = apply(&dir, &mut spec).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{error}");
        }

        // The node's own host rules widen its ceiling; a deny pattern never needs room.
        let (dir, mut spec) = node_and_spec(
            "[egress]\nallow_hosts = [\"api.allowed.test\"]\n",
            &[(
                EGRESS_HOSTS_ANNOTATION,
                r#"{"allow": ["api.allowed.test"], "deny": ["*.other.test"]}"#,
            )],
        );
        assert_eq!(host_rules(&apply(&dir, &mut spec).unwrap()).len(), 3);
    }
}
