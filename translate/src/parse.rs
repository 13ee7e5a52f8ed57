//! Step one: text to a validated [`Config`]. JSON hygiene, unknown members, types, `version`,
//! the one-shot / state-aware envelope and every per-field rule of MXC's production parser that
//! does not depend on which backend runs the config. Backend and host rules live in `resolve`.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{index, join, ConfigErrors, Report};
use crate::model::{self, MxcConfig, Phase, RequestKind};
use crate::network::{self, NetworkSpec};
use crate::source::Source;
use crate::version::Exact;
use crate::version::{self, SchemaVersion};
use crate::{contract, exact};

/// What kind of request the caller is prepared to handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expect {
    /// Decide by the `phase` key, as MXC's request loader does.
    #[default]
    Any,
    /// A one-shot request (`mxc run`, bundle policies): `phase`, `sandboxId` and
    /// `correlationVector` are rejected.
    OneShot,
    /// A policy for a container an engine describes (bundle mode): one-shot envelope, and
    /// `process` is optional because the engine supplies the command.
    BundlePolicy,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// Also apply MXC's contract-crate rules: exact version strings, no explicit `null`,
    /// per-version closed surfaces, closed `experimental`. (The exact 1.x contracts always apply
    /// to documents that declare a 1.x version.)
    pub strict: bool,
    pub expect: Expect,
    /// Accept MXC's development contract, `1.1.0-alpha` (`--experimental`).
    pub experimental: bool,
}

/// A config that passed document validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    /// The document as read (duplicate-free); its canonical form is what `sha256` hashes.
    pub raw: Value,
    pub model: MxcConfig,
    pub kind: RequestKind,
    pub version: SchemaVersion,
    pub network: NetworkSpec,
    /// sha256 of the canonical JSON (sorted keys, no whitespace) of the document.
    pub sha256: String,
}

/// Parses and validates config text.
pub fn parse(source: Source, text: &str, options: ParseOptions) -> Result<Config, ConfigErrors> {
    let mut report = Report::new(&source);
    let raw = match crate::json::read(text) {
        Ok(raw) => raw,
        Err(error) => {
            report.reject_path(error.path, error.reason);
            return Err(report.into_errors());
        }
    };
    parse_value(source, raw, options)
}

