//! MXC's exact 1.x contracts: `1.0.0`, and `1.1.0-alpha` when experimental features are enabled.
//! Every request root is closed and typed, `null` is refused everywhere, enumerations are plain
//! strings without the old aliases (`appContainer`, `macos_sandbox`), and the legacy network
//! fields are gone. MXC's executor applies the contract before anything else, so it applies here
//! in every mode, not only with `--strict`; the semantic rules (CIDRs, ports, proxies, paths)
//! follow in `parse` and `network` as for 0.8.

use serde_json::{Map, Value};

use crate::error::{index, join, Report};
use crate::version::Exact;

/// What a member may hold.
#[derive(Clone, Copy)]
enum Kind {
    /// Any JSON value (`_comment`).
    Any,
    Bool,
    Str,
    NonEmptyStr,
    /// An unsigned integer no larger than the bound.
    UInt(u64),
    /// A non-zero 16-bit port number.
    Port,
    Enum(&'static [&'static str]),
    List(&'static Kind),
    NonEmptyList(&'static Kind),
    Object(&'static [Member]),
}

struct Member {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn opt(name: &'static str, kind: Kind) -> Member {
    Member {
        name,
        kind,
        required: false,
    }
}

const fn req(name: &'static str, kind: Kind) -> Member {
    Member {
        name,
        kind,
        required: true,
    }
}

const STRINGS: Kind = Kind::List(&Kind::Str);
const ACTION: Kind = Kind::Enum(&["allow", "deny"]);
const U32: Kind = Kind::UInt(u32::MAX as u64);

const PEER: &[Member] = &[req("cidr", Kind::Str), opt("except", STRINGS)];
const PORT: &[Member] = &[
    opt("protocol", Kind::Enum(&["tcp", "udp", "icmp", "any"])),
    opt("port", Kind::Port),
    opt("endPort", Kind::Port),
];
const RULE: &[Member] = &[
    opt("to", Kind::NonEmptyList(&Kind::Object(PEER))),
    opt("ports", Kind::NonEmptyList(&Kind::Object(PORT))),
];
const EGRESS: &[Member] = &[
    opt("default", ACTION),
    opt("allow", Kind::List(&Kind::Object(RULE))),
    opt("deny", Kind::List(&Kind::Object(RULE))),
];
const INGRESS: &[Member] = &[opt("default", ACTION), opt("hostLoopback", ACTION)];
const NETWORK: &[Member] = &[
    opt("egress", Kind::Object(EGRESS)),
    opt("ingress", Kind::Object(INGRESS)),
];
const PROCESS: &[Member] = &[
    req("commandLine", Kind::NonEmptyStr),
    opt("cwd", Kind::Str),
    opt("env", STRINGS),
    opt("inheritDefaultEnv", Kind::Bool),
    opt("timeout", U32),
];
const LIFECYCLE: &[Member] = &[
    opt("destroyOnExit", Kind::Bool),
    opt("preservePolicy", Kind::Bool),
];
const FILESYSTEM: &[Member] = &[
    opt("readwritePaths", STRINGS),
    opt("readonlyPaths", STRINGS),
    opt("deniedPaths", STRINGS),
];
const FALLBACK: &[Member] = &[opt("allowDaclMutation", Kind::Bool)];
const UI: &[Member] = &[
    opt("disable", Kind::Bool),
    opt("clipboard", Kind::Enum(&["none", "read", "write", "all"])),
    opt("injection", Kind::Bool),
];
const RUNTIME_CONFIG: &[Member] = &[opt("networkProxy", Kind::Str)];
const TELEMETRY: &[Member] = &[opt("enabled", Kind::Bool)];
const LXC: &[Member] = &[req("distribution", Kind::Str), req("release", Kind::Str)];
const SEATBELT: &[Member] = &[
    opt("extraMachLookups", STRINGS),
    opt("guiAccess", Kind::Bool),
    opt("keychainAccess", Kind::Bool),
    opt("nestedPty", Kind::Bool),
    opt("profileOverride", Kind::Str),
];
const CAPTURE_DENIALS: &[Member] = &[
    opt("mode", Kind::Enum(&["block", "allow"])),
    opt("outputPath", Kind::Str),
    opt("retainEtl", Kind::Bool),
];
const UI_ISOLATION: Kind = Kind::Enum(&["container", "desktop", "handles", "atoms"]);
const PROCESS_CONTAINER_UI_1_0: &[Member] = &[
    opt("desktopSystemControl", Kind::Bool),
    opt("ime", Kind::Bool),
    opt("isolation", UI_ISOLATION),
    opt("systemSettings", Kind::Str),
];
const PROCESS_CONTAINER_UI_1_1: &[Member] = &[
    opt("desktopSystemControl", Kind::Bool),
    opt("ime", Kind::Bool),
    opt("isolation", UI_ISOLATION),
    opt(
        "systemSettings",
        Kind::Enum(&["none", "parameters", "display", "all"]),
    ),
];
const PROCESS_CONTAINER_NETWORK: &[Member] = &[opt("allowedProxyPeer", Kind::Str)];
const PROCESS_CONTAINER_FILESYSTEM: &[Member] = &[opt("enumeratePaths", STRINGS)];
const PROCESS_CONTAINER_1_0: &[Member] = &[
    opt("capabilities", STRINGS),
    opt("captureDenials", Kind::Object(CAPTURE_DENIALS)),
    opt("filesystem", Kind::Object(PROCESS_CONTAINER_FILESYSTEM)),
    opt("learningMode", Kind::Bool),
    opt("leastPrivilege", Kind::Bool),
    opt("network", Kind::Object(PROCESS_CONTAINER_NETWORK)),
    opt("ui", Kind::Object(PROCESS_CONTAINER_UI_1_0)),
];
const PROCESS_CONTAINER_1_1: &[Member] = &[
    opt("capabilities", STRINGS),
    opt("captureDenials", Kind::Object(CAPTURE_DENIALS)),
    opt("filesystem", Kind::Object(PROCESS_CONTAINER_FILESYSTEM)),
    opt("learningMode", Kind::Bool),
    opt("leastPrivilege", Kind::Bool),
    opt("network", Kind::Object(PROCESS_CONTAINER_NETWORK)),
    opt("ui", Kind::Object(PROCESS_CONTAINER_UI_1_1)),
];
const PORT_MAPPING: &[Member] = &[
    req("containerPort", Kind::Port),
    opt("protocol", Kind::Enum(&["tcp"])),
    req("windowsPort", Kind::Port),
];
const ONE_SHOT_WSLC: &[Member] = &[
    opt("cpuCount", U32),
    opt("gpu", Kind::Bool),
    opt("image", Kind::Str),
    opt("imageTarPath", Kind::Str),
    opt("memoryMb", Kind::UInt(u64::MAX)),
    opt("portMappings", Kind::List(&Kind::Object(PORT_MAPPING))),
    opt("storagePath", Kind::Str),
    opt("targetOs", Kind::Str),
];
const HYPERLIGHT: &[Member] = &[opt(
    "runtime",
    Kind::Enum(&[
        "agent",
        "python",
        "python-shell",
        "node",
        "bash",
        "dotnet-jit",
    ]),
)];
const TEST_FEATURE: &[Member] = &[opt("message", Kind::Str)];
const ONE_SHOT_WINDOWS_SANDBOX: &[Member] = &[
    opt("daemonPipeName", Kind::Str),
    opt("idleTimeout", U32),
    opt("idleTimeoutMs", U32),
];

const CONTAINMENT_1_0: &[&str] = &[
    "process",
    "processcontainer",
    "lxc",
    "bubblewrap",
    "seatbelt",
    "isolation_session",
    "wslc",
];
const CONTAINMENT_1_1: &[&str] = &[
    "process",
    "processcontainer",
    "lxc",
    "bubblewrap",
    "seatbelt",
    "vm",
    "windows_sandbox",
    "microvm",
    "hyperlight",
    "wslc",
    "isolation_session",
];

const ONE_SHOT_1_0: &[Member] = &[
    opt("$schema", Kind::Str),
    opt("_comment", Kind::Any),
    req("version", Kind::Str),
    opt("containerId", Kind::Str),
    opt("containment", Kind::Enum(CONTAINMENT_1_0)),
    opt("lifecycle", Kind::Object(LIFECYCLE)),
    req("process", Kind::Object(PROCESS)),
    opt("filesystem", Kind::Object(FILESYSTEM)),
    opt("fallback", Kind::Object(FALLBACK)),
    opt("network", Kind::Object(NETWORK)),
    opt("ui", Kind::Object(UI)),
    opt("processContainer", Kind::Object(PROCESS_CONTAINER_1_0)),
    opt("lxc", Kind::Object(LXC)),
    opt("seatbelt", Kind::Object(SEATBELT)),
    opt("runtimeConfig", Kind::Object(RUNTIME_CONFIG)),
    opt("telemetry", Kind::Object(TELEMETRY)),
    opt("wslc", Kind::Object(ONE_SHOT_WSLC)),
];
const ONE_SHOT_1_1: &[Member] = &[
    opt("$schema", Kind::Str),
    opt("_comment", Kind::Any),
    req("version", Kind::Str),
    opt("containerId", Kind::Str),
    opt("containment", Kind::Enum(CONTAINMENT_1_1)),
    opt("lifecycle", Kind::Object(LIFECYCLE)),
    req("process", Kind::Object(PROCESS)),
    opt("filesystem", Kind::Object(FILESYSTEM)),
    opt("fallback", Kind::Object(FALLBACK)),
    opt("network", Kind::Object(NETWORK)),
    opt("ui", Kind::Object(UI)),
    opt("processContainer", Kind::Object(PROCESS_CONTAINER_1_1)),
    opt("lxc", Kind::Object(LXC)),
    opt("seatbelt", Kind::Object(SEATBELT)),
    opt("runtimeConfig", Kind::Object(RUNTIME_CONFIG)),
    opt("telemetry", Kind::Object(TELEMETRY)),
    opt("wslc", Kind::Object(ONE_SHOT_WSLC)),
    opt("hyperlight", Kind::Object(HYPERLIGHT)),
    opt("test", Kind::Object(TEST_FEATURE)),
    opt("windowsSandbox", Kind::Object(ONE_SHOT_WINDOWS_SANDBOX)),
];

const PHASE: Kind = Kind::Enum(&["provision", "start", "exec", "stop", "deprovision"]);
const LIFECYCLE_ONLY: &[Member] = &[
    opt("$schema", Kind::Str),
    opt("_comment", Kind::Any),
    req("version", Kind::Str),
    req("phase", PHASE),
    req("sandboxId", Kind::Str),
    opt("telemetry", Kind::Object(TELEMETRY)),
];
const EXEC: &[Member] = &[
    opt("$schema", Kind::Str),
    opt("_comment", Kind::Any),
    req("version", Kind::Str),
    req("phase", PHASE),
    req("sandboxId", Kind::Str),
    opt("telemetry", Kind::Object(TELEMETRY)),
    opt("network", Kind::Object(NETWORK)),
    req("process", Kind::Object(PROCESS)),
    opt("runtimeConfig", Kind::Object(RUNTIME_CONFIG)),
];
const ALLOW: Kind = Kind::Enum(&["allow"]);
const UNRESTRICTED_NETWORK: &[Member] = &[
    req("egress", Kind::Object(&[req("default", ALLOW)])),
    req(
        "ingress",
        Kind::Object(&[req("default", ALLOW), req("hostLoopback", ALLOW)]),
    ),
];
const ISOLATION_SESSION_PROVISION: &[Member] = &[
    opt("$schema", Kind::Str),
    opt("_comment", Kind::Any),
    req("version", Kind::Str),
    req("phase", PHASE),
    req("containment", Kind::Enum(&["isolation_session"])),
    opt(
        "isolationSession",
        Kind::Object(&[opt("provision", Kind::Object(&[opt("appId", Kind::Str)]))]),
    ),
    req("network", Kind::Object(UNRESTRICTED_NETWORK)),
    opt("telemetry", Kind::Object(TELEMETRY)),
];
const WSLC_PROVISION_SETTINGS_1_0: &[Member] =
    &[opt("image", Kind::Str), opt("imageTarPath", Kind::Str)];
const WSLC_PROVISION_SETTINGS_1_1: &[Member] = &[
    opt("image", Kind::Str),
    opt("imageTarPath", Kind::Str),
    opt("portMappings", Kind::List(&Kind::Object(PORT_MAPPING))),
];
const WSLC_PROVISION_1_0: &[Member] = &[
    opt("$schema", Kind::Str),
    opt("_comment", Kind::Any),
    req("version", Kind::Str),
    req("phase", PHASE),
    req("containment", Kind::Enum(&["wslc"])),
    opt("filesystem", Kind::Object(FILESYSTEM)),
    opt("network", Kind::Object(NETWORK)),
    opt("telemetry", Kind::Object(TELEMETRY)),
    opt(
        "wslc",
        Kind::Object(&[opt("provision", Kind::Object(WSLC_PROVISION_SETTINGS_1_0))]),
    ),
];
const WSLC_PROVISION_1_1: &[Member] = &[
    opt("$schema", Kind::Str),
    opt("_comment", Kind::Any),
    req("version", Kind::Str),
    req("phase", PHASE),
    req("containment", Kind::Enum(&["wslc"])),
    opt("filesystem", Kind::Object(FILESYSTEM)),
    opt("network", Kind::Object(NETWORK)),
    opt("telemetry", Kind::Object(TELEMETRY)),
    opt(
        "wslc",
        Kind::Object(&[opt("provision", Kind::Object(WSLC_PROVISION_SETTINGS_1_1))]),
    ),
];
const WINDOWS_SANDBOX_PROVISION: &[Member] = &[
    opt("$schema", Kind::Str),
    opt("_comment", Kind::Any),
    req("version", Kind::Str),
    req("phase", PHASE),
    req("containment", Kind::Enum(&["windows_sandbox"])),
    opt("filesystem", Kind::Object(FILESYSTEM)),
    opt("telemetry", Kind::Object(TELEMETRY)),
];

/// What MXC tells someone who still writes a removed network field.
fn migration(member: &str) -> Option<&'static str> {
    Some(match member {
        "defaultPolicy" => "schema 1.0 migration: use network.egress.default ('allow' or 'deny')",
        "allowedHosts" | "blockedHosts" => {
            "schema 1.0 migration: use network.egress.allow/deny CIDR rules; hostnames cannot be \
             losslessly converted"
        }
        "proxy" => "schema 1.0 migration: use runtimeConfig.networkProxy with a proxy URL",
        "enforcementMode" => {
            "schema 1.0 migration: use directional network policy; enforcement is selected by \
             the backend"
        }
        "allowLocalNetwork" => {
            "schema 1.0 migration: use network.ingress.default and network.ingress.hostLoopback"
        }
        _ => return None,
    })
}

/// Checks a document that declares an exact 1.x version against that contract.
pub(crate) fn check(report: &mut Report, raw: &Value, exact: Exact) {
    let Some(root) = raw.as_object() else {
        report.reject_path("", "expected a configuration object");
        return;
    };
    let v1_1 = exact == Exact::V1_1_0Alpha;
    let members = match root.get("phase") {
        None => {
            let members = if v1_1 { ONE_SHOT_1_1 } else { ONE_SHOT_1_0 };
            object(report, "", root, members);
            if root.get("containment").and_then(Value::as_str) == Some("isolation_session") {
                isolation_session(report, root);
            }
            return;
        }
        Some(Value::String(phase)) => match phase.as_str() {
            "start" | "stop" | "deprovision" => LIFECYCLE_ONLY,
            "exec" => EXEC,
            "provision" => match root.get("containment").and_then(Value::as_str) {
                Some("isolation_session") => ISOLATION_SESSION_PROVISION,
                Some("wslc") if v1_1 => WSLC_PROVISION_1_1,
                Some("wslc") => WSLC_PROVISION_1_0,
                Some("windows_sandbox") if v1_1 => WINDOWS_SANDBOX_PROVISION,
                _ => {
                    report.reject_path(
                        "containment",
                        format!(
                            "unsupported containment for the provision phase of the {} contract",
                            exact.as_str()
                        ),
                    );
                    return;
                }
            },
            _ => LIFECYCLE_ONLY,
        },
        Some(_) => LIFECYCLE_ONLY,
    };
    object(report, "", root, members);
}

/// IsolationSession cannot restrict networking, so a one-shot request must say so in the
/// standard all-allow shape and name no proxy.
fn isolation_session(report: &mut Report, root: &Map<String, Value>) {
    let allow = Value::from("allow");
    let network_ok = root
        .get("network")
        .and_then(Value::as_object)
        .is_some_and(|network| {
            let egress = network.get("egress").and_then(Value::as_object);
            let ingress = network.get("ingress").and_then(Value::as_object);
            network.len() == 2
                && egress.is_some_and(|e| e.len() == 1 && e.get("default") == Some(&allow))
                && ingress.is_some_and(|i| {
                    i.len() == 2
                        && i.get("default") == Some(&allow)
                        && i.get("hostLoopback") == Some(&allow)
                })
        });
    let proxy = root
        .get("runtimeConfig")
        .and_then(Value::as_object)
        .is_some_and(|runtime| runtime.contains_key("networkProxy"));
    if !network_ok || proxy {
        report.reject_path(
            "network",
            "IsolationSession requires an explicit network policy with \
             network.egress.default=allow, network.ingress.default=allow, and \
             network.ingress.hostLoopback=allow, without rules or runtimeConfig.networkProxy",
        );
    }
}

fn object(report: &mut Report, path: &str, value: &Map<String, Value>, members: &[Member]) {
    for (key, child) in value {
        let at = join(path, key);
        match members.iter().find(|m| m.name == key) {
            Some(member) => check_value(report, &at, child, member.kind),
            None => {
                let expected: Vec<String> =
                    members.iter().map(|m| format!("`{}`", m.name)).collect();
                let mut reason = format!(
                    "unknown field `{key}`, expected one of {}",
                    expected.join(", ")
                );
                if path == "network" {
                    if let Some(hint) = migration(key) {
                        reason = format!("{reason}; {hint}");
                    }
                }
                report.reject_path(at, reason);
            }
        }
    }
    for member in members.iter().filter(|m| m.required) {
        if !value.contains_key(member.name) {
            report.reject_path(
                join(path, member.name),
                format!("missing field `{}`", member.name),
            );
        }
    }
}

fn check_value(report: &mut Report, path: &str, value: &Value, kind: Kind) {
    let expected = match kind {
        Kind::Any => return,
        Kind::Bool if value.is_boolean() => return,
        Kind::Bool => "a boolean",
        Kind::Str if value.is_string() => return,
        Kind::Str => "a string",
        Kind::NonEmptyStr => match value.as_str() {
            Some("") => {
                report.reject_path(path, "string must not be empty");
                return;
            }
            Some(_) => return,
            None => "a non-empty string",
        },
        Kind::UInt(max) => match value.as_u64() {
            Some(n) if n <= max => return,
            _ if value.is_number() => {
                report.reject(
                    path,
                    value,
                    format!("must be an integer between 0 and {max}"),
                );
                return;
            }
            _ => "an unsigned integer",
        },
        Kind::Port => match value.as_u64() {
            Some(n) if (1..=65535).contains(&n) => return,
            _ if value.is_number() => {
                report.reject(path, value, "must be a port between 1 and 65535");
                return;
            }
            _ => "a port number",
        },
        Kind::Enum(variants) => match value.as_str() {
            Some(text) if variants.contains(&text) => return,
            Some(text) => {
                let expected: Vec<String> = variants.iter().map(|v| format!("`{v}`")).collect();
                report.reject(
                    path,
                    value,
                    format!(
                        "unknown variant `{text}`, expected one of {}",
                        expected.join(", ")
                    ),
                );
                return;
            }
            None => "a string",
        },
        Kind::List(item) | Kind::NonEmptyList(item) => match value.as_array() {
            Some(items) => {
                if items.is_empty() && matches!(kind, Kind::NonEmptyList(_)) {
                    report.reject(path, value, "array must not be empty");
                }
                for (position, child) in items.iter().enumerate() {
                    check_value(report, &index(path, position), child, *item);
                }
                return;
            }
            None => "an array",
        },
        Kind::Object(members) => match value.as_object() {
            Some(map) => {
                object(report, path, map, members);
                return;
            }
            None => "an object",
        },
    };
    // No value in the message: a misplaced string may be a secret (`"env": "TOKEN=..."`).
    report.reject_path(
        path,
        format!("invalid type: {}, expected {expected}", json_type(value)),
    );
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The member sets of every object the contract describes, from all request roots.
    fn object_shapes(exact: Exact) -> BTreeSet<Vec<&'static str>> {
        fn walk(out: &mut BTreeSet<Vec<&'static str>>, members: &'static [Member]) {
            let mut names: Vec<&str> = members.iter().map(|m| m.name).collect();
            names.sort_unstable();
            out.insert(names);
            for member in members {
                let mut kind = member.kind;
                while let Kind::List(inner) | Kind::NonEmptyList(inner) = kind {
                    kind = *inner;
                }
                if let Kind::Object(children) = kind {
                    walk(out, children);
                }
            }
        }
        let v1_1 = exact == Exact::V1_1_0Alpha;
        let mut out = BTreeSet::new();
        let roots: &[&'static [Member]] = if v1_1 {
            &[
                ONE_SHOT_1_1,
                LIFECYCLE_ONLY,
                EXEC,
                ISOLATION_SESSION_PROVISION,
                WSLC_PROVISION_1_1,
                WINDOWS_SANDBOX_PROVISION,
            ]
        } else {
            &[
                ONE_SHOT_1_0,
                LIFECYCLE_ONLY,
                EXEC,
                ISOLATION_SESSION_PROVISION,
                WSLC_PROVISION_1_0,
            ]
        };
        for root in roots {
            walk(&mut out, root);
        }
        out
    }

    /// The member sets of every interface in MXC's generated wire types (`wire.d.ts`).
    fn wire_shapes(file: &str) -> BTreeSet<Vec<String>> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/mxc/wire")
            .join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut out = BTreeSet::new();
        let mut current: Option<Vec<String>> = None;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("export interface ") {
                current = Some(Vec::new());
            } else if line == "}" {
                if let Some(mut names) = current.take() {
                    names.sort();
                    out.insert(names);
                }
            } else if let Some(names) = current.as_mut() {
                if let Some((name, _)) = line.split_once(':') {
                    if !name.starts_with('*') && !name.starts_with('/') {
                        names.push(name.trim_end_matches('?').to_string());
                    }
                }
            }
        }
        out
    }

    fn assert_same_shapes(exact: Exact, file: &str) {
        let ours: BTreeSet<Vec<String>> = object_shapes(exact)
            .into_iter()
            .map(|names| names.into_iter().map(String::from).collect())
            .collect();
        let theirs = wire_shapes(file);
        let missing: Vec<_> = theirs.difference(&ours).collect();
        let extra: Vec<_> = ours.difference(&theirs).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: objects MXC defines that the contract here lacks: {missing:?}; objects here MXC \
             does not define: {extra:?}",
            exact.as_str()
        );
    }

    #[test]
    fn objects_match_mxc_wire_types_1_0_0() {
        assert_same_shapes(Exact::V1_0_0, "v1_0_0.d.ts");
    }

    #[test]
    fn objects_match_mxc_wire_types_1_1_0_alpha() {
        assert_same_shapes(Exact::V1_1_0Alpha, "v1_1_0_alpha.d.ts");
    }
}
