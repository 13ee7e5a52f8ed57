//! Bundle mode: the policy applied on top of the spec an engine wrote (image rootfs, engine
//! mounts, maybe a network namespace the engine set up).

use oci_spec::runtime::Spec;
use serde_json::{json, Map, Value};

use super::{environment, no_capabilities, policy_annotations, policy_mounts, seccomp};
use super::{MASKED_PATHS, READONLY_PATHS};
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
}

/// Rewrites `spec` so that it enforces `policy`.
pub fn apply_to_bundle(policy: &Policy, spec: &mut Spec) -> Result<(), BundleError> {
    let mut value = serde_json::to_value(&*spec).map_err(|e| BundleError::Spec(e.to_string()))?;
    let root = value
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
    process.insert(
        "env".into(),
        json!(environment(policy, &base_env, None, false)),
    );
    process.insert("capabilities".into(), no_capabilities());
    process.insert("noNewPrivileges".into(), Value::Bool(true));

    // Mounts: the policy's after the engine's, so the policy has the last word.
    let planned = policy_mounts(&policy.mounts);
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

    *spec = serde_json::from_value(value).map_err(|e| BundleError::Spec(e.to_string()))?;
    Ok(())
}

fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
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