/// Parses an already-read JSON document (annotations that arrive as a string go through
/// [`parse`] so that duplicate keys are caught).
pub fn parse_value(
    source: Source,
    raw: Value,
    options: ParseOptions,
) -> Result<Config, ConfigErrors> {
    let mut report = Report::new(&source);
    let Some(root) = raw.as_object() else {
        report.reject_path("", "expected a configuration object");
        return Err(report.into_errors());
    };
    match root
        .get("version")
        .and_then(Value::as_str)
        .and_then(Exact::named)
    {
        Some(Exact::V1_1_0Alpha) if !options.experimental => {
            let reason = version::parse(Some(Exact::V1_1_0Alpha.as_str()), false)
                .err()
                .unwrap_or_default();
            report.reject("version", Exact::V1_1_0Alpha.as_str(), reason);
            return Err(report.into_errors());
        }
        Some(contract) => {
            exact::check(&mut report, &raw, contract);
            if !report.is_clean() {
                return Err(report.into_errors());
            }
        }
        None => members_added_in_1_0(&mut report, root),
    }
    let state_aware = root.contains_key("phase");
    if state_aware {
        if let Some(experimental) = root.get("experimental") {
            if !experimental.is_null() && !experimental.is_object() {
                report.reject("experimental", experimental, "expected an object");
            }
        }
    }

    let model: MxcConfig = match serde_path_to_error::deserialize(&raw) {
        Ok(model) => model,
        Err(error) => {
            let path = error.path().to_string();
            let path = if path == "." { String::new() } else { path };
            report.reject_path(path, serde_message(error.inner()));
            return Err(report.into_errors());
        }
    };

    let version = match version::parse(model.version.as_deref(), options.experimental) {
        Ok(version) => version,
        Err(reason) => {
            report.reject("version", &model.version, reason);
            SchemaVersion::Unversioned
        }
    };

    let kind = match (state_aware, options.expect) {
        (false, _) => RequestKind::OneShot,
        (true, Expect::OneShot | Expect::BundlePolicy) => RequestKind::OneShot,
        (true, Expect::Any) => match model.phase {
            Some(phase) => RequestKind::StateAware(phase),
            None => {
                report.reject("phase", Value::Null, "missing required field: phase");
                RequestKind::OneShot
            }
        },
    };
    if kind == RequestKind::OneShot {
        one_shot_envelope(&mut report, &model);
    } else if let RequestKind::StateAware(phase) = kind {
        state_aware_envelope(&mut report, &model, phase, root);
    }

    let process_required = match kind {
        RequestKind::OneShot => options.expect != Expect::BundlePolicy,
        RequestKind::StateAware(phase) => phase == Phase::Exec,
    };
    process(&mut report, model.process.as_ref(), process_required);
    filesystem(&mut report, model.filesystem.as_ref());
    process_container(&mut report, model.process_container.as_ref());
    experimental(&mut report, model.experimental.as_ref());

    let network = network::parse(
        &mut report,
        version::probe(model.version.as_deref()).unwrap_or(version),
        model.network.as_ref(),
        model.runtime_config.as_ref(),
        model
            .process_container
            .as_ref()
            .and_then(|pc| pc.network.as_ref()),
        kind == RequestKind::OneShot,
    );

    if options.strict && report.is_clean() {
        contract::check(&mut report, &raw, kind);
    }

    let sha256 = {
        let canonical = serde_json::to_vec(&raw).unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    };

    match network {
        Some(network) if report.is_clean() => Ok(Config {
            source,
            raw,
            model,
            kind,
            version,
            network,
            sha256,
        }),
        _ => Err(report.into_errors()),
    }
}

/// Members that exist only in the exact 1.x contracts: unknown to a document of an older version,
/// as they are to MXC's parser for it.
fn members_added_in_1_0(report: &mut Report, root: &serde_json::Map<String, Value>) {
    let object = |key: &str| root.get(key).and_then(Value::as_object);
    let found = [
        "telemetry",
        "wslc",
        "isolationSession",
        "hyperlight",
        "windowsSandbox",
        "test",
    ]
    .into_iter()
    .filter(|key| root.contains_key(*key))
    .map(str::to_string)
    .chain(
        object("process")
            .filter(|p| p.contains_key("inheritDefaultEnv"))
            .map(|_| "process.inheritDefaultEnv".to_string()),
    )
    .chain(
        ["processContainer", "appContainer"]
            .into_iter()
            .filter_map(|key| {
                object(key)
                    .filter(|pc| pc.contains_key("filesystem"))
                    .map(|_| format!("{key}.filesystem"))
            }),
    );
    for path in found.collect::<Vec<_>>() {
        let member = path.rsplit('.').next().unwrap_or(&path).to_string();
        report.reject_path(
            path,
            format!(
                "unknown field `{member}`: it exists from schema 1.0.0 on; declare \
                 \"version\": \"1.0.0\" to use it"
            ),
        );
    }
}

/// serde's messages name the Rust side of things in a few places; say it in JSON terms. They
/// also quote string values, which may be secrets (an `env` written as a string): drop those.
fn serde_message(error: &serde_json::Error) -> String {
    let message = without_quoted_strings(&error.to_string());
    let message = message
        .replace("invalid type: map", "invalid type: object")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("expected a sequence", "expected an array")
        .replace("struct MxcConfig", "a configuration object");
    // serde_json appends " at line L column C" only when reading text; values carry no position.
    message
}

