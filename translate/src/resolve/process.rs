//! The process section: command line (one-shot only), cwd and its default, env, timeout, and
//! the container id.

use std::path::{Path, PathBuf};

use super::BASELINE;
use crate::error::Report;
use crate::host::{FileKind, HostFacts};
use crate::model;
use crate::paths;
use crate::policy::{MountAction, MountStep, Profile};
use crate::version::SchemaVersion;

/// What the process section contributes to the policy.
pub(super) struct Section {
    pub command_line: Option<String>,
    pub env: Vec<(String, String)>,
    pub env_verbatim: bool,
    pub timeout_ms: Option<u32>,
}

/// MXC's default environment for a sandbox on Linux (schema 1.x).
const DEFAULT_ENV: &[(&str, &str)] = &[
    ("TERM", "xterm-256color"),
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
];

pub(super) fn section(
    report: &mut Report,
    process: &model::Process,
    version: SchemaVersion,
    bundle: bool,
) -> Section {
    let mut command_line = None;
    if bundle {
        if process.command_line.is_some() {
            report.reject_path(
                "process.commandLine",
                "in bundle mode the engine (Docker, containerd, Kubernetes) chooses the command; \
                 remove process.commandLine from the policy",
            );
        }
        if process.cwd.is_some() {
            report.reject_path(
                "process.cwd",
                "in bundle mode the engine chooses the working directory; remove process.cwd",
            );
        }
    } else {
        command_line = process.command_line.clone();
    }
    let written = process
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()));
    // Schema 1.x: an omitted `env` means the backend's default environment, a written one is
    // used as it is unless `inheritDefaultEnv` layers it on the default.
    let env_verbatim = version >= SchemaVersion::Declared { major: 1, minor: 0 };
    let default_env = env_verbatim
        && !bundle
        && (process.env.is_none() || process.inherit_default_env == Some(true));
    let env = DEFAULT_ENV
        .iter()
        .filter(|_| default_env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(written)
        .collect::<Vec<_>>();
    let timeout_ms = process.timeout.filter(|ms| *ms > 0);
    Section {
        command_line,
        env,
        env_verbatim,
        timeout_ms,
    }
}

pub(super) fn container_id(report: &mut Report, id: Option<&str>) {
    if let Some(id) = id {
        if !valid_container_id(id) {
            report.reject(
                "containerId",
                id,
                "must be 1-128 characters of letters, digits, '_', '.', '+' and '-', not starting \
                 with '.' or '-' (the OCI runtime's id rules)",
            );
        }
    }
}

fn valid_container_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with(['.', '-'])
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
}

pub(super) fn cwd(
    report: &mut Report,
    written: Option<&str>,
    mounts: &[MountStep],
    profile: &Profile,
    host: &dyn HostFacts,
) -> PathBuf {
    let visible = |path: &Path| -> bool {
        // The deepest step covering the path decides.
        let deepest = mounts
            .iter()
            .filter(|m| paths::is_within(path, &m.destination))
            .max_by_key(|m| paths::depth(&m.destination));
        match deepest {
            Some(step) => match &step.action {
                MountAction::Bind { source, .. } => {
                    let rest = path
                        .strip_prefix(&step.destination)
                        .unwrap_or(Path::new(""));
                    host.metadata(&source.join(rest))
                        .is_ok_and(|i| i.kind == FileKind::Directory)
                }
                _ => false,
            },
            None => match profile {
                Profile::HostBaseline => {
                    path == Path::new("/")
                        || paths::is_within(path, Path::new("/tmp"))
                        || BASELINE
                            .iter()
                            .any(|b| paths::is_within(path, Path::new(b)))
                            && host
                                .metadata(path)
                                .is_ok_and(|i| i.kind == FileKind::Directory)
                }
                Profile::Rootfs { path: root, .. } => {
                    let inside = root.join(path.strip_prefix("/").unwrap_or(path));
                    host.metadata(&inside)
                        .is_ok_and(|i| i.kind == FileKind::Directory)
                }
                Profile::Bundle => true,
            },
        }
    };
    match written.filter(|w| !w.is_empty()) {
        Some(text) => match paths::normalize(text) {
            None => {
                report.reject(
                    "process.cwd",
                    text,
                    "must be an absolute path (MXC would resolve it against the sandbox root; \
                     mxc-oci asks you to write that out)",
                );
                PathBuf::from("/")
            }
            Some(path) if !visible(&path) => {
                report.reject(
                    "process.cwd",
                    text,
                    "is not a directory visible inside the sandbox (grant it, or pick a granted \
                     directory)",
                );
                path
            }
            Some(path) => path,
        },
        None => {
            // MXC's documented cross-backend default: the first existing directory among the
            // read-write grants, then the read-only grants, else the root.
            for readonly in [false, true] {
                for step in mounts {
                    if let MountAction::Bind {
                        source,
                        readonly: ro,
                        ..
                    } = &step.action
                    {
                        if *ro == readonly
                            && host
                                .metadata(source)
                                .is_ok_and(|i| i.kind == FileKind::Directory)
                        {
                            return step.destination.clone();
                        }
                    }
                }
            }
            PathBuf::from("/")
        }
    }
}
