//! `--strict`: MXC's contract-crate rules on top of the production parser. Exact version
//! spellings, no explicit `null`, closed per-version surfaces (0.6.0-alpha, 0.7.0-alpha,
//! 0.8.0-alpha), a closed `experimental`, required `lxc.distribution`/`lxc.release`, non-empty
//! `commandLine`, `to` and `ports`, non-zero ports, `builtinTestServer: true`, exactly one proxy
//! form, and the per-phase closed roots of state-aware requests.

use serde_json::{Map, Value};

use crate::error::{index, join, Report};
use crate::model::{Phase, RequestKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contract {
    V06,
    V07,
    V08,
}

const VERSIONS: [(&str, Contract); 3] = [
    ("0.6.0-alpha", Contract::V06),
    ("0.7.0-alpha", Contract::V07),
    ("0.8.0-alpha", Contract::V08),
];

pub(crate) fn check(report: &mut Report, raw: &Value, kind: RequestKind) {
    let Some(root) = raw.as_object() else { return };
    if root
        .get("version")
        .and_then(Value::as_str)
        .and_then(crate::version::Exact::named)
        .is_some()
    {
        // The exact 1.x contracts are checked for every document that declares them.
        return;
    }
    let contract = match root.get("version") {
        Some(Value::String(text)) => match VERSIONS.iter().find(|(name, _)| name == text) {
            Some((_, contract)) => *contract,
            None => {
                report.reject(
                    "version",
                    text,
                    "strict mode accepts only the published contract versions 0.6.0-alpha, \
                     0.7.0-alpha, 0.8.0-alpha and 1.0.0",
                );
                return;
            }
        },
        Some(other) => {
            report.reject("version", other, "strict mode requires a version string");
            return;
        }
        None => {
            report.reject_path("version", "strict mode requires 'version'");
            return;
        }
    };
    no_nulls(report, "", raw);
    match kind {
        RequestKind::OneShot => one_shot(report, contract, root),
        RequestKind::StateAware(phase) if contract < Contract::V08 => report.reject(
            "phase",
            phase.as_str(),
            "state-aware requests have no contract before 0.8.0-alpha",
        ),
        RequestKind::StateAware(phase) => state_aware(report, phase, root),
    }
}

fn no_nulls(report: &mut Report, path: &str, value: &Value) {
    match value {
        Value::Null => report.reject_path(
            path,
            "explicit null is not allowed in strict mode; omit the field instead",
        ),
        Value::Object(map) => {
            for (key, child) in map {
                if key != "_comment" {
                    no_nulls(report, &join(path, key), child);
                }
            }
        }
        Value::Array(items) => {
            for (position, item) in items.iter().enumerate() {
                no_nulls(report, &index(path, position), item);
            }
        }
        _ => {}
    }
}

/// Rejects members of `object` outside `allowed`.
fn closed(report: &mut Report, path: &str, object: &Map<String, Value>, allowed: &[&str]) {
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            report.reject_path(
                join(path, key),
                format!(
                    "unknown field `{key}` in strict mode; expected one of: {}",
                    allowed.join(", ")
                ),
            );
        }
    }
}

fn object(value: Option<&Value>) -> Option<&Map<String, Value>> {
    value.and_then(Value::as_object)
}

fn required(report: &mut Report, path: &str, object: &Map<String, Value>, key: &str) {
    if !object.contains_key(key) {
        report.reject_path(join(path, key), format!("missing required field `{key}`"));
    }
}

