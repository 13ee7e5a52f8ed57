//! Bundle mode: the policy applied on top of the spec an engine wrote (image rootfs, engine
//! mounts, maybe a network namespace the engine set up).
//!
//! The spec is edited as JSON, in place: what the policy does not touch stays as the engine
//! wrote it, including fields newer than any typed model of the runtime spec.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::staging::StagingPlan;
use super::{environment, no_capabilities, policy_annotations, policy_mounts, seccomp};
use super::{MASKED_PATHS, READONLY_PATHS, USER_NAMESPACE_LIMITS};
use crate::policy::{MountAction, Policy};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "the policy requires a private network namespace, but the container shares the host's \
         (host network); run it with its own network namespace"
    )]
    HostNetwork,
    #[error(
        "the policy grants host paths, but the container runs as root without a user namespace, \
         which would make it root over those host files; run it as a non-root user \
         (docker --user, securityContext.runAsUser) or enable user namespaces"
    )]
    RootOverHostPaths,
    #[error("the bundle's config.json cannot be represented: {0}")]
    Spec(String),
    #[error("{path} exceeds the node's ceiling: {reason}")]
    Exceeds { path: String, reason: String },
}

/// What the node's administrator lets an engine's spec keep or ask for (the node's ceiling),
/// and where the runtime stages grants.
#[derive(Debug, Clone)]
pub struct BundleOptions<'a> {
    /// Where the runtime stages grants: a directory only it can write.
    pub staging_dir: &'a Path,
    /// Capabilities the spec may keep; every other one is dropped.
    pub capabilities: &'a [String],
    /// Whether the spec may keep `noNewPrivileges: false` (otherwise it is always true).
    pub new_privileges: bool,
    /// The largest memory limit (bytes) and pids limit the spec may set.
    pub memory_max: Option<u64>,
    pub pids_max: Option<i64>,
}

