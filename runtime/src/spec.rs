//! From a bundle's `config.json` to the effective spec that libcontainer runs.
//!
//! The bundle is read once: its version checked (OCI runtime-spec 1.0.x through 1.3.x), the
//! node's policy applied (`crate::policy`), the root filesystem made absolute and the cgroup
//! path settled. The result is written into the engine's own directory and libcontainer is
//! pointed there, so `exec` later sees the same policy-enforced spec, and the caller's bundle
//! is never modified.

use std::path::{Path, PathBuf};

use serde_json::value::RawValue;
use serde_json::Value;

use mxc_translate::compile::staging::StagingPlan;

use crate::policy::{self, AppliedPolicy, NodeContext};

/// Oldest and newest minor versions of runtime-spec 1.x accepted.
pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.3.0";
const MAX_MINOR: u64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {bundle}: cannot read config.json: {source}")]
    Read {
        bundle: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bundle {bundle}: config.json is not valid: {reason}")]
    Invalid { bundle: PathBuf, reason: String },
    #[error(
        "bundle {bundle}: unsupported ociVersion {version:?}: mxc-runtime runs runtime-spec {OCI_VERSION_MIN} through 1.3.x"
    )]
    UnsupportedVersion { bundle: PathBuf, version: String },
    #[error("bundle {bundle}: root filesystem {rootfs} {reason}")]
    Rootfs {
        bundle: PathBuf,
        rootfs: PathBuf,
        reason: &'static str,
    },
    #[error("bundle {bundle}: {reason}")]
    UserNamespace { bundle: PathBuf, reason: String },
    #[error("bundle {bundle}: policy rejected the container: {message}")]
    Policy { bundle: PathBuf, message: String },
}

/// The spec that will run, with the facts the engine records about it.
#[derive(Debug, Clone)]
pub struct EffectiveSpec {
    /// The spec that runs, as JSON: the runtime edits it here.
    pub json: Value,
    /// The engine's `config.json` as it was read, which [`EffectiveSpec::config_text`] keeps
    /// wherever `json` does not differ from it.
    pub engine_text: Vec<u8>,
    pub oci_version: String,
    pub rootfs: PathBuf,
    pub cgroup_path: PathBuf,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub user_namespace: bool,
    /// The container gets a new mount namespace (not the runtime's, not one joined by path).
    pub private_mount_namespace: bool,
    pub policy: AppliedPolicy,
    /// Grants to stage before the container is created.
    pub staging: StagingPlan,
}

/// Whether `version` is a runtime-spec version this runtime accepts: 1.0.x through 1.3.x,
/// with or without a pre-release or build suffix (`1.0.2-dev`, `1.2.0+rc1`).
pub fn version_supported(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default().trim();
    let mut parts = core.split('.');
    let major = parts.next().and_then(|p| p.parse::<u64>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u64>().ok());
    let patch_ok = parts.next().is_none_or(|p| p.parse::<u64>().is_ok());
    matches!((major, minor), (Some(1), Some(m)) if m <= MAX_MINOR)
        && patch_ok
        && parts.next().is_none()
}

/// The cgroup path libcontainer should use, from the spec's `linux.cgroupsPath`.
///
/// A systemd-style path (`slice:prefix:name`, what containerd and Docker pass with the systemd
/// driver) is expanded into the directories systemd itself would use
/// (`/system.slice/docker-<id>.scope`): on this host's hybrid layout libcontainer always uses
/// cgroupfs and would otherwise create a directory literally named `system.slice:docker:<id>`.
/// No path means `/<id>`; a relative path is taken from each hierarchy's root.
pub fn cgroup_path(spec_path: Option<&str>, id: &str) -> PathBuf {
    let Some(raw) = spec_path.filter(|p| !p.is_empty()) else {
        return PathBuf::from(format!("/{id}"));
    };
    let parts: Vec<&str> = raw.split(':').collect();
    if parts.len() == 3
        && !raw.starts_with('/')
        && (parts[0].is_empty() || parts[0].ends_with(".slice"))
    {
        let slice = if parts[0].is_empty() {
            "system.slice"
        } else {
            parts[0]
        };
        let mut path = expand_slice(slice);
        let (prefix, name) = (parts[1], parts[2]);
        let unit = if name.ends_with(".slice") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        path.push(unit);
        return path;
    }
    if raw.starts_with('/') {
        PathBuf::from(raw)
    } else {
        Path::new("/").join(raw)
    }
}