fn one_shot(report: &mut Report, contract: Contract, root: &Map<String, Value>) {
    let mut allowed = vec![
        "version",
        "containerId",
        "containment",
        "process",
        "lifecycle",
        "processContainer",
        "appContainer",
        "lxc",
        "filesystem",
        "fallback",
        "network",
        "ui",
    ];
    if contract >= Contract::V07 {
        allowed.extend(["$schema", "_comment", "seatbelt", "macos_sandbox"]);
    }
    if contract >= Contract::V08 {
        allowed.extend(["runtimeConfig", "experimental"]);
    }
    closed(report, "", root, &allowed);

    if let Some(Value::String(containment)) = root.get("containment") {
        let permitted: &[&str] = match contract {
            Contract::V06 => &[
                "process",
                "processcontainer",
                "appcontainer",
                "lxc",
                "bubblewrap",
            ],
            Contract::V07 => &[
                "process",
                "processcontainer",
                "appcontainer",
                "lxc",
                "bubblewrap",
                "seatbelt",
                "macos_sandbox",
            ],
            Contract::V08 => &[],
        };
        if contract < Contract::V08 && !permitted.contains(&containment.as_str()) {
            report.reject(
                "containment",
                containment,
                format!(
                    "not part of the contract for this version; expected one of: {}",
                    permitted.join(", ")
                ),
            );
        }
    }

    match object(root.get("process")) {
        Some(process) => self::process(report, process),
        None => report.reject_path("process", "missing required field `process`"),
    }
    if let Some(lifecycle) = object(root.get("lifecycle")) {
        closed(
            report,
            "lifecycle",
            lifecycle,
            &["destroyOnExit", "preservePolicy"],
        );
    }
    for key in ["processContainer", "appContainer"] {
        if let Some(section) = object(root.get(key)) {
            process_container(report, contract, key, section);
        }
    }
    if let Some(lxc) = object(root.get("lxc")) {
        closed(report, "lxc", lxc, &["distribution", "release"]);
        required(report, "lxc", lxc, "distribution");
        required(report, "lxc", lxc, "release");
    }
    if let Some(filesystem) = object(root.get("filesystem")) {
        self::filesystem(report, filesystem);
    }
    if let Some(fallback) = object(root.get("fallback")) {
        closed(report, "fallback", fallback, &["allowDaclMutation"]);
    }
    if let Some(network) = object(root.get("network")) {
        self::network(report, contract, network);
    }
    if let Some(ui) = object(root.get("ui")) {
        closed(report, "ui", ui, &["disable", "clipboard", "injection"]);
    }
    if let Some(runtime) = object(root.get("runtimeConfig")) {
        closed(report, "runtimeConfig", runtime, &["networkProxy"]);
    }
    if let Some(experimental) = object(root.get("experimental")) {
        self::experimental(report, experimental);
    }
}

fn process(report: &mut Report, process: &Map<String, Value>) {
    closed(
        report,
        "process",
        process,
        &["commandLine", "cwd", "env", "timeout"],
    );
    match process.get("commandLine") {
        Some(Value::String(line)) if line.is_empty() => {
            report.reject("process.commandLine", line, "must not be empty")
        }
        None => report.reject_path(
            "process.commandLine",
            "missing required field `commandLine`",
        ),
        _ => {}
    }
}

fn filesystem(report: &mut Report, filesystem: &Map<String, Value>) {
    closed(
        report,
        "filesystem",
        filesystem,
        &["readwritePaths", "readonlyPaths", "deniedPaths"],
    );
}

fn process_container(
    report: &mut Report,
    contract: Contract,
    key: &str,
    section: &Map<String, Value>,
) {
    let mut allowed = vec!["leastPrivilege", "capabilities", "ui"];
    if contract >= Contract::V08 {
        allowed.extend(["learningMode", "captureDenials", "network"]);
    }
    closed(report, key, section, &allowed);
    if let Some(ui) = object(section.get("ui")) {
        closed(
            report,
            &join(key, "ui"),
            ui,
            &["isolation", "desktopSystemControl", "systemSettings", "ime"],
        );
    }
    if let Some(capture) = object(section.get("captureDenials")) {
        closed(
            report,
            &join(key, "captureDenials"),
            capture,
            &["mode", "outputPath", "retainEtl"],
        );
    }
    if let Some(network) = object(section.get("network")) {
        closed(
            report,
            &join(key, "network"),
            network,
            &["allowedProxyPeer"],
        );
    }
}