/// `invalid type: string "TOKEN=..."` becomes `invalid type: string`.
fn without_quoted_strings(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        out.push_str(&rest[..at + "string".len()]);
        let quoted = &rest[at + "string \"".len()..];
        // serde_json escapes quotes inside the value, so the next unescaped quote ends it.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        match end {
            Some(i) => rest = &quoted[i + 1..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn one_shot_envelope(report: &mut Report, model: &MxcConfig) {
    if model.phase.is_some() {
        report.reject(
            "phase",
            model.phase.map(Phase::as_str),
            "'phase' is only valid on state-aware lifecycle requests",
        );
    }
    if let Some(id) = &model.sandbox_id {
        report.reject(
            "sandboxId",
            id,
            "'sandboxId' is only valid on state-aware lifecycle requests",
        );
    }
    if let Some(cv) = &model.correlation_vector {
        report.reject(
            "correlationVector",
            cv,
            "'correlationVector' is only valid on state-aware lifecycle requests",
        );
    }
}

fn state_aware_envelope(
    report: &mut Report,
    model: &MxcConfig,
    phase: Phase,
    root: &serde_json::Map<String, Value>,
) {
    if phase == Phase::Provision {
        if model.containment.is_none() {
            report.reject_path(
                "containment",
                "state-aware 'provision' requests must name the containment backend",
            );
        }
        if let Some(id) = &model.sandbox_id {
            report.reject(
                "sandboxId",
                id,
                "'sandboxId' is minted by provision and must not be supplied with it",
            );
        }
    } else {
        if let Some(containment) = model.containment {
            report.reject(
                "containment",
                containment.as_str(),
                format!(
                    "state-aware '{}' requests must not carry 'containment'; the backend is \
                     fixed at provision and later phases route by 'sandboxId'",
                    phase.as_str()
                ),
            );
        }
        if model.sandbox_id.as_deref().is_none_or(str::is_empty) {
            report.reject_path(
                "sandboxId",
                format!(
                    "missing required field: sandboxId (required for '{}')",
                    phase.as_str()
                ),
            );
        }
    }
    for (key, present) in [
        ("seatbelt", model.seatbelt.is_some()),
        ("processContainer", model.process_container.is_some()),
        ("lxc", model.lxc.is_some()),
        ("lifecycle", model.lifecycle.is_some()),
    ] {
        if present {
            report.reject_path(
                key,
                "state-aware lifecycle requests do not accept one-shot sections; per-backend \
                 policy and lifecycle are fixed at provision time",
            );
        }
    }
    if let Some(Value::Object(experimental)) = root.get("experimental") {
        let backends: Vec<&str> = ["windows_sandbox", "wslc", "isolation_session"]
            .into_iter()
            .filter(|key| experimental.contains_key(*key))
            .collect();
        let allowed = model.containment.map(model::Containment::as_str);
        let extras: Vec<&str> = match allowed {
            Some(allowed) => backends.into_iter().filter(|key| *key != allowed).collect(),
            None if backends.len() > 1 => backends,
            None => Vec::new(),
        };
        for key in extras {
            report.reject_path(
                join("experimental", key),
                "only the backend section matching the request's containment is allowed; \
                 remove the unused section",
            );
        }
    }
}

fn process(report: &mut Report, process: Option<&model::Process>, required: bool) {
    let Some(process) = process else {
        if required {
            report.reject_path("process", "'process' section is required");
        }
        return;
    };
    match process.command_line.as_deref() {
        None if required => report.reject_path(
            "process.commandLine",
            "missing required field: process.commandLine",
        ),
        Some("") if required => report.reject(
            "process.commandLine",
            "",
            "process.commandLine cannot be empty",
        ),
        // Command text can hold secrets: no message ever quotes it.
        Some(line) if line.contains('\0') => report.reject_path(
            "process.commandLine",
            "process.commandLine must not contain null bytes",
        ),
        _ => {}
    }
    for (position, entry) in process
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        // Environment values are where secrets travel: messages name the entry, never its text.
        let path = index("process.env", position);
        match entry.split_once('=') {
            None => report.reject_path(
                path,
                "must be KEY=VALUE (MXC silently drops entries without '='; mxc-oci rejects them)",
            ),
            Some(("", _)) => report.reject_path(path, "the variable name is empty"),
            Some((key, _)) if key.contains('\0') => {
                report.reject_path(path, "the variable name contains a NUL character")
            }
            Some((_, value)) if value.contains('\0') => {
                report.reject_path(path, "the value contains a NUL character")
            }
            Some(_) => {}
        }
    }
    if let Some(cwd) = process.cwd.as_deref() {
        if cwd.contains('\0') {
            report.reject("process.cwd", cwd, "contains a NUL character");
        }
    }
}

fn filesystem(report: &mut Report, filesystem: Option<&model::Filesystem>) {
    let Some(filesystem) = filesystem else { return };
    for (list, paths) in [
        ("filesystem.readwritePaths", &filesystem.readwrite_paths),
        ("filesystem.readonlyPaths", &filesystem.readonly_paths),
        ("filesystem.deniedPaths", &filesystem.denied_paths),
    ] {
        for (position, path) in paths.as_deref().unwrap_or_default().iter().enumerate() {
            let at = index(list, position);
            if path.trim().is_empty() {
                report.reject(at, path, "filesystem path is empty");
            } else if path.contains('\0') {
                report.reject(
                    at,
                    path,
                    "filesystem path contains an embedded NUL character",
                );
            } else if path.contains('"') {
                report.reject(at, path, "filesystem path contains invalid character '\"'");
            }
        }
    }
}

fn process_container(report: &mut Report, section: Option<&model::ProcessContainer>) {
    let Some(section) = section else { return };
    for (position, capability) in section
        .capabilities
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = index("processContainer.capabilities", position);
        if capability.contains(',') {
            report.reject(
                at,
                capability,
                "must not contain a comma; provide multiple capabilities as separate JSON array entries",
            );
        } else if capability.eq_ignore_ascii_case("learningModeLogging")
            || capability.eq_ignore_ascii_case("permissiveLearningMode")
        {
            report.reject(
                at,
                capability,
                "reserved learning-mode capability; use processContainer.learningMode for \
                 deny-and-record mode",
            );
        }
    }
    if let Some(path) = section
        .capture_denials
        .as_ref()
        .and_then(|cd| cd.output_path.as_deref())
    {
        let absolute = path.starts_with('/')
            || path.starts_with("\\\\")
            || path.get(1..3).is_some_and(|s| s == ":\\" || s == ":/");
        if !absolute {
            report.reject(
                "processContainer.captureDenials.outputPath",
                path,
                "must be an absolute path",
            );
        }
    }
}

fn experimental(report: &mut Report, experimental: Option<&model::Experimental>) {
    let Some(experimental) = experimental else {
        return;
    };
    if experimental.seatbelt.is_some() {
        report.reject_path(
            "experimental.seatbelt",
            "'experimental.seatbelt' has moved to the stable section; use top-level 'seatbelt' instead",
        );
    }
    if let Some(mappings) = experimental
        .wslc
        .as_ref()
        .and_then(|w| w.port_mappings.as_ref())
    {
        let mut seen = std::collections::HashSet::new();
        for (position, mapping) in mappings.iter().enumerate() {
            let at = index("experimental.wslc.portMappings", position);
            if mapping.windows_port == 0 {
                report.reject(join(&at, "windowsPort"), 0, "must be > 0");
            }
            if mapping.container_port == 0 {
                report.reject(join(&at, "containerPort"), 0, "must be > 0");
            }
            if !seen.insert(mapping.windows_port) {
                report.reject(
                    join(&at, "windowsPort"),
                    mapping.windows_port,
                    "duplicate windowsPort for protocol 'tcp'",
                );
            }
        }
    }
}