impl<'a> BundleOptions<'a> {
    /// What a node without a ceiling of its own allows: no capabilities, `noNewPrivileges`
    /// always, any resource limit the engine sets.
    pub fn strict(staging_dir: &'a Path) -> BundleOptions<'a> {
        BundleOptions {
            staging_dir,
            capabilities: &[],
            new_privileges: false,
            memory_max: None,
            pids_max: None,
        }
    }
}

/// Rewrites the engine's spec (its `config.json` as JSON) so that it enforces `policy`,
/// binding staged grants from `options.staging_dir`, and returns what the runtime must stage
/// there before it creates the container.
pub fn apply_to_bundle(
    policy: &Policy,
    spec: &mut Value,
    options: &BundleOptions,
) -> Result<StagingPlan, BundleError> {
    let root = spec
        .as_object_mut()
        .ok_or(BundleError::Spec("not an object".into()))?;

    let linux = object(root, "linux");
    let namespaces: Vec<String> = linux
        .get("namespaces")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|ns| ns.get("type").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if !namespaces.iter().any(|t| t == "network") {
        return Err(BundleError::HostNetwork);
    }
    let grants_host_paths = policy
        .mounts
        .iter()
        .any(|m| matches!(m.action, MountAction::Bind { .. }));
    let uid = root
        .get("process")
        .and_then(|p| p.get("user"))
        .and_then(|u| u.get("uid"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if grants_host_paths && uid == 0 && !namespaces.iter().any(|t| t == "user") {
        return Err(BundleError::RootOverHostPaths);
    }

    // Privileges.
    let process = object(root, "process");
    let base_env: Vec<String> = process
        .get("env")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    process.insert("env".into(), json!(environment(policy, &base_env, None)));
    let capabilities = match process.get("capabilities") {
        Some(asked) if !options.capabilities.is_empty() => {
            keep_capabilities(asked, options.capabilities)
        }
        _ => no_capabilities(),
    };
    process.insert("capabilities".into(), capabilities);
    let keeps_new_privileges = options.new_privileges
        && process.get("noNewPrivileges").and_then(Value::as_bool) == Some(false);
    process.insert("noNewPrivileges".into(), Value::Bool(!keeps_new_privileges));

    // Mounts: the policy's after the engine's, so the policy has the last word.
    let planned = policy_mounts(&policy.mounts, options.staging_dir);
    let limits = policy.limits;
    let list = root
        .entry("mounts")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = list {
        list.extend(planned.mounts);
    }

    let linux = object(root, "linux");
    let mut masked: Vec<String> = MASKED_PATHS.iter().map(|s| s.to_string()).collect();
    masked.extend(planned.masked);
    union(linux, "maskedPaths", masked);
    let mut readonly: Vec<String> = READONLY_PATHS.iter().map(|s| s.to_string()).collect();
    readonly.extend(planned.readonly_after);
    union(linux, "readonlyPaths", readonly);

    // A tmpfs /tmp without a size gets the node's.
    for mount in list_mut(root, "mounts") {
        let tmp = mount.get("destination").and_then(Value::as_str) == Some("/tmp")
            && mount.get("type").and_then(Value::as_str) == Some("tmpfs");
        if !tmp {
            continue;
        }
        let options = mount
            .as_object_mut()
            .map(|m| m.entry("options").or_insert_with(|| json!([])));
        if let Some(Value::Array(options)) = options {
            if !options
                .iter()
                .any(|o| o.as_str().is_some_and(|o| o.starts_with("size=")))
            {
                options.push(json!(format!("size={}", limits.tmp_size)));
            }
        }
    }

    let linux = object(root, "linux");
    let resources = object(linux, "resources");
    let memory = object(resources, "memory");
    match memory
        .get("limit")
        .and_then(Value::as_i64)
        .filter(|l| *l > 0)
    {
        None => {
            memory.insert("limit".into(), json!(limits.memory));
            memory.insert("swap".into(), json!(limits.memory));
        }
        Some(asked) if options.memory_max.is_some_and(|max| asked as u64 > max) => {
            return Err(BundleError::Exceeds {
                path: "linux.resources.memory.limit".into(),
                reason: format!(
                    "{asked} bytes is more than the node's ceiling of {} bytes",
                    options.memory_max.unwrap_or_default()
                ),
            });
        }
        Some(_) => {}
    }
    let pids = object(resources, "pids");
    match pids.get("limit").and_then(Value::as_i64).filter(|l| *l > 0) {
        None => {
            pids.insert("limit".into(), json!(limits.pids));
        }
        Some(asked) if options.pids_max.is_some_and(|max| asked > max) => {
            return Err(BundleError::Exceeds {
                path: "linux.resources.pids.limit".into(),
                reason: format!(
                    "{asked} is more than the node's ceiling of {}",
                    options.pids_max.unwrap_or_default()
                ),
            });
        }
        Some(_) => {}
    }
    // A user namespace the runtime creates gets its per-namespace limits.
    let new_user_namespace = linux
        .get("namespaces")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter().any(|ns| {
                ns.get("type").and_then(Value::as_str) == Some("user")
                    && ns
                        .get("path")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
            })
        });
    if new_user_namespace {
        let sysctl = object(linux, "sysctl");
        for (key, value) in USER_NAMESPACE_LIMITS {
            sysctl
                .entry(key.to_string())
                .or_insert_with(|| json!(value));
        }
    }

    // Seccomp: keep an engine profile (usually an allow-list) but take over the syscalls this
    // project governs; without one, use ours.
    let merged = match linux.get("seccomp") {
        Some(engine) if engine.is_object() => merge_seccomp(engine.clone()),
        _ => seccomp::profile(),
    };
    linux.insert("seccomp".into(), merged);

    let annotations = object(root, "annotations");
    for (key, value) in policy_annotations(policy) {
        annotations.insert(key.to_string(), Value::String(value));
    }
    Ok(planned.staging)
}

fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

fn list_mut<'a>(map: &'a mut Map<String, Value>, key: &str) -> Vec<&'a mut Value> {
    match map.get_mut(key) {
        Some(Value::Array(list)) => list.iter_mut().collect(),
        _ => Vec::new(),
    }
}

/// The spec's capability sets, each cut down to `allowed`.
fn keep_capabilities(asked: &Value, allowed: &[String]) -> Value {
    let mut kept = no_capabilities();
    for set in [
        "bounding",
        "effective",
        "inheritable",
        "permitted",
        "ambient",
    ] {
        let names: Vec<Value> = asked
            .get(set)
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter(|c| c.as_str().is_some_and(|c| allowed.iter().any(|a| a == c)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        kept[set] = Value::Array(names);
    }
    kept
}

fn union(map: &mut Map<String, Value>, key: &str, add: Vec<String>) {
    let mut list: Vec<String> = map
        .get(key)
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for item in add {
        if !list.contains(&item) {
            list.push(item);
        }
    }
    map.insert(key.into(), json!(list));
}

fn merge_seccomp(mut engine: Value) -> Value {
    let governed = seccomp::governed_names();
    let mut rules: Vec<Value> = engine
        .get("syscalls")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for rule in &mut rules {
        if let Some(Value::Array(names)) = rule.get_mut("names") {
            names.retain(|n| n.as_str().is_none_or(|n| !governed.contains(&n)));
        }
    }
    rules.retain(|rule| {
        rule.get("names")
            .and_then(Value::as_array)
            .is_some_and(|names| !names.is_empty())
    });
    // The engine profile's default may be ERRNO (allow-list): clone without namespace flags must
    // then be allowed explicitly, before our narrower deny rules.
    let default_allows =
        engine.get("defaultAction").and_then(Value::as_str) == Some("SCMP_ACT_ALLOW");
    if !default_allows {
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW"}));
    }
    rules.extend(seccomp::deny_rules());
    engine["syscalls"] = Value::Array(rules);
    engine
}