fn network(report: &mut Report, contract: Contract, network: &Map<String, Value>) {
    let mut allowed = vec![
        "defaultPolicy",
        "enforcementMode",
        "allowLocalNetwork",
        "allowedHosts",
        "blockedHosts",
        "proxy",
    ];
    if contract >= Contract::V08 {
        allowed.extend(["egress", "ingress"]);
    }
    closed(report, "network", network, &allowed);
    if let Some(proxy) = object(network.get("proxy")) {
        let forms = ["localhost", "builtinTestServer", "url"];
        closed(report, "network.proxy", proxy, &forms);
        if proxy.len() != 1 {
            report.reject_path(
                "network.proxy",
                "strict mode requires exactly one of localhost, builtinTestServer or url",
            );
        }
        if let Some(value) = proxy.get("builtinTestServer") {
            if value != &Value::Bool(true) {
                report.reject("network.proxy.builtinTestServer", value, "must be true");
            }
        }
        if proxy.get("localhost") == Some(&Value::from(0)) {
            report.reject("network.proxy.localhost", 0, "must be between 1 and 65535");
        }
    }
    if let Some(egress) = object(network.get("egress")) {
        closed(
            report,
            "network.egress",
            egress,
            &["default", "allow", "deny"],
        );
        for list in ["allow", "deny"] {
            let list_path = join("network.egress", list);
            for (position, rule) in egress
                .get(list)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                if let Some(rule) = rule.as_object() {
                    self::rule(report, &index(&list_path, position), rule);
                }
            }
        }
    }
    if let Some(ingress) = object(network.get("ingress")) {
        closed(
            report,
            "network.ingress",
            ingress,
            &["default", "hostLoopback"],
        );
    }
}

fn rule(report: &mut Report, path: &str, rule: &Map<String, Value>) {
    closed(report, path, rule, &["to", "ports"]);
    for key in ["to", "ports"] {
        if rule
            .get(key)
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            report.reject(join(path, key), Value::Array(vec![]), "must not be empty");
        }
    }
    for (position, peer) in array(rule.get("to")).iter().enumerate() {
        if let Some(peer) = peer.as_object() {
            closed(
                report,
                &index(&join(path, "to"), position),
                peer,
                &["cidr", "except"],
            );
        }
    }
    for (position, port) in array(rule.get("ports")).iter().enumerate() {
        if let Some(port) = port.as_object() {
            let at = index(&join(path, "ports"), position);
            closed(report, &at, port, &["protocol", "port", "endPort"]);
            for key in ["port", "endPort"] {
                if port.get(key) == Some(&Value::from(0)) {
                    report.reject(join(&at, key), 0, "must be between 1 and 65535");
                }
            }
        }
    }
}