/// `a-b-c.slice` lives at `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root.
fn expand_slice(slice: &str) -> PathBuf {
    let mut path = PathBuf::from("/");
    let Some(stem) = slice.strip_suffix(".slice") else {
        path.push(slice);
        return path;
    };
    if stem == "-" || stem.is_empty() {
        return path;
    }
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    path
}

/// Why a spec or an update that turns the OOM killer off is refused.
pub(crate) const OOM_KILLER_STAYS_ON: &str =
    "true is not supported: the OOM killer stays on (a container past its memory limit is killed); leave it unset or false";

/// Reads and checks `<bundle>/config.json`, applies the policy and settles what libcontainer
/// needs. `bundle` must be absolute.
pub fn prepare(
    bundle: &Path,
    id: &str,
    node: &NodeContext,
    staging_dir: &Path,
) -> Result<EffectiveSpec, SpecError> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|source| SpecError::Read {
        bundle: bundle.to_path_buf(),
        source,
    })?;
    let invalid = |reason: String| SpecError::Invalid {
        bundle: bundle.to_path_buf(),
        reason,
    };
    let mut json: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let version = json
        .get("ociVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("ociVersion is missing".into()))?
        .to_string();
    if !version_supported(&version) {
        return Err(SpecError::UnsupportedVersion {
            bundle: bundle.to_path_buf(),
            version,
        });
    }
    let mut spec: oci_spec::runtime::Spec =
        serde_json::from_value(json.clone()).map_err(|e| invalid(e.to_string()))?;
    if spec.process().is_none() {
        return Err(invalid("process is missing".into()));
    }
    if spec.linux().is_none() {
        return Err(invalid(
            "linux is missing: only Linux containers run here".into(),
        ));
    }

    // libcontainer keeps the OOM killer on whatever the spec says; turning it off would be
    // accepted and ignored, so it is refused.
    if json.pointer("/linux/resources/memory/disableOOMKiller") == Some(&Value::Bool(true)) {
        return Err(invalid(format!(
            "linux.resources.memory.disableOOMKiller: {}",
            OOM_KILLER_STAYS_ON
        )));
    }

    let applied =
        policy::apply_bundle_policy(&spec, &mut json, node, staging_dir).map_err(|e| {
            SpecError::Policy {
                bundle: bundle.to_path_buf(),
                message: e.to_string(),
            }
        })?;
    let staging = if node.precompiled {
        // `mxc run` wrote its plan beside the spec it compiled, in its own bundle directory.
        match std::fs::read(bundle.join(StagingPlan::FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| invalid(format!("{}: {e}", StagingPlan::FILE)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StagingPlan::default(),
            Err(source) => {
                return Err(SpecError::Read {
                    bundle: bundle.to_path_buf(),
                    source,
                })
            }
        }
    } else {
        applied.staging.clone()
    };
    // The typed view follows the edited JSON; the JSON stays what is written.
    spec = serde_json::from_value(json.clone()).map_err(|e| invalid(e.to_string()))?;

    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root is missing".into()))?
        .path()
        .clone();
    let rootfs = if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    };
    let rootfs_err = |reason| SpecError::Rootfs {
        bundle: bundle.to_path_buf(),
        rootfs: rootfs.clone(),
        reason,
    };
    let meta = std::fs::metadata(&rootfs).map_err(|_| rootfs_err("does not exist"))?;
    if !meta.is_dir() {
        return Err(rootfs_err("is not a directory"));
    }
    let rootfs = std::fs::canonicalize(&rootfs).map_err(|_| rootfs_err("cannot be resolved"))?;

    let linux = spec.linux().as_ref().expect("checked above");
    let cgroup_path = cgroup_path(linux.cgroups_path().as_ref().and_then(|p| p.to_str()), id);
    let new_user_namespace = linux.namespaces().as_ref().and_then(|nss| {
        nss.iter()
            .find(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::User)
            .map(|ns| ns.path().is_none())
    });
    let user_namespace = new_user_namespace.is_some();
    let private_mount_namespace = linux.namespaces().as_ref().is_some_and(|nss| {
        nss.iter().any(|ns| {
            ns.typ() == oci_spec::runtime::LinuxNamespaceType::Mount && ns.path().is_none()
        })
    });
    if new_user_namespace == Some(true) {
        check_id_mappings(linux, has_map_binaries()).map_err(|reason| {
            SpecError::UserNamespace {
                bundle: bundle.to_path_buf(),
                reason,
            }
        })?;
    }

    json["root"]["path"] = Value::String(rootfs.to_string_lossy().into_owned());
    json["linux"]["cgroupsPath"] = Value::String(cgroup_path.to_string_lossy().into_owned());

    Ok(EffectiveSpec {
        json,
        engine_text: bytes,
        oci_version: version,
        rootfs,
        cgroup_path,
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        user_namespace,
        private_mount_namespace,
        policy: applied,
        staging,
    })
}

impl EffectiveSpec {
    /// The `config.json` libcontainer runs: the engine's text, with only what the runtime
    /// changed rewritten ([`splice`]).
    pub fn config_text(&self) -> Result<String, serde_json::Error> {
        splice(&self.engine_text, &self.json)
    }
}

/// `edited` written as JSON, reusing the text of `original` (a JSON document) for every value
/// that `edited` did not change: untouched fields keep their bytes (key order, number
/// spelling, layout), fields newer than any typed model included; objects keep their keys'
/// order, with new keys after them. Changed values are written compactly.
pub fn splice(original: &[u8], edited: &Value) -> Result<String, serde_json::Error> {
    let raw: &RawValue = serde_json::from_slice(original)?;
    let mut out = String::with_capacity(original.len() + 1024);
    splice_into(raw, edited, &mut out)?;
    Ok(out)
}

fn splice_into(raw: &RawValue, edited: &Value, out: &mut String) -> Result<(), serde_json::Error> {
    let before: Value = serde_json::from_str(raw.get())?;
    if &before == edited {
        out.push_str(raw.get());
        return Ok(());
    }
    match (before, edited) {
        (Value::Object(_), Value::Object(map)) => {
            let fields: OrderedFields = serde_json::from_str(raw.get())?;
            out.push('{');
            let mut written = std::collections::BTreeSet::new();
            // Kept members in their order (the last of duplicates is the one JSON readers
            // take), then new ones.
            let kept: Vec<(String, Box<RawValue>)> = fields
                .0
                .into_iter()
                .rev()
                .filter(|(key, _)| map.contains_key(key) && written.insert(key.clone()))
                .collect();
            let new = map
                .iter()
                .filter(|(key, _)| !written.contains(*key))
                .map(|(key, value)| (key, None, value));
            let members = kept
                .iter()
                .rev()
                .map(|(key, raw)| (key, Some(raw), &map[key]))
                .chain(new);
            for (n, (key, raw, value)) in members.enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key)?);
                out.push(':');
                match raw {
                    Some(raw) => splice_into(raw, value, out)?,
                    None => out.push_str(&serde_json::to_string(value)?),
                }
            }
            out.push('}');
        }
        (Value::Array(_), Value::Array(list)) => {
            let items: Vec<Box<RawValue>> = serde_json::from_str(raw.get())?;
            out.push('[');
            for (n, new) in list.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                match items.get(n) {
                    Some(item) => splice_into(item, new, out)?,
                    None => out.push_str(&serde_json::to_string(new)?),
                }
            }
            out.push(']');
        }
        _ => out.push_str(&serde_json::to_string(edited)?),
    }
    Ok(())
}