fn array(value: Option<&Value>) -> &[Value] {
    value
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn experimental(report: &mut Report, experimental: &Map<String, Value>) {
    closed(
        report,
        "experimental",
        experimental,
        &["test", "windows_sandbox", "wslc", "telemetry"],
    );
    let children: [(&str, &[&str]); 4] = [
        ("test", &["message"]),
        (
            "windows_sandbox",
            &["idleTimeoutMs", "idleTimeout", "daemonPipeName"],
        ),
        (
            "wslc",
            &[
                "targetOs",
                "image",
                "imageTarPath",
                "cpuCount",
                "memoryMb",
                "gpu",
                "storagePath",
                "portMappings",
            ],
        ),
        ("telemetry", &["enabled"]),
    ];
    for (key, allowed) in children {
        if let Some(child) = object(experimental.get(key)) {
            closed(report, &join("experimental", key), child, allowed);
        }
    }
    if let Some(wslc) = object(experimental.get("wslc")) {
        for (position, mapping) in array(wslc.get("portMappings")).iter().enumerate() {
            if let Some(mapping) = mapping.as_object() {
                closed(
                    report,
                    &index("experimental.wslc.portMappings", position),
                    mapping,
                    &["windowsPort", "containerPort", "protocol"],
                );
            }
        }
    }
}

fn state_aware(report: &mut Report, phase: Phase, root: &Map<String, Value>) {
    let envelope = ["$schema", "_comment", "version", "phase"];
    let telemetry_only = |report: &mut Report| {
        if let Some(experimental) = object(root.get("experimental")) {
            closed(report, "experimental", experimental, &["telemetry"]);
        }
    };
    match phase {
        Phase::Start | Phase::Stop | Phase::Deprovision => {
            let allowed = [
                &envelope[..],
                &["sandboxId", "correlationVector", "experimental"],
            ]
            .concat();
            closed(report, "", root, &allowed);
            required(report, "", root, "sandboxId");
            telemetry_only(report);
        }
        Phase::Exec => {
            let allowed = [
                &envelope[..],
                &[
                    "sandboxId",
                    "correlationVector",
                    "process",
                    "network",
                    "experimental",
                ],
            ]
            .concat();
            closed(report, "", root, &allowed);
            required(report, "", root, "sandboxId");
            match object(root.get("process")) {
                Some(process) => self::process(report, process),
                None => report.reject_path("process", "missing required field `process`"),
            }
            if let Some(network) = object(root.get("network")) {
                self::network(report, Contract::V08, network);
            }
            telemetry_only(report);
        }
        Phase::Provision => provision(report, root, &envelope),
    }
}

fn provision(report: &mut Report, root: &Map<String, Value>, envelope: &[&str]) {
    let containment = root
        .get("containment")
        .and_then(Value::as_str)
        .unwrap_or("");
    let experimental = object(root.get("experimental"));
    match containment {
        "isolation_session" => {
            closed(
                report,
                "",
                root,
                &[envelope, &["containment", "network", "experimental"]].concat(),
            );
            match object(root.get("network")) {
                Some(network) => {
                    closed(
                        report,
                        "network",
                        network,
                        &["defaultPolicy", "allowLocalNetwork"],
                    );
                    if network.get("defaultPolicy") != Some(&Value::from("allow")) {
                        report.reject_path(
                            "network.defaultPolicy",
                            "an isolation_session provision requires defaultPolicy 'allow'",
                        );
                    }
                    if network.get("allowLocalNetwork") != Some(&Value::Bool(true)) {
                        report.reject_path(
                            "network.allowLocalNetwork",
                            "an isolation_session provision requires allowLocalNetwork true",
                        );
                    }
                }
                None => report.reject_path("network", "missing required field `network`"),
            }
            if let Some(experimental) = experimental {
                closed(
                    report,
                    "experimental",
                    experimental,
                    &["isolation_session", "telemetry"],
                );
            }
        }
        "windows_sandbox" => {
            closed(
                report,
                "",
                root,
                &[envelope, &["containment", "filesystem", "experimental"]].concat(),
            );
            if let Some(filesystem) = object(root.get("filesystem")) {
                self::filesystem(report, filesystem);
            }
            if let Some(experimental) = experimental {
                closed(report, "experimental", experimental, &["telemetry"]);
            }
        }
        "wslc" => {
            closed(
                report,
                "",
                root,
                &[
                    envelope,
                    &["containment", "filesystem", "network", "experimental"],
                ]
                .concat(),
            );
            if let Some(filesystem) = object(root.get("filesystem")) {
                self::filesystem(report, filesystem);
            }
            if let Some(network) = object(root.get("network")) {
                self::network(report, Contract::V08, network);
            }
            if let Some(experimental) = experimental {
                closed(report, "experimental", experimental, &["wslc", "telemetry"]);
            }
        }
        other => report.reject(
            "containment",
            other,
            "a provision contract exists only for isolation_session, windows_sandbox and wslc",
        ),
    }
}