/// An object's members in the order they are written, values unparsed.
struct OrderedFields(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for OrderedFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = OrderedFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedFields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    fields.push(entry);
                }
                Ok(OrderedFields(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// What libcontainer 0.7 needs of a new user namespace's id mappings: it becomes uid 0 and
/// gid 0 inside the namespace to set the container up, so both must be mapped; and it writes
/// more than one mapping line only through `newuidmap`/`newgidmap`.
pub fn check_id_mappings(
    linux: &oci_spec::runtime::Linux,
    map_binaries: bool,
) -> Result<(), String> {
    let hint = "map one range that starts at container id 0 (for example containerID 0, \
                hostID 100000, size 65536, with process.user inside it), or map the single \
                host id to container id 0 and run as uid 0";
    for (kind, mappings) in [
        ("uidMappings", linux.uid_mappings()),
        ("gidMappings", linux.gid_mappings()),
    ] {
        let mappings = mappings.as_deref().unwrap_or_default();
        if mappings.is_empty() {
            return Err(format!(
                "linux.namespaces has a new user namespace but linux.{kind} is empty: {hint}"
            ));
        }
        let root_mapped = mappings
            .iter()
            .any(|m| m.container_id() == 0 && m.size() > 0);
        if !root_mapped {
            return Err(format!(
                "linux.{kind} does not map container id 0, which the runtime needs to set up \
                 the user namespace: {hint}"
            ));
        }
        if mappings.len() > 1 && !map_binaries {
            return Err(format!(
                "linux.{kind} has {} ranges, which need newuidmap/newgidmap (package uidmap) \
                 on PATH: install them or use one range",
                mappings.len()
            ));
        }
    }
    Ok(())
}

fn has_map_binaries() -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    ["newuidmap", "newgidmap"].iter().all(|binary| {
        path.split(':')
            .any(|dir| !dir.is_empty() && Path::new(dir).join(binary).exists())
    })
}

/// The default `config.json` that `mxc-runtime spec` writes, like `runc spec`: `sh` on a
/// terminal in a `rootfs` directory, default capabilities, namespaces and masked paths.
pub fn default_spec(rootless: bool) -> Result<Value, String> {
    use oci_spec::runtime::Spec;
    let mut spec = if rootless {
        Spec::rootless(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    } else {
        Spec::default()
    };
    spec.set_version("1.0.2-dev".to_string());
    spec.set_hostname(Some("mxc".to_string()));
    spec.set_annotations(None);
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(true));
    }
    serde_json::to_value(&spec).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_runtime_spec_1_0_through_1_3() {
        for v in [
            "1.0.0",
            "1.0.1",
            "1.0.2-dev",
            "1.1.0",
            "1.1.0-rc.1",
            "1.2.0",
            "1.2.1",
            "1.3.0",
            "1.3.7+dev",
            "1.0",
        ] {
            assert!(version_supported(v), "{v}");
        }
        for v in [
            "0.9.0", "1.4.0", "2.0.0", "", "1", "1.x.0", "1.0.0.0", "v1.0.0",
        ] {
            assert!(!version_supported(v), "{v}");
        }
    }

    #[test]
    fn cgroup_paths() {
        assert_eq!(cgroup_path(None, "c1"), Path::new("/c1"));
        assert_eq!(cgroup_path(Some(""), "c1"), Path::new("/c1"));
        assert_eq!(
            cgroup_path(Some("/default/c1"), "c1"),
            Path::new("/default/c1")
        );
        assert_eq!(cgroup_path(Some("mxc/c1"), "c1"), Path::new("/mxc/c1"));
        assert_eq!(
            cgroup_path(Some("system.slice:docker:abc"), "abc"),
            Path::new("/system.slice/docker-abc.scope")
        );
        assert_eq!(
            cgroup_path(Some(":cri-containerd:abc"), "abc"),
            Path::new("/system.slice/cri-containerd-abc.scope")
        );
        assert_eq!(
            cgroup_path(Some("kubepods-burstable-pod1.slice:cri-containerd:abc"), "abc"),
            Path::new(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope"
            )
        );
        assert_eq!(
            cgroup_path(Some("-.slice::abc"), "abc"),
            Path::new("/abc.scope")
        );
    }

    /// Policy resolution is tested with the policy; these tests are about the bundle.
    fn no_policy() -> NodeContext {
        NodeContext {
            precompiled: true,
            ..NodeContext::default()
        }
    }

    fn bundle_with(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    #[test]
    fn prepare_settles_rootfs_and_cgroup() {
        let dir = bundle_with(
            r#"{"ociVersion":"1.0.2-dev","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},"linux":{"namespaces":[{"type":"pid"},{"type":"user"}],"uidMappings":[{"containerID":0,"hostID":1000,"size":1}],"gidMappings":[{"containerID":0,"hostID":1000,"size":1}]}}"#,
        );
        let eff = prepare(dir.path(), "c1", &no_policy(), &dir.path().join("stage")).unwrap();
        let rootfs = std::fs::canonicalize(dir.path().join("rootfs")).unwrap();
        assert_eq!(eff.rootfs, rootfs);
        assert_eq!(eff.json["root"]["path"], rootfs.to_str().unwrap());
        assert_eq!(eff.json["linux"]["cgroupsPath"], "/c1");
        assert_eq!(eff.oci_version, "1.0.2-dev");
        assert!(eff.user_namespace);
    }

    #[test]
    fn prepare_keeps_fields_newer_than_the_model() {
        let dir = bundle_with(
            r#"{"ociVersion":"1.3.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},"linux":{"intelRdt":{"schemata":["L3:0=f"]}}}"#,
        );
        let eff = prepare(dir.path(), "c1", &no_policy(), &dir.path().join("stage")).unwrap();
        assert_eq!(eff.json["linux"]["intelRdt"]["schemata"][0], "L3:0=f");
    }

    /// The raw text of the value at `path` in a JSON document.
    fn raw_at(text: &str, path: &[&str]) -> String {
        let mut raw: Box<RawValue> = serde_json::from_str(text).unwrap();
        for key in path {
            let map: std::collections::HashMap<String, Box<RawValue>> =
                serde_json::from_str(raw.get()).unwrap();
            raw = map
                .get(*key)
                .unwrap_or_else(|| panic!("{key} in {text}"))
                .clone();
        }
        raw.get().to_string()
    }

    #[test]
    fn splice_keeps_what_did_not_change_byte_for_byte() {
        let original = r#"{ "z": {"b": 1.50, "a": [1, 2]}, "a": "x",
            "m": {"keep": {"y": 2, "x": 1e3}, "change": 1}, "gone": true }"#;
        let mut edited: Value = serde_json::from_str(original).unwrap();
        edited["m"]["change"] = json!(2);
        edited["m"]["new"] = json!(["n"]);
        edited["z"]["a"].as_array_mut().unwrap().push(json!(3));
        edited.as_object_mut().unwrap().remove("gone");
        let out = splice(original.as_bytes(), &edited).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), edited);
        assert_eq!(
            out,
            r#"{"z":{"b":1.50,"a":[1,2,3]},"a":"x","m":{"keep":{"y": 2, "x": 1e3},"change":2,"new":["n"]}}"#
        );
        // Nothing changed: the document as it was.
        let same: Value = serde_json::from_str(original).unwrap();
        assert_eq!(splice(original.as_bytes(), &same).unwrap(), original);
    }

    /// A node whose default policy is `policy`, with `extra` appended to its configuration.
    fn node_with(policy: &str, extra: &str) -> (tempfile::TempDir, NodeContext) {
        let node_dir = tempfile::tempdir().unwrap();
        let policy_file = node_dir.path().join("policy.json");
        std::fs::write(&policy_file, policy).unwrap();
        let config = node_dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "policy_dir = {:?}\naudit_log = {:?}\n{extra}",
                node_dir.path(),
                node_dir.path().join("audit.jsonl")
            ),
        )
        .unwrap();
        let node = NodeContext {
            config_path: Some(config),
            default_policy: Some(policy_file),
            precompiled: false,
        };
        (node_dir, node)
    }

    /// Every value at `paths` has the same text in `written` as in `engine`.
    fn assert_kept(written: &str, engine: &str, paths: &[&[&str]]) {
        for path in paths {
            assert_eq!(raw_at(written, path), raw_at(engine, path), "{path:?}");
        }
    }

    #[test]
    fn a_policy_leaves_runtime_spec_1_1_to_1_3_fields_as_the_engine_wrote_them() {
        let (_node_dir, node) = node_with(
            r#"{"version": "0.8.0-alpha", "filesystem": {"deniedPaths": ["/etc/passwd"]}}"#,
            "",
        );
        // 1.1: scheduler, ioPriority, timeOffsets, domainname; 1.2: execCPUAffinity,
        // netDevices; 1.3: memoryPolicy, intelRdt.schemata and enableMonitoring, freebsd
        // (the last three unknown to the typed model this runtime uses).
        let text = r#"{
  "ociVersion": "1.3.0",
  "domainname": "example.org",
  "root": {"path": "rootfs"},
  "process": {
    "args": ["sh"], "cwd": "/", "user": {"uid": 1000, "gid": 1000},
    "scheduler": {"policy": "SCHED_OTHER", "nice": 5, "flags": ["SCHED_FLAG_RECLAIM"]},
    "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
    "execCPUAffinity": {"initial": "0", "final": "0-1"}
  },
  "freebsd": {"jail": {"parent": "outer", "host": "new"}},
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}],
    "timeOffsets": {"monotonic": {"secs": 7, "nanosecs": 0}},
    "netDevices": {"eth9": {"name": "eth0"}},
    "memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]},
    "intelRdt": {"closID": "agents", "schemata": ["L3:0=f"], "enableMonitoring": true}
  }
}"#;
        let dir = bundle_with(text);
        let eff = prepare(dir.path(), "c1", &node, &dir.path().join("stage")).unwrap();
        // The policy did apply.
        assert_eq!(eff.json["process"]["noNewPrivileges"], true);
        assert_eq!(eff.json["process"]["capabilities"]["bounding"], json!([]));
        assert!(eff.json["linux"]["seccomp"].is_object());
        assert!(eff.json["linux"]["resources"]["memory"]["limit"].is_u64());
        assert!(!eff.policy.sha256.is_empty());
        let written = eff.config_text().unwrap();
        assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), eff.json);
        assert_kept(
            &written,
            text,
            &[
                &["domainname"],
                &["freebsd"],
                &["process", "scheduler"],
                &["process", "ioPriority"],
                &["process", "execCPUAffinity"],
                &["process", "args"],
                &["linux", "namespaces"],
                &["linux", "timeOffsets"],
                &["linux", "netDevices"],
                &["linux", "memoryPolicy"],
                &["linux", "intelRdt"],
            ],
        );
    }

    /// The node's ceiling and limits, staged grants and a user namespace's limits are edits
    /// like any other: what they do not touch keeps its bytes.
    #[test]
    fn the_ceiling_limits_and_staged_grants_edit_the_spec_in_place() {
        let (_node_dir, node) = node_with(
            r#"{"version": "0.8.0-alpha", "filesystem": {"readonlyPaths": ["/usr/share"]}}"#,
            r#"
[limits]
memory = "1G"
pids = 300

[ceiling]
readonly_host_paths = ["/usr"]
capabilities = ["CAP_NET_BIND_SERVICE"]
new_privileges = true
"#,
        );
        let text = r#"{
  "ociVersion": "1.2.0",
  "root": {"path": "rootfs"},
  "process": {
    "args": ["sh"], "cwd": "/", "user": {"uid": 1000, "gid": 1000},
    "noNewPrivileges": false,
    "capabilities": {
      "bounding": ["CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"],
      "effective": ["CAP_NET_BIND_SERVICE"]
    },
    "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4}
  },
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}, {"type": "user"}],
    "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0"},
    "resources": {"cpu": {"shares": 512}},
    "memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0"}
  }
}"#;
        let dir = bundle_with(text);
        let stage = dir.path().join("stage");
        let eff = prepare(dir.path(), "c1", &node, &stage).unwrap();
        let process = &eff.json["process"];
        assert_eq!(process["noNewPrivileges"], false);
        assert_eq!(
            process["capabilities"]["bounding"],
            json!(["CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(
            process["capabilities"]["effective"],
            json!(["CAP_NET_BIND_SERVICE"])
        );
        let resources = &eff.json["linux"]["resources"];
        assert_eq!(resources["memory"]["limit"], 1 << 30);
        assert_eq!(resources["pids"]["limit"], 300);
        let sysctl = &eff.json["linux"]["sysctl"];
        assert_eq!(sysctl["net.ipv4.ip_unprivileged_port_start"], "0");
        assert_eq!(sysctl["user.max_user_namespaces"], "0");
        assert!(!eff.staging.is_empty());
        let mounts = eff.json["mounts"].as_array().unwrap();
        assert!(
            mounts.iter().any(|m| m["destination"] == "/usr/share"
                && m["source"]
                    .as_str()
                    .is_some_and(|s| Path::new(s).starts_with(&stage))),
            "{mounts:?}"
        );

        let written = eff.config_text().unwrap();
        assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), eff.json);
        assert_kept(
            &written,
            text,
            &[
                &["process", "args"],
                &["process", "ioPriority"],
                &["linux", "namespaces"],
                &["linux", "uidMappings"],
                &["linux", "memoryPolicy"],
                &["linux", "resources", "cpu"],
            ],
        );
        // An edited object keeps its members' order, the new ones after.
        let resources_text = raw_at(&written, &["linux", "resources"]);
        let cpu = resources_text.find("\"cpu\"").unwrap();
        let memory = resources_text.find("\"memory\"").unwrap();
        assert!(cpu < memory, "{resources_text}");
        // The engine's mounts come first, as it wrote them.
        let mounts_text = raw_at(&written, &["mounts"]);
        assert!(
            mounts_text
                .starts_with(r#"[{"destination": "/proc", "type": "proc", "source": "proc"},"#),
            "{mounts_text}"
        );
    }

    #[test]
    fn prepare_refuses_to_turn_the_oom_killer_off() {
        let spec = |disable: bool| {
            format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}}}},"linux":{{"resources":{{"memory":{{"limit":67108864,"disableOOMKiller":{disable}}}}}}}}}"#
            )
        };
        let dir = bundle_with(&spec(true));
        let err = prepare(dir.path(), "c1", &no_policy(), &dir.path().join("stage")).unwrap_err();
        assert!(
            err.to_string()
                .contains("linux.resources.memory.disableOOMKiller: true is not supported"),
            "{err}"
        );
        // Control: the same spec with the OOM killer left on is prepared.
        let dir = bundle_with(&spec(false));
        prepare(dir.path(), "c1", &no_policy(), &dir.path().join("stage")).unwrap();
    }

    #[test]
    fn prepare_rejects_bad_bundles_with_reasons() {
        let dir = bundle_with(r#"{"ociVersion":"2.0.0","root":{"path":"rootfs"}}"#);
        let err = prepare(dir.path(), "c1", &no_policy(), &dir.path().join("stage")).unwrap_err();
        assert!(
            err.to_string().contains("unsupported ociVersion \"2.0.0\""),
            "{err}"
        );

        let dir = bundle_with(
            r#"{"ociVersion":"1.0.0","root":{"path":"nope"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},"linux":{}}"#,
        );
        let err = prepare(dir.path(), "c1", &no_policy(), &dir.path().join("stage")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");

        let dir = bundle_with("not json");
        let err = prepare(dir.path(), "c1", &no_policy(), &dir.path().join("stage")).unwrap_err();
        assert!(
            err.to_string().contains("config.json is not valid"),
            "{err}"
        );

        let empty = tempfile::tempdir().unwrap();
        let err = prepare(
            empty.path(),
            "c1",
            &no_policy(),
            &empty.path().join("stage"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot read config.json"), "{err}");
    }

    #[test]
    fn user_namespace_mappings_must_include_root() {
        let linux = |maps: &str| -> oci_spec::runtime::Linux {
            serde_json::from_str(&format!(r#"{{"uidMappings":{maps},"gidMappings":{maps}}}"#))
                .unwrap()
        };
        let single_root = r#"[{"containerID":0,"hostID":1000,"size":1}]"#;
        let range = r#"[{"containerID":0,"hostID":100000,"size":1001}]"#;
        let no_root = r#"[{"containerID":1000,"hostID":1000,"size":1}]"#;
        let two = r#"[{"containerID":0,"hostID":65534,"size":1},{"containerID":1000,"hostID":1000,"size":1}]"#;
        assert!(check_id_mappings(&linux(single_root), false).is_ok());
        assert!(check_id_mappings(&linux(range), false).is_ok());
        let err = check_id_mappings(&linux(no_root), true).unwrap_err();
        assert!(err.contains("does not map container id 0"), "{err}");
        let err = check_id_mappings(&linux(two), false).unwrap_err();
        assert!(err.contains("newuidmap"), "{err}");
        assert!(check_id_mappings(&linux(two), true).is_ok());
        assert!(check_id_mappings(&linux("[]"), true).is_err());
    }

    #[test]
    fn default_spec_is_runnable_shape() {
        let spec = default_spec(false).unwrap();
        assert_eq!(spec["root"]["path"], "rootfs");
        assert_eq!(spec["process"]["args"][0], "sh");
        let rootless = default_spec(true).unwrap();
        assert!(rootless["linux"]["uidMappings"].is_array());
    }
}
